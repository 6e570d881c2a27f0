"""The one MongoDB access layer: connections, table descriptions, run leases and scans.

CatalogueStore is one object over the catalogue's collections; its methods live with their concern:
connections.py, descriptions.py (refresh reads and writes, people's edits), leases.py and scans.py.
"""

from tdsync.store.base import (
    CONNECTIONS,
    DESCRIPTIONS,
    LEASES,
    STORE_FAILURES,
    VERSIONS,
    lease_expiry,
    mongo_client,
    object_id,
    storage_errors,
    storage_unavailable,
)
from tdsync.store.connection_leases import LeasesMixin
from tdsync.store.connections import ConnectionsMixin
from tdsync.store.descriptions import DescriptionsMixin
from tdsync.store.scans import ScansMixin
from tdsync.store.versions import VersionsMixin


class CatalogueStore(ConnectionsMixin, DescriptionsMixin, LeasesMixin, ScansMixin, VersionsMixin):
    """The catalogue in MongoDB. Open it with tdsync.store.client (open_store, shared_store)."""


__all__ = [
    "CONNECTIONS",
    "DESCRIPTIONS",
    "LEASES",
    "STORE_FAILURES",
    "VERSIONS",
    "CatalogueStore",
    "lease_expiry",
    "mongo_client",
    "object_id",
    "storage_errors",
    "storage_unavailable",
]
