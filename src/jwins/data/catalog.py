"""The registered datasets as the rest of jwins asks for them: load one by name, describe where each is, and
how to get it (every name resolved through :data:`jwins.registry.DATASETS`)."""
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
