"""The contract every registered sharing algorithm meets, each built through the configuration as users build it.

Parametrised over the registry (``jwins.registry.SHARING``): an algorithm added there is tested here with no
edit. What an algorithm must declare for it (``everything``: the settings under which it sends its whole model
every round) is part of its registration.
"""
from __future__ import annotations


import numpy as np
import pytest
import torch

from helpers import assert_resume_continues, rows
from jwins import config, rng, topology
from jwins.communication import communicate
from jwins.engine.local import LocalTransport
from jwins.errors import ConfigError
from jwins.experiment import run
from jwins.network import lost_links
from jwins.registry import SHARING
from jwins.sharing import Mixing
from jwins.wire import seeded_indices
from jwins.world import build_sharing

QUICK = ["nodes=8", "rounds=4", "topology.degree=3", "eval.every=2", "data.max_samples=600",
         "wire.value_codec=float32"]
ALGORITHMS = SHARING.names()


def _cfg(name: str, *extra: str) -> config.Config:
    return config.load(overrides=[*QUICK, f"sharing.algorithm={name}", *extra])


def _everything(name: str) -> tuple[str, ...]:
    settings = SHARING.entry(name).info.get("everything")
    if settings is None:
        pytest.skip(f"{name} has no setting that sends the whole model every round")
    return settings




@pytest.mark.parametrize("name", ALGORITHMS)
def test_sending_everything_is_full_sharing(name):
    """At its send-everything setting an algorithm is D-PSGD: the same parameters as full sharing after 4 rounds
    of real training and averaging, to float32 round-off (JWINS averages in the wavelet domain)."""
    got = run(_cfg(name, *_everything(name)), write=False)
    want = run(_cfg("full"), write=False)
    assert all(m["bytes_sent"] > 0 for m in got.metrics)
    torch.testing.assert_close(got.params, want.params, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ALGORITHMS)
def test_same_seed_same_run_other_seed_other_run(name, tmp_path):
    """Metrics (accuracy, losses, bytes) and final parameters are a function of the config and seed alone."""
    a = run(_cfg(name), run_dir=tmp_path / "a")
    b = run(_cfg(name), run_dir=tmp_path / "b")
    c = run(_cfg(name, "seed=1"), run_dir=tmp_path / "c")
    assert rows(tmp_path / "a") == rows(tmp_path / "b")
    assert torch.equal(a.params, b.params)
    assert rows(tmp_path / "a") != rows(tmp_path / "c") and not torch.equal(a.params, c.params)


@pytest.mark.parametrize("name", ALGORITHMS)
def test_resuming_from_a_checkpoint_continues_the_same_run(name, tmp_path):
    """A run stopped after round 4 (checkpoint every 2 rounds) and resumed to round 6 has the metrics and
    parameters of the uninterrupted run, bit for bit: the checkpoint holds the whole sharing state."""
    assert_resume_continues(_cfg(name, "checkpoint.every=2", "rounds=6", "train.momentum=0.5"), tmp_path, cut=4)


def _train(x: np.ndarray, t: int) -> np.ndarray:
    g = np.random.default_rng(1000 + t)
    return (x + 0.05 * g.normal(size=x.shape)).astype(np.float32)


def _renormalised_average(x: np.ndarray, w: np.ndarray, neighbors, lost: np.ndarray) -> np.ndarray:
    """Oracle: each receiver averages itself and the neighbours whose message arrived, with its
    Metropolis-Hastings weights divided by their sum over what arrived."""
    out = np.empty_like(x, dtype=np.float64)
    for i in range(len(x)):
        arrived = [j for j in neighbors[i] if not lost[j, i]]
        total = w[i, i] + sum(w[i, j] for j in arrived)
        out[i] = (w[i, i] * x[i].astype(np.float64) + sum(w[i, j] * x[j].astype(np.float64) for j in arrived)) / total
    return out


@pytest.mark.parametrize("name", ALGORITHMS)
def test_lost_messages_renormalise_the_mixing_weights(name):
    """With 30% of the messages lost, an algorithm at its send-everything setting averages every node with the
    neighbours it heard from, weights renormalised per receiver. An algorithm whose state cannot survive a lost
    message must refuse the setting before any work, naming both keys."""
    settings = _everything(name)
    cfg = _cfg(name, *settings, "faults.message_loss=0.3")
    try:
        sharing, traits = build_sharing(cfg)
    except ConfigError as e:
        assert "faults.message_loss" in str(e) and "sharing.algorithm" in str(e)
        return
    graph = topology.regular(10, 4, seed=3)
    w = topology.metropolis_hastings(graph)
    mixing = Mixing(w, tuple(range(10)))
    x = np.random.default_rng(0).normal(size=(10, 130)).astype(np.float32)
    params = torch.from_numpy(x)
    state = sharing.init(params, list(range(10)))
    any_lost = False
    for t in range(4):
        params = torch.from_numpy(_train(params.numpy(), t))
        lost = lost_links(cfg.replace(nodes=10), t)
        any_lost |= any(lost[j, i] for i in range(10) for j in graph.neighbors[i])
        want = _renormalised_average(params.numpy(), w, graph.neighbors, lost)
        out = communicate(sharing, state, params, t, seed=cfg.seed, graph=graph, mixing=mixing,
                          transport=LocalTransport(), wire_config=cfg.wire, index_codec=traits.index_codec, lost=lost)
        np.testing.assert_allclose(out.params.numpy(), want, rtol=1e-5, atol=1e-5, err_msg=f"round {t}")
        params, state = out.params, out.state
    assert any_lost


# --------------------------------------------------------------------------------------------- the cut-off

def _values_sent(name: str, *settings: str, dim: int = 400, nodes: int = 6) -> tuple[list[int], list[bool], int]:
    """(values per message, whether each is dense, the message dimension) of one round."""
    cfg = _cfg(name, *settings)
    sharing, traits = build_sharing(cfg)
    graph = topology.regular(nodes, 3, seed=0)
    params = torch.from_numpy(np.random.default_rng(1).normal(size=(nodes, dim)).astype(np.float32))
    out = communicate(sharing, sharing.init(params, list(range(nodes))), params, 0, seed=cfg.seed, graph=graph,
                      mixing=Mixing(topology.metropolis_hastings(graph), tuple(range(nodes))),
                      transport=LocalTransport(), wire_config=cfg.wire, index_codec=traits.index_codec)
    return [m.k for m in out.messages], [m.dense for m in out.messages], sharing.message_dim(dim)


CAP = 0.5
BELOW, ABOVE = 0.45, 0.6


@pytest.mark.parametrize("alpha", [BELOW, CAP, ABOVE])
@pytest.mark.parametrize("name", ["topk", "jwins"])
def test_topk_and_jwins_send_densely_from_the_cap_on(name, alpha):
    """TopK and JWINS (reference: PartialModel): alpha >= metadata_cap sends all coefficients densely;
    below it, round(alpha * D') of them."""
    key = "sharing.alpha" if name == "topk" else "sharing.alphas"
    value = alpha if name == "topk" else [alpha]
    ks, dense, dim = _values_sent(name, f"{key}={value}", f"sharing.metadata_cap={CAP}")
    if alpha >= CAP:
        assert ks == [dim] * len(ks) and all(dense)
    else:
        assert ks == [int(round(alpha * dim))] * len(ks) and not any(dense)


@pytest.mark.parametrize("alpha", [BELOW, CAP, ABOVE])
def test_subsample_sends_densely_only_above_the_cap(alpha):
    """Random subsampling (reference: SubSampling): the whole model only when alpha > metadata_cap; at the cap
    it still sends the random mask drawn from the node's seed."""
    ks, dense, dim = _values_sent("subsample", f"sharing.alpha={alpha}", f"sharing.metadata_cap={CAP}")
    if alpha > CAP:
        assert ks == [dim] * len(ks) and all(dense)
        return
    assert not any(dense)
    for node, k in enumerate(ks):
        mask_seed = int(rng.stream(0, "sharing", node, 0).integers(0, 2**53))
        assert k == len(seeded_indices(mask_seed, dim, alpha))
        assert abs(k - alpha * dim) < 5 * np.sqrt(dim * alpha * (1 - alpha))


@pytest.mark.parametrize("alpha", [BELOW, CAP, ABOVE, 0.99, 1.0])
def test_choco_always_compresses(alpha):
    """CHOCO-SGD has no cut-off: its top-k compressor keeps round(alpha * D) entries whatever
    sharing.metadata_cap says (alpha = 0.6 sends 60%, not the whole vector); only alpha = 1 is dense."""
    ks, dense, dim = _values_sent("choco", f"sharing.alpha={alpha}", f"sharing.metadata_cap={CAP}")
    assert ks == [int(round(alpha * dim))] * len(ks)
    assert dense == [alpha == 1.0] * len(ks)


@pytest.mark.parametrize("name", ["full", "local"])
def test_full_sends_everything_and_local_nothing(name):
    ks, dense, dim = _values_sent(name)
    assert (ks, dense) == (([dim] * 6, [True] * 6) if name == "full" else ([], []))


@pytest.mark.parametrize("name", ALGORITHMS)
def test_blocks_change_no_number(name, tmp_path, monkeypatch):
    """A round done one row at a time with nothing kept from prepare to merge (the smallest memory budget)
    gives the numbers of a round done in one block that keeps what it can: training, selection, fill-in and
    state updates are per node, whatever the blocks, and what merge recomputes is what prepare had."""
    from jwins import experiment

    whole = run(_cfg(name), run_dir=tmp_path / "whole")
    monkeypatch.setattr(experiment, "block_bytes", lambda config: 1)  # one row per block
    monkeypatch.setattr(experiment, "spare_bytes", lambda config: 0)  # keep nothing between the phases
    blocked = run(_cfg(name), run_dir=tmp_path / "blocked")
    assert rows(tmp_path / "blocked") == rows(tmp_path / "whole")
    assert torch.equal(blocked.params, whole.params)
