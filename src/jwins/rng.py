"""Per-node random streams derived from (seed, purpose, node, round).

Streams are stateless functions of their key, so the same seed gives the same numbers whether nodes live in
one process or many, and a checkpoint need not store generator states.
"""
from __future__ import annotations

import zlib

import numpy as np


def _purpose_id(purpose: str) -> int:
    return zlib.crc32(purpose.encode())


def stream(seed: int, purpose: str, *key: int) -> np.random.Generator:
    """A numpy Generator for ``(seed, purpose, *key)``, e.g. ``stream(0, "sharing", node, round)``."""
    return np.random.default_rng([int(seed), _purpose_id(purpose), *(int(k) for k in key)])


def torch_seed(seed: int, purpose: str, *key: int) -> int:
    """A 63-bit integer seed for torch generators, derived like :func:`stream`."""
    return int(stream(seed, purpose, *key).integers(0, 2**63 - 1))


