"""The ``pcodec`` value codec: float32 values losslessly compressed by the ``pcodec`` package (Pco).

The section is one Pco *standalone* stream of the ``k`` values, empty when ``k = 0``; see
``docs/wire-format.md``. The encoder's configuration is fixed, because it is part of the format (the golden
bytes pin it): compression level :data:`LEVEL`, classic mode, no delta encoding, at most :data:`PAGE_VALUES`
values per chunk.

Decoding runs in this process (Pco is Rust and rejects malformed input with an error instead of crashing;
``benchmarks/fuzz_wire.py`` and ``tests/test_wire_fuzz.py`` fuzz it through the wire format), under these
checks of its own, made before Pco reads anything they cover:

* the standalone header: magic ``pco!``, standalone version 3, number type float32 (or unset), the count
  hint equal to ``k``, and Pco's wrapped format version: major 4 and a minor no newer than the local Pco's;
* exactly ``ceil(k / PAGE_VALUES)`` chunks of float32 values, each of at most ``PAGE_VALUES`` values, together
  exactly ``k``, each in classic mode without delta encoding (what the encoder writes);
* the termination byte, and nothing after it.

Every chunk is decoded with Pco's wrapped API straight into its slice of one float32 array of exactly ``k``
values allocated up front, so a forged stream cannot make Pco allocate the output (the receiver's ``dim`` or
``max_dim`` bounds ``k``: :func:`jwins.wire.decode`). :data:`PCODEC` is registered as ``pcodec`` in
:data:`jwins.registry.VALUE_CODECS`.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from jwins.errors import WireError
from jwins.wire.value_codecs import ValueCodec

PCODEC_ID = 4
LEVEL = 4
"""Pco compression level (0-12) of the encoder; see ``benchmarks/README.md`` for why."""
PAGE_VALUES = 2**18
"""Values per chunk at most (Pco's default page size); a stream of ``k`` values has ``ceil(k / PAGE_VALUES)``."""

MAGIC = b"pco!"
STANDALONE_VERSION = 3
FORMAT_MAJOR = 4
_F32 = 5  # Pco's number type byte for float32
_TERMINATION = 0
_META_MAX = 2**18  # bytes; a classic float32 chunk's metadata is at most ~213 KB (32,767 bins of 52 bits)


def _page_max(n: int) -> int:
    """Bytes a classic float32 page of ``n`` values can take at most (its 4 tANS states, then per value at
    most 14 tANS bits and 32 offset bits), with room to spare."""
    return 8 * n + 64


def _pcodec_module():
    try:
        import pcodec  # noqa: PLC0415  (imported on first use)
    except ImportError as exc:  # pragma: no cover - pcodec is a declared dependency
        raise ImportError("value codec 'pcodec' needs the 'pcodec' package (pip install pcodec)") from exc
    return pcodec


_CONFIG = None


def _config():
    global _CONFIG
    if _CONFIG is None:
        pc = _pcodec_module()
        _CONFIG = pc.ChunkConfig(
            compression_level=LEVEL,
            mode_spec=pc.ModeSpec.classic(),
            delta_spec=pc.DeltaSpec.no_op(),
            paging_spec=pc.PagingSpec.equal_pages_up_to(PAGE_VALUES),
        )
    return _CONFIG


def _compress(values: np.ndarray) -> bytes:
    return _pcodec_module().standalone.simple_compress(np.ascontiguousarray(values, dtype=np.float32), _config())


def _header_end(stream: bytes) -> int:
    """Offset of the wrapped format version in a standalone stream (after magic, version, type, count hint)."""
    if len(stream) < 7:
        return -1
    power = (stream[6] & 0x3F) + 1
    return 6 + (6 + power + 7) // 8


_LOCAL: tuple[int, int, int] | None = None


def local_versions() -> tuple[int, int, int]:
    """(standalone version, format major, format minor) that the installed Pco writes. ValueError if this
    module cannot read what it writes (a Pco whose stream layout changed: the codec refuses to run)."""
    global _LOCAL
    if _LOCAL is None:
        stream = _compress(np.zeros(1, dtype=np.float32))
        end = _header_end(stream)
        version, major, minor = stream[4], stream[end], stream[end + 1]
        if stream[:4] != MAGIC or version != STANDALONE_VERSION or major != FORMAT_MAJOR:
            pc = _pcodec_module()
            raise ValueError(
                f"pcodec {getattr(pc, '__version__', '?')} writes standalone version {version}, format "
                f"{major}.{minor}; the jwins 'pcodec' value codec reads standalone version {STANDALONE_VERSION}, "
                f"format {FORMAT_MAJOR}.x (pin pcodec to a 1.x release)"
            )
        _LOCAL = (version, major, minor)
    return _LOCAL


def _pcodec_encode(values: np.ndarray) -> bytes:
    if values.shape[0] == 0:
        return b""
    local_versions()  # refuses a Pco whose streams this module could not decode
    return _compress(values)


def _pco(what: str, fn, *args):
    """``fn(*args)`` (a Pco call); whatever Pco raises, a panic included, becomes a WireError."""
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 - Pco raises RuntimeError (corruption, insufficient data) and others
        reason = str(exc).replace("pco error: ", "")
    except BaseException as exc:  # a Rust panic surfaces as pyo3's PanicException, a BaseException
        if type(exc).__name__ != "PanicException":
            raise
        reason = f"pcodec panicked: {exc}"
    raise WireError(f"pcodec value stream is malformed ({what}: {reason[:200]})")


def _expected_header(k: int) -> bytes:
    """The standalone header (through the format version) that the local Pco writes for ``k >= 1`` values."""
    _, major, minor = local_versions()
    p = k.bit_length()
    return MAGIC + bytes((STANDALONE_VERSION, 0)) + ((p - 1) | (k << 6)).to_bytes((6 + p + 7) // 8, "little") \
        + bytes((major, minor))


def pcodec_header(section: Any, k: int) -> int:
    """Check the standalone header of a pcodec value section for ``k >= 1`` values (see the module doc);
    returns the offset of its wrapped format version. Raises WireError. Does not run Pco."""
    try:
        expected = _expected_header(k)
    except (ImportError, ValueError) as exc:
        raise WireError(f"cannot decode pcodec values: {exc}") from None
    if section[: len(expected)] == expected:  # the usual case: what this Pco writes; else check field by field
        return len(expected) - 2
    size = len(section)
    head = bytes(section[:32])
    if head[:4] != MAGIC:
        if size < 4:
            raise WireError(f"pcodec value section of {size} bytes is too short to hold a pcodec stream")
        raise WireError("pcodec value section does not start with a pcodec stream (bad pcodec magic)")
    end = _header_end(head)
    if end < 0 or end + 2 > size:
        raise WireError(f"pcodec value stream truncated inside its header ({size} bytes)")
    if head[4] != STANDALONE_VERSION:
        raise WireError(
            f"pcodec stream has standalone version {head[4]}; this jwins reads version {STANDALONE_VERSION}"
        )
    if head[5] not in (0, _F32):
        raise WireError(f"pcodec stream declares number type {head[5]}, not float32 ({_F32})")
    bits = 6 + (head[6] & 0x3F) + 1
    raw = int.from_bytes(head[6:end], "little")
    if raw >> bits:
        raise WireError("pcodec stream header has non-zero padding bits")
    n_hint = raw >> 6
    if n_hint != k:
        raise WireError(f"pcodec stream says it holds {n_hint} values, the message header says k={k}")
    major, minor = head[end], head[end + 1]
    try:
        _, local_major, local_minor = local_versions()
    except (ImportError, ValueError) as exc:
        raise WireError(f"cannot decode pcodec values: {exc}") from None
    if major != local_major or minor > local_minor:
        raise WireError(
            f"pcodec stream has format version {major}.{minor}; the local pcodec reads {local_major}.0 to "
            f"{local_major}.{local_minor}"
        )
    return end


_FILES: dict[bytes, Any] = {}  # format version bytes -> Pco's wrapped FileDecompressor


def _pcodec_decode(section: Any, k: int) -> np.ndarray:
    size = len(section)
    if k == 0:
        if size:
            raise WireError(f"pcodec value section must be empty for k=0, it has {size} bytes")
        return np.zeros(0, dtype=np.float32)
    pos = pcodec_header(section, k)
    version = bytes(section[pos : pos + 2])
    files = _FILES.get(version)
    if files is None:  # a FileDecompressor only holds the format version: one per version serves every stream
        files, _ = _pco("header", _pcodec_module().wrapped.FileDecompressor.new, version)
        _FILES[version] = files
    pos += 2
    out = np.empty(k, dtype=np.float32)  # the only output Pco writes to: exactly k values
    done = 0
    chunks = -(-k // PAGE_VALUES)
    for chunk in range(chunks):
        if pos < size and section[pos] != _F32:
            what = "ends" if section[pos] == _TERMINATION else f"has a chunk of number type {section[pos]}"
            raise WireError(f"pcodec value stream {what} after {done} of {k} values (chunk {chunk} of {chunks})")
        if pos + 5 > size:
            raise WireError(f"pcodec value stream truncated in chunk {chunk} ({done} of {k} values decoded)")
        n = int.from_bytes(section[pos + 1 : pos + 4], "little") + 1
        if n > PAGE_VALUES or n > k - done:
            raise WireError(
                f"pcodec chunk {chunk} holds {n} values; at most {min(PAGE_VALUES, k - done)} fit "
                f"({done} of k={k} decoded, at most {PAGE_VALUES} per chunk)"
            )
        pos += 4
        if section[pos] != 0:  # 4 bits mode, 4 bits delta encoding (bit-packed from the least significant)
            raise WireError(
                f"pcodec chunk {chunk} uses mode {section[pos] & 15} with delta encoding {section[pos] >> 4}; "
                "only classic mode (0) without delta encoding (0) is accepted"
            )
        decoder, used = _pco(f"chunk {chunk} metadata", files.chunk_decompressor,
                             bytes(section[pos : pos + _META_MAX]), "f32")
        pos += used
        page = bytes(section[pos : pos + _page_max(n)])
        progress, used = _pco(f"chunk {chunk} page", decoder.read_page_into, page, n, out[done : done + n])
        if progress.n_processed != n or not progress.finished:
            raise WireError(
                f"pcodec value stream is malformed (chunk {chunk} decoded {progress.n_processed} of its {n} values)"
            )
        pos += used
        done += n
    if done != k:
        raise WireError(f"pcodec value stream holds {done} values in {chunks} chunks, the header says k={k}")
    if pos >= size or section[pos] != _TERMINATION:
        raise WireError("pcodec value stream does not end after its last chunk (no termination byte)")
    if pos + 1 != size:
        raise WireError(f"pcodec value section has {size - pos - 1} bytes after the end of its stream")
    return out


PCODEC = ValueCodec("pcodec", PCODEC_ID, _pcodec_encode, _pcodec_decode, True, releases_gil=True)
