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
#
# numpy's own pickle support (``numpy.dtype`` and ``ndarray.__setstate__``) rebuilds whatever a dtype state
# describes: fields at any offset, object fields hidden behind flags that say there are none, ... which a
# crafted file turns into a crash or memory corruption. So numpy never sees a pickle's state here: the
# allowed globals resolve to stand-ins that check the state (a plain numeric dtype, raw bytes exactly
# shape x itemsize long) and only then build the array with ``np.frombuffer``.

# the numeric type codes a data pickle may use (numpy's pickle writes these as the dtype's first argument)
_PLAIN_CODES = {f"{kind}{size}" for kind, sizes in (("b", (1,)), ("i", (1, 2, 4, 8)), ("u", (1, 2, 4, 8)),
                                                     ("f", (2, 4, 8))) for size in sizes}
_MAX_NDIM = 32


class _DtypeStub:
    """``numpy.dtype(code, align, copy)`` as a data pickle spells it; ``__setstate__`` (the pickle's BUILD)
    accepts only the state numpy writes for a plain numeric type: no fields, no subarray, no object flag."""

    def __init__(self, path: Path, code: str):
        self._path, self._code = path, code
        self._order: str | None = None   # '<', '>' or '|' once the state was given

    def _refuse(self, why: str) -> DataError:
        return DataError(f"{self._path}: refusing a numpy dtype {self._code!r} {why} "
                         "(dataset pickles may only hold plain numeric arrays)")

    def __setstate__(self, state) -> None:
        if self._order is not None:
            raise self._refuse("whose state is given twice")
        if not isinstance(state, tuple) or len(state) not in (8, 9):
            raise self._refuse("with a malformed state")
        version, order, subarray, names, fields, elsize, alignment, flags = state[:8]
        if version not in (3, 4) or (len(state) == 9 and state[8] is not None):
            raise self._refuse("with a malformed state")
        if subarray is not None or names is not None or fields is not None:
            raise self._refuse("with fields or a subarray")
        if type(flags) is not int or flags != 0:
            raise self._refuse(f"with flags {_short(flags)} (a plain number has none)")
        itemsize = int(self._code[1:])
        for value in (elsize, alignment):
            if type(value) is not int or value not in (-1, itemsize):
                raise self._refuse(f"with item size or alignment {_short(value)}")
        text = _text(order)
        if text not in ("<", ">", "=", "|") or (text == "|" and itemsize != 1):
            raise self._refuse(f"with byte order {_short(order)}")
        self._order = text

    def dtype(self) -> np.dtype:
        dtype = np.dtype(self._code)
        return dtype if self._order in (None, "|", "=") else dtype.newbyteorder(self._order)


class _ArrayStub:
    """What ``numpy.core.multiarray._reconstruct(numpy.ndarray, (0,), b'b')`` returns for a data pickle; its
    ``__setstate__`` takes ``(version, shape, dtype, fortran, raw bytes)`` and builds the array itself."""

    def __init__(self, path: Path):
        self._path = path
        self.array: np.ndarray | None = None

    def _refuse(self, why: str) -> DataError:
        return DataError(f"{self._path}: refusing a pickled numpy array {why} "
                         "(dataset pickles may only hold plain numeric arrays)")

    def __setstate__(self, state) -> None:
        if self.array is not None:
            raise self._refuse("whose state is given twice")
        if isinstance(state, tuple) and len(state) == 4:   # numpy's older layout, without the version
            state = (1, *state)
        if not isinstance(state, tuple) or len(state) != 5 or state[0] != 1:
            raise self._refuse("with a malformed state")
        _, shape, dtype, fortran, raw = state
        if not isinstance(dtype, _DtypeStub):
            raise self._refuse(f"of element type {type(dtype).__name__}")
        if (not isinstance(shape, tuple) or len(shape) > _MAX_NDIM
                or not all(type(n) is int and n >= 0 for n in shape)):
            raise self._refuse(f"with shape {_short(shape)}")
        if type(fortran) not in (bool, int) or fortran not in (0, 1):
            raise self._refuse("with a malformed memory order")
        if not isinstance(raw, (bytes, bytearray)):
            raise self._refuse(f"whose data is a {type(raw).__name__}, not raw bytes")
        dt = dtype.dtype()
        count = 1
        for n in shape:
            count *= n
        if len(raw) != count * dt.itemsize:
            raise self._refuse(f"of shape {shape} and type {dt} ({count * dt.itemsize} bytes) holding "
                               f"{len(raw)} bytes")
        if dt.kind == "b" and raw and int(np.frombuffer(raw, dtype=np.uint8).max()) > 1:
            raise self._refuse("of booleans holding bytes other than 0 and 1")
        self.array = np.frombuffer(raw, dtype=dt).reshape(shape, order="F" if fortran else "C")


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _text(value) -> str | None:
    if isinstance(value, bytes):   # a Python 2 pickle read with encoding="bytes"
        try:
            return value.decode("ascii")
        except UnicodeDecodeError:
            return None
    return value if isinstance(value, str) else None


_NDARRAY = object()   # what the global numpy.ndarray stands for: only an argument of _reconstruct
_RECONSTRUCT = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct")}


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickles dicts / lists / strings / numbers and plain numeric numpy arrays, and refuses every other
    global. The numpy globals resolve to the checking stand-ins above, never to numpy itself."""

    def __init__(self, file, path: Path):
        super().__init__(file, encoding="bytes")
        self._path = path

    def find_class(self, module, name):
        path = self._path
        if (module, name) in _RECONSTRUCT:
            def reconstruct(cls, shape, typecode):
                if cls is not _NDARRAY or shape != (0,) or _text(typecode) != "b":
                    raise DataError(f"{path}: refusing {module}.{name} with arguments other than numpy's "
                                    "own for an array")
                return _ArrayStub(path)
            return reconstruct
        if (module, name) == ("numpy", "ndarray"):
            return _NDARRAY
        if (module, name) == ("numpy", "dtype"):
            def dtype(code, align=False, copy=True):
                text = _text(code)
                if text not in _PLAIN_CODES or align not in (0, 1) or copy not in (0, 1):
                    raise DataError(f"{path}: refusing a numpy dtype {_short(code)} (dataset pickles may only hold "
                                    "plain numeric arrays: bool, integers, floats)")
                return _DtypeStub(path, text)
            return dtype
        raise DataError(
            f"{path}: refusing to unpickle {module}.{name} "
            "(dataset pickles may only hold numpy arrays, lists, dicts, strings and numbers)"
        )

    def persistent_load(self, pid):
        raise DataError(f"{self._path}: refusing to unpickle a persistent id")


def _resolve(obj, path: Path):
    """``obj`` with every stand-in replaced by what it stands for (containers rebuilt, cycles kept)."""
    done: dict[int, object] = {}

    def walk(x):
        if isinstance(x, _ArrayStub):
            if x.array is None:
                raise DataError(f"{path}: a pickled numpy array has no data (its state is missing)")
            return x.array
        if isinstance(x, _DtypeStub):
            return x.dtype()
        if x is _NDARRAY:
            raise DataError(f"{path}: refusing a bare numpy.ndarray outside an array")
        if isinstance(x, (dict, list, tuple, set, frozenset)):
            if id(x) in done:
                return done[id(x)]
            if isinstance(x, dict):
                done[id(x)] = x
                for k in list(x):
                    x[k] = walk(x[k])
            elif isinstance(x, list):
                done[id(x)] = x
                x[:] = [walk(v) for v in x]
            else:
                done[id(x)] = x
                done[id(x)] = type(x)(walk(v) for v in x)
            return done[id(x)]
        return x

    return walk(obj)


def read_array_pickle(path: Path):
    """Read a pickle that may contain only plain data and plain numeric numpy arrays (DataError otherwise)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return _resolve(_ArrayOnlyUnpickler(f, path).load(), path)
    except DataError:
        raise
    except Exception as e:  # malformed pickles raise a zoo of exception types
        reason = (str(e).strip().splitlines() or [""])[0][:200]
        raise DataError(f"{path}: not a readable data pickle ({type(e).__name__}: {reason})") from e


# ----------------------------------------------------------------------------------------------------------
# Loading


def _get(d: dict, key: str):
    for k in (key.encode(), key):
        if k in d:
            return d[k]
    return None


def _describe(x) -> str:
    if isinstance(x, np.ndarray):
        return f"a {x.dtype} array of shape {x.shape}"
    return f"a {type(x).__name__}"


def _integer_labels(labels) -> np.ndarray | None:
    """``labels`` (a list of ints or a 1-d integer array) as int64, or None if it is anything else."""
    if isinstance(labels, np.ndarray):
        if labels.ndim != 1 or labels.dtype.kind not in "iu":
            return None
        if labels.dtype.kind == "u" and labels.size and int(labels.max()) > np.iinfo(np.int64).max:
            return None
        return labels.astype(np.int64)
    if not isinstance(labels, (list, tuple)):
        return None
    if not all(type(v) is int and -(1 << 63) <= v < (1 << 63) for v in labels):
        return None
    return np.array(labels, dtype=np.int64).reshape(-1)


def _read_cifar_batch(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    obj = read_array_pickle(path)
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a dict with 'data' and '{label_key}', got {type(obj).__name__}")
    data, labels = _get(obj, "data"), _get(obj, label_key)
    if data is None or labels is None:
        keys = ", ".join(_short(k) for k in list(obj)[:10]) + (", ..." if len(obj) > 10 else "")
        raise DataError(f"{path}: missing 'data' or '{label_key}' (keys: {keys})")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        desc = f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{path}: 'data' must be a uint8 array of shape [n, 3072], got {desc}")
    y = _integer_labels(labels)
    if y is None:
        raise DataError(f"{path}: '{label_key}' is not a list of integers (got {_describe(labels)})")
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
