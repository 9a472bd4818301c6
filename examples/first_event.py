"""Show one event travelling through the running platform.

The application is declared in the CMDB with its owner team, then an agent of that team pushes one
window of the application's load to the monitor (an authenticated HTTP write);
the monitor records it and, in the same database transaction, puts `metric-observed` in its outbox;
the relay publishes it to Kafka; the decision center consumes it exactly once into its load
history. The script prints each hop, the event as an independent Kafka client (kcat) sees it, and
the trace id that links them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from ooda.auth import issue_token
from ooda.testing import read_env_file

REPO = Path(__file__).resolve().parents[1]
ENV = read_env_file(Path(os.environ.get("OODA_LOCAL_DIR", REPO / ".local")) / "ooda.env")
CMDB = f"http://127.0.0.1:{os.environ.get('CMDB_PORT', '8001')}"
MONITOR = f"http://127.0.0.1:{os.environ.get('MONITOR_PORT', '8003')}"
DECISION = f"http://127.0.0.1:{os.environ.get('DECISION_PORT', '8005')}"


def step(text: str) -> None:
    print(f"\n\033[1m==> {text}\033[0m")


def main() -> int:
    app, team = "demo-shop", "demo"
    # An agent pushes only for its own team's applications (the owner the CMDB records).
    scopes = ["metrics:push", f"team:{team}"]
    token = issue_token(
        ENV["OODA_AUTH_SECRET"], "demo-agent", scopes, 600, audience=["cmdb", "monitor"]
    )
    step(f"PUT {CMDB}/v1/apps/{app} owned by team {team}")
    declared = httpx.put(
        f"{CMDB}/v1/apps/{app}",
        json={"owner_team": team},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    print(declared.status_code)
    declared.raise_for_status()
    end = datetime.now(UTC).replace(microsecond=0)
    body = {
        "window_start": (end - timedelta(seconds=5)).isoformat(),
        "window_end": end.isoformat(),
        "values": {"request_rate": 240.0, "latency_p99_ms": 83.0, "ready_instances": 3},
        "instance_count": 3,
    }
    step(f"POST {MONITOR}/v1/apps/{app}/observations as demo-agent")
    posted = httpx.post(
        f"{MONITOR}/v1/apps/{app}/observations",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    print(posted.status_code, json.dumps(posted.json(), indent=2))
    posted.raise_for_status()
    event_id = posted.json()["event_id"]

    step(f"Waiting for the decision center to consume event {event_id}")
    started = time.monotonic()
    point = None
    while time.monotonic() - started < 30 and point is None:
        history = httpx.get(f"{DECISION}/v1/apps/{app}/load", timeout=5).json()
        point = next((p for p in history if p["event_id"] == event_id), None)
        time.sleep(0.1)
    if point is None:
        print("the event did not arrive within 30 s; see `make status` and .local/logs/")
        return 1
    print(f"arrived after {time.monotonic() - started:.2f}s:", json.dumps(point, indent=2))

    step("The record on topic metric-observed, as kcat (an independent Kafka client) reads it")
    kcat = shutil.which("kcat")
    if kcat:
        out = subprocess.run(
            [
                kcat,
                "-b",
                ENV["OODA_KAFKA_BOOTSTRAP"],
                "-C",
                "-t",
                "metric-observed",
                "-o",
                "beginning",
                "-e",
                "-q",
                "-f",
                "key=%k headers=%h\nvalue=%s\n",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        mine = [block for block in out.stdout.split("key=") if event_id in block]
        print("key=" + mine[-1] if mine else out.stdout[-2000:])
    else:
        print("kcat is not installed; `apt-get install kcat` to see the raw record")

    step("Where to look next")
    print(f"trace id {point['trace_id']} links the HTTP request, the outbox write and the consume")
    print(f"API docs: {MONITOR}/docs  {DECISION}/docs  (all five: `make status`)")
    print("metrics:  curl -s " + DECISION + "/metrics | grep ooda_consumer")
    print("stop:     make down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
