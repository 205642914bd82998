"""The fixed-width value codecs of the jwins wire format (``float32``, ``float16``, ``bfloat16``) and
:func:`roundtrip`, what a receiver gets back from values sent with a given codec.

Each codec is one :class:`ValueCodec` record, registered under its name in
:data:`jwins.registry.VALUE_CODECS` (``fpzip`` lives in :mod:`jwins.wire.fpzip`). The section layouts are in
``docs/wire-format.md``. The callables of a record::

    encode(values: finite float32 array) -> bytes-like
    decode(section: bytes-like, k: int) -> float32 array (writable, owned)

``encode`` raises ValueError for values the codec cannot represent; ``decode`` raises
:class:`~jwins.errors.WireError` for a malformed section.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import numpy as np

from jwins.errors import WireError
from jwins.wire.tables import VALUE_CODECS


class ValueCodec(NamedTuple):
    name: str
    id: int  # wire id, 0..255
    encode: Callable[[np.ndarray], bytes]
    decode: Callable[[Any, int], np.ndarray]
    lossless: bool
    releases_gil: bool = False  # long enough and GIL-free: encode_many/decode_many spread it over threads


FLOAT32_ID, FLOAT16_ID, BFLOAT16_ID = 0, 1, 2  # 3 is fpzip (jwins.wire.fpzip)


# float32 ------------------------------------------------------------------------------------------------


def _f32_encode(values: np.ndarray) -> memoryview:
    # a byte view of the (little-endian, contiguous) values: the message is assembled with one copy
    return memoryview(np.ascontiguousarray(values, dtype="<f4")).cast("B")


def _f32_decode(section: Any, k: int) -> np.ndarray:
    if len(section) != 4 * k:
        raise WireError(f"float32 value section must hold 4*k={4 * k} bytes for k={k}, it has {len(section)}")
    return np.frombuffer(section, dtype="<f4").astype(np.float32)  # astype copies: owned and writable


# float16 ------------------------------------------------------------------------------------------------


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


# bfloat16 -----------------------------------------------------------------------------------------------


def _bf16_bits(values: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns of finite float32 values, rounded to nearest, ties to even."""
    raw = values.astype(np.float32, copy=False).view(np.uint32)
    rounded = raw + (np.uint32(0x7FFF) + ((raw >> np.uint32(16)) & np.uint32(1)))
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
    raw = out.view(np.uint32)
    raw[:] = np.frombuffer(section, dtype="<u2")
    raw <<= np.uint32(16)
    return out


FLOAT32 = ValueCodec("float32", FLOAT32_ID, _f32_encode, _f32_decode, True)
FLOAT16 = ValueCodec("float16", FLOAT16_ID, _f16_encode, _f16_decode, False)
BFLOAT16 = ValueCodec("bfloat16", BFLOAT16_ID, _bf16_encode, _bf16_decode, False)


# round trip ---------------------------------------------------------------------------------------------


class RoundTrip(NamedTuple):
    """``rt(values)``: what a receiver decodes from float32 ``values`` sent with ``codec`` (any shape; the
    result is a new float32 array of the same shape). Raises the ValueError the codec's encode raises for
    values it cannot represent. A NamedTuple, so it compares by codec and pickles by reference."""

    codec: ValueCodec

    def __call__(self, values: np.ndarray) -> np.ndarray:
        arr = np.asarray(values, dtype=np.float32)  # what encode sends: float32
        flat = arr.reshape(-1)
        return self.codec.decode(self.codec.encode(flat), flat.shape[0]).reshape(arr.shape)

    def __repr__(self) -> str:
        return f"roundtrip({self.codec.name!r})"


def roundtrip(name: str) -> Callable[[np.ndarray], np.ndarray] | None:
    """What a receiver decodes from float32 values sent with the registered value codec ``name``: a callable
    (float32 array -> float32 array, raising ValueError like ``encode`` for values the codec cannot
    represent), or None for a lossless codec (the values arrive unchanged). ValueError for an unknown name.

    >>> roundtrip("float32") is None
    True
    >>> roundtrip("bfloat16")(np.array([1.00390625], dtype=np.float32))
    array([1.], dtype=float32)
    """
    codec = VALUE_CODECS.lookup(name)
    return None if codec.lossless else RoundTrip(codec)
