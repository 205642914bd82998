"""MovieLens ratings (``ratings.csv`` of ml-latest-small / ml-25m, ``u.data`` of ml-100k, ``ratings.dat`` of
ml-1m) for matrix factorisation, with a fixed per-user 80/20 split."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .dataset import Dataset, DatasetSpec
from .files import (
    _SPLIT_FRACTION,
    Located,
    _fixed_rng,
    _subset,
    _take,
    check_max_samples,
    download_hint,
    locate_or_raise,
    searcher,
)

__all__ = ["MOVIELENS"]

_RATINGS = (("ratings.csv", "csv"), ("u.data", "u.data"), ("ratings.dat", "ratings.dat"))


def _locate_movielens(d: Path) -> Located | str:
    subs = [d, d / "ml-latest-small", d / "ml-100k", d / "ml-1m"]
    if d.is_dir():
        subs += sorted(p for p in d.glob("ml-*") if p.is_dir() and p not in subs)
    for sub in subs:
        for fname, fmt in _RATINGS:
            if (sub / fname).is_file():
                return sub / fname, fmt
    if not d.is_dir():
        return "does not exist"
    return "no ratings.csv, u.data or ratings.dat here (nor in ml-*/)"


def _read_ratings(path: Path, fmt: str) -> np.ndarray:
    import io
    import warnings

    try:
        if fmt == "csv":
            with open(path, encoding="utf-8") as fh:
                header = fh.readline().strip().lower().split(",")
            if header[:3] != ["userid", "movieid", "rating"]:
                raise DataError(
                    f"{path}: unexpected header {','.join(header)!r}, expected userId,movieId,rating,timestamp"
                )
            source, kw = path, {"delimiter": ",", "skiprows": 1}
        elif fmt == "u.data":
            source, kw = path, {"delimiter": "\t"}
        else:  # ratings.dat, "::"-separated
            source, kw = io.StringIO(path.read_text(encoding="latin-1").replace("::", "\t")), {"delimiter": "\t"}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # empty-file warning; handled below
            table = np.loadtxt(source, usecols=(0, 1, 2), dtype=np.float64, ndmin=2, **kw)
    except DataError:
        raise
    except (OSError, UnicodeDecodeError, ValueError, IndexError) as e:
        raise DataError(f"{path}: malformed ratings file ({e})") from e
    if len(table) == 0:
        raise DataError(f"{path}: no ratings")
    ids = table[:, :2]
    if not np.all(np.isfinite(table)) or np.any(ids != np.floor(ids)) or np.any(ids < 0):
        raise DataError(f"{path}: user and item ids must be non-negative integers and ratings finite numbers")
    return table


def _load_movielens(path: Path, fmt: str, max_samples: int) -> Dataset:
    table = _read_ratings(path, fmt)
    users_raw, items_raw = table[:, 0].astype(np.int64), table[:, 1].astype(np.int64)
    _, users = np.unique(users_raw, return_inverse=True)
    _, items = np.unique(items_raw, return_inverse=True)
    users, items = users.reshape(-1), items.reshape(-1)
    num_users, num_items = int(users.max()) + 1, int(items.max()) + 1
    ratings = table[:, 2].astype(np.float32)
    # Per-user 80/20 split: each user's ratings in a fixed random order, the first round(0.8 n) (at least one)
    # train, the rest test.
    rng = _fixed_rng("movielens", "split")
    order = np.lexsort((rng.random(len(users)), users))
    counts = np.bincount(users, minlength=num_users)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    n_train = np.maximum(1, np.floor(counts * _SPLIT_FRACTION + 0.5).astype(np.int64))
    rank = np.arange(len(order)) - starts[users[order]]
    is_train = np.zeros(len(users), dtype=bool)
    is_train[order] = rank < n_train[users[order]]
    tr, te = np.flatnonzero(is_train), np.flatnonzero(~is_train)
    tr = _take(tr, _subset(len(tr), max_samples, "movielens", "train"))
    te = _take(te, _subset(len(te), max_samples, "movielens", "test"))
    x = np.stack([users, items], axis=1).astype(np.int64)
    return Dataset(
        name="movielens",
        train_x=torch.from_numpy(x[tr]),
        train_y=torch.from_numpy(ratings[tr]),
        test_x=torch.from_numpy(x[te]),
        test_y=torch.from_numpy(ratings[te]),
        task="regression",
        num_classes=0,
        input_shape=(2,),
        train_groups=users[tr].astype(np.int64),
        meta={"root": str(path.parent), "file": str(path), "format": fmt, "num_users": num_users,
              "num_items": num_items, "rating_min": float(ratings.min()), "rating_max": float(ratings.max()),
              "mean_rating": float(ratings[tr].mean()) if len(tr) else 0.0},
    )


def load_movielens(root: str | os.PathLike = "", *, max_samples: int = 0) -> Dataset:
    max_samples = check_max_samples(max_samples)
    path, fmt = locate_or_raise(MOVIELENS, root)
    return _load_movielens(path, fmt, max_samples)


MOVIELENS = DatasetSpec(
    name="movielens",
    load=load_movielens,
    default_model="mf",
    locate=searcher("movielens", _locate_movielens),
    how_to_get=download_hint("movielens"),
)
