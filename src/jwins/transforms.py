"""Invertible linear transforms of a [N, D] parameter matrix, applied row by row.

``wavelet`` is the multilevel 1-D discrete wavelet transform JWINS uses: PyWavelets ``wavedec`` along the
rows, coefficients concatenated coarse to fine (as ``pywt.coeffs_to_array`` lays out 1-D coefficients), and
``waverec`` truncated to D for the inverse. The symmetric mode is computed by the compiled kernels of
:mod:`jwins.dwt` (about four times faster than PyWavelets' own loops and copies, the same numbers bit for bit),
the lengths they leave to PyWavelets (a level longer than its input) by PyWavelets. On a GPU the rows travel to
the CPU. Rows are independent, so blocks of rows go to the worker threads of :mod:`jwins.parallel` (both release
the GIL); the coefficients are PyWavelets' own, bit for bit.

>>> import torch
>>> t = wavelet("sym2", level=4)
>>> t.dim(89_834)
89843
>>> x = torch.randn(2, 100)
>>> bool(torch.allclose(t.inverse(t.forward(x), 100), x, atol=1e-5))
True
"""
from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import pywt
import torch
from torch import Tensor

from . import dwt, parallel


class Transform(NamedTuple):
    name: str
    forward: Callable[..., Tensor]   # ([N, D], out=None) -> [N, D']; with ``out`` ([N, D']) written there
    inverse: Callable[..., Tensor]   # ([N, D'], D, out=None) -> [N, D]; likewise
    dim: Callable[[int], int]        # D -> D'


def identity() -> Transform:
    def forward(x: Tensor, out: Tensor | None = None) -> Tensor:
        return x.clone() if out is None else out.copy_(x)  # clone: never alias params

    def inverse(z: Tensor, d: int, out: Tensor | None = None) -> Tensor:
        return z if out is None else out.copy_(z)

    return Transform("identity", forward, inverse, lambda d: d)


def _target(out: Tensor | None, shape: tuple[int, int]) -> np.ndarray:
    """Where to write a result: ``out``'s own memory when it is a float32 CPU tensor, else a new array."""
    if out is not None and out.device.type == "cpu" and out.dtype == torch.float32 and out.is_contiguous():
        return out.numpy()
    return np.empty(shape, dtype=np.float32)


def _result(target: np.ndarray, out: Tensor | None, device: torch.device) -> Tensor:
    if out is None:
        return torch.from_numpy(target).to(device)
    if out.device.type != "cpu" or out.dtype != torch.float32 or not out.is_contiguous():
        out.copy_(torch.from_numpy(target))
    return out


def wavelet(name: str = "sym2", level: int = 4, *, mode: str = "symmetric") -> Transform:
    w = pywt.Wavelet(name)
    kernels = dwt.Kernels(w, level) if mode == "symmetric" and level >= 1 else None

    def compiled(d: int) -> bool:
        return kernels is not None and dwt.supported(d, w.dec_len, level)

    def lengths(d: int) -> list[int]:
        """The lengths of wavedec's coefficient arrays, coarse to fine (PyWavelets' own arithmetic)."""
        details = []
        for _ in range(level):
            d = pywt.dwt_coeff_len(d, w.dec_len, mode)
            details.append(d)
        return [details[-1], *reversed(details)] if details else [d]

    cache: dict[int, list[int]] = {}

    def split_sizes(d: int) -> list[int]:
        if d not in cache:
            cache[d] = lengths(d)
        return cache[d]

    def forward(x: Tensor, out: Tensor | None = None) -> Tensor:
        arr = x.detach().to("cpu", torch.float32).numpy()
        offsets = np.cumsum([0] + split_sizes(arr.shape[1]))
        target = _target(out, (arr.shape[0], int(offsets[-1])))
        fast = compiled(arr.shape[1])
        if fast and (not arr.flags.c_contiguous or np.may_share_memory(arr, target)):
            arr = arr.copy()  # the kernels read level l's input while writing its output

        def rows(sl: slice) -> None:
            if fast:
                kernels.forward(arr[sl], target[sl])
                return
            coeffs = pywt.wavedec(arr[sl], w, mode=mode, level=level, axis=1)
            for c, start, stop in zip(coeffs, offsets[:-1], offsets[1:]):
                target[sl, start:stop] = c

        parallel.map_items(rows, parallel.row_chunks(arr.shape[0], parallel.budget(x.device)))
        return _result(target, out, x.device)

    def inverse(z: Tensor, d: int, out: Tensor | None = None) -> Tensor:
        arr = z.detach().to("cpu", torch.float32).numpy()
        bounds = np.cumsum(split_sizes(d))[:-1]
        target = _target(out, (arr.shape[0], d))
        fast = compiled(d)
        if fast and (not arr.flags.c_contiguous or np.may_share_memory(arr, target)):
            arr = arr.copy()

        def rows(sl: slice) -> None:
            if fast:
                kernels.inverse(arr[sl], d, target[sl])
                return
            target[sl] = pywt.waverec(np.split(arr[sl], bounds, axis=1), w, mode=mode, axis=1)[:, :d]

        parallel.map_items(rows, parallel.row_chunks(arr.shape[0], parallel.budget(z.device)))
        return _result(target, out, z.device)

    return Transform(f"wavelet-{name}-{level}", forward, inverse, lambda d: sum(split_sizes(d)))


