"""Cumulative histograms merged across instances, and quantiles the way Prometheus computes them."""

import math
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Histogram:
    """Cumulative observation counts by bucket upper bound, ascending, the last bound +Inf."""

    bounds: tuple[float, ...] = ()
    counts: tuple[float, ...] = ()

    @classmethod
    def from_buckets(cls, buckets: Mapping[float, float]) -> "Histogram":
        """Build from cumulative counts keyed by upper bound, forcing counts to be monotonic."""
        bounds = tuple(sorted(buckets))
        counts: list[float] = []
        running = 0.0
        for bound in bounds:
            # Buckets are scraped non-atomically, so a later bucket can briefly read lower;
            # Prometheus' histogram_quantile evens this out the same way.
            running = max(running, buckets[bound])
            counts.append(running)
        return cls(bounds, tuple(counts))

    @property
    def total(self) -> float:
        """How many observations the histogram holds."""
        return self.counts[-1] if self.counts else 0.0

    def cumulative_at(self, bound: float) -> float:
        """Observations at or below `bound`, as a step function of the known buckets."""
        index = bisect_right(self.bounds, bound)
        return self.counts[index - 1] if index else 0.0

    def quantile(self, q: float) -> float | None:
        """The q-quantile by linear interpolation within its bucket, as histogram_quantile does."""
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile must be within [0, 1], got {q}")
        if len(self.bounds) < 2 or not math.isinf(self.bounds[-1]) or self.total <= 0:
            return None
        rank = q * self.total
        index = next(i for i, count in enumerate(self.counts) if count >= rank)
        if index == len(self.bounds) - 1:
            return self.bounds[-2]
        if index == 0 and self.bounds[0] <= 0:
            return self.bounds[0]
        start = self.bounds[index - 1] if index else 0.0
        below = self.counts[index - 1] if index else 0.0
        in_bucket = self.counts[index] - below
        return start + (self.bounds[index] - start) * (rank - below) / in_bucket

    def count_above(self, threshold: float) -> float:
        """Observations slower than `threshold`, interpolating linearly inside its bucket."""
        index = bisect_right(self.bounds, threshold)
        if index == len(self.bounds):
            return 0.0
        start = self.bounds[index - 1] if index else 0.0
        below = self.counts[index - 1] if index else 0.0
        end = self.bounds[index]
        if math.isinf(end) or threshold <= start:
            return self.total - below
        at_threshold = below + (self.counts[index] - below) * (threshold - start) / (end - start)
        return self.total - at_threshold


def merge(histograms: Iterable[Histogram]) -> Histogram:
    """Sum histograms bucket by bucket, as `sum by (le)` does, over the union of their bounds."""
    parts = [h for h in histograms if h.bounds]
    bounds = sorted({bound for h in parts for bound in h.bounds})
    return Histogram.from_buckets(
        {bound: sum(h.cumulative_at(bound) for h in parts) for bound in bounds}
    )
