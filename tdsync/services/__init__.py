"""Services layer: the one place that sequences connection -> connection lease -> source -> store.

Refreshing a connection, scanning its tables and managing connections are plain functions here,
called by the Dagster ops (tdsync.defs), and through Dagster runs by the API and the CLI.
"""
