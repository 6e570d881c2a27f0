"""Shell (Dagster): `table_descriptions` has one partition per connection, keyed by its alias so a person finds it.

Dagster refuses a few substrings in partition keys (`...`, control characters); an alias holding
one is keyed with them replaced, and the key is resolved back through the connections' list.
"""

from __future__ import annotations

import dagster as dg

from tdsync.domain.errors import ConnectionNotFound
from tdsync.domain.models import DatabaseConnection
from tdsync.store import CatalogueStore

CONNECTIONS = dg.DynamicPartitionsDefinition(name="tdsync_connections")

_REFUSED = ["...", "\a", "\b", "\f", "\n", "\r", "\t", "\v", "\0"]


def partition_key(connection: DatabaseConnection) -> str:
    key = connection.alias
    for refused in _REFUSED:
        key = key.replace(refused, "_")
    return key


def connection_for_partition(store: CatalogueStore, key: str) -> DatabaseConnection:
    """The connection a partition key stands for (its alias, or the alias it was made from)."""
    try:
        found = store.get_connection(key)
        if partition_key(found) == key:
            return found
    except ConnectionNotFound:
        pass
    for connection in store.list_connections():
        if partition_key(connection) == key:
            return connection
    raise ConnectionNotFound(
        f"no connection has the partition {key!r}: it was renamed or deleted",
        {"partition": key},
    )


def ensure_partition(instance: dg.DagsterInstance, key: str) -> None:
    """Add the partition before a run asks for it (the sync sensor may not have ticked yet)."""
    if not instance.has_dynamic_partition(CONNECTIONS.name, key):
        instance.add_dynamic_partitions(CONNECTIONS.name, [key])
