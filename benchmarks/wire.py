"""Wire-format benchmark: index bits per index against the information bound, and encode+decode speed.

    python benchmarks/wire.py                      # synthetic selections, D = 89,834, k = 10% of D
    python benchmarks/wire.py --indices sel.npz    # saved real selections: arrays sel_0, sel_1, ... and dim

Prints tables; it is not a test. Timings are the median of several repeats of 96 messages (one round of a
96-node experiment), each encoded and decoded through the public ``encode``/``decode`` with float32 values;
"total" encodes and decodes each message in turn, "(best)" is its fastest repeat (the machine's noise floor).
"""
from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np

from jwins.parallel import reuse_freed_memory
from jwins.wire import Message, decode, decode_many, encode, encode_many, layout
from jwins.wire.fpzip_helpers import HELPERS

DIM = 89_834
FRACTION = 0.10
MESSAGES = 96
REPEATS = 9
INDEX_CODECS = ("elias-gamma", "rice", "bitmap", "auto")


def log2_binomial(n: int, k: int) -> float:
    return (math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)) / math.log(2)


def uniform_sets(rng: np.random.Generator, dim: int, k: int, count: int) -> list[np.ndarray]:
    return [np.sort(rng.choice(dim, size=k, replace=False)).astype(np.int64) for _ in range(count)]


def clustered_sets(rng: np.random.Generator, dim: int, k: int, count: int, mean_run: float = 24.0) -> list[np.ndarray]:
    """Runs of consecutive indices with geometric lengths, as a top-k of wavelet coefficients tends to give."""
    out = []
    for _ in range(count):
        runs = max(1, int(k / mean_run))
        lengths = rng.geometric(1.0 / mean_run, size=runs)
        lengths = np.maximum(1, np.round(lengths * (k / lengths.sum()))).astype(np.int64)
        spare = dim - int(lengths.sum())
        cuts = np.sort(rng.integers(0, spare + 1, size=runs))  # free space before each run
        starts = cuts + np.concatenate(([0], np.cumsum(lengths)[:-1]))
        idx = np.concatenate([np.arange(s, s + n) for s, n in zip(starts, lengths)])
        out.append(np.unique(idx[idx < dim])[:k].astype(np.int64))
    return out


def bits_table(title: str, dim: int, sets: list[np.ndarray]) -> None:
    rows = []
    for codec in INDEX_CODECS:
        bits = 0
        for idx in sets:
            m = Message(0, 0, dim, idx, np.zeros(idx.shape[0], np.float32))
            bits += 8 * layout(encode(m, index_codec=codec)).index_bytes
        rows.append((codec, bits))
    total_k = sum(int(idx.shape[0]) for idx in sets)
    bound = sum(log2_binomial(dim, int(idx.shape[0])) for idx in sets)
    print(f"\n{title}: D={dim:,}, {len(sets)} sets, mean k={total_k / len(sets):,.0f} "
          f"({total_k / len(sets) / dim:.1%} of D)")
    print(f"  {'codec':<12} {'bits/index':>10} {'bound':>8} {'ratio':>7}   (bound = log2 C(D,k) / k)")
    for codec, bits in rows:
        print(f"  {codec:<12} {bits / total_k:>10.3f} {bound / total_k:>8.3f} {bits / bound:>7.3f}")


def _times_ms(fn, repeats: int = REPEATS) -> list[float]:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def _median_ms(fn, repeats: int = REPEATS) -> float:
    return statistics.median(_times_ms(fn, repeats))


def timing_table(title: str, dim: int, sets: list[np.ndarray]) -> None:
    rng = np.random.default_rng(1)
    messages = [
        Message(i, 1, dim, sets[i % len(sets)], (rng.standard_normal(sets[i % len(sets)].shape[0]) * 0.05)
                .astype(np.float32))
        for i in range(MESSAGES)
    ]
    print(f"\n{title}: {MESSAGES} messages encode+decode (indices + float32 values), median of {REPEATS}, ms")
    print(f"  {'codec':<12} {'encode':>8} {'decode':>8} {'total':>8} {'(best)':>8}")
    for codec in INDEX_CODECS:
        payloads = [encode(m, index_codec=codec) for m in messages]
        enc = _median_ms(lambda: [encode(m, index_codec=codec) for m in messages])
        dec = _median_ms(lambda: [decode(p, dim=dim) for p in payloads])
        both = _times_ms(lambda: [decode(encode(m, index_codec=codec), dim=dim) for m in messages])
        print(f"  {codec:<12} {enc:>8.1f} {dec:>8.1f} {statistics.median(both):>8.1f} {min(both):>8.1f}")


def fpzip_table(dim: int, k: int) -> None:
    import fpzip

    rng = np.random.default_rng(2)
    idx = np.sort(rng.choice(dim, size=k, replace=False))
    values = [(rng.standard_normal(k) * 0.05).astype(np.float32) for _ in range(MESSAGES)]
    messages = [Message(i, 1, dim, idx, v) for i, v in enumerate(values)]
    raw = [v.tobytes() for v in values]
    streams = [fpzip.compress(v, precision=0, order="C") for v in values]
    ratio = sum(len(s) for s in streams) / sum(len(r) for r in raw)
    comp = _median_ms(lambda: [fpzip.compress(v, precision=0, order="C") for v in values])
    decomp = _median_ms(lambda: [fpzip.decompress(s) for s in streams])
    payloads = [encode(m, index_codec="rice", value_codec="fpzip") for m in messages]
    enc = _median_ms(lambda: [encode(m, index_codec="rice", value_codec="fpzip") for m in messages])
    dec = _median_ms(lambda: [decode(p, dim=dim) for p in payloads])
    f32 = [encode(m, index_codec="rice") for m in messages]
    print(f"\nfpzip values (normal * 0.05, k={k:,}), {MESSAGES} messages, median of {REPEATS}, ms")
    print(f"  size ratio fpzip/float32 values: {ratio:.3f}  (whole messages with rice indices: "
          f"{sum(map(len, payloads)) / sum(map(len, f32)):.3f})")
    print(f"  fpzip.compress in process:   {comp:8.1f}")
    print(f"  fpzip.decompress in process: {decomp:8.1f}   (not used on received bytes: see docs/wire-format.md)")
    print(f"  wire encode, fpzip values:   {enc:8.1f}")
    print(f"  wire decode, fpzip values:   {dec:8.1f}   (isolated helper process + canonical re-compression check)")
    many_enc = _median_ms(lambda: encode_many(messages, index_codec="rice", value_codec="fpzip"))
    many_dec = _median_ms(lambda: decode_many(payloads, dim=dim))
    many_trusted = _median_ms(lambda: decode_many(payloads, dim=dim, trusted=True))
    trusted = _median_ms(lambda: [decode(p, dim=dim, trusted=True) for p in payloads])
    print(f"  wire decode, trusted:        {trusted:8.1f}   (the simulator's own bytes: fpzip in process)")
    print(f"  encode_many ({HELPERS.size} helpers):     {many_enc:8.1f}")
    print(f"  decode_many ({HELPERS.size} helpers):     {many_dec:8.1f}")
    print(f"  decode_many, trusted:        {many_trusted:8.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--indices", help="npz file with selections sel_0, sel_1, ... and a scalar dim")
    parser.add_argument("--trim", action="store_true",
                        help="leave glibc's allocator at its defaults; by default the benchmark applies the "
                             "setting `jwins run` uses (jwins.parallel.reuse_freed_memory: freed blocks are kept "
                             "for reuse instead of being returned to the OS and page-faulted in again)")
    args = parser.parse_args()
    if not args.trim:
        reuse_freed_memory()
    if args.indices:
        with np.load(args.indices) as npz:
            dim = int(npz["dim"])
            names = sorted((n for n in npz.files if n.startswith("sel_")), key=lambda n: int(n[4:]))
            sets = [np.unique(np.asarray(npz[n], dtype=np.int64)) for n in names]
        if not sets:
            raise SystemExit(f"{args.indices} holds no arrays named sel_0, sel_1, ...")
        bits_table(f"selections from {args.indices}", dim, sets)
        timing_table(f"selections from {args.indices}", dim, sets)
        return
    rng = np.random.default_rng(0)
    k = int(FRACTION * DIM)
    uniform = uniform_sets(rng, DIM, k, 16)
    clustered = clustered_sets(rng, DIM, k, 16)
    bits_table("uniform random index sets", DIM, uniform)
    bits_table("clustered index sets (runs, mean length 24)", DIM, clustered)
    timing_table("uniform random index sets", DIM, uniform)
    timing_table("clustered index sets", DIM, clustered)
    fpzip_table(DIM, k)


if __name__ == "__main__":
    main()
