"""FEMNIST and CelebA in LEAF's json layout (``train/*.json``, ``test/*.json``), and the LEAF json reader."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..errors import DataError
from .dataset import Dataset, DatasetSpec
from .files import (
    Located,
    _GroupIds,
    _image_dataset,
    _labels,
    _subset,
    _take,
    check_max_samples,
    locate_or_raise,
    searcher,
)

__all__ = ["CELEBA", "FEMNIST"]

_LEAF_URL = "https://github.com/TalwalkarLab/leaf"
CELEBA_SIZE = 84


# ----------------------------------------------------------------------------------------------------------
# The LEAF layout (shared with Shakespeare)


def _has_leaf_json(d: Path) -> bool:
    return (
        (d / "train").is_dir()
        and (d / "test").is_dir()
        and any((d / "train").glob("*.json"))
        and any((d / "test").glob("*.json"))
    )


def _locate_leaf(d: Path) -> Path | None:
    for cand in (d, d / "data"):
        if _has_leaf_json(cand):
            return cand
    return None


def _leaf_users(d: Path, split: str):
    """Yield ``(file, user, x, y)`` for every user of every ``d/split/*.json`` file, in sorted file order."""
    files = sorted((d / split).glob("*.json"))
    if not files:
        raise DataError(f"{d / split}: no *.json files")
    for f in files:
        try:
            with open(f, encoding="utf-8") as fh:
                obj = json.load(fh)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DataError(f"{f}: not valid JSON ({e})") from e
        if not isinstance(obj, dict) or not isinstance(obj.get("users"), list) or not isinstance(
            obj.get("user_data"), dict
        ):
            raise DataError(f"{f}: not a LEAF file (expected an object with 'users' and 'user_data')")
        counts = obj.get("num_samples")
        for i, user in enumerate(obj["users"]):
            ud = obj["user_data"].get(user)
            if not isinstance(ud, dict) or not isinstance(ud.get("x"), list) or not isinstance(ud.get("y"), list):
                raise DataError(f"{f}: user {user!r} has no 'x' and 'y' lists in user_data")
            x, y = ud["x"], ud["y"]
            if len(x) != len(y):
                raise DataError(f"{f}: user {user!r} has {len(x)} x but {len(y)} y")
            if isinstance(counts, list) and i < len(counts) and counts[i] != len(y):
                raise DataError(f"{f}: user {user!r}: num_samples says {counts[i]} but user_data has {len(y)}")
            yield f, str(user), x, y


# ----------------------------------------------------------------------------------------------------------
# FEMNIST


def _locate_femnist(d: Path) -> Located | str:
    found = _locate_leaf(d)
    if found is not None:
        return found, "leaf-json"
    return "does not exist" if not d.is_dir() else "no LEAF train/*.json and test/*.json here"


def load_femnist(root: str | os.PathLike = "", *, max_samples: int = 0) -> Dataset:
    max_samples = check_max_samples(max_samples)
    d, _ = locate_or_raise(FEMNIST, root)
    groups = _GroupIds()
    parts = {}
    for split in ("train", "test"):
        xs, ys, gs = [], [], []
        for f, user, x, y in _leaf_users(d, split):
            try:
                xa = np.asarray(x, dtype=np.float32)
                ya = np.asarray(y, dtype=np.int64)
            except (TypeError, ValueError) as e:
                raise DataError(f"{f}: user {user!r}: x must be lists of 784 numbers, y integers ({e})") from e
            if len(x) == 0:
                continue
            if xa.ndim != 2 or xa.shape[1] != 784:
                raise DataError(f"{f}: user {user!r}: each x must have 784 values (28x28), got shape {xa.shape}")
            _labels(ya, 62, f"{f}: user {user!r}")
            xs.append(xa.reshape(-1, 1, 28, 28))
            ys.append(ya)
            gs.append(np.full(len(ya), groups(user), dtype=np.int64))
        if not xs:
            raise DataError(f"{d / split}: no samples")
        parts[split] = (np.concatenate(xs), np.concatenate(ys), np.concatenate(gs))
    (tx, ty, tg), (vx, vy, _) = parts["train"], parts["test"]
    return _image_dataset(
        "femnist", d, tx, ty, vx, vy, 62, 1.0, max_samples, normalization=FEMNIST.normalization, train_groups=tg,
        meta={"groups": groups.names()},
    )


FEMNIST = DatasetSpec(
    name="femnist",
    load=load_femnist,
    default_model="leaf-cnn",
    locate=searcher("femnist", _locate_femnist),
    how_to_get=(
        f"FEMNIST is built with LEAF's scripts ({_LEAF_URL}): in leaf/data/femnist run "
        "`./preprocess.sh -s niid --sf 1.0 -k 0 -t sample` (or --sf 0.05 for the small version), then put "
        "leaf/data/femnist/data/train and .../test (folders of *.json) under DIR/femnist and "
        "add --set data.root=DIR (data.root = \"DIR\" under [data] in a config) or JWINS_DATA=DIR; "
        "`jwins data download femnist` prints the full steps"
    ),
    normalization=((0.0,), (1.0,)),  # LEAF's values are already in [0, 1]; kept
)


# ----------------------------------------------------------------------------------------------------------
# CelebA


def _celeba_images(d: Path) -> Path | None:
    for cand in (d / "img_align_celeba", d / "raw" / "img_align_celeba"):
        if cand.is_dir():
            return cand
    return None


def _locate_celeba(d: Path) -> Located | str:
    found = _locate_leaf(d)
    if found is None:
        return "does not exist" if not d.is_dir() else "no LEAF train/*.json and test/*.json here"
    if _celeba_images(found) is None:
        return (
            f"LEAF json files are here but no image folder ({found / 'img_align_celeba'} or "
            f"{found / 'raw' / 'img_align_celeba'})"
        )
    return found, "leaf-json"


def _import_pil():
    try:
        from PIL import Image
    except ImportError as e:
        raise DataError(
            "celeba needs Pillow to decode its JPEG images, and Pillow is not installed: pip install pillow"
        ) from e
    return Image


def load_celeba(root: str | os.PathLike = "", *, max_samples: int = 0) -> Dataset:
    max_samples = check_max_samples(max_samples)
    d, _ = locate_or_raise(CELEBA, root)
    images_dir = _celeba_images(d)
    groups = _GroupIds()
    parts = {}
    for split in ("train", "test"):
        names, ys, gs = [], [], []
        for f, user, x, y in _leaf_users(d, split):
            if not all(isinstance(v, str) for v in x):
                raise DataError(f"{f}: user {user!r}: x must be image file names")
            try:
                ya = np.asarray(y, dtype=np.int64).reshape(-1)
            except (TypeError, ValueError) as e:
                raise DataError(f"{f}: user {user!r}: y must be integers 0/1 ({e})") from e
            _labels(ya, 2, f"{f}: user {user!r}")
            names += x
            ys.append(ya)
            gs.append(np.full(len(ya), groups(user), dtype=np.int64))
        if not names:
            raise DataError(f"{d / split}: no samples")
        parts[split] = (names, np.concatenate(ys), np.concatenate(gs))
    if images_dir is None:
        raise DataError(f"{d}: no image folder img_align_celeba/ or raw/img_align_celeba/")
    Image = _import_pil()

    def decode(names: list[str], idx) -> np.ndarray:
        names = names if idx is None else [names[i] for i in idx]
        out = np.empty((len(names), CELEBA_SIZE, CELEBA_SIZE, 3), dtype=np.uint8)
        for i, n in enumerate(names):
            p = images_dir / n
            try:
                with Image.open(p) as im:
                    out[i] = np.asarray(im.resize((CELEBA_SIZE, CELEBA_SIZE)).convert("RGB"), dtype=np.uint8)
            except FileNotFoundError as e:
                raise DataError(f"{p}: image listed in the LEAF json files is missing") from e
            except Exception as e:  # PIL.UnidentifiedImageError, truncated files, ...
                raise DataError(f"{p}: cannot decode image ({type(e).__name__}: {e})") from e
        return out.transpose(0, 3, 1, 2)

    (tn, ty, tg), (vn, vy, _) = parts["train"], parts["test"]
    tr = _subset(len(ty), max_samples, "celeba", "train")
    te = _subset(len(vy), max_samples, "celeba", "test")
    # Subsets are applied here, before decoding; _image_dataset gets max_samples=0.
    return _image_dataset(
        "celeba", d, decode(tn, tr), _take(ty, tr), decode(vn, te), _take(vy, te), 2, 255.0, 0,
        normalization=CELEBA.normalization, train_groups=_take(tg, tr),
        meta={"groups": groups.names(), "images": str(images_dir)},
    )


CELEBA = DatasetSpec(
    name="celeba",
    load=load_celeba,
    default_model="celeba-cnn",
    locate=searcher("celeba", _locate_celeba),
    how_to_get=(
        f"CelebA is built with LEAF's scripts ({_LEAF_URL}): put img_align_celeba/, identity_CelebA.txt and "
        "list_attr_celeba.txt from the CelebA site into leaf/data/celeba/data/raw, run "
        "`./preprocess.sh -s niid --sf 1.0 -k 5 -t sample` in leaf/data/celeba, then point data.root (or "
        "JWINS_DATA) at a DIR whose DIR/celeba holds train/, test/ and raw/img_align_celeba/ (leaf/data/celeba/data "
        "itself has that layout); `jwins data download celeba` prints the full steps"
    ),
    normalization=((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),  # convention (maps [0, 1] to [-1, 1])
)
