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

from typing import Any

from ..registry import DATASETS as _REGISTRY
from . import download
from .catalog import NORMALIZATION, candidate_roots, canonical_name, describe, how_to_get, load
from .dataset import Dataset, DatasetSpec
from .download import instructions
from .partition import PARTITIONS, dirichlet, dirichlet_balanced, holdout, iid, natural, partition, shards
from .shakespeare import SHAKESPEARE_VOCAB

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
    "dirichlet_balanced",
    "download",
    "holdout",
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
