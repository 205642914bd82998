"""JWINS and TopK against an oracle written from ../shared/reference/algorithms.md alone, in float64, one node
and one coefficient at a time, on a model that has really trained.

The oracle shares nothing with the implementation but the documented protocol of the random streams (node i
in round t draws its cut-off from ``jwins.rng.stream(seed, "sharing", i, t)``) and PyWavelets' ``wavedec`` /
``waverec``, which the reference names as its transform. Ties in the ranking are arbitrary in the reference, so
the oracle does not pick a tie-break: it checks that what the implementation sent is *a* valid top-k set of
its own float64 scores (up to float32 round-off), then continues with that set.
"""
from __future__ import annotations

import numpy as np
import pytest
import pywt

from jwins import config, rng
from jwins.communication import communicate
from jwins.engine.local import LocalTransport
from jwins.network import lost_links
from jwins.training import Trainer
from jwins.world import build_sharing, build_world


class Oracle:
    """The reference's PartialModel / JWINS for every node, in float64, coefficient by coefficient."""

    def __init__(self, x0: np.ndarray, neighbors, weights: np.ndarray, *, seed: int, alphas, wavelet: str | None,
                 level: int, cap: float, accumulation: bool, accumulate_averaging: bool, selection: str):
        self.neighbors, self.w, self.seed = neighbors, weights, seed
        self.alphas, self.cap, self.wavelet, self.level = list(alphas), cap, wavelet, level
        self.accumulation, self.acc_avg, self.selection = accumulation, accumulate_averaging, selection
        self.dim = x0.shape[1]
        self.x_prev = [row.astype(np.float64) for row in x0]       # the model right after the last averaging
        self.A = [[0.0] * len(self.W(row)) for row in self.x_prev]  # accumulated change, transformed domain

    def W(self, x: np.ndarray) -> list[float]:
        if self.wavelet is None:
            return [float(v) for v in x]
        return [float(v) for c in pywt.wavedec(np.asarray(x, np.float64), self.wavelet, mode="symmetric",
                                                level=self.level) for v in c]

    def W_inv(self, z: list[float]) -> np.ndarray:
        if self.wavelet is None:
            return np.array(z)
        sizes = [len(c) for c in pywt.wavedec(np.zeros(self.dim), self.wavelet, mode="symmetric", level=self.level)]
        parts, start = [], 0
        for s in sizes:
            parts.append(np.array(z[start:start + s]))
            start += s
        return pywt.waverec(parts, self.wavelet, mode="symmetric")[:self.dim]

    def alpha(self, node: int, t: int) -> float:
        if len(self.alphas) == 1:
            return self.alphas[0]
        return self.alphas[int(rng.stream(self.seed, "sharing", node, t).integers(len(self.alphas)))]

    def scores(self, i: int, x: np.ndarray) -> list[float]:
        """What node i ranks its coefficients by, after training to x (and, without averaging changes in A,
        A updated with this round's training change first)."""
        z = self.W(x)
        change = self.W(x - self.x_prev[i])
        if self.selection == "value":
            return [abs(v) for v in z]
        if not self.accumulation:
            return [abs(c) for c in change]
        if self.acc_avg:
            return [abs(c + a) for c, a in zip(change, self.A[i])]
        self.A[i] = [a + c for a, c in zip(self.A[i], change)]
        return [abs(a) for a in self.A[i]]

    def check_selection(self, i: int, score: list[float], k: int, sent: np.ndarray) -> None:
        """``sent`` must be k distinct indices whose scores are the k largest, up to float32 round-off."""
        assert len(sent) == k and len(set(sent.tolist())) == k, f"node {i}: {len(sent)} indices for k={k}"
        if k == 0 or k == len(score):
            return
        kth = sorted(score, reverse=True)[k - 1]
        tol = 1e-5 * max(score) + 1e-9
        chosen = set(sent.tolist())
        for j, s in enumerate(score):
            if j in chosen:
                assert s >= kth - tol, f"node {i} sent coefficient {j} with score {s:.3g} < the k-th {kth:.3g}"
            else:
                assert s <= kth + tol, f"node {i} kept back coefficient {j} with score {s:.3g} > the k-th {kth:.3g}"

    def round(self, x: np.ndarray, t: int, messages, lost: np.ndarray | None) -> np.ndarray:
        """One round from the post-training models ``x`` [N, D]; checks the implementation's ``messages``."""
        n = len(x)
        z = [self.W(row) for row in x]
        sent: dict[int, tuple[list[int] | None, list[float]]] = {}
        for i in range(n):
            score = self.scores(i, x[i])
            alpha = self.alpha(i, t)
            m = messages[i]
            assert m.sender == i and m.round == t
            if alpha >= self.cap:  # a dense round: everything is sent, nothing is left to accumulate
                assert m.indices is None, f"node {i}: alpha {alpha} >= cap must send densely"
                self.A[i] = [0.0] * len(z[i])
                sent[i] = (None, z[i])
            else:
                k = int(round(alpha * len(z[i])))
                self.check_selection(i, score, k, m.indices)
                S = sorted(m.indices.tolist())
                for s in S:
                    self.A[i][s] = 0.0
                sent[i] = (S, [z[i][s] for s in S])
            np.testing.assert_allclose(m.values, np.array(sent[i][1]), rtol=1e-5, atol=1e-6,
                                       err_msg=f"node {i}: values sent are not its coefficients")
        new = []
        for i in range(n):
            arrived = [j for j in sorted(self.neighbors[i]) if lost is None or not lost[j, i]]
            total = self.w[i, i] + sum(self.w[i, j] for j in arrived)
            y = [self.w[i, i] / total * v for v in z[i]]
            for j in arrived:
                filled = list(z[i])  # the receiver's own coefficients, the sender's where it sent them
                indices, values = sent[j]
                for s, v in zip(range(len(filled)) if indices is None else indices, values):
                    filled[s] = v
                y = [a + self.w[i, j] / total * b for a, b in zip(y, filled)]
            new.append(self.W_inv(y))
        for i in range(n):
            if self.accumulation and self.acc_avg:
                self.A[i] = [a + c for a, c in zip(self.A[i], self.W(new[i] - self.x_prev[i]))]
            self.x_prev[i] = new[i]
        return np.stack(new)


CASES = {
    "jwins": ["sharing.algorithm=jwins"],
    "jwins-lossy-links": ["sharing.algorithm=jwins", "faults.message_loss=0.25"],
    "jwins-no-averaging-changes": ["sharing.algorithm=jwins", "sharing.accumulate_averaging=false",
                                   "sharing.wavelet=db2", "sharing.level=3"],
    "topk": ["sharing.algorithm=topk", "sharing.alpha=0.2", "faults.message_loss=0.25"],
    "topk-no-accumulation": ["sharing.algorithm=topk", "sharing.alpha=0.3", "sharing.accumulation=false"],
    "jwins-by-value": ["sharing.algorithm=jwins", "sharing.selection=value", "sharing.alphas=[0.1,0.3]"],
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_partial_sharing_equals_the_float64_oracle_on_a_trained_model(case):
    """Over 6 rounds after 15 rounds of local training (so that rankings are not decided by ties), every node's
    selection, the values it sends and the averaged models equal the oracle's."""
    cfg = config.load(overrides=["nodes=8", "topology.degree=3", "data.max_samples=800", "wire.value_codec=fpzip",
                                 "train.lr=0.1", *CASES[case]])
    nodes = list(range(cfg.nodes))
    world, params = build_world(cfg, nodes)
    trainer = Trainer(world.flat, world.dataset.train_x, world.dataset.train_y, world.parts, nodes,
                      task=world.dataset.task, seed=cfg.seed, local_steps=3, batch_size=8, lr=cfg.train.lr)
    train_state = trainer.init(params)
    for t in range(15):  # the nodes train alone first: their models differ and their changes are real
        params, _ = trainer.round(train_state, params, t)
    sharing = world.sharing
    state = sharing.init(params, nodes)
    s = cfg.sharing
    alphas = s.alphas if s.algorithm == "jwins" else (s.alpha,)
    wavelet = s.wavelet if s.algorithm == "jwins" and s.transform == "wavelet" else None
    oracle = Oracle(params.numpy(), world.graph.neighbors, world.mixing.weights.toarray(), seed=cfg.seed, alphas=alphas,
                    wavelet=wavelet, level=s.level, cap=s.metadata_cap, accumulation=s.accumulation,
                    accumulate_averaging=s.accumulate_averaging, selection=s.selection)
    dense_rounds = 0
    for t in range(15, 21):
        params, _ = trainer.round(train_state, params, t)
        lost = lost_links(cfg, t)
        trained = params.numpy().astype(np.float64)  # merge writes the averaged models over params
        out = communicate(sharing, state, params, t, seed=cfg.seed, graph=world.graph, mixing=world.mixing,
                          transport=LocalTransport(), wire_config=cfg.wire, lost=lost)
        want = oracle.round(trained, t, {m.sender: m for m in out.messages}, lost)
        np.testing.assert_allclose(out.params.numpy(), want, rtol=1e-4, atol=2e-6, err_msg=f"round {t}")
        dense_rounds += sum(m.indices is None for m in out.messages)
        params, state = out.params, out.state
    if s.algorithm == "jwins" and 1.0 in alphas:
        assert dense_rounds > 0  # the randomized cut-off drew a dense round at least once


def test_the_cut_off_is_drawn_uniformly_from_the_list():
    """Each node draws its alpha every round uniformly from sharing.alphas (chi-square over 96 nodes x 60
    rounds, 7 values: far below the 0.1% critical value 24.3)."""
    alphas = (0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 1.0)
    cfg = config.load(overrides=["sharing.algorithm=jwins"])
    sharing, _ = build_sharing(cfg)
    draws = np.concatenate([sharing.draw_alphas([rng.stream(0, "sharing", i, t) for i in range(96)])
                            for t in range(60)])
    counts = np.array([np.sum(draws == a) for a in alphas])
    expected = len(draws) / len(alphas)
    assert ((counts - expected) ** 2 / expected).sum() < 24.3
    per_node = draws.reshape(60, 96)
    assert all(len(set(per_node[:, i])) > 3 for i in range(96))  # each node's own draws vary over rounds
