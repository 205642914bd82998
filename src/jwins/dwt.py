"""PyWavelets' multilevel 1-D DWT in mode 'symmetric', for blocks of float32 rows, bit for bit, compiled.

``pywt.wavedec``/``waverec`` along the rows of a [B, D] block spend most of their time in scalar loops and in
copying every level's coefficients into the concatenated layout (``benchmarks/wavelet.py`` prints both). These
kernels compute the same sums in the same order, in float32 (PyWavelets' float32 path: float32 filters and
accumulators, each sum starting from 0 and adding tap by tap, no fused multiply-add), so the results are
PyWavelets' own, bit for bit (tests/test_transforms.py compares them for every wavelet, level and length it
draws). They are compiled by numba for each filter length (the filter is a tuple, so its length is a constant
and the taps unroll), write straight into the concatenated layout, and release the GIL.

Only the cases PyWavelets handles with its general branches are left to it: a level whose input is shorter than
the filter (tiny models, or a level too high for D). :func:`supported` says which.

Forward, one level (input x of length N, filter f of length F, outputs at i = 1, 3, ..., N + F - 2):
``out = sum_j f[j] * ext(x)[i - j]`` with ext the symmetric extension (x[-1 - t] = x[t], x[N + t] = x[N - 1 - t]),
taps in ascending j, except where the filter overhangs the right end: there PyWavelets adds the taps beyond the
end first (filter index descending from i - N), then the others in ascending order, and so do these kernels.
Inverse, one level: ``out[2k + p] = (0 + sum_j rec_lo[2j + p] a[i - j]) + sum_j rec_hi[2j + p] d[i - j]`` for
i = F/2 - 1 + k (the "valid" upsampling convolution of a and then d into a zeroed output).
"""
from __future__ import annotations

import numpy as np
import pywt

from .jit import kernel

_F0 = np.float32(0.0)


@kernel
def _dwt_level(x, n, lo, hi, ca, cd, cd_off):  # pragma: no cover - compiled
    """One level over every row b: ca[b, o], cd[b, cd_off + o] from x[b, :n]; n >= F."""
    F = len(lo)
    for b in range(x.shape[0]):
        xr = x[b, :n]
        a = ca[b]
        d = cd[b, cd_off:]
        o = 0
        i = 1
        while i < F:  # left overhang: ascending taps over the symmetric extension
            sa = _F0
            sd = _F0
            for j in range(F):
                t = i - j
                v = xr[t] if t >= 0 else xr[-t - 1]
                sa += lo[j] * v
                sd += hi[j] * v
            a[o] = sa
            d[o] = sd
            i += 2
            o += 1
        inner = (n - 1 - i) // 2 + 1 if i < n else 0
        for q in range(inner):  # no overhang: the taps unroll (F is a constant of the tuple's type)
            ii = i + 2 * q
            sa = _F0
            sd = _F0
            for j in range(F):
                v = xr[ii - j]
                sa += v * lo[j]
                sd += v * hi[j]
            a[o + q] = sa
            d[o + q] = sd
        o += inner
        i += 2 * inner
        while i < n + F - 1:  # right overhang: taps beyond the end first (filter index descending), then the rest
            sa = _F0
            sd = _F0
            j = 0
            while i - j >= n:
                m = i - n - j
                v = xr[n - 1 - j]
                sa += lo[m] * v
                sd += hi[m] * v
                j += 1
            while j < F:
                v = xr[i - j]
                sa += lo[j] * v
                sd += hi[j] * v
                j += 1
            a[o] = sa
            d[o] = sd
            i += 2
            o += 1


@kernel
def _idwt_level(za, zd, d_off, n, rlo, rhi, out, limit):  # pragma: no cover - compiled
    """One inverse level over every row b: from a = za[b, :n] and d = zd[b, d_off:d_off + n], out[b, o] for
    o < min(2n - F + 2, limit)."""
    F = len(rlo)
    h = F // 2
    pairs = min(n - (h - 1), limit // 2)  # output pairs (2k, 2k + 1) written whole
    for b in range(za.shape[0]):
        a = za[b, :n]
        d = zd[b, d_off:d_off + n]
        y = out[b]
        for k in range(pairs):  # the taps unroll (F is a constant of the tuple's type)
            i = k + h - 1
            ea = _F0
            oa = _F0
            ed = _F0
            od = _F0
            for j in range(h):
                va = a[i - j]
                vd = d[i - j]
                ea += rlo[2 * j] * va
                oa += rlo[2 * j + 1] * va
                ed += rhi[2 * j] * vd
                od += rhi[2 * j + 1] * vd
            y[2 * k] = (_F0 + ea) + ed
            y[2 * k + 1] = (_F0 + oa) + od
        if 2 * pairs < limit and pairs < n - (h - 1):  # an odd limit: the even half of one more pair
            i = pairs + h - 1
            ea = _F0
            ed = _F0
            for j in range(h):
                ea += rlo[2 * j] * a[i - j]
                ed += rhi[2 * j] * d[i - j]
            y[2 * pairs] = (_F0 + ea) + ed


def lengths(d: int, f: int, level: int) -> list[int]:
    """The input length of each forward level: d, then (d + f - 1) // 2 per level (PyWavelets' symmetric
    ``dwt_coeff_len``); level + 1 numbers."""
    out = [d]
    for _ in range(level):
        out.append((out[-1] + f - 1) // 2)
    return out


def supported(d: int, f: int, level: int) -> bool:
    """Whether these kernels compute the transform of length d: an even filter, at least one level, and every
    level's input at least as long as the filter."""
    return f % 2 == 0 and f >= 2 and level >= 1 and all(n >= f for n in lengths(d, f, level)[:-1])


def float32_filters(wavelet: pywt.Wavelet) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The float32 filters PyWavelets' float32 transform uses (dec_lo, dec_hi, rec_lo, rec_hi), read back from
    its own transforms of unit impulses: for some families they are computed in float32 from scaled constants
    and differ in the last bit from the float64 ``Wavelet.dec_lo`` rounded to float32 (coif1, for one)."""
    f = wavelet.dec_len
    n = 4 * f
    x = np.zeros((2, n), np.float32)
    x[0, 2 * f], x[1, 2 * f + 1] = 1, 1
    ca, cd = pywt.dwt(x, wavelet, mode="symmetric", axis=1)
    lo, hi = np.zeros(f, np.float32), np.zeros(f, np.float32)
    for r, p in enumerate((2 * f, 2 * f + 1)):  # output o sums taps j = 2o + 1 - p of the impulse at p
        for o in range(ca.shape[1]):
            j = 2 * o + 1 - p
            if 0 <= j < f:
                lo[j], hi[j] = ca[r, o], cd[r, o]
    h, m = f // 2, 2 * f
    a = np.zeros((1, m), np.float32)
    a[0, f] = 1
    zero = np.zeros_like(a)
    ya = pywt.idwt(a, zero, wavelet, mode="symmetric", axis=1)[0]
    yd = pywt.idwt(zero, a, wavelet, mode="symmetric", axis=1)[0]
    rlo, rhi = np.zeros(f, np.float32), np.zeros(f, np.float32)
    for o in range(len(ya)):  # output o = 2 (i - h + 1) + parity sums taps 2 (i - q) + parity of a[q]
        i, par = o // 2 + h - 1, o % 2
        j = i - f
        if 0 <= j < h:
            rlo[2 * j + par], rhi[2 * j + par] = ya[o], yd[o]
    return lo, hi, rlo, rhi


class Kernels:
    """The forward and inverse transform of one wavelet at one level for [B, D] float32 C-contiguous blocks."""

    def __init__(self, wavelet: pywt.Wavelet, level: int):
        self.lo, self.hi, self.rlo, self.rhi = (tuple(np.float32(v) for v in c) for c in float32_filters(wavelet))
        self.f = len(self.lo)
        self.level = level

    def forward(self, x: np.ndarray, out: np.ndarray) -> None:
        """``out`` [B, D'] = the concatenated wavedec of each row of ``x`` [B, D] (coarse to fine)."""
        ns = lengths(x.shape[1], self.f, self.level)
        b = x.shape[0]
        # detail of level l sits after the coarsest approximation and the details of levels L .. l + 1
        starts = np.cumsum([0, ns[-1], *reversed(ns[1:])])
        tmp = [np.empty((b, ns[1]), np.float32), np.empty((b, ns[1]), np.float32)] if self.level > 1 else []
        cur = x
        for l in range(1, self.level + 1):
            ca = out if l == self.level else tmp[l % 2]  # the coarsest approximation goes first in ``out``
            _dwt_level(cur, ns[l - 1], self.lo, self.hi, ca, out, int(starts[self.level - l + 1]))
            cur = ca

    def inverse(self, z: np.ndarray, d: int, out: np.ndarray) -> None:
        """``out`` [B, d] = waverec of each row's concatenated coefficients ``z`` [B, D'], truncated to d."""
        ns = lengths(d, self.f, self.level)
        details = list(reversed(ns[1:]))  # coarse to fine: level L's length first
        b = z.shape[0]
        a_src, a_len = z, ns[-1]
        d_off = ns[-1]
        buffers = [np.empty((b, ns[1] + 1), np.float32), np.empty((b, ns[1] + 1), np.float32)]
        for k, m in enumerate(details):
            n = min(a_len, m)  # waverec drops the approximation's last value when it is one longer
            if k == len(details) - 1:
                _idwt_level(a_src, z, d_off, n, self.rlo, self.rhi, out, d)
            else:
                full = 2 * n - self.f + 2
                nxt = buffers[k % 2]
                _idwt_level(a_src, z, d_off, n, self.rlo, self.rhi, nxt, full)
                a_src, a_len = nxt, full
            d_off += m
