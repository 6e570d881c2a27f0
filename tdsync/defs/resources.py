"""Resources: the catalogue store and the source databases. Secrets come from the environment only."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dagster as dg

from tdsync.catalogue import shared_store
from tdsync.config import Settings
from tdsync.errors import TdsyncError
from tdsync.fingerprints import fingerprint_tables
from tdsync.refresh import Listing
from tdsync.scan import ScanOptions, ScanTarget, TableScan, scan_tables
from tdsync.sources import list_live_tables
from tdsync.store import CatalogueStore


class CatalogueResource(dg.ConfigurableResource):
    """The MongoDB catalogue, from TDSYNC_MONGO_URI (or the embedded server) and TDSYNC_MONGO_DB."""

    def get_store(self) -> CatalogueStore:
        return shared_store(Settings.from_env())


class SourceDatabasesResource(dg.ConfigurableResource):
    """Opens source databases with connect and statement timeouts; a scan gives up on a source
    that answers nothing for `stall_s`."""

    # None: TDSYNC_SOURCE_TIMEOUT_S / TDSYNC_SCAN_STALL_S as the run finds them (the code location
    # is loaded once per process, runs come and go).
    timeout_s: float | None = None
    stall_s: float | None = None

    def _timeout_s(self) -> float:
        return (
            self.timeout_s if self.timeout_s is not None else Settings.from_env().source_timeout_s
        )

    def _stall_s(self) -> float:
        return self.stall_s if self.stall_s is not None else Settings.from_env().scan_stall_s

    def list_live(
        self, *, connection_uri: str, schemas: list[str] | None, ssh: dict[str, Any] | None = None
    ) -> Listing:
        return list_live_tables(connection_uri, schemas, timeout_s=self._timeout_s(), ssh=ssh)

    def fingerprint(
        self,
        *,
        connection_uri: str,
        tables: list[tuple[str, str]],
        ssh: dict[str, Any] | None = None,
    ) -> dict[tuple[str, str], str]:
        """Structural fingerprints of the named (schema, table) objects, from the catalog."""
        return fingerprint_tables(connection_uri, tables, timeout_s=self._timeout_s(), ssh=ssh)

    def scan(
        self,
        *,
        connection_uri: str,
        targets: list[ScanTarget],
        options: ScanOptions,
        ssh: dict[str, Any] | None = None,
    ) -> Iterator[TableScan]:
        """Scan tables of one source database; results arrive as each table finishes."""
        return scan_tables(
            connection_uri,
            targets,
            options=options,
            timeout_s=self._timeout_s(),
            stall_s=self._stall_s(),
            ssh=ssh,
        )


def default_resources() -> dict[str, dg.ConfigurableResource]:
    return {"catalogue": CatalogueResource(), "sources": SourceDatabasesResource()}


# What a person can do about an expected failure, shown with it in the run's failure.
WHAT_TO_DO = {
    "empty_database": (
        "Nothing was deprecated. Check that the connection's schemas are right and that its "
        "database user can still see their tables, then refresh again. If the schema really is "
        "empty now, open this run in the Launchpad and set allow_empty_schemas: [SCHEMA] "
        "in its config to deprecate that schema's tables."
    ),
    "invalid_database_connection": (
        "Fix the connection's URI or schemas (PUT /api/v1/database-connections/{id}, or "
        "`tdsync connections add` again) and check that the database is reachable, then refresh."
    ),
    "connection_busy": (
        "Another refresh or scan of this connection held it for too long. Re-execute this run "
        "once that run has finished (see the runs tagged with the same tdsync/db_connection_id)."
    ),
    "database_connection_not_found": (
        "The connection was deleted or renamed; its partition follows at the partition "
        "sensor's next tick. Materialize the partition named by its current alias."
    ),
    "storage_unavailable": "MongoDB could not be reached. Re-execute this run once it is back.",
}


@contextmanager
def failures_as_dagster() -> Iterator[None]:
    """A TdsyncError becomes a dg.Failure that carries its error code and what to do about it,
    for the UI and the API: an expected failure, not a crash."""
    try:
        yield
    except TdsyncError as exc:
        raise dg.Failure(
            description=exc.message,
            metadata={
                "error_code": exc.error_code,
                "what_to_do": WHAT_TO_DO.get(exc.error_code, "See the error message."),
                "detail": dg.MetadataValue.json(json.loads(json.dumps(exc.detail, default=str)))
                if exc.detail is not None
                else dg.MetadataValue.null(),
            },
            allow_retries=False,
        ) from None
