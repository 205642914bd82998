"""TopK partial-model sharing with accumulated change, in any transform domain.

This is the selector JWINS is assembled from (``jwins.py`` passes a wavelet transform and a list of alphas);
with the identity transform and one alpha it is the TopK baseline of the reference (PartialModel).

Per node, with W the transform, x the post-training model, ``reference`` = W x_prev (x_prev: the model right
after the previous averaging, initially the initial model) and ``accumulated`` = A (initially 0):

* ``accumulate_averaging`` (the reference's accumulate_averaging_changes=True, used by every JWINS config):
  score = (W x - W x_prev) + A; select S = top round(alpha * D') of |score|; A[S] = 0; send (W x)[S];
  after averaging to x_new: A += W x_new - W x_prev; x_prev = x_new.
* ``accumulation`` without averaging changes: A += W x - W x_prev; score = A; A[S] = 0; x_prev = x_new.
* no ``accumulation``: score = W x - W x_prev (this round's change only).
* ``selection = "value"``: score = W x (rank by magnitude, not by change; the paper's ablation).

If alpha >= ``metadata_cap`` the whole of W x is sent densely and A is reset to 0. Ties in |score| are
broken towards the lower index, so the selection is a function of the scores alone. Receivers fill missing
coefficients with their own (W x), average with Metropolis-Hastings weights and invert the transform.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np
import torch
from torch import Tensor

from ..transforms import Transform, identity
from .. import rules
from ..wire.message import Message
from .. import parallel
from .base import Inbox, Mixing, fill_in, to_numpy, weighted_inbox


def top_k_mask(scores: Tensor, ks: np.ndarray, *, selection: str | None = None) -> Tensor:
    """[N, D] boolean mask of the ks[i] largest entries of each row of ``scores`` (ties: lower index first).

    Per row, the k-th largest value t is found by a selection (``np.partition`` on CPU: an introselect ~15x
    faster than ``torch.kthvalue``; NaN ranks above everything in both); the mask is then ``scores >= t``,
    unless more than k entries equal or exceed t, where the ties at t go to the lowest indices.
    ``selection`` ("numpy" or "torch") overrides the choice by device, so that the accelerator path
    (``torch.kthvalue``) is tested on the CPU too.
    """
    n, d = scores.shape
    ks = np.asarray(ks, dtype=np.int64)
    thresholds = torch.full((n, 1), float("nan"), dtype=scores.dtype, device=scores.device)
    partial = (ks > 0) & (ks < d)
    if partial.any():
        rows = np.flatnonzero(partial)
        use_numpy = scores.device.type == "cpu" if selection is None else selection == "numpy"
        if use_numpy:
            s = scores.detach().cpu().numpy()
            t = np.empty(n, dtype=s.dtype)
            for k in np.unique(ks[rows]):
                same = rows[ks[rows] == k]
                picked = s[same] if len(same) < n else s
                t[same] = np.partition(picked, d - k, axis=1)[:, d - k]
            thresholds[torch.from_numpy(rows)] = torch.from_numpy(t[rows]).unsqueeze(1)
        else:
            for k in np.unique(ks[rows]):
                same = torch.from_numpy(rows[ks[rows] == k]).to(scores.device)
                thresholds[same] = torch.kthvalue(scores[same], d - int(k) + 1, dim=1, keepdim=True).values
    mask = scores >= thresholds  # rows with k <= 0 compare with NaN: nothing
    full = ks >= d
    if full.any():
        mask[torch.from_numpy(np.flatnonzero(full)).to(scores.device)] = True
    # rows where the entries >= t are not exactly k (ties at t beyond k, or a NaN threshold): ties by index
    counts = np.count_nonzero(mask.numpy(), axis=1) if mask.device.type == "cpu" else mask.sum(1).cpu().numpy()
    wrong = partial & (counts != ks)
    if wrong.any():
        rows = torch.from_numpy(np.flatnonzero(wrong)).to(scores.device)
        s, threshold = scores[rows], thresholds[rows]
        k = torch.from_numpy(ks[wrong]).to(scores.device).unsqueeze(1)
        above = s > threshold
        ties = s == threshold
        room = k - above.sum(1, keepdim=True)
        mask[rows] = above | (ties & (torch.cumsum(ties, 1) <= room))
    return mask


def count(alpha: float, dim: int) -> int:
    """Number of coefficients sent for a fraction alpha: round(alpha * dim), as the reference."""
    return int(round(alpha * dim))


class TopKState(NamedTuple):
    """What carries over between rounds (and what a checkpoint holds)."""

    nodes: tuple[int, ...]
    reference: Tensor        # [N, D'] W x_prev: the transformed model right after the previous averaging
    accumulated: Tensor      # [N, D'] A: change not yet shared


class TopKSelector:
    """Top-k sharing of accumulated change in a transform domain, with alpha drawn from ``alphas``."""

    def __init__(self, *, transform: Transform | None = None, alphas: Sequence[float] = (0.1,),
                 metadata_cap: float = 0.5, accumulation: bool = True, accumulate_averaging: bool = True,
                 selection: str = "change"):
        if selection not in ("change", "value"):
            raise ValueError(f"selection = {selection!r}; choose change or value")
        if rules.fractions(alphas):
            raise ValueError(f"alphas = {list(alphas)} {rules.fractions(alphas)}")
        self.transform = transform or identity()
        self.alphas = tuple(float(a) for a in alphas)
        self.metadata_cap = float(metadata_cap)
        self.accumulation = accumulation
        self.accumulate_averaging = accumulate_averaging
        self.selection = selection

    def message_dim(self, dim: int) -> int:
        return self.transform.dim(dim)

    @property
    def expected_fraction(self) -> float:
        """The mean fraction of the coefficients a message carries (a draw at or above the cap: all)."""
        return sum(1.0 if a >= self.metadata_cap else a for a in self.alphas) / len(self.alphas)

    def init(self, params: Tensor, nodes: Sequence[int]) -> TopKState:
        z = self.transform.forward(params)
        return TopKState(tuple(nodes), z, torch.zeros_like(z))

    def draw_alphas(self, rngs: list[np.random.Generator]) -> np.ndarray:
        """Each node's alpha this round: the randomized communication cut-off (one draw per node)."""
        if len(self.alphas) == 1:
            return np.full(len(rngs), self.alphas[0])
        return np.array([self.alphas[g.integers(len(self.alphas))] for g in rngs])

    def prepare(self, state: TopKState, params: Tensor, round: int, rngs: list[np.random.Generator]
                ) -> tuple[list[Message], TopKState, Tensor | None]:
        """Block by block: W x, the scores, the top-k mask, the messages; the accumulated change is zeroed where
        a node sent, in place (the state's tensors are the only [N, D'] memory)."""
        alphas = self.draw_alphas(rngs)
        n = params.shape[0]
        dim = self.transform.dim(params.shape[1])
        dense = alphas >= self.metadata_cap
        ks = np.array([dim if d else count(a, dim) for a, d in zip(alphas, dense)], dtype=np.int64)
        acc = state.accumulated
        # W x is needed again in merge: kept when the round may spare the bytes, else recomputed there
        kept = torch.empty(n, dim, dtype=acc.dtype, device=acc.device) if parallel.spare(4 * n * dim) else None

        def rows(sl: slice) -> list[Message]:
            zr = self.transform.forward(params[sl], out=None if kept is None else kept[sl])
            a = acc[sl]
            if self.selection == "value":
                score = zr.abs()
            elif not self.accumulation:
                score = torch.sub(zr, state.reference[sl]).abs_()
            elif self.accumulate_averaging:
                score = torch.sub(zr, state.reference[sl]).add_(a).abs_()  # |(W x - W x_prev) + A|
            else:
                a = torch.sub(zr, state.reference[sl]).add_(a)  # A + (W x - W x_prev)
                score = a.abs()
            m = top_k_mask(score, ks[sl])
            values = to_numpy(zr)
            mask_np = m.cpu().numpy()
            out, sent, whole = [], [], []
            for i, node in zip(range(*sl.indices(n)), state.nodes[sl]):
                j = i - sl.start
                if dense[i]:  # a copy: a view would keep the whole block's coefficients alive
                    out.append(Message(node, round, dim, None, values[j].copy(), alpha=float(alphas[i])))
                    whole.append(j)
                else:
                    idx = np.flatnonzero(mask_np[j])
                    out.append(Message(node, round, dim, idx, values[j, idx], alpha=float(alphas[i])))
                    sent.append(idx + j * dim)
            # A with what is sent zeroed: the positions of the messages, filled with +0 in the flattened block
            target = acc[sl]
            if a.data_ptr() != target.data_ptr():
                target.copy_(a)
            if sent:
                at = torch.from_numpy(np.concatenate(sent)).to(target.device)
                target.view(-1).index_fill_(0, at, 0.0)
            for j in whole:
                target[j].zero_()
            return out

        chunks = parallel.row_chunks(n, parallel.budget(params.device), row_bytes=16 * dim)
        messages = [m for block in parallel.map_items(rows, chunks) for m in block]
        return messages, state, kept

    def merge(self, state: TopKState, params: Tensor, inbox: Inbox, mixing: Mixing, prepared: Tensor | None
              ) -> tuple[Tensor, TopKState]:
        """Block by block, in place: W x (kept from prepare, or computed again: the same numbers without an
        [N, D'] copy), the fill-in average, its inverse into the parameters, and the new reference; the
        accumulated change adds what averaging changed."""
        pairs = weighted_inbox(inbox, mixing)
        n, d = params.shape
        update = self.accumulation and self.accumulate_averaging

        def rows(sl: slice) -> None:
            z = self.transform.forward(params[sl]) if prepared is None else prepared[sl]
            y = fill_in(z, pairs[sl])
            self.transform.inverse(y, d, out=params[sl])
            z_new = self.transform.forward(params[sl], out=y)
            if update:  # A + (W x_new - W x_prev)
                state.accumulated[sl] = torch.sub(z_new, state.reference[sl]).add_(state.accumulated[sl])
            state.reference[sl] = z_new

        dim = self.transform.dim(d)
        parallel.map_items(rows, parallel.row_chunks(n, parallel.budget(params.device), row_bytes=16 * dim))
        return params, state


def topk(*, alpha: float = 0.1, metadata_cap: float = 0.5, accumulation: bool = True,
         accumulate_averaging: bool = True, selection: str = "change") -> TopKSelector:
    """TopK sharing of parameters (no transform) with a fixed fraction ``alpha`` (reference: PartialModel)."""
    return TopKSelector(alphas=(alpha,), metadata_cap=metadata_cap, accumulation=accumulation,
                        accumulate_averaging=accumulate_averaging, selection=selection)
