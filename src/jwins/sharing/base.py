"""The contract every sharing algorithm implements, and the fill-in averaging all of them use.

A sharing algorithm serves all nodes hosted by a process at once. Its state is an explicit value, never hidden
in attributes: ``init`` returns it, ``prepare`` and ``merge`` take it and return the next one. The state is
exactly what a checkpoint holds (its tensor fields are saved), so hosting the nodes in one process or
many, or stopping and resuming, cannot change the numbers. What lives only from ``prepare`` to ``merge`` of one
round (the transformed coefficients, what was sent) travels in a separate ``prepared`` value.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Sequence

import numpy as np
import torch
from torch import Tensor

from .. import parallel
from ..jit import kernel
from ..wire.message import Message

Inbox = dict[int, list[Message]]  # receiver's global id -> decoded messages of its in-neighbours, by sender


class Sharing(Protocol):
    """``init`` once, then every round ``prepare`` (what each hosted node sends) and ``merge`` (what each does
    with the messages that arrived).

    * ``init(params, nodes)``: the first state. ``params`` is the [N, D] matrix of the hosted ``nodes``
      (global ids, row order). The state is a NamedTuple (or None); its tensor fields are what a checkpoint
      saves and restores, so it must hold (as tensors) everything that carries over between rounds.
    * ``message_dim(dim)``: the length of the vectors on the wire for a model of ``dim`` parameters.
    * ``prepare(state, params, round, rngs)`` -> ``(messages, state, prepared)``: one :class:`Message` per
      hosted node that sends this round (stamped with its sender and round), in row order. ``rngs[i]`` is node
      i's random stream for this round (a function of seed, node and round: use it, never a global generator).
    * ``merge(state, params, inbox, mixing, prepared)`` -> ``(params, state)``: ``inbox[node]`` holds the decoded
      messages that reached ``node`` (sorted by sender; some may be missing); ``mixing.received`` gives its
      Metropolis-Hastings weights renormalised over them. Returns the new [N, D] parameters, which it may
      write over ``params`` (the built-ins do, block by block: a round needs no second [N, D] copy); it may
      update the state's tensors in place too (the loop saves the rows of offline nodes before ``prepare``).

    Optional attributes: ``index_codec`` (a wire index codec this algorithm requires, e.g. ``"seed"``),
    ``reliable_links = True`` for an algorithm whose state breaks for good when a message is lost (the loop
    then refuses ``faults.message_loss`` and ``faults.offline``), and ``expected_fraction`` (the mean share of
    the coefficients a message carries, default 1: what the memory check at start assumes).
    """

    def init(self, params: Tensor, nodes: Sequence[int]) -> Any: ...

    def message_dim(self, dim: int) -> int: ...

    def prepare(self, state: Any, params: Tensor, round: int, rngs: list[np.random.Generator]
                ) -> tuple[list[Message], Any, Any]: ...

    def merge(self, state: Any, params: Tensor, inbox: Inbox, mixing: Mixing, prepared: Any
              ) -> tuple[Tensor, Any]: ...


@dataclass(frozen=True)
class Mixing:
    """Metropolis-Hastings weights of the whole graph, and which nodes this process hosts (row order)."""

    weights: Any  # [N_world, N_world], doubly stochastic: an array or a scipy.sparse CSR array
    nodes: tuple[int, ...]

    def received(self, node: int, senders: list[int]) -> tuple[float, np.ndarray]:
        """(self weight, weights of ``senders``) for a receiver, renormalised over the messages that arrived.

        If a neighbour's message is missing (loss, offline sender), the receiver divides its remaining weights
        by their sum, so they still add up to one.
        """
        own, w = self._row(node, senders)
        total = own + w.sum()
        return float(own / total), w / total

    def _row(self, node: int, senders: list[int]) -> tuple[float, np.ndarray]:
        weights = self.weights
        if isinstance(weights, np.ndarray):
            return weights[node, node], weights[node][senders] if senders else np.zeros(0)
        lo, hi = weights.indptr[node], weights.indptr[node + 1]  # a CSR row, its columns sorted
        cols, vals = weights.indices[lo:hi], weights.data[lo:hi]
        at = np.searchsorted(cols, [node, *senders])
        found = (at < len(cols)) & (cols[np.minimum(at, len(cols) - 1)] == [node, *senders])
        picked = np.where(found, vals[np.minimum(at, len(cols) - 1)], 0.0)
        return picked[0], picked[1:]


def weighted_inbox(inbox: Inbox, mixing: Mixing) -> list[list[tuple[float, Message]]]:
    """For each hosted row, the (weight, message) pairs of its inbox, in sender order."""
    out = []
    for node in mixing.nodes:
        messages = inbox.get(node, [])
        _, w = mixing.received(node, [m.sender for m in messages])
        out.append(list(zip(w.tolist(), messages)))
    return out


def _as_tensor(a: np.ndarray, like: Tensor) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).to(like.device)


def fill_in_average(z: Tensor, inbox: Inbox, mixing: Mixing, out: Tensor | None = None) -> Tensor:
    """Metropolis-Hastings average where missing coefficients are filled with the receiver's own.

    For receiver i with (transformed) vector z_i and message j carrying values v_j at indices S_j:
    ``y_i = w_ii z_i + sum_j w_ij fill_j(z_i)`` with ``fill_j(z_i)`` = z_i with positions S_j set to v_j,
    computed as ``z_i + sum_j w_ij (v_j - z_i[S_j])`` scattered at S_j, in sender order. Dense messages are the
    case S_j = everything, and then this is plain D-PSGD averaging. Written into ``out`` (which may be ``z``
    itself: every row is averaged from its own copy), else into a new [N, D] tensor.

    Rows are independent: blocks of rows go to the worker threads of :mod:`jwins.parallel`, each block's
    temporaries bounded by the block budget.
    """
    pairs = weighted_inbox(inbox, mixing)
    y = torch.empty_like(z) if out is None else out

    def rows(sl: slice) -> None:
        y[sl] = fill_in(z[sl], pairs[sl])

    parallel.map_items(rows, parallel.row_chunks(z.shape[0], parallel.budget(z.device),
                                                 row_bytes=8 * z.shape[1]))
    return y


def fill_in(z: Tensor, pairs: list[list[tuple[float, Message]]]) -> Tensor:
    """:func:`fill_in_average` of a block of rows ``z`` [B, D] (``pairs``: their :func:`weighted_inbox`
    entries); a new [B, D] tensor."""
    z = z.contiguous()
    y = z.clone()
    _scatter_weighted(y, z, pairs)
    return y


def add_weighted(target: Tensor, pairs: list[list[tuple[float, Message]]]) -> Tensor:
    """``target_i += sum_j w_ij q_j`` for a block of rows and their :func:`weighted_inbox` entries, sparse or
    dense messages q_j in sender order (CHOCO's neighbour sum). In place."""
    _scatter_weighted(target, None, pairs)
    return target


def _scatter_weighted(y: Tensor, z: Tensor | None, pairs: list[list[tuple[float, Message]]]) -> None:
    """``y_i += w_ij (q_j - z_i)`` (or ``w_ij q_j`` without ``z``) for every row i's messages j, in sender order.

    Each element gets the arithmetic of one ``index_add_(alpha=w)`` per message (a sparse message: the float32
    product of w and the difference, then one addition; a dense one: ``add_(alpha=w)``), message after message:
    on the CPU a sparse message is one compiled loop; on an accelerator the sparse messages of all rows at the
    same position in their rows' sender order go in one ``index_add_`` over the flattened block (their (row,
    index) pairs are distinct, so the order within it does not matter). The same numbers as one
    ``index_add_`` per message, bit for bit (tests/test_sharing.py)."""
    if not y.is_contiguous():
        raise ValueError("the rows to add into must be contiguous")
    d = y.shape[1]

    def add_dense(r: int, w: float, m: Message) -> None:
        v = _as_tensor(m.values, y)
        y[r].add_(v if z is None else v - z[r], alpha=w)

    if y.device.type == "cpu" and COMPILED_SCATTER:
        ys = y.numpy()
        zs = ys if z is None else z.numpy()
        for r, row in enumerate(pairs):
            for w, m in row:
                if m.indices is None:
                    add_dense(r, w, m)
                    continue
                idx = np.asarray(m.indices, dtype=np.int64)
                if not _scatter_kernel(ys[r], zs[r], z is not None, idx,
                                       np.asarray(m.values, dtype=np.float32), np.float32(w)):
                    raise IndexError(f"a message's indices reach outside its row of {d} values")
        return
    flat_y = y.view(-1)
    flat_z = None if z is None else z.view(-1)
    for k in range(max((len(row) for row in pairs), default=0)):
        idx, rows, vals, weights, counts = [], [], [], [], []
        for r, row in enumerate(pairs):
            if k >= len(row):
                continue
            w, m = row[k]
            if m.indices is None:
                add_dense(r, w, m)
                continue
            idx.append(np.asarray(m.indices, dtype=np.int64))
            rows.append(r)
            vals.append(m.values)
            weights.append(w)
            counts.append(len(m.indices))
        if not idx:
            continue
        at = np.concatenate(idx)
        if at.size and (at.min() < 0 or at.max() >= d):
            raise IndexError(f"a message's indices reach outside its row of {d} values")
        at += np.repeat(np.asarray(rows, dtype=np.int64) * d, counts)  # into the flattened block
        t_at = _as_tensor(at, y)
        src = _as_tensor(np.concatenate(vals).astype(np.float32, copy=False), y)
        if flat_z is not None:
            src.sub_(flat_z[t_at])
        # w as index_add_ takes its alpha: rounded to float32, one product per element
        src.mul_(_as_tensor(np.repeat(np.asarray(weights, dtype=np.float32), counts), y))
        flat_y.index_add_(0, t_at, src)


COMPILED_SCATTER = True  # False: the accelerator path (index_add_) on the CPU too (the tests run both)


@kernel
def _scatter_kernel(y, z, minus_own, at, vals, w):  # pragma: no cover - compiled
    """y[at[e]] += w * (vals[e] - z[at[e]]) (or w * vals[e]) for every e: a float32 difference, a float32
    product and a float32 sum, as index_add_ computes them. False, writing nothing, if an index is outside y."""
    n = y.shape[0]
    for e in range(at.shape[0]):
        if at[e] < 0 or at[e] >= n:
            return False
    for e in range(at.shape[0]):
        i = at[e]
        if minus_own:
            y[i] += (vals[e] - z[i]) * w
        else:
            y[i] += vals[e] * w
    return True


def weighted_sum(target: Tensor, inbox: Inbox, mixing: Mixing) -> Tensor:
    """:func:`add_weighted` over every hosted row. In place."""
    return add_weighted(target, weighted_inbox(inbox, mixing))


def self_weights(inbox: Inbox, mixing: Mixing, like: Tensor) -> Tensor:
    """[N, 1] the self weight w_ii of each hosted row, renormalised over what arrived."""
    w = [mixing.received(node, [m.sender for m in inbox.get(node, [])])[0] for node in mixing.nodes]
    return torch.tensor(w, dtype=like.dtype, device=like.device).unsqueeze(1)


def to_numpy(t: Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float32).numpy()


def dense_messages(params: Tensor, nodes: list[int], round: int, extra: dict | None = None,
                   alpha: float = 1.0) -> list[Message]:
    """Every hosted node's whole row as its message (``alpha``: what the algorithm chose, recorded)."""
    values = to_numpy(params)
    return [Message(sender=node, round=round, dim=values.shape[1], indices=None, values=values[i],
                    extra=dict(extra or {}), alpha=alpha) for i, node in enumerate(nodes)]
