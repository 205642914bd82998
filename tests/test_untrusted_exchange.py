"""What a peer sends in an exchange is checked before anything is used: the sizes it declares are bounded
before anything is allocated for them, and every frame must end where it should (its trailer), for its round.

Two gloo ranks in subprocesses: rank 1 sends forged frames through the engine's own tags (what a broken or
hostile peer could send: forged sizes, truncated or too long frames, frames of another round, frames without
the trailer), rank 0 runs ``exchange`` and must answer with a PeerError naming rank 1 and the round, telling
rank 1 too (the abort notice on the control channel), and never abort in gloo. A frame longer than the
engine's SLACK still aborts gloo (no point-to-point protocol over gloo can refuse it): not a case here.
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
from jwins.engine.distributed import DistributedEngine, _buffer, _frame, _trailer
from jwins.errors import PeerError
from jwins.topology import full


def framed(data, round1, how):
    # data (a uint8 tensor) as a frame: with its trailer, "bare" (none), "short" (its last byte cut),
    # "long" (three bytes too many before the trailer) or "stale" (the trailer of another round)
    if how == "bare":
        return data
    if how == "short":
        return _frame(data[:-1], round1)
    if how == "long":
        return _frame(torch.cat([data, torch.tensor([7, 7, 7], dtype=torch.uint8)]), round1)
    return _frame(data, round1 + 6 if how == "stale" else round1)


results = []
for case in json.loads(sys.argv[1]):
    forged = case["sizes"]
    count = case.get("count", len(forged))      # nodes per rank
    nodes = 2 * count
    limits = {k: case[k] for k in ("max_message_bytes", "max_peer_bytes") if k in case}
    engine = DistributedEngine(nodes, timeout=20, **limits)
    graph = full(nodes)
    out = {}
    if engine.rank == 1:
        dist = engine._dist
        sizes = torch.tensor([case.get("round", 0)] + forged, dtype=torch.int64).view(torch.uint8)
        mine = framed(sizes, 1, case.get("sizes_frame", "ok"))
        theirs = _buffer(8 * (1 + count))
        works = dist.batch_isend_irecv([dist.P2POp(dist.isend, mine, 0, engine._group, engine._tag["sizes"]),
                                        dist.P2POp(dist.irecv, theirs, 0, engine._group, engine._tag["sizes"])])
        for w in works:
            w.wait()
        if case.get("payload"):
            data = torch.frombuffer(bytearray(case["payload"].encode()), dtype=torch.uint8)
            blob = framed(data, 1, case.get("payload_frame", "ok"))
            got = _buffer(5 * count)
            works = dist.batch_isend_irecv([dist.P2POp(dist.isend, blob, 0, engine._group, engine._tag["payload"]),
                                            dist.P2POp(dist.irecv, got, 0, engine._group, engine._tag["payload"])])
            for w in works:
                w.wait()
            out["received"] = bytes(got[:5 * count].numpy()).decode()
        if case.get("fails", True):
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


HONEST = {"sizes": [5], "payload": "world", "max_message_bytes": 5, "max_peer_bytes": 5, "fails": False}

# frames that do not end where they should: (case, what rank 0's error says in its parentheses)
FRAMES = {
    "sizes-without-trailer": ({"sizes": [5], "sizes_frame": "bare"},
                              "no end marker after the 16 bytes expected (another protocol, or more than 4096 "
                              "bytes too long)"),
    "sizes-missing-a-count": ({"sizes": [5], "count": 2}, "16 bytes where 24 were expected: truncated, or counts "
                                                          "that disagree with its data"),
    "sizes-with-a-count-too-many": ({"sizes": [5, 5, 5], "count": 2}, "32 bytes where 24 were expected: longer "
                                                                       "than it announced"),
    "payload-truncated": ({"sizes": [5], "payload": "world", "payload_frame": "short"},
                          "4 bytes where 5 were expected: truncated, or counts that disagree with its data"),
    "payload-longer-than-declared": ({"sizes": [5], "payload": "world", "payload_frame": "long"},
                                     "8 bytes where 5 were expected: longer than it announced"),
    "payload-of-another-round": ({"sizes": [5], "payload": "world", "payload_frame": "stale"},
                                 "a frame of round 7 where round 1 was expected (left over, or replayed)"),
}


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict[str, tuple[dict, dict]]:
    """Every case, run once on one pair of ranks: name -> (rank 0's result, rank 1's)."""
    names = sorted(CASES) + sorted(FRAMES) + ["wrong-round"]
    cases = [CASES[n][0] for n in sorted(CASES)] + [FRAMES[n][0] for n in sorted(FRAMES)] + \
        [{"sizes": [5], "round": 3, "fails": False}, HONEST]
    rank0, rank1 = _run_pair(tmp_path_factory.mktemp("ranks"), cases)
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


@pytest.mark.parametrize("name", sorted(FRAMES))
def test_a_frame_that_does_not_end_where_it_should_is_a_peer_error_never_an_abort(outcomes, name):
    case, detail = FRAMES[name]
    rank0, rank1 = outcomes[name]
    error = rank0.get("error")
    assert error is not None, rank0
    who = "rank 1 (node 1)" if case.get("count", 1) == 1 else "rank 1 (nodes 2-3)"
    what = "exchanging messages" if "payload" in case else "exchanging message sizes"
    assert error == (f"{who} sent a malformed frame in round 1 while {what} ({detail}) [seen by rank 0]; nothing "
                     "from it was used, and the other ranks stop too"), error
    # rank 1 was told: ABORT (2), culprit 1, round 1, reason "malformed frame" (5)
    assert rank1["notice"] == [2, 1, 1, 5], rank1


def test_a_peer_in_another_round_is_named_as_out_of_step(outcomes):
    rank0, _ = outcomes["wrong-round"]
    assert rank0["error"].startswith("rank 1 sent its messages of round 4 while rank 0 is in round 1: the ranks "
                                     "are out of step"), rank0


def test_honest_sizes_within_the_set_bounds_still_travel(outcomes):
    """The last case, after a dozen failed exchanges on the same process group: an honest one goes through."""
    rank0, rank1 = outcomes["honest"]
    assert rank0["inbox"] == {"0": [[1, "world"]]} and rank1["received"] == "hello"
