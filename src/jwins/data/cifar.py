"""CIFAR-10 and CIFAR-100: the "python version" pickles, read with a restricted unpickler."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np

from ..errors import DataError
from .dataset import Dataset, DatasetSpec
from .files import Located, _image_dataset, _labels, check_max_samples, download_hint, locate_or_raise, searcher

__all__ = ["CIFAR10", "CIFAR100", "read_array_pickle"]

# name -> (folder of the official archive, training files, test files, label key, number of classes)
_CIFAR = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "labels", 10),
    "cifar100": ("cifar-100-python", ["train"], ["test"], "fine_labels", 100),
}


def _locate_cifar(d: Path, name: str) -> Located | str:
    sub, train, test, _, _ = _CIFAR[name]
    for cand in (d, d / sub):
        if all((cand / f).is_file() for f in train + test):
            return cand, "python-pickle"
    if not d.is_dir():
        return "does not exist"
    return f"no {sub}/ (or {', '.join(train + test)}) here"


# ----------------------------------------------------------------------------------------------------------
# The restricted unpickler


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


# ----------------------------------------------------------------------------------------------------------
# Loading


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


def _load_cifar(spec: DatasetSpec, root: str | os.PathLike, max_samples: int) -> Dataset:
    max_samples = check_max_samples(max_samples)
    d, _ = locate_or_raise(spec, root)
    _, train_files, test_files, label_key, num_classes = _CIFAR[spec.name]
    parts = {}
    for split, files in (("train", train_files), ("test", test_files)):
        batches = [_read_cifar_batch(d / f, label_key, num_classes) for f in files]
        parts[split] = (np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches]))
    return _image_dataset(spec.name, d, *parts["train"], *parts["test"], num_classes, 255.0, max_samples,
                          normalization=spec.normalization)


def load_cifar10(root: str | os.PathLike = "", *, max_samples: int = 0) -> Dataset:
    return _load_cifar(CIFAR10, root, max_samples)


def load_cifar100(root: str | os.PathLike = "", *, max_samples: int = 0) -> Dataset:
    return _load_cifar(CIFAR100, root, max_samples)


CIFAR10 = DatasetSpec(
    name="cifar10",
    load=load_cifar10,
    default_model="lenet",
    locate=searcher("cifar10", lambda d: _locate_cifar(d, "cifar10")),
    how_to_get=download_hint("cifar10"),
    normalization=((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),  # CIFAR-10 training set
)

CIFAR100 = DatasetSpec(
    name="cifar100",
    load=load_cifar100,
    default_model="lenet",
    locate=searcher("cifar100", lambda d: _locate_cifar(d, "cifar100")),
    how_to_get=download_hint("cifar100"),
    normalization=((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),  # CIFAR-100 training set
)
