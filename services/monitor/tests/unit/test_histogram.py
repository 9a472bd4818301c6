"""Quantiles from cumulative histograms, merged across instances as Prometheus does."""

import math

import pytest

from monitor.domain import Histogram, merge

pytestmark = pytest.mark.unit

INF = math.inf
# 100 fast requests on one instance, 10 slow ones on another: the same bucket layout.
FAST = Histogram.from_buckets({0.1: 100, 0.5: 100, 1.0: 100, INF: 100})
SLOW = Histogram.from_buckets({0.1: 0, 0.5: 0, 1.0: 10, INF: 10})


def quantile(histogram: Histogram, q: float) -> float:
    value = histogram.quantile(q)
    assert value is not None
    return value


def test_a_quantile_interpolates_linearly_within_its_bucket():
    assert FAST.quantile(0.99) == pytest.approx(0.099)
    assert SLOW.quantile(0.99) == pytest.approx(0.995)


def test_quantiles_of_merged_histograms_match_a_hand_computed_value():
    merged = merge([FAST, SLOW])

    assert merged.counts == (100, 100, 110, 110)
    # rank 0.99 * 110 = 108.9 lands in (0.5, 1.0], 8.9 of its 10: 0.5 + 0.5 * 0.89
    assert merged.quantile(0.99) == pytest.approx(0.945)
    # rank 55 lands in (0, 0.1], 55 of its 100
    assert merged.quantile(0.5) == pytest.approx(0.055)


def test_merged_quantiles_differ_from_averaged_percentiles_when_load_is_skewed():
    merged = merge([FAST, SLOW])
    averaged_p50 = (quantile(FAST, 0.5) + quantile(SLOW, 0.5)) / 2
    averaged_p99 = (quantile(FAST, 0.99) + quantile(SLOW, 0.99)) / 2

    assert averaged_p50 == pytest.approx(0.4)
    assert merged.quantile(0.5) == pytest.approx(0.055)
    assert averaged_p99 == pytest.approx(0.547)
    assert merged.quantile(0.99) == pytest.approx(0.945)


def test_a_rank_in_the_inf_bucket_gives_the_highest_finite_bound():
    histogram = Histogram.from_buckets({0.1: 1, 0.5: 2, INF: 10})

    assert histogram.quantile(0.9) == 0.5


def test_a_histogram_without_observations_has_no_quantile():
    assert Histogram.from_buckets({0.1: 0, INF: 0}).quantile(0.5) is None
    assert Histogram().quantile(0.99) is None


def test_buckets_read_out_of_order_are_made_monotonic():
    histogram = Histogram.from_buckets({0.1: 5, 0.5: 4, INF: 6})

    assert histogram.counts == (5, 5, 6)


def test_observations_above_a_threshold_interpolate_within_the_bucket():
    merged = merge([FAST, SLOW])

    assert merged.count_above(0.5) == 10
    assert merged.count_above(0.75) == pytest.approx(5)
    assert merged.count_above(0.05) == pytest.approx(60)
    assert merged.count_above(2.0) == 0


def test_merging_different_bucket_layouts_sums_each_as_a_step_function():
    coarse = Histogram.from_buckets({1.0: 4, INF: 4})
    fine = Histogram.from_buckets({0.5: 2, 1.0: 3, INF: 3})

    merged = merge([coarse, fine])

    assert merged.bounds == (0.5, 1.0, INF)
    assert merged.counts == (2, 7, 7)
