"""The tdsync HTTP API under uvicorn, instrumented for the benchmark (benchmarks/run.py).

`python benchmarks/api_server.py PORT` serves tdsync's own app (tdsync.api.app.create_app, the
settings from the environment) with three extra routes under /_bench:
- GET /_bench/counters, POST /_bench/counters/reset: the probes of benchmarks/probes.py
  (statements to sources, store round trips, garbage collection) in this server process;
- POST /_bench/naive-refresh {db_connection_id}: the naive baseline's refresh behind the same
  server, answering the same list of table descriptions, so both are compared end to end.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import probes  # noqa: E402  (listeners before any client exists)

COUNTERS = probes.install()
warnings.filterwarnings("ignore")

import naive  # noqa: E402
import uvicorn  # noqa: E402
from starlette.concurrency import run_in_threadpool  # noqa: E402

from tdsync.api.app import create_app  # noqa: E402
from tdsync.api.schemas import RefreshRequest  # noqa: E402
from tdsync.config.settings import Settings  # noqa: E402
from tdsync.domain.models import TableDescription  # noqa: E402
from tdsync.store.client import shared_store  # noqa: E402

settings = Settings.from_env()  # this server process's settings, read once
app = create_app(settings)


@app.get("/_bench/counters", include_in_schema=False)
def counters() -> dict:
    return COUNTERS.summary()


@app.post("/_bench/counters/reset", include_in_schema=False)
def reset_counters() -> dict:
    COUNTERS.reset()
    return {"ok": True}


@app.post(
    "/_bench/naive-refresh",
    status_code=201,
    response_model=list[TableDescription],
    include_in_schema=False,
)
async def naive_refresh(body: RefreshRequest) -> list[TableDescription]:
    return await run_in_threadpool(naive.refresh, shared_store(settings), body.db_connection_id)


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
