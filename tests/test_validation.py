"""data.validation: a stratified split held out of the training set before partitioning, that no node trains on,
evaluated beside the test set (metrics.jsonl, summary, TensorBoard), resumed exactly."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from helpers import assert_resume_continues
from jwins import config
from jwins.data import Dataset
from jwins.errors import ConfigError
from jwins.experiment import run
from jwins.world import build_world, validation_split

QUICK = ["nodes=8", "topology.degree=3", "data.max_samples=600", "wire.value_codec=float32", "eval.every=2"]


def _cfg(*extra: str) -> config.Config:
    return config.load(overrides=[*QUICK, *extra])


def test_no_node_trains_on_the_validation_split():
    world, _ = build_world(_cfg("data.validation=0.2"), list(range(8)))
    held = set(world.validation.tolist())
    trained = np.concatenate(world.parts)
    assert not held & set(trained.tolist())
    assert sorted([*held, *trained.tolist()]) == list(range(world.dataset.num_train))
    labels = world.dataset.train_y.numpy()
    per_class = np.bincount(labels, minlength=10)
    assert np.bincount(labels[sorted(held)], minlength=10).tolist() == \
        [int(np.floor(0.2 * c + 0.5)) for c in per_class]  # stratified: round(0.2 * count) of each class
    none, _ = build_world(_cfg(), list(range(8)))
    assert len(none.validation) == 0 and len(np.concatenate(none.parts)) == none.dataset.num_train


def test_natural_partitions_hold_out_a_share_of_every_group():
    n = 200
    groups = np.repeat(np.arange(10), 20)
    data = Dataset.from_arrays("toy", torch.randn(n, 3), torch.arange(n) % 2, torch.randn(10, 3),
                               torch.arange(10) % 2, train_groups=groups)
    kept, held = validation_split(_cfg("data.validation=0.25", "data.partition=natural"), data)
    assert np.bincount(groups[held]).tolist() == [5] * 10  # a quarter of every writer / user
    assert len(kept) == 150


def test_validation_metrics_sit_beside_the_test_metrics(tmp_path):
    result = run(_cfg("rounds=5", "data.validation=0.2", "eval.validation_every=1", "log.tensorboard=true"),
                 run_dir=tmp_path / "r")
    ms = result.metrics
    assert [m["round"] for m in ms if "val_accuracy" in m] == [1, 2, 3, 4, 5]
    assert [m["round"] for m in ms if "test_accuracy" in m] == [2, 4, 5]
    for m in ms:
        if "val_accuracy" in m:
            assert m["val_accuracy_min"] <= m["val_accuracy"] <= m["val_accuracy_max"] and m["val_loss"] > 0
    assert result.summary["final_validation"]["mean"] == ms[-1]["val_accuracy"]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "r" / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("val_accuracy")] == [1, 2, 3, 4, 5]
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["final_validation"]["min"] == \
        ms[-1]["val_accuracy_min"]


def test_the_sampled_validation_set_comes_from_the_seed_and_final_full_leaves_it_sampled():
    cfg = _cfg("data.validation=0.2", "eval.validation_samples=30")
    a, _ = build_world(cfg, list(range(8)))
    b, _ = build_world(cfg.replace(sharing=cfg.sharing.__class__(algorithm="jwins")), list(range(8)))
    assert len(a.val_y) == 30 and torch.equal(a.val_x, b.val_x)
    common = ["rounds=2", "data.validation=0.2", "eval.validation_samples=30", "eval.nodes=2"]
    full = run(_cfg(*common, "eval.final_full=true"), write=False).metrics[-1]
    sampled = run(_cfg(*common), write=False).metrics[-1]
    # eval.final_full is about the test set: every node, every test sample; validation stays what selection reads
    assert full["val_accuracy"] == sampled["val_accuracy"] and full["val_loss"] == sampled["val_loss"]
    assert full["test_accuracy"] != sampled["test_accuracy"] or full["test_loss"] != sampled["test_loss"]


def test_a_resumed_run_gives_the_same_validation_metrics(tmp_path):
    assert_resume_continues(_cfg("rounds=6", "data.validation=0.1", "checkpoint.every=1", "eval.validation_every=1"),
                            tmp_path, 4)


def test_bad_validation_settings_are_one_line():
    with pytest.raises(ConfigError, match=r"data.validation = 0.9 must be in \[0, 0.5\]"):
        _cfg("data.validation=0.9")
    with pytest.raises(ConfigError, match="eval.validation_every = -1 must be >= 0"):
        _cfg("eval.validation_every=-1")
