"""Slow, obviously-correct per-node implementations of the sharing algorithms, written straight from
../shared/reference/algorithms.md: loops over nodes and neighbours, one vector at a time, no batching.

They are the oracles the vectorised implementations in jwins.sharing are tested against. Randomness follows
the documented protocol: node i in round t draws from ``jwins.rng.stream(seed, "sharing", i, t)``.
"""
from __future__ import annotations

import numpy as np
import torch
import pywt

from jwins import rng, wire
from jwins.wire import Message


def mh_weights(neighbors: list[list[int]]) -> np.ndarray:
    """w_ij = 1 / (1 + max(d_i, d_j)) for j in N(i), w_ii = 1 - sum_j w_ij."""
    n = len(neighbors)
    w = np.zeros((n, n))
    for i in range(n):
        for j in neighbors[i]:
            w[i, j] = 1.0 / (1 + max(len(neighbors[i]), len(neighbors[j])))
        w[i, i] = 1.0 - sum(w[i, j] for j in neighbors[i])
    return w


def wavelet_pair(name: str = "sym2", level: int = 4):
    def forward(x: np.ndarray) -> np.ndarray:
        return np.concatenate(pywt.wavedec(x.astype(np.float32), name, mode="symmetric", level=level))

    def inverse(z: np.ndarray, d: int) -> np.ndarray:
        sizes = [len(c) for c in pywt.wavedec(np.zeros(d, np.float32), name, mode="symmetric", level=level)]
        parts, start = [], 0
        for s in sizes:
            parts.append(z[start:start + s])
            start += s
        return pywt.waverec(parts, name, mode="symmetric")[:d].astype(np.float32)

    return forward, inverse


def identity_pair():
    return (lambda x: x.astype(np.float32).copy()), (lambda z, d: z.astype(np.float32).copy())


def fill(own: np.ndarray, indices: np.ndarray | None, values: np.ndarray) -> np.ndarray:
    """The receiver's own vector with the sender's values at the sender's indices."""
    out = own.copy()
    if indices is None:
        out[:] = values
    else:
        for idx, v in zip(indices, values):
            out[idx] = v
    return out


def average_with_fill_in(z: list[np.ndarray], messages: dict[int, Message], neighbors, w) -> list[np.ndarray]:
    """y_i = w_ii z_i + sum_j w_ij fill_j(z_i), j over i's neighbours in sorted order."""
    out = []
    for i in range(len(z)):
        y = w[i, i] * z[i]
        for j in sorted(neighbors[i]):
            m = messages[j]
            y = y + w[i, j] * fill(z[i], m.indices, m.values)
        out.append(y.astype(np.float32))
    return out


def top_indices(score: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest |score| (ties: lower index first), sorted."""
    order = np.argsort(-np.abs(score), kind="stable")
    return np.sort(order[:k])


class RefPartialModel:
    """TopK / JWINS with accumulation, as algorithms.md states it, per node."""

    def __init__(self, x0: list[np.ndarray], neighbors, *, seed: int, alphas, transform="identity",
                 metadata_cap=0.5, accumulation=True, accumulate_averaging=True, selection="change"):
        self.W, self.Winv = wavelet_pair() if transform == "wavelet" else identity_pair()
        self.neighbors, self.w = neighbors, mh_weights(neighbors)
        self.seed, self.alphas, self.cap = seed, list(alphas), metadata_cap
        self.accumulation, self.acc_avg, self.selection = accumulation, accumulate_averaging, selection
        self.prev = [self.W(x) for x in x0]            # W x_prev
        self.A = [np.zeros_like(p) for p in self.prev]

    def alpha(self, node: int, round: int) -> float:
        if len(self.alphas) == 1:
            return self.alphas[0]
        g = rng.stream(self.seed, "sharing", node, round)
        return self.alphas[g.integers(len(self.alphas))]

    def round(self, x: list[np.ndarray], t: int) -> tuple[list[np.ndarray], dict[int, Message]]:
        z = [self.W(xi) for xi in x]
        messages = {}
        for i in range(len(x)):
            change = z[i] - self.prev[i]
            if self.selection == "value":
                score = z[i]
            elif not self.accumulation:
                score = change
            elif self.acc_avg:
                score = change + self.A[i]
            else:
                self.A[i] = self.A[i] + change
                score = self.A[i]
            alpha = self.alpha(i, t)
            if alpha >= self.cap:
                self.A[i] = np.zeros_like(self.A[i])
                messages[i] = Message(i, t, len(z[i]), None, z[i].copy())
            else:
                S = top_indices(score, int(round(alpha * len(z[i]))))
                for s in S:
                    self.A[i][s] = 0.0
                messages[i] = Message(i, t, len(z[i]), S.astype(np.int64), z[i][S])
        y = average_with_fill_in(z, messages, self.neighbors, self.w)
        new = [self.Winv(yi, len(xi)) for yi, xi in zip(y, x)]
        for i in range(len(x)):
            z_new = self.W(new[i])
            if self.accumulation and self.acc_avg:
                self.A[i] = self.A[i] + (z_new - self.prev[i])
            self.prev[i] = z_new
        return new, messages


class RefFull:
    def __init__(self, x0, neighbors, *, seed: int):
        self.neighbors, self.w = neighbors, mh_weights(neighbors)

    def round(self, x, t):
        messages = {i: Message(i, t, len(xi), None, xi.copy()) for i, xi in enumerate(x)}
        new = []
        for i in range(len(x)):
            y = self.w[i, i] * x[i]
            for j in sorted(self.neighbors[i]):
                y = y + self.w[i, j] * x[j]
            new.append(y.astype(np.float32))
        return new, messages


class RefSubsample:
    def __init__(self, x0, neighbors, *, seed: int, alpha: float, metadata_cap: float = 0.5):
        self.neighbors, self.w = neighbors, mh_weights(neighbors)
        self.seed, self.alpha, self.cap = seed, alpha, metadata_cap

    def round(self, x, t):
        messages = {}
        for i, xi in enumerate(x):
            if self.alpha > self.cap:
                messages[i] = Message(i, t, len(xi), None, xi.copy())
                continue
            mask_seed = int(rng.stream(self.seed, "sharing", i, t).integers(0, 2**53))
            keep = np.random.default_rng(mask_seed).random(len(xi)) < self.alpha
            S = np.array([j for j in range(len(xi)) if keep[j]], dtype=np.int64)
            messages[i] = Message(i, t, len(xi), S, xi[S], extra={"mask_seed": float(mask_seed),
                                                                    "alpha": self.alpha})
        return average_with_fill_in(list(x), messages, self.neighbors, self.w), messages


class RefChoco:
    """CHOCO-SGD in its textbook form: every node stores a copy of each neighbour's public x_hat_j."""

    def __init__(self, x0, neighbors, *, seed: int, alpha: float, gamma: float, compressor="topk",
                 quantize: str = "float32"):
        self.neighbors, self.w = neighbors, mh_weights(neighbors)
        self.seed, self.alpha, self.gamma, self.compressor = seed, alpha, gamma, compressor
        self.quantize = quantize  # the compression operator is the selection followed by this rounding
        n = len(x0)
        # hat[i][j]: node i's copy of x_hat_j (j in N(i) or j == i)
        self.hat = [{j: np.zeros_like(x0[0]) for j in [i, *neighbors[i]]} for i in range(n)]

    def round(self, x, t):
        messages, q = {}, {}
        for i, xi in enumerate(x):
            diff = xi - self.hat[i][i]
            k = int(round(self.alpha * len(xi)))
            if self.compressor == "topk":
                S = top_indices(diff, k)
            else:
                S = np.sort(rng.stream(self.seed, "sharing", i, t).choice(len(xi), size=k, replace=False))
            sent = diff[S]
            if self.quantize == "float16":
                sent = sent.astype(np.float16).astype(np.float32)
            elif self.quantize == "bfloat16":
                sent = torch.from_numpy(sent).to(torch.bfloat16).to(torch.float32).numpy()
            q[i] = np.zeros_like(xi)
            q[i][S] = sent
            messages[i] = Message(i, t, len(xi), S.astype(np.int64), sent)
        for i in range(len(x)):
            for j in self.hat[i]:
                self.hat[i][j] = self.hat[i][j] + q[j]
        new = []
        for i, xi in enumerate(x):
            s = self.w[i, i] * self.hat[i][i]
            for j in sorted(self.neighbors[i]):
                s = s + self.w[i, j] * self.hat[i][j]
            new.append((xi + self.gamma * (s - self.hat[i][i])).astype(np.float32))
        return new, messages


def encoded_bytes(messages: dict[int, Message], neighbors, *, index_codec: str, value_codec: str) -> np.ndarray:
    """Bytes each node puts on the wire this round: its encoded message once per neighbour."""
    return np.array([len(wire.encode(messages[i], index_codec=index_codec, value_codec=value_codec))
                     * len(neighbors[i]) for i in range(len(messages))])
