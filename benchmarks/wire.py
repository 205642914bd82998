"""Wire-format benchmark: index bits per index against the information bound, encode+decode speed, and the
value codecs on values real runs send.

    python benchmarks/wire.py                      # synthetic selections, D = 89,834, k = 10% of D
    python benchmarks/wire.py --indices sel.npz    # saved real selections: arrays sel_0, sel_1, ... and dim
    python benchmarks/wire.py --values jwins.npz topk.npz full.npz   # value codecs on saved values
                                                   # (benchmarks/selections.py --algorithm ... writes them)
    python benchmarks/wire.py --forged 2097152 16777216   # forged small messages claiming these dims

Prints tables; it is not a test. Timings are the median of several repeats of 96 messages (one round of a
96-node experiment), each encoded and decoded through the public ``encode``/``decode`` with float32 values;
"total" encodes and decodes each message in turn, "(best)" is its fastest repeat (the machine's noise floor).

``--values``: per set of values (dense and sparse messages of each file apart), every value codec candidate
compresses and decompresses every message in one process, one thread: float32, fpzip, pcodec at several
levels, the wire's own ``fpzip`` and ``pcodec`` codecs (their checks included; fpzip's untrusted decode runs
in the isolated helper process), and, when installed, blosc2 (shuffle or bitshuffle, bytedelta, zstd or lz4)
and zfp in reversible mode (optional: never jwins dependencies). The codecs run interleaved, in a rotated
order, ``--repeats`` times, each timing covering at least 50 ms (as many passes over the set as that takes);
the table gives bytes per value and the median MB/s of float32 data each way.
Every candidate is checked to restore the values bit for bit.

``--forged D ...``: messages of a few hundred bytes to a few KB that claim ``dim = k = D`` (a dense fpzip or
pcodec section of D zeros, seed indices of every coefficient with fpzip values) or seed indices of almost
none, each decoded by ``decode(data)`` without ``dim`` in a fresh process: the outcome, the seconds, the
process's peak RSS (VmHWM) and that of the fpzip helper process (which decodes untrusted fpzip sections).
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import time

import numpy as np

from jwins.parallel import reuse_freed_memory
from jwins.wire import Message, decode, decode_many, encode, encode_many, index_codecs, layout
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
    print(f"  {'codec':<20} {'encode':>8} {'decode':>8} {'total':>8} {'(best)':>8}")
    for codec, compiled in [(c, True) for c in INDEX_CODECS] + [("elias-gamma", False)]:
        index_codecs.COMPILED_ELIAS = compiled  # the last row: elias-gamma's numpy encoder and decoder
        payloads = [encode(m, index_codec=codec) for m in messages]
        enc = _median_ms(lambda: [encode(m, index_codec=codec) for m in messages])
        dec = _median_ms(lambda: [decode(p, dim=dim) for p in payloads])
        both = _times_ms(lambda: [decode(encode(m, index_codec=codec), dim=dim) for m in messages])
        name = codec if compiled else f"{codec} (numpy)"
        print(f"  {name:<20} {enc:>8.1f} {dec:>8.1f} {statistics.median(both):>8.1f} {min(both):>8.1f}")
    index_codecs.COMPILED_ELIAS = True


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


# ---------------------------------------------------------------------------------------------------------
# value codecs on saved values


def value_sets(paths: list[str]) -> dict[str, list[np.ndarray]]:
    """'<algorithm> dense' / '<algorithm> sparse' -> the float32 values of those messages, from the files
    ``benchmarks/selections.py`` writes (val_0, val_1, ..., msg_dense)."""
    sets: dict[str, list[np.ndarray]] = {}
    for path in paths:
        with np.load(path) as npz:
            names = sorted((n for n in npz.files if n.startswith("val_")), key=lambda n: int(n[4:]))
            if not names:
                raise SystemExit(f"{path} holds no values (val_0, ...): write it with benchmarks/selections.py")
            algorithm = str(npz["algorithm"]) if "algorithm" in npz.files else path
            dense = npz["msg_dense"]
            for name in names:
                kind = "dense" if dense[int(name[4:])] else "sparse"
                sets.setdefault(f"{algorithm} {kind}", []).append(np.asarray(npz[name], dtype=np.float32))
    return sets


def value_codecs(levels: list[int]) -> dict[str, tuple]:
    """name -> (encode(values) -> bytes, decode(bytes, k) -> float32 array): the candidates installed here."""
    import fpzip
    import pcodec
    from pcodec import standalone

    from jwins.wire.fpzip import FPZIP
    from jwins.wire.pcodec import LEVEL, PCODEC

    def pco(level: int, auto: bool = False):
        spec = {} if auto else dict(mode_spec=pcodec.ModeSpec.classic(), delta_spec=pcodec.DeltaSpec.no_op())
        config = pcodec.ChunkConfig(compression_level=level, **spec)

        def decode_(data: bytes, k: int) -> np.ndarray:
            out = np.empty(k, dtype=np.float32)
            standalone.simple_decompress_into(data, out)
            return out

        return (lambda v: standalone.simple_compress(v, config)), decode_

    codecs: dict[str, tuple] = {
        "float32": (lambda v: v.tobytes(), lambda b, k: np.frombuffer(b, dtype=np.float32).copy()),
        "fpzip": (lambda v: fpzip.compress(v, precision=0, order="C"),
                  lambda b, k: fpzip.decompress(b).reshape(-1)),
        "wire fpzip (untrusted)": (FPZIP.encode, FPZIP.decode),
    }
    for level in levels:
        codecs[f"pcodec {level}"] = pco(level)
    codecs["pcodec 8 auto"] = pco(8, auto=True)
    codecs[f"wire pcodec ({LEVEL})"] = (PCODEC.encode, PCODEC.decode)
    try:
        import blosc2
    except ImportError:
        print("(blosc2 not installed: its rows are left out)")
    else:
        def blosc(codec, filters, clevel: int):
            kwargs = dict(codec=codec, clevel=clevel, filters=filters, typesize=4, nthreads=1)
            return ((lambda v: blosc2.compress2(v, **kwargs)),
                    (lambda b, k: np.frombuffer(blosc2.decompress2(b, nthreads=1), dtype=np.float32)))

        F, C = blosc2.Filter, blosc2.Codec
        codecs["blosc2 shuffle+zstd 1"] = blosc(C.ZSTD, [F.SHUFFLE], 1)
        codecs["blosc2 shuffle+zstd 5"] = blosc(C.ZSTD, [F.SHUFFLE], 5)
        codecs["blosc2 shuffle+zstd 9"] = blosc(C.ZSTD, [F.SHUFFLE], 9)
        codecs["blosc2 bytedelta+zstd 5"] = blosc(C.ZSTD, [F.SHUFFLE, F.BYTEDELTA], 5)
        codecs["blosc2 bitshuffle+lz4 5"] = blosc(C.LZ4, [F.BITSHUFFLE], 5)
    try:
        import zfpy
    except ImportError:
        print("(zfpy not installed: its row is left out)")
    else:
        codecs["zfp reversible"] = (lambda v: zfpy.compress_numpy(v),
                                    lambda b, k: zfpy.decompress_numpy(b).reshape(-1))
    return codecs


MIN_TIMING = 0.05  # seconds


def values_table(paths: list[str], repeats: int, levels: list[int]) -> None:
    sets = value_sets(paths)
    codecs = value_codecs(levels)
    names = list(codecs)
    load = os.getloadavg()
    print(f"\nvalue codecs, {repeats} interleaved repeats, median MB/s of float32 data, one thread; "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the start")
    for title, values in sets.items():
        raw = sum(v.nbytes for v in values)
        count = sum(v.shape[0] for v in values)
        sizes: dict[str, int] = {}
        streams: dict[str, list[bytes]] = {}
        for name in names:
            enc, dec = codecs[name]
            streams[name] = [bytes(enc(v)) for v in values]
            sizes[name] = sum(map(len, streams[name]))
            for v, b in zip(values, streams[name]):
                back = np.asarray(dec(b, v.shape[0]), dtype=np.float32)
                if not np.array_equal(back.view(np.uint32), v.view(np.uint32)):
                    raise SystemExit(f"{name} does not restore the {title} values bit for bit")
        def passes(fn, loops: int) -> float:
            """Seconds per pass of ``fn`` over the set, timed over ``loops`` passes."""
            t0 = time.perf_counter()
            for _ in range(loops):
                fn()
            return (time.perf_counter() - t0) / loops

        jobs = {}
        for name in names:
            enc, dec = codecs[name]
            jobs[name] = (lambda enc=enc: [enc(v) for v in values],
                          lambda dec=dec, name=name: [dec(b, v.shape[0]) for v, b in zip(values, streams[name])])
        # each timing covers >= MIN_TIMING seconds of passes, so that one preemption on a busy machine is a
        # small part of it
        loops = {name: tuple(max(1, math.ceil(MIN_TIMING / max(passes(fn, 1), 1e-6))) for fn in jobs[name])
                 for name in names}
        enc_t: dict[str, list[float]] = {n: [] for n in names}
        dec_t: dict[str, list[float]] = {n: [] for n in names}
        for r in range(repeats):
            for name in names[r % len(names):] + names[:r % len(names)]:  # rotated, interleaved
                enc_t[name].append(passes(jobs[name][0], loops[name][0]))
                dec_t[name].append(passes(jobs[name][1], loops[name][1]))
        print(f"\n{title}: {len(values)} messages, {count:,} values (k {min(v.shape[0] for v in values):,} to "
              f"{max(v.shape[0] for v in values):,})")
        print(f"  {'codec':<26} {'bytes/value':>11} {'vs float32':>10} {'encode MB/s':>12} {'decode MB/s':>12}")
        for name in names:
            print(f"  {name:<26} {sizes[name] / count:>11.3f} {raw / sizes[name]:>9.3f}x "
                  f"{raw / statistics.median(enc_t[name]) / 1e6:>12.1f} "
                  f"{raw / statistics.median(dec_t[name]) / 1e6:>12.1f}")
    load = os.getloadavg()
    print(f"\nload average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the end")


# ---------------------------------------------------------------------------------------------------------
# forged small messages claiming a large dim: what decoding them without dim costs


def _forged_messages(dim: int) -> dict[str, bytes]:
    import struct
    import zlib

    import fpzip

    from jwins.wire.pcodec import PCODEC

    def message(index: bytes, values: bytes, *, flags=0, index_codec=1, value_codec=0, k=0, extras=b"") -> bytes:
        n_extras = extras.count(b"\x09mask_seed") + extras.count(b"\x05alpha")
        head = struct.pack("<4sBBBBBBIIIIII", b"JWNS", 1, flags, index_codec, value_codec, 0, n_extras, 5, 6, dim, k,
                           len(index), len(values))
        body = head + extras + index + values
        return body + struct.pack("<I", zlib.crc32(body))

    def extra(key: bytes, value: float) -> bytes:
        return bytes([len(key)]) + key + struct.pack("<d", value)

    zeros = fpzip.compress(np.zeros(dim, np.float32), precision=0, order="C")
    few = int(np.count_nonzero(np.random.default_rng(1).random(dim) < 1e-6))
    return {
        "dense, fpzip zeros": message(b"", zeros, flags=1, index_codec=0, value_codec=3, k=dim),
        "dense, pcodec zeros": message(b"", PCODEC.encode(np.zeros(dim, np.float32)), flags=1, index_codec=0,
                                       value_codec=4, k=dim),
        "seed alpha=1, fpzip zeros": message(b"", zeros, index_codec=4, value_codec=3, k=dim,
                                             extras=extra(b"mask_seed", 1.0) + extra(b"alpha", 1.0)),
        "seed alpha=1e-6, float32": message(b"", bytes(4 * few), index_codec=4, k=few,
                                            extras=extra(b"mask_seed", 1.0) + extra(b"alpha", 1e-6)),
    }


_FORGED_CHILD = r"""
import json, sys, time
from jwins.errors import WireError
from jwins.wire import decode
from jwins.wire.fpzip_helpers import HELPERS

def hwm(pid="self"):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) // 1024
    return 0

data = open(sys.argv[1], "rb").read()
before = hwm()
t0 = time.perf_counter()
try:
    result = f"decoded, k={decode(data).values.shape[0]:,}"
except WireError as exc:
    result = f"WireError: {exc}"
seconds = time.perf_counter() - t0
helper = sum(hwm(h.proc.pid) for h in HELPERS.helpers if h.proc is not None and h.proc.poll() is None)
HELPERS.close()
print(json.dumps(dict(result=result, seconds=seconds, rss=hwm(), before=before, helper=helper)))
"""


def forged_table(dims: list[int]) -> None:
    import json
    import subprocess
    import sys
    import tempfile

    load = os.getloadavg()[0]
    print(f"\nforged messages decoded without dim (fresh process each; load average {load:.2f})")
    print(f"  {'D':>10} {'message':<26} {'bytes':>6} {'seconds':>8} {'peak MB':>8} {'helper MB':>9}  outcome")
    with tempfile.TemporaryDirectory() as tmp:
        for dim in dims:
            for name, data in _forged_messages(dim).items():
                path = os.path.join(tmp, "message.bin")
                with open(path, "wb") as f:
                    f.write(data)
                proc = subprocess.run([sys.executable, "-c", _FORGED_CHILD, path], capture_output=True, text=True)
                if proc.returncode:
                    print(f"  {dim:>10,} {name:<26} failed: {proc.stderr[-500:]}")
                    continue
                r = json.loads(proc.stdout.strip().splitlines()[-1])
                print(f"  {dim:>10,} {name:<26} {len(data):>6,} {r['seconds']:>8.3f} {r['rss']:>8,} {r['helper']:>9,}  "
                      f"{r['result'][:70]}")
    print("  (peak MB: the decoding process's peak RSS, about 30 MB of which is Python, numpy and jwins)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--indices", help="npz file with selections sel_0, sel_1, ... and a scalar dim")
    parser.add_argument("--values", nargs="+", metavar="NPZ",
                        help="npz files with values val_0, val_1, ... (benchmarks/selections.py): value codecs")
    parser.add_argument("--repeats", type=int, default=7, help="repeats of the --values table (default 7)")
    parser.add_argument("--forged", nargs="+", type=int, metavar="D",
                        help="forged small messages claiming dim D, decoded without dim in fresh processes")
    parser.add_argument("--levels", default="2,4,8",
                        help="pcodec levels of the --values table, besides the wire codec's (default 2,4,8)")
    parser.add_argument("--trim", action="store_true",
                        help="leave glibc's allocator at its defaults; by default the benchmark applies the "
                             "setting `jwins run` uses (jwins.parallel.reuse_freed_memory: freed blocks are kept "
                             "for reuse instead of being returned to the OS and page-faulted in again)")
    args = parser.parse_args()
    if not args.trim:
        reuse_freed_memory()
    if args.values:
        values_table(args.values, args.repeats, [int(x) for x in args.levels.split(",") if x])
        return
    if args.forged:
        forged_table(args.forged)
        return
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
