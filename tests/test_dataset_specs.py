"""Every built-in dataset is one registered DatasetSpec; Dataset.from_arrays builds and checks a Dataset."""
from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

import jwins.data as data
from jwins.data import Dataset, DatasetSpec, describe, how_to_get, load
from jwins.errors import DataError
from jwins.registry import DATASETS, MODELS, register_dataset

BUILTIN = ("digits", "mnist", "fashion-mnist", "cifar10", "cifar100", "femnist", "celeba", "shakespeare", "movielens")
# The model each dataset trained with by default before the specs existed (jwins.models.AUTO).
DEFAULT_MODELS = {"digits": "small-cnn", "mnist": "small-cnn", "fashion-mnist": "small-cnn", "cifar10": "lenet",
                  "cifar100": "lenet", "femnist": "leaf-cnn", "celeba": "celeba-cnn", "shakespeare": "char-lstm",
                  "movielens": "mf"}
IMAGES = ("digits", "mnist", "fashion-mnist", "cifar10", "cifar100", "femnist", "celeba")


@pytest.fixture
def scratch_registry(monkeypatch):
    """Registrations made in a test are undone after it."""
    for attr in ("_entries", "_aliases", "_loaded"):
        monkeypatch.setattr(DATASETS, attr, dict(getattr(DATASETS, attr)))


def test_builtins_are_registered_in_order():
    assert tuple(DATASETS.names()[:len(BUILTIN)]) == BUILTIN
    assert data.DATASETS == tuple(DATASETS.names())


@pytest.mark.parametrize("name", BUILTIN)
def test_builtin_spec(name):
    spec = DATASETS.load(name)
    assert isinstance(spec, DatasetSpec)
    assert spec.name == name
    assert spec.default_model in MODELS.names() and spec.default_model == DEFAULT_MODELS[name]
    assert isinstance(spec.how_to_get, str) and spec.how_to_get.strip() and "\n" not in spec.how_to_get
    assert how_to_get(name) == spec.how_to_get
    params = inspect.signature(spec.load).parameters
    assert list(params) == ["root", "max_samples"] and params["max_samples"].kind is inspect.Parameter.KEYWORD_ONLY
    assert params["root"].default == "" and params["max_samples"].default == 0
    assert callable(spec.locate)
    if name in IMAGES:
        mean, std = spec.normalization
        assert len(mean) == len(std) >= 1 and all(s > 0 for s in std)
        assert data.NORMALIZATION[name] == spec.normalization
    else:
        assert spec.normalization is None and name not in data.NORMALIZATION


def test_normalization_lists_the_image_datasets():
    assert tuple(data.NORMALIZATION) == IMAGES


def test_unknown_names():
    with pytest.raises(DataError, match="unknown dataset 'imagenet'; known datasets: digits, mnist"):
        data.canonical_name("imagenet")
    with pytest.raises(DataError, match="unknown dataset"):
        how_to_get("imagenet")
    assert data.canonical_name("FMNIST") == "fashion-mnist" and data.canonical_name("movie_lens") == "movielens"


def test_a_registered_spec_is_loaded_and_described(scratch_registry):
    calls = []

    def load_toy(root="", *, max_samples=0):
        calls.append((root, max_samples))
        x = np.arange(24, dtype=np.float32).reshape(6, 4)
        return Dataset.from_arrays("toy", x[:4], [0, 1, 2, 1], x[4:], [2, 0])

    register_dataset("toy", DatasetSpec(name="toy", load=load_toy, default_model="small-cnn",
                                        how_to_get="make it up"))
    d = load("TOY", "somewhere", max_samples=3)
    assert calls == [("somewhere", 3)] and d.num_classes == 3 and d.input_shape == (4,)
    assert "toy" in data.DATASETS and how_to_get("toy") == "make it up"
    row = {r["name"]: r for r in describe()}["toy"]
    assert row == {"name": "toy", "found": False, "path": None, "format": None, "searched": [], "how": "make it up"}
    with pytest.raises(DataError, match="max_samples must be >= 0"):
        load("toy", max_samples=-1)


# ---------------------------------------------------------------------------------------------- from_arrays


def test_from_arrays_infers_shapes_and_classes():
    r = np.random.default_rng(0)
    d = Dataset.from_arrays("imgs", r.random((10, 1, 5, 5)), np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0]),
                            r.random((3, 1, 5, 5)), np.array([4, 0, 1]), train_groups=[0, 0, 1, 1, 2, 2, 3, 3, 4, 4])
    assert d.name == "imgs" and d.task == "classification"
    assert d.input_shape == (1, 5, 5) and d.num_classes == 5  # the largest label of train and test, plus one
    assert d.train_x.dtype == torch.float32 and d.test_x.dtype == torch.float32
    assert d.train_y.dtype == torch.int64 and d.test_y.tolist() == [4, 0, 1]
    assert d.num_train == 10 and d.num_test == 3
    assert d.train_groups.dtype == np.int64 and d.train_groups.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert d.meta == {}
    assert Dataset.from_arrays("imgs", d.train_x, d.train_y, d.test_x, d.test_y, num_classes=7).num_classes == 7


def test_from_arrays_tensors_tokens_and_regression():
    tokens = torch.randint(0, 80, (6, 8), dtype=torch.int32)
    d = Dataset.from_arrays("text", tokens, torch.tensor([1, 2, 3, 4, 5, 6.0]), tokens[:2], torch.tensor([0, 79]),
                            num_classes=80, meta={"vocab_size": 80})
    assert d.train_x.dtype == torch.int64 and torch.equal(d.train_x, tokens.long())  # ids stay integers
    assert d.train_y.dtype == torch.int64 and d.num_classes == 80 and d.input_shape == (8,)
    assert d.meta == {"vocab_size": 80} and d.train_groups is None
    pairs = np.array([[0, 1], [1, 2], [2, 0]])
    r = Dataset.from_arrays("ratings", pairs, np.array([4.5, 3, 1]), pairs[:1], np.array([2.0]), task="regression")
    assert r.task == "regression" and r.num_classes == 0 and r.input_shape == (2,)
    assert r.train_x.dtype == torch.int64 and r.train_y.dtype == torch.float32 and r.train_y.tolist() == [4.5, 3, 1]


X4, Y4, X2, Y2 = np.zeros((4, 3), np.float32), np.array([0, 1, 1, 0]), np.zeros((2, 3), np.float32), np.array([1, 0])


@pytest.mark.parametrize("args, kwargs, message", [
    ((X4, Y4[:3], X2, Y2), {}, r"train_x has 4 samples but train_y has 3"),
    ((X4, Y4, X2, Y2[:1]), {}, r"test_x has 2 samples but test_y has 1"),
    ((X4, Y4, X2, np.array([1, 2])), {"num_classes": 2}, r"test_y labels must lie in 0\.\.1, found 1\.\.2"),
    ((X4, np.array([0, -1, 1, 0]), X2, Y2), {}, r"train_y labels must lie in 0\.\.1, found -1\.\.1"),
    ((X4, Y4, X2, Y2), {"train_groups": [0, 1, 2]}, r"train_groups must hold one group per training sample \(4\)"),
    ((X4, Y4, X2, Y2), {"train_groups": np.zeros((4, 2), int)}, r"one group per training sample"),
    ((X4, Y4, np.zeros((2, 4), np.float32), Y2), {}, r"train samples have shape \(3,\) but test samples \(4,\)"),
    ((X4, np.array([0, 0.5, 1, 0]), X2, Y2), {}, r"non-integer labels"),
    ((X4, Y4, X2, Y2), {"task": "ranking"}, r"task must be one of classification, regression"),
    ((X4, Y4, X2, Y2), {"num_classes": 0}, r"num_classes must be a positive integer"),
    ((X4[:0], Y4[:0], X2, Y2), {}, r"the training set is empty"),
])
def test_from_arrays_rejects_bad_input_in_one_line(args, kwargs, message):
    with pytest.raises(DataError, match=message) as e:
        Dataset.from_arrays("bad", *args, **kwargs)
    assert "\n" not in str(e.value) and str(e.value).startswith("dataset 'bad': ")


def test_a_users_name_wins_over_a_built_in_alias(scratch_registry):
    """"ml" is an alias of movielens; a user who registers "ml" gets their own dataset, and unregistering "ml"
    removes theirs and leaves movielens (and its alias) as they were."""
    assert DATASETS.canonical("ml") == "movielens"
    mine = DatasetSpec(name="ml", load=lambda root, max_samples: None, default_model="mf")
    register_dataset("ml", mine)
    assert DATASETS.canonical("ml") == "ml" and DATASETS.load("ml") is mine
    assert DATASETS.canonical("movielens") == "movielens"
    DATASETS.unregister("ml")
    assert DATASETS.canonical("ml") == "movielens" and "movielens" in DATASETS.names()
