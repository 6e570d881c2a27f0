"""Shell (Dagster): the resources, the catalogue store and the source databases' settings, and
how an expected failure reaches Dagster. Secrets come from the environment only (dg.EnvVar fields)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
from dagster._core.errors import DagsterUserCodeProcessError
from dagster_shared.error import SerializableErrorInfo
from pydantic import Field

from tdsync.config.settings import Settings
from tdsync.domain.errors import TdsyncError
from tdsync.domain.models import plain_json
from tdsync.store import CatalogueStore
from tdsync.store.client import shared_store


class StoreResource(dg.ConfigurableResource):
    """The MongoDB catalogue, and how long runs hold and wait for its leases.

    Where each field comes from, in the code location (`default_resources`):
    - `mongo_uri`, `mongo_db`, `encryption_key`, `home` (strings): `dg.EnvVar` of TDSYNC_MONGO_URI,
      TDSYNC_MONGO_DB, TDSYNC_ENCRYPTION_KEY, TDSYNC_HOME when that variable is set where the code
      location loads; the UI shows the variable's name (never a secret's value) and Dagster reads
      its value when a run starts.
    - `lease_wait_s`, `scan_lease_s` (seconds, floats): not dg.EnvVar, which yields only strings
      and integers; left unset, and read from TDSYNC_LEASE_WAIT_S / TDSYNC_SCAN_LEASE_S by
      `tdsync.config.settings.Settings` (typed, with its defaults) when a run starts.
    Any field set explicitly (a test, a launch config) wins over the environment: `settings()`
    builds the one typed `Settings` the run's code uses.
    """

    mongo_uri: str | None = Field(
        default=None,
        description="TDSYNC_MONGO_URI: the MongoDB; unset, the embedded SecantusDB under home.",
    )
    mongo_db: str | None = Field(default=None, description="TDSYNC_MONGO_DB: the database.")
    encryption_key: str | None = Field(
        default=None, description="TDSYNC_ENCRYPTION_KEY: the Fernet key of connection URIs."
    )
    home: str | None = Field(
        default=None, description="TDSYNC_HOME: the embedded store's data and generated key."
    )
    lease_wait_s: float | None = Field(
        default=None,
        description="TDSYNC_LEASE_WAIT_S: how long a run waits for another run of its connection.",
    )
    scan_lease_s: float | None = Field(
        default=None,
        description="TDSYNC_SCAN_LEASE_S: how long a scan holds a row without renewing it.",
    )

    def settings(self) -> Settings:
        """The fields set here, and tdsync.config.settings.Settings' (the environment's) for the rest."""
        return Settings(**{k: v for k, v in self.model_dump().items() if v is not None})

    def get_store(self) -> CatalogueStore:
        return shared_store(self.settings())


class SourceDatabasesResource(dg.ConfigurableResource):
    """How the run's steps open source databases (tdsync.services.refresh and .scan, with these
    settings): connect and statement timeouts; a scan gives up on a source that answers nothing
    for `stall_s`.

    Both fields are seconds (floats), so not `dg.EnvVar` (strings and integers only): left unset
    in the code location, they are read from TDSYNC_SOURCE_TIMEOUT_S / TDSYNC_SCAN_STALL_S by
    `tdsync.config.settings.Settings` (typed, with its defaults) when a run starts; set here, they win.
    Where tdsync's own state lives (TDSYNC_HOME, DAGSTER_HOME: never a source) comes from
    Settings too.
    """

    timeout_s: float | None = Field(
        default=None,
        description="TDSYNC_SOURCE_TIMEOUT_S: connect and statement timeout, in seconds.",
    )
    stall_s: float | None = Field(
        default=None,
        description="TDSYNC_SCAN_STALL_S: a scan whose source answers nothing this long gives up.",
    )

    def settings(self) -> Settings:
        """The fields set here, and tdsync.config.settings.Settings' (the environment's) for the rest."""
        fields = {"source_timeout_s": self.timeout_s, "scan_stall_s": self.stall_s}
        return Settings(**{k: v for k, v in fields.items() if v is not None})


# The catalogue's string settings, each bound to its environment variable when that is set where
# the code location loads: the UI shows where each comes from (never a secret's value) and Dagster
# reads it when a run starts. Numbers cannot be dg.EnvVar fields (only strings and integers), and
# the unset ones keep Settings' defaults: both are read from Settings when a run starts.
CATALOGUE_ENV = {
    "mongo_uri": "TDSYNC_MONGO_URI",
    "mongo_db": "TDSYNC_MONGO_DB",
    "encryption_key": "TDSYNC_ENCRYPTION_KEY",
    "home": "TDSYNC_HOME",
}


def default_resources() -> dict[str, dg.ConfigurableResource]:
    bound = {
        field: dg.EnvVar(name) for field, name in CATALOGUE_ENV.items() if os.environ.get(name)
    }
    return {"catalogue": StoreResource(**bound), "sources": SourceDatabasesResource()}


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


class ExpectedFailure(dg.Failure, DagsterUserCodeProcessError):
    """A dg.Failure (its description and metadata are the step failure's) that Dagster records
    with its message and no Python stack trace.

    Dagster records a step failure's error from the exception's traceback, except for an error
    standing for another process's, which it records as that process reported it: being one too,
    an expected failure reads as what it says, not as a crash.
    """

    def __init__(self, error: TdsyncError) -> None:
        what_to_do = WHAT_TO_DO.get(error.error_code, "See the error message.")
        shown = SerializableErrorInfo(
            message=f"[{error.error_code}] {error.message}\nWhat to do: {what_to_do}",
            stack=[],
            cls_name=None,
        )
        DagsterUserCodeProcessError.__init__(
            self, error.message, user_code_process_error_infos=[shown]
        )
        failure = dg.Failure(
            description=error.message,
            metadata={
                "error_code": error.error_code,
                "what_to_do": what_to_do,
                "detail": dg.MetadataValue.json(plain_json(error.detail))
                if error.detail is not None
                else dg.MetadataValue.null(),
            },
            allow_retries=False,
        )
        self.description, self.metadata = failure.description, failure.metadata
        self.allow_retries = False


@contextmanager
def failures_as_dagster() -> Iterator[None]:
    """A TdsyncError becomes an ExpectedFailure that carries its error code and what to do about
    it, for the UI and the API: an expected failure, not a crash."""
    try:
        yield
    except TdsyncError as exc:
        raise ExpectedFailure(exc) from None
