"""Shell (HTTP): `GET /heartbeat`: the Dataherald engine's liveness probe (its own API test calls it).

Unlike /health it looks at nothing but the process, and needs the API key when one is set.
"""

from __future__ import annotations

import time

from fastapi import APIRouter

router = APIRouter(tags=["health"])


@router.get(
    "/heartbeat", summary="The server's time in nanoseconds, as the Dataherald engine answers"
)
def heartbeat() -> int:
    return time.time_ns()
