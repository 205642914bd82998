"""The rules that a configuration and the parts' own factories both check, written once: each returns what is
wrong (a phrase the caller puts after the value's name) or None. ``config.py`` turns a problem into a
ConfigError naming the config key; the factories raise their own errors with the same words.

>>> fraction(0.5) is None, fraction(1.5)
(True, 'must be in (0, 1]')
>>> regular_graph(16, 16)
'must be smaller than the number of nodes 16'
"""
from __future__ import annotations

from collections.abc import Sequence


def fraction(value: float) -> str | None:
    """A share of the coefficients (alpha, a cap, gamma): in (0, 1]."""
    return None if 0 < value <= 1 else "must be in (0, 1]"


def fractions(values: Sequence[float]) -> str | None:
    """A cut-off list: non-empty, every entry in (0, 1]."""
    return None if len(values) and all(fraction(v) is None for v in values) else \
        "must be a non-empty list of fractions in (0, 1]"


def regular_graph(nodes: int, degree: int) -> str | None:
    """Whether a connected ``degree``-regular graph on ``nodes`` nodes can exist."""
    if degree < 1:
        return "must be >= 1"
    if degree >= nodes:
        return f"must be smaller than the number of nodes {nodes}"
    if nodes * degree % 2:
        return f"times the number of nodes, {degree} * {nodes} = {degree * nodes} is odd: no such regular graph exists"
    if degree == 1 and nodes > 2:
        return f"1 makes {nodes} nodes a set of disjoint edges, never connected"
    return None
