"""Load traces (`timestamp,value` CSV) onto a regular step grid, keeping gaps as missing values.

Contract of `data/traces/README.md`: steps are regular except for rare gaps, and a gap is
missing, never zero. Invalid values (empty, non-numeric, NaN, infinite or negative) are missing too,
because a negative load or a NaN says "the meter failed", not "no load".
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

TUNING_SHARE = 0.7


@dataclass(frozen=True)
class Trace:
    """Load on a regular grid: `values[i]` is the load of the step starting `start_s + i*step_s`."""

    name: str
    start_s: float
    step_s: float
    values: NDArray[np.float64]

    @property
    def n(self) -> int:
        """Number of steps on the grid, gaps included."""
        return int(self.values.shape[0])

    @property
    def timestamps(self) -> NDArray[np.float64]:
        """Start of every step, in Unix seconds."""
        return self.start_s + self.step_s * np.arange(self.n, dtype=np.float64)

    @property
    def missing(self) -> int:
        """Number of steps without a valid measurement."""
        return int(np.count_nonzero(~np.isfinite(self.values)))

    @property
    def split_index(self) -> int:
        """First step of the validation part (the last ~30%); steps before it are for tuning."""
        return round(self.n * TUNING_SHARE)

    def peak(self) -> float:
        """Largest valid load of the series (what P replicas at 100% must serve)."""
        return float(np.nanmax(self.values))


def parse_timestamp(text: str) -> float:
    """Unix seconds of an ISO-8601 timestamp; a missing zone means UTC."""
    moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def parse_value(text: str) -> float:
    """A load value, or NaN when it is not a usable measurement (empty, NaN, infinite, negative)."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        return math.nan
    if not math.isfinite(value) or value < 0:
        return math.nan
    return value


def trace_from_points(
    name: str,
    times_s: NDArray[np.float64],
    values: NDArray[np.float64],
    step_s: float | None = None,
) -> Trace:
    """Place points on a regular grid of the median step; steps with no point stay NaN."""
    if times_s.shape != values.shape or times_s.size == 0:
        raise ValueError(f"{name}: need equally long, non-empty timestamp and value arrays")
    order = np.argsort(times_s, kind="stable")
    times_s, values = times_s[order], values[order]
    if step_s is None:
        deltas = np.diff(times_s)
        deltas = deltas[deltas > 0]
        if deltas.size == 0:
            raise ValueError(f"{name}: cannot infer a step from a single timestamp")
        step_s = float(np.median(deltas))
    start = float(times_s[0])
    # Rounding snaps slightly jittered timestamps onto the grid; a duplicate keeps the last value.
    slots = np.rint((times_s - start) / step_s).astype(np.int64)
    grid = np.full(int(slots[-1]) + 1, np.nan)
    clean = np.where(np.isfinite(values) & (values >= 0), values, np.nan)
    grid[slots] = clean
    return Trace(name=name, start_s=start, step_s=step_s, values=grid)


def load_trace(path: str | Path) -> Trace:
    """Read a `timestamp,value` CSV into a `Trace`; gaps and invalid values become NaN."""
    path = Path(path)
    times: list[float] = []
    values: list[float] = []
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"timestamp", "value"} <= set(reader.fieldnames):
            raise ValueError(f"{path}: expected the header 'timestamp,value'")
        for row in reader:
            if not row.get("timestamp"):
                continue
            times.append(parse_timestamp(row["timestamp"]))
            values.append(parse_value(row.get("value") or ""))
    if not times:
        raise ValueError(f"{path}: no rows")
    return trace_from_points(path.stem, np.asarray(times), np.asarray(values))


def find_traces(directory: str | Path) -> list[Path]:
    """Every trace CSV under a folder (recursively), skipping the manifest; sorted by name."""
    root = Path(directory)
    found = [p for p in root.rglob("*.csv") if p.name.lower() != "manifest.csv"]
    return sorted(found, key=lambda p: (p.stem, str(p)))
