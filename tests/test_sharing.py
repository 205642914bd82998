"""The vectorised sharing algorithms against the slow per-node references, and their contract."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from jwins import topology
from jwins import config, wire
from jwins.communication import communicate
from jwins.config import WireConfig
from jwins.engine.local import LocalTransport
from jwins.registry import SHARING
from jwins.sharing import Mixing, TopKSelector, choco, full, jwins, subsample, top_k_mask, topk
from jwins.transforms import identity, wavelet
from jwins.world import build_sharing

import reference_sharing as ref

SEED = 7


def _setup(num_nodes: int, degree: int, dim: int, *, seed: int = 0):
    graph = topology.regular(num_nodes, degree, seed=seed)
    neighbors = [list(nb) for nb in graph.neighbors]
    g = np.random.default_rng(seed)
    x0 = g.normal(size=(num_nodes, dim)).astype(np.float32)
    return graph, neighbors, x0


def _train(x: np.ndarray, t: int) -> np.ndarray:
    """A stand-in for local training: a seeded perturbation of every node's parameters."""
    g = np.random.default_rng(1000 + t)
    return (x + 0.05 * g.normal(size=x.shape)).astype(np.float32)


def _run_both(sharing, reference, graph, neighbors, x0, rounds, *, index_codec="elias-gamma",
              value_codec="float32"):
    n = len(x0)
    mixing = Mixing(topology.metropolis_hastings(graph), tuple(range(n)))
    params = torch.from_numpy(x0.copy())
    state = sharing.init(params, list(range(n)))
    xs = [row.copy() for row in x0]
    transport = LocalTransport()
    for t in range(rounds):
        trained = _train(params.numpy(), t)
        params = torch.from_numpy(trained)
        out = communicate(sharing, state, params, t, seed=SEED, graph=graph, mixing=mixing, transport=transport,
                          wire_config=WireConfig(index_codec=index_codec, value_codec=value_codec),
                          index_codec=getattr(sharing, "index_codec", None))
        params, state = out.params, out.state
        xs, ref_messages = reference.round([row for row in _train(np.stack(xs), t)], t)
        np.testing.assert_allclose(params.numpy(), np.stack(xs), rtol=1e-5, atol=1e-6,
                                   err_msg=f"round {t}: parameters differ from the reference")
        codec = getattr(sharing, "index_codec", None) or index_codec
        ref_bytes = ref.encoded_bytes(ref_messages, neighbors, index_codec=codec, value_codec=value_codec)
        np.testing.assert_array_equal(out.message_bytes[:, 0] * graph.degrees, ref_bytes,
                                      err_msg=f"round {t}: byte counts differ")
        # keep both sides on exactly the same numbers so that selections stay comparable round after round
        xs = [row.copy() for row in params.numpy()]
    return params, state


GRAPHS = [(8, 3), (10, 4), (12, 6)]


@pytest.mark.parametrize("num_nodes,degree", GRAPHS)
def test_full_equals_reference(num_nodes, degree):
    graph, neighbors, x0 = _setup(num_nodes, degree, 64)
    _run_both(full(), ref.RefFull(x0, neighbors, seed=SEED), graph, neighbors, x0, 3)


@pytest.mark.parametrize("num_nodes,degree", GRAPHS)
@pytest.mark.parametrize("alpha", [0.05, 0.2, 0.45, 0.5, 0.7])
def test_subsample_equals_reference(num_nodes, degree, alpha):
    graph, neighbors, x0 = _setup(num_nodes, degree, 301)
    _run_both(subsample(alpha=alpha), ref.RefSubsample(x0, neighbors, seed=SEED, alpha=alpha),
              graph, neighbors, x0, 3)


@pytest.mark.parametrize("num_nodes,degree", GRAPHS)
@pytest.mark.parametrize("alpha", [0.1, 0.3])
@pytest.mark.parametrize("accumulation,acc_avg", [(True, True), (True, False), (False, False)])
def test_topk_equals_reference(num_nodes, degree, alpha, accumulation, acc_avg):
    graph, neighbors, x0 = _setup(num_nodes, degree, 257)
    sharing = topk(alpha=alpha, accumulation=accumulation, accumulate_averaging=acc_avg)
    reference = ref.RefPartialModel(x0, neighbors, seed=SEED, alphas=[alpha], accumulation=accumulation,
                                    accumulate_averaging=acc_avg)
    _run_both(sharing, reference, graph, neighbors, x0, 4, index_codec="rice")


@pytest.mark.parametrize("num_nodes,degree", GRAPHS)
@pytest.mark.parametrize("transform", ["wavelet", "identity"])
@pytest.mark.parametrize("selection", ["change", "value"])
def test_jwins_equals_reference(num_nodes, degree, transform, selection):
    graph, neighbors, x0 = _setup(num_nodes, degree, 300)
    alphas = (0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 1.0)
    t = wavelet("sym2", 4) if transform == "wavelet" else identity()
    sharing = jwins(transform=t, alphas=alphas, selection=selection)
    reference = ref.RefPartialModel(x0, neighbors, seed=SEED, alphas=alphas, transform=transform,
                                    selection=selection)
    _run_both(sharing, reference, graph, neighbors, x0, 5, value_codec="fpzip")


@pytest.mark.parametrize("num_nodes,degree", GRAPHS)
@pytest.mark.parametrize("compressor", ["topk", "randomk"])
@pytest.mark.parametrize("alpha,gamma", [(0.1, 0.5), (0.3, 0.2)])
def test_choco_equals_textbook_reference(num_nodes, degree, compressor, alpha, gamma):
    graph, neighbors, x0 = _setup(num_nodes, degree, 200)
    sharing = choco(alpha=alpha, gamma=gamma, compressor=compressor)
    reference = ref.RefChoco(x0, neighbors, seed=SEED, alpha=alpha, gamma=gamma, compressor=compressor)
    _run_both(sharing, reference, graph, neighbors, x0, 4)


@pytest.mark.parametrize("value_codec", ["float16", "bfloat16"])
def test_choco_with_lossy_values_equals_reference(value_codec):
    """With a lossy value codec the rounding is part of CHOCO's compression operator: the sender's x_hat_i
    moves by what its neighbours decode, so every copy of x_hat_i stays identical."""
    graph, neighbors, x0 = _setup(10, 4, 200)
    sharing = choco(alpha=0.2, gamma=0.5, rounding=wire.roundtrip(value_codec))
    reference = ref.RefChoco(x0, neighbors, seed=SEED, alpha=0.2, gamma=0.5, quantize=value_codec)
    _, state = _run_both(sharing, reference, graph, neighbors, x0, 4, value_codec=value_codec)
    w = topology.metropolis_hastings(graph)
    np.testing.assert_allclose(state.neighbour_sum.numpy(), w @ state.public.numpy(), rtol=1e-5, atol=1e-6)


def _one_round(sharing, x: np.ndarray, graph, t: int = 0, state=None):
    n = len(x)
    mixing = Mixing(topology.metropolis_hastings(graph), tuple(range(n)))
    params = torch.from_numpy(x.copy())
    state = state if state is not None else sharing.init(params, list(range(n)))
    out = communicate(sharing, state, params, t, seed=SEED, graph=graph, mixing=mixing,
                      transport=LocalTransport(), index_codec=getattr(sharing, "index_codec", None))
    return out


@pytest.mark.parametrize("transform", [identity(), wavelet("sym2", 2)])
def test_jwins_alpha_one_identity_equals_full(transform):
    """JWINS that always sends everything is D-PSGD, in either domain (up to float rounding)."""
    graph, _, x0 = _setup(10, 3, 128)
    got = _one_round(jwins(transform=transform, alphas=(1.0,)), x0, graph).params
    want = _one_round(full(), x0, graph).params
    np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-5)


def test_choco_keep_all_gamma_one_equals_full():
    graph, _, x0 = _setup(10, 4, 128)
    sharing = choco(alpha=1.0, gamma=1.0)
    state = None
    x = x0
    want = x0
    for t in range(3):
        out = _one_round(sharing, x, graph, t, state)
        x, state = out.params.numpy(), out.state
        want = _one_round(full(), want, graph).params.numpy()
        np.testing.assert_allclose(x, want, atol=1e-5)


def test_full_sharing_keeps_the_mean_under_doubly_stochastic_mixing():
    """D-PSGD: one round of Metropolis-Hastings averaging (doubly stochastic) keeps the nodes' mean exactly."""
    graph, _, x0 = _setup(12, 4, 100)
    out = _one_round(full(), x0, graph)
    np.testing.assert_allclose(out.params.numpy().mean(0), x0.mean(0), atol=1e-5)


@pytest.mark.parametrize("name", sorted(set(SHARING.names()) - {"local", "full"}))
def test_partial_sharing_shrinks_the_spread_of_the_models(name):
    """With fill-in, receivers average different vectors, so the mean is not kept; but the models move towards
    each other: their spread around the mean shrinks in one round."""
    cfg = config.load(overrides=[f"sharing.algorithm={name}", "sharing.transform=identity", "sharing.alpha=0.3",
                                 "sharing.gamma=1.0"])
    graph, _, x0 = _setup(12, 4, 100)
    out = _one_round(build_sharing(cfg)[0], x0, graph)
    assert out.params.numpy().std(0).mean() < x0.std(0).mean()


def test_top_k_mask_ties_go_to_lower_index():
    scores = torch.tensor([[1.0, 3.0, 3.0, 3.0, 0.0], [5.0, 4.0, 3.0, 2.0, 1.0]])
    mask = top_k_mask(scores, np.array([2, 3]))
    assert mask.tolist() == [[False, True, True, False, False], [True, True, True, False, False]]


@pytest.mark.parametrize("seed", range(6))
def test_top_k_mask_accelerator_path_equals_cpu_path(seed):
    """On a GPU the k-th largest score comes from torch.kthvalue, on the CPU from np.partition: the same masks,
    with ties, zeros, NaN, inf, k = 0 and k = D among the rows."""
    g = np.random.default_rng(seed)
    n, d = 12, 300
    scores = np.round(g.normal(size=(n, d)), 1).astype(np.float32)  # rounding makes ties common
    scores[1, :50] = 0.0
    scores[2, ::7] = np.nan
    scores[3, ::11] = np.inf
    scores[4] = 1.0  # all tied
    ks = g.integers(1, d, size=n)
    ks[5], ks[6] = 0, d
    t = torch.from_numpy(scores)
    a = top_k_mask(t, ks, selection="numpy")
    b = top_k_mask(t, ks, selection="torch")
    assert torch.equal(a, b)
    assert a[[0, 1, 4]].sum(1).tolist() == [int(ks[0]), int(ks[1]), int(ks[4])]
    assert a[4].tolist() == [i < ks[4] for i in range(d)]  # ties: lowest indices first


def test_accumulation_rewinds_what_was_shared_and_keeps_the_rest():
    """After prepare, accumulated change is zero exactly where a node sent, and what was not sent keeps
    accumulating: A_after_merge = A_before[not shared] + (W x_new - W x_prev)."""
    graph, _, x0 = _setup(8, 3, 200)
    sharing = TopKSelector(alphas=(0.2,), accumulation=True, accumulate_averaging=True)
    params = torch.from_numpy(x0.copy())
    mixing = Mixing(topology.metropolis_hastings(graph), tuple(range(8)))
    state = sharing.init(params, list(range(8)))
    for t in range(3):
        params = torch.from_numpy(_train(params.numpy(), t))
        before = state.accumulated.clone()
        reference = state.reference.clone()
        rngs = [np.random.default_rng(i) for i in range(8)]
        messages, mid, prepared = sharing.prepare(state, params, t, rngs)
        sent = torch.zeros_like(before, dtype=torch.bool)
        for i, m in enumerate(messages):
            sent[i, torch.from_numpy(m.indices)] = True
        assert torch.all(mid.accumulated[sent] == 0)
        assert torch.equal(mid.accumulated[~sent], before[~sent])
        after_prepare = mid.accumulated.clone()  # the state is updated in place: keep what prepare left
        inbox = {i: [messages[j] for j in graph.neighbors[i]] for i in range(8)}
        new, state = sharing.merge(mid, params, inbox, mixing, prepared)
        expect = after_prepare + (new - reference)
        torch.testing.assert_close(state.accumulated, expect)
        params = new


def test_jwins_draws_alpha_from_the_list_per_node_and_round():
    graph, _, x0 = _setup(16, 4, 400)
    alphas = (0.1, 0.2, 1.0)
    sharing = jwins(transform=identity(), alphas=alphas)
    out = _one_round(sharing, x0, graph, t=3)
    seen = {round(float(a), 3) for a in out.alphas}
    assert seen <= {0.1, 0.2, 1.0} and len(seen) > 1
    # the draw is a function of (seed, node, round): the same on a second call
    again = _one_round(sharing, x0, graph, t=3)
    np.testing.assert_array_equal(out.alphas, again.alphas)


def _fill_in_per_row(z: torch.Tensor, pairs) -> torch.Tensor:
    """The fill-in as one index_add_ (or add_) per message, row by row: what the block version must equal."""
    y = z.clone()
    for zi, yi, row in zip(z, y, pairs):
        for w, m in row:
            v = torch.from_numpy(m.values)
            if m.indices is None:
                yi.add_(v - zi, alpha=w)
            else:
                idx = torch.from_numpy(m.indices)
                yi.index_add_(0, idx, v - zi[idx], alpha=w)
    return y


def _add_weighted_per_row(target: torch.Tensor, pairs) -> torch.Tensor:
    for ti, row in zip(target, pairs):
        for w, m in row:
            v = torch.from_numpy(m.values)
            if m.indices is None:
                ti.add_(v, alpha=w)
            else:
                ti.index_add_(0, torch.from_numpy(m.indices), v, alpha=w)
    return target


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("seed", range(4))
def test_block_fill_in_and_weighted_add_are_the_per_message_loop_bit_for_bit(seed, compiled, monkeypatch):
    """fill_in and add_weighted over a block (one compiled loop, or one index_add_ on an accelerator, per
    sender position) give the bits of one index_add_/add_ per message and row: sparse and dense messages mixed
    in sender order, rows with no messages and with up to 6, overlapping indices, weights that are not float32
    numbers, values over 8 decades. An index outside the row is refused, not written."""
    from jwins.sharing import base
    from jwins.sharing.base import add_weighted, fill_in
    from jwins.wire.message import Message

    monkeypatch.setattr(base, "COMPILED_SCATTER", compiled)
    g = np.random.default_rng(seed)
    b, d = 9, 301
    z = torch.from_numpy((g.standard_normal((b, d)) * 10.0 ** g.integers(-4, 4, (b, 1))).astype(np.float32))
    pairs = []
    for r in range(b):
        row = []
        for j in range(int(g.integers(0, 7))):
            w = float(g.uniform(0.01, 0.5))
            values = (g.standard_normal(d) * 10.0 ** g.integers(-4, 4)).astype(np.float32)
            if g.random() < 0.25:
                row.append((w, Message(j, 0, d, None, values)))
            else:
                idx = np.sort(g.choice(d, int(g.integers(1, d)), replace=False)).astype(np.int64)
                row.append((w, Message(j, 0, d, idx, values[idx])))
        pairs.append(row)
    bits = lambda t: t.view(torch.int32)  # noqa: E731 - signed zeros and NaN payloads count
    assert torch.equal(bits(fill_in(z, pairs)), bits(_fill_in_per_row(z, pairs)))
    assert torch.equal(bits(add_weighted(z.clone(), pairs)), bits(_add_weighted_per_row(z.clone(), pairs)))
    for bad in (d, -1):
        wrong = [[(0.5, Message(1, 0, d, np.array([0, bad]), np.ones(2, np.float32)))]]
        with pytest.raises(IndexError, match="outside its row of 301 values"):
            fill_in(z[:1], wrong)


@pytest.mark.parametrize("selector", [
    dict(transform="wavelet"), dict(transform="identity"), dict(transform="wavelet", selection="value"),
    dict(transform="wavelet", accumulation=False), dict(transform="identity", accumulate_averaging=False)])
def test_compiled_selection_is_the_tensor_path_bit_for_bit(selector, monkeypatch):
    """prepare and merge of the top-k selector on the CPU (compiled: scores, k-th largest, ties to the lower
    index, the accumulated change zeroed where sent, and merge's carry in one pass) give the tensor path's
    messages and state bit for bit over 3 rounds: every scoring mode, dense draws (alpha 1), values with many
    ties, and a row whose scores hold a NaN (left to the tensor path)."""
    import importlib

    topk_mod = importlib.import_module("jwins.sharing.topk")
    n, d = 6, 203
    graph = topology.regular(n, 2, seed=0)
    mixing = Mixing(topology.metropolis_hastings(graph), tuple(range(n)))
    g = np.random.default_rng(3)
    x0 = torch.from_numpy((np.round(g.standard_normal((n, d)) * 4) / 4).astype(np.float32))  # many ties

    def run(compiled: bool):
        monkeypatch.setattr(topk_mod, "COMPILED_SELECTION", compiled)
        transform = selector.get("transform")
        s = jwins(alphas=(0.05, 0.2, 1.0), transform=transform, **{k: v for k, v in selector.items()
                                                                   if k != "transform"})
        params = x0.clone()
        state = s.init(params, list(range(n)))
        seen = []
        for t in range(3):
            params = params + torch.from_numpy((np.round(np.random.default_rng(t).standard_normal((n, d)) * 2) / 8)
                                               .astype(np.float32))
            if t == 1:
                params[2, 5] = float("nan")
            rngs = [np.random.default_rng([t, i]) for i in range(n)]
            messages, state, kept = s.prepare(state, params, t, rngs)
            seen.append([(m.indices, m.values) for m in messages])
            seen.append([state.accumulated.clone(), state.reference.clone()])
            if t == 1:
                params[2, 5] = 0.0
                for m in messages:
                    m.values[~np.isfinite(m.values)] = 0.0
            inbox = {i: [messages[j] for j in sorted(graph.neighbors[i])] for i in range(n)}
            params, state = s.merge(state, params, inbox, mixing, kept)
            seen.append([params.clone(), state.accumulated.clone(), state.reference.clone()])
        return seen

    fast, slow = run(True), run(False)
    as_bits = lambda a: (torch.as_tensor(np.asarray(a)) if not isinstance(a, torch.Tensor) else a).view(torch.int32)  # noqa: E731
    for got, want in zip(fast, slow):
        for a, b in zip(got, want):
            if isinstance(a, tuple):
                assert (a[0] is None) == (b[0] is None)
                if a[0] is not None:
                    np.testing.assert_array_equal(a[0], b[0])
                assert torch.equal(as_bits(a[1]), as_bits(b[1]))
            else:
                assert torch.equal(as_bits(a), as_bits(b))


@pytest.mark.parametrize("with_nan", [False, True])
def test_top_k_indices_are_the_masks_true_entries(with_nan):
    """top_k_indices (compiled on the CPU) gives, row by row, the sorted positions top_k_mask marks: ties at the
    k-th largest to the lower index, k = 0 and k = D, and a block holding a NaN (the mask decides)."""
    from jwins.sharing.topk import top_k_indices

    g = np.random.default_rng(11)
    scores = torch.from_numpy((np.round(g.standard_normal((7, 150)) * 3) / 3).astype(np.float32)).abs()
    if with_nan:
        scores[3, 10] = float("nan")
    ks = np.array([0, 1, 5, 40, 75, 149, 150])
    mask = top_k_mask(scores, ks).numpy()
    got = top_k_indices(scores, ks)
    for row, idx in zip(mask, got):
        np.testing.assert_array_equal(idx, np.flatnonzero(row))
