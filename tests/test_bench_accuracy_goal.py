"""The accuracy benchmark's goal lines: each criterion of issue 15 judged from the measured figures."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_accuracy.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_accuracy", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_accuracy", module)
    spec.loader.exec_module(module)
    return module


def test_goal_lines_say_which_criteria_fail_and_why() -> None:
    bench = _bench()
    ours = [(0.9632, 0.9569, 262.0, 234.0), (0.9602, 0.9545, 250.0, 230.0), (0.9654, 0.9547, 255.0, 236.0)]
    plain = [(0.680, 0.274, 276.0, 276.0), (0.609, 0.293, 270.0, 270.0), (0.533, 0.209, 280.0, 280.0)]
    mean, worst, fit, ahead = bench.goal_lines(ours, plain)
    assert mean.startswith("mean IoU >= 0.97 on every seed: NOT met") and "0.9602-0.9654" in mean
    assert worst.startswith("worst scan >= 0.95 on every seed: met")
    assert fit.startswith("fit <= 180 s on every seed: NOT met") and "234, 230, 236 s" in fit
    assert ahead.startswith("ahead of the plain script at equal wall time: met")


def test_goal_lines_refuse_a_slower_or_worse_armseg_and_a_missing_plain_side() -> None:
    bench = _bench()
    ours = [(0.975, 0.960, 150.0, 120.0)]
    assert all(": met" in line for line in bench.goal_lines(ours, [(0.90, 0.85, 100.0, 100.0)])[:3])
    assert "NOT met" in bench.goal_lines(ours, [(0.90, 0.85, 100.0, 100.0)])[3]  # more time than plain
    assert "NOT met" in bench.goal_lines(ours, [(0.98, 0.85, 200.0, 200.0)])[3]  # plain more accurate
    assert "not measured" in bench.goal_lines(ours, [])[3]


def test_equal_wall_time_is_judged_on_the_seeds_fit_time_together() -> None:
    bench = _bench()
    ours = [(0.963, 0.957, 297.0, 265.0), (0.960, 0.955, 283.0, 254.0)]
    plain = [(0.680, 0.274, 255.0, 255.0), (0.609, 0.293, 278.0, 278.0)]  # seed 0: armseg 1.04x
    line = bench.goal_lines(ours, plain)[3]
    assert line.startswith("ahead of the plain script at equal wall time: met")
    assert "in 0.97x its fit time" in line
