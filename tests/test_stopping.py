"""Stopping is safe: Ctrl-C and SIGTERM stop a run after the current round with a checkpoint (cutting a running
evaluation short), whatever the timing of further signals, in the simulator, on every local rank, and for a
comparison; ranks never outlive their launcher."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import rows
from jwins import config, experiment
from jwins.experiment import Interrupted, run

QUICK = ["nodes=8", "topology.degree=3", "data.max_samples=600", "wire.value_codec=float32", "eval.every=2",
         "engine.threads=1"]




def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return env


_STARTED: list[subprocess.Popen] = []


def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    flags = ["--quiet", "--no-plots"] if args[0] == "run" else ["--quiet"]
    proc = subprocess.Popen([sys.executable, "-m", "jwins", *args, *flags], cwd=cwd, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _STARTED.append(proc)
    return proc


@pytest.fixture(autouse=True)
def _no_process_left_behind():
    """Whatever a test asserts, the processes it started (and their ranks, in sessions of their own) end with it."""
    yield
    while _STARTED:
        proc = _STARTED.pop()
        children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        for pid in [proc.pid, *map(int, children)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait()


def _wait_for_rows(path: Path, rows: int, proc: subprocess.Popen, limit: float = 120) -> None:
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if path.exists() and len(path.read_text().splitlines()) >= rows:
            return
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before round {rows}: {proc.stderr.read()}")
        time.sleep(0.05)
    raise AssertionError(f"no round {rows} in time")


def _reference(tmp_path: Path, rounds: int, *extra: str) -> list[dict]:
    threads = torch.get_num_threads()
    try:
        run(config.load(overrides=[*QUICK, f"rounds={rounds}", *extra]), run_dir=tmp_path / "reference")
    finally:
        torch.set_num_threads(threads)
    return rows(tmp_path / "reference")


@pytest.mark.parametrize("signals", [[signal.SIGTERM], [signal.SIGINT, signal.SIGINT]], ids=["sigterm", "ctrl-c-twice"])
def test_a_signal_stops_after_the_round_with_a_checkpoint_and_resume_continues(tmp_path, signals):
    """SIGTERM (what kill and schedulers send) exits 143, Ctrl-C 130; a second Ctrl-C does not lose the
    checkpoint. Either way the message comes at once, and --resume ends with the uninterrupted run's metrics."""
    rounds = 10
    slow = ["--set", "train.local_steps=25"]  # rounds long enough for a second Ctrl-C to land within one
    proc = _start(["run", *[x for o in QUICK for x in ("--set", o)], *slow, "--rounds", str(rounds), "--out", "r"],
                  tmp_path)
    _wait_for_rows(tmp_path / "r" / "metrics.jsonl", 2, proc)
    proc.send_signal(signals[0])
    first = proc.stderr.readline() + proc.stderr.readline()  # the announcement comes at once
    if len(signals) == 2:
        proc.send_signal(signals[1])
    rest, err = proc.communicate(timeout=120)
    err = first + err
    assert proc.returncode == 128 + signals[0], err
    name = "SIGTERM" if signals[0] == signal.SIGTERM else "Ctrl-C"
    assert f"jwins: {name}: stopping after the current round, with a checkpoint" in err
    assert "stopped after round" in err and "jwins run --resume" in err
    if len(signals) == 2:
        assert "still finishing the current round" in err
    assert (tmp_path / "r" / "checkpoint.npz").exists()
    done = len(rows(tmp_path / "r"))
    assert 2 <= done < rounds
    resumed = subprocess.run([sys.executable, "-m", "jwins", "run", "--resume", "r", "--quiet", "--no-plots"],
                             cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert rows(tmp_path / "r") == _reference(tmp_path, rounds, *slow[1::2])


def test_a_stop_during_evaluation_skips_it_and_the_resume_does_it(tmp_path, monkeypatch):
    """A Ctrl-C that arrives while round 4 is being evaluated ends that evaluation at once; round 4's record
    waits for its accuracy, which the resumed run computes first: the metrics are those of an uninterrupted
    run."""
    cfg = config.load(overrides=[*QUICK, "rounds=6"])
    evaluate = experiment.evaluate
    calls = []

    def interrupted_evaluation(*args, should_stop=None, **kwargs):
        if should_stop is not None:  # a round's evaluation (not the cost estimate after round 1)
            calls.append(should_stop)
        if len(calls) == 2 and should_stop is not None:  # round 4's evaluation: Ctrl-C arrives meanwhile
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)
        return evaluate(*args, should_stop=should_stop, **kwargs)

    monkeypatch.setattr(experiment, "evaluate", interrupted_evaluation)
    with pytest.raises(Interrupted, match="stopped after round 4 of 6"):
        run(cfg, run_dir=tmp_path / "r")
    written = rows(tmp_path / "r")
    assert [r["round"] for r in written] == [1, 2, 3, 4] and "test_accuracy" not in written[3]
    with np.load(tmp_path / "r" / "checkpoint.npz") as z:
        assert json.loads(str(z["extra"]))["pending_evaluation"] is True
    monkeypatch.setattr(experiment, "evaluate", evaluate)
    run(cfg, run_dir=tmp_path / "r", resume=True)
    assert rows(tmp_path / "r") == _reference(tmp_path, 6)


def test_sigterm_to_the_launcher_stops_every_rank_after_the_same_round(tmp_path):
    rounds = 12
    proc = _start(["run", *[x for o in QUICK for x in ("--set", o)], "--rounds", str(rounds), "--out", "r",
                   "--set", "engine.workers=2", "--set", "train.local_steps=20"], tmp_path)
    _wait_for_rows(tmp_path / "r" / "metrics.jsonl", 2, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert err.count("stopped after round") == 1, err  # rank 0 says it, once
    shards = sorted(p.name for p in (tmp_path / "r").glob("checkpoint-*"))
    assert shards == ["checkpoint-0-of-2.npz", "checkpoint-1-of-2.npz"]
    resumed = subprocess.run([sys.executable, "-m", "jwins", "run", "--resume", "r", "--quiet", "--no-plots"],
                             cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert len(rows(tmp_path / "r")) == rounds


def test_ranks_stop_when_their_launcher_dies(tmp_path):
    """The launcher is killed (SIGKILL, no chance to clean up): its ranks get SIGTERM from the kernel, stop
    after their round with a checkpoint, and exit instead of running on as orphans."""
    proc = _start(["run", *[x for o in QUICK for x in ("--set", o)], "--rounds", "100000", "--out", "r",
                   "--set", "engine.workers=2"], tmp_path)
    _wait_for_rows(tmp_path / "r" / "metrics.jsonl", 2, proc)
    ranks = [int(p) for p in subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True,
                                            text=True).stdout.split()]
    assert len(ranks) == 2
    proc.kill()
    proc.wait()
    end = time.monotonic() + 120
    while any(_alive(pid) for pid in ranks) and time.monotonic() < end:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in ranks), "orphan ranks still running"
    assert sorted(p.name for p in (tmp_path / "r").glob("checkpoint-*")) == ["checkpoint-0-of-2.npz",
                                                                             "checkpoint-1-of-2.npz"]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_an_interrupted_comparison_resumes_what_is_missing(tmp_path):
    """Ctrl-C during a comparison exits 130; `jwins compare --resume DIR` keeps the finished runs, continues the
    interrupted one from its checkpoint, runs the rest and writes the table."""
    args = ["compare", *[x for o in QUICK for x in ("--set", o)], "--rounds", "16", "--set", "checkpoint.every=4",
            "--algorithms", "full,jwins", "--seeds", "0,1", "--out", "cmp", "--jobs", "1", "--baselines", "none"]
    proc = _start(args, tmp_path)
    _wait_for_rows(tmp_path / "cmp" / "full" / "seed-1" / "metrics.jsonl", 2, proc)
    finished = (tmp_path / "cmp" / "full" / "seed-0" / "summary.json").read_bytes()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "jwins compare --resume" in err
    assert not (tmp_path / "cmp" / "compare.json").exists()
    done = subprocess.run([sys.executable, "-m", "jwins", "compare", "--resume", "cmp", "--quiet"], cwd=tmp_path,
                          env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "cmp" / "full" / "seed-0" / "summary.json").read_bytes() == finished  # kept, not re-run
    table = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert [r["label"] for r in table["rows"]] == ["full", "jwins"] and table["seeds"] == [0, 1]
    threads = torch.get_num_threads()
    try:
        whole = run(config.load(overrides=[*QUICK, "rounds=16", "seed=1"]), run_dir=tmp_path / "whole")
    finally:
        torch.set_num_threads(threads)
    assert rows(tmp_path / "cmp" / "full" / "seed-1") == rows(tmp_path / "whole")
    del whole


def test_jobs_run_side_by_side_with_the_numbers_of_one_process(tmp_path):
    """--jobs 2 runs a comparison's runs in two processes at once (and an interrupted one resumes): every run's
    metrics equal those of the same comparison run one at a time."""
    common = ["compare", *[x for o in QUICK for x in ("--set", o)], "--rounds", "8", "--set", "checkpoint.every=2",
              "--algorithms", "full,topk", "--seeds", "0,1", "--baselines", "none"]
    proc = _start([*common, "--jobs", "2", "--out", "two"], tmp_path)
    _wait_for_rows(tmp_path / "two" / "full" / "seed-1" / "metrics.jsonl", 3, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    resumed = subprocess.run([sys.executable, "-m", "jwins", "compare", "--resume", "two", "--jobs", "2", "--quiet"],
                             cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    one = subprocess.run([sys.executable, "-m", "jwins", *common, "--jobs", "1", "--out", "one", "--quiet"],
                         cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr
    for run_dir in ("full/seed-0", "full/seed-1", "topk/seed-0", "topk/seed-1"):
        assert rows(tmp_path / "two" / run_dir) == rows(tmp_path / "one" / run_dir), run_dir
    assert json.loads((tmp_path / "two" / "compare.json").read_text())["rows"][1]["seeds"] == 2


def test_a_stop_in_the_last_round_enters_no_collective_the_other_ranks_would_not(tmp_path, monkeypatch):
    """The launcher forwards a signal rank by rank, so in the last round one rank may see it and another not:
    the rank that saw it must make exactly the collective calls of one that did not (else it waits in a
    collective the others never enter and the finished run fails). It finishes, with its summary."""

    from jwins.engine.local import LocalEngine
    from jwins.training import Trainer

    class Counting(LocalEngine):
        def __init__(self, n):
            super().__init__(n)
            self.calls = []

        def agree(self, flag):
            self.calls.append("agree")
            return super().agree(flag)

        def minimum(self, value):
            self.calls.append("minimum")
            return super().minimum(value)

    cfg = config.load(overrides=[*QUICK, "rounds=3", "checkpoint.every=2"])
    quiet = Counting(cfg.nodes)
    run(cfg, engine=quiet, run_dir=tmp_path / "quiet")
    original = Trainer.round

    def round_with_a_signal(self, state, params, r, active):
        if r == cfg.rounds - 1:
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, state, params, r, active)

    monkeypatch.setattr(Trainer, "round", round_with_a_signal)
    told = Counting(cfg.nodes)
    result = run(cfg, engine=told, run_dir=tmp_path / "told")
    assert told.calls == quiet.calls
    assert result.summary["rounds"] == 3 and (tmp_path / "told" / "summary.json").exists()
