"""The two records of :mod:`jwins.data`: a loaded :class:`Dataset`, and the :class:`DatasetSpec` that says how to
find, load and get one (registered by name in :data:`jwins.registry.DATASETS`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..errors import DataError

__all__ = ["Dataset", "DatasetSpec", "Images"]


class Images:
    """Images held once in their smallest faithful dtype (uint8 pixels) and normalised when read:
    ``images[idx]`` is ``(raw[idx] / scale - mean) / std`` as float32 per channel, bit for bit what a float copy
    of the whole set would hold (the same operations, in the same order), at a quarter of the memory.

    The loop only indexes it, moves it (``to``) and asks its size; anything else a tensor can do (``mean()``,
    ``torch.equal``) works on the whole normalised set, made on the spot.
    """

    dtype = torch.float32

    def __init__(self, raw: torch.Tensor, scale: float, mean, std):
        self.raw, self.scale = raw, float(scale)
        self._mean = torch.as_tensor(mean, dtype=torch.float32).reshape(-1, 1, 1).to(raw.device)
        self._std = torch.as_tensor(std, dtype=torch.float32).reshape(-1, 1, 1).to(raw.device)

    def __getitem__(self, index) -> torch.Tensor:
        t = self.raw[index].to(torch.float32)
        if self.scale != 1.0:
            t.mul_(1.0 / self.scale)
        return t.sub_(self._mean).div_(self._std)

    def __len__(self) -> int:
        return len(self.raw)

    @property
    def shape(self) -> torch.Size:
        return self.raw.shape

    @property
    def device(self) -> torch.device:
        return self.raw.device

    @property
    def ndim(self) -> int:
        return self.raw.ndim

    def dim(self) -> int:
        return self.raw.ndim

    def size(self, dim: int | None = None):
        return self.raw.size() if dim is None else self.raw.size(dim)

    def to(self, device, *args, **kwargs):
        if args or kwargs or not isinstance(device, (str, torch.device)):
            return self[:].to(device, *args, **kwargs)
        return Images(self.raw.to(device), self.scale, self._mean.flatten(), self._std.flatten())

    def element_size(self) -> int:
        return self.raw.element_size()

    def numel(self) -> int:
        return self.raw.numel()

    def __getattr__(self, name: str):
        if name.startswith("_") or name in ("raw", "scale"):
            raise AttributeError(name)
        return getattr(self[:], name)

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        def whole(a):
            return a[:] if isinstance(a, Images) else a
        return func(*[whole(a) for a in args], **{k: whole(v) for k, v in (kwargs or {}).items()})

    def __repr__(self) -> str:
        return f"Images({tuple(self.raw.shape)}, {self.raw.dtype} normalised to float32)"

TASKS = ("classification", "regression")


@dataclass(frozen=True, eq=False)
class Dataset:
    """A dataset held once in memory for all nodes of a run."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    task: str  # "classification" | "regression"
    num_classes: int  # 0 for regression
    input_shape: tuple[int, ...]  # per-sample shape of x
    train_groups: np.ndarray | None = None  # int64 natural owner (writer / role / user) of each training sample
    meta: dict = field(default_factory=dict)

    @property
    def num_train(self) -> int:
        return int(self.train_y.shape[0])

    @property
    def num_test(self) -> int:
        return int(self.test_y.shape[0])

    def __repr__(self) -> str:
        groups = "none" if self.train_groups is None else f"{len(np.unique(self.train_groups))} groups"
        return (
            f"Dataset({self.name!r}, {self.task}, train={self.num_train}, test={self.num_test}, "
            f"input_shape={self.input_shape}, num_classes={self.num_classes}, {groups})"
        )

    @classmethod
    def from_arrays(cls, name: str, train_x: Any, train_y: Any, test_x: Any, test_y: Any, *,
                    task: str = "classification", num_classes: int | None = None, train_groups: Any = None,
                    meta: dict | None = None) -> "Dataset":
        """A Dataset from numpy arrays or torch tensors, checked.

        ``x`` becomes float32, unless it is integer-typed (token or id inputs, kept as int64: pass images as
        floats); ``y`` becomes int64 for classification (its values must be whole numbers) and float32 for
        regression.  ``input_shape`` is ``train_x.shape[1:]``; ``num_classes`` (classification) defaults to the
        largest label plus one.  ``train_groups`` (optional) gives each training sample's natural owner, as
        integers.  Tensors whose type is already right are used as they are (not copied).

        Raises :class:`DataError`, one line naming the problem, when the numbers of x and y differ, train and
        test samples differ in shape, a label lies outside ``0..num_classes-1``, or there is not one group per
        training sample.
        """
        def fail(problem: str) -> DataError:
            return DataError(f"dataset {name!r}: {problem}")

        if not isinstance(name, str) or not name:
            raise DataError(f"a dataset name must be a non-empty string, got {name!r}")
        if task not in TASKS:
            raise fail(f"task must be one of {', '.join(TASKS)}, got {task!r}")
        arrays = {}
        for what, a in (("train_x", train_x), ("train_y", train_y), ("test_x", test_x), ("test_y", test_y)):
            t = _as_tensor(a, what, fail)
            if t.ndim == 0:
                raise fail(f"{what} is a scalar; it needs one row per sample")
            arrays[what] = t
        tx, ty, vx, vy = (arrays[k] for k in ("train_x", "train_y", "test_x", "test_y"))
        for split, x, y in (("train", tx, ty), ("test", vx, vy)):
            if len(x) != len(y):
                raise fail(f"{split}_x has {len(x)} samples but {split}_y has {len(y)}")
        if len(tx) == 0:
            raise fail("the training set is empty")
        if tuple(tx.shape[1:]) != tuple(vx.shape[1:]):
            raise fail(f"train samples have shape {tuple(tx.shape[1:])} but test samples {tuple(vx.shape[1:])}")
        tx, vx = _inputs(tx), _inputs(vx)

        if task == "classification":
            for what, y in (("train_y", ty), ("test_y", vy)):
                if y.ndim != 1:
                    raise fail(f"{what} must hold one label per sample (shape [n]), got shape {tuple(y.shape)}")
                if y.is_floating_point() and not bool(torch.all(torch.isfinite(y) & (y == torch.floor(y)))):
                    raise fail(f"{what} holds non-integer labels; classification labels are 0, 1, 2, ...")
            ty, vy = ty.to(torch.int64), vy.to(torch.int64)
            if num_classes is None:
                num_classes = int(max(int(ty.max()), int(vy.max()) if len(vy) else 0)) + 1
            elif isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
                raise fail(f"num_classes must be a positive integer, got {num_classes!r}")
            num_classes = int(num_classes)
            for what, y in (("train_y", ty), ("test_y", vy)):
                if len(y) and (int(y.min()) < 0 or int(y.max()) >= num_classes):
                    raise fail(f"{what} labels must lie in 0..{num_classes - 1}, found {int(y.min())}..{int(y.max())}")
        else:
            if num_classes not in (None, 0):
                raise fail(f"num_classes is for classification; a regression dataset has none (got {num_classes!r})")
            if tuple(ty.shape[1:]) != tuple(vy.shape[1:]):
                raise fail(f"train targets have shape {tuple(ty.shape[1:])} but test targets {tuple(vy.shape[1:])}")
            ty, vy = ty.to(torch.float32), vy.to(torch.float32)
            num_classes = 0

        groups = None
        if train_groups is not None:
            g = train_groups.detach().cpu().numpy() if isinstance(train_groups, torch.Tensor) \
                else np.asarray(train_groups)
            if g.ndim != 1 or len(g) != len(tx):
                raise fail(f"train_groups must hold one group per training sample ({len(tx)}), got shape {g.shape}")
            if not np.issubdtype(g.dtype, np.integer):
                raise fail(f"train_groups must be integer ids, got dtype {g.dtype}")
            groups = np.ascontiguousarray(g, dtype=np.int64)
        return cls(name=name, train_x=tx, train_y=ty, test_x=vx, test_y=vy, task=task, num_classes=num_classes,
                   input_shape=tuple(int(s) for s in tx.shape[1:]), train_groups=groups, meta=dict(meta or {}))


def _as_tensor(a: Any, what: str, fail: Callable[[str], DataError]) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        if a.is_complex():
            raise fail(f"{what} must be real numbers, got {a.dtype}")
        return a.detach().cpu()
    try:
        arr = np.asarray(a)
    except (TypeError, ValueError) as e:
        raise fail(f"{what} is not an array ({e})") from None
    if arr.dtype.kind not in "biuf":
        raise fail(f"{what} must be real numbers, got dtype {arr.dtype}")
    if not arr.flags.writeable or not arr.flags.c_contiguous:
        arr = np.array(arr, order="C")  # torch.from_numpy needs a writeable, contiguous array
    return torch.from_numpy(arr)


def _inputs(x: torch.Tensor) -> torch.Tensor:
    """float32, or int64 when integer-typed (token ids, user / item ids)."""
    integer = not x.is_floating_point() and x.dtype != torch.bool
    return x.to(torch.int64 if integer else torch.float32)


Located = tuple[Path, str]


@dataclass(frozen=True)
class DatasetSpec:
    """How to find, load and get one dataset."""

    name: str
    load: Callable[..., Dataset]  # load(root: str = "", *, max_samples: int = 0) -> Dataset
    default_model: str  # a registered model name ("small-cnn", "lenet", "leaf-cnn", "celeba-cnn", "char-lstm", "mf")
    locate: Callable[[str], tuple[Located | None, list[tuple[Path, str]]]] | None = None
    # locate(root) -> ((path, format) or None, [(place searched, why not), ...])
    how_to_get: str = ""  # one paragraph telling a person how to obtain the dataset
    normalization: tuple[tuple[float, ...], tuple[float, ...]] | None = None  # (mean, std) per channel
