"""The ``fpzip`` value codec: float32 values losslessly compressed by the ``fpzip`` package.

The section is one fpzip stream (``fpzip.compress(values, precision=0)`` of a 1-D float32 array), empty when
``k = 0``; see ``docs/wire-format.md``. Before anything runs fpzip, :func:`fpzip_stream` checks the stream's
header with a small range decoder of its own: magic, this fpzip's version, lossless float32, shape
``(k, 1, 1, 1)``. fpzip's C decoder trusts its input, so untrusted sections are decompressed in an isolated
helper process (:mod:`jwins.wire.fpzip_helpers`); bytes this process encoded itself can be decoded in process
(``trusted=True``). :data:`FPZIP` is registered as ``fpzip`` in :data:`jwins.registry.VALUE_CODECS`.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from jwins.errors import WireError
from jwins.wire import fpzip_helpers
from jwins.wire.value_codecs import ValueCodec

FPZIP_ID = 3
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


FPZIP = ValueCodec("fpzip", FPZIP_ID, _fpzip_encode, _fpzip_decode, True)
