"""One measurement in a fresh process: `python benchmarks/worker.py SPEC_JSON` prints a JSON line.

The process first warms up (imports, the source's SQLAlchemy dialect, one run of the same kind on
a one-table SQLite connection) so that the figure is the steady cost of the operation, as in a
long-running API server or Dagster code server, not Python start-up. Then it measures one call.
"""

from __future__ import annotations

import cProfile
import json
import os
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import probes  # noqa: E402  (listeners before any client exists)

COUNTERS = probes.install()
warnings.filterwarnings("ignore")


def main(spec: dict) -> dict:
    os.environ.update(spec["env"])
    import dagster as dg
    import naive

    from tdsync.config.settings import Settings
    from tdsync.defs import runs
    from tdsync.sources.engine import create_source_engine
    from tdsync.store.client import shared_store

    settings = Settings.from_env()  # this measuring process's settings, read once

    store = shared_store(settings)
    instance = dg.DagsterInstance.ephemeral()
    kind = spec["kind"]

    def call(connection_id: str):
        if kind == "refresh":
            return runs.refresh(
                connection_id, trigger="cli", dagster_instance=instance, settings=settings
            )
        if kind == "naive_refresh":
            return len(naive.refresh(store, connection_id))
        if kind == "naive_scan":
            return naive.scan(store, connection_id)
        if kind == "scan":
            options = spec.get("scan_config")
            return runs.scan(
                connection_id,
                trigger="cli",
                options=options,
                dagster_instance=instance,
                settings=settings,
            )
        raise ValueError(kind)

    # Warm-up: the dialect and driver of the measured source, and one run of the same kind.
    create_source_engine(spec["source_uri"], settings=settings).dispose()
    warm = store.add_connection(alias=f"warm-up-{os.getpid()}", connection_uri=spec["warmup_uri"])
    if kind in ("scan", "naive_scan"):
        runs.refresh(warm.id, trigger="cli", dagster_instance=instance, settings=settings)
    call(warm.id)
    store.delete_connection(warm.id)

    rss_before = probes.rss_mb()
    COUNTERS.reset()
    profile = cProfile.Profile() if spec.get("profile") else None
    started = time.perf_counter()
    if profile:
        profile.enable()
    output = call(spec["connection_id"])
    wall = time.perf_counter() - started
    if profile:
        profile.disable()
        profile.dump_stats(spec["profile"])
    counts = COUNTERS.summary()
    return {
        "wall_s": wall,
        **counts,
        "rss_before_mb": rss_before,
        "peak_rss_mb": probes.peak_rss_mb(),
        "load_1m": os.getloadavg()[0],  # the machine's noise: other work on its 2 cores
        "output": output if isinstance(output, (dict, int, list)) else str(output),
    }


if __name__ == "__main__":
    result = main(json.loads(sys.argv[1]))
    print(json.dumps(result, default=str))
