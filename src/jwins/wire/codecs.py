"""Index codecs and value codecs of the jwins wire format.

The bit layouts are documented byte by byte in ``docs/wire-format.md``. Everything here is vectorised with
numpy: no Python loop runs per index or per value, on either side.

Codecs are plain :class:`typing.NamedTuple` records of callables, looked up by name in :data:`INDEX_CODECS`
and :data:`VALUE_CODECS` (and by wire id in :data:`INDEX_CODECS_BY_ID` / :data:`VALUE_CODECS_BY_ID`).

Index codec callables::

    encode(indices: int64 array, dim: int, extra: dict) -> (wire_id, section: bytes, param: int)
    decode(section: bytes-like, dim: int, k: int, param: int, extra: dict) -> int64 array

``indices`` handed to ``encode`` are already validated (sorted, unique, ``< dim``); ``decode`` validates
everything it reads and raises :class:`~jwins.errors.WireError` on malformed input. ``size`` returns the
exact section size in bytes without encoding (``None`` where it is not meaningful).

Value codec callables::

    encode(values: finite float32 array) -> bytes-like
    decode(section: bytes-like, k: int) -> float32 array (writable, owned)
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import numpy as np

from jwins.errors import WireError
from jwins.wire import fpzip_helpers

# --------------------------------------------------------------------------------------------------------
# Codec records


class IndexCodec(NamedTuple):
    name: str
    id: int  # wire id; -1 for "auto", which only chooses among the others and never appears on the wire
    encode: Callable[[np.ndarray, int, dict], tuple[int, bytes, int]]
    decode: Callable[..., np.ndarray] | None
    size: Callable[[np.ndarray, int], int] | None


class ValueCodec(NamedTuple):
    name: str
    id: int
    encode: Callable[[np.ndarray], bytes]
    decode: Callable[[Any, int], np.ndarray]
    lossless: bool


# Largest element count the decoder allocates when the count is not backed by bytes actually present in the
# message (the ``seed`` index codec regenerates ``dim`` random draws; a dense ``fpzip`` section may decompress
# to many more values than it has bytes) and the receiver did not say which ``dim`` it expects.
MAX_UNBACKED_ELEMENTS = 2**24

_U64 = np.uint64
_accumulate = np.add.accumulate  # np.cumsum without its per-call overhead
_reduce = np.add.reduce
_ARANGE = np.arange(0, dtype=np.int64)
_ARANGE_CACHE_MAX = 1 << 21


def _arange(n: int) -> np.ndarray:
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


def _as_u8(section: Any) -> np.ndarray:
    return np.frombuffer(section, dtype=np.uint8)


# --------------------------------------------------------------------------------------------------------
# Bit-level helpers (MSB-first bit streams, as np.packbits writes them)


def _gaps(indices: np.ndarray) -> np.ndarray:
    """Gaps between consecutive sorted indices; the first gap is ``indices[0] + 1``. All gaps are >= 1."""
    k = indices.shape[0]
    gaps = np.empty(k, dtype=np.int64)
    if k:
        gaps[0] = indices[0] + 1
        np.subtract(indices[1:], indices[:-1], out=gaps[1:])
    return gaps


def _diff0(cumulative: np.ndarray) -> np.ndarray:
    """Inverse of an inclusive cumulative sum."""
    out = np.empty_like(cumulative)
    if out.shape[0]:
        out[0] = cumulative[0]
        np.subtract(cumulative[1:], cumulative[:-1], out=out[1:])
    return out


def _floor_log2(g: np.ndarray) -> np.ndarray:
    """``floor(log2(g))`` for integers ``1 <= g < 2**53``, exactly: the exponent of ``float(g)``."""
    e = g.astype(np.float64).view(np.int64)
    e >>= 52
    e -= 1023
    return e


def _unary_encode(ends: np.ndarray, total_bits: int) -> bytes:
    """Bit stream of ``total_bits`` bits with ones exactly at positions ``ends``; zero-padded to a byte.

    A sequence of unary codes "n zeros, then a one" has its ones at ``cumsum(n) + arange(k)``.
    """
    if total_bits == 0:
        return b""
    bits = np.zeros(total_bits, dtype=np.bool_)
    bits[ends] = True
    return np.packbits(bits).tobytes()


def _unary_decode(section: Any, k: int, max_bytes: int, what: str) -> tuple[np.ndarray, int]:
    """Parse ``k`` unary codes ("n zeros, then a one") from the start of ``section``.

    Only the first ``max_bytes`` bytes can belong to the unary stream (the caller derives that bound from the
    section length). Returns (inclusive cumulative sum of the n's, bytes the unary stream occupies). Raises
    WireError when fewer than ``k`` ones exist there or when padding bits after the k-th one are not zero.
    """
    region = _as_u8(section)[:max_bytes]
    ones = np.flatnonzero(np.unpackbits(region).view(np.bool_))
    if ones.shape[0] < k:
        where = "" if max_bytes >= len(section) else f" in the {max_bytes} bytes valid codes could occupy"
        raise WireError(
            f"{what} index stream ends early: it holds {ones.shape[0]} unary codes{where}, the header says k={k}"
        )
    nbytes = (int(ones[k - 1]) >> 3) + 1
    if ones.shape[0] > k and int(ones[k]) < 8 * nbytes:
        raise WireError(f"{what} index stream has non-zero padding bits after its last unary code")
    cumulative = ones[:k] - _arange(k)  # zeros before and within code i = sum of n_0..n_i
    return cumulative, nbytes


def _pack_fields(values: np.ndarray, ends: np.ndarray, total_bits: int) -> bytes:
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


def _gather_fields(stream: Any, offsets: np.ndarray, widths: np.ndarray | int) -> np.ndarray:
    """Read back the fields written by :func:`_pack_fields` (widths <= 32, an array or one int for all):
    one 64-bit window per field."""
    n = len(stream)
    # rev holds 8 zero bytes, then the stream backwards: the little-endian 64-bit word at rev[n - p] is the
    # big-endian word made of stream bytes p..p+7 (zero past the end). Reading native little-endian words
    # from an overlapping strided view is much faster than reading big-endian ones.
    rev = np.zeros(n + 8, dtype=np.uint8)
    rev[8:] = _as_u8(stream)[::-1]
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


def _check_padding(stream: Any, total_bits: int, what: str) -> None:
    """The bits after ``total_bits`` in the last byte of ``stream`` must be zero."""
    spare = (-total_bits) & 7
    if spare and len(stream) and (stream[-1] & ((1 << spare) - 1)):
        raise WireError(f"{what} index stream has non-zero padding bits at its end")


def _finish_gaps(gaps: np.ndarray, dim: int, what: str) -> np.ndarray:
    """Indices from gaps (first gap = first index + 1), in place; checks the last index against dim."""
    if gaps.shape[0]:
        gaps[0] -= 1
    indices = _accumulate(gaps, out=gaps)
    if indices.shape[0] and indices[-1] >= dim:
        raise WireError(f"index {int(indices[-1])} out of range for dim {dim} ({what} codec)")
    return indices


# --------------------------------------------------------------------------------------------------------
# Index codecs

# elias-gamma ----------------------------------------------------------------------------------------------


def _elias_size(k: int, low_bits: int) -> int:
    return ((low_bits + k + 7) >> 3) + ((low_bits + 7) >> 3)


def _elias_encode_gaps(gaps: np.ndarray, b: np.ndarray) -> bytes:
    k = gaps.shape[0]
    if k == 0:
        return b""
    cb = _accumulate(b)
    low_bits = int(cb[-1])
    s1 = _unary_encode(cb + _arange(k), low_bits + k)
    low = np.left_shift(1, b)
    np.subtract(gaps, low, out=low)  # the b bits below the leading one
    return s1 + _pack_fields(low, cb, low_bits)


def _elias_encode(indices: np.ndarray, dim: int, extra: dict) -> tuple[int, bytes, int]:
    gaps = _gaps(indices)
    return ELIAS_GAMMA_ID, _elias_encode_gaps(gaps, _floor_log2(gaps)), 0


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
    max_b = max(dim, 1).bit_length() - 1  # a gap never exceeds dim, so b <= max_b
    # stream 1 has ceil((k+B)/8) bytes and stream 2 ceil(B/8), so stream 1 has at most (8*size+k+8)//16+1;
    # and each of its k codes has at most max_b + 1 bits (this also bounds the work on a forged section)
    s1_max = min(size, (8 * size + k + 8) // 16 + 1, (k * (max_b + 1) + 7) // 8)
    cb, s1_bytes = _unary_decode(section, k, s1_max, "elias-gamma")
    low_bits = int(cb[-1])
    need = s1_bytes + ((low_bits + 7) >> 3)
    if size != need:
        raise WireError(f"elias-gamma index section has {size} bytes, its {k} codes need {need}")
    s2 = section[s1_bytes:]
    _check_padding(s2, low_bits, "elias-gamma")
    b = _diff0(cb)
    if int(b.max()) > max_b:
        raise WireError(f"index out of range for dim {dim}: an elias-gamma gap has {int(b.max()) + 1} bits")
    if k.bit_length() + max_b + 1 >= 62 and float(_reduce(np.ldexp(1.0, b))) > dim:
        # only reachable with sections of hundreds of MB; the gaps (each >= 2**b) would sum beyond dim, and
        # their int64 cumulative sum could wrap: reject before summing
        raise WireError(f"index out of range for dim {dim}: elias-gamma gaps sum beyond it")
    offsets = np.subtract(cb, b, out=cb)
    gaps = _gather_fields(s2, offsets, b)
    gaps |= np.left_shift(1, b)
    return _finish_gaps(gaps, dim, "elias-gamma")


def _elias_size_of(indices: np.ndarray, dim: int) -> int:
    gaps = _gaps(indices)
    return _elias_size(gaps.shape[0], int(_reduce(_floor_log2(gaps))) if gaps.shape[0] else 0)


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
    s1 = _unary_encode(cq + _arange(k), int(cq[-1]) + k)
    if r == 0:
        return s1
    return s1 + _pack_fields(x & ((1 << r) - 1), _arange(k + 1)[1:] * r, k * r)


def _rice_encode(indices: np.ndarray, dim: int, extra: dict) -> tuple[int, bytes, int]:
    x = _gaps(indices)
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
    cq, s1_bytes = _unary_decode(section, k, size - s2_bytes, "rice")
    if s1_bytes != size - s2_bytes:
        raise WireError(f"rice index section has {size} bytes, its {k} codes need {s1_bytes + s2_bytes}")
    if int(cq[-1]) > (dim >> r):  # the gaps would sum beyond dim: reject before shifting
        raise WireError(f"index out of range for dim {dim}: rice quotients sum beyond it")
    if r:
        s2 = section[s1_bytes:]
        _check_padding(s2, k * r, "rice")
        x = _gather_fields(s2, _arange(k) * r, r)  # the remainders
        _accumulate(x, out=x)
        cq <<= r
        x += cq  # cumulative sum of (gap - 1) = (quotients << r) + remainders, summed
    else:
        x = cq
    x += _arange(k)  # index i = sum of gaps - 1 = sum of (gap - 1) + i
    if x[-1] >= dim:
        raise WireError(f"index {int(x[-1])} out of range for dim {dim} (rice codec)")
    return x


def _rice_size_of(indices: np.ndarray, dim: int) -> int:
    k = indices.shape[0]
    x = _gaps(indices)
    x -= 1
    r, cost = _rice_parameter(x, int(indices[-1]) + 1 - k if k else 0)
    return _rice_size(k, r, cost)


# bitmap -------------------------------------------------------------------------------------------------


def _bitmap_encode(indices: np.ndarray, dim: int, extra: dict) -> tuple[int, bytes, int]:
    bits = np.zeros(dim, dtype=np.bool_)
    bits[indices] = True
    return BITMAP_ID, np.packbits(bits).tobytes(), 0


def _bitmap_decode(section: Any, dim: int, k: int, param: int, extra: dict) -> np.ndarray:
    if param != 0:
        raise WireError(f"bitmap index codec takes no parameter, header says {param}")
    need = (dim + 7) >> 3
    if len(section) != need:
        raise WireError(
            f"bitmap index section must hold ceil(dim/8)={need} bytes for dim={dim}, it has {len(section)}"
        )
    raw = _as_u8(section)
    _check_padding(raw, dim, "bitmap")
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
    gaps = _gaps(indices)
    b = _floor_log2(gaps)
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


def seeded_indices(seed: int, dim: int, alpha: float) -> np.ndarray:
    """``np.flatnonzero(np.random.default_rng(seed).random(dim) < alpha)`` as int64.

    Random subsampling draws its mask with this function so that only ``seed`` and ``alpha`` travel.
    Large ``dim`` is drawn in chunks (same numbers: each draw consumes one 64-bit output of the generator).
    """
    return _seeded_indices(seed, dim, alpha, limit=None)


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
    if expected.shape != indices.shape or not np.array_equal(expected, indices):
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


DENSE_ID, ELIAS_GAMMA_ID, RICE_ID, BITMAP_ID, SEED_ID = 0, 1, 2, 3, 4

INDEX_CODECS: dict[str, IndexCodec] = {
    "dense": IndexCodec("dense", DENSE_ID, _dense_encode, _dense_decode, None),
    "elias-gamma": IndexCodec("elias-gamma", ELIAS_GAMMA_ID, _elias_encode, _elias_decode, _elias_size_of),
    "rice": IndexCodec("rice", RICE_ID, _rice_encode, _rice_decode, _rice_size_of),
    "bitmap": IndexCodec("bitmap", BITMAP_ID, _bitmap_encode, _bitmap_decode, _bitmap_size),
    "seed": IndexCodec("seed", SEED_ID, _seed_encode, _seed_decode, _seed_size),
    "auto": IndexCodec("auto", -1, _auto_encode, None, _auto_size),
}
INDEX_CODECS_BY_ID: dict[int, IndexCodec] = {c.id: c for c in INDEX_CODECS.values() if c.id >= 0}


# --------------------------------------------------------------------------------------------------------
# Value codecs


def _f32_encode(values: np.ndarray) -> memoryview:
    # a byte view of the (little-endian, contiguous) values: the message is assembled with one copy
    return memoryview(np.ascontiguousarray(values, dtype="<f4")).cast("B")


def _f32_decode(section: Any, k: int) -> np.ndarray:
    if len(section) != 4 * k:
        raise WireError(f"float32 value section must hold 4*k={4 * k} bytes for k={k}, it has {len(section)}")
    return np.frombuffer(section, dtype="<f4").astype(np.float32)  # astype copies: owned and writable


def _f16_encode(values: np.ndarray) -> bytes:
    with np.errstate(over="ignore"):
        half = values.astype("<f2")  # IEEE round-to-nearest-even; overflow gives inf, rejected below
    bad = np.count_nonzero(~np.isfinite(half))
    if bad:
        raise ValueError(f"float16 cannot represent {bad} values (their magnitude exceeds 65504)")
    return half.tobytes()


def _f16_decode(section: Any, k: int) -> np.ndarray:
    if len(section) != 2 * k:
        raise WireError(f"float16 value section must hold 2*k={2 * k} bytes for k={k}, it has {len(section)}")
    return np.frombuffer(section, dtype="<f2").astype(np.float32)


def _bf16_bits(values: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns of finite float32 values, rounded to nearest, ties to even."""
    bits = values.astype(np.float32, copy=False).view(np.uint32)
    rounded = bits + (np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1)))
    return (rounded >> np.uint32(16)).astype("<u2")


def _bf16_encode(values: np.ndarray) -> bytes:
    half = _bf16_bits(values)
    bad = np.count_nonzero((half & np.uint16(0x7F80)) == np.uint16(0x7F80))
    if bad:
        raise ValueError(f"bfloat16 cannot represent {bad} values (they round beyond the largest bfloat16)")
    return half.tobytes()


def _bf16_decode(section: Any, k: int) -> np.ndarray:
    if len(section) != 2 * k:
        raise WireError(f"bfloat16 value section must hold 2*k={2 * k} bytes for k={k}, it has {len(section)}")
    out = np.empty(k, dtype=np.float32)
    bits = out.view(np.uint32)
    bits[:] = np.frombuffer(section, dtype="<u2")
    bits <<= np.uint32(16)
    return out


# fpzip ----------------------------------------------------------------------------------------------------

_FPZIP_MIN_BYTES = 28  # the fpzip range decoder consumes this many bytes to read its header


def _fpzip_module():
    try:
        import fpzip  # noqa: PLC0415  (optional dependency, imported on first use)
    except ImportError as exc:  # pragma: no cover - fpzip is a declared dependency
        raise ImportError("value codec 'fpzip' needs the 'fpzip' package (pip install fpzip)") from exc
    return fpzip


def _fpzip_encode(values: np.ndarray) -> bytes:
    if values.shape[0] == 0:
        return b""
    fpzip = _fpzip_module()
    return fpzip.compress(np.ascontiguousarray(values, dtype=np.float32), precision=0, order="C")


class _RangeDecoder:
    """Just enough of fpzip's range decoder (rcdecoder.cpp) to read the stream header: raw bit fields.

    Reads at most the bytes it is given; running out raises WireError.
    """

    __slots__ = ("data", "pos", "low", "range", "code")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.low = 0
        self.range = 0xFFFFFFFF
        self.code = 0
        self._get(4)

    def _get(self, n: int) -> None:
        if self.pos + n > len(self.data):
            raise WireError("fpzip value stream truncated inside its header")
        for _ in range(n):
            self.code = ((self.code << 8) | self.data[self.pos]) & 0xFFFFFFFF
            self.low = (self.low << 8) & 0xFFFFFFFF
            self.pos += 1

    def _normalize(self) -> None:
        while not ((self.low ^ ((self.low + self.range) & 0xFFFFFFFF)) >> 24):
            self._get(1)
            self.range = (self.range << 8) & 0xFFFFFFFF
        if not (self.range >> 16):
            self._get(2)
            self.range = (-self.low) & 0xFFFFFFFF

    def _shift(self, n: int) -> int:
        self.range >>= n
        if self.range == 0:
            raise WireError("fpzip value stream header is malformed")
        s = ((self.code - self.low) & 0xFFFFFFFF) // self.range
        if s >> n:
            raise WireError("fpzip value stream header is malformed")
        self.low = (self.low + self.range * s) & 0xFFFFFFFF
        self._normalize()
        return s

    def bits(self, n: int) -> int:
        if n > 16:  # fpzip decodes the low 16 bits first
            low = self._shift(16)
            return (self._shift(n - 16) << 16) + low
        return self._shift(n)


def fpzip_header(stream: bytes) -> tuple[bytes, int, int, int, int, tuple[int, int, int, int]]:
    """(magic, major version, minor version, type, precision, (nx, ny, nz, nf)) of an fpzip stream."""
    rd = _RangeDecoder(bytes(stream[:64]))
    magic = bytes(rd.bits(8) for _ in range(4))
    major = rd.bits(16)
    minor = rd.bits(8)
    ftype = rd.bits(1)
    prec = rd.bits(7)
    dims = (rd.bits(32), rd.bits(32), rd.bits(32), rd.bits(32))
    return magic, major, minor, ftype, prec, dims


_FPZIP_VERSION: tuple[int, int] | None = None


def _local_fpzip_version() -> tuple[int, int]:
    global _FPZIP_VERSION
    if _FPZIP_VERSION is None:
        _, major, minor, _, _, _ = fpzip_header(_fpzip_encode(np.zeros(1, dtype=np.float32)))
        _FPZIP_VERSION = (major, minor)
    return _FPZIP_VERSION


def fpzip_stream(section: Any, k: int) -> bytes | None:
    """The fpzip stream of a value section after checking its header (lossless float32 of shape (k, 1, 1, 1),
    this fpzip's version); ``None`` for k = 0. Raises WireError otherwise. Does not run fpzip."""
    if k == 0:
        if len(section):
            raise WireError(f"fpzip value section must be empty for k=0, it has {len(section)} bytes")
        return None
    if len(section) < _FPZIP_MIN_BYTES:
        raise WireError(f"fpzip value section of {len(section)} bytes is too short to hold an fpzip stream")
    stream = bytes(section)
    magic, major, minor, ftype, prec, dims = fpzip_header(stream)
    if magic != b"fpz\0":
        raise WireError("fpzip value section does not start with an fpzip stream (bad fpzip magic)")
    try:
        local = _local_fpzip_version()
    except ImportError as exc:
        raise WireError(f"cannot decode fpzip values: {exc}") from None
    if (major, minor) != local:
        raise WireError(
            f"fpzip stream version {major:#x}.{minor} differs from the local fpzip's {local[0]:#x}.{local[1]}"
        )
    if ftype != 0 or prec != 0:
        raise WireError(
            f"fpzip stream must hold lossless float32 (type 0, precision 0), it has type {ftype}, precision {prec}"
        )
    if dims != (k, 1, 1, 1):
        raise WireError(f"fpzip stream holds an array of shape {dims}, expected ({k}, 1, 1, 1) for k={k}")
    return stream


def _fpzip_decode(section: Any, k: int, *, trusted: bool = False) -> np.ndarray:
    stream = fpzip_stream(section, k)
    if stream is None:
        return np.zeros(0, dtype=np.float32)
    if trusted:  # bytes this process's own encoder produced (the simulator): no need to isolate fpzip
        return np.ascontiguousarray(_fpzip_module().decompress(stream).reshape(-1), dtype=np.float32)
    # untrusted: decoded in an isolated helper process (see fpzip_helpers.py)
    return fpzip_helpers.HELPERS.checked_decompress(stream, k)


FLOAT32_ID, FLOAT16_ID, BFLOAT16_ID, FPZIP_ID = 0, 1, 2, 3

VALUE_CODECS: dict[str, ValueCodec] = {
    "float32": ValueCodec("float32", FLOAT32_ID, _f32_encode, _f32_decode, True),
    "float16": ValueCodec("float16", FLOAT16_ID, _f16_encode, _f16_decode, False),
    "bfloat16": ValueCodec("bfloat16", BFLOAT16_ID, _bf16_encode, _bf16_decode, False),
    "fpzip": ValueCodec("fpzip", FPZIP_ID, _fpzip_encode, _fpzip_decode, True),
}
VALUE_CODECS_BY_ID: dict[int, ValueCodec] = {c.id: c for c in VALUE_CODECS.values()}
