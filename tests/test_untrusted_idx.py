"""IDX files (raw or gzipped) from an untrusted source: the header is read first, then exactly the bytes its dims
give; a small .gz that expands a thousandfold is never read whole."""
from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from helpers import peak_while
from jwins.data import load
from jwins.data.files import _read_bytes
from jwins.data.idx import MAX_IDX_BYTES, _read_idx
from jwins.errors import DataError


@pytest.fixture(autouse=True)
def isolated_places(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("JWINS_DATA", raising=False)


def gz_with_zeros(path: Path, head: bytes, zeros: int) -> Path:
    """``head`` followed by ``zeros`` zero bytes, gzipped (a thousandfold smaller)."""
    co = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [co.compress(head)]
    chunk = bytes(1 << 20)
    for _ in range(zeros >> 20):
        parts.append(co.compress(chunk))
    parts.append(co.flush())
    path.write_bytes(b"".join(parts))
    return path




def images_header(*dims: int) -> bytes:
    return struct.pack(">I", 0x0800 + len(dims)) + struct.pack(">" + "I" * len(dims), *dims)


def test_bad_header_is_refused_before_the_data_is_decompressed(tmp_path):
    """64 KB of gzip holding a wrong magic number and 64 MiB of zeros: the header alone is read (it was 64 MiB
    before the header was looked at)."""
    path = gz_with_zeros(tmp_path / "train-images-idx3-ubyte.gz", b"\0\0\0\0", 64 << 20)
    assert path.stat().st_size < 100_000
    peak, error = peak_while(lambda: _read_idx(path, 3))
    assert isinstance(error, DataError) and "bad IDX magic number" in str(error)
    assert peak < 4 << 20, peak


def test_more_data_than_the_header_says_stops_at_the_expected_size(tmp_path):
    path = gz_with_zeros(tmp_path / "x.gz", images_header(2, 28, 28), 64 << 20)
    peak, error = peak_while(lambda: _read_idx(path, 3))
    assert isinstance(error, DataError), error
    assert str(error) == (f"{path}: size mismatch: the header says 2x28x28 -> 1584 bytes, the file has more than "
                          "1584 bytes once decompressed (truncated or corrupt?)")
    assert peak < 4 << 20, peak
    raw = tmp_path / "x"
    raw.write_bytes(images_header(2, 28, 28) + bytes(2 * 28 * 28 + 1))
    with pytest.raises(DataError, match=r"the header says 2x28x28 -> 1584 bytes, the file has 1585 bytes \("):
        _read_idx(raw, 3)


def test_absurd_dims_are_refused_before_reading(tmp_path):
    """A header of 60000 x 100000 x 100000 (600 TB): refused from the header, however much data follows."""
    for name, writer in (("raw", lambda p, h: p.write_bytes(h + bytes(1000))),
                         ("x.gz", lambda p, h: gz_with_zeros(p, h, 8 << 20))):
        path = tmp_path / name
        writer(path, images_header(60000, 100000, 100000))
        peak, error = peak_while(lambda: _read_idx(path, 3))
        assert isinstance(error, DataError) and "\n" not in str(error)
        assert str(error).startswith(f"{path}: the IDX header says 60000x100000x100000 = 600000000000000 bytes, "
                                     f"more than the {MAX_IDX_BYTES} bytes")
        assert peak < 1 << 20, peak


def test_short_gzipped_data_and_exact_data(tmp_path):
    header = images_header(3, 4, 5)
    short = tmp_path / "s.gz"
    short.write_bytes(gzip.compress(header + bytes(59)))
    with pytest.raises(DataError, match=r"the header says 3x4x5 -> 76 bytes, the file has 75 bytes once decomp"):
        _read_idx(short, 3)
    exact = tmp_path / "e.gz"
    data = np.arange(60, dtype=np.uint8)
    exact.write_bytes(gzip.compress(header + data.tobytes()))
    assert np.array_equal(_read_idx(exact, 3), data.reshape(3, 4, 5))


def test_read_bytes_has_a_cap(tmp_path):
    path = gz_with_zeros(tmp_path / "f.gz", b"", 8 << 20)
    peak, error = peak_while(lambda: _read_bytes(path, limit=1 << 20))
    assert isinstance(error, DataError) and str(error).startswith(f"{path}: more than 1048576 bytes once decompressed")
    assert peak < 4 << 20, peak
    assert len(_read_bytes(path, limit=8 << 20)) == 8 << 20


def test_a_bomb_inside_a_dataset_fails_the_load_in_one_line(tmp_path):
    d = tmp_path / "mnist"
    d.mkdir()
    r = np.random.default_rng(0)
    for stem, dims in (("train-images-idx3-ubyte", (12, 28, 28)), ("train-labels-idx1-ubyte", (12,)),
                       ("t10k-images-idx3-ubyte", (5, 28, 28)), ("t10k-labels-idx1-ubyte", (5,))):
        high = 10 if "labels" in stem else 256
        (d / (stem + ".gz")).write_bytes(gzip.compress(images_header(*dims) + r.integers(0, high, dims).astype(
            np.uint8).tobytes()))
    assert load("mnist", tmp_path).num_train == 12
    gz_with_zeros(d / "t10k-images-idx3-ubyte.gz", images_header(5, 28, 28), 32 << 20)
    with pytest.raises(DataError) as e:
        load("mnist", tmp_path)
    assert "t10k-images-idx3-ubyte.gz: size mismatch" in str(e.value) and "\n" not in str(e.value)
