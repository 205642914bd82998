"""The index codecs of the jwins wire format: how a sparse message's sorted indices become its index section.

The bit layouts are documented byte by byte in ``docs/wire-format.md``. Everything here is vectorised with
numpy (no Python loop runs per index, on either side), except elias-gamma, whose encoder and decoder also run
compiled (:data:`COMPILED_ELIAS`; the same bytes and indices, the decoder's errors still the numpy decoder's).
Each codec is one :class:`IndexCodec` record (:data:`ELIAS_GAMMA`, :data:`RICE`, :data:`BITMAP`,
:data:`AUTO`, :data:`SEED`, :data:`DENSE`), registered under its name in :data:`jwins.registry.INDEX_CODECS`;
:mod:`jwins.wire.format` looks them up there, by name when encoding and by wire id when decoding.

The callables of a record::

    encode(indices: int64 array, dim: int, extra: dict) -> (wire_id, section: bytes, param: int)
    decode(section: bytes-like, dim: int, k: int, param: int, extra: dict) -> int64 array
    size(indices: int64 array, dim: int) -> int

``indices`` handed to ``encode`` are already validated (sorted, unique, ``< dim``); ``decode`` validates
everything it reads and raises :class:`~jwins.errors.WireError` on malformed input. ``size`` returns the
exact section size in bytes without encoding (``None`` where it is not meaningful).
"""
from __future__ import annotations

import math
import threading
from collections import OrderedDict
from typing import Any, Callable, NamedTuple

import numpy as np

from jwins.errors import WireError
from jwins.jit import kernel
from jwins.wire import bits


class IndexCodec(NamedTuple):
    name: str
    id: int  # wire id (0..255); -1 for a codec like "auto" that only chooses among others, never on the wire
    encode: Callable[[np.ndarray, int, dict], tuple[int, bytes, int]]
    decode: Callable[..., np.ndarray] | None
    size: Callable[[np.ndarray, int], int] | None


DENSE_ID, ELIAS_GAMMA_ID, RICE_ID, BITMAP_ID, SEED_ID = 0, 1, 2, 3, 4

_accumulate = np.add.accumulate  # np.cumsum without its per-call overhead
_reduce = np.add.reduce


# elias-gamma ----------------------------------------------------------------------------------------------


def _elias_size(k: int, low_bits: int) -> int:
    return ((low_bits + k + 7) >> 3) + ((low_bits + 7) >> 3)


def _elias_encode_gaps(gaps: np.ndarray, b: np.ndarray) -> bytes:
    k = gaps.shape[0]
    if k == 0:
        return b""
    cb = _accumulate(b)
    low_bits = int(cb[-1])
    s1 = bits.unary_encode(cb + bits.arange(k), low_bits + k)
    low = np.left_shift(1, b)
    np.subtract(gaps, low, out=low)  # the b bits below the leading one
    return s1 + bits.pack_fields(low, cb, low_bits)


def _elias_encode(indices: np.ndarray, dim: int, extra: dict) -> tuple[int, bytes, int]:
    if COMPILED_ELIAS:
        return ELIAS_GAMMA_ID, _elias_compiled(np.ascontiguousarray(indices, dtype=np.int64)).tobytes(), 0
    gaps = bits.gaps(indices)
    return ELIAS_GAMMA_ID, _elias_encode_gaps(gaps, bits.floor_log2(gaps)), 0


@kernel
def _elias_compiled(indices):  # pragma: no cover - compiled
    """The elias-gamma section of sorted unique indices: stream 1 holds code i's b_i zeros and its one
    (b_i = floor(log2(gap_i))), stream 2 the b_i bits of each gap below its leading one, both MSB first and
    zero-padded to a byte (the layout of :func:`_elias_encode_gaps`). Bits gather in a 64-bit register and
    leave it a byte at a time."""
    k = indices.shape[0]
    widths = np.empty(k, dtype=np.int64)
    low_bits = 0
    prev = -1
    for i in range(k):
        g = indices[i] - prev
        prev = indices[i]
        b = math.frexp(float(g))[1] - 1  # exact for g < 2**53
        widths[i] = b
        low_bits += b
    s1 = (low_bits + k + 7) >> 3
    out = np.zeros(s1 + ((low_bits + 7) >> 3), dtype=np.uint8)
    acc1 = 0  # pending bits of stream 1 (n1 of them, the oldest highest)
    n1 = 0
    p1 = 0
    acc2 = 0
    n2 = 0
    p2 = s1
    prev = -1
    for i in range(k):
        g = indices[i] - prev
        prev = indices[i]
        b = widths[i]
        acc1 = (acc1 << (b + 1)) | 1
        n1 += b + 1
        while n1 >= 8:
            n1 -= 8
            out[p1] = (acc1 >> n1) & 0xFF
            p1 += 1
        acc1 &= (1 << n1) - 1
        acc2 = (acc2 << b) | (g - (1 << b))
        n2 += b
        while n2 >= 8:
            n2 -= 8
            out[p2] = (acc2 >> n2) & 0xFF
            p2 += 1
        acc2 &= (1 << n2) - 1
    if n1:
        out[p1] = (acc1 << (8 - n1)) & 0xFF
    if n2:
        out[p2] = (acc2 << (8 - n2)) & 0xFF
    return out


def _elias_bounds(size: int, dim: int, k: int) -> tuple[int, int]:
    """(max_b, s1_max) of a section of ``size`` bytes holding k codes for ``dim``: a gap never exceeds dim, so
    its bits below the leading one are at most max_b; stream 1 has ceil((k+B)/8) bytes and stream 2 ceil(B/8),
    so stream 1 has at most (8*size+k+8)//16+1, and each of its k codes at most max_b + 1 bits (this also
    bounds the work on a forged section)."""
    max_b = max(dim, 1).bit_length() - 1
    return max_b, min(size, (8 * size + k + 8) // 16 + 1, (k * (max_b + 1) + 7) // 8)


def _elias_decode(section: Any, dim: int, k: int, param: int, extra: dict) -> np.ndarray:
    if param != 0:
        raise WireError(f"elias-gamma index codec takes no parameter, header says {param}")
    size = len(section)
    if k == 0:
        if size:
            raise WireError(f"elias-gamma index section must be empty for k=0, it has {size} bytes")
        return np.zeros(0, dtype=np.int64)
    if k > 8 * size:
        raise WireError(f"elias-gamma index stream ends early: {size} bytes cannot hold k={k} codes")
    max_b, s1_max = _elias_bounds(size, dim, k)
    if COMPILED_ELIAS and max_b < _FAST_MAX_BITS:
        indices = np.empty(k, dtype=np.int64)
        if _elias_decode_compiled(bits.as_u8(section), dim, max_b, s1_max, indices):
            return indices
        # anything unexpected: the numpy decoder below raises its error (or, were the fast path too strict,
        # decodes it)
    cb, s1_bytes = bits.unary_decode(section, k, s1_max, "elias-gamma")
    low_bits = int(cb[-1])
    need = s1_bytes + ((low_bits + 7) >> 3)
    if size != need:
        raise WireError(f"elias-gamma index section has {size} bytes, its {k} codes need {need}")
    s2 = section[s1_bytes:]
    bits.check_padding(s2, low_bits, "elias-gamma")
    b = bits.diff0(cb)
    if int(b.max()) > max_b:
        raise WireError(f"index out of range for dim {dim}: an elias-gamma gap has {int(b.max()) + 1} bits")
    if k.bit_length() + max_b + 1 >= 62 and float(_reduce(np.ldexp(1.0, b))) > dim:
        # only reachable with sections of hundreds of MB; the gaps (each >= 2**b) would sum beyond dim, and
        # their int64 cumulative sum could wrap: reject before summing
        raise WireError(f"index out of range for dim {dim}: elias-gamma gaps sum beyond it")
    offsets = np.subtract(cb, b, out=cb)
    gaps = bits.gather_fields(s2, offsets, b)
    gaps |= np.left_shift(1, b)
    return bits.finish_gaps(gaps, dim, "elias-gamma")


_FAST_MAX_BITS = 40  # dims under 2**40: gaps, their sum and the bit register stay far inside int64
_CLZ8 = np.array([8 - v.bit_length() for v in range(256)], dtype=np.int64)
"""Leading zero bits of a byte (8 for 0)."""


@kernel
def _elias_decode_compiled(u8, dim, max_b, s1_max, out):  # pragma: no cover - compiled
    """Decode ``out.shape[0] = k >= 1`` elias-gamma codes of ``u8`` into ``out`` (the indices), with the numpy
    decoder's bounds (``max_b``: the widest gap's bits below its leading one; ``s1_max``: the bytes stream 1
    may take); True when the section is well formed, by every check of the numpy decoder, and False at the
    first thing that is not (the caller then runs the numpy decoder, which names it). Stream 1 is read a byte
    at a time, each one found by a table of leading zeros; stream 2 through a register filled a byte at a
    time."""
    k = out.shape[0]
    size = u8.shape[0]
    widths = out  # the widths first, replaced by the indices in the second pass
    count = 0
    run = 0  # zeros of the current code so far
    low_bits = 0
    nbytes = 0
    for p in range(s1_max):
        v = np.int64(u8[p])
        used = 0  # bits of this byte consumed, from the most significant
        while v != 0:
            lz = _CLZ8[v]
            b = run + lz - used
            if b > max_b:
                return False
            widths[count] = b
            low_bits += b
            count += 1
            run = 0
            used = lz + 1
            v &= 0xFF >> used
            if count == k:
                break
        if count == k:
            if v != 0:
                return False  # padding after the last code
            nbytes = p + 1
            break
        run += 8 - used
        if run > max_b:
            return False
    if count < k:
        return False
    if size != nbytes + ((low_bits + 7) >> 3):
        return False
    acc = 0
    filled = 0
    p = nbytes
    index = -1
    for i in range(k):
        b = widths[i]
        while filled < b:
            acc = (acc << 8) | np.int64(u8[p])
            p += 1
            filled += 8
        filled -= b
        index += (acc >> filled) | (1 << b)  # the gap: its leading one, then its b low bits
        if index >= dim:
            return False  # (checked at every step, the sum cannot wrap)
        acc &= (1 << filled) - 1
        out[i] = index
    return acc == 0  # the padding at the end of stream 2


COMPILED_ELIAS = True  # False: the numpy encoder and decoder (the tests compare them byte for byte)


def _elias_size_of(indices: np.ndarray, dim: int) -> int:
    gaps = bits.gaps(indices)
    return _elias_size(gaps.shape[0], int(_reduce(bits.floor_log2(gaps))) if gaps.shape[0] else 0)


# rice -------------------------------------------------------------------------------------------------------


def _rice_cost(x: np.ndarray, r: int) -> int:
    """Exact bit length of the Rice code of ``x`` with parameter r (without byte padding)."""
    return int(_reduce(x >> r)) + x.shape[0] * (r + 1)


def _rice_parameter(x: np.ndarray, total: int) -> tuple[int, int]:
    """The r in 0..31 minimising the exact Rice bit length of ``x`` (whose sum is ``total``), and that length.

    The length is convex in r (its forward difference ``k - sum(ceil((x >> r) / 2))`` never decreases), so
    a walk downhill from the estimate ``floor(log2(mean))`` finds the minimum in a few passes. Among equal
    lengths the smallest r is chosen.
    """
    k = x.shape[0]
    if k == 0:
        return 0, 0
    r = min(31, max(0, (total // k).bit_length() - 1))
    cost = _rice_cost(x, r)
    start = r
    while r > 0:  # downhill (or level: the smallest minimiser wins) towards smaller r
        c = _rice_cost(x, r - 1)
        if c > cost:
            break
        r, cost = r - 1, c
    if r == start:
        while r < 31:  # strictly downhill towards larger r
            c = _rice_cost(x, r + 1)
            if c >= cost:
                break
            r, cost = r + 1, c
    return r, cost


def _rice_size(k: int, r: int, cost: int) -> int:
    return ((cost - k * r + 7) >> 3) + ((k * r + 7) >> 3)


def _rice_encode_x(x: np.ndarray, r: int) -> bytes:
    k = x.shape[0]
    if k == 0:
        return b""
    q = x >> r
    cq = _accumulate(q, out=q)
    s1 = bits.unary_encode(cq + bits.arange(k), int(cq[-1]) + k)
    if r == 0:
        return s1
    return s1 + bits.pack_fields(x & ((1 << r) - 1), bits.arange(k + 1)[1:] * r, k * r)


def _rice_encode(indices: np.ndarray, dim: int, extra: dict) -> tuple[int, bytes, int]:
    x = bits.gaps(indices)
    x -= 1
    k = indices.shape[0]
    r, _ = _rice_parameter(x, int(indices[-1]) + 1 - k if k else 0)
    return RICE_ID, _rice_encode_x(x, r), r


def _rice_decode(section: Any, dim: int, k: int, param: int, extra: dict) -> np.ndarray:
    r = param
    size = len(section)
    if not 0 <= r <= 31:
        raise WireError(f"rice parameter r={r} out of range 0..31")
    if k == 0:
        if size:
            raise WireError(f"rice index section must be empty for k=0, it has {size} bytes")
        return np.zeros(0, dtype=np.int64)
    s2_bytes = (k * r + 7) >> 3
    if k + 8 * s2_bytes > 8 * size:
        raise WireError(f"rice index stream ends early: {size} bytes cannot hold k={k} codes with r={r}")
    s1_max = ((dim >> r) + k + 7) >> 3  # the quotients of gaps summing to at most dim, plus k ones
    if size - s2_bytes > s1_max:
        raise WireError(
            f"rice index section has {size} bytes, its {k} codes with r={r} need at most {s1_max + s2_bytes}"
        )
    cq, s1_bytes = bits.unary_decode(section, k, size - s2_bytes, "rice")
    if s1_bytes != size - s2_bytes:
        raise WireError(f"rice index section has {size} bytes, its {k} codes need {s1_bytes + s2_bytes}")
    if int(cq[-1]) > (dim >> r):  # the gaps would sum beyond dim: reject before shifting
        raise WireError(f"index out of range for dim {dim}: rice quotients sum beyond it")
    if r:
        s2 = section[s1_bytes:]
        bits.check_padding(s2, k * r, "rice")
        x = bits.gather_fields(s2, bits.arange(k) * r, r)  # the remainders
        _accumulate(x, out=x)
        cq <<= r
        x += cq  # cumulative sum of (gap - 1) = (quotients << r) + remainders, summed
    else:
        x = cq
    x += bits.arange(k)  # index i = sum of gaps - 1 = sum of (gap - 1) + i
    if x[-1] >= dim:
        raise WireError(f"index {int(x[-1])} out of range for dim {dim} (rice codec)")
    return x


def _rice_size_of(indices: np.ndarray, dim: int) -> int:
    k = indices.shape[0]
    x = bits.gaps(indices)
    x -= 1
    r, cost = _rice_parameter(x, int(indices[-1]) + 1 - k if k else 0)
    return _rice_size(k, r, cost)


# bitmap -------------------------------------------------------------------------------------------------


def _bitmap_encode(indices: np.ndarray, dim: int, extra: dict) -> tuple[int, bytes, int]:
    mask = np.zeros(dim, dtype=np.bool_)
    mask[indices] = True
    return BITMAP_ID, np.packbits(mask).tobytes(), 0


def _bitmap_decode(section: Any, dim: int, k: int, param: int, extra: dict) -> np.ndarray:
    if param != 0:
        raise WireError(f"bitmap index codec takes no parameter, header says {param}")
    need = (dim + 7) >> 3
    if len(section) != need:
        raise WireError(
            f"bitmap index section must hold ceil(dim/8)={need} bytes for dim={dim}, it has {len(section)}"
        )
    raw = bits.as_u8(section)
    bits.check_padding(raw, dim, "bitmap")
    indices = np.flatnonzero(np.unpackbits(raw).view(np.bool_))
    if indices.shape[0] != k:
        raise WireError(f"bitmap holds {indices.shape[0]} indices, the header says k={k}")
    return indices.astype(np.int64, copy=False)


def _bitmap_size(indices: np.ndarray, dim: int) -> int:
    return (dim + 7) >> 3


# auto ---------------------------------------------------------------------------------------------------


def _auto_encode(indices: np.ndarray, dim: int, extra: dict) -> tuple[int, bytes, int]:
    """Smallest of elias-gamma, rice and bitmap (ties: in that order); sizes are computed before encoding."""
    k = indices.shape[0]
    bitmap = (dim + 7) >> 3
    if k == 0:
        return ELIAS_GAMMA_ID, b"", 0
    gaps = bits.gaps(indices)
    b = bits.floor_log2(gaps)
    elias = _elias_size(k, int(_reduce(b)))
    x = gaps - 1
    r, cost = _rice_parameter(x, int(indices[-1]) + 1 - k)
    rice = _rice_size(k, r, cost)
    best = min(elias, rice, bitmap)
    if elias == best:
        return ELIAS_GAMMA_ID, _elias_encode_gaps(gaps, b), 0
    if rice == best:
        return RICE_ID, _rice_encode_x(x, r), r
    return _bitmap_encode(indices, dim, extra)


def _auto_size(indices: np.ndarray, dim: int) -> int:
    return min(_elias_size_of(indices, dim), _rice_size_of(indices, dim), _bitmap_size(indices, dim))


# seed ---------------------------------------------------------------------------------------------------

_SEED_CHUNK = 1 << 20


class _RecentDraws:
    """The most recent seeded masks, up to ``limit`` bytes of indices (least recently used out first).

    One process draws the same mask up to three times: the sender's ``prepare``, the encoder's check that the
    indices are the seed's, and the decoder (in the simulator, and for the messages a process hosts both ends
    of). A hit returns the very array drawn before (read-only), so the numbers cannot differ; what misses is
    drawn again. The bound keeps the memory O(1) in the number of nodes."""

    def __init__(self, limit: int):
        self.limit, self.size = limit, 0
        self.items: OrderedDict[tuple[int, int, float], np.ndarray] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: tuple[int, int, float]) -> np.ndarray | None:
        with self.lock:
            hit = self.items.get(key)
            if hit is not None:
                self.items.move_to_end(key)
            return hit

    def put(self, key: tuple[int, int, float], value: np.ndarray) -> None:
        if value.nbytes > self.limit:
            return
        with self.lock:
            if key in self.items:
                return
            self.items[key] = value
            self.size += value.nbytes
            while self.size > self.limit:
                self.size -= self.items.popitem(last=False)[1].nbytes


_recent = _RecentDraws(64 << 20)


def seeded_indices(seed: int, dim: int, alpha: float) -> np.ndarray:
    """``np.flatnonzero(np.random.default_rng(seed).random(dim) < alpha)`` as int64 (read-only).

    Random subsampling draws its mask with this function so that only ``seed`` and ``alpha`` travel.
    Large ``dim`` is drawn in chunks (same numbers: each draw consumes one 64-bit output of the generator).
    The last masks drawn are kept (:class:`_RecentDraws`), so the encoder's check and a decoder in the same
    process find them instead of drawing them again.
    """
    key = (int(seed), int(dim), float(alpha))
    hit = _recent.get(key)
    if hit is not None:
        return hit
    indices = _seeded_indices(seed, dim, alpha, limit=None)
    indices.flags.writeable = False
    _recent.put(key, indices)
    return indices


def _seeded_indices(seed: int, dim: int, alpha: float, limit: int | None) -> np.ndarray:
    rng = np.random.default_rng(int(seed))
    if dim <= _SEED_CHUNK:
        return np.flatnonzero(rng.random(dim) < alpha).astype(np.int64, copy=False)
    parts = []
    found = 0
    for start in range(0, dim, _SEED_CHUNK):
        chunk = np.flatnonzero(rng.random(min(_SEED_CHUNK, dim - start)) < alpha)
        chunk += start
        parts.append(chunk)
        found += chunk.shape[0]
        if limit is not None and found > limit:
            break
    return np.concatenate(parts).astype(np.int64, copy=False)


def seed_parameters(extra: dict, error: type[Exception]) -> tuple[int, float]:
    """``(mask_seed, alpha)`` from a message's extras; raises ``error`` naming what is missing or wrong."""
    if "mask_seed" not in extra or "alpha" not in extra:
        missing = [key for key in ("mask_seed", "alpha") if key not in extra]
        raise error(f"seed index codec needs extras 'mask_seed' and 'alpha'; missing {missing}")
    seed = float(extra["mask_seed"])
    alpha = float(extra["alpha"])
    if not (seed == seed and 0 <= seed < 2**53 and seed == int(seed)):
        raise error(f"mask_seed must be an integer-valued float in [0, 2**53), got {seed!r}")
    if not np.isfinite(alpha):
        raise error(f"alpha must be finite, got {alpha!r}")
    return int(seed), alpha


def _seed_encode(indices: np.ndarray, dim: int, extra: dict) -> tuple[int, bytes, int]:
    seed, alpha = seed_parameters(extra, ValueError)
    expected = seeded_indices(seed, dim, alpha)
    if expected is not indices and (expected.shape != indices.shape or not np.array_equal(expected, indices)):
        raise ValueError(
            f"seed index codec: the message's indices are not seeded_indices(mask_seed={seed}, dim={dim}, "
            f"alpha={alpha}) ({indices.shape[0]} given, {expected.shape[0]} expected)"
        )
    return SEED_ID, b"", 0


def _seed_decode(section: Any, dim: int, k: int, param: int, extra: dict) -> np.ndarray:
    if param != 0:
        raise WireError(f"seed index codec takes no parameter, header says {param}")
    if len(section):
        raise WireError(f"seed index codec carries no index section, this message has {len(section)} bytes")
    seed, alpha = seed_parameters(extra, WireError)
    indices = _recent.get((seed, int(dim), alpha))  # drawn here before (see seeded_indices)
    if indices is None:
        indices = _seeded_indices(seed, dim, alpha, limit=k)
    if indices.shape[0] != k:
        raise WireError(
            f"seeded indices (mask_seed={seed}, alpha={alpha}, dim={dim}) count "
            f"{'more than ' if indices.shape[0] > k else ''}{indices.shape[0]}, the header says k={k}"
        )
    return indices


def _seed_size(indices: np.ndarray, dim: int) -> int:
    return 0


# dense --------------------------------------------------------------------------------------------------


def _dense_encode(indices: np.ndarray, dim: int, extra: dict) -> tuple[int, bytes, int]:
    raise ValueError("index codec 'dense' is only for dense messages (indices=None)")


def _dense_decode(section: Any, dim: int, k: int, param: int, extra: dict) -> np.ndarray:
    raise WireError("index codec 'dense' carries no indices")  # format.py never calls this


ELIAS_GAMMA = IndexCodec("elias-gamma", ELIAS_GAMMA_ID, _elias_encode, _elias_decode, _elias_size_of)
RICE = IndexCodec("rice", RICE_ID, _rice_encode, _rice_decode, _rice_size_of)
BITMAP = IndexCodec("bitmap", BITMAP_ID, _bitmap_encode, _bitmap_decode, _bitmap_size)
AUTO = IndexCodec("auto", -1, _auto_encode, None, _auto_size)
SEED = IndexCodec("seed", SEED_ID, _seed_encode, _seed_decode, _seed_size)
DENSE = IndexCodec("dense", DENSE_ID, _dense_encode, _dense_decode, None)
