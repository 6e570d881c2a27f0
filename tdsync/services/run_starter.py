"""Services layer: what the services need from whoever starts Dagster runs (tdsync.defs.runs).

The services decide when a connection is refreshed or a scan starts; starting the run is the
Dagster shell's part. Registering a connection and requesting a scan take a RunStarter, so this
layer imports nothing above it.
"""

from __future__ import annotations

from typing import Protocol


class RunNotStarted(Exception):
    """No run could be started (the instance or the process launcher refused): why, in words."""


class RunStarter(Protocol):
    def refresh(self, connection_id: str) -> object:
        """Refresh the connection in a run and wait for it (joining one already running)."""
        ...

    def start_scan(
        self,
        connection_id: str,
        *,
        run_id: str,
        table_names: list[str] | None,
        description_ids: list[str] | None,
    ) -> None:
        """Start the scan run `run_id` of rows claimed under that id, and return at once.

        Raises RunNotStarted when no run could be started."""
        ...
