"""The statistics a comparison prints (jwins.stats), each against numbers worked out by hand in the test.

Student-t quantiles used below (two-sided 95%): t(0.975, 1) = 12.706205, t(0.975, 2) = 4.302653,
t(0.975, 4) = 2.776445."""
from __future__ import annotations

import math

import pytest

from jwins import stats

T1, T2, T4 = 12.706205, 4.302653, 2.776445


def test_level_is_the_mean_and_the_t_half_width():
    lv = stats.level([80.0, 82.0, 84.0, 81.0, 83.0])  # mean 82, sd sqrt(2.5)
    assert lv.mean == pytest.approx(82.0) and lv.n == 5
    assert lv.half_width == pytest.approx(T4 * math.sqrt(2.5) / math.sqrt(5), rel=1e-6)
    assert stats.level([3.0]).half_width is None and stats.level([]).mean is None


def test_paired_difference_uses_the_per_seed_differences():
    """Two rows whose levels overlap widely (±2 points) but whose per-seed differences are steady: the paired
    interval is narrow and excludes 0."""
    jwins = [82.43, 80.79, 82.09]
    full = [81.61, 79.93, 81.83]        # differences 0.82, 0.86, 0.26: mean 0.646667
    d = stats.paired_difference(jwins, full)
    diffs = [0.82, 0.86, 0.26]
    mean = sum(diffs) / 3
    sd = math.sqrt(sum((x - mean) ** 2 for x in diffs) / 2)   # 0.335460
    assert d.mean == pytest.approx(0.646667, abs=1e-6)
    assert sd == pytest.approx(0.335460, abs=1e-6)
    assert d.low == pytest.approx(mean - T2 * sd / math.sqrt(3), rel=1e-6)   # -0.186670
    assert d.high == pytest.approx(mean + T2 * sd / math.sqrt(3), rel=1e-6)  # 1.480004
    assert d.low == pytest.approx(-0.18667, abs=1e-4) and d.high == pytest.approx(1.48000, abs=1e-4)
    one = stats.paired_difference([0.9], [0.8])
    assert one.mean == pytest.approx(0.1) and one.low is None
    with pytest.raises(ValueError, match="one reference per seed"):
        stats.paired_difference([1.0, 2.0], [1.0])


def test_paired_ratio_is_a_geometric_mean_with_a_log_scale_interval():
    """Per-seed ratios 0.5, 0.25, 0.125: logs -ln2, -2 ln2, -3 ln2, mean -2 ln2 (geometric mean 0.25), sd ln2."""
    r = stats.paired_ratio([5.0, 2.5, 1.25], [10.0, 10.0, 10.0])
    half = T2 * math.log(2) / math.sqrt(3)
    assert r.mean == pytest.approx(0.25)
    assert r.low == pytest.approx(0.25 * math.exp(-half), rel=1e-6)   # half = 1.72189: 0.25 * 0.17873
    assert r.high == pytest.approx(0.25 * math.exp(half), rel=1e-6)   # 0.25 * 5.5950
    assert r.low == pytest.approx(0.04468, abs=1e-5) and r.high == pytest.approx(1.39875, abs=1e-5)
    assert r.bound == ""
    # censored: a value that never got there is a lower bound on its ratio, a reference that never did an upper
    low = stats.paired_ratio([5.0, 4.0], [10.0, 8.0], values_censored=[False, True])
    assert low.bound == ">" and low.mean == pytest.approx(0.5) and low.low is None
    high = stats.paired_ratio([5.0, 4.0], [10.0, 8.0], reference_censored=[True, False])
    assert high.bound == "<" and high.mean == pytest.approx(0.5)
    both = stats.paired_ratio([5.0, 4.0], [10.0, 8.0], values_censored=[True, False], reference_censored=[False, True])
    assert both.mean is None and both.bound == "?"


def test_censored_level_is_a_bound_not_a_silent_drop():
    exact = stats.censored_level([2.0, 4.0], [stats.EXACT, stats.EXACT])
    assert exact.mean == 3.0 and exact.low == pytest.approx(3.0 - T1 * math.sqrt(2) / math.sqrt(2))
    # the old table dropped the seed that missed (mean 2.0 "(1/2)"); counted at its run's end it is > 3.5
    missed = stats.censored_level([2.0, 5.0], [stats.EXACT, stats.CENSORED])
    assert missed.mean == 3.5 and missed.bound == ">" and missed.low is None
    early = stats.censored_level([2.0, 5.0], [stats.UPPER, stats.EXACT])
    assert early.mean == 3.5 and early.bound == "<"
    assert stats.censored_level([1.0, 2.0], [stats.UPPER, stats.CENSORED]).mean is None


def _metrics(per_round: list[float], evaluated: dict[int, float], key: str = "test_accuracy") -> list[dict]:
    out, total = [], 0.0
    for r, b in enumerate(per_round, 1):
        total += b
        m = {"round": r, "cumulative_bytes": total, "seconds": 0.5 * r}
        if r in evaluated:
            m[key] = evaluated[r]
        out.append(m)
    return out


def test_crossing_interpolates_between_the_bracketing_evaluations():
    """Evaluated at rounds 5 (60%) and 10 (80%), target 75%: 3/4 of the way, round 8.75. The bytes are read off
    the run's own per-round curve: 100 bytes per round up to round 8, then 300, so 800 + 0.75 * 300 = 1025
    (a straight line between the evaluations would say 500 + 0.75 * 1000 = 1250)."""
    ms = _metrics([100.0] * 8 + [300.0] * 2, {5: 0.6, 10: 0.8})
    c = stats.crossing(ms, 0.75)
    assert c.round == pytest.approx(8.75) and c.bytes == pytest.approx(1025.0)
    assert c.seconds == pytest.approx(4.375) and c.network_seconds is None
    assert c.bound == stats.EXACT and c.bracket == (5, 10)
    assert c.spread == pytest.approx((1400.0 - 500.0) / 1025.0)  # the evaluations' bytes 500 and 1400 apart
    exactly = stats.crossing(ms, 0.8)
    assert exactly.round == 10 and exactly.bytes == 1400.0


def test_crossing_before_the_first_evaluation_and_never():
    ms = _metrics([100.0] * 10, {5: 0.6, 10: 0.8})
    early = stats.crossing(ms, 0.5)
    assert (early.round, early.bytes, early.bound, early.bracket) == (5.0, 500.0, stats.UPPER, None)
    never = stats.crossing(ms, 0.9)
    assert (never.round, never.bytes, never.bound) == (10.0, 1000.0, stats.CENSORED)


def test_crossing_lower_is_better_for_rmse_and_reads_network_time():
    ms = _metrics([10.0] * 4, {2: 1.2, 4: 0.8}, key="val_accuracy")
    for m in ms:
        m["network_seconds"] = 2.0 * m["round"]
    c = stats.crossing(ms, 1.1, key="val_accuracy", higher_is_better=False)  # 1.2 -> 0.8: a quarter of the way
    assert c.round == pytest.approx(2.5) and c.bytes == pytest.approx(25.0) and c.network_seconds == pytest.approx(5.0)


def test_a_ratio_of_nothing_is_no_ratio():
    r = stats.paired_ratio([0.0, 0.0], [10.0, 8.0])  # local sends no byte
    assert r.mean is None and r.bound == ""
