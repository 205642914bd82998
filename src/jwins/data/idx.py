"""MNIST and Fashion-MNIST: the four IDX files (raw or gzipped) of LeCun's format."""
from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

from ..errors import DataError
from .dataset import Dataset, DatasetSpec
from .files import (READ_ERRORS, Located, _cannot_read, _image_dataset, _open_binary, _read_upto, check_max_samples,
                    download_hint, locate_or_raise, searcher)

__all__ = ["FASHION_MNIST", "MNIST"]

_IDX_FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}


def _idx_file(d: Path, stem: str) -> Path | None:
    for s in (stem, stem.replace("-idx", ".idx")):  # some copies use "train-images.idx3-ubyte"
        for candidate in (d / s, d / (s + ".gz")):
            if candidate.is_file():
                return candidate
    return None


def _locate_idx(d: Path, torchvision_dir: str) -> Located | str:
    for sub in (d, d / "raw", d / torchvision_dir / "raw"):
        if sub.is_dir() and all(_idx_file(sub, s) for s in _IDX_FILES.values()):
            return sub, "idx"
    if not d.is_dir():
        return "does not exist"
    missing = [s for s in _IDX_FILES.values() if _idx_file(d, s) is None]
    return "no " + ", ".join(f"{m}[.gz]" for m in missing)


# The largest IDX file read (its data, after gunzipping); a header whose dims multiply to more is refused
# before any data is read. MNIST's training images are 47 MB, EMNIST's largest split 0.55 GB.
MAX_IDX_BYTES = 2 << 30


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """An IDX file of unsigned bytes: the header is read (and gunzipped) first, then exactly the bytes its
    dims give, and one byte more must not be there."""
    magic = 0x0800 + ndim
    header = 4 + 4 * ndim
    try:
        with _open_binary(path) as f:
            head = _read_upto(f, header)
            if len(head) < 4:
                raise DataError(f"{path}: only {len(head)} bytes, too short for an IDX header")
            got = struct.unpack(">I", head[:4])[0]
            if got != magic:
                raise DataError(
                    f"{path}: bad IDX magic number 0x{got:08x}, expected 0x{magic:08x} "
                    f"(unsigned bytes, {ndim} dimension{'s' if ndim > 1 else ''})"
                )
            if len(head) < header:
                raise DataError(f"{path}: truncated IDX header ({len(head)} bytes, need {header})")
            dims = struct.unpack(">" + "I" * ndim, head[4:header])
            size = 1
            for n in dims:
                size *= n
            shape = "x".join(map(str, dims))
            if size > MAX_IDX_BYTES:
                raise DataError(f"{path}: the IDX header says {shape} = {size} bytes, more than the "
                                f"{MAX_IDX_BYTES} bytes this reader takes (a corrupt or crafted header)")
            expected = header + size
            if path.suffix != ".gz" and path.stat().st_size != expected:
                have = path.stat().st_size
            else:
                body = _read_upto(f, size)
                more = f.read(1) if len(body) == size else b""
                have = None if not more and len(body) == size else header + len(body)
    except READ_ERRORS as e:
        raise _cannot_read(path, e) from e
    if have is not None:
        what = f"more than {expected} bytes" if have == expected else f"{have} bytes"
        raise DataError(
            f"{path}: size mismatch: the header says {shape} -> {expected} bytes, "
            f"the file has {what}{' once decompressed' if path.suffix == '.gz' else ''} (truncated or corrupt?)"
        )
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


def _load_idx(spec: DatasetSpec, root: str | os.PathLike, max_samples: int) -> Dataset:
    max_samples = check_max_samples(max_samples)
    d, _ = locate_or_raise(spec, root)
    arrays = {}
    for key, stem in _IDX_FILES.items():
        f = _idx_file(d, stem)
        assert f is not None  # the locator checked
        arrays[key] = (f, _read_idx(f, 3 if key.endswith("_x") else 1))
    for split in ("train", "test"):
        (fx, x), (fy, y) = arrays[f"{split}_x"], arrays[f"{split}_y"]
        if len(x) != len(y):
            raise DataError(f"{fx} has {len(x)} images but {fy} has {len(y)} labels")
    tx, ty = arrays["train_x"][1], arrays["train_y"][1]
    vx, vy = arrays["test_x"][1], arrays["test_y"][1]
    if tx.shape[1:] != vx.shape[1:]:
        raise DataError(f"{d}: train images are {tx.shape[1:]} but test images are {vx.shape[1:]}")
    return _image_dataset(
        spec.name, d, tx[:, None], ty, vx[:, None], vy, 10, 255.0, max_samples, normalization=spec.normalization,
    )


def load_mnist(root: str | os.PathLike = "", *, max_samples: int = 0) -> Dataset:
    return _load_idx(MNIST, root, max_samples)


def load_fashion_mnist(root: str | os.PathLike = "", *, max_samples: int = 0) -> Dataset:
    return _load_idx(FASHION_MNIST, root, max_samples)


MNIST = DatasetSpec(
    name="mnist",
    load=load_mnist,
    default_model="small-cnn",
    locate=searcher("mnist", lambda d: _locate_idx(d, "MNIST")),
    how_to_get=download_hint("mnist"),
    normalization=((0.1307,), (0.3081,)),  # MNIST training set (the usual constants)
)

FASHION_MNIST = DatasetSpec(
    name="fashion-mnist",
    load=load_fashion_mnist,
    default_model="small-cnn",
    locate=searcher("fashion-mnist", lambda d: _locate_idx(d, "FashionMNIST")),
    how_to_get=download_hint("fashion-mnist"),
    normalization=((0.2860,), (0.3530,)),  # Fashion-MNIST training set
)
