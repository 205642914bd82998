"""Invertible linear transforms of a [N, D] parameter matrix, applied row by row.

``wavelet`` is the multilevel 1-D discrete wavelet transform JWINS uses: PyWavelets ``wavedec`` along the
rows, coefficients concatenated coarse to fine (as ``pywt.coeffs_to_array`` lays out 1-D coefficients), and
``waverec`` truncated to D for the inverse. On a GPU the rows travel to the CPU for PyWavelets.

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


class Transform(NamedTuple):
    name: str
    forward: Callable[[Tensor], Tensor]        # [N, D] -> [N, D']
    inverse: Callable[[Tensor, int], Tensor]   # ([N, D'], D) -> [N, D]
    dim: Callable[[int], int]                  # D -> D'


def identity() -> Transform:
    return Transform("identity", lambda x: x.clone(), lambda z, d: z, lambda d: d)  # clone: never alias params


def wavelet(name: str = "sym2", level: int = 4, *, mode: str = "symmetric") -> Transform:
    w = pywt.Wavelet(name)

    def lengths(d: int) -> list[int]:
        return [len(c) for c in pywt.wavedec(np.zeros(d, dtype=np.float32), w, mode=mode, level=level)]

    cache: dict[int, list[int]] = {}

    def split_sizes(d: int) -> list[int]:
        if d not in cache:
            cache[d] = lengths(d)
        return cache[d]

    def forward(x: Tensor) -> Tensor:
        arr = x.detach().to("cpu", torch.float32).numpy()
        coeffs = pywt.wavedec(arr, w, mode=mode, level=level, axis=1)
        return torch.from_numpy(np.concatenate(coeffs, axis=1)).to(x.device)

    def inverse(z: Tensor, d: int) -> Tensor:
        arr = z.detach().to("cpu", torch.float32).numpy()
        sizes = split_sizes(d)
        coeffs = np.split(arr, np.cumsum(sizes)[:-1], axis=1)
        x = pywt.waverec(coeffs, w, mode=mode, axis=1)[:, :d]
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(z.device)

    return Transform(f"wavelet-{name}-{level}", forward, inverse, lambda d: sum(split_sizes(d)))


def from_config(kind: str, *, wavelet_name: str = "sym2", level: int = 4) -> Transform:
    return identity() if kind == "identity" else wavelet(wavelet_name, level)
