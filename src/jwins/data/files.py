"""What the dataset formats share: where to look, how to report a miss, fixed subsets and the tensor conventions.

Conventions of every loader
---------------------------
* Images are float32 tensors ``[n, C, H, W]``, scaled to [0, 1] and then normalised per channel with the fixed
  constants of the dataset's :attr:`DatasetSpec.normalization` (``x = (x / 255 - mean) / std``); the constants are
  also put in ``Dataset.meta["mean"]`` / ``meta["std"]``.  Labels are int64.
* Fixed splits (digits train/test, MovieLens per-user split, ``max_samples`` subsets) use seeds fixed here,
  independent of the experiment seed, so every run sees the same data.
* ``max_samples > 0`` keeps a fixed random subset (in original order) of at most that many training and at most
  that many test samples; for Shakespeare and CelebA the subset is taken before windows / images are built.

Nothing here touches the network; :mod:`jwins.data.download` fetches the datasets that can be fetched.
"""
from __future__ import annotations

import gzip
import importlib.util
import os
import zlib
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..errors import DataError
from .dataset import Dataset, DatasetSpec, Images

__all__ = ["candidate_roots", "download_hint", "find", "not_found", "searcher"]

Located = tuple[Path, str]  # (path, format)
Tried = list[tuple[Path, str]]  # [(place searched, why the dataset is not there), ...]
Look = Callable[[Path], "Located | str"]  # one candidate directory -> (path, format) or why not

_FIXED_SEED = 0x6A77696E  # "jwin": the seed of every fixed split; never the experiment seed
_SPLIT_FRACTION = 0.8

# Datasets that Debian packages install under /usr/share/datasets/<name> (dataset-fashion-mnist and the like).
_SYSTEM_DATASETS = ("mnist", "fashion-mnist")


def _fixed_rng(*key: str) -> np.random.Generator:
    return np.random.default_rng([_FIXED_SEED, zlib.crc32("/".join(key).encode())])


# ----------------------------------------------------------------------------------------------------------
# Places


def _sklearn_data_dir() -> Path:
    """scikit-learn's bundled data folder, found without importing scikit-learn (which takes seconds)."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the digits dataset ships with scikit-learn, which is not installed: pip install scikit-learn")
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"


def candidate_roots(name: str, root: str | os.PathLike = "") -> list[Path]:
    """The directories searched for dataset ``name`` (its registered name), in order.

    ``root`` (config ``data.root``) and ``root/<name>`` if given, then ``$JWINS_DATA/<name>`` and
    ``$JWINS_DATA``, then ``~/.cache/jwins/<name>``, ``~/data/<name>`` and, for mnist and fashion-mnist,
    ``/usr/share/datasets/<name>`` (where Debian's dataset-fashion-mnist package puts its files).  Inside each
    directory the loader also tries the usual sub-layouts (``cifar-10-batches-py/``, ``raw/``, ``ml-100k/``, ...).
    ``digits`` has one place: scikit-learn's data folder.
    """
    if name == "digits":
        return [_sklearn_data_dir()]
    out: list[Path] = []
    if root:
        r = Path(root).expanduser()
        out += [r / name, r]
    env = os.environ.get("JWINS_DATA", "")
    if env:
        e = Path(env).expanduser()
        out += [e / name, e]
    home = Path.home()
    out += [home / ".cache" / "jwins" / name, home / "data" / name]
    if name in _SYSTEM_DATASETS:
        out.append(Path("/usr/share/datasets") / name)
    seen: set[Path] = set()
    unique = []
    for p in out:
        if p not in seen:
            seen.add(p)
            unique.append(p)
    return unique


def find(name: str, root: str | os.PathLike, look: Look) -> tuple[Located | None, Tried]:
    """Walk :func:`candidate_roots` with ``look`` (one directory -> ``(path, format)`` or the reason it is not
    there); return the first hit, or None, and the places tried before it with their reasons."""
    tried: Tried = []
    for d in candidate_roots(name, root):
        try:
            got = look(d)
        except OSError as e:  # unreadable directory and the like
            got = f"cannot be read ({e.strerror or e})"
        if isinstance(got, tuple):
            return got, tried
        tried.append((d, got))
    return None, tried


def searcher(name: str, look: Look) -> Callable[..., tuple[Located | None, Tried]]:
    """The ``locate(root="")`` of a :class:`DatasetSpec` whose files ``look`` recognises in a directory."""

    def locate(root: str | os.PathLike = "") -> tuple[Located | None, Tried]:
        return find(name, root, look)

    locate.__name__ = locate.__qualname__ = f"locate_{name.replace('-', '_')}"
    return locate


def not_found(name: str, tried: Tried, how_to_get: str) -> DataError:
    lines = [f"dataset {name!r} not found. Looked in, in this order:"]
    lines += [f"  {p}  ({why})" for p, why in tried]
    lines.append(f"To get it: {how_to_get}.")
    return DataError("\n".join(lines))


def locate_or_raise(spec: DatasetSpec, root: str | os.PathLike) -> Located:
    """``spec.locate(root)``'s hit, or the DataError listing every place searched and how to get the dataset."""
    located, tried = spec.locate(root)
    if located is None:
        raise not_found(spec.name, tried, spec.how_to_get)
    return located


def download_hint(name: str) -> str:
    """``how_to_get`` of a dataset that ``jwins data download`` fetches."""
    return (
        f"run `jwins data download {name} --root DIR` (needs internet), then add --set data.root=DIR (or "
        f"data.root = \"DIR\" under [data] in the config, or export JWINS_DATA=DIR); or put the files in one of "
        "the places listed"
    )


def check_max_samples(max_samples) -> int:
    max_samples = int(max_samples or 0)
    if max_samples < 0:
        raise DataError(f"max_samples must be >= 0, got {max_samples}")
    return max_samples


# ----------------------------------------------------------------------------------------------------------
# Reading


# No data file is read whole beyond this many bytes (after gunzipping): a small .gz can expand a thousandfold.
MAX_READ_BYTES = 2 << 30
_READ_CHUNK = 1 << 20
READ_ERRORS = (OSError, EOFError, zlib.error)  # gzip.BadGzipFile is an OSError


def _open_binary(path: Path):
    """``path`` opened for reading bytes, gunzipped on the fly if it ends in .gz."""
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _read_upto(f, n: int) -> bytes:
    """At most ``n`` bytes of ``f`` (fewer only at its end), read in chunks: memory grows with what is there,
    never with what a header claims."""
    buf = bytearray()
    while len(buf) < n:
        chunk = f.read(min(_READ_CHUNK, n - len(buf)))
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


def _cannot_read(path: Path, e: BaseException) -> DataError:
    reason = (str(e).strip().splitlines() or [""])[0][:200]
    return DataError(f"{path}: cannot be read ({type(e).__name__}: {reason})")


def _read_bytes(path: Path, limit: int = MAX_READ_BYTES) -> bytes:
    """The whole file, gunzipped if it ends in .gz; a DataError if it holds more than ``limit`` bytes (reading
    stops there)."""
    try:
        with _open_binary(path) as f:
            data = _read_upto(f, limit + 1)
    except READ_ERRORS as e:
        raise _cannot_read(path, e) from e
    if len(data) > limit:
        raise DataError(f"{path}: more than {limit} bytes{' once decompressed' if path.suffix == '.gz' else ''}, "
                        "more than any dataset file this reader takes; the file is corrupt or not a dataset file")
    return data


class _GroupIds:
    """Dense int ids for group names (writers, roles, users), in order of first appearance."""

    def __init__(self):
        self.ids: dict[str, int] = {}

    def __call__(self, key: str) -> int:
        return self.ids.setdefault(key, len(self.ids))

    def names(self) -> list[str]:
        return list(self.ids)


# ----------------------------------------------------------------------------------------------------------
# Subsets and tensors


def _subset(n: int, max_samples: int, *key: str) -> np.ndarray | None:
    """Sorted indices of a fixed random subset of ``max_samples`` out of ``n``; None to keep everything."""
    if max_samples <= 0 or n <= max_samples:
        return None
    return np.sort(_fixed_rng("max_samples", *key).choice(n, size=max_samples, replace=False))


def _take(a, idx):
    return a if idx is None else a[idx]


Normalization = tuple[tuple[float, ...], tuple[float, ...]]


def _images_to_tensor(x: np.ndarray, scale: float, normalization: Normalization):
    """uint8 / float array [n, C, H, W] -> float32 tensor, divided by ``scale`` and normalised per channel; uint8
    pixels stay uint8 (:class:`Images`, normalised as they are read: the same numbers at a quarter of the
    memory)."""
    pixels = np.asarray(x).dtype == np.uint8
    arr = np.ascontiguousarray(x, dtype=None if pixels else np.float32)
    if not arr.flags.writeable:  # e.g. read straight from a file's bytes: torch wants its own
        arr = arr.copy()
    mean, std = normalization
    if pixels:
        return Images(torch.from_numpy(arr), scale, mean, std)
    t = torch.from_numpy(arr)
    if scale != 1.0:
        t.mul_(1.0 / scale)
    m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return t.sub_(m).div_(s)


def _labels(y: np.ndarray, num_classes: int, where: str) -> torch.Tensor:
    y = np.asarray(y)
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise DataError(f"{where}: labels must lie in 0..{num_classes - 1}, found {int(y.min())}..{int(y.max())}")
    return torch.from_numpy(y.astype(np.int64, copy=False))


def _image_dataset(name, path, train_x, train_y, test_x, test_y, num_classes, scale, max_samples, *,
                   normalization: Normalization, **extra) -> Dataset:
    """An image classification Dataset: fixed ``max_samples`` subsets, normalised images, checked labels."""
    tr = _subset(len(train_y), max_samples, name, "train")
    te = _subset(len(test_y), max_samples, name, "test")
    groups = extra.pop("train_groups", None)
    meta = {"root": str(path), "mean": normalization[0], "std": normalization[1]}
    meta.update(extra.pop("meta", {}))
    tx = _images_to_tensor(_take(train_x, tr), scale, normalization)
    return Dataset(
        name=name,
        train_x=tx,
        train_y=_labels(_take(train_y, tr), num_classes, str(path)),
        test_x=_images_to_tensor(_take(test_x, te), scale, normalization),
        test_y=_labels(_take(test_y, te), num_classes, str(path)),
        task="classification",
        num_classes=num_classes,
        input_shape=tuple(tx.shape[1:]),
        train_groups=None if groups is None else np.ascontiguousarray(_take(groups, tr), dtype=np.int64),
        meta=meta,
    )
