"""`tdsync api`, plus a hook that SIGKILLs the store's server at a chosen write of a refresh.

    python api_killing_the_store.py api --host H --port P

Environment: TDSYNC_TEST_STORE_PID (the SecantusDB process), TDSYNC_TEST_STORE_PORT and
TDSYNC_TEST_KILL_FLAG (a file). While the flag file exists, the first `update` command on
`table_descriptions` (a refresh's bulk write, after its inserts went out) deletes the flag,
kills the server and waits until its port is closed before the command is sent: the write meets
a dead store, deterministically, in the middle of the refresh's writes.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from pathlib import Path

import pymongo.monitoring as monitoring


class KillStoreMidRefresh(monitoring.CommandListener):
    def __init__(self) -> None:
        self.pid = int(os.environ["TDSYNC_TEST_STORE_PID"])
        self.port = int(os.environ["TDSYNC_TEST_STORE_PORT"])
        self.flag = Path(os.environ["TDSYNC_TEST_KILL_FLAG"])

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name != "update" or event.command.get("update") != "table_descriptions":
            return
        try:
            self.flag.unlink()
        except FileNotFoundError:
            return  # not armed
        os.kill(self.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            except OSError:
                return  # nothing listens any more
            time.sleep(0.02)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


if __name__ == "__main__":
    monitoring.register(KillStoreMidRefresh())  # before any client exists

    from tdsync.cli.main import main

    sys.exit(main(sys.argv[1:]))
