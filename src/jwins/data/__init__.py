"""Datasets, partitions among nodes, and downloads.

``load(name, root)`` reads a dataset into memory (:class:`Dataset`), ``partition(kind, dataset, num_nodes, rng)``
splits its training set among nodes, ``download.download(name, root)`` fetches it on a machine with internet
access.  (``jwins.data.download`` is the module, so that ``from jwins.data import download`` and
``jwins.data.download.SOURCES`` work; the function is ``jwins.data.download.download``.)

Every dataset is described by a :class:`DatasetSpec` registered by name in :data:`jwins.registry.DATASETS`
(``register_dataset`` adds one); the built-ins live one file format per module: :mod:`~jwins.data.digits`,
:mod:`~jwins.data.idx` (MNIST, Fashion-MNIST), :mod:`~jwins.data.cifar`, :mod:`~jwins.data.leaf` (FEMNIST,
CelebA), :mod:`~jwins.data.shakespeare`, :mod:`~jwins.data.movielens`.  :mod:`jwins.data.files` holds what they
share and states the conventions (tensor types, fixed splits, ``max_samples``).  The image datasets' fixed
normalisation constants (``x = (x / 255 - mean) / std``, also in ``Dataset.meta["mean"]`` / ``["std"]``):

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
"""
from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigError, DataError
from ..registry import DATASETS as _REGISTRY
from ..registry import call as _call
from .dataset import Dataset, DatasetSpec
from .files import candidate_roots as _candidate_roots
from .files import check_max_samples as _check_max_samples
from .shakespeare import SHAKESPEARE_VOCAB
from . import download
from .download import instructions
from .partition import PARTITIONS, dirichlet, iid, natural, partition, shards

__all__ = [
    "DATASETS",
    "NORMALIZATION",
    "PARTITIONS",
    "SHAKESPEARE_VOCAB",
    "Dataset",
    "DatasetSpec",
    "candidate_roots",
    "canonical_name",
    "describe",
    "dirichlet",
    "download",
    "how_to_get",
    "iid",
    "instructions",
    "load",
    "natural",
    "partition",
    "shards",
]


def __getattr__(attr: str) -> Any:
    # DATASETS: the registered dataset names, in registry order, read at each access (a dataset registered
    # later is included).
    if attr == "DATASETS":
        return tuple(_REGISTRY.names())
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")


def canonical_name(name: str) -> str:
    """``name`` as a registered dataset name (case, ``_`` for ``-`` and aliases forgiven); DataError if unknown."""
    canonical = _REGISTRY.canonical(str(name))
    if canonical is None:
        raise DataError(f"unknown dataset {name!r}; known datasets: {', '.join(_REGISTRY.names())}")
    return canonical


def _spec(name: str) -> Any:
    """The object registered under ``name`` (canonical): a DatasetSpec, or a factory registered from Python."""
    try:
        return _REGISTRY.load(name)
    except ConfigError as e:  # a registered "module:attribute" that does not import
        raise DataError(f"dataset {name!r}: {e}") from None


def load(name: str, root: str | os.PathLike = "", *, max_samples: int = 0) -> Dataset:
    """Load dataset ``name`` (a registered name, see :data:`DATASETS`) from ``root`` or the standard places.

    Raises :class:`DataError` when it is missing (listing every place searched), malformed (naming the file
    and the problem) or cannot be decoded.
    """
    name = canonical_name(name)
    max_samples = _check_max_samples(max_samples)
    spec = _spec(name)
    if isinstance(spec, DatasetSpec):
        return spec.load(root, max_samples=max_samples)
    # A factory registered with register_dataset: given root and max_samples if it takes them.
    dataset = _call(spec, key="data.name", offered={"root": root, "max_samples": max_samples})
    if not isinstance(dataset, Dataset):
        raise DataError(f"dataset {name!r}: its factory returned {type(dataset).__name__}, not a jwins.data.Dataset")
    return dataset


def how_to_get(name: str) -> str:
    """One paragraph telling a person how to obtain dataset ``name``."""
    spec = _spec(canonical_name(name))
    return spec.how_to_get if isinstance(spec, DatasetSpec) else ""


def candidate_roots(name: str, root: str | os.PathLike = "") -> list[Path]:
    """The directories searched for dataset ``name``, in order (see :func:`jwins.data.files.candidate_roots`)."""
    return _candidate_roots(canonical_name(name), root)


def describe() -> list[dict]:
    """One dict per registered dataset for ``jwins data list``.

    Keys: ``name``, ``found`` (bool), ``path`` (str where found, else None), ``format`` (str or None),
    ``searched`` (the places looked at, as str), ``how`` (how to get it).
    """
    out = []
    for name in _REGISTRY.names():
        spec = _spec(name)
        spec = spec if isinstance(spec, DatasetSpec) else None
        located, tried = spec.locate("") if spec is not None and spec.locate is not None else (None, [])
        out.append(
            {
                "name": name,
                "found": located is not None,
                "path": str(located[0]) if located else None,
                "format": located[1] if located else None,
                "searched": [str(p) for p, _ in tried] + ([str(located[0])] if located else []),
                "how": spec.how_to_get if spec is not None else "",
            }
        )
    return out


class _Normalization(Mapping):
    """Registered dataset name -> ``(mean, std)`` per channel, read from its :class:`DatasetSpec` (datasets
    without fixed normalisation constants, e.g. text and ratings, are not in it)."""

    def __getitem__(self, name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
        if name in _REGISTRY.names():
            spec = _spec(name)
            if isinstance(spec, DatasetSpec) and spec.normalization is not None:
                return spec.normalization
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter([n for n in _REGISTRY.names() if n in self])

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return repr(dict(self))


NORMALIZATION: Mapping[str, tuple[tuple[float, ...], tuple[float, ...]]] = _Normalization()
