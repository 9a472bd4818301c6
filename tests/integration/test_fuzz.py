"""Every service under schemathesis: no server error and every answer as its OpenAPI document
says (status, content type, body schema), with a fixed seed and a small budget of examples.

The five runs go side by side (each mostly waits for its service). `make fuzz` runs the same with
a larger budget (`OODA_FUZZ_MAX_EXAMPLES`, `OODA_FUZZ_SECONDS`)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from ooda.testing import SERVICES

from .conftest import Platform
from .fuzz import run_schemathesis

pytestmark = pytest.mark.integration

MAX_EXAMPLES = int(os.environ.get("OODA_FUZZ_MAX_EXAMPLES", "5"))
SECONDS = float(os.environ["OODA_FUZZ_SECONDS"]) if "OODA_FUZZ_SECONDS" in os.environ else None


@pytest.mark.timeout(7200)
async def test_schemathesis_finds_no_server_error_and_no_schema_violation_in_any_service(
    platform: Platform, tmp_path: Path
) -> None:
    token = platform.token("fuzzer", "admin")["Authorization"].removeprefix("Bearer ")
    runs = await asyncio.gather(
        *(
            asyncio.to_thread(
                run_schemathesis,
                service,
                platform.url(service),
                token,
                tmp_path,
                MAX_EXAMPLES,
                max_time_s=SECONDS,
            )
            for service in SERVICES
        )
    )
    print("\n" + "\n".join(run.summary() for run in runs))
    for run in runs:
        assert run.requests > 0 and run.operations > 0, run.output[-5000:]
    dirty = [run for run in runs if not run.clean]
    assert not dirty, "\n\n".join(f"{run.summary()}\n{run.output[-20000:]}" for run in dirty)
