"""Wavelet benchmark: PyWavelets' wavedec/waverec along the rows against jwins.dwt's compiled kernels.

    python benchmarks/wavelet.py                       # 96 LeNet rows (89,834 parameters), sym2, level 4
    python benchmarks/wavelet.py --rows 16 --dim 1000000 --wavelet db4 --level 6

JWINS transforms every node's model three times a round (forward before selection, inverse and forward after
averaging), so this is the part of its round that grows with the model. It prints, for one thread, the best
of ``--repeat`` timings of: PyWavelets (``wavedec`` with ``axis=1`` and the copy into the concatenated layout
the algorithms read; ``waverec`` of the split coefficients truncated to D, as :mod:`jwins.transforms` called
them before) and the compiled kernels (straight into the layout), in ms per row, and whether both give the
same bits. It is a benchmark, not a test: it prints a table.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import pywt

from jwins import dwt


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=96)
    ap.add_argument("--dim", type=int, default=89_834)
    ap.add_argument("--wavelet", default="sym2")
    ap.add_argument("--level", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=10)
    args = ap.parse_args(argv)

    w = pywt.Wavelet(args.wavelet)
    if not dwt.supported(args.dim, w.dec_len, args.level):
        raise SystemExit(f"{args.wavelet} at level {args.level} on {args.dim} values is left to PyWavelets")
    x = np.random.default_rng(0).standard_normal((args.rows, args.dim)).astype(np.float32)
    sizes = [len(c) for c in pywt.wavedec(x[0], w, mode="symmetric", level=args.level)]
    offsets = np.cumsum([0, *sizes])
    kernels = dwt.Kernels(w, args.level)
    z = np.empty((args.rows, int(offsets[-1])), np.float32)
    y = np.empty_like(x)

    def pywt_forward() -> np.ndarray:
        out = np.empty_like(z)
        for c, start, stop in zip(pywt.wavedec(x, w, mode="symmetric", level=args.level, axis=1),
                                  offsets[:-1], offsets[1:]):
            out[:, start:stop] = c
        return out

    def pywt_inverse() -> np.ndarray:
        return pywt.waverec(np.split(z, offsets[1:-1], axis=1), w, mode="symmetric", axis=1)[:, :args.dim]

    kernels.forward(x, z)  # compiles (or loads the cache) before timing
    kernels.inverse(z, args.dim, y)
    same_forward = np.array_equal(pywt_forward().view(np.uint32), z.view(np.uint32))
    same_inverse = np.array_equal(pywt_inverse().view(np.uint32), y.view(np.uint32))
    rows = [
        ("forward", best(pywt_forward, args.repeat), best(lambda: kernels.forward(x, z), args.repeat), same_forward),
        ("inverse", best(pywt_inverse, args.repeat), best(lambda: kernels.inverse(z, args.dim, y), args.repeat),
         same_inverse),
    ]
    print(f"{args.rows} rows x {args.dim:,} values, {args.wavelet} level {args.level}, one thread, "
          f"best of {args.repeat}")
    print(f"{'':8}  {'PyWavelets ms/row':>17}  {'jwins.dwt ms/row':>16}  {'speed-up':>8}  same bits")
    for name, slow, fast, same in rows:
        print(f"{name:8}  {slow / args.rows * 1e3:17.3f}  {fast / args.rows * 1e3:16.3f}  {slow / fast:7.1f}x  "
              f"{'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
