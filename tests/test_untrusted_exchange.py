"""The sizes a peer declares in phase 1 of an exchange are bounded before anything is allocated for them.

Two gloo ranks in subprocesses: rank 1 sends forged sizes through the engine's own tags (what a broken or
hostile peer could send), rank 0 runs ``exchange`` and must answer with a PeerError naming rank 1 and the
round, telling rank 1 too (the abort notice on the control channel).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from jwins.launch import free_port

# Every case gets its own engine (its own tags) on the one process group, so one launch runs them all; a
# failed engine is left unclosed (closing it would tear the group down) and the process ends with os._exit.
RANK = r"""
import json, os, sys
import torch
from jwins.engine.distributed import DistributedEngine
from jwins.errors import PeerError
from jwins.topology import full

results = []
for case in json.loads(sys.argv[1]):
    forged = case["sizes"]
    nodes = 2 * len(forged)
    limits = {k: case[k] for k in ("max_message_bytes", "max_peer_bytes") if k in case}
    engine = DistributedEngine(nodes, timeout=20, **limits)
    graph = full(nodes)
    out = {}
    if engine.rank == 1:
        dist = engine._dist
        mine = torch.tensor([0] + forged, dtype=torch.int64)
        theirs = torch.zeros(1 + len(forged), dtype=torch.int64)
        works = dist.batch_isend_irecv([dist.P2POp(dist.isend, mine, 0, engine._group, engine._tag["sizes"]),
                                        dist.P2POp(dist.irecv, theirs, 0, engine._group, engine._tag["sizes"])])
        for w in works:
            w.wait()
        if case.get("payload"):
            blob = torch.frombuffer(bytearray(case["payload"].encode()), dtype=torch.uint8)
            got = torch.empty(int(theirs[1:].clamp(min=0).sum()), dtype=torch.uint8)
            works = dist.batch_isend_irecv([dist.P2POp(dist.isend, blob, 0, engine._group, engine._tag["payload"]),
                                            dist.P2POp(dist.irecv, got, 0, engine._group, engine._tag["payload"])])
            for w in works:
                w.wait()
            out["received"] = bytes(got.numpy()).decode()
        else:
            note = engine._ctrl_message(0, 15.0)
            out["notice"] = None if note is None else [int(x) for x in note]
    else:
        try:
            inbox = engine.exchange({n: b"hello" for n in engine.nodes}, graph, 0)
            out["inbox"] = {str(v): [[u, data.decode()] for u, data in pairs] for v, pairs in inbox.items()}
        except PeerError as e:
            out["error"] = str(e)
    results.append(out)
print("RESULT " + json.dumps(results), flush=True)
sys.stdout.flush()
os._exit(0)
"""


def _run_pair(tmp_path, cases: list[dict]) -> list[list[dict]]:
    """Run ``cases`` on two ranks; each rank's list of results."""
    script = tmp_path / "rank.py"
    script.write_text(RANK)
    port = str(free_port())
    procs = []
    for r in range(2):
        env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
        env.update(RANK=str(r), WORLD_SIZE="2", LOCAL_RANK=str(r), MASTER_ADDR="127.0.0.1", MASTER_PORT=port,
                   OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
        procs.append(subprocess.Popen([sys.executable, str(script), json.dumps(cases)], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = []
    try:
        for p in procs:
            text, _ = p.communicate(timeout=120)
            outputs.append(text)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    results = []
    for r, (p, text) in enumerate(zip(procs, outputs)):
        lines = [line for line in text.splitlines() if line.startswith("RESULT ")]
        assert p.returncode == 0 and lines, f"rank {r} (status {p.returncode}):\n{text[-2000:]}"
        results.append(json.loads(lines[-1][len("RESULT "):]))
    return results


CASES = {
    "negative": ({"sizes": [-5]}, "-5 bytes for node 1's message"),
    "terabyte": ({"sizes": [1 << 40]}, f"{1 << 40} bytes for node 1's message, more than the {1 << 30} a message"),
    "overflowing-sum": ({"sizes": [1 << 62, 1 << 62]}, f"{1 << 62} bytes for node 2's message"),
    "over-the-set-bound": ({"sizes": [5000], "max_message_bytes": 4096}, "5000 bytes for node 1's message, more "
                                                                          "than the 4096 a message may have"),
    "peer-total": ({"sizes": [3000, 3000], "max_message_bytes": 4096, "max_peer_bytes": 5000},
                   "6000 bytes in all, more than the 5000 one rank may send in a round"),
}


HONEST = {"sizes": [5], "payload": "world", "max_message_bytes": 5, "max_peer_bytes": 5}


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict[str, tuple[dict, dict]]:
    """Every case, run once on one pair of ranks: name -> (rank 0's result, rank 1's)."""
    names = sorted(CASES)
    rank0, rank1 = _run_pair(tmp_path_factory.mktemp("ranks"), [CASES[n][0] for n in names] + [HONEST])
    return dict(zip(names + ["honest"], zip(rank0, rank1)))


@pytest.mark.parametrize("name", sorted(CASES))
def test_forged_sizes_are_a_peer_error_naming_the_rank_and_round(outcomes, name):
    case, detail = CASES[name]
    rank0, rank1 = outcomes[name]
    error = rank0.get("error")
    assert error is not None, rank0
    who = "rank 1 (node 1)" if len(case["sizes"]) == 1 else "rank 1 (nodes 2-3)"
    assert error.startswith(f"{who} sent malformed message sizes in round 1 ({detail}"), error
    assert "\n" not in error
    # rank 1 was told that rank 0 stopped because of it: ABORT (2), culprit 1, round 1, reason "malformed" (4)
    assert rank1["notice"] == [2, 1, 1, 4], rank1


def test_honest_sizes_within_the_set_bounds_still_travel(outcomes):
    """The last case, after five failed exchanges on the same process group: an honest one goes through."""
    rank0, rank1 = outcomes["honest"]
    assert rank0["inbox"] == {"0": [[1, "world"]]} and rank1["received"] == "hello"
