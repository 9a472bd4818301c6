"""Health gates a batch must pass: each new instance's readiness, then any metric gates."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import httpx


@dataclass(frozen=True)
class GateInstance:
    """A new instance of a batch, as gates see it."""

    id: str
    app: str
    version: str
    zone: str
    endpoint: str


class MetricGate(Protocol):
    """A verdict on a batch from observed metrics (error rate, latency): None passes, else why."""

    async def check(self, app: str, new: Sequence[GateInstance]) -> str | None:
        """Return None when the batch looks healthy, or the reason it does not."""
        ...


async def wait_ready(
    client: httpx.AsyncClient,
    url: str,
    timeout_s: float,
    alive: Callable[[], bool],
    interval_s: float = 0.1,
) -> str | None:
    """Poll `url` until it answers 200: None when it did in time, else why not."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    last = "no answer"
    while loop.time() < deadline:
        if not alive():
            return "its process exited"
        try:
            response = await client.get(url, timeout=2.0)
            if response.status_code == 200:
                return None
            last = f"answered {response.status_code}"
        except httpx.HTTPError as error:
            last = type(error).__name__
        await asyncio.sleep(interval_s)
    return f"not ready within {timeout_s:g}s (last: {last})"
