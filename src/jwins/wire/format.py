"""The jwins message layout: :func:`encode`, :func:`decode` and :func:`layout`.

Byte-by-byte description: ``docs/wire-format.md``. All integers are little-endian. The codecs are those
registered in :data:`jwins.registry.INDEX_CODECS` / :data:`jwins.registry.VALUE_CODECS`, looked up by name
when encoding and by wire id when decoding (:mod:`jwins.wire.tables`).

====== ====== ==============================================================
offset size   field
====== ====== ==============================================================
0      4      magic ``b"JWNS"``
4      1      format version (1)
5      1      flags: bit 0 = dense; the other bits are zero
6      1      index codec id (0 dense, 1 elias-gamma, 2 rice, 3 bitmap, 4 seed)
7      1      value codec id (0 float32, 1 float16, 2 bfloat16, 3 fpzip, 4 pcodec)
8      1      codec parameter (rice: r in 0..31; otherwise 0)
9      1      number of extras n (0..32)
10     4      sender (u32)
14     4      round (u32)
18     4      dim (u32)
22     4      k, the number of values (u32)
26     4      index section length in bytes (u32)
30     4      value section length in bytes (u32)
34     ...    n extras: key length L (u8, 0..64), L bytes of utf-8 key, value (f64)
...    ...    index section, then value section
last   4      CRC32 (zlib.crc32) of every byte before it (u32)
====== ====== ==============================================================
"""
from __future__ import annotations

import math
import operator
import struct
import zlib
from typing import Any, NamedTuple

import numpy as np

from jwins import parallel
from jwins.errors import WireError
from jwins.wire import fpzip_helpers
from jwins.wire.fpzip import FPZIP, fpzip_stream
from jwins.wire.index_codecs import DENSE_ID
from jwins.wire.message import Message
from jwins.wire.tables import INDEX_CODECS, VALUE_CODECS

FORMAT_VERSION = 1
MAGIC = b"JWNS"
FLAG_DENSE = 0x01
MAX_EXTRAS = 32
MAX_KEY_BYTES = 64

_FIXED = struct.Struct("<4sBBBBBBIIIIII")
FIXED_HEADER_BYTES = _FIXED.size  # 34
CRC_BYTES = 4
MIN_MESSAGE_BYTES = FIXED_HEADER_BYTES + CRC_BYTES  # 38
_F64 = struct.Struct("<d")
_U32 = struct.Struct("<I")
_U32_MAX = 2**32 - 1

DEFAULT_MAX_DIM = 2**21
"""The largest ``dim`` that :func:`decode` accepts when the receiver does not pass the ``dim`` it expects
(``max_dim=`` overrides it per call). Every count a message makes the decoder allocate or work through is at most
its ``dim`` (``k <= dim``), including those its bytes do not back: the ``seed`` index codec draws ``dim`` random
numbers, and a dense ``fpzip`` or ``pcodec`` section of a few bytes can decompress to ``dim`` values. 2^21
(2,097,152) keeps the decoding of a forged message of a few KB to 0.5-1.3 s and ~165 MB, helper process
included, on the 2-core development VM at load 2-5 (``python benchmarks/wire.py --forged``,
``benchmarks/README.md``), and admits every built-in model but ``leaf-cnn`` (6,603,710 parameters; 2^22 would
cost twice as much and admit no other). The simulation always passes ``dim``; a receiver of larger models that
does not know theirs passes a larger ``max_dim``."""


class Layout(NamedTuple):
    """Sizes of a message's parts; they sum to ``len(data)``. ``header_bytes`` counts the fixed header, the
    extras and the trailing CRC."""

    header_bytes: int
    index_bytes: int
    value_bytes: int


# --------------------------------------------------------------------------------------------------------
# encode


def _u32(name: str, value: Any) -> int:
    try:
        v = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer, got {type(value).__name__}") from None
    if not 0 <= v <= _U32_MAX:
        raise ValueError(f"{name}={v} does not fit the wire format's u32 (0..{_U32_MAX})")
    return v


def _encode_extras(extra: dict) -> bytes:
    if not isinstance(extra, dict):
        raise ValueError(f"extra must be a dict[str, float], got {type(extra).__name__}")
    if len(extra) > MAX_EXTRAS:
        raise ValueError(f"at most {MAX_EXTRAS} extras fit in a message, got {len(extra)}")
    parts = []
    for key, value in extra.items():
        if not isinstance(key, str):
            raise ValueError(f"extra keys must be str, got {key!r}")
        raw = key.encode("utf-8")
        if len(raw) > MAX_KEY_BYTES:
            raise ValueError(f"extra key {key!r} is {len(raw)} bytes in utf-8; at most {MAX_KEY_BYTES} fit")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"extra {key!r} must be a float, got {value!r}") from None
        if not math.isfinite(number):
            raise ValueError(f"extra {key!r} must be finite, got {number!r}")
        parts.append(bytes((len(raw),)) + raw + _F64.pack(number))
    return b"".join(parts)


def _all_finite(values: np.ndarray) -> bool:
    """Whether every float32 value is finite. Fast path: a sum of squares is finite only if every term is
    (squares are non-negative, so inf cannot cancel); if it is not (overflow is possible), check exactly."""
    with np.errstate(over="ignore", invalid="ignore"):
        if math.isfinite(float(np.dot(values, values))):
            return True
    return bool(np.isfinite(values).all())


def _check_values(values: Any) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"values must be a 1-D array, got shape {arr.shape}")
    if arr.dtype.kind != "f":
        raise ValueError(f"values must be floating point (float32), got dtype {arr.dtype}")
    arr = arr.astype(np.float32, copy=False)
    if not _all_finite(arr):
        bad = arr[~np.isfinite(arr)]
        nan = int(np.count_nonzero(np.isnan(bad)))
        raise ValueError(
            f"values contain {bad.shape[0]} NaN/inf entries ({nan} NaN, {bad.shape[0] - nan} inf) "
            f"out of {arr.shape[0]}"
        )
    return arr


def _check_indices(indices: Any, dim: int, k: int) -> np.ndarray:
    idx = np.asarray(indices)
    if idx.ndim != 1:
        raise ValueError(f"indices must be a 1-D array, got shape {idx.shape}")
    if idx.shape[0] and idx.dtype.kind not in "iu":
        raise ValueError(f"indices must be integers, got dtype {idx.dtype}")
    if idx.shape[0] != k:
        raise ValueError(f"message has {idx.shape[0]} indices but {k} values")
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    if idx.dtype == np.uint64 and int(idx.max()) > _U32_MAX:
        raise ValueError(f"index {int(idx.max())} out of range for dim {dim}")
    idx = idx.astype(np.int64, copy=False)
    if k > 1 and np.minimum.reduce(np.subtract(idx[1:], idx[:-1])) <= 0:
        raise ValueError("indices not strictly increasing (they must be sorted and unique)")
    if idx[0] < 0:
        raise ValueError(f"index {int(idx[0])} is negative")
    if idx[-1] >= dim:
        raise ValueError(f"index {int(idx[-1])} out of range for dim {dim}")
    return idx


def _codecs(index_codec: str, value_codec: str):
    """The registered codecs of these names (ValueError if one is unknown), after checking the registered
    codecs' wire ids (ConfigError if two share one)."""
    return INDEX_CODECS.lookup(index_codec), VALUE_CODECS.lookup(value_codec)


def _wire_ids():
    """(index codecs by wire id, value codecs by wire id), as registered now."""
    return INDEX_CODECS.by_id(), VALUE_CODECS.by_id()


def encode(message: Message, *, index_codec: str = "elias-gamma", value_codec: str = "float32") -> bytes:
    """Serialise ``message``. See ``docs/wire-format.md``.

    ``index_codec`` applies to sparse messages ("elias-gamma", "rice", "bitmap", "auto", "seed"); a dense
    message (``indices is None``) always records "dense". Raises ValueError for a message that cannot be
    encoded (non-finite values, indices not sorted/unique/in range, too many or too long extras, ...).
    """
    icodec, vcodec = _codecs(index_codec, value_codec)
    return _encode(message, icodec, vcodec)


def encode_many(messages: list[Message], *, index_codec: str = "elias-gamma", value_codec: str = "float32",
                parallel_min_values: int | None = None, layouts: bool = False) -> list[bytes]:
    """``[encode(m, ...) for m in messages]``, the same bytes; raises what :func:`encode` raises, for the first
    message that cannot be encoded. ``layouts``: ``(bytes, Layout)`` pairs, the sizes of the parts known from
    the encoding itself (nothing is parsed back).

    With fpzip values, on a machine with several cores, once the messages hold at least
    ``parallel_min_values`` values in all (default :data:`PARALLEL_MIN_VALUES`), the compressions run in
    helper processes side by side (the fpzip binding holds the GIL, so threads cannot share them).
    """
    icodec, vcodec = _codecs(index_codec, value_codec)
    sections = _parallel_fpzip_sections(messages, parallel_min_values) if vcodec is FPZIP else None
    if sections is None:
        if vcodec.releases_gil and _threads_pay([m.k for m in messages], parallel_min_values):
            out = _in_threads(lambda m: _encode_parts(m, icodec, vcodec), messages)
        else:
            out = [_encode_parts(m, icodec, vcodec) for m in messages]
    else:
        out = [_encode_parts(m, icodec, vcodec, vsec) for m, vsec in zip(messages, sections)]
    return out if layouts else [data for data, _ in out]


def _threads_pay(counts: list[int], minimum: int | None) -> bool:
    """Whether a codec that releases the GIL should work on these messages in several threads."""
    minimum = PARALLEL_MIN_VALUES if minimum is None else minimum
    return len(counts) >= 2 and parallel.budget() >= 2 and sum(counts) >= minimum


def _in_threads(fn, items: list) -> list:
    """``[fn(item) for item in items]`` on the process's thread budget (:func:`jwins.parallel.budget`), results
    in order; an exception is raised as the sequential loop would raise it (the first failing item's)."""
    return list(parallel.pool(parallel.budget()).map(fn, items))


PARALLEL_MIN_VALUES = 100_000  # below this, helper processes cost more than they save


def _parallel_fpzip_sections(messages: list[Message], minimum: int | None) -> list[bytes | None] | None:
    """fpzip value sections computed by the helper processes, or None where a message is left to
    :func:`_encode` (values it will reject, k = 0, a helper that failed); None for all when not worth it."""
    if len(messages) < 2 or fpzip_helpers.HELPERS.size < 2:
        return None
    todo: list[int] = []
    payloads: list[bytes] = []
    counts: list[int] = []
    for i, m in enumerate(messages):
        try:
            values = _check_values(m.values)
        except ValueError:
            continue  # _encode raises the error with the same message
        if values.shape[0]:
            todo.append(i)
            payloads.append(values.astype("<f4", copy=False).tobytes())
            counts.append(values.shape[0])
    if not _helpers_pay(counts, minimum):
        return None
    sections: list[bytes | None] = [None] * len(messages)
    for i, reply in zip(todo, fpzip_helpers.HELPERS.map(fpzip_helpers.COMPRESS, payloads, counts)):
        if isinstance(reply, bytes):
            sections[i] = reply
    return sections


def _helpers_pay(counts: list[int], minimum: int | None) -> bool:
    """Whether fpzip work on messages of ``counts`` values is worth sending to the helper processes."""
    minimum = PARALLEL_MIN_VALUES if minimum is None else minimum
    return len(counts) >= 2 and fpzip_helpers.HELPERS.size >= 2 and sum(counts) >= minimum


def _view(data: Any) -> memoryview:
    try:
        return memoryview(data).cast("B")
    except TypeError:
        raise WireError(f"expected bytes, got {type(data).__name__}") from None


def _encode(message: Message, icodec, vcodec, vsec: bytes | None = None) -> bytes:
    return _encode_parts(message, icodec, vcodec, vsec)[0]


def _encode_parts(message: Message, icodec, vcodec, vsec: bytes | None = None) -> tuple[bytes, Layout]:
    sender = _u32("sender", message.sender)
    rnd = _u32("round", message.round)
    dim = _u32("dim", message.dim)
    values = _check_values(message.values)
    k = values.shape[0]
    extras = _encode_extras(message.extra)
    if message.indices is None:
        if k != dim:
            raise ValueError(f"dense message must carry dim values: it has {k} values for dim={dim}")
        flags, icodec_id, isec, param = FLAG_DENSE, DENSE_ID, b"", 0
    else:
        if k > dim:
            raise ValueError(f"k={k} > dim={dim}")
        indices = _check_indices(message.indices, dim, k)
        flags = 0
        icodec_id, isec, param = icodec.encode(indices, dim, message.extra)
    if vsec is None:
        vsec = vcodec.encode(values)
    if len(isec) > _U32_MAX or len(vsec) > _U32_MAX:
        raise ValueError("message sections exceed 4 GiB")
    header = _FIXED.pack(
        MAGIC, FORMAT_VERSION, flags, icodec_id, vcodec.id, param, len(message.extra),
        sender, rnd, dim, k, len(isec), len(vsec),
    )
    crc = zlib.crc32(header)
    crc = zlib.crc32(extras, crc)
    crc = zlib.crc32(isec, crc)
    crc = zlib.crc32(vsec, crc)
    return (b"".join((header, extras, isec, vsec, _U32.pack(crc))),
            Layout(len(header) + len(extras) + _U32.size, len(isec), len(vsec)))


# --------------------------------------------------------------------------------------------------------
# decode


class _Header(NamedTuple):
    flags: int
    index_codec: Any  # the registered codec objects the header's ids name
    value_codec: Any
    param: int
    n_extras: int
    sender: int
    round: int
    dim: int
    k: int
    index_bytes: int
    value_bytes: int
    extras_end: int  # offset of the index section


def _parse_header(mv: memoryview, parse_extras: bool) -> tuple[_Header, dict[str, float]]:
    n = len(mv)
    head = bytes(mv[:4])
    if head != MAGIC:
        if n < 4 and MAGIC.startswith(head):
            raise WireError(f"message truncated: {n} bytes, a message has at least {MIN_MESSAGE_BYTES}")
        raise WireError(f"bad magic {head!r}: not a jwins message (expected {MAGIC!r})")
    if n < 5:
        raise WireError(f"message truncated: {n} bytes, a message has at least {MIN_MESSAGE_BYTES}")
    if mv[4] != FORMAT_VERSION:
        raise WireError(f"unsupported format version {mv[4]} (this jwins reads version {FORMAT_VERSION})")
    if n < MIN_MESSAGE_BYTES:
        raise WireError(f"message truncated: {n} bytes, a message has at least {MIN_MESSAGE_BYTES}")
    (_, _, flags, icodec, vcodec, param, n_extras, sender, rnd, dim, k, ibytes, vbytes) = _FIXED.unpack_from(mv)
    if flags & ~FLAG_DENSE:
        raise WireError(f"unknown flags {flags:#04x} (only bit 0, dense, is defined)")
    index_codecs, value_codecs = _wire_ids()
    if icodec not in index_codecs:
        raise WireError(f"unknown index codec id {icodec}")
    if vcodec not in value_codecs:
        raise WireError(f"unknown value codec id {vcodec}")
    if n_extras > MAX_EXTRAS:
        raise WireError(f"header says {n_extras} extras, at most {MAX_EXTRAS} are allowed")
    extras: dict[str, float] = {}
    pos = FIXED_HEADER_BYTES
    end = n - CRC_BYTES
    for i in range(n_extras):
        if pos + 1 > end:
            raise WireError(f"message truncated inside extra {i} of {n_extras}")
        klen = mv[pos]
        if klen > MAX_KEY_BYTES:
            raise WireError(f"extra {i} has a {klen}-byte key, at most {MAX_KEY_BYTES} are allowed")
        if pos + 1 + klen + 8 > end:
            raise WireError(f"message truncated inside extra {i} of {n_extras}")
        if parse_extras:
            try:
                key = str(mv[pos + 1 : pos + 1 + klen], "utf-8")
            except UnicodeDecodeError:
                raise WireError(f"extra {i} key is not valid utf-8") from None
            if key in extras:
                raise WireError(f"duplicate extra key {key!r}")
            (value,) = _F64.unpack_from(mv, pos + 1 + klen)
            if not math.isfinite(value):
                raise WireError(f"extra {key!r} is not finite ({value!r})")
            extras[key] = value
        pos += 1 + klen + 8
    remain = end - pos
    if ibytes > remain:
        raise WireError(f"message truncated: header says {ibytes} index bytes but only {max(remain, 0)} remain")
    remain -= ibytes
    if vbytes > remain:
        raise WireError(f"message truncated: header says {vbytes} value bytes but only {remain} remain")
    remain -= vbytes
    if remain:
        raise WireError(
            f"message has {remain} bytes more than its header's sizes add up to "
            f"({n - remain} bytes incl. CRC): extended or corrupted"
        )
    header = _Header(flags, index_codecs[icodec], value_codecs[vcodec], param, n_extras, sender, rnd, dim, k,
                     ibytes, vbytes, pos)
    return header, extras


def layout(data: bytes) -> Layout:
    """Sizes of the parts of an encoded message (parses the fixed header and the extras' lengths only; does
    not check the CRC). Raises WireError if the header cannot be parsed or its sizes do not add up."""
    mv = _view(data)
    header, _ = _parse_header(mv, parse_extras=False)
    return Layout(len(mv) - header.index_bytes - header.value_bytes, header.index_bytes, header.value_bytes)


def _limits(dim: int | None, max_dim: int) -> tuple[int | None, int]:
    expected = None if dim is None else operator.index(dim)
    limit = operator.index(max_dim)
    if limit < 0:
        raise ValueError(f"max_dim must be >= 0, got {limit}")
    return expected, limit


def decode(data: bytes, *, dim: int | None = None, max_dim: int = DEFAULT_MAX_DIM, trusted: bool = False) -> Message:
    """Parse and validate a message received from a peer.

    ``dim`` is the dimension the receiver expects (a mismatch raises WireError). Without it, a message whose
    ``dim`` exceeds ``max_dim`` (default :data:`DEFAULT_MAX_DIM`, 2^21) is refused: ``dim`` bounds every count
    the decoder works through, including those the message's bytes do not back, so a small forged message
    cannot cost more than that. With ``dim``, ``max_dim`` is not used. Every malformed input raises
    :class:`~jwins.errors.WireError`; indices come back as int64 and values as float32, both owned and
    writable. ``trusted`` (the simulator, decoding bytes its own encoder just produced) decodes fpzip values in
    this process instead of the isolated helper process that guards against fpzip crashing on forged input.
    """
    expected, limit = _limits(dim, max_dim)
    _wire_ids()  # a registration error is raised as itself, not as a malformed message
    return _guard(_decode, _view(data), expected, limit, trusted)


def decode_many(datas: list[bytes], *, dim: int | None = None, max_dim: int = DEFAULT_MAX_DIM, trusted: bool = False,
                parallel_min_values: int | None = None) -> list[Message | WireError]:
    """:func:`decode` of every message: per message the Message, or the WireError that ``decode`` raises.

    With fpzip values, on a machine with several cores, once the messages hold at least
    ``parallel_min_values`` values in all (default :data:`PARALLEL_MIN_VALUES`), the decompressions run in
    helper processes side by side; untrusted streams get the same checks as in :func:`decode`.
    """
    expected, limit = _limits(dim, max_dim)
    _wire_ids()  # a registration error is raised as itself, not as a malformed message
    heads: list[_Head | WireError] = []
    for data in datas:
        try:
            heads.append(_guard(_decode_head, _view(data), expected, limit))
        except WireError as exc:
            heads.append(exc)
    fpzip_items = [i for i, head in enumerate(heads)
                   if not isinstance(head, WireError) and head.header.value_codec is FPZIP and head.header.k]
    values: dict[int, Any] = {}
    if _helpers_pay([heads[i].header.k for i in fpzip_items], parallel_min_values):
        streams: dict[int, bytes] = {}
        for i in fpzip_items:
            try:
                streams[i] = _guard(fpzip_stream, heads[i].section, heads[i].header.k)
            except WireError as exc:
                values[i] = exc
        order = sorted(streams)
        op = fpzip_helpers.DECOMPRESS if trusted else fpzip_helpers.CHECKED_DECOMPRESS
        replies = fpzip_helpers.HELPERS.map(op, [streams[i] for i in order], [heads[i].header.k for i in order])
        for i, reply in zip(order, replies):
            k = heads[i].header.k
            if isinstance(reply, bytes):
                values[i] = reply
            elif trusted:  # cannot be malformed: decode it here the ordinary way
                values[i] = None
            else:
                values[i] = fpzip_helpers.malformed(reply, k)
    def finish(i: int) -> Message | WireError:
        head = heads[i]
        if isinstance(head, WireError):
            return head
        got = values.get(i)
        if isinstance(got, WireError):
            return got
        try:
            decoded = None if got is None else fpzip_helpers.reply_values(got, head.header.k)
            return _guard(_decode_tail, head, trusted, decoded)
        except WireError as exc:
            return exc

    threaded = [h.header.k for h in heads if not isinstance(h, WireError) and h.header.value_codec.releases_gil]
    if _threads_pay(threaded, parallel_min_values):
        return _in_threads(finish, list(range(len(heads))))
    return [finish(i) for i in range(len(heads))]


def _guard(fn, *args):
    """``fn(*args)`` with every failure turned into a WireError, as :func:`decode` does."""
    try:
        return fn(*args)
    except WireError:
        raise
    except MemoryError:
        raise WireError("message too large to decode (out of memory)") from None
    except Exception as exc:  # noqa: BLE001 - last line of defence; the fuzz tests make sure it is never reached
        raise WireError(f"malformed message (internal {type(exc).__name__}: {exc})") from exc


def _decode(mv: memoryview, expected_dim: int | None, max_dim: int, trusted: bool = False) -> Message:
    return _decode_tail(_decode_head(mv, expected_dim, max_dim), trusted, None)


class _Head(NamedTuple):
    """A message decoded up to its values."""

    header: _Header
    extras: dict[str, float]
    indices: np.ndarray | None
    section: memoryview  # the value section, not decoded yet


def _decode_head(mv: memoryview, expected_dim: int | None, max_dim: int) -> _Head:
    """Everything but the values."""
    h, extras = _parse_header(mv, parse_extras=True)
    n = len(mv)
    (stored,) = _U32.unpack_from(mv, n - CRC_BYTES)
    computed = zlib.crc32(mv[: n - CRC_BYTES])
    if stored != computed:
        raise WireError(f"CRC mismatch: message says {stored:#010x}, its bytes give {computed:#010x}")
    dim, k = h.dim, h.k
    if expected_dim is not None and dim != expected_dim:
        raise WireError(f"dim mismatch: message has dim={dim}, this receiver expects dim={expected_dim}")
    if expected_dim is None and dim > max_dim:
        raise WireError(f"message has dim={dim}, more than max_dim={max_dim}: pass the dim this receiver expects "
                        "(or a larger max_dim) to decode it")
    dense = bool(h.flags & FLAG_DENSE)
    if dense != (h.index_codec.id == DENSE_ID):
        raise WireError(f"{'dense' if dense else 'sparse'} flag contradicts index codec {h.index_codec.name!r}")
    if dense:
        if k != dim:
            raise WireError(f"dense message must carry dim values: k={k}, dim={dim}")
        if h.index_bytes or h.param:
            raise WireError("dense message must have an empty index section and codec parameter 0")
    elif k > dim:
        raise WireError(f"k={k} > dim={dim}")
    istart = h.extras_end
    vstart = istart + h.index_bytes
    isec = mv[istart:vstart]
    vsec = mv[vstart : vstart + h.value_bytes]
    if dense:
        indices = None
    else:
        indices = h.index_codec.decode(isec, dim, k, h.param, extras)
        if indices.shape[0] != k:  # every codec checks this; kept as a guard
            raise WireError(f"index section holds {indices.shape[0]} indices, the header says k={k}")
        if not indices.flags.owndata:  # e.g. np.flatnonzero returns a view of a larger array
            indices = indices.copy()
    return _Head(h, extras, indices, vsec)


def _decode_tail(head: _Head, trusted: bool, values: np.ndarray | None) -> Message:
    """The values (decoded here unless given) and the Message."""
    h, extras, indices, vsec = head
    k, dim = h.k, h.dim
    if values is not None:
        pass
    elif trusted and h.value_codec is FPZIP:
        values = FPZIP.decode(vsec, k, trusted=True)
    else:
        values = h.value_codec.decode(vsec, k)
    if not _all_finite(values):
        raise WireError(f"values contain {k - int(np.count_nonzero(np.isfinite(values)))} NaN/inf")
    if not values.flags.owndata:
        values = values.copy()
    return Message(sender=h.sender, round=h.round, dim=dim, indices=indices, values=values, extra=extras)


__all__ = [
    "DEFAULT_MAX_DIM",
    "FORMAT_VERSION",
    "Layout",
    "MAGIC",
    "Message",
    "decode",
    "decode_many",
    "encode",
    "encode_many",
    "layout",
]
