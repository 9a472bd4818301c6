"""The closed-loop demo's pure parts: finding and slicing a trace, live (U, O), the report files."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from decision.models.trace import Trace
from ooda.testing import REPO

sys.path.insert(0, str(REPO / "examples"))
from demo import report

pytestmark = pytest.mark.unit

MINUTE = 60.0


def minutes_trace(values: list[float], start_s: float = 1_500_000_000.0) -> Trace:
    return Trace("hand", start_s, MINUTE, np.array(values, dtype=np.float64))


def test_the_slice_holds_the_chosen_minutes_and_whole_history_windows_ending_where_it_begins():
    trace = minutes_trace([float(i) for i in range(3000)])
    piece = report.slice_trace(trace, start=2000, minutes=30, history_days=1 / 24, window_s=300)
    assert piece.values == [float(i) for i in range(2000, 2030)]
    assert piece.start_s == trace.start_s + 2000 * MINUTE
    assert len(piece.history) == 12  # one hour in 5-minute windows
    assert piece.history[-1].end_s == piece.start_s
    assert piece.history[0].start_s == piece.start_s - 3600
    assert piece.history[0].mean == pytest.approx(sum(range(1940, 1945)) / 5)


def test_history_windows_skip_gaps_instead_of_reading_them_as_zero():
    values = [10.0] * 20 + [math.nan] * 5 + [20.0, math.nan, 20.0, 20.0, 20.0] + [30.0] * 10
    piece = report.slice_trace(minutes_trace(values), start=30, minutes=10, history_days=1)
    assert [w.mean for w in piece.history] == [10.0, 10.0, 10.0, 10.0, 20.0]
    assert piece.peak == 30.0


def test_history_windows_need_not_hold_a_whole_number_of_steps():
    piece = report.slice_trace(
        minutes_trace([float(i) for i in range(100)]),
        start=60,
        minutes=5,
        history_days=1,
        window_s=150,
    )
    assert len(piece.history) == 24  # 60 minutes of 150-s windows
    assert piece.history[-1].mean == pytest.approx((58 + 59) / 2)  # steps starting in 57.5..60 min
    assert piece.history[-2].mean == pytest.approx((55 + 56 + 57) / 3)  # in 55..57.5 min
    assert piece.history[-1].end_s == piece.start_s


def test_compressed_history_keeps_its_means_and_ends_where_the_live_clock_says():
    history = [report.Window(0.0, 300.0, 1.0), report.Window(300.0, 600.0, 2.0)]
    live = report.compress_history(history, live_start_s=1000.0, ratio=30.0)
    assert live == [report.Window(980.0, 990.0, 1.0), report.Window(990.0, 1000.0, 2.0)]


def test_a_slice_past_the_end_of_the_trace_is_refused_with_a_clear_message():
    with pytest.raises(report.DemoError, match="run past its end"):
        report.slice_trace(minutes_trace([1.0] * 100), start=90, minutes=20, history_days=0)


def test_the_traces_folder_is_the_repositorys_own_with_no_folder_beside_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.delenv("OODA_TRACES_DIR", raising=False)
    shipped = report.find_traces_dir(REPO)
    assert shipped == REPO / "data" / "traces"
    assert report.resolve_trace(shipped, "mongo-01") == shipped / "msft" / "mongo-01.csv"
    # A folder named like the old sibling layout is never looked for.
    beside = tmp_path / "shared" / "data" / "traces"
    beside.mkdir(parents=True)
    (beside / "MANIFEST.csv").write_text("name\n")
    lonely = tmp_path / "repo"
    lonely.mkdir()
    with pytest.raises(report.DemoError, match="OODA_TRACES_DIR"):
        report.find_traces_dir(lonely)


def test_a_traces_folder_can_be_given_and_its_series_are_found_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.delenv("OODA_TRACES_DIR", raising=False)
    traces = tmp_path / "mine"
    (traces / "msft").mkdir(parents=True)
    (traces / "MANIFEST.csv").write_text("name\n")
    (traces / "msft" / "mongo-01.csv").write_text("timestamp,value\n")
    assert report.find_traces_dir(REPO, str(traces)) == traces
    monkeypatch.setenv("OODA_TRACES_DIR", str(traces))
    assert report.find_traces_dir(REPO) == traces
    assert report.resolve_trace(traces, "msft/mongo-01") == traces / "msft" / "mongo-01.csv"
    with pytest.raises(report.DemoError, match="known: mongo-01"):
        report.resolve_trace(traces, "nope")
    with pytest.raises(report.DemoError, match="OODA_TRACES_DIR"):
        report.find_traces_dir(REPO, str(tmp_path / "missing"))


def test_u_is_the_share_of_saturated_steps_and_o_compares_ready_with_the_oracle():
    capacity, target = 10.0, 0.5  # the oracle keeps ceil(L / 5) instances
    load = [10.0, 20.0, 31.0, math.nan, 5.0]
    ready = [2, 4, 3, 9, 2]
    u, o = report.live_u_o(load, ready, capacity, target)
    assert u == pytest.approx(1 / 4)  # only 31 > 3 x 10; the missing step is left out
    assert o == pytest.approx((2 + 4 + 3 + 2) / (2 + 4 + 7 + 1) - 1)


def test_the_oracle_rounds_up_and_keeps_nothing_for_no_load():
    assert report.oracle(24.0, 40.0, 0.6) == 1
    assert report.oracle(24.01, 40.0, 0.6) == 2
    assert report.oracle(0.0, 40.0, 0.6) == 0


def test_decisions_are_matched_to_their_elastic_change_for_the_latency():
    decisions = [
        {"decision_id": "d1", "decided_at": "2026-11-30T02:00:00Z", "desired_replicas": 4},
        {"decision_id": "d2", "decided_at": "2026-11-30T02:01:00Z", "desired_replicas": 3},
    ]
    changes = [
        {
            "id": "c1",
            "request_id": "elastic/a/d1",
            "state": "succeeded",
            "finished_at": "2026-11-30T02:00:02.5Z",
        }
    ]
    out = report.decision_latencies("a", decisions, changes)
    assert [(x["change_id"], x["state"], x["seconds"]) for x in out] == [
        ("c1", "succeeded", 2.5),
        (None, "no change", None),
    ]
    assert report.percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0
    assert report.percentile([1.0, 2.0, 3.0, 4.0], 95) == 4.0
    assert math.isnan(report.percentile([], 50))


def test_the_report_writes_a_plot_and_a_summary_that_agree(tmp_path: Path):
    rows = [
        report.StepRow(
            step=i,
            t_s=2.0 * i,
            trace_value=v,
            offered_rps=v * 2,
            served_rps=v * 2,
            failed=0,
            slow=0,
            dropped=0,
            ready=r,
        )
        for i, (v, r) in enumerate([(20.0, 2), (60.0, 2), (60.0, 4), (20.0, 4)])
    ]
    run = report.RunData(
        app="demo-x",
        trace="hand",
        start_index=0,
        trace_start="2018-04-29T06:00:00+00:00",
        minutes=4,
        seconds_per_minute=2,
        capacity_rps=40.0,
        target_utilisation=0.6,
        peak_rps=120.0,
        started_at=1_796_000_000.0,
        wall_s=12.0,
        history_posted=10,
        history_stepped=9,
        steps=rows,
        decisions=[
            {
                "decision_id": "d1",
                "decided_at": "2026-11-30T02:13:22Z",
                "desired_replicas": 4,
                "forecast": {"value": 110.0},
            }
        ],
        changes=[
            {
                "id": "c1",
                "kind": "scale",
                "request_id": "elastic/demo-x/d1",
                "state": "succeeded",
                "finished_at": "2026-11-30T02:13:23Z",
                "target": {"replicas": 4},
            }
        ],
        events={
            "scale-decided": {"during_run": 1, "total": 5},
            "x.dlq": {"during_run": 0, "total": 2},
        },
    )
    paths = report.write_report(run, tmp_path / "out")
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads(paths["json"].read_text())
    # 120 req/s on 2 instances of 40 is saturated: one step of four.
    assert summary["U"] == pytest.approx(0.25)
    assert summary["O"] == pytest.approx((2 + 2 + 4 + 4) / (2 + 5 + 5 + 2) - 1)
    assert summary["decision_to_ready_s"] == {"n": 1, "p50": 1.0, "p95": 1.0}
    assert summary["changes"]["outcomes"] == {"scale:succeeded": 1}
    assert summary["dead_letters_during_run"] == 0
    text = paths["markdown"].read_text()
    assert "# Closed-loop demo: demo-x" in text
    fig = report.figure(run, summary)
    top, bottom = fig.axes
    assert "demo-x" in top.get_title() and "hand" in top.get_title()
    assert top.get_ylabel() == "requests / s" and bottom.get_ylabel() == "instances"
    assert bottom.get_xlabel() == "seconds since the replay began"
    assert {t.get_text() for t in top.get_legend().get_texts()} >= {"offered load", "forecast"}
    assert {t.get_text() for t in bottom.get_legend().get_texts()} >= {"ready instances"}
    (caption,) = [t.get_text() for t in fig.texts]
    assert "U = 0.25 " in caption and f"O = {summary['O']:.3g} " in caption
    assert "| scale-decided | 1 | 5 |" in text
