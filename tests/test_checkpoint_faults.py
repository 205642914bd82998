"""Checkpoint and resume, fault injection and the network time model."""
from __future__ import annotations


import numpy as np
import pytest
import torch

from helpers import rows
from jwins import config
from jwins.errors import CheckpointError
from jwins.experiment import build_world, run
from jwins.network import network_time

QUICK = ["nodes=8", "rounds=6", "topology.degree=3", "eval.every=2", "data.max_samples=500",
         "wire.value_codec=float32"]


def _cfg(*extra: str):
    return config.load(overrides=[*QUICK, *extra])




@pytest.mark.parametrize("algorithm,extra", [("jwins", ["train.momentum=0.9"]), ("choco", []), ("topk", [])])
def test_resumed_run_equals_uninterrupted_run(tmp_path, algorithm, extra):
    cfg = _cfg(f"sharing.algorithm={algorithm}", "checkpoint.every=2", *extra)
    whole = run(cfg, run_dir=tmp_path / "whole")
    # the interrupted run: stopped after round 4 (as if killed), leaving a checkpoint of round 4
    short = cfg.replace(rounds=4)
    run(short, run_dir=tmp_path / "cut")
    (tmp_path / "cut" / "summary.json").unlink()
    resumed = run(cfg, run_dir=tmp_path / "cut", resume=True)
    assert rows(tmp_path / "cut") == rows(tmp_path / "whole")
    torch.testing.assert_close(resumed.params, whole.params, rtol=0, atol=0)


def test_truncated_checkpoint_is_refused(tmp_path):
    cfg = _cfg("checkpoint.every=2", "rounds=2")
    run(cfg, run_dir=tmp_path / "r")
    path = tmp_path / "r" / "checkpoint.npz"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="is damaged"):
        run(cfg.replace(rounds=4), run_dir=tmp_path / "r", resume=True)


def test_checkpoint_of_another_config_is_refused(tmp_path):
    cfg = _cfg("checkpoint.every=2", "rounds=2")
    run(cfg, run_dir=tmp_path / "r")
    other = _cfg("checkpoint.every=2", "rounds=4", "train.lr=0.5")
    with pytest.raises(CheckpointError, match=r"different configuration \(differs in train.lr\)"):
        run(other, run_dir=tmp_path / "r", resume=True)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        run(cfg, run_dir=tmp_path / "elsewhere", resume=True)


def test_checkpoint_is_written_atomically(tmp_path, monkeypatch):
    """A crash while writing leaves the previous checkpoint intact (write to .tmp, then rename)."""
    from jwins import checkpoint

    cfg = _cfg("checkpoint.every=1", "rounds=1")
    run(cfg, run_dir=tmp_path / "r")
    path = tmp_path / "r" / "checkpoint.npz"
    before = path.read_bytes()

    def crash(file, **arrays):
        file.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.np, "savez", crash)
    with pytest.raises(OSError):
        run(cfg.replace(rounds=2), run_dir=tmp_path / "r", resume=True)
    assert path.read_bytes() == before


def test_with_all_messages_lost_nodes_never_change_by_averaging():
    """message_loss = 1: nothing arrives, so after merging every node still holds its own (trained) model."""
    cfg = _cfg("faults.message_loss=1.0", "train.local_steps=0", "model.same_init=false", "rounds=3")
    _, x0 = build_world(cfg, list(range(cfg.nodes)))
    result = run(cfg, write=False)
    torch.testing.assert_close(result.params, x0, rtol=0, atol=0)
    assert result.metrics[0]["bytes_sent"] > 0  # the messages were sent, then lost


def test_offline_nodes_neither_train_nor_send():
    cfg = _cfg("faults.offline=0.5", "rounds=1", "eval.every=0")
    from jwins.network import offline_nodes

    offline = offline_nodes(cfg, 0)
    assert 0 < offline.sum() < cfg.nodes
    _, x0 = build_world(cfg, list(range(cfg.nodes)))
    result = run(cfg, write=False)
    moved = (result.params != x0).any(1).numpy()
    assert not moved[offline].any()
    assert moved[~offline].all()
    assert result.metrics[0]["offline"] == int(offline.sum())


def test_network_time_arithmetic():
    """Two nodes: node 0 sends 1 MB to each of 2 neighbours over a 10 Mbit/s uplink with 5 ms latency after
    0.1 s of compute: 0.1 + 0.005 + 2 * 8e6 / 10e6 = 1.705 s. Node 1 sends nothing: 0.3 s. The round takes the
    slower: 1.705 s. With per-link bandwidth the two copies go in parallel: 0.1 + 0.005 + 0.8 = 0.905 s."""
    cfg = _cfg("network.bandwidth_mbps=10", "network.latency_ms=5")
    compute = np.array([0.1, 0.3])
    message = np.array([1e6, 0.0])
    degrees = np.array([2, 2])
    assert network_time(cfg, compute, message, degrees) == pytest.approx(1.705)
    per_link = _cfg("network.bandwidth_mbps=10", "network.latency_ms=5", "network.per_link=true")
    assert network_time(per_link, compute, message, degrees) == pytest.approx(0.905)


def test_network_seconds_are_reported_cumulatively(tmp_path):
    result = run(_cfg("network.bandwidth_mbps=1", "rounds=3", "eval.every=0"), write=False)
    times = [m["network_seconds"] for m in result.metrics]
    assert all(b > a for a, b in zip(times, times[1:]))
    # at 1 Mbit/s the transfer alone takes bytes_sent * 8 / 1e6 per round at least
    assert times[0] >= result.metrics[0]["bytes_sent"] * 8 / 1e6 * 0.99
    # the run's total is in the summary, and jwins run prints it
    from jwins.experiment import format_summary

    assert result.summary["modelled_seconds"] == times[-1]
    assert f"modelled time (compute + network)  {times[-1]:.1f} s" in format_summary(result.summary)
    assert "modelled_seconds" not in run(_cfg("rounds=1"), write=False).summary


class _Silent:
    """A sharing algorithm whose state is None (the protocol allows it): it never talks."""

    def message_dim(self, dim):
        return dim

    def init(self, params, nodes):
        return None

    def prepare(self, state, params, round, rngs):
        return [], None, None

    def merge(self, state, params, inbox, mixing, prepared):
        return params, None


def test_a_sharing_state_of_none_is_checkpointed_and_resumed(tmp_path):
    cfg = _cfg("rounds=4", "checkpoint.every=1", "eval.every=2")
    run(cfg, sharing=_Silent(), run_dir=tmp_path / "whole")
    run(cfg.replace(rounds=2), sharing=_Silent(), run_dir=tmp_path / "cut")
    (tmp_path / "cut" / "summary.json").unlink()
    run(cfg, sharing=_Silent(), run_dir=tmp_path / "cut", resume=True)
    assert rows(tmp_path / "cut") == rows(tmp_path / "whole")


def test_network_time_of_nodes_on_shared_hosts():
    """6 nodes on a ring, 2 hosts of 3 (nodes 0-2, 3-5), 10 Mbit/s uplinks, no latency. Node 2's neighbours are
    1 (same host) and 3 (the other): its 1 MB crosses once; so does node 0's (neighbours 5 and 1) and node 3's and
    node 5's; nodes 1 and 4 talk within their host. Host 0 computes 0.1 + 0.2 + 0.3 = 0.6 s, host 1 0.3 s; each
    sends 2 MB: 1.6 s at 10 Mbit/s. In lockstep: the slowest work, then the slowest transfer: 0.6 + 1.6 = 2.2 s;
    with host 0 sending only 1 MB (node 2 silent): still 0.6 + 1.6, host 1's link is the slower. Per node (no
    hosts): 0.3 + 1.6 = 1.9 s."""
    from jwins import topology

    ring = topology.ring(6)
    cfg = _cfg("nodes=6", "topology.degree=2", "network.bandwidth_mbps=10", "network.hosts=2")
    compute = np.array([0.1, 0.2, 0.3, 0.1, 0.1, 0.1])
    message = np.full(6, 1e6)
    assert network_time(cfg, compute, message, ring.degrees, ring) == pytest.approx(2.2)
    quiet = message.copy()
    quiet[2] = 0.0
    assert network_time(cfg, compute, quiet, ring.degrees, ring) == pytest.approx(2.2)
    alone = _cfg("nodes=6", "topology.degree=2", "network.bandwidth_mbps=10")
    assert network_time(alone, compute, message, ring.degrees, ring) == pytest.approx(1.9)
