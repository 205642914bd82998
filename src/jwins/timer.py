"""Seconds spent in each phase of a run's rounds."""
from __future__ import annotations

import time

PHASES = ("train", "prepare", "encode", "exchange", "decode", "merge", "evaluate")


class Timer:
    """Seconds spent in each phase of the rounds."""

    def __init__(self) -> None:
        self.totals = {p: 0.0 for p in PHASES}

    def __call__(self, phase: str):
        timer = self

        class _Ctx:
            def __enter__(self_inner):
                self_inner.t0 = time.perf_counter()

            def __exit__(self_inner, *exc):
                timer.totals[phase] += time.perf_counter() - self_inner.t0
        return _Ctx()
