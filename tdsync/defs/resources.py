"""Resources: the catalogue store and the source databases. Secrets come from the environment only."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

from tdsync.catalogue import shared_store
from tdsync.config import Settings
from tdsync.errors import TdsyncError
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

    timeout_s: float = 10.0
    stall_s: float = 30.0

    def list_live(self, *, connection_uri: str, schemas: list[str] | None) -> Listing:
        return list_live_tables(connection_uri, schemas, timeout_s=self.timeout_s)

    def scan(
        self, *, connection_uri: str, targets: list[ScanTarget], options: ScanOptions
    ) -> Iterator[TableScan]:
        """Scan tables of one source database; results arrive as each table finishes."""
        return scan_tables(
            connection_uri, targets, options=options, timeout_s=self.timeout_s, stall_s=self.stall_s
        )


def default_resources() -> dict[str, dg.ConfigurableResource]:
    settings = Settings.from_env()
    return {
        "catalogue": CatalogueResource(),
        "sources": SourceDatabasesResource(
            timeout_s=settings.source_timeout_s, stall_s=settings.scan_stall_s
        ),
    }


@contextmanager
def failures_as_dagster() -> Iterator[None]:
    """A TdsyncError becomes a dg.Failure that carries its error code, for the UI and the API."""
    try:
        yield
    except TdsyncError as exc:
        raise dg.Failure(
            description=exc.message,
            metadata={
                "error_code": exc.error_code,
                "detail": dg.MetadataValue.json(json.loads(json.dumps(exc.detail, default=str)))
                if exc.detail is not None
                else dg.MetadataValue.null(),
            },
            allow_retries=False,
        ) from None
