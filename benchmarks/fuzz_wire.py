"""Fuzz the wire decoder, above all the in-process pcodec decoder, through the wire format.

    python benchmarks/fuzz_wire.py                   # 60 s, seed 1
    python benchmarks/fuzz_wire.py --seconds 600 --seed 7

Mutates valid messages (pcodec values mostly, every index codec, dense and sparse, 1 to 262,145 values) and
feeds them to ``jwins.wire.decode`` without ``dim``: truncations and insertions inside the value section, bit
flips, byte splices from other messages (pcodec streams of other configurations among them), forged section
lengths, forged ``k`` and ``dim`` in the header, random bytes after a valid pcodec header, and wholly random
bytes. Nearly every mutation gets a recomputed CRC, which would otherwise reject it before any codec runs.

The fuzzing runs in a child process that writes each input to a file before decoding it, so that a crash
(Pco aborting or corrupting memory) is reported with the input that caused it. Prints: inputs tried, how many
decoded, exceptions by type (only WireError is allowed), the most frequent refusals, the slowest decode and
the peak memory. It is a benchmark tool, not a test; ``tests/test_wire_fuzz.py`` runs a bounded slice of it.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import resource
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

from jwins.errors import WireError
from jwins.wire import Message, decode, encode, layout, seeded_indices

FIXED = 34  # fixed header bytes; the value codec id is at 7, dim at 18, k at 22, section lengths at 26 and 30


def _recrc(body: bytes | bytearray) -> bytes:
    body = bytes(body)
    return body + struct.pack("<I", zlib.crc32(body))


def _sections(data: bytes) -> tuple[int, int, int]:
    """(offset of the index section, index bytes, value bytes) of a valid message."""
    lay = layout(data)
    return lay.header_bytes - 4, lay.index_bytes, lay.value_bytes


def _pcodec_variants(rng: np.random.Generator, values: np.ndarray) -> list[bytes]:
    """Valid Pco streams of configurations the wire codec refuses: material for splices and bit flips."""
    import pcodec

    out = []
    for config in (
        dict(delta_spec=pcodec.DeltaSpec.try_lookback(), mode_spec=pcodec.ModeSpec.classic()),
        dict(delta_spec=pcodec.DeltaSpec.try_consecutive(2), mode_spec=pcodec.ModeSpec.classic()),
        dict(mode_spec=pcodec.ModeSpec.try_float_quant(8)),
        dict(paging_spec=pcodec.PagingSpec.equal_pages_up_to(256)),
        dict(compression_level=12),
    ):
        try:
            out.append(pcodec.standalone.simple_compress(values, pcodec.ChunkConfig(**config)))
        except Exception:  # noqa: BLE001 - a configuration this pcodec does not offer
            pass
    return out


def corpus(rng: np.random.Generator, *, large: bool = True) -> list[bytes]:
    """Valid messages, pcodec values mostly; ``large`` adds one of 262,145 values (two pcodec chunks)."""
    msgs: list[bytes] = []
    kinds = [
        lambda k: (rng.standard_normal(k) * 0.05).astype(np.float32),
        lambda k: np.zeros(k, np.float32),
        lambda k: np.full(k, -1.5, np.float32),
        lambda k: rng.integers(0, 2**32, k, dtype=np.uint64).astype(np.uint32).view(np.float32),  # incl. NaN
        lambda k: (np.round(rng.standard_normal(k) * 100) / 64).astype(np.float32),
        lambda k: np.array([0.0, -0.0, 1e-45, -1e-45, 1.17e-38, 3.4028235e38, -3.4028235e38, 1.0] * (k // 8 + 1),
                           np.float32)[:k],
    ]
    sizes = [1, 2, 3, 255, 256, 257, 1000, 4099]
    for i, k in enumerate(sizes):
        values = kinds[i % len(kinds)](k)
        values = np.where(np.isfinite(values), values, np.float32(0.5)).astype(np.float32)
        dim = k + int(rng.integers(0, 3 * k + 2))
        idx = np.sort(rng.choice(dim, size=k, replace=False)).astype(np.int64)
        codec = ("elias-gamma", "rice", "bitmap")[i % 3]
        msgs.append(encode(Message(i, 1, dim, idx, values, {"alpha": k / dim}), index_codec=codec,
                           value_codec="pcodec"))
        msgs.append(encode(Message(i, 2, k, None, values), value_codec="pcodec"))
    seeded = seeded_indices(5, 3000, 0.3)
    msgs.append(encode(Message(9, 3, 3000, seeded, (rng.standard_normal(seeded.shape[0]) * 0.05).astype(np.float32),
                               {"mask_seed": 5.0, "alpha": 0.3}), index_codec="seed", value_codec="pcodec"))
    if large:
        k = 2**18 + 1
        msgs.append(encode(Message(7, 4, k, None, (rng.standard_normal(k) * 0.05).astype(np.float32)),
                           value_codec="pcodec"))
    for vc in ("float32", "float16", "bfloat16"):  # other codecs' sections, for splices
        values = (rng.standard_normal(300) * 0.05).astype(np.float32)
        msgs.append(encode(Message(1, 1, 300, None, values), value_codec=vc))
    # other Pco configurations under a pcodec header: refused by the codec's own checks, unless mutated past them
    values = np.tile((rng.standard_normal(50) * 0.05).astype(np.float32), 20)
    for stream in _pcodec_variants(rng, values):
        body = bytearray(encode(Message(3, 3, 1000, None, values), value_codec="pcodec")[:-4])
        start = len(body) - struct.unpack_from("<I", body, 30)[0]
        body[start:] = stream
        struct.pack_into("<I", body, 30, len(stream))
        msgs.append(_recrc(body))
    return msgs


MUTATIONS = ("flip", "value-flip", "truncate-value", "insert-value", "splice", "shift-boundary", "lengths",
             "k-dim", "codec-id", "pcodec-header", "random-pcodec", "random", "truncate", "chunk-count")


def mutate(rng: np.random.Generator, msgs: list[bytes], weights: np.ndarray | None = None) -> tuple[str, bytes]:
    """(mutation name, mutated message) from a random message of ``msgs``."""
    op = MUTATIONS[int(rng.choice(len(MUTATIONS), p=weights))]
    data = msgs[int(rng.integers(0, len(msgs)))]
    if len(data) > 200_000 and rng.random() < 0.9:  # the large message is slow to mutate: use it rarely
        data = msgs[0]
    body = bytearray(data[:-4])
    istart, ib, vb = _sections(data)
    vstart = istart + ib
    recrc = True
    if op == "flip":  # anywhere, 1-4 bits
        for _ in range(int(rng.integers(1, 5))):
            pos = int(rng.integers(0, len(body)))
            body[pos] ^= 1 << int(rng.integers(0, 8))
    elif op == "value-flip" and vb:  # inside the value section, biased towards its start (headers, metadata)
        for _ in range(int(rng.integers(1, 4))):
            span = vb if rng.random() < 0.5 else min(vb, 48)
            pos = vstart + int(rng.integers(0, span))
            body[pos] ^= 1 << int(rng.integers(0, 8))
    elif op == "truncate-value" and vb:  # the value section cut, lengths fixed
        cut = int(rng.integers(0, vb))
        del body[vstart + cut:]
        struct.pack_into("<I", body, 30, cut)
    elif op == "insert-value":  # bytes inserted into or removed from the value section, lengths fixed
        pos = vstart + int(rng.integers(0, vb + 1))
        if rng.random() < 0.5 and vb:
            n = int(rng.integers(1, min(vb, 16) + 1))
            del body[pos:pos + n]
            struct.pack_into("<I", body, 30, vb - min(n, vstart + vb - pos))
        else:
            n = int(rng.integers(1, 16))
            body[pos:pos] = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
            struct.pack_into("<I", body, 30, vb + n)
    elif op == "splice":  # part of another message's value section replaces part of this one's
        other = msgs[int(rng.integers(0, len(msgs)))]
        oi, oib, ovb = _sections(other)
        piece = other[oi + oib + int(rng.integers(0, ovb + 1)):oi + oib + ovb]
        piece = piece[:int(rng.integers(0, len(piece) + 1))]
        at = int(rng.integers(0, vb + 1))
        end = at + int(rng.integers(0, vb - at + 1))
        body[vstart + at:vstart + end] = piece
        struct.pack_into("<I", body, 30, vb - (end - at) + len(piece))
    elif op == "shift-boundary":  # index/value boundary moved; total unchanged
        d = int(rng.integers(-min(ib, 8), min(vb, 8) + 1))
        struct.pack_into("<II", body, 26, ib + d, vb - d)
    elif op == "lengths":  # forged section lengths (usually rejected by the size check)
        off = 26 if rng.random() < 0.5 else 30
        old = struct.unpack_from("<I", body, off)[0]
        new = int(rng.integers(0, 2**32)) if rng.random() < 0.3 else max(0, old + int(rng.integers(-4, 5)))
        struct.pack_into("<I", body, off, new)
    elif op == "k-dim":  # forged k and/or dim
        dim, k = struct.unpack_from("<II", body, 18)
        choices = [0, 1, 255, 256, 257, 2**18, 2**18 + 1, 2**21, 2**21 + 1, 2**24, 2**32 - 1]
        for off, cur in ((18, dim), (22, k)):
            if rng.random() < 0.6:
                r = rng.random()
                new = (int(rng.choice(choices)) if r < 0.3 else int(rng.integers(0, 2**32)) if r < 0.4
                       else max(0, cur + int(rng.integers(-3, 4))))
                struct.pack_into("<I", body, off, min(new, 2**32 - 1))
        if rng.random() < 0.5 and body[5] & 1:  # dense: keep k = dim so the message reaches the value codec
            struct.pack_into("<I", body, 22, struct.unpack_from("<I", body, 18)[0])
    elif op == "codec-id":  # another value codec's id over these bytes, or pcodec's over another's
        body[7] = int(rng.choice([0, 1, 2, 4, 4, 4, int(rng.integers(0, 256))]))
    elif op == "pcodec-header" and vb >= 12:  # the fields the codec checks itself, set to neighbouring values
        pos = vstart + int(rng.choice([4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]))
        if pos < vstart + vb:
            body[pos] = (body[pos] + int(rng.choice([-1, 1, 2, 128]))) % 256
    elif op == "random-pcodec":  # a valid header up to the chunk, then random bytes
        keep = int(rng.integers(0, min(vb, 24) + 1))
        n = int(rng.integers(0, 200))
        tail = rng.integers(0, 256, n, dtype=np.uint8)
        if rng.random() < 0.5:
            tail = tail * (rng.random(n) < 0.3)
        body[vstart + keep:] = tail.astype(np.uint8).tobytes()
        struct.pack_into("<I", body, 30, keep + n)
    elif op == "random":  # random bytes, after a valid magic and version half the time
        n = int(rng.integers(0, 300))
        raw = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        return op, (_recrc(b"JWNS\x01" + raw) if rng.random() < 0.5 else raw)
    elif op == "truncate":  # the message cut: CRC and sizes broken
        return op, bytes(data[:int(rng.integers(0, len(data)))])
    elif op == "chunk-count" and vb >= 14:  # the pcodec chunk's value count, forged
        end = vstart + 6 + ((6 + (body[vstart + 6] & 0x3F) + 1) + 7) // 8 + 2
        if end + 4 <= vstart + vb:
            n = int(rng.choice([0, 1, 255, 256, 2**18 - 1, 2**18, 2**24 - 1, int(rng.integers(0, 2**24))]))
            body[end + 1:end + 4] = n.to_bytes(3, "little")
    else:
        recrc = rng.random() < 0.5
    return op, (_recrc(body) if recrc else bytes(body) + data[-4:])


def _describe(data: bytes) -> str:
    """The header fields that decide a message's cost: codec ids, dim, k."""
    if len(data) < FIXED:
        return "short"
    flags, icodec, vcodec = data[5], data[6], data[7]
    dim, k = struct.unpack_from("<II", data, 18)
    return f"{'dense' if flags & 1 else 'sparse'} index {icodec} value {vcodec} dim {dim} k {k}"


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def fuzz(seconds: float | None, seed: int, *, iterations: int | None = None, large: bool = True,
         last_input: int | None = None) -> dict:
    """Run the fuzzer for ``seconds`` (or ``iterations`` inputs). Returns the summary: inputs, accepted,
    exceptions by type, refusals by reason, the slowest decodes and the peak memory. Raises nothing itself:
    an exception other than WireError is counted (and its first example kept)."""
    rng = np.random.default_rng(seed)
    msgs = corpus(rng, large=large)
    for data in msgs[:-len(_pcodec_variants(rng, np.zeros(1000, np.float32)))]:  # the corpus itself decodes
        decode(data)
    start_rss = _maxrss_mb()
    types: collections.Counter = collections.Counter()
    reasons: collections.Counter = collections.Counter()
    ops: collections.Counter = collections.Counter()
    examples: dict[str, str] = {}
    slowest: list[tuple[float, str, int, str]] = []  # by wall-clock time
    costliest: list[tuple[float, str, int, str]] = []  # by this thread's CPU time (load-independent)
    accepted = 0
    n = 0
    t_end = None if seconds is None else time.monotonic() + seconds
    while (iterations is None or n < iterations) and (t_end is None or time.monotonic() < t_end):
        op, data = mutate(rng, msgs)
        if last_input is not None:
            os.ftruncate(last_input, 0)
            os.pwrite(last_input, data, 0)
        c0 = time.thread_time()
        t0 = time.perf_counter()
        try:
            out = decode(data)
        except WireError as exc:
            dt, cpu = time.perf_counter() - t0, time.thread_time() - c0
            types["WireError"] += 1
            text = str(exc)
            reasons[" ".join("#" if any(c.isdigit() for c in w) else w for w in text.split()[:7])] += 1
            for marker, name in (("internal", "WireError(internal)"), ("panicked", "WireError(pcodec panic)")):
                if marker in text:  # the last-resort wrapper, or a Pco panic turned into a WireError: findings
                    types[name] += 1
                    examples.setdefault(name, f"{op}: {text[:300]} input={data[:120].hex()}")
        except BaseException as exc:  # noqa: BLE001 - anything but WireError is a finding
            if isinstance(exc, KeyboardInterrupt):
                raise
            dt, cpu = time.perf_counter() - t0, time.thread_time() - c0
            types[type(exc).__name__] += 1
            examples.setdefault(type(exc).__name__, f"{op}: {exc!r}"[:300] + f" input={data[:120].hex()}")
        else:
            dt, cpu = time.perf_counter() - t0, time.thread_time() - c0
            accepted += 1
            k = out.values.shape[0]
            bad = out.values.dtype != np.float32 or (out.indices is not None and (
                out.indices.shape[0] != k or (k and (out.indices[-1] >= out.dim or np.any(np.diff(out.indices) <= 0)))))
            if bad:
                types["inconsistent result"] += 1
                examples.setdefault("inconsistent result", f"{op}: input={data[:120].hex()}")
        ops[op] += 1
        n += 1
        if len(slowest) < 5 or dt > slowest[-1][0]:
            slowest = sorted(slowest + [(dt, op, len(data), _describe(data))], reverse=True)[:5]
        if len(costliest) < 5 or cpu > costliest[-1][0]:
            costliest = sorted(costliest + [(cpu, op, len(data), _describe(data))], reverse=True)[:5]
    return {
        "seed": seed,
        "inputs": n,
        "accepted": accepted,
        "exceptions": dict(types.most_common()),
        "refusals": dict(reasons.most_common(25)),
        "mutations": dict(ops.most_common()),
        "examples": examples,
        "slowest": [{"seconds": round(t, 4), "mutation": op, "bytes": size, "header": what}
                    for t, op, size, what in slowest],
        "costliest": [{"seconds": round(t, 4), "mutation": op, "bytes": size, "header": what}
                      for t, op, size, what in costliest],
        "peak_rss_mb": round(_maxrss_mb(), 1),
        "peak_rss_growth_mb": round(_maxrss_mb() - start_rss, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--worker", help=argparse.SUPPRESS)  # internal: the child process, writing to this file
    args = ap.parse_args()
    if args.worker:
        fd = os.open(args.worker, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        print(json.dumps(fuzz(args.seconds, args.seed, last_input=fd)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        last = Path(tmp) / "last_input.bin"
        t0 = time.monotonic()
        proc = subprocess.run([sys.executable, __file__, "--seconds", str(args.seconds), "--seed", str(args.seed),
                               "--worker", str(last)], capture_output=True, text=True)
        wall = time.monotonic() - t0
        if proc.returncode != 0:
            saved = Path(f"fuzz_wire_crash_seed{args.seed}.bin")
            if last.exists():
                saved.write_bytes(last.read_bytes())
            print(f"CRASH: the fuzzing process exited with {proc.returncode} "
                  f"({'signal ' + str(-proc.returncode) if proc.returncode < 0 else 'error'}) after {wall:.0f} s; "
                  f"the input it was decoding is in {saved}\n{proc.stderr[-3000:]}")
            sys.exit(1)
        summary = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"fuzz_wire: seed {summary['seed']}, {args.seconds:.0f} s, load average {os.getloadavg()[0]:.2f}")
    print(f"  inputs tried: {summary['inputs']:,} ({summary['inputs'] / args.seconds:,.0f}/s), decoded: "
          f"{summary['accepted']:,}, crashes: none")
    print(f"  exceptions by type: {summary['exceptions']}")
    for name, example in summary["examples"].items():
        print(f"    first {name}: {example}")
    for key, what in (("slowest", "wall-clock"), ("costliest", "CPU time of the decoding thread")):
        print(f"  slowest decodes by {what}:")
        for s in summary[key]:
            print(f"    {s['seconds'] * 1e3:7.1f} ms  {s['mutation']}, {s['bytes']:,} B, {s['header']}")
    print(f"  peak RSS: {summary['peak_rss_mb']:.0f} MB (grew {summary['peak_rss_growth_mb']:.0f} MB while fuzzing)")
    print("  mutations: " + ", ".join(f"{k} {v:,}" for k, v in summary["mutations"].items()))
    print("  most frequent refusals:")
    for reason, count in summary["refusals"].items():
        print(f"    {count:>8,}  {reason}")


if __name__ == "__main__":
    main()
