"""Synthetic load shapes for robustness tests: each a seeded, deterministic `Trace`.

The real traces cover daily cycles and noise; these cover the shapes autoscalers get wrong, each
with a known answer: a flash crowd, daily plus weekly seasonality, a level shift, a random walk
(nothing to forecast) and an outage followed by the traffic coming back at once. Shapes follow
the usual generators of the autoscaling literature (sinusoidal cycles with multiplicative noise,
geometric random walks, step changes); `write_all` saves them as `timestamp,value` CSVs so
`python -m decision.cli evaluate` can run on them as on any other trace folder.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from decision.models.trace import Trace

DAY_S = 86400.0
START_S = datetime(2024, 1, 1, tzinfo=UTC).timestamp()  # a Monday, so weekends fall on days 5-6


def _grid(days: float, step_s: float) -> np.ndarray:
    """Seconds since the start of every step."""
    return step_s * np.arange(round(days * DAY_S / step_s), dtype=np.float64)


def _daily(t: np.ndarray, amplitude: float) -> np.ndarray:
    """A smooth daily cycle around 1, lowest at 04:00 and highest at 16:00."""
    return 1.0 + amplitude * np.sin(2 * math.pi * (t / DAY_S - 10 / 24))


def flash_crowd(seed: int = 1, days: float = 4.0, step_s: float = 60.0) -> Trace:
    """A mild daily cycle with two flash crowds: 5x the load within two steps, for 40 minutes."""
    rng = np.random.default_rng(seed)
    t = _grid(days, step_s)
    load = 100.0 * _daily(t, 0.2) * (1 + rng.normal(0, 0.03, t.size))
    for start_day in (1.55, 3.35):  # one in the tuning part, one in the validation part
        start = round(start_day * DAY_S / step_s)
        ramp, hold, decay = 2, round(2400 / step_s), round(1800 / step_s)
        shape = np.concatenate(
            [np.linspace(0.5, 1.0, ramp), np.ones(hold), np.linspace(1.0, 0.0, decay)]
        )
        end = min(start + shape.size, t.size)
        load[start:end] *= 1 + 4.0 * shape[: end - start]
    return Trace("synthetic-flash-crowd", START_S, step_s, load)


def daily_weekly(seed: int = 2, days: float = 21.0, step_s: float = 300.0) -> Trace:
    """A strong daily cycle whose weekend days carry 60% of the weekday load."""
    rng = np.random.default_rng(seed)
    t = _grid(days, step_s)
    weekday = (t // DAY_S).astype(np.int64) % 7
    week = np.where(weekday >= 5, 0.6, 1.0)
    load = 100.0 * week * _daily(t, 0.6) * (1 + rng.normal(0, 0.03, t.size))
    return Trace("synthetic-daily-weekly", START_S, step_s, load)


def level_shift(seed: int = 3, days: float = 4.0, step_s: float = 60.0) -> Trace:
    """A daily cycle whose level doubles at once on day 3.1 and stays there."""
    rng = np.random.default_rng(seed)
    t = _grid(days, step_s)
    level = np.where(t >= 3.1 * DAY_S, 200.0, 100.0)
    load = level * _daily(t, 0.3) * (1 + rng.normal(0, 0.03, t.size))
    return Trace("synthetic-level-shift", START_S, step_s, load)


def random_walk(seed: int = 4, days: float = 4.0, step_s: float = 60.0) -> Trace:
    """A geometric random walk (weakly pulled back to its start): nothing to forecast."""
    rng = np.random.default_rng(seed)
    n = round(days * DAY_S / step_s)
    log_load = np.empty(n)
    x = 0.0
    for i, shock in enumerate(rng.normal(0, 0.01, n)):
        x += shock - 0.001 * x
        log_load[i] = x
    return Trace("synthetic-random-walk", START_S, step_s, 100.0 * np.exp(log_load))


def outage_recovery(seed: int = 5, days: float = 4.0, step_s: float = 60.0) -> Trace:
    """A daily cycle cut to 2% for 40 minutes on day 3.5 (an upstream outage), then back at once."""
    rng = np.random.default_rng(seed)
    t = _grid(days, step_s)
    load = 100.0 * _daily(t, 0.3) * (1 + rng.normal(0, 0.03, t.size))
    start = round(3.5 * DAY_S / step_s)
    load[start : start + round(2400 / step_s)] *= 0.02
    return Trace("synthetic-outage-recovery", START_S, step_s, load)


SCENARIOS: dict[str, Callable[[], Trace]] = {
    "flash-crowd": flash_crowd,
    "daily-weekly": daily_weekly,
    "level-shift": level_shift,
    "random-walk": random_walk,
    "outage-recovery": outage_recovery,
}


def write_trace(trace: Trace, path: Path) -> Path:
    """Save a trace as the `timestamp,value` CSV the loader reads."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["timestamp,value"]
    for ts, value in zip(trace.timestamps, trace.values, strict=True):
        stamp = datetime.fromtimestamp(float(ts), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        lines.append(f"{stamp},{value:.4f}")
    path.write_text("\n".join(lines) + "\n")
    return path


def write_all(directory: str | Path) -> list[Path]:
    """Write every scenario under `directory/synthetic/` (the folder names the family)."""
    folder = Path(directory) / "synthetic"
    traces = [make() for make in SCENARIOS.values()]
    return [write_trace(trace, folder / f"{trace.name}.csv") for trace in traces]
