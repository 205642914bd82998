"""Datasets, partitions among nodes, and downloads.

``load(name, root)`` reads a dataset into memory (:class:`Dataset`), ``partition(kind, dataset, num_nodes, rng)``
splits its training set among nodes, ``download(name, root)`` fetches it on a machine with internet access.
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
from .download import download, instructions
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
