"""Schemathesis against one running service's published OpenAPI document, as a user would run it.

Used by `test_fuzz.py` (a small budget, in the suite) and `make fuzz` (a long run): both run the
`schemathesis` command with a fixed seed and read its JSON report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
)
PHASES = ("examples", "coverage", "fuzzing", "stateful")
SEED = 20261207


@dataclass
class FuzzRun:
    """What one schemathesis run did and found."""

    service: str
    requests: int
    operations: int
    failures: list[dict[str, Any]]
    errors: list[Any]
    output: str

    @property
    def clean(self) -> bool:
        """No failed check and no error of the run itself."""
        return not self.failures and not self.errors

    def summary(self) -> str:
        """One line for the report, plus each failure kind with its operations."""
        lines = [
            f"{self.service}: {self.requests} generated cases over {self.operations} operations,"
            f" {sum(f.get('count', 1) for f in self.failures)} failures, {len(self.errors)} errors"
        ]
        for failure in self.failures:
            lines.append(f"  {failure['title']} x{failure['count']}: {failure['operations']}")
        return "\n".join(lines)


def run_schemathesis(
    service: str,
    base_url: str,
    token: str,
    report_dir: Path,
    max_examples: int,
    seed: int = SEED,
    max_time_s: float | None = None,
    workers: int = 1,
) -> FuzzRun:
    """Run every phase of schemathesis against `base_url`/openapi.json with an admin `token`."""
    report_dir = report_dir / service
    report_dir.mkdir(parents=True, exist_ok=True)
    report = report_dir / "report.json"
    command = [
        str(Path(sys.executable).parent / "schemathesis"),
        "run",
        f"{base_url}/openapi.json",
        "--header",
        f"Authorization: Bearer {token}",
        "--checks",
        ",".join(CHECKS),
        "--phases",
        ",".join(PHASES),
        "--seed",
        str(seed),
        "--max-examples",
        str(max_examples),
        "--workers",
        str(workers),
        "--request-timeout",
        "30",
        "--report",
        "json",
        "--report-json-path",
        str(report),
        "--no-color",
    ]
    if max_time_s is not None:
        command += ["--max-time", str(int(max_time_s))]
    env = dict(os.environ) | {"NO_COLOR": "1", "COLUMNS": "160"}
    # Run in the report's folder: schemathesis keeps a cache of past failures in its working
    # directory, and a fresh one keeps each run determined by its seed alone.
    done = subprocess.run(
        command, capture_output=True, text=True, env=env, check=False, cwd=report_dir
    )
    output = done.stdout + done.stderr
    if not report.exists():
        raise AssertionError(f"schemathesis wrote no report for {service}:\n{output[-5000:]}")
    found = json.loads(report.read_text())
    return FuzzRun(
        service=service,
        requests=int((found.get("test_cases") or {}).get("generated", 0)),
        operations=int((found.get("operations") or {}).get("tested", 0)),
        failures=list(found["failures"]),
        errors=list(found["errors"]),
        output=output,
    )
