"""Partitioners: disjoint, covering, non-empty, seeded; label skew of shards / Dirichlet; whole groups."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jwins.data import (PARTITIONS, Dataset, dirichlet, dirichlet_balanced, holdout, iid, natural, partition,
                        shards)
from jwins.errors import DataError


def rng(seed=0):
    return np.random.default_rng(seed)


def call(kind, labels, num_nodes, seed=0):
    if kind == "shards":
        return shards(labels, num_nodes, rng(seed), shards_per_node=2)
    if kind == "dirichlet":
        return dirichlet(labels, num_nodes, rng(seed), alpha=0.3)
    if kind == "natural":
        return natural(labels, num_nodes, rng(seed))
    return iid(labels, num_nodes, rng(seed))


def assert_valid(parts, n, num_nodes):
    assert len(parts) == num_nodes
    for p in parts:
        assert p.dtype == np.int64
        assert len(p) > 0
        assert np.all(np.diff(p) > 0)  # sorted, no duplicates within a node
    together = np.concatenate(parts)
    assert len(together) == n  # disjoint ...
    assert np.array_equal(np.sort(together), np.arange(n))  # ... and covering


@st.composite
def problems(draw, kinds=("iid", "shards", "dirichlet", "natural")):
    kind = draw(st.sampled_from(kinds))
    n = draw(st.integers(1, 300))
    classes = draw(st.integers(1, 12))
    labels = np.asarray(draw(st.lists(st.integers(0, classes - 1), min_size=n, max_size=n)), dtype=np.int64)
    limit = n if kind in ("iid", "dirichlet") else (n // 2 if kind == "shards" else len(np.unique(labels)))
    if limit < 1:
        labels = np.zeros(2, dtype=np.int64)
        limit = 1
    num_nodes = draw(st.integers(1, min(limit, 40)))
    return kind, labels, num_nodes, draw(st.integers(0, 2**32 - 1))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_disjoint_covering_nonempty_and_seeded(problem):
    kind, labels, num_nodes, seed = problem
    parts = call(kind, labels, num_nodes, seed)
    assert_valid(parts, len(labels), num_nodes)
    again = call(kind, labels, num_nodes, seed)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again))


@pytest.mark.parametrize("kind", ["iid", "shards", "dirichlet", "natural"])
def test_different_seeds_give_different_partitions(kind):
    labels = np.repeat(np.arange(10), 50)  # as groups for "natural": 10 groups of 50
    labels = labels if kind != "natural" else np.arange(500) % 40
    a = call(kind, labels, 8, seed=1)
    b = call(kind, labels, 8, seed=2)
    assert any(not np.array_equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("kind", ["iid", "shards", "dirichlet"])
def test_more_nodes_than_samples_names_the_numbers(kind):
    with pytest.raises(DataError, match=r"5 nodes.*only 3 samples|5 nodes.*3 samples"):
        call(kind, np.zeros(3, dtype=np.int64), 5)


def test_bad_num_nodes():
    for bad in (0, -1, 2.5):
        with pytest.raises(DataError, match="num_nodes"):
            iid(np.zeros(10), bad, rng())


def test_iid_sizes_balanced():
    parts = iid(np.zeros(103), 10, rng())
    assert sorted(len(p) for p in parts) == [10] * 7 + [11] * 3


def test_shards_label_skew_two_classes_per_node():
    # 10 classes x 60 samples, label-sorted; 10 nodes x 2 shards of 30: every shard is one class.
    labels = np.repeat(np.arange(10), 60)
    for seed in range(5):
        parts = shards(labels, 10, rng(seed), shards_per_node=2)
        assert_valid(parts, 600, 10)
        for p in parts:
            assert len(np.unique(labels[p])) <= 2


def test_shards_label_skew_bound_when_unaligned():
    # Unequal classes: a shard no bigger than the smallest class spans at most 2 classes.
    labels = np.concatenate([np.full(k, c) for c, k in enumerate([57, 61, 70, 49, 66, 80, 52, 58, 63, 75])])
    rng(0).shuffle(labels)  # sorting is the partitioner's job
    parts = shards(labels, 12, rng(3), shards_per_node=2)
    assert_valid(parts, len(labels), 12)
    counts = [len(np.unique(labels[p])) for p in parts]
    assert max(counts) <= 4
    assert np.mean(counts) <= 3


def test_shards_drop_nothing_and_check_shard_count():
    labels = np.arange(101) % 7
    parts = shards(labels, 5, rng(), shards_per_node=3)
    assert_valid(parts, 101, 5)
    with pytest.raises(DataError, match="20 non-empty shards"):
        shards(np.zeros(19), 10, rng(), shards_per_node=2)
    with pytest.raises(DataError, match="shards_per_node"):
        shards(np.zeros(19), 2, rng(), shards_per_node=0)


def _skew(parts, labels, classes):
    """Mean over nodes of the largest class share on the node (1 = single-class nodes)."""
    shares = [np.bincount(labels[p], minlength=classes).max() / len(p) for p in parts]
    return float(np.mean(shares))


def test_dirichlet_small_alpha_is_more_skewed():
    labels = np.repeat(np.arange(10), 200)
    small = np.mean([_skew(dirichlet(labels, 20, rng(s), alpha=0.05), labels, 10) for s in range(5)])
    large = np.mean([_skew(dirichlet(labels, 20, rng(s), alpha=100.0), labels, 10) for s in range(5)])
    assert small > 0.6 > 0.25 > large


def test_dirichlet_fills_empty_nodes():
    labels = np.repeat(np.arange(2), 30)  # tiny alpha, 2 classes, 25 nodes: most nodes would be empty
    parts = dirichlet(labels, 25, rng(1), alpha=0.01)
    assert_valid(parts, 60, 25)


def test_dirichlet_bad_alpha():
    for bad in (0, -1, float("nan")):
        with pytest.raises(DataError, match="alpha"):
            dirichlet(np.zeros(10), 2, rng(), alpha=bad)


def test_natural_keeps_groups_whole_and_balances():
    r = rng(7)
    sizes = r.integers(1, 60, size=50)
    groups = np.repeat(np.arange(50) * 3 + 1000, sizes)  # arbitrary ids
    r.shuffle(groups)
    parts = natural(groups, 6, rng(0))
    assert_valid(parts, len(groups), 6)
    owners = {}
    for node, p in enumerate(parts):
        for g in np.unique(groups[p]):
            assert owners.setdefault(g, node) == node
    loads = [len(p) for p in parts]
    assert max(loads) - min(loads) <= sizes.max()


def test_natural_needs_enough_groups():
    with pytest.raises(DataError, match=r"5 nodes.*only 3 groups"):
        natural(np.array([0, 0, 1, 1, 2, 2]), 5, rng())


def make_dataset(task="classification", groups=True, n=60):
    y = torch.arange(n) % 3 if task == "classification" else torch.rand(n)
    return Dataset(
        name="toy", train_x=torch.zeros(n, 2), train_y=y, test_x=torch.zeros(4, 2), test_y=y[:4],
        task=task, num_classes=3 if task == "classification" else 0, input_shape=(2,),
        train_groups=(np.arange(n) % 6).astype(np.int64) if groups else None,
    )


@pytest.mark.parametrize("kind", sorted(PARTITIONS))
def test_partition_dispatch(kind):
    parts = partition(kind, make_dataset(), 3, rng(), shards_per_node=2, dirichlet_alpha=1.0)
    assert_valid(parts, 60, 3)


def test_partition_errors():
    with pytest.raises(DataError, match="valid: iid, shards, dirichlet, dirichlet-balanced, natural"):
        partition("bogus", make_dataset(), 3, rng())
    with pytest.raises(DataError, match="no natural groups"):
        partition("natural", make_dataset(groups=False), 3, rng())
    reg = make_dataset("regression")
    assert_valid(partition("iid", reg, 3, rng()), 60, 3)
    natural_parts = partition("natural", reg, 3, rng())
    for kind in ("shards", "dirichlet", "dirichlet-balanced"):  # label skew means nothing for ratings: users (groups), else iid
        with pytest.warns(UserWarning, match=f"{kind} partition skews class labels.*natural instead"):
            parts = partition(kind, reg, 3, rng())
        assert all(np.array_equal(a, b) for a, b in zip(parts, natural_parts))
        with pytest.warns(UserWarning, match="iid instead"):
            parts = partition(kind, make_dataset("regression", groups=False), 3, rng())
        assert_valid(parts, 60, 3)


# ------------------------------------------------------------------------ the reference's Dirichlet, held out


def _reference_dirichlet(labels, num_nodes, seed, alpha, least):
    """The reference's DirichletDataPartitioner as ../shared/reference/algorithms.md describes it, written out
    node by node with plain lists (the slow twin of jwins.data.dirichlet_balanced)."""
    generator = np.random.default_rng(seed)
    n = len(labels)
    while True:
        nodes = [[] for _ in range(num_nodes)]
        for c in sorted(set(labels.tolist())):
            ids = generator.permutation([i for i in range(n) if labels[i] == c])
            p = generator.dirichlet([alpha] * num_nodes)
            p = [p[j] if len(nodes[j]) < n / num_nodes else 0.0 for j in range(num_nodes)]
            total = sum(p)
            cumulative, cuts = 0.0, []
            for j in range(num_nodes - 1):
                cumulative += p[j] / total
                cuts.append(int(cumulative * len(ids)))
            bounds = [0, *cuts, len(ids)]
            for j in range(num_nodes):
                nodes[j] += [int(i) for i in ids[bounds[j]:bounds[j + 1]]]
        if min(len(x) for x in nodes) >= least:
            return [sorted(x) for x in nodes]


@pytest.mark.parametrize("alpha,num_nodes", [(1.0, 12), (0.3, 7), (5.0, 20)])
def test_balanced_dirichlet_is_the_reference_partition(alpha, num_nodes):
    labels = rng(4).integers(0, 10, size=1500)
    ours = dirichlet_balanced(labels, num_nodes, rng(11), alpha=alpha)
    assert [p.tolist() for p in ours] == _reference_dirichlet(labels, num_nodes, 11, alpha, 10)
    assert_valid(ours, len(labels), num_nodes)
    assert min(len(p) for p in ours) >= 10  # at least one sample per class on average, never fewer than K


def test_balanced_dirichlet_sizes_are_near_equal_and_skewed_labels_remain():
    labels = rng(1).integers(0, 10, size=6000)
    balanced = dirichlet_balanced(labels, 96, rng(0), alpha=1.0)
    plain = dirichlet(labels, 96, rng(0), alpha=1.0)
    spread = (lambda parts: np.std([len(p) for p in parts]) / np.mean([len(p) for p in parts]))
    assert spread(balanced) < 0.75 * spread(plain)  # 0.21 against 0.33 here
    classes = [len(np.unique(labels[p])) for p in balanced]
    assert np.mean(classes) < 10  # still label-skewed


def test_balanced_dirichlet_names_the_numbers_when_it_cannot():
    with pytest.raises(DataError, match="cannot give each of 30 nodes at least 10 samples: only 200 samples"):
        dirichlet_balanced(rng(0).integers(0, 10, size=200), 30, rng(0))


def test_holdout_is_stratified_and_seeded():
    labels = np.repeat([0, 1, 2], [100, 50, 10])
    kept, held = holdout(labels, len(labels), 0.1, rng(3))
    assert np.bincount(labels[held]).tolist() == [10, 5, 1]  # round(0.1 * count) of every class
    assert np.array_equal(np.sort(np.concatenate([kept, held])), np.arange(len(labels)))
    assert np.array_equal(held, holdout(labels, len(labels), 0.1, rng(3))[1])
    assert not np.array_equal(held, holdout(labels, len(labels), 0.1, rng(4))[1])
    assert len(holdout(None, 37, 0.2, rng(0))[1]) == 7
    with pytest.raises(DataError, match=r"held-out fraction must be in \[0, 1\)"):
        holdout(labels, len(labels), 1.0, rng(0))


def test_partition_among_the_kept_samples_returns_whole_set_indices():
    ds = make_dataset(n=100)
    kept, held = holdout(ds.train_y.numpy(), 100, 0.2, rng(0))
    parts = partition("shards", ds, 5, rng(1), among=kept)
    together = np.sort(np.concatenate(parts))
    assert np.array_equal(together, kept) and not set(together.tolist()) & set(held.tolist())
