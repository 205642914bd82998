"""CHOCO-SGD (Koloskova, Stich, Jaggi 2019, Algorithm 2), in its memory-efficient form.

Each node keeps its public copy x_hat_i and s_i = sum_j w_ij x_hat_j over its neighbours and itself, both
initially 0. After training: q_i = C(x_i - x_hat_i) with C = top-k or random-k (fraction alpha); send q_i;
x_hat_i += q_i; s_i += w_ii q_i + sum_j w_ij q_j; x_i += gamma (s_i - x_hat_i). This equals the textbook form
that stores every neighbour's x_hat_j.

The compressor is always applied: round(alpha * D) entries every round, whatever ``sharing.metadata_cap`` says
(CHOCO has no cut-off; only alpha = 1, which keeps every entry, travels as a dense message). A lost message
would leave the receiver's s_i out of step with the sender's x_hat_j for good: CHOCO-SGD assumes reliable
links, so the configuration refuses it with ``faults.message_loss`` or ``faults.offline``.

The compression operator is C = rounding o selection: ``rounding`` is what the wire does to the values (the
loop passes the value codec's round trip, e.g. float16; None for a lossless codec), so q_i is exactly what the
receivers decode, and the sender adds that, not the exact differences, to its own x_hat_i and s_i: every copy
of x_hat_i stays the same.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple, Sequence

import numpy as np
import torch
from torch import Tensor

from .. import rules
from ..wire.message import Message
from .. import parallel
from .base import Inbox, Mixing, add_weighted, self_weights, to_numpy, weighted_inbox
from .topk import count, top_k_indices


class ChocoState(NamedTuple):
    """What carries over between rounds (and what a checkpoint holds)."""

    nodes: tuple[int, ...]
    public: Tensor        # [N, D] x_hat_i
    neighbour_sum: Tensor  # [N, D] s_i
    resync: bool = False   # the graph changed this round: send x_hat densely, rebuild s (False between rounds)


class Choco:
    reliable_links = True  # a lost q_j leaves s_i out of step with x_hat_j for good

    def __init__(self, *, alpha: float = 0.1, gamma: float = 0.5, compressor: str = "topk",
                 rounding: Callable[[np.ndarray], np.ndarray] | None = None):
        if compressor not in ("topk", "randomk"):
            raise ValueError(f"compressor = {compressor!r}; choose topk or randomk")
        if rules.fraction(alpha):
            raise ValueError(f"alpha = {alpha} {rules.fraction(alpha)}")
        self.alpha, self.gamma, self.compressor, self.rounding = float(alpha), gamma, compressor, rounding

    def message_dim(self, dim: int) -> int:
        return dim

    @property
    def expected_fraction(self) -> float:
        return self.alpha

    def init(self, params: Tensor, nodes: Sequence[int]) -> ChocoState:
        return ChocoState(tuple(nodes), torch.zeros_like(params), torch.zeros_like(params))

    def regraph(self, state: ChocoState, mixing: Mixing) -> ChocoState:
        """The neighbours changed: s_i must become sum_j w'_ij x_hat_j over the new ones, whose x_hat_j this node
        has never seen. In this round every node sends its whole public copy x_hat_i + q_i instead of q_i, and
        s_i is rebuilt from them (exact, at the price of one dense message per change)."""
        del mixing
        return state._replace(resync=True)

    def prepare(self, state: ChocoState, params: Tensor, round: int, rngs: list[np.random.Generator]
                ) -> tuple[list[Message], ChocoState, list]:
        """Block by block: q_i = C(x_i - x_hat_i), the messages, and x_hat_i += q_i in place. ``prepared`` is q,
        row by row as (indices or None, values): sparse, as it travels."""
        n, dim = params.shape
        k = count(self.alpha, dim)
        dense = k == dim  # the compressor kept everything (alpha = 1): no indices need travel
        public = state.public

        def rows(sl: slice) -> tuple[list[Message], list]:
            diff = params[sl] - public[sl]
            b = diff.shape[0]
            if dense:
                picked = [None] * b
            elif self.compressor == "topk":
                picked = top_k_indices(diff.abs(), np.full(b, k))
            else:
                picked = [np.sort(g.choice(dim, size=k, replace=False)).astype(np.int64) for g in rngs[sl]]
            values = to_numpy(diff)
            messages, q = [], []
            for j, node in enumerate(state.nodes[sl]):
                idx = picked[j]
                v = values[j].copy() if dense else values[j, idx]
                if self.rounding is not None:  # q is what the receivers will decode
                    try:
                        v = self.rounding(v)
                    except ValueError as exc:
                        raise ValueError(f"node {node}, round {round}: CHOCO-SGD cannot send its difference "
                                         f"with this value codec: {exc}") from None
                messages.append(Message(node, round, dim, idx, v, alpha=self.alpha))
                q.append((idx, v))
            public[sl] += _dense_rows(q, diff)  # x_hat + q (zeros where nothing was sent)
            if state.resync:  # the whole public copy travels (rounded as the receivers decode it)
                messages = self._dense(public, sl, state.nodes[sl], round)
            return messages, q

        chunks = parallel.row_chunks(n, parallel.budget(params.device), row_bytes=16 * dim)
        done = parallel.map_items(rows, chunks)
        messages = [m for block, _ in done for m in block]
        q = [row for _, block in done for row in block]
        return messages, state, q

    def _dense(self, public: Tensor, sl: slice, nodes: tuple[int, ...], round: int) -> list[Message]:
        values = to_numpy(public[sl]).copy()
        if self.rounding is not None:
            values = np.stack([self.rounding(v) for v in values]) if len(values) else values
            public[sl] = torch.from_numpy(values).to(device=public.device, dtype=public.dtype)
        return [Message(node, round, values.shape[1], None, values[i], alpha=1.0) for i, node in enumerate(nodes)]

    def merge(self, state: ChocoState, params: Tensor, inbox: Inbox, mixing: Mixing, prepared: list
              ) -> tuple[Tensor, ChocoState]:
        """Block by block, in place: s_i (rebuilt from the neighbours' whole copies after a change of graph) and
        x_i += gamma (s_i - x_hat_i)."""
        pairs = weighted_inbox(inbox, mixing)
        w_self = self_weights(inbox, mixing, params)
        s_all, public = state.neighbour_sum, state.public

        def rows(sl: slice) -> None:
            if state.resync:  # s_i = w_ii x_hat_i + sum_j w_ij x_hat_j over the new neighbours
                s = w_self[sl] * public[sl]
            else:  # s_i + w_ii q_i, this round's compressed difference (zeros where not sent)
                s = s_all[sl] + w_self[sl] * _dense_rows(prepared[sl], params[sl])
            add_weighted(s, pairs[sl])
            s_all[sl] = s
            params[sl] = params[sl] + self.gamma * (s - public[sl])

        parallel.map_items(rows, parallel.row_chunks(params.shape[0], parallel.budget(params.device),
                                                     row_bytes=16 * params.shape[1]))
        return params, ChocoState(state.nodes, public, s_all)


def _dense_rows(q: list, like: Tensor) -> Tensor:
    """A block's q as a dense [B, D] tensor (zeros where nothing was sent)."""
    out = torch.zeros_like(like)
    for row, (idx, v) in zip(out, q):
        values = torch.from_numpy(np.ascontiguousarray(v)).to(like.device)
        if idx is None:
            row.copy_(values)
        else:
            row[torch.from_numpy(idx).to(like.device)] = values
    return out


def choco(*, alpha: float = 0.1, gamma: float = 0.5, compressor: str = "topk",
          rounding: Callable[[np.ndarray], np.ndarray] | None = None) -> Choco:
    """CHOCO-SGD. ``rounding`` (offered by the loop: the wire value codec's round trip) completes the
    compression operator."""
    return Choco(alpha=alpha, gamma=gamma, compressor=compressor, rounding=rounding)
