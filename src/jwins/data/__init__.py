"""Datasets, partitions among nodes, and downloads.

``load(name, root)`` reads a dataset into memory (:class:`Dataset`), ``partition(kind, dataset, num_nodes, rng)``
splits its training set among nodes, ``download.download(name, root)`` fetches it on a machine with internet
access.  (``jwins.data.download`` is the module, so that ``from jwins.data import download`` and
``jwins.data.download.SOURCES`` work; the function is ``jwins.data.download.download``.)
"""
from .datasets import (
    DATASETS,
    NORMALIZATION,
    SHAKESPEARE_VOCAB,
    Dataset,
    candidate_roots,
    canonical_name,
    describe,
    how_to_get,
    load,
)
from . import download
from .download import instructions
from .partition import PARTITIONS, dirichlet, iid, natural, partition, shards

__all__ = [
    "DATASETS",
    "NORMALIZATION",
    "PARTITIONS",
    "SHAKESPEARE_VOCAB",
    "Dataset",
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
