"""Bounded fuzzing of the wire decoder through the wire format, above all the pcodec values it decodes in process.

The mutation engine is ``benchmarks/fuzz_wire.py`` (``python benchmarks/fuzz_wire.py --seconds 60`` fuzzes for a
minute in a child process and reports crashes with their input); these tests run a few seconds of it with fixed
seeds and assert that only WireError ever comes out, never from the decoder's last-resort wrapper nor from a
Pco panic, that whatever decodes is consistent, and that every decode is bounded in work (the CPU time of the
decoding thread, which another process's load does not inflate) and in memory. No wall-clock bound: a loaded
CI machine can stall any thread.
"""
from __future__ import annotations

import importlib.util
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from jwins.errors import WireError
from jwins.wire import DEFAULT_MAX_DIM, Message, decode, encode, layout
from jwins.wire.pcodec import PCODEC

_PATH = Path(__file__).resolve().parent.parent / "benchmarks" / "fuzz_wire.py"
_SPEC = importlib.util.spec_from_file_location("fuzz_wire", _PATH)
fuzz_wire = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(fuzz_wire)

MAX_CPU_SECONDS = 0.5  # per decode of a message of at most ~1 MB; the worst seen is 15 ms, typical well under 1 ms
MAX_RSS_GROWTH_MB = 300


def _check(summary: dict) -> None:
    assert summary["exceptions"].keys() <= {"WireError"}, (summary["exceptions"], summary["examples"])
    assert summary["costliest"][0]["seconds"] < MAX_CPU_SECONDS, summary["costliest"]
    assert summary["peak_rss_growth_mb"] < MAX_RSS_GROWTH_MB, summary


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fuzz_mutations_of_pcodec_messages(seed):
    summary = fuzz_wire.fuzz(None, seed, iterations=2500, large=seed == 1)
    _check(summary)
    assert summary["inputs"] == 2500
    assert summary["accepted"] > 0  # some mutations leave valid messages (e.g. flipped value bits)
    pcodec_refusals = sum(count for reason, count in summary["refusals"].items() if reason.startswith("pcodec"))
    assert pcodec_refusals > 500, summary["refusals"]  # the mutations reach the pcodec decoder's checks...
    reached_pco = [r for r in summary["refusals"] if r.startswith("pcodec value stream is malformed (chunk")]
    assert reached_pco, summary["refusals"]  # ...and Pco itself


def test_fuzz_every_mutation_kind_runs():
    rng = np.random.default_rng(11)
    msgs = fuzz_wire.corpus(rng, large=False)
    for i, op in enumerate(fuzz_wire.MUTATIONS):
        weights = np.zeros(len(fuzz_wire.MUTATIONS))
        weights[i] = 1.0
        for _ in range(40):
            name, data = fuzz_wire.mutate(rng, msgs, weights)
            assert name == op
            t0 = time.thread_time()
            try:
                decode(data)
            except WireError as exc:
                assert "internal" not in str(exc) and "panicked" not in str(exc), str(exc)
            assert time.thread_time() - t0 < MAX_CPU_SECONDS


def _with_values(section: bytes, k: int, dim: int | None = None) -> bytes:
    """A dense message of ``k`` values (``dim`` in the header, default k) whose value section is ``section``."""
    dim = k if dim is None else dim
    head = struct.pack("<4sBBBBBBIIIIII", b"JWNS", 1, 1, 0, 4, 0, 0, 0, 0, dim, k, 0, len(section))
    return head + section + struct.pack("<I", zlib.crc32(head + section))


def test_pcodec_random_sections_after_a_valid_header():
    """Every byte after the standalone header random (and, half the time, mostly zero): Pco must refuse."""
    rng = np.random.default_rng(5)
    values = (rng.standard_normal(300) * 0.05).astype(np.float32)
    good = PCODEC.encode(values)
    prefix = good[:15]  # magic, version, type, count hint (2 bytes), format version, chunk type and count, mode
    assert prefix[:4] == b"pco!" and prefix[10] == 5 and prefix[14] == 0
    decoded = 0
    for _ in range(3000):
        n = int(rng.integers(0, 400))
        tail = rng.integers(0, 256, n, dtype=np.uint8)
        if rng.random() < 0.5:
            tail = (tail * (rng.random(n) < 0.2)).astype(np.uint8)
        data = _with_values(prefix + tail.tobytes(), 300)
        t0 = time.thread_time()
        try:
            out = decode(data)
            decoded += 1
            assert out.values.shape == (300,)
        except WireError as exc:
            assert "internal" not in str(exc) and "panicked" not in str(exc), str(exc)
        assert time.thread_time() - t0 < MAX_CPU_SECONDS
    assert decoded < 3000


def test_pcodec_forged_counts_cannot_grow_the_output():
    """k, the count hint and the chunk counts all forged upwards over a small stream: the decoder allocates
    exactly k values (bounded by max_dim without dim) and Pco writes only into them."""
    values = np.arange(1000, dtype=np.float32)
    good = PCODEC.encode(values)
    hint_end = 6 + ((6 + (good[6] & 0x3F) + 1) + 7) // 8
    chunk = hint_end + 2
    for k in (1001, 2**18, 2**18 + 1, DEFAULT_MAX_DIM):
        for forged in (good, good[:chunk + 1] + (k - 1 if k <= 2**18 else 2**18 - 1).to_bytes(3, "little")
                       + good[chunk + 4:]):
            with pytest.raises(WireError, match="pcodec"):
                decode(_with_values(forged, k))
    with pytest.raises(WireError, match="more than max_dim"):
        decode(_with_values(good, DEFAULT_MAX_DIM + 1))
    # the original still decodes
    np.testing.assert_array_equal(decode(_with_values(good, 1000)).values, values)


def test_splices_between_pcodec_messages():
    rng = np.random.default_rng(8)
    msgs = [encode(Message(i, 0, 500, None, (rng.standard_normal(500) * s).astype(np.float32)), value_codec="pcodec")
            for i, s in enumerate((0.01, 1.0, 100.0, 1e-30))]
    sections = []
    for data in msgs:
        lay = layout(data)
        sections.append(data[lay.header_bytes - 4:len(data) - 4])
    for _ in range(1500):
        a, b = (sections[int(i)] for i in rng.integers(0, len(sections), 2))
        cut_a, cut_b = int(rng.integers(0, len(a))), int(rng.integers(0, len(b)))
        spliced = a[:cut_a] + b[cut_b:]
        try:
            out = decode(_with_values(spliced, 500))
            assert out.values.shape == (500,) and np.isfinite(out.values).all()
        except WireError as exc:
            assert "internal" not in str(exc) and "panicked" not in str(exc), str(exc)
