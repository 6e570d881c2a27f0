"""The scan job's run config is bounded like every scan option (tdsync.domain.scan_model): a run asked
for `example_rows: 100000` (which would store the whole table as examples) claims nothing."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from tdsync.config.settings import Settings
from tdsync.defs import runs
from tdsync.defs.resources import default_resources
from tdsync.defs.scan_job import ScanConfig, scan_table_descriptions
from tdsync.domain.errors import ValidationFailed
from tdsync.domain.models import Status
from tdsync.store import CatalogueStore
from tdsync_tests.test_scan.conftest import SQLITE_SHOP, run_statements

OUT_OF_BOUNDS = [
    {"example_rows": 100_000},
    {"example_rows": -1},
    {"max_categories": 1_000_000},
    {"sample_rows": 0},
    {"concurrency": 0},
    {"concurrency": 1_000},
]


@pytest.fixture
def shop(store: CatalogueStore, tmp_path: Path, settings: Settings) -> str:
    path = tmp_path / "shop.db"
    run_statements(f"sqlite:///{path}", SQLITE_SHOP)
    connection_id = store.add_connection(alias="shop", connection_uri=f"sqlite:///{path}").id
    runs.refresh(connection_id, trigger="cli", settings=settings)
    return connection_id


@pytest.mark.parametrize("options", OUT_OF_BOUNDS)
def test_a_scan_run_launched_with_out_of_bounds_config_fails_before_claiming_anything(
    store: CatalogueStore, shop: str, options: dict
):
    # As the Dagster UI launches it: the job itself, with the run config as typed there.
    config = {"db_connection_id": shop, **options}
    with dg.instance_for_test() as instance:
        result = scan_table_descriptions.execute_in_process(
            run_config={"ops": {"start_scan": {"config": config}}},
            instance=instance,
            resources=default_resources(),
            raise_on_error=False,
        )

    assert not result.success
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    assert failure.step_key == "start_scan"
    cause = failure.step_failure_data.error.cause
    assert (
        cause.cls_name == "ValidationError" and "validation error for ScanConfig" in cause.message
    )
    assert f"\n{next(iter(options))}\n" in cause.message  # names the option out of bounds
    assert {d.status for d in store.list_descriptions(shop)} == {Status.NOT_SCANNED}


@pytest.mark.parametrize("options", OUT_OF_BOUNDS)
def test_the_api_and_cli_path_refuses_out_of_bounds_options_before_starting_a_run(
    store: CatalogueStore, shop: str, options: dict, settings: Settings
):
    with pytest.raises(ValidationFailed) as refused:
        runs.scan(shop, trigger="cli", options=options, settings=settings)

    assert [error["loc"] for error in refused.value.detail] == [tuple(options)]
    assert not runs.instance(settings).get_runs(dg.RunsFilter(job_name="scan_table_descriptions"))
    assert {d.status for d in store.list_descriptions(shop)} == {Status.NOT_SCANNED}


def test_the_bounds_leave_the_documented_scans_possible(
    store: CatalogueStore, shop: str, settings: Settings
):
    summary = runs.scan(
        shop,
        trigger="cli",
        options={"example_rows": 20, "max_categories": 1_000, "concurrency": 16},
        settings=settings,
    )
    assert summary["failed"] == 0 and summary["scanned"] == summary["tables"] == 5


def test_a_scan_launched_from_the_launchpad_takes_the_connections_alias(
    store: CatalogueStore, shop: str
):
    # What a person types in the Launchpad, guided by the field's description.
    described = ScanConfig.model_fields["db_connection_id"].description
    assert "alias" in described and "tdsync connections list" in described
    with dg.instance_for_test() as instance:
        result = scan_table_descriptions.execute_in_process(
            run_config={"ops": {"start_scan": {"config": {"db_connection_id": "shop"}}}},
            instance=instance,
            resources=default_resources(),
        )

    assert result.success
    assert {d.status for d in store.list_descriptions(shop)} == {Status.SCANNED}
