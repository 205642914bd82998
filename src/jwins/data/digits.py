"""scikit-learn's 8x8 digits (1797 images), read from the copy scikit-learn ships; nothing to fetch."""
from __future__ import annotations

import gzip
import os
import zlib

import numpy as np

from ..errors import DataError
from .dataset import Dataset, DatasetSpec
from .files import _SPLIT_FRACTION, _fixed_rng, _image_dataset, _sklearn_data_dir, check_max_samples

__all__ = ["DIGITS"]

# All 1797 sklearn digits, pixels / 16.
_NORMALIZATION = ((0.3053,), (0.3760,))


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The 1797 8x8 digits: read straight from scikit-learn's digits.csv.gz (64 pixels 0..16, then the label),
    the file ``sklearn.datasets.load_digits`` reads; through load_digits itself if that file is not there."""
    path = _sklearn_data_dir() / "digits.csv.gz"
    if path.is_file():
        try:
            with gzip.open(path, "rt") as fh:
                table = np.loadtxt(fh, delimiter=",", dtype=np.float64, ndmin=2)
        except (OSError, EOFError, ValueError, zlib.error) as e:
            raise DataError(f"{path}: cannot be read ({e})") from e
        if table.shape != (1797, 65) or table[:, :64].min() < 0 or table[:, :64].max() > 16:
            raise DataError(f"{path}: expected 1797 rows of 64 pixels in 0..16 and a label, got {table.shape}")
        return table[:, :64], table[:, 64]
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.data, d.target


def load_digits(root: str | os.PathLike = "", *, max_samples: int = 0) -> Dataset:
    """The digits with a fixed stratified 80/20 split; ``root`` is not used (scikit-learn holds the data)."""
    max_samples = check_max_samples(max_samples)
    pixels, target = _digits_arrays()
    x = pixels.astype(np.float32).reshape(-1, 1, 8, 8)
    y = target.astype(np.int64)
    # Fixed stratified 80/20 split: in each class a fixed permutation, the first 20 % (rounded) to test.
    rng = _fixed_rng("digits", "split")
    test_mask = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        k = int(np.floor(len(idx) * (1 - _SPLIT_FRACTION) + 0.5))
        test_mask[rng.permutation(idx)[:k]] = True
    return _image_dataset(
        "digits", _sklearn_data_dir(), x[~test_mask], y[~test_mask], x[test_mask], y[test_mask],
        10, 16.0, max_samples, normalization=_NORMALIZATION,
    )


def locate_digits(root: str | os.PathLike = ""):
    """Found where scikit-learn keeps its data (``digits.csv.gz``); ``root`` is not used."""
    try:
        where = _sklearn_data_dir()
    except DataError:
        return None, []
    if (where / "digits.csv.gz").is_file():
        return (where, "sklearn"), []
    return None, [(where, "no digits.csv.gz")]


DIGITS = DatasetSpec(
    name="digits",
    load=load_digits,
    default_model="small-cnn",
    locate=locate_digits,
    how_to_get="ships with scikit-learn (the data of sklearn.datasets.load_digits); nothing to fetch",
    normalization=_NORMALIZATION,
)
