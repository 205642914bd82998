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
                                          r"summary.json\); choose another --out, or replace it with --overwrite$"
                       ) as info:
        run(_cfg(), run_dir=tmp_path / "r")
    assert "\n" not in str(info.value)
    assert {p: p.read_bytes() for p in (tmp_path / "r").rglob("*") if p.is_file()} == before
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my notes")
    with pytest.raises(RunDirError, match=r"not empty \(notes.txt\), and jwins did not write all of it; choose "
                                          r"another --out$"):
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


# --------------------------------------------------------------------------- --overwrite deletes only jwins's own


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _refused(done: subprocess.CompletedProcess, pattern: str) -> None:
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and re.search(pattern, lines[0]), done.stderr


def _quick(*extra: str) -> list[str]:
    return ["run", *[x for o in QUICK for x in ("--set", o)], *extra]


def test_overwrite_refuses_a_folder_of_the_users_own_files(tmp_path):
    """The issue's first case: a folder with thesis.tex is not a run; nothing in it is touched."""
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("x")
    _refused(_cli(*_quick("--out", "precious", "--overwrite"), cwd=tmp_path),
             r"--overwrite precious: it is not a jwins run or comparison directory \(no config.json or "
             r"compare-plan.json\), so jwins will not delete it; choose another --out")
    assert _files(precious) == {"thesis.tex": b"x"}


@pytest.mark.parametrize("foreign,shown", [("thesis.tex", "thesis.tex"), ("data/train.csv", "data"),
                                           ("plots/figure-of-mine.pdf", "plots/figure-of-mine.pdf"),
                                           ("tensorboard/notes.txt", "tensorboard/notes.txt"),
                                           ("checkpoints", "checkpoints")])
def test_overwrite_refuses_a_run_with_one_foreign_file_beside_it(tmp_path, foreign, shown):
    """An earlier run with one file the user put into it (or into its plots/): refused, naming that file."""
    assert _cli(*_quick("--out", "r"), cwd=tmp_path).returncode == 0
    (tmp_path / "r" / "plots").mkdir(exist_ok=True)
    (tmp_path / "r" / "tensorboard").mkdir(exist_ok=True)
    target = tmp_path / "r" / foreign
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("mine")
    before = _files(tmp_path / "r")
    _refused(_cli(*_quick("--out", "r", "--overwrite"), cwd=tmp_path),
             rf"--overwrite r: it holds {re.escape(shown)}, which jwins did not write; move it away or choose "
             r"another --out")
    assert _files(tmp_path / "r") == before
    with pytest.raises(RunDirError, match=r"not empty .*, and jwins did not write all of it; choose another --out$"):
        run(_cfg(), run_dir=tmp_path / "r")


def test_overwrite_never_deletes_the_working_directory_or_its_parents(tmp_path):
    """`--out . --overwrite` in a project folder deleted train.py and data/: refused, even when the working
    directory is itself an earlier run; a parent of it too."""
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    (project / "train.py").write_text("print()")
    (project / "data" / "x.csv").write_text("1")
    before = _files(project)
    _refused(_cli(*_quick("--out", ".", "--overwrite"), cwd=project),
             r"--overwrite \.: it is the current directory, which jwins never deletes; choose another --out")
    assert _files(project) == before
    assert _cli(*_quick("--out", "r"), cwd=tmp_path).returncode == 0
    inside = tmp_path / "r"
    (inside / "plots").mkdir(exist_ok=True)
    sub = inside / "plots"
    before = _files(inside)
    _refused(_cli(*_quick("--out", ".", "--overwrite"), cwd=inside), r"it is the current directory")
    _refused(_cli(*_quick("--out", "..", "--overwrite"), cwd=sub),
             r"--overwrite \.\.: it is a parent of the current directory \(.*/r/plots\), which jwins never deletes")
    _refused(_cli(*_quick("--out", str(inside), "--overwrite"), cwd=sub), r"a parent of the current directory")
    assert _files(inside) == before


def test_overwrite_never_deletes_the_home_directory_or_a_root(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    run(_cfg(), run_dir=home)  # even a home directory that looks like a run
    before = _files(home)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RunDirError, match=r"it is the home directory, which jwins never deletes"):
        run(_cfg(), run_dir=home, overwrite=True)
    assert _files(home) == before
    with pytest.raises(RunDirError, match=r"--overwrite /: it is a file system root, which jwins never deletes"):
        rundir.replaceable("/")


def test_overwrite_refuses_a_symbolic_link(tmp_path):
    run(_cfg(), run_dir=tmp_path / "r")
    (tmp_path / "link").symlink_to(tmp_path / "r")
    before = _files(tmp_path / "r")
    with pytest.raises(RunDirError, match=r"it is a symbolic link; --overwrite replaces only a directory jwins wrote"):
        run(_cfg(), run_dir=tmp_path / "link", overwrite=True)
    (tmp_path / "r" / "mine.txt").symlink_to(tmp_path / "elsewhere.txt")
    (tmp_path / "elsewhere.txt").write_text("keep")
    with pytest.raises(RunDirError, match=r"it holds mine.txt, which jwins did not write"):
        run(_cfg(), run_dir=tmp_path / "r", overwrite=True)
    assert (tmp_path / "elsewhere.txt").read_text() == "keep"
    assert before.items() <= _files(tmp_path / "r").items()


def test_overwrite_replaces_an_earlier_run_with_its_checkpoints_plots_and_events(tmp_path):
    run(_cfg("checkpoint.every=1", "rounds=3"), run_dir=tmp_path / "r")
    (tmp_path / "r" / "plots").mkdir()
    for name in ("accuracy_rounds.png", "accuracy_rounds.svg"):
        (tmp_path / "r" / "plots" / name).write_bytes(b"x")
    (tmp_path / "r" / "tensorboard").mkdir()
    (tmp_path / "r" / "tensorboard" / "events.out.tfevents.1.host.1.0").write_bytes(b"x")
    (tmp_path / "r" / "checkpoint-0-of-2.prev.npz").write_bytes(b"x")
    (tmp_path / "r" / "metrics.jsonl.tmp").write_bytes(b"x")
    with pytest.raises(RunDirError, match=r"continue the run in it with jwins run --resume .*/r$"):
        run(_cfg(), run_dir=tmp_path / "r")
    again = run(_cfg(), run_dir=tmp_path / "r", overwrite=True)
    assert len(again.metrics) == 2
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["config.json", "metrics.jsonl", "summary.json"]


def test_compare_overwrite_replaces_only_a_comparison_jwins_wrote(tmp_path):
    from jwins import compare

    cfg = _cfg("rounds=1")
    compare.compare(cfg, ["full"], baselines=[], out=tmp_path / "c", seeds=[0, 1])
    with pytest.raises(RunDirError, match=r"continue the comparison in it with jwins compare --resume .*/c$"):
        compare.compare(cfg, ["full"], baselines=[], out=tmp_path / "c")
    stray = tmp_path / "c" / "full" / "seed-1" / "my-analysis.ipynb"
    stray.write_text("{}")
    before = _files(tmp_path / "c")
    with pytest.raises(RunDirError, match=r"it holds full/seed-1/my-analysis.ipynb, which jwins did not write"):
        compare.compare(cfg, ["full"], baselines=[], out=tmp_path / "c", overwrite=True)
    assert _files(tmp_path / "c") == before
    stray.unlink()
    again = compare.compare(cfg, ["full"], baselines=[], out=tmp_path / "c", overwrite=True)
    assert [row["label"] for row in again.rows] == ["full"] and not (tmp_path / "c" / "full" / "seed-1").exists()
    project = tmp_path / "project"
    project.mkdir()
    (project / "notes.md").write_text("n")
    with pytest.raises(RunDirError, match=r"it is not a jwins run or comparison directory"):
        compare.compare(cfg, ["full"], baselines=[], out=project, overwrite=True)
    assert _files(project) == {"notes.md": b"n"}


def test_resume_on_something_that_is_not_a_run_says_what_it_is(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "file.txt").write_text("x")
    _refused(_cli("run", "--resume", "notes", cwd=tmp_path),
             r"--resume notes: it is not a jwins run directory \(no config.json\); give the directory an earlier "
             r"run wrote \(its --out, or one under runs/\), or start a new run without --resume")
    _refused(_cli("run", "--resume", "nowhere", cwd=tmp_path), r"--resume nowhere: there is no such directory")
    _refused(_cli("run", "--resume", "file.txt", cwd=tmp_path), r"--resume file.txt: it is a file")
    (tmp_path / "notes" / "compare-plan.json").write_text("{}")
    _refused(_cli("run", "--resume", "notes", cwd=tmp_path),
             r"a comparison continues with jwins compare --resume notes")
    import jwins

    with pytest.raises(RunDirError, match="there is no such directory"):  # the Python API says the same
        jwins.run(_cfg(), run_dir=tmp_path / "nowhere", resume=True)
