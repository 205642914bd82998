"""A user's runs are never destroyed: run directories are claimed, never silently reused, and every refusal is
one line."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from jwins import config, rundir
from jwins.errors import ConfigError, RunDirError
from jwins.experiment import run

QUICK = ["nodes=6", "rounds=2", "topology.degree=3", "eval.every=1", "data.max_samples=300",
         "wire.value_codec=float32"]


def _cfg(*extra: str) -> config.Config:
    return config.load(overrides=[*QUICK, *extra])


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jwins", *args, "--quiet", "--no-plots"], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_a_directory_holding_anything_is_refused_and_overwrite_replaces_it(tmp_path):
    """--out on an earlier run, or on the user's own files, is refused in one line and nothing in it changes;
    --overwrite replaces the directory as a whole (the old run's plots do not survive beside the new one)."""
    first = run(_cfg("rounds=3"), run_dir=tmp_path / "r")
    (tmp_path / "r" / "plots").mkdir()
    (tmp_path / "r" / "plots" / "old.png").write_bytes(b"png")
    before = {p: p.read_bytes() for p in (tmp_path / "r").rglob("*") if p.is_file()}
    with pytest.raises(RunDirError, match=r"run directory .*/r is not empty \(config.json, metrics.jsonl, plots, "
                                          r"summary.json\); choose another --out, replace it with --overwrite, or "
                                          r"continue the run in it with --resume") as info:
        run(_cfg(), run_dir=tmp_path / "r")
    assert "\n" not in str(info.value)
    assert {p: p.read_bytes() for p in (tmp_path / "r").rglob("*") if p.is_file()} == before
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my notes")
    with pytest.raises(RunDirError, match="not empty"):
        run(_cfg(), run_dir=mine)
    assert (mine / "notes.txt").read_text() == "my notes" and len(list(mine.iterdir())) == 1
    second = run(_cfg(), run_dir=tmp_path / "r", overwrite=True)
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["config.json", "metrics.jsonl", "summary.json"]
    assert len(second.metrics) == 2 and len(first.metrics) == 3


def test_rerunning_a_saved_config_makes_a_new_directory(tmp_path):
    """A config never names where its results go: `jwins run RUN_DIR --set seed=1` leaves RUN_DIR as it was."""
    done = _cli("run", *[x for o in QUICK for x in ("--set", o)], "--out", "orig", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    before = {p.name: p.read_bytes() for p in (tmp_path / "orig").iterdir()}
    again = _cli("run", "orig", "--set", "seed=1", "--rounds", "1", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert {p.name: p.read_bytes() for p in (tmp_path / "orig").iterdir()} == before
    made = [p for p in (tmp_path / "runs").iterdir()]
    assert len(made) == 1 and json.loads((made[0] / "config.json").read_text())["seed"] == 1


def test_default_names_are_unique_and_created_exclusively(tmp_path):
    """Two runs started in the same second get different default names (the start time's microseconds), and a
    default directory that exists already is never reused."""
    a = rundir.default_path("full", "digits", 1_700_000_000.123456)
    b = rundir.default_path("full", "digits", 1_700_000_000.654321)
    assert a != b and a.parent == b.parent and a.name[:-7] == b.name[:-7]
    assert rundir.default_path("mypkg.algos:gossip", "x", 0.0).name.startswith("gossip-x-")
    taken = tmp_path / a
    taken.mkdir(parents=True)
    with pytest.raises(RunDirError, match="exists already"):
        rundir.claim(taken, {}, exclusive=True)


def test_two_runs_started_together_keep_both_results(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-m", "jwins", "run", *[x for o in QUICK for x in ("--set", o)],
                               "--quiet", "--no-plots"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(2)]
    assert [p.wait(300) for p in procs] == [0, 0]
    made = sorted((tmp_path / "runs").iterdir())
    assert len(made) == 2 and all((d / "summary.json").exists() for d in made)


@pytest.mark.parametrize("where,message", [
    ("afile/run", "lies under .*afile, which is a file"),
    ("afile", "is a file"),
    ("locked/run", "cannot create run directory .*locked/run: Permission denied"),
])
def test_an_unusable_out_is_one_line(tmp_path, where, message):
    if where.startswith("locked") and os.geteuid() == 0:
        pytest.skip("root may write anywhere")
    (tmp_path / "afile").write_text("x")
    (tmp_path / "locked").mkdir(mode=0o500)
    done = _cli("run", *[x for o in QUICK for x in ("--set", o)], "--out", where, cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and re.search(message, lines[0]), done.stderr


def test_zero_rounds_is_refused_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match="rounds = 0 must be >= 1"):
        _cfg("rounds=0")
    done = _cli("run", "--rounds", "0", "--out", "r", cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.strip() == "jwins: error: rounds = 0 must be >= 1"
    assert not (tmp_path / "r").exists()


def test_resuming_a_finished_run_says_so_and_how_to_extend_it(tmp_path):
    cfg = _cfg("checkpoint.every=1")
    run(cfg, run_dir=tmp_path / "r")
    with pytest.raises(RunDirError, match=r"is finished \(2 of 2 rounds\); to extend it, resume with more rounds: "
                                          r"jwins run --resume .*/r --rounds 4"):
        run(cfg, run_dir=tmp_path / "r", resume=True)
    longer = run(cfg.replace(rounds=4), run_dir=tmp_path / "r", resume=True)
    assert [m["round"] for m in longer.metrics] == [1, 2, 3, 4]
    whole = run(cfg.replace(rounds=4), run_dir=tmp_path / "whole")
    strip = (lambda ms: [{k: v for k, v in m.items() if k not in ("seconds", "round_seconds")} for m in ms])
    assert strip(longer.metrics) == strip(whole.metrics)
    run(_cfg(), run_dir=tmp_path / "nock")
    with pytest.raises(RunDirError, match="is finished and wrote no checkpoint"):
        run(_cfg(), run_dir=tmp_path / "nock", resume=True)


def test_a_metrics_line_cut_short_by_a_crash_does_not_hide_the_rounds_before_it(tmp_path):
    run(_cfg("rounds=3"), run_dir=tmp_path / "r")
    path = tmp_path / "r" / "metrics.jsonl"
    text = path.read_text()
    path.write_text(text[: len(text) - 20])  # the last record half written
    assert [m["round"] for m in rundir.read(tmp_path / "r").metrics] == [1, 2]
