"""The statistics a comparison reports, as pure functions of per-seed values (docs/design.md, "Comparisons").

* :func:`level`: the mean over seeds and the half-width of its 95% Student-t interval (the unpaired ± of a row);
* :func:`paired_difference`: the mean of per-seed differences to a reference and its paired t interval (every
  run of a seed shares the partition, graph, initial model and batches, so the difference is what varies);
* :func:`paired_ratio`: the geometric mean of per-seed ratios, with the t interval taken on the log scale;
* :func:`crossing`: where a run first reaches a target, interpolated between the two evaluations that bracket
  the crossing, or censored at the run's end when it never does;
* :func:`censored_level`: the mean over seeds of values some of which are bounds, reported as a bound.

>>> round(level([1.0, 2.0, 3.0]).half_width, 4)  # t(0.975, 2) * 1 / sqrt(3)
2.4841
>>> d = paired_difference([0.82, 0.81, 0.83], [0.80, 0.80, 0.80])
>>> round(d.mean, 4), round(d.low, 4), round(d.high, 4)
(0.02, -0.0048, 0.0448)
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

CONFIDENCE = 0.95

# how a crossing is known: between two evaluations, at or before the first one, or not within the run
EXACT, UPPER, CENSORED = "interpolated", "at or before", "not reached"


@dataclass(frozen=True)
class Level:
    """The mean of n values and the half-width of its t interval (None for n < 2)."""

    mean: float | None
    half_width: float | None
    n: int


@dataclass(frozen=True)
class Interval:
    """A paired estimate (a mean difference, or a geometric-mean ratio) and its 95% interval; ``bound`` is
    ``""`` for an estimate, ``">"`` or ``"<"`` when censored seeds make it only a bound (no interval then)."""

    mean: float | None
    low: float | None
    high: float | None
    n: int
    bound: str = ""


def t_quantile(df: int, confidence: float = CONFIDENCE) -> float:
    from scipy.stats import t

    return float(t.ppf(0.5 + confidence / 2, df))


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> float | None:
    """Half-width of the Student-t confidence interval of the mean of ``values`` (None for fewer than 2)."""
    return level(values, confidence).half_width


def level(values: Sequence[float], confidence: float = CONFIDENCE) -> Level:
    values = [float(v) for v in values]
    n = len(values)
    if not n:
        return Level(None, None, 0)
    mean = sum(values) / n
    if n < 2:
        return Level(mean, None, n)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return Level(mean, t_quantile(n - 1, confidence) * sd / math.sqrt(n), n)


def paired_difference(values: Sequence[float], reference: Sequence[float],
                      confidence: float = CONFIDENCE) -> Interval:
    """Mean of ``values[i] - reference[i]`` over seeds i, with the paired Student-t interval (n - 1 degrees of
    freedom). No interval for one seed."""
    if len(values) != len(reference):
        raise ValueError(f"paired values need one reference per seed: {len(values)} against {len(reference)}")
    lv = level([v - r for v, r in zip(values, reference)], confidence)
    if lv.half_width is None:
        return Interval(lv.mean, None, None, lv.n)
    return Interval(lv.mean, lv.mean - lv.half_width, lv.mean + lv.half_width, lv.n)


def paired_ratio(values: Sequence[float], reference: Sequence[float], *, values_censored: Sequence[bool] = (),
                 reference_censored: Sequence[bool] = (), confidence: float = CONFIDENCE) -> Interval:
    """The geometric mean of ``values[i] / reference[i]`` over seeds and its interval: the paired t interval of
    the logs, exponentiated. A censored value (a lower bound: the run never got there) makes the ratio a lower
    bound (``">"``); a censored reference makes it an upper bound (``"<"``); both kinds at once, or a seed
    censored on both sides, leave nothing to say (mean None)."""
    n = len(values)
    vc = list(values_censored) or [False] * n
    rc = list(reference_censored) or [False] * n
    if any(a and b for a, b in zip(vc, rc)) or (any(vc) and any(rc)):
        return Interval(None, None, None, n, "?")
    if any(v <= 0 for v in values) or any(r <= 0 for r in reference):  # no ratio of nothing (local sends 0)
        return Interval(None, None, None, n)
    d = paired_difference([math.log(v) for v in values], [math.log(r) for r in reference], confidence)
    mean = math.exp(d.mean)
    if any(vc) or any(rc):
        return Interval(mean, None, None, n, ">" if any(vc) else "<")
    if d.low is None:
        return Interval(mean, None, None, n)
    return Interval(mean, math.exp(d.low), math.exp(d.high), n)


def censored_level(values: Sequence[float], bounds: Sequence[str], confidence: float = CONFIDENCE) -> Interval:
    """The mean over seeds of values of which some are bounds (``bounds[i]`` is :data:`EXACT`,
    :data:`UPPER` or :data:`CENSORED`). All exact: the mean and its t interval. Some censored (never reached:
    their value is where the run ended) and none reached at or before the first evaluation: the mean with the
    censored values at their bound is a lower bound (``">"``). Some "at or before" and none censored: an upper
    bound (``"<"``). Both: no summary."""
    lower = any(b == CENSORED for b in bounds)
    upper = any(b == UPPER for b in bounds)
    lv = level(values, confidence)
    if lower and upper:
        return Interval(None, None, None, lv.n, "?")
    if lower or upper:
        return Interval(lv.mean, None, None, lv.n, ">" if lower else "<")
    if lv.half_width is None:
        return Interval(lv.mean, None, None, lv.n)
    return Interval(lv.mean, lv.mean - lv.half_width, lv.mean + lv.half_width, lv.n)


@dataclass(frozen=True)
class Crossing:
    """Where a run reaches a target: ``round`` (fractional when interpolated), the run's cumulative bytes per
    node and seconds there (and modelled network seconds, when recorded); ``bound`` says how it is known;
    ``spread`` is the relative width of the byte interval between the bracketing evaluations (how much denser
    evaluation could change the figure)."""

    round: float
    bytes: float
    seconds: float | None
    network_seconds: float | None
    bound: str
    bracket: tuple[int, int] | None
    spread: float


def crossing(metrics: Sequence[dict[str, Any]], target: float, *, key: str = "test_accuracy",
             higher_is_better: bool = True) -> Crossing:
    """Where the run whose per-round records are ``metrics`` first reaches ``target`` in ``key``.

    The first evaluation at or past the target and the evaluation before it bracket the crossing: the round is
    interpolated linearly in the metric between them, and bytes, seconds and network seconds are read off the
    run's per-round cumulative curves at that (fractional) round, linearly between whole rounds. Reached at the
    first evaluation: nothing earlier was measured, so the crossing is "at or before" that round (an upper
    bound). Never reached: censored at the run's last round (a lower bound).

    >>> ms = [{"round": r, "cumulative_bytes": 10.0 * r} for r in range(1, 11)]
    >>> ms[4]["test_accuracy"], ms[9]["test_accuracy"] = 0.5, 0.9
    >>> c = crossing(ms, 0.6)
    >>> c.round, c.bytes, c.bound, c.bracket
    (6.25, 62.5, 'interpolated', (5, 10))
    """
    def finite(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    def reaches(v: float) -> bool:
        return v >= target if higher_is_better else v <= target

    evaluated = [m for m in metrics if finite(m.get(key))]
    previous = None
    for m in evaluated:
        v = float(m[key])
        if reaches(v):
            if previous is None:
                r = float(m["round"])
                return _at(metrics, r, UPPER, None, 1.0)
            (r0, v0), r1 = previous, float(m["round"])
            f = 1.0 if v == v0 else (target - v0) / (v - v0)
            r = r0 + min(1.0, max(0.0, f)) * (r1 - r0)
            low, high = _value_at(metrics, r0, "cumulative_bytes"), _value_at(metrics, r1, "cumulative_bytes")
            at = _at(metrics, r, EXACT, (int(r0), int(r1)), 0.0)
            spread = (high - low) / at.bytes if at.bytes and low is not None and high is not None else 0.0
            return Crossing(at.round, at.bytes, at.seconds, at.network_seconds, EXACT, (int(r0), int(r1)), spread)
        previous = (float(m["round"]), v)
    last = float(metrics[-1]["round"]) if metrics else 0.0
    return _at(metrics, last, CENSORED, None, 0.0)


def _at(metrics: Sequence[dict[str, Any]], r: float, bound: str, bracket, spread: float) -> Crossing:
    return Crossing(r, _value_at(metrics, r, "cumulative_bytes") or 0.0, _value_at(metrics, r, "seconds"),
                    _value_at(metrics, r, "network_seconds"), bound, bracket, spread)


def _value_at(metrics: Sequence[dict[str, Any]], r: float, key: str) -> float | None:
    """``key`` of the per-round records at round ``r`` (linear between whole rounds; round 0 is 0)."""
    points = {0.0: 0.0}
    for m in metrics:
        v = m.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            points[float(m["round"])] = float(v)
    if len(points) == 1:
        return None
    lo = max((x for x in points if x <= r), default=None)
    hi = min((x for x in points if x >= r), default=None)
    if lo is None or hi is None:
        return points[lo if lo is not None else hi]
    if hi == lo:
        return points[lo]
    return points[lo] + (points[hi] - points[lo]) * (r - lo) / (hi - lo)
