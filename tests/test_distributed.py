"""The distributed runtime: gloo ranks on 127.0.0.1 give the local engine's metrics; a rank that dies or stops
answering makes the others stop within engine.timeout with an error naming it.

The ranks are subprocesses (one torch import each, so few of them: one launch per world size runs every
algorithm); each uses one thread, as does the local reference, so the comparison is like for like.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import rows
from jwins import config
from jwins.engine.distributed import DistributedEngine, block_bounds
from jwins.errors import ConfigError, JwinsError
from jwins.experiment import run
from jwins.launch import free_port, needs_local_launch

QUICK = ["nodes=6", "rounds=3", "topology.degree=3", "data.max_samples=300", "wire.value_codec=float32",
         "eval.every=1", "engine.threads=1"]
JOBS = {alg: [f"sharing.algorithm={alg}"] for alg in ("full", "topk", "choco", "jwins")}
JOBS["one-node-per-rank"] = ["sharing.algorithm=jwins", "nodes=3", "topology.degree=2"]
# a fresh graph every round / every 2 rounds: every rank derives the same graphs from the seed
JOBS["resampled"] = ["sharing.algorithm=jwins", "topology.resample_every=1"]
JOBS["resampled-choco"] = ["sharing.algorithm=choco", "topology.resample_every=2"]
EXACT = {"round", "bytes_sent", "bytes_header", "bytes_indices", "bytes_values", "cumulative_bytes", "offline",
         "test_metric_name"}

FAULT_RANK = str(Path(__file__).parent / "fault_rank.py")
# every rank runs the jobs one after the other; only rank 0 writes the run directories. FAULT_* variables put
# the test's faulty transport (tests/fault_rank.py) around the engine's.
WORKER = """
import json, os, sys
sys.path.insert(0, os.path.dirname(sys.argv[2]))
from fault_rank import FaultyTransport
from jwins import config
from jwins.engine.distributed import DistributedEngine
from jwins.experiment import run
spec = json.loads(sys.argv[1])
for name, overrides in spec["jobs"].items():
    cfg = config.load(overrides=[*spec["common"], *overrides, "engine.kind=distributed"])
    engine = DistributedEngine(cfg.nodes, timeout=cfg.engine.timeout, config=cfg)
    try:
        if "FAULT_AFTER_ROUND" in os.environ:
            engine.transport = FaultyTransport(engine)
        run(cfg, engine=engine, run_dir=spec["dir"] + "/" + name)
    finally:
        engine.close()
"""
# `jwins run` whose local ranks are tests/fault_rank.py instead of `python -m jwins.launch`
FAULTY_CLI = f"""
import functools, sys
from jwins import cli, launch
launch.launch_local_workers = functools.partial(launch.launch_local_workers, command=[sys.executable, {FAULT_RANK!r}])
sys.exit(cli.main(sys.argv[1:]))
"""




def _assert_same_metrics(got: list[dict], want: list[dict]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.keys() == w.keys(), (g, w)
        for key, value in w.items():
            if key in EXACT:
                assert g[key] == value, (key, g, w)
            else:
                assert g[key] == pytest.approx(value, abs=1e-6, rel=0), (key, g, w)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("FAULT") and k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def _start_ranks(world: int, jobs: dict, common: list[str], out: Path, **extra: str) -> list[subprocess.Popen]:
    out.mkdir(parents=True, exist_ok=True)
    spec = json.dumps({"jobs": jobs, "common": common, "dir": str(out)})
    port = str(free_port())
    procs = []
    for r in range(world):
        env = _env(RANK=str(r), WORLD_SIZE=str(world), LOCAL_RANK=str(r), MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=port, **extra)
        log = open(out / f"rank{r}.log", "w")
        procs.append(subprocess.Popen([sys.executable, "-c", WORKER, spec, FAULT_RANK], env=env, stdout=log,
                                      stderr=subprocess.STDOUT))
        log.close()
    return procs


def _kill_all(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


def _wait_all(procs: list[subprocess.Popen], limit: float) -> list[int]:
    end = time.monotonic() + limit
    try:
        return [p.wait(max(end - time.monotonic(), 0.01)) for p in procs]
    finally:
        _kill_all(procs)


@pytest.fixture(scope="module")
def local_reference(tmp_path_factory):
    """Metrics of the local engine (all nodes in this process) for every job."""
    threads = torch.get_num_threads()
    base = tmp_path_factory.mktemp("local")
    try:
        for name, overrides in JOBS.items():
            run(config.load(overrides=[*QUICK, *overrides]), run_dir=base / name)
    finally:
        torch.set_num_threads(threads)
    return {name: rows(base / name) for name in JOBS}


@pytest.mark.parametrize("world", [2, 3])
def test_ranks_reproduce_the_local_engine(tmp_path, local_reference, world):
    procs = _start_ranks(world, JOBS, QUICK, tmp_path)
    codes = _wait_all(procs, 100)
    logs = "\n".join((tmp_path / f"rank{r}.log").read_text() for r in range(world))
    assert codes == [0] * world, logs
    for name in JOBS:
        d = tmp_path / name
        assert sorted(p.name for p in d.iterdir()) == ["config.json", "metrics.jsonl", "summary.json"]
        _assert_same_metrics(rows(d), local_reference[name])
        assert json.loads((d / "summary.json").read_text())["rounds"] == 3


def test_cli_workers_starts_the_ranks(tmp_path, local_reference):
    """`jwins run --set engine.workers=2` starts two local ranks; rank 0 alone reports and writes."""
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "jwins", "run", *[x for o in QUICK for x in ("--set", o)], "--algorithm", "jwins",
            "--set", "engine.workers=2", "--out", str(out), "--quiet", "--no-plots"]
    done = subprocess.run(argv, env=_env(), capture_output=True, text=True, timeout=100)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("run directory:") == 1 and done.stdout.count("bytes sent per node") == 1
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "metrics.jsonl", "summary.json"]
    _assert_same_metrics(rows(out), local_reference["jwins"])
    saved = json.loads((out / "config.json").read_text())["engine"]
    assert saved["kind"] == "distributed" and saved["workers"] == 2


def test_the_python_api_starts_the_ranks_too(tmp_path, local_reference, monkeypatch):
    """jwins.run with engine.workers = 2 does what the CLI does: two local ranks, the metrics of one process,
    the run directory in the result; a Python object the ranks cannot import is refused in one line."""
    import jwins

    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    cfg = jwins.load_config(overrides=[*QUICK, "sharing.algorithm=jwins", "engine.workers=2"])
    result = jwins.run(cfg, run_dir=tmp_path / "api", progress=False)
    assert result.run_dir == tmp_path / "api" and result.params is None
    _assert_same_metrics(rows(tmp_path / "api"), local_reference["jwins"])
    assert "run_dir=" in repr(result) and str(tmp_path / "api") in repr(result)
    from jwins.sharing import full

    with pytest.raises(jwins.ConfigError, match="engine.workers = 2 starts ranks that import their parts by name, "
                                                "and the sharing given to jwins.run has none"):
        jwins.run(cfg, sharing=full(), run_dir=tmp_path / "obj", progress=False)
    assert not (tmp_path / "obj").exists()
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(jwins.ConfigError, match=r"started by torchrun\) but engine.kind = 'local'"):
        jwins.run(jwins.load_config(overrides=QUICK), write=False)


def test_ctrl_c_on_one_rank_stops_all_after_the_same_round(tmp_path):
    """A Ctrl-C that reaches rank 1 only (during round 3) stops both ranks after round 3, each writing its
    checkpoint shard; resuming finishes the run with the metrics of an uninterrupted one."""
    out = tmp_path / "run"
    common = [x for o in QUICK for x in ("--set", o)] + ["--algorithm", "jwins", "--set", "rounds=6"]
    argv = [sys.executable, "-c", FAULTY_CLI, "run", *common, "--set", "engine.workers=2", "--set",
            "engine.timeout=20", "--out", str(out), "--quiet", "--no-plots"]
    done = subprocess.run(argv, env=_env(FAULT_AFTER_ROUND="2", FAULT="interrupt"),
                          capture_output=True, text=True, timeout=100)
    assert done.returncode == 130, done.stderr
    assert "went missing" not in done.stderr and "stopped answering" not in done.stderr, done.stderr
    assert done.stderr.count("stopped after round 3 of 6") == 1, done.stderr  # said once, by rank 0
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-0-of-2.npz", "checkpoint-1-of-2.npz"]
    assert len(rows(out)) == 3
    # a rank whose shard is missing (another machine, say) fails in setup: the others hear it at once
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    (broken / "checkpoint-1-of-2.npz").unlink()
    failed = subprocess.run([sys.executable, "-m", "jwins", "run", "--resume", str(broken), "--quiet", "--no-plots"],
                            env=_env(), capture_output=True, text=True, timeout=100)
    assert failed.returncode == 2, failed.stderr
    assert "checkpoint-1-of-2.npz" in failed.stderr, failed.stderr
    # rank 0 heard of the failure from rank 1 itself, not by waiting out engine.timeout
    assert "stopped answering" not in failed.stderr and "engine.timeout" not in failed.stderr, failed.stderr
    resumed = subprocess.run([sys.executable, "-m", "jwins", "run", "--resume", str(out), "--quiet", "--no-plots"],
                             env=_env(), capture_output=True, text=True, timeout=100)
    assert resumed.returncode == 0, resumed.stderr
    threads = torch.get_num_threads()
    try:
        run(config.load(overrides=[*QUICK, "sharing.algorithm=jwins", "rounds=6"]), run_dir=tmp_path / "local")
    finally:
        torch.set_num_threads(threads)
    _assert_same_metrics(rows(out), rows(tmp_path / "local"))


def _watch(proc_list, rows_file: Path, rows: int, limit: float):
    """Wait until ``rows_file`` has ``rows`` lines (the moment of the fault), then until the first process
    exits; return (seconds from the fault to that exit, index of that process)."""
    start = time.monotonic()
    seen = None
    while time.monotonic() - start < limit:
        if seen is None and rows_file.exists() and len(rows_file.read_text().splitlines()) >= rows:
            seen = time.monotonic()
        for i, p in enumerate(proc_list):
            if p.poll() is not None and seen is not None:
                return time.monotonic() - seen, i
        time.sleep(0.05)
    raise AssertionError("the ranks neither faulted nor stopped in time")


def test_a_dead_rank_stops_the_others(tmp_path, local_reference):
    """Rank 1 of 3 exits after round 2: ranks 0 and 2 stop at once, naming rank 1 and round 3; the metrics of
    rounds 1-2 stay valid."""
    out = tmp_path / "run"
    argv = [sys.executable, "-c", FAULTY_CLI, "run", *[x for o in QUICK for x in ("--set", o)], "--algorithm",
            "jwins", "--set", "rounds=6", "--set", "engine.workers=3", "--set", "engine.timeout=20", "--out", str(out),
            "--quiet", "--no-plots"]
    proc = subprocess.Popen(argv, env=_env(FAULT_AFTER_ROUND="2"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = proc.communicate(timeout=100)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 2, stderr
    errors = [line for line in stderr.splitlines() if "went missing" in line]
    assert len(errors) == 2, stderr   # ranks 0 and 2
    for line in errors:
        assert line.startswith("jwins: error: rank 1 (nodes 2-3) went missing in round 3"), line
    assert "rank 1 (exit status 17)" in stderr.splitlines()[-1]
    assert "run directory" not in stdout
    _assert_same_metrics(rows(out), local_reference["jwins"][:2])


def test_a_silent_rank_times_out(tmp_path):
    """Rank 1 stops answering after round 1: rank 0 gives up after engine.timeout, naming rank 1 and round 2."""
    timeout = 3
    jobs = {"hang": ["sharing.algorithm=full", f"engine.timeout={timeout}", "rounds=5"]}
    procs = _start_ranks(2, jobs, QUICK, tmp_path, FAULT_AFTER_ROUND="1", FAULT="hang")
    try:
        waited, first = _watch(procs, tmp_path / "hang" / "metrics.jsonl", 1, 90)
        assert first == 0 and procs[1].poll() is None   # rank 1 is still there, silent
        assert procs[0].wait(10) != 0
    finally:
        _kill_all(procs)
    assert waited >= timeout - 0.5  # it waited for engine.timeout before giving up (no upper bound: load)
    log = (tmp_path / "rank0.log").read_text()
    assert "PeerError: rank 1 (nodes 3-5) stopped answering in round 2" in log
    assert "engine.timeout = 3 s" in log
    assert len((tmp_path / "hang" / "metrics.jsonl").read_text().splitlines()) == 1


def test_one_rank_world_in_process(tmp_path, local_reference, monkeypatch):
    """A world of one rank (torchrun --nproc-per-node 1) is the local engine."""
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(free_port()))
    threads = torch.get_num_threads()
    try:
        run(config.load(overrides=[*QUICK, *JOBS["jwins"], "engine.kind=distributed"]), run_dir=tmp_path / "one")
    finally:
        torch.set_num_threads(threads)
    assert not torch.distributed.is_initialized()   # one rank needs no process group
    _assert_same_metrics(rows(tmp_path / "one"), local_reference["jwins"])


@pytest.mark.parametrize("nodes,world", [(6, 2), (6, 4), (7, 3), (5, 5), (100, 7)])
def test_blocks_are_contiguous_and_balanced(nodes, world):
    bounds = block_bounds(nodes, world)
    sizes = np.diff(bounds)
    assert bounds[0] == 0 and bounds[-1] == nodes and len(sizes) == world
    assert sizes.min() >= 1 and sizes.max() - sizes.min() <= 1
    assert list(sizes) == sorted(sizes, reverse=True)


def test_more_ranks_than_nodes_is_refused(monkeypatch):
    for key, value in dict(RANK="0", WORLD_SIZE="7", MASTER_ADDR="127.0.0.1", MASTER_PORT="1").items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError, match="7 ranks but only nodes = 6"):
        DistributedEngine(6, timeout=1)


def test_distributed_without_launcher_says_how_to_launch(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(JwinsError, match="torchrun --nproc-per-node K"):
        DistributedEngine(6, timeout=1)


def test_launch_decision(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    assert needs_local_launch(config.load(overrides=["engine.workers=2"]))
    assert not needs_local_launch(config.load())
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert not needs_local_launch(config.load(overrides=["engine.workers=2", "engine.kind=distributed"]))
    with pytest.raises(ConfigError, match="add --set engine.kind=distributed"):
        needs_local_launch(config.load(overrides=["engine.workers=2"]))


def test_shards_of_different_rounds_resume_from_the_newest_common_one(tmp_path):
    """A machine crash between two ranks' checkpoint writes: rank 0 holds round 6 (and, not yet committed, the
    previous round 3), rank 1 still round 3. The resume continues from round 3, the newest round both hold,
    and ends with the metrics of an uninterrupted run."""
    common = [x for o in QUICK for x in ("--set", o)] + ["--algorithm", "jwins", "--set", "checkpoint.every=3",
                                                        "--set", "engine.workers=2"]
    out = tmp_path / "run"
    first = subprocess.run([sys.executable, "-m", "jwins", "run", *common, "--set", "rounds=3", "--out", str(out),
                            "--quiet", "--no-plots"], env=_env(), capture_output=True, text=True, timeout=100)
    assert first.returncode == 0, first.stderr
    shard0, shard1 = out / "checkpoint-0-of-2.npz", out / "checkpoint-1-of-2.npz"
    round3 = {p: p.read_bytes() for p in (shard0, shard1)}
    (out / "summary.json").unlink()
    more = subprocess.run([sys.executable, "-m", "jwins", "run", "--resume", str(out), "--rounds", "6", "--quiet",
                           "--no-plots"], env=_env(), capture_output=True, text=True, timeout=100)
    assert more.returncode == 0, more.stderr
    (out / "checkpoint-0-of-2.prev.npz").write_bytes(round3[shard0])  # rank 0 wrote round 6, not committed
    shard1.write_bytes(round3[shard1])                                 # rank 1 never wrote round 6
    (out / "summary.json").unlink()
    changed = subprocess.run([sys.executable, "-m", "jwins", "run", "--resume", str(out), "--rounds", "9", "--set",
                              "train.lr=0.9", "--quiet", "--no-plots"], env=_env(), capture_output=True, text=True,
                             timeout=100)
    assert changed.returncode == 2 and "configuration differs in train.lr" in changed.stderr, changed.stderr
    resumed = subprocess.run([sys.executable, "-m", "jwins", "run", "--resume", str(out), "--rounds", "9", "--quiet",
                              "--no-plots"], env=_env(), capture_output=True, text=True, timeout=100)
    assert resumed.returncode == 0, resumed.stderr
    threads = torch.get_num_threads()
    try:
        run(config.load(overrides=[*QUICK, "sharing.algorithm=jwins", "rounds=9"]), run_dir=tmp_path / "local")
    finally:
        torch.set_num_threads(threads)
    _assert_same_metrics(rows(out), rows(tmp_path / "local"))
