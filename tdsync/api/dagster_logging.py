"""A guard against a Dagster 1.13 deadlock between runs executing in threads of one process.

At the start of every run, `DagsterInstance.get_yaml_python_handlers` calls
`logging.config.dictConfig` whenever dagster.yaml holds any setting at all, even when no
`python_logs` handlers are configured. dictConfig takes the logging module lock and then every
handler's lock (it closes them all); a run in another thread that is storing an event holds its
handler's lock and then needs the module lock (`Logger.isEnabledFor`). Two runs at once - the API
refreshing two connections, or a refresh beside a scan - deadlock for good. Without handlers to
build, the dictConfig call is pointless, so it is skipped; configured handlers behave as before.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from dagster._core.instance.methods.event_methods import EventMethods

_original = EventMethods.get_yaml_python_handlers


def _yaml_python_handlers(self: EventMethods) -> Sequence[logging.Handler]:
    if not self._instance.get_python_log_dagster_handler_config():
        return []
    return _original(self)


def install() -> None:
    """Idempotent; affects every Dagster instance of this process."""
    EventMethods.get_yaml_python_handlers = _yaml_python_handlers  # type: ignore[method-assign]
