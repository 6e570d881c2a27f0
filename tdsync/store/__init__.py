"""Store layer: the one MongoDB access layer: connections, table descriptions, connection leases, scans
and catalogue versions.

CatalogueStore (catalogue_store.py) is one small facade over one repository per collection:
connections.py, descriptions.py (refresh reads and writes, listing), description_edits.py (people's
edits), scans.py, connection_leases.py and versions.py; common.py holds what they share.
"""

from tdsync.store.catalogue_store import CatalogueStore
from tdsync.store.common import (
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
