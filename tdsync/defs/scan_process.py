"""Shell (Dagster): the scan run in a detached process, how `local` starts a requested scan.

In `local`, where no dagster-daemon may be running, a detached process
(`python -m tdsync.defs.scan_process REQUEST.json`) runs the scan job with the run id its rows
were claimed under, through tdsync.defs.runs: the run is recorded on the DAGSTER_HOME instance
like any other, needs no dagster-daemon, and survives a restart of the API that started it. If
that process dies, its rows turn FAILED: at once when the API is still there to see it exit, else
when their lease runs out (the next refresh or scan, or the run-failure sensor).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

from tdsync.config.settings import Settings
from tdsync.defs.tags import WEBHOOK_TRIGGER
from tdsync.domain.errors import TdsyncError
from tdsync.services import connection_lease
from tdsync.store import CatalogueStore

MODULE = "tdsync.defs.scan_process"


def start_detached_scan(
    store: CatalogueStore,
    settings: Settings,
    *,
    connection_id: str,
    run_id: str,
    table_names: list[str] | None = None,
    description_ids: list[str] | None = None,
) -> subprocess.Popen:
    """Start the scan run in its own process and session; returns at once."""
    folder = settings.home / "scans"
    folder.mkdir(parents=True, exist_ok=True)
    request = folder / f"{run_id}.json"
    request.write_text(
        json.dumps(
            {
                "db_connection_id": connection_id,
                "run_id": run_id,
                "table_names": table_names,
                "description_ids": description_ids,
            }
        )
    )
    with open(folder / "scan-runs.log", "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", MODULE, str(request)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=_child_env(settings),
            start_new_session=True,  # an API stopped with Ctrl-C does not take the scan with it
        )
    threading.Thread(
        target=_settle_when_done,
        args=(process, store, connection_id, run_id),
        name=f"tdsync-scan-{run_id[:8]}",
        daemon=True,
    ).start()
    return process


def _settle_when_done(
    process: subprocess.Popen, store: CatalogueStore, connection_id: str, run_id: str
) -> None:
    # Also reaps the child, so no zombie is left behind in a long-running API.
    code = process.wait()
    if code != 0:
        # If the store is down, the lease settles these rows later.
        with contextlib.suppress(TdsyncError):
            store.fail_synchronizing(
                connection_id,
                error_message=f"scan run {run_id} ended before finishing (exit code {code})",
                scan_run_id=run_id,
            )
        # A run killed before it let go of the connection's lease would hold up the next
        # refresh or scan of the connection until the lease expires. (A no-op if it did.)
        with contextlib.suppress(TdsyncError):
            connection_lease.release(store, run_id, succeeded=False)


def _child_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    values = {
        "TDSYNC_HOME": str(settings.home),
        "TDSYNC_MONGO_URI": settings.mongo_uri,
        "TDSYNC_MONGO_DB": settings.mongo_db,
        "TDSYNC_ENCRYPTION_KEY": settings.encryption_key,
        "DAGSTER_HOME": str(settings.dagster_home),
        "TDSYNC_SOURCE_TIMEOUT_S": str(settings.source_timeout_s),
        "TDSYNC_SCAN_LEASE_S": str(settings.scan_lease_s),
        "TDSYNC_SCAN_STALL_S": str(settings.scan_stall_s),
    }
    env.update({k: v for k, v in values.items() if v is not None})
    return env


def main(argv: list[str] | None = None) -> int:
    """The detached process: run the scan job for one request file, then delete the file."""
    from tdsync.defs import runs
    from tdsync.store.client import shared_store

    settings = Settings.from_env()  # the environment _child_env gave this process
    path = Path((argv if argv is not None else sys.argv[1:])[0])
    request = json.loads(path.read_text())
    path.unlink(missing_ok=True)
    try:
        summary = runs.scan(
            request["db_connection_id"],
            trigger=WEBHOOK_TRIGGER,
            table_names=request.get("table_names"),
            description_ids=request.get("description_ids"),
            run_id=request["run_id"],
            settings=settings,
        )
    except TdsyncError as exc:
        # E.g. the connection stayed busy, or the source is unreachable: nothing may stay
        # SYNCHRONIZING because of it.
        shared_store(settings).fail_synchronizing(
            request["db_connection_id"],
            error_message=f"scan failed: {exc.message}",
            scan_run_id=request["run_id"],
        )
        print(f"scan run {request['run_id']}: {exc.error_code}: {exc.message}", file=sys.stderr)
        return 1
    print(f"scan run {request['run_id']}: {json.dumps(summary)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
