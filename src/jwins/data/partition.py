"""Split a training set among nodes.

Every partitioner returns ``num_nodes`` sorted int64 index arrays into the training set that are disjoint, cover
every training sample (nothing is dropped) and are all non-empty; a partition that cannot satisfy that raises
:class:`~jwins.errors.DataError` naming the numbers.  The result depends only on the inputs and on the
``rng`` (a ``numpy.random.Generator``, e.g. ``jwins.rng.stream(seed, "partition")``) passed in.
"""
from __future__ import annotations

import heapq
import warnings
from typing import Callable

import numpy as np

from ..errors import DataError

__all__ = ["PARTITIONS", "dirichlet", "dirichlet_balanced", "holdout", "iid", "natural", "partition", "shards"]


def _check(n: int, num_nodes, what: str = "samples") -> int:
    """``num_nodes`` as an int, after checking that every node can get a sample."""
    try:
        ok = not isinstance(num_nodes, bool) and int(num_nodes) == num_nodes and num_nodes >= 1
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise DataError(f"num_nodes must be a positive integer, got {num_nodes!r}")
    num_nodes = int(num_nodes)
    if n < num_nodes:
        raise DataError(f"cannot give each of {num_nodes} nodes at least one sample: only {n} {what}")
    return num_nodes


def _finish(parts) -> list[np.ndarray]:
    return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]


def iid(labels: np.ndarray, num_nodes: int, rng: np.random.Generator) -> list[np.ndarray]:
    """A random permutation cut into ``num_nodes`` parts whose sizes differ by at most one."""
    n = len(labels)
    num_nodes = _check(n, num_nodes)
    return _finish(np.array_split(rng.permutation(n), num_nodes))


def shards(
    labels: np.ndarray, num_nodes: int, rng: np.random.Generator, *, shards_per_node: int = 2
) -> list[np.ndarray]:
    """Label-skewed shards (McMahan et al.; the JWINS paper / decentralizepy).

    The samples are sorted by label (stable, so ties keep their order), cut into ``num_nodes *
    shards_per_node`` contiguous shards whose sizes differ by at most one (no remainder is dropped), and the
    shards are dealt at random, ``shards_per_node`` to each node.  A shard no larger than the smallest class
    spans at most two classes, so a node sees at most ``2 * shards_per_node`` classes, usually
    ``shards_per_node``.
    """
    labels = np.asarray(labels)
    if isinstance(shards_per_node, bool) or int(shards_per_node) != shards_per_node or shards_per_node < 1:
        raise DataError(f"shards_per_node must be a positive integer, got {shards_per_node!r}")
    num_nodes = _check(len(labels), num_nodes)
    shards_per_node = int(shards_per_node)
    total = num_nodes * shards_per_node
    if len(labels) < total:
        raise DataError(
            f"cannot cut {len(labels)} samples into {num_nodes} nodes x {shards_per_node} shards = {total} "
            "non-empty shards; use fewer shards per node or fewer nodes"
        )
    order = np.argsort(labels, kind="stable")
    pieces = np.array_split(order, total)
    deal = rng.permutation(total).reshape(num_nodes, shards_per_node)
    return _finish(np.concatenate([pieces[s] for s in row]) for row in deal)


def dirichlet(
    labels: np.ndarray, num_nodes: int, rng: np.random.Generator, *, alpha: float = 0.5
) -> list[np.ndarray]:
    """Per-class Dirichlet label skew (Hsu et al. 2019).

    For each class (in sorted order) the proportions over nodes are drawn from Dir(alpha, ..., alpha) and that
    class's samples, in random order, are cut accordingly.  Small alpha: each class sits on few nodes; large
    alpha: close to iid.  Nodes left empty then get one sample each, moved from the currently largest node
    (a random sample of it; ties between nodes go to the lowest id), so at most ``num_nodes - 1`` samples move.
    """
    labels = np.asarray(labels)
    alpha = float(alpha)
    if not np.isfinite(alpha) or alpha <= 0:
        raise DataError(f"dirichlet alpha must be a positive number, got {alpha}")
    n = len(labels)
    num_nodes = _check(n, num_nodes)
    parts: list[list[np.ndarray]] = [[] for _ in range(num_nodes)]
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        p = rng.dirichlet(np.full(num_nodes, alpha))
        if not np.all(np.isfinite(p)) or p.sum() <= 0:  # extreme alpha underflow: all to one node
            p = np.zeros(num_nodes)
            p[rng.integers(num_nodes)] = 1.0
        cuts = np.floor(np.cumsum(p)[:-1] / p.sum() * len(idx) + 0.5).astype(np.int64)
        for node, piece in enumerate(np.split(idx, np.clip(cuts, 0, len(idx)))):
            if len(piece):
                parts[node].append(piece)
    nodes = [np.concatenate(p) if p else np.zeros(0, dtype=np.int64) for p in parts]
    for empty in range(num_nodes):
        if len(nodes[empty]) == 0:
            donor = int(np.argmax([len(a) for a in nodes]))
            k = int(rng.integers(len(nodes[donor])))
            nodes[empty] = nodes[donor][k : k + 1]
            nodes[donor] = np.delete(nodes[donor], k)
    return _finish(nodes)


def dirichlet_balanced(
    labels: np.ndarray, num_nodes: int, rng: np.random.Generator, *, alpha: float = 1.0,
    min_samples: int | None = None, max_tries: int = 1000,
) -> list[np.ndarray]:
    """The reference implementation's Dirichlet partition (decentralizepy's ``DirichletDataPartitioner``).

    Drawn again until every node holds at least ``min_samples`` samples (default: the number of classes).
    Each draw starts with every node empty; for each class in sorted order the class's samples are shuffled,
    proportions ``p ~ Dir(alpha, ..., alpha)`` are drawn over the nodes, ``p_j`` is set to 0 for every node
    that already holds ``n / num_nodes`` samples or more (the balancing step: no node grows past an equal
    share while classes are still being dealt), ``p`` is renormalised and the shuffled samples are cut at its
    cumulative proportions (truncated to integers). Sizes are therefore near-balanced, unlike :func:`dirichlet`,
    whose node sizes follow the draw. A draw that still leaves a node short after ``max_tries`` raises
    :class:`DataError` naming the numbers.
    """
    labels = np.asarray(labels)
    alpha = float(alpha)
    if not np.isfinite(alpha) or alpha <= 0:
        raise DataError(f"dirichlet alpha must be a positive number, got {alpha}")
    n = len(labels)
    num_nodes = _check(n, num_nodes)
    classes = np.unique(labels)
    least = len(classes) if min_samples is None else int(min_samples)
    if least * num_nodes > n:
        raise DataError(f"cannot give each of {num_nodes} nodes at least {least} samples: only {n} samples; use "
                        "fewer nodes")
    share = n / num_nodes
    for _ in range(max_tries):
        parts: list[list[np.ndarray]] = [[] for _ in range(num_nodes)]
        held = np.zeros(num_nodes, dtype=np.int64)
        for c in classes:
            idx = rng.permutation(np.flatnonzero(labels == c))
            p = rng.dirichlet(np.full(num_nodes, alpha))
            p = np.where(held < share, p, 0.0)
            if not np.isfinite(p).all() or p.sum() <= 0:  # every node full (rounding) or underflow: share evenly
                p = np.where(held < share, 1.0, 0.0) if (held < share).any() else np.ones(num_nodes)
            cuts = (np.cumsum(p / p.sum()) * len(idx)).astype(np.int64)[:-1]
            for node, piece in enumerate(np.split(idx, cuts)):
                if len(piece):
                    parts[node].append(piece)
                    held[node] += len(piece)
        if held.min() >= least:
            return _finish(np.concatenate(p) for p in parts)
    raise DataError(f"the balanced Dirichlet partition (alpha {alpha:g}) left a node with fewer than {least} "
                    f"samples in {max_tries} draws; raise data.dirichlet_alpha or use fewer nodes")


def holdout(strata: np.ndarray | None, n: int, fraction: float, rng: np.random.Generator
            ) -> tuple[np.ndarray, np.ndarray]:
    """Split ``n`` training samples into (kept, held out): ``round(fraction * count)`` samples of every
    stratum (a class, or a natural group; ``strata=None``: the whole set is one stratum) drawn at random, so
    the held-out set has the training set's proportions. Both are sorted index arrays.

    >>> kept, held = holdout(np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1]), 10, 0.5, np.random.default_rng(0))
    >>> len(held), sorted(np.bincount(np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])[held]).tolist())
    (5, [2, 3])
    """
    if not 0 <= fraction < 1:
        raise DataError(f"the held-out fraction must be in [0, 1), got {fraction}")
    strata = np.zeros(n, dtype=np.int64) if strata is None else np.asarray(strata)
    held = []
    for s in np.unique(strata):
        members = rng.permutation(np.flatnonzero(strata == s))
        held.append(members[: int(np.floor(fraction * len(members) + 0.5))])
    held_out = np.sort(np.concatenate(held)) if held else np.zeros(0, dtype=np.int64)
    kept = np.setdiff1d(np.arange(n), held_out, assume_unique=True)
    return kept.astype(np.int64), held_out.astype(np.int64)


def natural(groups: np.ndarray, num_nodes: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Whole natural groups (writers, roles, users) per node, sizes balanced.

    Groups are dealt largest first (ties in random order), each to the node holding the fewest samples so
    far (ties between nodes at random): the greedy "longest processing time" rule, which keeps node sizes
    within one group size of each other.  A group is never split.
    """
    groups = np.asarray(groups)
    if groups.ndim != 1:
        raise DataError(f"groups must be a 1-d array of group ids, got shape {groups.shape}")
    num_nodes = _check(len(groups), num_nodes)
    ids, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    if len(ids) < num_nodes:
        raise DataError(
            f"cannot give each of {num_nodes} nodes a whole group: the dataset has only {len(ids)} groups "
            "(writers / roles / users); use fewer nodes or another partition"
        )
    shuffled = rng.permutation(len(ids))
    order = shuffled[np.argsort(-counts[shuffled], kind="stable")]
    # heap of (samples held, random tie-break rank, node)
    heap = [(0, int(r), node) for node, r in enumerate(rng.permutation(num_nodes))]
    heapq.heapify(heap)
    owner = np.empty(len(ids), dtype=np.int64)
    for g in order:
        held, rank, node = heapq.heappop(heap)
        owner[g] = node
        heapq.heappush(heap, (held + int(counts[g]), rank, node))
    sample_owner = owner[inverse.reshape(-1)]
    sort = np.argsort(sample_owner, kind="stable")
    bounds = np.cumsum(np.bincount(sample_owner, minlength=num_nodes))[:-1]
    return _finish(np.split(sort, bounds))


PARTITIONS: dict[str, Callable[..., list[np.ndarray]]] = {
    "iid": iid,
    "shards": shards,
    "dirichlet": dirichlet,
    "dirichlet-balanced": dirichlet_balanced,
    "natural": natural,
}


def partition(
    kind: str,
    dataset,
    num_nodes: int,
    rng: np.random.Generator,
    *,
    shards_per_node: int = 2,
    dirichlet_alpha: float = 0.5,
    among: np.ndarray | None = None,
) -> list[np.ndarray]:
    """Partition ``dataset``'s training set by ``kind`` (one of :data:`PARTITIONS`).

    ``among`` restricts the partition to those training samples (what is left after a validation split);
    the returned indices are into the whole training set. ``natural`` needs ``dataset.train_groups``.
    ``shards`` and the two Dirichlet partitions skew class labels; asked of a regression dataset (MovieLens)
    they fall back, with a warning, to ``natural`` when it has groups (users), else to ``iid``.
    """
    if kind not in PARTITIONS:
        raise DataError(f"unknown partition {kind!r}; valid: {', '.join(PARTITIONS)}")
    labels = dataset.train_y.numpy() if hasattr(dataset.train_y, "numpy") else np.asarray(dataset.train_y)
    groups = dataset.train_groups
    if among is not None:
        labels = labels[among]
        groups = None if groups is None else np.asarray(groups)[among]
    parts = _partition(kind, dataset, labels, groups, num_nodes, rng, shards_per_node=shards_per_node,
                       dirichlet_alpha=dirichlet_alpha)
    return parts if among is None else [np.asarray(among, dtype=np.int64)[p] for p in parts]


def _partition(kind, dataset, labels, groups, num_nodes, rng, *, shards_per_node, dirichlet_alpha):
    if kind == "natural":
        if groups is None:
            raise DataError(
                f"dataset {dataset.name!r} has no natural groups (writers / roles / users); "
                "use iid, shards or dirichlet"
            )
        return natural(groups, num_nodes, rng)
    if kind in ("shards", "dirichlet", "dirichlet-balanced") and dataset.task != "classification":
        fallback = "natural" if groups is not None else "iid"
        warnings.warn(
            f"the {kind} partition skews class labels, but {dataset.name!r} is a {dataset.task} dataset: "
            f"partitioning it {fallback} instead (set data.partition to natural or iid to silence this)",
            stacklevel=3,
        )
        kind = fallback
        if kind == "natural":
            return natural(groups, num_nodes, rng)
    if kind == "iid":
        return iid(labels, num_nodes, rng)
    if kind == "shards":
        return shards(labels, num_nodes, rng, shards_per_node=shards_per_node)
    if kind == "dirichlet-balanced":
        return dirichlet_balanced(labels, num_nodes, rng, alpha=dirichlet_alpha)
    return dirichlet(labels, num_nodes, rng, alpha=dirichlet_alpha)
