"""A tabular dataset, a dataset plugin for jwins: the Wisconsin breast cancer data that ships with scikit-learn
(569 samples, 30 features, 2 classes), standardised, with a fixed 80/20 split.

A dataset factory is called with ``root`` and ``max_samples`` if it takes them, and the ``[data.options]`` table;
it returns a :class:`jwins.data.Dataset` (``Dataset.from_arrays`` builds one from numpy arrays and infers the
rest). To read your own files, load them here instead; pass ``train_groups`` (one id per training sample: a
user, a writer, a hospital) to allow ``data.partition = "natural"``. A :class:`jwins.data.DatasetSpec` can also
name the model to use with ``model.name = "auto"``, as ``BREAST_CANCER`` does below.
"""
from __future__ import annotations

import numpy as np

from jwins.data import Dataset, DatasetSpec


def breast_cancer(*, max_samples: int = 0, test_fraction: float = 0.2, split_seed: int = 0) -> Dataset:
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    order = np.random.default_rng(split_seed).permutation(len(y))
    cut = int(round(len(y) * (1 - test_fraction)))
    train, test = order[:cut], order[cut:]
    if max_samples:
        train, test = train[:max_samples], test[:max_samples]
    mean, std = x[train].mean(0), x[train].std(0) + 1e-12  # statistics of the training part only
    x = ((x - mean) / std).astype(np.float32)
    return Dataset.from_arrays("breast-cancer", x[train], y[train], x[test], y[test], num_classes=2)


BREAST_CANCER = DatasetSpec(name="breast-cancer", load=lambda root="", *, max_samples=0: breast_cancer(
    max_samples=max_samples), default_model="mlp:mlp", how_to_get="ships with scikit-learn")
