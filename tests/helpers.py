"""What several test files share: a run directory's metrics without its timings, the stop-and-resume check, and
the peak of Python-tracked memory while something runs."""
from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import torch


def rows(run_dir: Path) -> list[dict]:
    """metrics.jsonl without the wall-clock fields (the numbers a run must reproduce)."""
    out = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    for row in out:
        row.pop("seconds", None), row.pop("round_seconds", None)
    return out


def assert_resume_continues(cfg, tmp_path: Path, cut: int):
    """Run ``cfg`` whole, and again stopped after round ``cut`` then resumed: the metrics and the parameters are
    the same, bit for bit. Returns (whole, resumed) results."""
    from jwins.experiment import run

    whole = run(cfg, run_dir=tmp_path / "whole")
    run(cfg.replace(rounds=cut), run_dir=tmp_path / "cut")
    (tmp_path / "cut" / "summary.json").unlink()
    resumed = run(cfg, run_dir=tmp_path / "cut", resume=True)
    assert rows(tmp_path / "cut") == rows(tmp_path / "whole")
    assert torch.equal(resumed.params, whole.params)
    return whole, resumed


def peak_while(fn) -> tuple[int, BaseException | None]:
    """The peak of Python-tracked memory (numpy's arrays included) while ``fn`` runs, and what it raised."""
    tracemalloc.start()
    error = None
    try:
        fn()
    except BaseException as e:  # noqa: BLE001
        error = e
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak, error
