"""Bit-level helpers of the index codecs: gaps, unary codes and fixed-width bit fields.

Bit streams are MSB first, as ``np.packbits`` writes them, and zero-padded to a whole byte. Everything is
vectorised with numpy: no Python loop runs per index. These helpers belong to :mod:`jwins.wire` (its codecs
and its tests); they are not part of the public API.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from jwins.errors import WireError

_U64 = np.uint64
_accumulate = np.add.accumulate  # np.cumsum without its per-call overhead
_ARANGE = np.arange(0, dtype=np.int64)
_ARANGE_CACHE_MAX = 1 << 21


def arange(n: int) -> np.ndarray:
    """``np.arange(n)``, int64, read-only: a view of a cached array up to a few million entries."""
    global _ARANGE
    cached = _ARANGE
    if cached.shape[0] >= n:
        return cached[:n]
    if n > _ARANGE_CACHE_MAX:
        return np.arange(n, dtype=np.int64)
    cached = np.arange(min(max(n, 2 * cached.shape[0]), _ARANGE_CACHE_MAX), dtype=np.int64)
    cached.flags.writeable = False
    _ARANGE = cached
    return cached[:n]


def as_u8(section: Any) -> np.ndarray:
    """The bytes of ``section`` (any buffer) as a uint8 array, without copying."""
    return np.frombuffer(section, dtype=np.uint8)


def gaps(indices: np.ndarray) -> np.ndarray:
    """Gaps between consecutive sorted indices; the first gap is ``indices[0] + 1``. All gaps are >= 1."""
    k = indices.shape[0]
    out = np.empty(k, dtype=np.int64)
    if k:
        out[0] = indices[0] + 1
        np.subtract(indices[1:], indices[:-1], out=out[1:])
    return out


def diff0(cumulative: np.ndarray) -> np.ndarray:
    """Inverse of an inclusive cumulative sum."""
    out = np.empty_like(cumulative)
    if out.shape[0]:
        out[0] = cumulative[0]
        np.subtract(cumulative[1:], cumulative[:-1], out=out[1:])
    return out


def floor_log2(g: np.ndarray) -> np.ndarray:
    """``floor(log2(g))`` for integers ``1 <= g < 2**53``, exactly: the exponent of ``float(g)``."""
    e = g.astype(np.float64).view(np.int64)
    e >>= 52
    e -= 1023
    return e


def unary_encode(ends: np.ndarray, total_bits: int) -> bytes:
    """Bit stream of ``total_bits`` bits with ones exactly at positions ``ends``; zero-padded to a byte.

    A sequence of unary codes "n zeros, then a one" has its ones at ``cumsum(n) + arange(k)``.
    """
    if total_bits == 0:
        return b""
    mask = np.zeros(total_bits, dtype=np.bool_)
    mask[ends] = True
    return np.packbits(mask).tobytes()


def unary_decode(section: Any, k: int, max_bytes: int, what: str) -> tuple[np.ndarray, int]:
    """Parse ``k`` unary codes ("n zeros, then a one") from the start of ``section``.

    Only the first ``max_bytes`` bytes can belong to the unary stream (the caller derives that bound from the
    section length). Returns (inclusive cumulative sum of the n's, bytes the unary stream occupies). Raises
    WireError when fewer than ``k`` ones exist there or when padding bits after the k-th one are not zero.
    """
    region = as_u8(section)[:max_bytes]
    ones = np.flatnonzero(np.unpackbits(region).view(np.bool_))
    if ones.shape[0] < k:
        where = "" if max_bytes >= len(section) else f" in the {max_bytes} bytes valid codes could occupy"
        raise WireError(
            f"{what} index stream ends early: it holds {ones.shape[0]} unary codes{where}, the header says k={k}"
        )
    nbytes = (int(ones[k - 1]) >> 3) + 1
    if ones.shape[0] > k and int(ones[k]) < 8 * nbytes:
        raise WireError(f"{what} index stream has non-zero padding bits after its last unary code")
    cumulative = ones[:k] - arange(k)  # zeros before and within code i = sum of n_0..n_i
    return cumulative, nbytes


def pack_fields(values: np.ndarray, ends: np.ndarray, total_bits: int) -> bytes:
    """Concatenate bit fields MSB first; zero-padded to a byte.

    Field i is ``values[i]`` (int64, ``0 <= values[i] < 2**w_i``) written in ``w_i <= 32`` bits that end at
    bit ``ends[i]`` (exclusive): ``ends`` is the inclusive prefix sum of the widths, ``total_bits`` its last
    entry. Each field is placed in the 64-bit window formed by the 32-bit words ``J - 1`` and ``J``, where
    word ``J`` holds the field's last bit: shifted left by ``(-end) % 32``. Fields sharing a window occupy
    disjoint bits, so summing windows equals OR-ing them; the per-window sums are differences of one
    (modular uint64) cumulative sum, taken at the last field of each window.
    """
    if total_bits == 0:
        return b""
    nwords = (total_bits + 31) >> 5
    slot = ends + 31
    slot >>= 5  # J + 1 (0 for empty fields before the first bit)
    shift = np.negative(ends)
    shift &= 31
    window = values.view(_U64) << shift.view(_U64)
    _accumulate(window, out=window)
    last = np.flatnonzero(slot[1:] != slot[:-1])  # last field of each window, except the final one
    last = np.append(last, slot.shape[0] - 1)
    cumulative = window[last]
    per_window = cumulative.copy()
    per_window[1:] -= cumulative[:-1]
    sums = np.zeros(nwords + 2, dtype=_U64)
    sums[slot[last]] = per_window
    words = sums[1 : nwords + 1] & _U64(0xFFFFFFFF)  # low halves belong to word J
    words |= sums[2 : nwords + 2] >> _U64(32)  # high halves to word J - 1
    return words.astype(">u4").tobytes()[: (total_bits + 7) >> 3]


def gather_fields(stream: Any, offsets: np.ndarray, widths: np.ndarray | int) -> np.ndarray:
    """Read back the fields written by :func:`pack_fields` (widths <= 32, an array or one int for all):
    one 64-bit window per field."""
    n = len(stream)
    # rev holds 8 zero bytes, then the stream backwards: the little-endian 64-bit word at rev[n - p] is the
    # big-endian word made of stream bytes p..p+7 (zero past the end). Reading native little-endian words
    # from an overlapping strided view is much faster than reading big-endian ones.
    rev = np.zeros(n + 8, dtype=np.uint8)
    rev[8:] = as_u8(stream)[::-1]
    view = np.ndarray(shape=(n + 1,), dtype="<u8", buffer=rev, strides=(1,))
    pos = offsets >> 3
    np.subtract(n, pos, out=pos)
    out = np.empty(offsets.shape[0], dtype=np.int64)  # returned: owns its memory
    window = out.view(_U64)
    np.take(view, pos, out=window)
    window <<= (offsets & 7).view(_U64)  # drop the bits before the field (at most 7)
    if isinstance(widths, int):
        window >>= _U64(64 - widths)
    else:
        window >>= (64 - widths).view(_U64)  # keep its width (shifting by 64 gives 0 for an empty field)
    return out


def check_padding(stream: Any, total_bits: int, what: str) -> None:
    """The bits after ``total_bits`` in the last byte of ``stream`` must be zero."""
    spare = (-total_bits) & 7
    if spare and len(stream) and (stream[-1] & ((1 << spare) - 1)):
        raise WireError(f"{what} index stream has non-zero padding bits at its end")


def finish_gaps(gap_values: np.ndarray, dim: int, what: str) -> np.ndarray:
    """Indices from gaps (first gap = first index + 1), in place; checks the last index against dim."""
    if gap_values.shape[0]:
        gap_values[0] -= 1
    indices = _accumulate(gap_values, out=gap_values)
    if indices.shape[0] and indices[-1] >= dim:
        raise WireError(f"index {int(indices[-1])} out of range for dim {dim} ({what} codec)")
    return indices
