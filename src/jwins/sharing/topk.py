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
from ..jit import kernel
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


def top_k_indices(scores: Tensor, ks: np.ndarray) -> list[np.ndarray]:
    """The sorted indices of :func:`top_k_mask`'s True entries, row by row: on the CPU (scores without NaN)
    the k-th largest by numpy's introselect and one compiled pass per row, elsewhere from the mask."""
    ks = np.asarray(ks, dtype=np.int64)
    if COMPILED_SELECTION and scores.device.type == "cpu" and scores.dtype == torch.float32:
        s = scores.detach().contiguous().numpy()
        if not np.isnan(s).any():
            return [_top_k_row(row, int(k)) for row, k in zip(s, ks)]
    mask = top_k_mask(scores, ks).cpu().numpy()
    return [np.flatnonzero(row) for row in mask]


def count(alpha: float, dim: int) -> int:
    """Number of coefficients sent for a fraction alpha: round(alpha * dim), as the reference."""
    return int(round(alpha * dim))


# how prepare scores a coefficient (the modes of the module docstring), as the compiled selection takes it
_VALUE, _CHANGE, _CHANGE_PLUS_A, _A_PLUS_CHANGE = 0, 1, 2, 3
COMPILED_SELECTION = True  # False: the tensor path of accelerators on the CPU too (the tests run both)


def _select_row(z: np.ndarray, ref: np.ndarray, acc: np.ndarray, mode: int, k: int, score: np.ndarray
                ) -> np.ndarray | None:
    """One row of prepare on the CPU: the score of every coefficient (into ``score``), the sorted indices of the
    k largest (ties to the lower index), and the accumulated change ``acc`` zeroed there (in mode
    ``_A_PLUS_CHANGE`` first set to A + (W x - W x_prev)). The same float32 operations in the same order as the
    tensor path, so the same bits. Returns None, having written nothing, if a score is NaN (the tensor path
    then decides)."""
    if not _score_row(z, ref, acc, mode, score):
        return None
    idx = _top_k_row(score, k)
    _zero_sent(z, ref, acc, mode == _A_PLUS_CHANGE, idx)
    return idx


def _top_k_row(score: np.ndarray, k: int) -> np.ndarray:
    """The sorted indices of the k largest of one row of scores without NaN (ties to the lower index): the k-th
    largest by numpy's introselect (numba's partition is ~10x slower), then one compiled pass."""
    d = score.shape[0]
    if k >= d:
        return np.arange(d, dtype=np.int64)
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    return _largest(score, np.partition(score, d - k)[d - k], k)


@kernel
def _score_row(z, ref, acc, mode, score):  # pragma: no cover - compiled
    """score = |W x| (_VALUE), |W x - W x_prev| (_CHANGE) or |(W x - W x_prev) + A|; False at a NaN."""
    for i in range(z.shape[0]):
        if mode == _VALUE:
            v = abs(z[i])
        elif mode == _CHANGE:
            v = abs(z[i] - ref[i])
        else:
            v = abs((z[i] - ref[i]) + acc[i])
        if v != v:
            return False
        score[i] = v
    return True


@kernel
def _largest(score, t, k):  # pragma: no cover - compiled
    """The sorted indices of the k largest scores, given the k-th largest t: all above t, then the ties at t
    from the lowest index until k are taken. When every score >= t is taken (no tie beyond k, the usual case)
    the pass has no branch: each index is written and kept or overwritten."""
    d = score.shape[0]
    at_least = 0
    for i in range(d):
        at_least += score[i] >= t
    idx = np.empty(k + 1, dtype=np.int64)  # one spare slot for the branchless writes
    j = 0
    if at_least == k:
        for i in range(d):
            idx[j] = i
            j += score[i] >= t
        return idx[:k]
    room = k
    for i in range(d):
        room -= score[i] > t
    for i in range(d):
        v = score[i]
        if v > t or (v == t and room > 0):
            if v == t:
                room -= 1
            if j < k:
                idx[j] = i
            j += 1
    if j != k:  # the scores and their k-th largest disagree: impossible without NaN, which _score_row refused
        raise ValueError("top-k selection found another count than k")
    return idx[:k]


@kernel
def _zero_sent(z, ref, acc, add_change, idx):  # pragma: no cover - compiled
    """A = (W x - W x_prev) + A first where ``add_change``; then A = 0 where sent."""
    if add_change:
        for i in range(z.shape[0]):
            acc[i] = (z[i] - ref[i]) + acc[i]
    for j in range(idx.shape[0]):
        acc[idx[j]] = 0.0


@kernel
def _carry(z_new, ref, acc, update):  # pragma: no cover - compiled
    """merge's last step, one pass: A = (W x_new - W x_prev) + A where ``update``, then W x_prev = W x_new."""
    for b in range(z_new.shape[0]):
        for i in range(z_new.shape[1]):
            if update:
                acc[b, i] = (z_new[b, i] - ref[b, i]) + acc[b, i]
            ref[b, i] = z_new[b, i]


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

        if self.selection == "value":
            mode = _VALUE
        elif not self.accumulation:
            mode = _CHANGE
        else:
            mode = _CHANGE_PLUS_A if self.accumulate_averaging else _A_PLUS_CHANGE

        def message(i: int, node: int, row: np.ndarray, idx: np.ndarray | None) -> Message:
            if dense[i]:  # a copy: a view would keep the whole block's coefficients alive
                return Message(node, round, dim, None, row.copy(), alpha=float(alphas[i]))
            return Message(node, round, dim, idx, row[idx], alpha=float(alphas[i]))

        def compiled(sl: slice, zr: Tensor) -> tuple[list[Message], int]:
            """The block's rows on the CPU in compiled code, up to the first whose scores hold a NaN (left
            untouched, for the tensor path to decide); the messages, and how many rows were done."""
            z_np, ref_np, acc_np = zr.numpy(), state.reference[sl].numpy(), acc[sl].numpy()
            score = np.empty(dim, dtype=np.float32)
            out = []
            for j, (i, node) in enumerate(zip(range(*sl.indices(n)), state.nodes[sl])):
                idx = _select_row(z_np[j], ref_np[j], acc_np[j], mode, int(ks[i]), score)
                if idx is None:
                    return out, j
                out.append(message(i, node, z_np[j], idx))
            return out, len(out)

        def rows(sl: slice) -> list[Message]:
            zr = self.transform.forward(params[sl], out=None if kept is None else kept[sl])
            done: list[Message] = []
            if COMPILED_SELECTION and zr.device.type == "cpu" and acc.device.type == "cpu" and zr.is_contiguous():
                done, j = compiled(sl, zr)
                if sl.start + j == sl.stop:
                    return done
                sl, zr = slice(sl.start + j, sl.stop), zr[j:]
            return done + tensor_rows(sl, zr)

        def tensor_rows(sl: slice, zr: Tensor) -> list[Message]:
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
                idx = None if dense[i] else np.flatnonzero(mask_np[j])
                out.append(message(i, node, values[j], idx))
                if dense[i]:
                    whole.append(j)
                else:
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
            if z_new.device.type == "cpu" and state.reference.device.type == "cpu" and COMPILED_SELECTION:
                _carry(z_new.numpy(), state.reference[sl].numpy(), state.accumulated[sl].numpy(), update)
                return
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
