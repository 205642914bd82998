"""Tests for jwins.training.Trainer: local SGD on the flat [N, D] matrix against plain PyTorch.

The reference for every node is what a user would write by hand: a private copy of the model module holding
the node's initial row, ``torch.optim.SGD`` (lr, momentum, weight decay) kept across rounds, stepped on exactly
the batches ``batch_indices`` gives for (seed, node, round), with ``training.loss_fn(task)``; an inactive node's
optimizer is simply not stepped in that round. Tolerances: the per-node loop (``method="loop"``) runs the same
ops as the reference and is compared with rtol=1e-6, atol=1e-7 (it is bit-identical here); ``method="vmap"``
batches the ops over nodes, so it may differ by float32 round-off and is compared with rtol=1e-5, atol=1e-6.

The CNN (max pooling) is checked with the loop only. Under vmap a round-off difference can flip a max-pool
argmax: with this file's data, node 5's second step of round 0 has two conv1 outputs in one 2x2 window that are
1 ulp apart on the plain path (0.63822609 < 0.63822621) and exactly equal under vmap, so the window's gradient
goes to the other pixel and 9 conv1 weights differ by up to 2.7e-3 (a discontinuity of max pooling, not a jwins
bug: ``torch.func.vmap(torch.func.grad(f))`` of conv2d + max_pool2d alone does the same). The MLP's only kinks
are ReLUs at 0, which round-off does not reach here, so vmap is compared on it.
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from jwins import models, parallel, training
from jwins.flat import FlatModel, init_params

SEED = 11
STEPS = 3
BATCH = 8
LR = 0.05
NODES = [3, 5, 8, 13]  # node ids differ from row indices: batches are keyed by the node id
# per round: which hosted rows train (None: all). Round 1 skips rows 0 and 2, round 2 skips row 1, so every
# row sits out once while the others' momentum carries on, and round 3 trains everyone again.
ACTIVE: list[np.ndarray | None] = [None, np.array([False, True, False, True]),
                                   np.array([True, False, True, True]), None]
TOL = {"loop": dict(rtol=1e-6, atol=1e-7), "vmap": dict(rtol=1e-5, atol=1e-6)}


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 5))


def _cnn() -> nn.Module:
    return models.small_cnn(num_classes=10, input_shape=(1, 8, 8))


def _mf() -> nn.Module:
    return models.matrix_factorization(num_users=9, num_items=7, mf_dim=4)


@dataclass
class Problem:
    factory: Callable[[], nn.Module]
    task: str
    x: Tensor
    y: Tensor
    parts: list[np.ndarray]


def _partitions(count: int, rows: int, g: np.random.Generator) -> list[np.ndarray]:
    """Disjoint int64 partitions of different sizes; one is smaller than a round's STEPS * BATCH samples,
    so its batches wrap into a fresh shuffle."""
    perm = g.permutation(count).astype(np.int64)
    sizes = [40, 30, 10, 50][:rows]
    bounds = np.cumsum([0] + sizes)
    return [perm[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def _problem(kind: str) -> Problem:
    g = torch.Generator().manual_seed(0)
    npg = np.random.default_rng(0)
    count = 160
    if kind == "mlp":
        x, y = torch.randn(count, 12, generator=g), torch.randint(0, 5, (count,), generator=g)
        return Problem(_mlp, "classification", x, y, _partitions(count, len(NODES), npg))
    if kind == "cnn":
        x, y = torch.randn(count, 1, 8, 8, generator=g), torch.randint(0, 10, (count,), generator=g)
        return Problem(_cnn, "classification", x, y, _partitions(count, len(NODES), npg))
    x = torch.stack([torch.randint(0, 9, (count,), generator=g), torch.randint(0, 7, (count,), generator=g)], 1)
    y = torch.rand(count, generator=g) * 4 + 1
    return Problem(_mf, "regression", x, y, _partitions(count, len(NODES), npg))


def _trainer(p: Problem, flat: FlatModel, method: str, momentum: float, weight_decay: float,
             nodes: list[int] = NODES) -> training.Trainer:
    return training.Trainer(flat, p.x, p.y, p.parts, nodes, task=p.task, seed=SEED, local_steps=STEPS,
                            batch_size=BATCH, lr=LR, momentum=momentum, weight_decay=weight_decay, method=method)


def _reference(p: Problem, flat: FlatModel, params0: Tensor, momentum: float, weight_decay: float
               ) -> tuple[list[Tensor], list[np.ndarray], list[list[torch.optim.SGD]], list[nn.Module]]:
    """Plain PyTorch, node by node: (params after each round [N, D], losses per round, optimizers, modules)."""
    loss = training.loss_fn(p.task)
    mods, opts = [], []
    for row in params0:
        m = copy.deepcopy(flat.module)
        nn.utils.vector_to_parameters(row.clone(), m.parameters())
        mods.append(m)
        opts.append(torch.optim.SGD(m.parameters(), lr=LR, momentum=momentum, weight_decay=weight_decay))
    after, losses = [], []
    with parallel.single_threaded():  # the same intra-op threading as the loop's workers
        for rnd, active in enumerate(ACTIVE):
            round_losses = np.full(len(mods), np.nan)
            for i in range(len(mods)):
                if active is not None and not active[i]:
                    continue
                ids = training.batch_indices(p.parts[i], seed=SEED, node=NODES[i], round=rnd, steps=STEPS,
                                             batch_size=BATCH)
                step_losses = []
                for batch in ids:
                    batch_t = torch.from_numpy(batch)
                    opts[i].zero_grad()
                    value = loss(mods[i](p.x[batch_t]), p.y[batch_t])
                    value.backward()
                    opts[i].step()
                    step_losses.append(value.item())
                round_losses[i] = np.mean(step_losses)
            after.append(torch.stack([nn.utils.parameters_to_vector(m.parameters()).detach().clone()
                                      for m in mods]))
            losses.append(round_losses)
    return after, losses, opts, mods


def _momentum_of(opt: torch.optim.SGD, module: nn.Module) -> Tensor:
    return torch.cat([opt.state[q]["momentum_buffer"].reshape(-1) for q in module.parameters()])


MLP_CASES = [("mlp", 0.0, 0.0), ("mlp", 0.9, 0.0), ("mlp", 0.0, 1e-3), ("mlp", 0.9, 1e-3)]
CASES = [(method, *case) for method in ("loop", "vmap") for case in MLP_CASES] + [("loop", "cnn", 0.9, 1e-3)]


@pytest.mark.parametrize("method,kind,momentum,weight_decay", CASES)
def test_round_matches_torch_sgd(method: str, kind: str, momentum: float, weight_decay: float) -> None:
    """Over 4 rounds with some nodes inactive, every node's row after each round equals a plain-PyTorch model
    trained with torch.optim.SGD (state kept across rounds) on the same batches; the momentum buffers equal
    SGD's; inactive nodes keep params and momentum bit for bit; the returned per-node loss is the mean of the
    reference's per-step losses (NaN for inactive nodes)."""
    p = _problem(kind)
    flat, params = init_params(p.factory, NODES, seed=SEED, same_init=False)
    assert not torch.equal(params[0], params[1])  # distinct inits: a row mix-up would show
    ref_params, ref_losses, opts, mods = _reference(p, flat, params.clone(), momentum, weight_decay)

    trainer = _trainer(p, flat, method, momentum, weight_decay)
    state = trainer.init(params)
    assert (state.momentum is None) == (momentum == 0)
    for rnd, active in enumerate(ACTIVE):
        before = params.clone()
        mom_before = None if state.momentum is None else state.momentum.clone()
        out, losses = trainer.round(state, params, rnd, active)
        assert out is params  # trained in place
        if active is not None:
            idle = ~active
            assert torch.equal(params[idle], before[idle])
            if mom_before is not None:
                assert torch.equal(state.momentum[idle], mom_before[idle])
            assert np.isnan(losses[idle]).all()
        torch.testing.assert_close(params, ref_params[rnd], **TOL[method])
        np.testing.assert_allclose(losses, ref_losses[rnd], rtol=TOL[method]["rtol"], atol=TOL[method]["atol"])
    if state.momentum is not None:
        expected = torch.stack([_momentum_of(o, m) for o, m in zip(opts, mods)])
        torch.testing.assert_close(state.momentum, expected, **TOL[method])


@pytest.mark.parametrize("method", ["loop", "vmap"])
def test_regression_round_matches_torch_sgd(method: str) -> None:
    """task="regression" (MSE loss) on the matrix-factorisation model: after 4 rounds with inactive nodes, each
    row and each round's per-node loss equal plain PyTorch SGD with momentum and weight decay."""
    p = _problem("mf")
    assert training.loss_fn(p.task) is not torch.nn.functional.cross_entropy
    flat, params = init_params(p.factory, NODES, seed=SEED, same_init=False)
    ref_params, ref_losses, _, _ = _reference(p, flat, params.clone(), 0.9, 1e-3)
    trainer = _trainer(p, flat, method, 0.9, 1e-3)
    state = trainer.init(params)
    for rnd, active in enumerate(ACTIVE):
        _, losses = trainer.round(state, params, rnd, active)
        np.testing.assert_allclose(losses, ref_losses[rnd], rtol=TOL[method]["rtol"], atol=TOL[method]["atol"])
    torch.testing.assert_close(params, ref_params[-1], **TOL[method])


def test_loop_independent_of_worker_count() -> None:
    """The loop method gives bit-identical parameters, momentum and losses under 1, 2 and 3 worker threads
    (parallel.py's claim), for 7 nodes with momentum, weight decay and an inactive subset."""
    nodes = list(range(7))
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(300, 12, generator=g), torch.randint(0, 5, (300,), generator=g)
    parts = [np.arange(i * 40, i * 40 + 40, dtype=np.int64) for i in range(7)]
    active = [None, np.array([True, False, True, True, False, True, True]), None]
    results = []
    for count in (1, 2, 3):
        flat, params = init_params(_mlp, nodes, seed=SEED, same_init=False)
        trainer = training.Trainer(flat, x, y, parts, nodes, task="classification", seed=SEED, local_steps=STEPS,
                                   batch_size=BATCH, lr=LR, momentum=0.9, weight_decay=1e-3, method="loop")
        state = trainer.init(params)
        losses = []
        with parallel.workers(count):
            assert parallel.budget() == count
            for rnd, act in enumerate(active):
                losses.append(trainer.round(state, params, rnd, act)[1])
        results.append((params, state.momentum, np.stack(losses)))
    p1, m1, l1 = results[0]
    for p, m, l in results[1:]:
        assert torch.equal(p, p1)
        assert torch.equal(m, m1)
        np.testing.assert_array_equal(l, l1)


def test_every_executor_draws_on_one_thread_budget(monkeypatch):
    """The node workers, the codec threads and the fpzip helpers are all sized by parallel.budget(): the
    process's share of the cores (local ranks divide them), or engine.threads."""
    from jwins import parallel
    from jwins.wire import fpzip_helpers

    monkeypatch.setattr(parallel, "cores", lambda: 4)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert parallel.share() == 2 and parallel.budget() == 2 and fpzip_helpers.default_size() == 2
    with parallel.workers(3):
        assert parallel.budget() == 3 and fpzip_helpers.default_size() == 3
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    assert parallel.budget() == 1
