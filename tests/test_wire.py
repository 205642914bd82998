"""The wire format: round trips, sizes, layout, golden bytes, fuzzing, every decoding error and the decoding
bounds (``max_dim``). Longer fuzzing of the pcodec decoder through the wire format: ``test_wire_fuzz.py``."""
from __future__ import annotations

import math
import re
import struct
import zlib

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jwins.registry
from jwins.errors import WireError
from jwins.wire import (
    FORMAT_VERSION,
    INDEX_CODECS,
    VALUE_CODECS,
    Layout,
    Message,
    decode,
    encode,
    layout,
    roundtrip,
    seeded_indices,
)
from jwins.wire import bits as wire_bits
from jwins.wire.format import DEFAULT_MAX_DIM
from jwins.wire.fpzip import FPZIP
from jwins.wire.pcodec import PAGE_VALUES, PCODEC

SPARSE_CODECS = ["elias-gamma", "rice", "bitmap", "auto"]
ALL_VALUE_CODECS = ["float32", "float16", "bfloat16", "fpzip", "pcodec"]
LOSSLESS_COMPRESSED = ["fpzip", "pcodec"]
FAST_VALUE_CODECS = ["float32", "float16", "bfloat16"]
SETTINGS = dict(deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow])
INTERNAL = "internal"  # the decoder's last-resort wrapper of unexpected exceptions; must never be reached


# ---------------------------------------------------------------------------------------------------------
# helpers


def _recrc(data: bytes | bytearray) -> bytes:
    """``data`` with its trailing CRC recomputed, so that mutations reach the checks behind the CRC."""
    body = bytes(data[:-4])
    return body + struct.pack("<I", zlib.crc32(body))


def _patch(data: bytes, offset: int, fmt: str, value) -> bytes:
    """Overwrite a header field and fix the CRC."""
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, value)
    return _recrc(out)


def _expected_lossy(values: np.ndarray, value_codec: str) -> np.ndarray:
    """What the receiver must get: torch's float32 -> float16/bfloat16 -> float32 conversion."""
    t = torch.from_numpy(values.copy())
    if value_codec == "float16":
        return t.to(torch.float16).to(torch.float32).numpy()
    if value_codec == "bfloat16":
        return t.to(torch.bfloat16).to(torch.float32).numpy()
    return values


def _assert_round_trip(message: Message, index_codec: str, value_codec: str, *, dim=None) -> bytes:
    data = encode(message, index_codec=index_codec, value_codec=value_codec)
    lay = layout(data)
    assert sum(lay) == len(data)
    out = decode(data, dim=dim if dim is not None else message.dim)
    assert (out.sender, out.round, out.dim) == (message.sender, message.round, message.dim)
    assert out.extra == message.extra and list(out.extra) == list(message.extra)
    if message.indices is None:
        assert out.indices is None
    else:
        assert out.indices.dtype == np.int64
        np.testing.assert_array_equal(out.indices, message.indices)
        assert out.indices.flags.writeable and out.indices.flags.owndata
    assert out.values.dtype == np.float32 and out.values.flags.writeable and out.values.flags.owndata
    assert not np.shares_memory(out.values, np.frombuffer(data, dtype=np.uint8))
    expected = _expected_lossy(np.asarray(message.values, dtype=np.float32), value_codec)
    np.testing.assert_array_equal(out.values.view(np.uint32), expected.view(np.uint32))  # bit-exact, -0.0 too
    return data


def _values(rng: np.random.Generator, k: int, scale: float = 0.05) -> np.ndarray:
    return (rng.standard_normal(k) * scale).astype(np.float32)


def _uniform(rng: np.random.Generator, dim: int, k: int) -> np.ndarray:
    return np.sort(rng.choice(dim, size=k, replace=False)).astype(np.int64)


def _clustered(rng: np.random.Generator, dim: int, k: int, run: int = 16) -> np.ndarray:
    """Runs of consecutive indices, as a top-k selection of wavelet coefficients produces."""
    starts = rng.choice(max(dim // run, 1), size=max(k // run, 1), replace=False) * run
    idx = np.unique((starts[:, None] + np.arange(run)[None, :]).ravel())
    return idx[idx < dim][:k].astype(np.int64)


# ---------------------------------------------------------------------------------------------------------
# hypothesis strategies


@st.composite
def index_sets(draw, max_dim: int = 5000, huge_dim: bool = False):
    """(dim, sorted unique indices): uniform, clustered, empty, full, dim=1, one huge gap, both ends."""
    kind = draw(st.sampled_from(["uniform", "clustered", "empty", "full", "dim1", "huge_gap", "edges"]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    if kind == "dim1":
        dim = 1
        return dim, np.arange(draw(st.integers(0, 1)), dtype=np.int64)
    if kind == "huge_gap":
        dim = draw(st.integers(10**6, 2**32 - 1)) if huge_dim else max_dim
        first = draw(st.integers(0, 3))
        return dim, np.array([first, dim - 1], dtype=np.int64)
    dim = draw(st.integers(1, max_dim))
    if kind == "empty":
        return dim, np.zeros(0, dtype=np.int64)
    if kind == "full":
        return dim, np.arange(dim, dtype=np.int64)
    if kind == "edges":
        return dim, np.unique(np.array([0, dim - 1], dtype=np.int64))
    k = draw(st.integers(0, dim))
    if kind == "clustered":
        return dim, _clustered(rng, dim, k, run=draw(st.integers(1, 64)))
    return dim, _uniform(rng, dim, k)


finite_f32 = st.floats(width=32, allow_nan=False, allow_infinity=False)
bounded_f16 = st.floats(min_value=-65504, max_value=65504, width=32)
bounded_bf16 = st.floats(min_value=-(2.0**127), max_value=2.0**127, width=32)
extras_strategy = st.dictionaries(
    st.text(max_size=16), st.floats(allow_nan=False, allow_infinity=False), max_size=4
)


def _value_array(draw, k: int, value_codec: str) -> np.ndarray:
    elements = {"float16": bounded_f16, "bfloat16": bounded_bf16}.get(value_codec, finite_f32)
    if k <= 64:
        return np.array(draw(st.lists(elements, min_size=k, max_size=k)), dtype=np.float32)
    head = draw(st.lists(elements, min_size=8, max_size=8))  # special values, then random bulk
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    bulk = _values(rng, k - 8, scale=float(draw(st.sampled_from([1e-3, 1.0, 100.0]))))
    return np.concatenate([np.array(head, dtype=np.float32), bulk])


# ---------------------------------------------------------------------------------------------------------
# round trips


@pytest.mark.parametrize("value_codec", FAST_VALUE_CODECS)
@pytest.mark.parametrize("index_codec", ["elias-gamma", "rice", "auto"])
@settings(max_examples=40, **SETTINGS)
@given(data=st.data())
def test_round_trip_sparse(index_codec, value_codec, data):
    dim, idx = data.draw(index_sets(huge_dim=True))
    values = _value_array(data.draw, idx.shape[0], value_codec)
    extra = data.draw(extras_strategy)
    message = Message(sender=data.draw(st.integers(0, 2**32 - 1)), round=data.draw(st.integers(0, 2**32 - 1)),
                      dim=dim, indices=idx, values=values, extra=extra)
    _assert_round_trip(message, index_codec, value_codec)


@pytest.mark.parametrize("value_codec", FAST_VALUE_CODECS)
@settings(max_examples=40, **SETTINGS)
@given(data=st.data())
def test_round_trip_bitmap(value_codec, data):
    dim, idx = data.draw(index_sets(max_dim=100_000))
    values = _value_array(data.draw, idx.shape[0], value_codec)
    message = Message(1, 2, dim, idx, values, data.draw(extras_strategy))
    data_bytes = _assert_round_trip(message, "bitmap", value_codec)
    assert layout(data_bytes).index_bytes == math.ceil(dim / 8)


@pytest.mark.parametrize("value_codec", LOSSLESS_COMPRESSED)
@pytest.mark.parametrize("index_codec", SPARSE_CODECS)
@settings(max_examples=8, **SETTINGS)
@given(data=st.data())
def test_round_trip_compressed(index_codec, value_codec, data):
    dim, idx = data.draw(index_sets(max_dim=3000))
    values = _value_array(data.draw, idx.shape[0], value_codec)
    _assert_round_trip(Message(4, 5, dim, idx, values, {"alpha": 0.5}), index_codec, value_codec)


@pytest.mark.parametrize("value_codec", ALL_VALUE_CODECS)
@settings(max_examples=10, **SETTINGS)
@given(data=st.data())
def test_round_trip_dense(value_codec, data):
    dim = data.draw(st.integers(0, 3000))
    values = _value_array(data.draw, dim, value_codec)
    message = Message(0, 9, dim, None, values, data.draw(extras_strategy))
    out = _assert_round_trip(message, "rice", value_codec)  # the index codec is ignored for dense messages
    assert out[6] == INDEX_CODECS["dense"].id and layout(out).index_bytes == 0


@pytest.mark.parametrize("index_codec", SPARSE_CODECS)
@pytest.mark.parametrize("value_codec", ALL_VALUE_CODECS)
def test_round_trip_every_codec_pair(index_codec, value_codec):
    rng = np.random.default_rng(5)
    dim = 5000
    for idx in (_uniform(rng, dim, 500), _clustered(rng, dim, 700), np.zeros(0, np.int64), np.arange(dim)):
        values = _values(rng, idx.shape[0])
        _assert_round_trip(Message(1, 1, dim, idx, values, {"alpha": 0.1}), index_codec, value_codec)


def test_special_values_round_trip():
    values = np.array([0.0, -0.0, 1e-45, -1e-45, 1.17e-38, 3.4028235e38, -3.4028235e38, 65504.0, 6e-8, 1.0],
                      dtype=np.float32)
    idx = np.arange(values.shape[0], dtype=np.int64) * 3
    for value_codec in ("float32", "fpzip", "pcodec"):
        _assert_round_trip(Message(0, 0, 40, idx, values), "elias-gamma", value_codec)
    small = values[np.abs(values) <= 65504]
    _assert_round_trip(Message(0, 0, 40, idx[: small.shape[0]], small), "rice", "float16")
    near_max = values[np.abs(values) < 3.38e38]
    _assert_round_trip(Message(0, 0, 40, idx[: near_max.shape[0]], near_max), "rice", "bfloat16")


def test_lossy_codecs_match_torch_on_random_bit_patterns():
    rng = np.random.default_rng(11)
    bits = rng.integers(0, 2**32, size=200_000, dtype=np.uint64).astype(np.uint32)
    values = bits.view(np.float32)
    values = values[np.isfinite(values)]
    bf = values[np.abs(values) < 3.38e38]
    out = decode(encode(Message(0, 0, bf.shape[0], None, bf), value_codec="bfloat16"))
    np.testing.assert_array_equal(out.values.view(np.uint32), _expected_lossy(bf, "bfloat16").view(np.uint32))
    half = values[np.abs(values) <= 65504]
    out = decode(encode(Message(0, 0, half.shape[0], None, half), value_codec="float16"))
    np.testing.assert_array_equal(out.values.view(np.uint32), _expected_lossy(half, "float16").view(np.uint32))


@pytest.mark.parametrize("kind", ["index", "value"])
def test_registered_codecs_have_distinct_wire_ids_and_their_registry_names(kind):
    registry = jwins.registry.INDEX_CODECS if kind == "index" else jwins.registry.VALUE_CODECS
    table = INDEX_CODECS if kind == "index" else VALUE_CODECS
    codecs = {name: registry.load(name) for name in registry.names()}
    assert all(codec.name == name for name, codec in codecs.items())
    ids = [codec.id for codec in codecs.values() if codec.id >= 0]  # auto (-1) never appears on the wire
    assert len(ids) == len(set(ids)) and all(0 <= i <= 255 for i in ids)
    assert list(table) == registry.names() and all(table[name] is codecs[name] for name in codecs)
    assert table.by_id() == {codec.id: codec for codec in codecs.values() if codec.id >= 0}


@pytest.fixture
def scratch_value_codecs(monkeypatch):
    """jwins.registry.VALUE_CODECS, restored after the test."""
    registry = jwins.registry.VALUE_CODECS
    for attribute in ("_entries", "_aliases", "_loaded"):
        monkeypatch.setattr(registry, attribute, dict(getattr(registry, attribute)))
    return registry


def test_codec_tables_follow_the_registry(scratch_value_codecs):
    from jwins.wire.value_codecs import FLOAT32, ValueCodec

    scratch_value_codecs.register("f32-copy", FLOAT32._replace(name="f32-copy", id=9))
    message = Message(0, 0, 4, np.array([1, 3]), np.array([0.5, -2.0], np.float32))
    data = encode(message, value_codec="f32-copy")
    assert data[7] == 9 and "f32-copy" in VALUE_CODECS
    np.testing.assert_array_equal(decode(data).values, message.values)
    scratch_value_codecs.register("clash", ValueCodec("clash", 9, FLOAT32.encode, FLOAT32.decode, True))
    with pytest.raises(ValueError, match="'f32-copy' and 'clash' both have wire id 9"):
        decode(data)
    with pytest.raises(ValueError, match="both have wire id 9"):
        encode(message)


@pytest.mark.parametrize("value_codec", ALL_VALUE_CODECS)
def test_roundtrip_is_what_the_receiver_decodes(value_codec):
    rt = roundtrip(value_codec)
    if VALUE_CODECS[value_codec].lossless:
        assert value_codec in ("float32", "fpzip", "pcodec") and rt is None
        return
    values = _values(np.random.default_rng(3), 1000)
    sent = decode(encode(Message(0, 0, 1000, None, values), value_codec=value_codec)).values
    np.testing.assert_array_equal(rt(values).view(np.uint32), sent.view(np.uint32))
    np.testing.assert_array_equal(rt(values).view(np.uint32), _expected_lossy(values, value_codec).view(np.uint32))
    np.testing.assert_array_equal(rt(values.reshape(10, 100)), sent.reshape(10, 100))
    assert rt(values).dtype == np.float32 and rt(values) is not values
    with pytest.raises(ValueError, match="cannot represent 1 values"):
        rt(np.array([1.0, 3.4e38], np.float32))  # finite, beyond both 16-bit formats
    with pytest.raises(ValueError, match="unknown value codec 'f8'"):
        roundtrip("f8")


def test_extras_limits_round_trip():
    extra = {f"k{i:02d}" + "é" * 30 + "x": float(i) * 0.5 for i in range(32)}  # 32 keys of 64 utf-8 bytes
    assert all(len(key.encode()) == 64 for key in extra)
    extra["k00" + "é" * 30 + "x"] = 2.0**53 - 1
    _assert_round_trip(Message(1, 2, 10, np.array([3]), np.ones(1, np.float32), extra), "rice", "float32")
    _assert_round_trip(Message(1, 2, 10, np.array([3]), np.ones(1, np.float32), {"": -0.0}), "rice", "float32")


def test_input_dtypes_are_accepted():
    idx = np.array([1, 4, 9], dtype=np.uint16)
    out = decode(encode(Message(0, 0, 10, idx, np.array([1, 2, 3], dtype=np.float64))))
    np.testing.assert_array_equal(out.indices, [1, 4, 9])
    np.testing.assert_array_equal(out.values, [1, 2, 3])
    out = decode(bytearray(encode(Message(0, 0, 10, [2, 3], [0.5, 0.25]))))
    np.testing.assert_array_equal(out.indices, [2, 3])
    out = decode(memoryview(encode(Message(0, 0, 10, [2, 3], [0.5, 0.25]))))
    np.testing.assert_array_equal(out.values, [0.5, 0.25])


def _bits_reference(values, widths) -> bytes:
    """Slow, obviously right MSB-first concatenation of fields, zero-padded to a byte."""
    text = "".join(format(int(v), f"0{int(w)}b") if w else "" for v, w in zip(values, widths))
    text += "0" * (-len(text) % 8)
    return bytes(int(text[i:i + 8], 2) for i in range(0, len(text), 8))


@settings(max_examples=150, **SETTINGS)
@given(widths=st.lists(st.integers(0, 32), min_size=1, max_size=200), seed=st.integers(0, 2**32 - 1))
def test_bit_field_packing_matches_reference(widths, seed):
    rng = np.random.default_rng(seed)
    w = np.array(widths, dtype=np.int64)
    v = (rng.integers(0, 2**32, w.shape[0], dtype=np.uint64) & ((np.uint64(1) << w.astype(np.uint64))
                                                                 - np.uint64(1))).astype(np.int64)
    ends = np.cumsum(w)
    packed = wire_bits.pack_fields(v, ends, int(ends[-1]))
    assert packed == _bits_reference(v, w)
    np.testing.assert_array_equal(wire_bits.gather_fields(packed, ends - w, w), v)


# ---------------------------------------------------------------------------------------------------------
# seed codec


def test_seeded_indices_definition_and_chunking():
    for seed, dim, alpha in [(0, 0, 0.5), (1, 1, 1.0), (7, 1000, 0.1), (2**53 - 1, 5000, 0.9), (3, 50, 0.0)]:
        expected = np.flatnonzero(np.random.default_rng(seed).random(dim) < alpha)
        got = seeded_indices(seed, dim, alpha)
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got, expected)
    dim = (1 << 20) * 2 + 12345  # drawn in chunks: must equal one big draw
    expected = np.flatnonzero(np.random.default_rng(99).random(dim) < 0.001)
    np.testing.assert_array_equal(seeded_indices(99, dim, 0.001), expected)


@pytest.mark.parametrize("value_codec", ALL_VALUE_CODECS)
def test_seed_codec_round_trip(value_codec):
    dim, alpha, seed = 20_000, 0.05, 123456789
    idx = seeded_indices(seed, dim, alpha)
    values = _values(np.random.default_rng(0), idx.shape[0])
    message = Message(2, 3, dim, idx, values, {"mask_seed": float(seed), "alpha": alpha})
    data = _assert_round_trip(message, "seed", value_codec)
    assert layout(data).index_bytes == 0


def test_seed_codec_encode_errors():
    idx = seeded_indices(5, 100, 0.3)
    vals = np.ones(idx.shape[0], np.float32)
    with pytest.raises(ValueError, match="mask_seed"):
        encode(Message(0, 0, 100, idx, vals, {"alpha": 0.3}), index_codec="seed")
    with pytest.raises(ValueError, match="not seeded_indices"):
        encode(Message(0, 0, 100, idx, vals, {"mask_seed": 6.0, "alpha": 0.3}), index_codec="seed")
    with pytest.raises(ValueError, match="integer-valued"):
        encode(Message(0, 0, 100, idx, vals, {"mask_seed": 5.5, "alpha": 0.3}), index_codec="seed")
    with pytest.raises(ValueError, match="integer-valued"):
        encode(Message(0, 0, 100, idx, vals, {"mask_seed": 2.0**53, "alpha": 0.3}), index_codec="seed")


# ---------------------------------------------------------------------------------------------------------
# sizes


def _gamma_bits(idx: np.ndarray) -> int:
    gaps = np.diff(idx, prepend=-1)
    return int(sum(2 * (int(g).bit_length() - 1) + 1 for g in gaps))


def _log2_binomial(dim: int, k: int) -> float:
    return (math.lgamma(dim + 1) - math.lgamma(k + 1) - math.lgamma(dim - k + 1)) / math.log(2)


@pytest.mark.parametrize("kind", ["uniform", "clustered"])
def test_index_section_sizes(kind):
    rng = np.random.default_rng(1)
    dim = 89_834
    for frac in (0.001, 0.01, 0.1, 0.5):
        k = int(frac * dim)
        idx = _uniform(rng, dim, k) if kind == "uniform" else _clustered(rng, dim, k)
        k = idx.shape[0]
        vals = np.zeros(k, np.float32)
        m = Message(0, 0, dim, idx, vals)
        sizes = {c: layout(encode(m, index_codec=c)).index_bytes for c in ("elias-gamma", "rice", "bitmap", "auto")}
        assert sizes["bitmap"] == math.ceil(dim / 8)
        gamma = _gamma_bits(idx)
        low = (gamma - k) // 2  # stream 2: the bits below each gap's leading one
        assert sizes["elias-gamma"] == math.ceil((low + k) / 8) + math.ceil(low / 8)  # = gamma bits + padding
        assert gamma / 8 <= sizes["elias-gamma"] <= gamma / 8 + 2
        # rice: r minimises the exact length over 0..31
        x = np.diff(idx, prepend=-1) - 1
        costs = [int((x >> r).sum()) + k * (r + 1) for r in range(32)]
        r = int(np.argmin(costs))
        assert sizes["rice"] == math.ceil((costs[r] - k * r) / 8) + math.ceil(k * r / 8)
        assert sizes["auto"] == min(sizes["elias-gamma"], sizes["rice"], sizes["bitmap"])
        if kind == "uniform" and frac >= 0.01:
            bound = _log2_binomial(dim, k)
            assert sizes["rice"] * 8 <= bound * 1.03 + 16, (frac, sizes["rice"] * 8 / bound)


def test_auto_records_the_winner():
    dim = 1000
    dense_ish = Message(0, 0, dim, np.arange(0, dim, 2), np.zeros(dim // 2, np.float32))
    data = encode(dense_ish, index_codec="auto")
    assert data[6] in (INDEX_CODECS["rice"].id, INDEX_CODECS["bitmap"].id, INDEX_CODECS["elias-gamma"].id)
    assert layout(data).index_bytes == min(
        layout(encode(dense_ish, index_codec=c)).index_bytes for c in ("elias-gamma", "rice", "bitmap"))
    # at half density rice with r=0 wins: its unary stream is the bitmap cut after the last index
    half = Message(0, 0, dim, _uniform(np.random.default_rng(0), dim, 500), np.zeros(500, np.float32))
    data = encode(half, index_codec="auto")
    assert (data[6], data[8]) == (INDEX_CODECS["rice"].id, 0)
    assert layout(data).index_bytes <= layout(encode(half, index_codec="bitmap")).index_bytes


# ---------------------------------------------------------------------------------------------------------
# layout


def test_layout_matches_sections():
    rng = np.random.default_rng(2)
    idx = _uniform(rng, 1000, 100)
    m = Message(1, 2, 1000, idx, _values(rng, 100), {"alpha": 0.1, "é": 2.0})
    for ic in SPARSE_CODECS:
        for vc in ALL_VALUE_CODECS:
            data = encode(m, index_codec=ic, value_codec=vc)
            lay = layout(data)
            assert isinstance(lay, Layout) and sum(lay) == len(data)
            assert lay.header_bytes == 34 + (1 + 5 + 8) + (1 + 2 + 8) + 4
            if vc == "float32":
                assert lay.value_bytes == 400
            if vc in ("float16", "bfloat16"):
                assert lay.value_bytes == 200
    dense = encode(Message(0, 0, 10, None, np.zeros(10, np.float32)))
    assert layout(dense) == Layout(38, 0, 40)
    with pytest.raises(WireError, match="bad magic"):
        layout(b"nope" + bytes(40))
    with pytest.raises(WireError, match="truncated"):
        layout(dense[:-1])


# ---------------------------------------------------------------------------------------------------------
# golden bytes: the format must not change silently

GOLDEN_MESSAGE = Message(
    sender=3, round=7, dim=20, indices=np.array([1, 2, 3, 10, 17]),
    values=np.array([0.5, -1.25, 3.0, 1e-3, -0.0], dtype=np.float32), extra={"alpha": 0.25},
)
_HEAD = "4a574e5301000{ic}00{p}0103000000070000001400000005000000{il}000000{vl}000000"
_EXTRA = "05616c706861000000000000d03f"
_F32 = "0000003f0000a0bf000040406f12833a00000080"
GOLDEN = {
    ("elias-gamma", "float32"): _HEAD.format(ic=1, p="00", il="03", vl="14") + _EXTRA + "724078" + _F32
    + "3ea61939",
    ("rice", "float32"): _HEAD.format(ic=2, p="01", il="03", vl="14") + _EXTRA + "e22080" + _F32 + "b1d65e44",
    ("bitmap", "float32"): _HEAD.format(ic=3, p="00", il="03", vl="14") + _EXTRA + "702040" + _F32 + "1c5925b5",
    ("auto", "float32"): _HEAD.format(ic=1, p="00", il="03", vl="14") + _EXTRA + "724078" + _F32 + "3ea61939",
}
GOLDEN_VALUE_SECTIONS = {  # value sections of GOLDEN_MESSAGE (with elias-gamma indices)
    "float16": "0038" "00bd" "0042" "1914" "0080",
    "bfloat16": "003f" "a0bf" "4040" "833a" "0080",
    "fpzip": "66707929870ef0ff0004fb000000ff000000ff000000ff00f33bd3cca07baa54839ecdcf2e3645574e99f2f110eef80000",
    # "pco!", standalone version 3, no uniform type, count hint 5 (6 bits 2 = 3-bit field, then 101), format
    # 4.1, one chunk: float32 (5), 5 - 1 in 24 bits, classic mode without delta (00), bins, page; termination 00
    "pcodec": "70636f21" "03" "00" "4201" "0401" "05" "040000" "001000f8ffff02fa00"
              "0100a07e000000400000f81f4e62440f0000fa03" "00",
}
GOLDEN_DENSE = (  # Message(1, 0, 3, None, [1, 2, -4])
    "4a574e53" "01" "01" "00" "00" "00" "00" "01000000" "00000000" "03000000" "03000000" "00000000" "0c000000"
    "0000803f" "00000040" "000080c0" "4acfc70a"
)
GOLDEN_SEED = (  # Message(1, 0, 20, seeded_indices(11, 20, 0.3), arange(7), {"mask_seed": 11, "alpha": 0.3})
    "4a574e53" "01" "00" "04" "00" "00" "02" "01000000" "00000000" "14000000" "07000000" "00000000" "1c000000"
    "09" "6d61736b5f73656564" "0000000000002640" "05" "616c706861" "333333333333d33f"
    "000000000000803f0000004000004040000080400000a0400000c040" "fbe099e7"
)


def test_golden_hex_layout_is_what_the_docs_say():
    # the first golden message spelled out field by field (see docs/wire-format.md)
    data = bytes.fromhex(GOLDEN[("elias-gamma", "float32")])
    assert data[:4] == b"JWNS" and data[4] == FORMAT_VERSION
    assert struct.unpack_from("<BBBBB", data, 5) == (0, 1, 0, 0, 1)  # flags, index, value, param, extras
    assert struct.unpack_from("<IIIIII", data, 10) == (3, 7, 20, 5, 3, 20)
    assert data[34] == 5 and data[35:40] == b"alpha" and struct.unpack_from("<d", data, 40) == (0.25,)
    # gaps 2,1,1,7,7 -> stream 1: 01 1 1 001 001 -> 0111001001 ; stream 2: 0, 11, 11 -> 01111
    assert data[48:50] == bytes([0b01110010, 0b01000000]) and data[50] == 0b01111000
    assert struct.unpack_from("<I", data, len(data) - 4)[0] == zlib.crc32(data[:-4])


@pytest.mark.parametrize("codecs", list(GOLDEN))
def test_golden_bytes_sparse(codecs):
    index_codec, value_codec = codecs
    assert encode(GOLDEN_MESSAGE, index_codec=index_codec, value_codec=value_codec).hex() == GOLDEN[codecs]
    out = decode(bytes.fromhex(GOLDEN[codecs]), dim=20)
    np.testing.assert_array_equal(out.indices, GOLDEN_MESSAGE.indices)


@pytest.mark.parametrize("value_codec", ["float16", "bfloat16", "fpzip", "pcodec"])
def test_golden_bytes_values(value_codec):
    data = encode(GOLDEN_MESSAGE, index_codec="elias-gamma", value_codec=value_codec)
    assert data[7] == VALUE_CODECS[value_codec].id
    assert _sections(data)[1].hex() == GOLDEN_VALUE_SECTIONS[value_codec]
    out = decode(data, dim=20)
    np.testing.assert_array_equal(out.values, _expected_lossy(GOLDEN_MESSAGE.values, value_codec))


def test_golden_bytes_dense_and_seed():
    dense = Message(1, 0, 3, None, np.array([1.0, 2.0, -4.0], np.float32))
    assert encode(dense).hex() == GOLDEN_DENSE
    assert encode(dense, index_codec="bitmap", value_codec="float32").hex() == GOLDEN_DENSE
    idx = seeded_indices(11, 20, 0.3)
    np.testing.assert_array_equal(idx, [0, 3, 4, 6, 7, 13, 14])
    seeded = Message(1, 0, 20, idx, np.arange(7, dtype=np.float32), {"mask_seed": 11.0, "alpha": 0.3})
    assert encode(seeded, index_codec="seed").hex() == GOLDEN_SEED
    out = decode(bytes.fromhex(GOLDEN_SEED), dim=20)
    np.testing.assert_array_equal(out.indices, idx)




# ---------------------------------------------------------------------------------------------------------
# encode errors


def test_encode_rejects_non_finite_values():
    vals = np.array([1.0, np.nan, np.inf, -np.inf, 2.0], np.float32)
    with pytest.raises(ValueError, match=r"3 NaN/inf entries \(1 NaN, 2 inf\)"):
        encode(Message(0, 0, 10, np.arange(5), vals))
    with pytest.raises(ValueError, match="NaN/inf"):
        encode(Message(0, 0, 5, None, vals))


@pytest.mark.parametrize("message, kwargs, match", [
    (Message(0, 0, 10, np.array([3, 2]), np.ones(2, np.float32)), {}, "not strictly increasing"),
    (Message(0, 0, 10, np.array([3, 3]), np.ones(2, np.float32)), {}, "not strictly increasing"),
    (Message(0, 0, 10, np.array([3, 10]), np.ones(2, np.float32)), {}, "out of range for dim 10"),
    (Message(0, 0, 10, np.array([-1, 3]), np.ones(2, np.float32)), {}, "negative"),
    (Message(0, 0, 10, np.array([1, 2, 3]), np.ones(2, np.float32)), {}, "3 indices but 2 values"),
    (Message(0, 0, 10, None, np.ones(9, np.float32)), {}, "dense message must carry dim values"),
    (Message(0, 0, 2, np.array([0, 1, 2]), np.ones(3, np.float32)), {}, "k=3 > dim=2"),
    (Message(-1, 0, 10, None, np.ones(10, np.float32)), {}, "sender=-1"),
    (Message(0, 2**32, 10, None, np.ones(10, np.float32)), {}, "round=4294967296"),
    (Message(0, 0, 2**32, np.array([1]), np.ones(1, np.float32)), {}, "dim=4294967296"),
    (Message(0, 0, 1, None, np.ones(1, np.float32)), {"index_codec": "zip"}, "unknown index codec 'zip'"),
    (Message(0, 0, 1, None, np.ones(1, np.float32)), {"value_codec": "f8"}, "unknown value codec 'f8'"),
    (Message(0, 0, 10, np.array([1]), np.ones(1, np.float32)), {"index_codec": "dense"}, "only for dense"),
    (Message(0, 0, 10, np.array([1]), np.array([70000.0], np.float32)), {"value_codec": "float16"},
     "float16 cannot represent 1 values"),
    (Message(0, 0, 10, np.array([1]), np.array([3.4e38], np.float32)), {"value_codec": "bfloat16"},
     "bfloat16 cannot represent 1 values"),
    (Message(0, 0, 10, np.array([1]), np.ones((1, 1), np.float32)), {}, "1-D"),
    (Message(0, 0, 10, np.array([1]), np.array(["a"])), {}, "floating point"),
    (Message(0, 0, 10, np.array([1.5]), np.ones(1, np.float32)), {}, "integers"),
    (Message(0, 0, 1, None, np.ones(1, np.float32), {f"k{i}": 1.0 for i in range(33)}), {}, "at most 32 extras"),
    (Message(0, 0, 1, None, np.ones(1, np.float32), {"x" * 65: 1.0}), {}, "65 bytes"),
    (Message(0, 0, 1, None, np.ones(1, np.float32), {"a": float("nan")}), {}, "finite"),
    (Message(0, 0, 1, None, np.ones(1, np.float32), {"a": "b"}), {}, "must be a float"),
    (Message(0, 0, 1, None, np.ones(1, np.float32), {1: 1.0}), {}, "keys must be str"),
])
def test_encode_errors(message, kwargs, match):
    with pytest.raises(ValueError, match=match):
        encode(message, **kwargs)


# ---------------------------------------------------------------------------------------------------------
# decode errors, one per named case

BASE = Message(5, 6, 50, np.array([1, 4, 9, 30]), np.array([1, 2, 3, 4], np.float32), {"alpha": 0.08})


def _base(index_codec="elias-gamma", value_codec="float32") -> bytes:
    return encode(BASE, index_codec=index_codec, value_codec=value_codec)


def _rebuild(index: bytes, values: bytes, *, flags=0, index_codec=1, value_codec=0, param=0, dim=50, k=4,
             extras: bytes = b"") -> bytes:
    n_extras = 0
    pos = 0
    while pos < len(extras):
        pos += 1 + extras[pos] + 8
        n_extras += 1
    head = struct.pack("<4sBBBBBBIIIIII", b"JWNS", 1, flags, index_codec, value_codec, param, n_extras,
                       5, 6, dim, k, len(index), len(values))
    body = head + extras + index + values
    return body + struct.pack("<I", zlib.crc32(body))


def _extra(key: bytes, value: float) -> bytes:
    return bytes([len(key)]) + key + struct.pack("<d", value)


def _sections(data: bytes) -> tuple[bytes, bytes]:
    lay = layout(data)
    start = lay.header_bytes - 4
    return data[start:start + lay.index_bytes], data[start + lay.index_bytes:len(data) - 4]


F32_VALUES = np.array([1, 2, 3, 4], np.float32).tobytes()


def _cases():
    good = _base()
    isec, vsec = _sections(good)
    extras_len = 1 + 5 + 8
    cases = [
        ("empty", b"", "message truncated"),
        ("short magic", b"JW", "message truncated"),
        ("bad magic", b"JWNX" + good[4:], "bad magic"),
        ("random", b"\x00" * 60, "bad magic"),
        ("only magic", b"JWNS", "message truncated"),
        ("bad version", good[:4] + b"\x07" + good[5:], r"unsupported format version 7 \(this jwins reads version 1\)"),
        ("short header", good[:20], "message truncated: 20 bytes"),
        ("truncated values", good[:-10], "message truncated: header says 16 value bytes but only 6 remain"),
        ("truncated index", good[:34 + extras_len + 2 + 4], "message truncated: header says 3 index bytes but only 2"),
        ("truncated extras", good[:34 + extras_len + 2], "message truncated inside extra 0 of 1"),
        ("truncated crc", good[:-2], "message truncated"),
        ("extended", good + b"\x00\x00", "2 bytes more than its header's sizes add up to"),
        ("crc", good[:-1] + bytes([good[-1] ^ 1]), "CRC mismatch"),
        ("crc body", good[:40] + bytes([good[40] ^ 0x10]) + good[41:], "CRC mismatch"),
        ("flags", _patch(good, 5, "<B", 0x82), "unknown flags"),
        ("unknown index codec", _patch(good, 6, "<B", 9), "unknown index codec id 9"),
        ("unknown value codec", _patch(good, 7, "<B", 200), "unknown value codec id 200"),
        ("too many extras", _patch(good, 9, "<B", 33), "33 extras"),
        ("k > dim", _rebuild(isec, vsec, dim=3), "k=4 > dim=3"),
        ("sizes do not add up", _patch(good, 26, "<I", len(isec) + 1), "header says 16 value bytes but only 15 remain"),
        ("sizes do not add up 2", _patch(good, 30, "<I", 15), "1 bytes more than"),
        ("values wrong count", _rebuild(isec, vsec[:12]), "float32 value section must hold 4\\*k=16 bytes"),
        ("values wrong count f16", _rebuild(isec, vsec[:6], value_codec=1), "float16 value section must hold"),
        ("values wrong count bf16", _rebuild(isec, vsec, value_codec=2), "bfloat16 value section must hold"),
        ("nan", _rebuild(isec, np.array([1, np.nan, np.inf, np.nan], np.float32).tobytes()),
         "values contain 3 NaN/inf"),
        ("nan f16", _rebuild(isec, np.array([1, np.nan, 2, 3], np.float16).tobytes(), value_codec=1),
         "values contain 1 NaN/inf"),
        ("dense wrong count", _rebuild(b"", F32_VALUES, flags=1, index_codec=0, dim=5),
         "dense message must carry dim values"),
        ("dense with index codec", _rebuild(b"", np.zeros(50, np.float32).tobytes(), flags=1, index_codec=1,
                                            k=50), "dense flag contradicts index codec 'elias-gamma'"),
        ("sparse with dense codec", _rebuild(b"", F32_VALUES, flags=0, index_codec=0),
         "sparse flag contradicts index codec 'dense'"),
        ("dense with index bytes", _rebuild(b"\x01", np.zeros(50, np.float32).tobytes(), flags=1, index_codec=0,
                                            k=50), "empty index section"),
        # elias-gamma streams
        ("gamma ends early", _rebuild(isec[:1], F32_VALUES), "ends early"),
        ("gamma no ones", _rebuild(b"\x00\x00\x00", F32_VALUES), "ends early"),
        ("gamma trailing garbage", _rebuild(isec + b"\x00", F32_VALUES), "its 4 codes need 3"),
        ("gamma padding bits", _rebuild(bytes([isec[0], isec[1] | 0x01]) + isec[2:], F32_VALUES),
         "non-zero padding bits"),
        ("gamma stream2 padding", _rebuild(bytes.fromhex("724079"), F32_VALUES + F32_VALUES[:4], k=5, dim=20),
         "non-zero padding bits at its end"),  # the golden message's index section, last padding bit set
        ("gamma out of range", _rebuild(isec, F32_VALUES, dim=30), "index 30 out of range for dim 30"),
        ("gamma param", _rebuild(isec, F32_VALUES, param=3), "takes no parameter"),
        ("gamma k=0 with bytes", _rebuild(b"\x80", b"", k=0), "must be empty for k=0"),
        ("gamma too many codes", _rebuild(isec, np.zeros(20, np.float32).tobytes(), k=20), "ends early"),
        ("gamma extra code", _rebuild(isec, np.zeros(5, np.float32).tobytes(), k=5), "non-zero padding bits"),
        ("gamma huge exponent", _rebuild(b"\x00\x00\x00\x00\x00\x80" + bytes(5), F32_VALUES[:4], k=1, dim=2**32 - 1),
         "ends early: it holds 0 unary codes in the 4 bytes valid codes could occupy"),
        ("gamma gap beyond dim", _rebuild(b"\x04\x00", F32_VALUES[:4], k=1, dim=20),
         "index out of range for dim 20: an elias-gamma gap has 6 bits"),
        # dim expectations and allocation caps
        ("seed needs extras", _rebuild(b"", F32_VALUES, index_codec=4), "mask_seed"),
        ("seed count", _rebuild(b"", F32_VALUES, index_codec=4, extras=_extra(b"mask_seed", 1.0)
                                + _extra(b"alpha", 0.5)), "the header says k=4"),
        ("seed bad seed", _rebuild(b"", F32_VALUES, index_codec=4, extras=_extra(b"mask_seed", -1.0)
                                   + _extra(b"alpha", 0.5)), "integer-valued"),
        ("seed index bytes", _rebuild(b"\x00", F32_VALUES, index_codec=4, extras=_extra(b"mask_seed", 1.0)
                                      + _extra(b"alpha", 0.5)), "carries no index section"),
        ("seed dim cap", _rebuild(b"", F32_VALUES, index_codec=4, dim=2**32 - 1,
                                  extras=_extra(b"mask_seed", 1.0) + _extra(b"alpha", 0.5)),
         f"message has dim=4294967295, more than max_dim={DEFAULT_MAX_DIM}"),
        ("dense fpzip cap", _rebuild(b"", b"\x00" * 40, flags=1, index_codec=0, value_codec=3, dim=2**32 - 1,
                                     k=2**32 - 1), f"more than max_dim={DEFAULT_MAX_DIM}"),
        ("bitmap huge dim", _rebuild(b"\x00", F32_VALUES, index_codec=3, dim=2**32 - 1),
         "bitmap index section must hold ceil\\(dim/8\\)=536870912 bytes"),
        ("dense huge dim", _rebuild(b"", F32_VALUES, flags=1, index_codec=0, dim=2**32 - 1, k=2**32 - 1),
         "float32 value section must hold"),
        ("bitmap dim cap", _rebuild(b"\x00", F32_VALUES, index_codec=3, dim=DEFAULT_MAX_DIM + 1),
         f"message has dim={DEFAULT_MAX_DIM + 1}, more than max_dim={DEFAULT_MAX_DIM}"),
        # extras
        ("extra key too long", _rebuild(isec, vsec, extras=bytes([65]) + b"x" * 65 + bytes(8)), "65-byte key"),
        ("extra bad utf8", _rebuild(isec, vsec, extras=_extra(b"\xff\xfe", 1.0)), "not valid utf-8"),
        ("extra duplicate", _rebuild(isec, vsec, extras=_extra(b"a", 1.0) + _extra(b"a", 2.0)), "duplicate extra"),
        ("extra nan", _rebuild(isec, vsec, extras=_extra(b"a", float("nan"))), "not finite"),
        ("extra truncated", _patch(_rebuild(b"", b"", k=0), 9, "<B", 1), "truncated inside extra 0 of 1"),
        ("extra key past end", _patch(good, 9, "<B", 2), "extra 1 has a 82-byte key"),
    ]
    # rice streams
    rgood = _base("rice")
    risec, _ = _sections(rgood)
    r = rgood[8]
    cases += [
        ("rice r range", _rebuild(risec, F32_VALUES, index_codec=2, param=32), "r=32 out of range"),
        ("rice ends early", _rebuild(risec[:1], F32_VALUES, index_codec=2, param=r), "ends early"),
        ("rice trailing", _rebuild(risec + b"\x00", F32_VALUES, index_codec=2, param=r),
         f"its 4 codes with r={r} need"),
        ("rice out of range", _rebuild(risec, F32_VALUES, index_codec=2, param=r, dim=30), "out of range for dim 30"),
        ("rice quotient sum", _rebuild(b"\x01", F32_VALUES[:4], index_codec=2, param=0, k=1, dim=5),
         "quotients sum beyond"),
        ("rice section too long", _rebuild(b"\x00" * 8 + b"\x80", F32_VALUES[:4], index_codec=2, param=0, k=1, dim=5),
         "its 1 codes with r=0 need at most 1"),
    ]
    # bitmap
    bgood = _base("bitmap")
    bisec, _ = _sections(bgood)
    cases += [
        ("bitmap size", _rebuild(bisec[:-1], F32_VALUES, index_codec=3), "must hold ceil\\(dim/8\\)=7 bytes"),
        ("bitmap count", _rebuild(bytes([bisec[0] | 0x80]) + bisec[1:], F32_VALUES, index_codec=3),
         "bitmap holds 5 indices, the header says k=4"),
        ("bitmap padding", _rebuild(bisec[:-1] + bytes([bisec[-1] | 0x01]), F32_VALUES, index_codec=3),
         "non-zero padding bits"),
    ]
    # fpzip
    fgood = _base("elias-gamma", "fpzip")
    fisec, fvsec = _sections(fgood)
    other = FPZIP.encode(np.arange(5, dtype=np.float32))
    cases += [
        ("fpzip short", _rebuild(fisec, fvsec[:10], value_codec=3), "too short"),
        ("fpzip magic", _rebuild(fisec, b"\x00" * len(fvsec), value_codec=3), "fpzip"),
        ("fpzip dims", _rebuild(fisec, other, value_codec=3), r"shape \(5, 1, 1, 1\), expected \(4, 1, 1, 1\)"),
        ("fpzip k=0 bytes", _rebuild(b"", fvsec, value_codec=3, k=0), "must be empty for k=0"),
    ]
    # pcodec: a standalone stream ("pco!", version, type, count hint, format version, chunks, termination)
    pgood = _base("elias-gamma", "pcodec")
    pisec, pvsec = _sections(pgood)  # 70636f21 03 00 0201 0401 05 030000 00...: count hint 4 in bytes 6-7
    chunk = 10  # after the format version (bytes 8-9): float32 (5), then 4 - 1 in 24 bits
    assert pvsec[:chunk + 4].hex() == "70636f21" "03" "00" "0201" "0401" "05" "030000"
    other = PCODEC.encode(np.arange(5, dtype=np.float32))

    def pv(section: bytes, **kw) -> bytes:
        return _rebuild(pisec, section, value_codec=4, **kw)

    def at(offset: int, value: int) -> bytes:
        return pvsec[:offset] + bytes([value]) + pvsec[offset + 1:]

    cases += [
        ("pcodec short", pv(pvsec[:3]), "too short to hold a pcodec stream"),
        ("pcodec magic", pv(b"pcx!" + pvsec[4:]), "bad pcodec magic"),
        ("pcodec header truncated", pv(pvsec[:7]), "truncated inside its header"),
        ("pcodec standalone version", pv(at(4, 4)), "standalone version 4; this jwins reads version 3"),
        ("pcodec number type", pv(at(5, 6)), "number type 6, not float32"),
        ("pcodec count hint", pv(other), "says it holds 5 values, the message header says k=4"),
        ("pcodec format major", pv(at(chunk - 2, 5)), r"format version 5.1; the local pcodec reads 4.0 to 4.1"),
        ("pcodec format minor", pv(at(chunk - 1, 9)), r"format version 4.9"),
        ("pcodec chunk type", pv(at(chunk, 6)), "has a chunk of number type 6 after 0 of 4 values"),
        ("pcodec no chunk", pv(pvsec[:chunk] + b"\x00"), "ends after 0 of 4 values"),
        ("pcodec chunk too big", pv(at(chunk + 1, 4)), "chunk 0 holds 5 values; at most 4 fit"),
        ("pcodec chunk too small", pv(at(chunk + 1, 2)), "holds 3 values in 1 chunks, the header says k=4"),
        ("pcodec mode", pv(at(chunk + 4, 0x02)), r"uses mode 2 with delta encoding 0; only classic mode"),
        ("pcodec delta", pv(at(chunk + 4, 0x20)), r"uses mode 0 with delta encoding 2"),
        ("pcodec chunk truncated", pv(pvsec[:chunk + 3]), "truncated in chunk 0"),
        ("pcodec metadata truncated", pv(pvsec[:chunk + 6]), r"malformed \(chunk 0 metadata: .*InsufficientData"),
        ("pcodec page truncated", pv(pvsec[:-3]), r"malformed \(chunk 0 page: .*InsufficientData"),
        ("pcodec no termination", pv(pvsec[:-1]), "does not end after its last chunk"),
        ("pcodec trailing byte", pv(pvsec + b"\x00"), "has 1 bytes after the end of its stream"),
        ("pcodec k=0 bytes", _rebuild(b"", pvsec, value_codec=4, k=0), "must be empty for k=0"),
        ("pcodec dense cap", _rebuild(b"", pvsec, flags=1, index_codec=0, value_codec=4, dim=2**32 - 1, k=2**32 - 1),
         f"more than max_dim={DEFAULT_MAX_DIM}"),
    ]
    return cases


CASES = _cases()


@pytest.mark.parametrize("name, data, match", CASES, ids=[c[0] for c in CASES])
def test_decode_errors(name, data, match):
    # max_dim at the format's largest dim lets every check behind the max_dim bound see huge dims; the "cap"
    # cases are the messages that bound refuses
    with pytest.raises(WireError, match=match):
        decode(data, **({} if name.endswith(" cap") else {"max_dim": 2**32 - 1}))


def test_decode_dim_mismatch_and_types():
    data = _base()
    assert decode(data, dim=50).dim == 50
    with pytest.raises(WireError, match="dim mismatch: message has dim=50, this receiver expects dim=51"):
        decode(data, dim=51)
    with pytest.raises(WireError, match="expected bytes"):
        decode("JWNS")  # type: ignore[arg-type]
    big = DEFAULT_MAX_DIM + 1  # the seed codec above max_dim: needs the expected dim
    idx = seeded_indices(3, big, 1e-6)
    seeded = encode(Message(0, 0, big, idx, np.ones(idx.shape[0], np.float32), {"mask_seed": 3.0, "alpha": 1e-6}),
                    index_codec="seed")
    with pytest.raises(WireError, match=f"message has dim={big}, more than max_dim={DEFAULT_MAX_DIM}: pass the dim"):
        decode(seeded)
    np.testing.assert_array_equal(decode(seeded, dim=big).indices, idx)
    np.testing.assert_array_equal(decode(seeded, max_dim=big).indices, idx)


# ---------------------------------------------------------------------------------------------------------
# decoding bounds: without the expected dim, max_dim bounds everything a message can make the decoder do


def _forged_large() -> dict[str, bytes]:
    """Messages of a few hundred bytes to a few KB claiming dim = 2^24, each of which decoding used to work
    through for seconds and hundreds of MB (the counts their bytes do not back)."""
    big = 2**24
    zeros = PCODEC.encode(np.zeros(big, dtype=np.float32))
    seed = _extra(b"mask_seed", 1.0) + _extra(b"alpha", 1.0)
    return {
        "dense pcodec": _rebuild(b"", zeros, flags=1, index_codec=0, value_codec=4, dim=big, k=big),
        "seed, every index, pcodec values": _rebuild(b"", zeros, index_codec=4, value_codec=4, dim=big, k=big,
                                                     extras=seed),
        "seed, no index": _rebuild(b"", b"", index_codec=4, value_codec=0, dim=big, k=0,
                                   extras=_extra(b"mask_seed", 1.0) + _extra(b"alpha", 0.0)),
        "dense fpzip": _rebuild(b"", FPZIP.encode(np.zeros(64, np.float32)), flags=1, index_codec=0, value_codec=3,
                                dim=big, k=big),
    }


def test_forged_large_messages_are_refused_without_dim():
    from jwins.wire import decode_many

    forged = _forged_large()
    assert all(len(data) < 5000 for data in forged.values())
    message = f"message has dim={2**24}, more than max_dim={DEFAULT_MAX_DIM}: pass the dim this receiver expects"
    for data in forged.values():
        with pytest.raises(WireError, match=re.escape(message)):
            decode(data)
        with pytest.raises(WireError, match="more than max_dim=1000"):
            decode(data, max_dim=1000)
    for out in decode_many(list(forged.values())):
        assert isinstance(out, WireError) and message in str(out)
    with pytest.raises(ValueError, match="max_dim must be >= 0"):
        decode(forged["dense pcodec"], max_dim=-1)


def test_large_dim_decodes_when_the_receiver_expects_it():
    """A genuine message above max_dim: refused without dim, decoded with the expected dim or a larger max_dim."""
    from jwins.wire import decode_many

    dim = DEFAULT_MAX_DIM + 3
    values = np.zeros(dim, dtype=np.float32)
    values[::1000] = np.arange(values[::1000].shape[0], dtype=np.float32)
    data = encode(Message(1, 2, dim, None, values), value_codec="pcodec")
    with pytest.raises(WireError, match="more than max_dim"):
        decode(data)
    for kwargs in ({"dim": dim}, {"max_dim": dim}, {"dim": dim, "max_dim": 0}):
        out = decode(data, **kwargs)
        assert out.dim == dim and out.indices is None
        np.testing.assert_array_equal(out.values, values)
    (out,) = decode_many([data], max_dim=dim)
    np.testing.assert_array_equal(out.values, values)
    # exactly max_dim is accepted
    small = encode(Message(0, 0, 40, None, np.ones(40, np.float32)), value_codec="pcodec")
    assert decode(small, max_dim=40).dim == 40
    with pytest.raises(WireError, match="more than max_dim=39"):
        decode(small, max_dim=39)


# ---------------------------------------------------------------------------------------------------------
# pcodec


@pytest.mark.parametrize("k", [1, 255, 256, 257, PAGE_VALUES, PAGE_VALUES + 1, 2 * PAGE_VALUES + 3])
def test_pcodec_round_trip_sizes_and_chunks(k):
    rng = np.random.default_rng(k)
    values = _values(rng, k)
    special = np.array([0.0, -0.0, 1e-45, -1e-45, 1.17e-38, 3.4028235e38, -3.4028235e38, 1.0], np.float32)
    values[: min(k, 8)] = special[: min(k, 8)]
    section = PCODEC.encode(values)
    out = PCODEC.decode(memoryview(section), k)
    assert out.dtype == np.float32 and out.flags.owndata and out.flags.writeable
    np.testing.assert_array_equal(out.view(np.uint32), values.view(np.uint32))
    assert PCODEC.encode(np.zeros(0, np.float32)) == b""


def test_pcodec_refuses_streams_its_encoder_does_not_write():
    """Valid Pco streams in other configurations: delta encodings, other modes, another chunking, other types."""
    pcodec = pytest.importorskip("pcodec")
    from jwins.wire.pcodec import LEVEL

    values = np.tile(np.array([1.5, 2.5, 3.25, -7.0, 0.1], np.float32), 400)
    k = values.shape[0]

    def stream(arr=values, **config):
        return pcodec.standalone.simple_compress(arr, pcodec.ChunkConfig(compression_level=LEVEL, **config))

    for section, match in [
        (stream(delta_spec=pcodec.DeltaSpec.try_lookback(), mode_spec=pcodec.ModeSpec.classic()),
         "uses mode 0 with delta encoding 2"),
        (stream(delta_spec=pcodec.DeltaSpec.try_consecutive(1), mode_spec=pcodec.ModeSpec.classic()),
         "uses mode 0 with delta encoding 1"),
        (stream(values * np.float32(0.1), mode_spec=pcodec.ModeSpec.try_float_mult(0.1),
                delta_spec=pcodec.DeltaSpec.no_op()), "uses mode 2"),
        (stream(paging_spec=pcodec.PagingSpec.equal_pages_up_to(500)),
         f"holds 500 values in 1 chunks, the header says k={k}"),
        (pcodec.standalone.simple_compress(values.astype(np.float64), pcodec.ChunkConfig()), "number type 6"),
    ]:
        with pytest.raises(WireError, match=match):
            decode(_rebuild(b"", section, flags=1, index_codec=0, value_codec=4, dim=k, k=k))
    # the encoder's own stream of these values decodes
    out = decode(encode(Message(0, 0, k, None, values), value_codec="pcodec"))
    np.testing.assert_array_equal(out.values, values)


def test_pcodec_trusted_and_batch_decoding_agree(two_helpers):
    from jwins.wire import decode_many, encode_many

    msgs = _batch(np.random.default_rng(21))
    datas = encode_many(msgs, index_codec="rice", value_codec="pcodec", parallel_min_values=0)
    assert datas == [encode(m, index_codec="rice", value_codec="pcodec") for m in msgs]
    for trusted in (False, True):
        for m, out in zip(msgs, decode_many(datas, dim=3000, trusted=trusted, parallel_min_values=0)):
            np.testing.assert_array_equal(out.values.view(np.uint32), np.asarray(m.values).view(np.uint32))


def test_fpzip_malformed_streams_are_contained():
    """fpzip's C decoder corrupts memory on malformed input; it runs isolated, and only canonical streams pass."""
    good = _base("elias-gamma", "fpzip")
    isec, vsec = _sections(good)
    rng = np.random.default_rng(3)
    for trial in range(6):
        body = bytearray(vsec)
        for _ in range(1 + trial):
            pos = int(rng.integers(28, len(body)))
            body[pos] ^= 1 << int(rng.integers(0, 8))
        with pytest.raises(WireError, match="fpzip"):
            decode(_rebuild(isec, bytes(body), value_codec=3))
    with pytest.raises(WireError, match="fpzip value stream is malformed"):
        decode(_rebuild(isec, vsec + b"\x00", value_codec=3))  # trailing byte: not canonical
    out = decode(good)  # the (restarted) helper still works
    np.testing.assert_array_equal(out.values, BASE.values)


# ---------------------------------------------------------------------------------------------------------
# fuzzing: only WireError may come out, and never from the last-resort wrapper


def _fuzz_one(data: bytes) -> None:
    try:
        out = decode(data)
    except WireError as exc:
        assert INTERNAL not in str(exc), str(exc)
        return
    # anything that decodes must re-encode consistently
    assert out.values.dtype == np.float32
    if out.indices is not None:
        assert out.indices.shape[0] == out.values.shape[0]
        assert np.all(np.diff(out.indices) > 0) and (out.indices.shape[0] == 0 or out.indices[-1] < out.dim)


def _corpus(rng: np.random.Generator) -> list[bytes]:
    msgs = []
    for ic in ("elias-gamma", "rice", "bitmap"):
        for vc in FAST_VALUE_CODECS:
            dim = int(rng.integers(1, 400))
            k = int(rng.integers(0, dim + 1))
            idx = _uniform(rng, dim, k) if rng.random() < 0.5 else _clustered(rng, dim, k, run=4)
            m = Message(int(rng.integers(0, 9)), 1, dim, idx, _values(rng, idx.shape[0]), {"alpha": 0.5})
            msgs.append(encode(m, index_codec=ic, value_codec=vc))
    msgs.append(encode(Message(0, 0, 30, None, _values(rng, 30))))
    idx = seeded_indices(9, 300, 0.2)
    msgs.append(encode(Message(0, 0, 300, idx, _values(rng, idx.shape[0]), {"mask_seed": 9.0, "alpha": 0.2}),
                       index_codec="seed"))
    return msgs


def test_fuzz_random_bytes():
    rng = np.random.default_rng(20240601)
    for _ in range(1500):
        n = int(rng.integers(0, 120))
        _fuzz_one(rng.integers(0, 256, n, dtype=np.uint8).tobytes())
    for _ in range(1500):  # valid magic and version, random rest, valid CRC
        n = int(rng.integers(0, 200))
        _fuzz_one(_recrc(b"JWNS\x01" + rng.integers(0, 256, n, dtype=np.uint8).tobytes() + b"\0\0\0\0"))


def test_fuzz_structured_headers():
    """Plausible headers (consistent sizes, valid CRC) over random sections: exercises every codec decoder."""
    rng = np.random.default_rng(99)
    reached = set()
    for _ in range(4000):
        dense = rng.random() < 0.15
        index_codec = 0 if dense else int(rng.integers(1, 5))
        value_codec = int(rng.integers(0, 5))
        dim = int(rng.choice([0, 1, 7, 8, 9, 64, 300, 2**32 - 1])) if rng.random() < 0.3 else int(rng.integers(0, 400))
        k = dim if dense else int(rng.integers(0, min(dim, 300) + 1))
        if rng.random() < 0.05:
            k = int(rng.integers(0, 2**32))
        ibytes = int(rng.integers(0, 60)) if index_codec in (1, 2) else (
            (dim + 7) // 8 if index_codec == 3 and dim < 4096 else int(rng.integers(0, 3)))
        vbytes = {0: 4 * k, 1: 2 * k, 2: 2 * k}.get(value_codec, int(rng.integers(0, 60)))
        if vbytes > 4096 or rng.random() < 0.1:
            vbytes = int(rng.integers(0, 64))
        if rng.random() < 0.5:  # mostly-zero streams decode further than uniformly random ones
            index = (rng.random(ibytes) < 0.2).astype(np.uint8) * rng.integers(0, 256, ibytes, dtype=np.uint8)
        else:
            index = rng.integers(0, 256, ibytes, dtype=np.uint8)
        values = rng.standard_normal(vbytes // 4 + 1).astype(np.float32).tobytes()[:vbytes]
        extras = b""
        if index_codec == 4 or rng.random() < 0.2:
            extras = _extra(b"mask_seed", float(rng.integers(0, 50))) + _extra(b"alpha", float(rng.random()))
        data = _rebuild(index.tobytes(), values, flags=int(dense), index_codec=index_codec, value_codec=value_codec,
                        param=int(rng.integers(0, 33)) if index_codec == 2 else 0, dim=dim, k=k, extras=extras)
        try:
            decode(data)
            reached.add("ok")
        except WireError as exc:
            assert INTERNAL not in str(exc), str(exc)
            reached.add("".join(c for c in str(exc) if not c.isdigit())[:30])
    assert len(reached) > 25, reached  # the fuzzer reaches many different checks, and successes
    assert "ok" in reached


@pytest.mark.parametrize("recompute_crc", [False, True])
def test_fuzz_mutations(recompute_crc):
    rng = np.random.default_rng(7 + recompute_crc)
    corpus = _corpus(rng)
    for i in range(3000):
        data = bytearray(corpus[i % len(corpus)])
        op = int(rng.integers(0, 6))
        if op == 0:  # bit flips
            for _ in range(int(rng.integers(1, 4))):
                pos = int(rng.integers(0, len(data)))
                data[pos] ^= 1 << int(rng.integers(0, 8))
        elif op == 1:  # header field flips (more likely to reach deep checks)
            pos = int(rng.integers(0, min(len(data), 60)))
            data[pos] = int(rng.integers(0, 256))
        elif op == 2:  # truncation
            data = data[: int(rng.integers(0, len(data)))]
        elif op == 3:  # extension
            data += rng.integers(0, 256, int(rng.integers(1, 20)), dtype=np.uint8).tobytes()
        elif op == 4:  # splice of two messages
            other = corpus[int(rng.integers(0, len(corpus)))]
            cut = int(rng.integers(0, len(data)))
            data = data[:cut] + other[int(rng.integers(0, len(other))):]
        else:  # size fields
            off = int(rng.choice([18, 22, 26, 30]))
            if len(data) >= off + 4:
                struct.pack_into("<I", data, off, int(rng.integers(0, 2**32)) if rng.random() < 0.3
                                 else max(0, struct.unpack_from("<I", data, off)[0] + int(rng.integers(-3, 4))))
        if recompute_crc and len(data) >= 4:
            data = bytearray(_recrc(data))
        _fuzz_one(bytes(data))


def test_trusted_fpzip_decode_equals_isolated_decode():
    """The simulator decodes its own fpzip bytes in process; a peer's go through the isolated helper. Both
    must restore exactly the same values."""
    from jwins.wire import Message, decode, encode

    values = (np.random.default_rng(3).normal(size=500) * 0.05).astype(np.float32)
    idx = np.sort(np.random.default_rng(4).choice(5000, 500, replace=False)).astype(np.int64)
    data = encode(Message(1, 2, 5000, idx, values), index_codec="rice", value_codec="fpzip")
    a, b = decode(data, dim=5000), decode(data, dim=5000, trusted=True)
    np.testing.assert_array_equal(a.values, values)
    np.testing.assert_array_equal(b.values, values)
    np.testing.assert_array_equal(a.indices, b.indices)


# ---------------------------------------------------------------------------------------------------------
# encode_many / decode_many: helper processes side by side, the same bytes and values as one at a time


@pytest.fixture
def two_helpers(monkeypatch):
    """The parallel path even on a 1-core machine."""
    from jwins.wire import fpzip_helpers

    monkeypatch.setattr(fpzip_helpers.HELPERS, "size", 2)
    return fpzip_helpers.HELPERS


def _batch(rng: np.random.Generator, count: int = 12, dim: int = 3000) -> list[Message]:
    msgs = []
    for i in range(count):
        k = int(dim * rng.choice([0.0, 0.05, 0.3, 1.0]))
        idx = _uniform(rng, dim, k)
        msgs.append(Message(i, 4, dim, idx, (rng.normal(size=k) * 0.05).astype(np.float32), {"alpha": k / dim}))
    msgs.append(Message(count, 4, dim, None, (rng.normal(size=dim)).astype(np.float32)))  # dense
    return msgs


@pytest.mark.parametrize("value_codec", ["fpzip", "float32", "float16"])
def test_encode_many_equals_encode(two_helpers, value_codec):
    from jwins.wire import encode_many

    msgs = _batch(np.random.default_rng(11))
    one_by_one = [encode(m, index_codec="rice", value_codec=value_codec) for m in msgs]
    assert encode_many(msgs, index_codec="rice", value_codec=value_codec, parallel_min_values=0) == one_by_one
    assert encode_many(msgs, index_codec="rice", value_codec=value_codec) == one_by_one  # below the threshold


def test_encode_many_names_the_bad_message(two_helpers):
    from jwins.wire import encode_many

    msgs = _batch(np.random.default_rng(12))
    dense = msgs[-1]
    bad = dense.values.copy()
    bad[7] = np.nan
    msgs.insert(3, Message(99, dense.round, dense.dim, None, bad))
    with pytest.raises(ValueError, match="values contain 1 NaN/inf entries"):
        encode_many(msgs, index_codec="elias-gamma", value_codec="fpzip", parallel_min_values=0)


@pytest.mark.parametrize("trusted", [True, False])
def test_decode_many_equals_decode_and_isolates_bad_messages(two_helpers, trusted):
    """Good messages decode to exactly what decode() gives; each malformed one gets decode()'s WireError, and
    the others are not affected (a crashed helper is replaced)."""
    from jwins.wire import decode_many

    rng = np.random.default_rng(13)
    msgs = _batch(rng)
    datas = [encode(m, index_codec="elias-gamma", value_codec="fpzip") for m in msgs]
    if not trusted:
        for pos in (2, 7):  # corrupt fpzip bodies, with a valid CRC: only fpzip itself can notice
            lay = layout(datas[pos])
            body = bytearray(datas[pos][:-4])
            start = lay.header_bytes - 4 + lay.index_bytes
            for _ in range(3):
                at = start + 28 + int(rng.integers(0, lay.value_bytes - 28))
                body[at] ^= 1 << int(rng.integers(0, 8))
            datas[pos] = bytes(body) + struct.pack("<I", zlib.crc32(bytes(body)))
        datas.append(datas[0][:-1])  # truncated
        datas.append(b"not a message")
    got = decode_many(datas, dim=3000, trusted=trusted, parallel_min_values=0)
    assert len(got) == len(datas)
    for data, out in zip(datas, got):
        try:
            expected = decode(data, dim=3000, trusted=trusted)
        except WireError as exc:
            assert isinstance(out, WireError), out
            assert str(out) == str(exc)
            continue
        assert isinstance(out, Message), out
        assert (out.sender, out.round, out.dim, out.extra) == (expected.sender, expected.round, expected.dim,
                                                               expected.extra)
        np.testing.assert_array_equal(out.values, expected.values)
        if expected.indices is None:
            assert out.indices is None
        else:
            np.testing.assert_array_equal(out.indices, expected.indices)
    if not trusted:
        assert sum(isinstance(o, WireError) for o in got) >= 3  # 2 and 7 may or may not survive the flips
        assert isinstance(got[-1], WireError) and "bad magic" in str(got[-1])


def test_fpzip_helpers_share_the_cores_among_local_ranks(monkeypatch):
    from jwins import parallel
    from jwins.wire import fpzip_helpers

    monkeypatch.setattr(parallel, "cores", lambda: 16)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert fpzip_helpers.default_size() == fpzip_helpers.MAX_HELPERS
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert fpzip_helpers.default_size() == 4
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "32")
    assert fpzip_helpers.default_size() == 1
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "not a number")
    assert fpzip_helpers.default_size() == 8


def test_pcodec_many_in_threads_equals_one_by_one():
    """pcodec releases the GIL: encode_many and decode_many spread its messages over threads, with exactly the
    bytes and values of encode and decode one by one, and a bad message in a batch isolated as its WireError."""
    from jwins.wire import Message, decode, decode_many, encode, encode_many

    g = np.random.default_rng(5)
    messages = [Message(i, 3, 5000, None, (0.05 * g.normal(size=5000)).astype(np.float32)) for i in range(6)]
    messages.append(Message(6, 3, 5000, np.arange(0, 5000, 7), g.normal(size=715).astype(np.float32)))
    many = encode_many(messages, value_codec="pcodec", parallel_min_values=0)
    assert many == [encode(m, value_codec="pcodec") for m in messages]
    bad = bytearray(many[2])
    bad[-9] ^= 0xFF
    batch = [*many[:2], bytes(bad), *many[3:]]
    got = decode_many(batch, dim=5000, parallel_min_values=0)
    for data, result in zip(batch, got):
        try:
            want = decode(data, dim=5000)
        except WireError as exc:
            assert isinstance(result, WireError) and str(result) == str(exc)
        else:
            assert np.array_equal(result.values, want.values) and result.sender == want.sender
    assert isinstance(got[2], WireError)


def test_encode_many_gives_the_sizes_of_the_parts_it_wrote():
    """The section sizes come from the encoding itself and equal what layout() parses back."""
    from jwins.wire import encode_many, layout

    rng = np.random.default_rng(0)
    msgs = [Message(1, 2, 1000, None, rng.standard_normal(1000).astype(np.float32)),
            Message(2, 2, 1000, np.sort(rng.choice(1000, 37, replace=False)),
                    rng.standard_normal(37).astype(np.float32), extra={"mask_seed": 5.0})]
    for codec in ("float32", "pcodec", "float16"):
        pairs = encode_many(msgs, value_codec=codec, layouts=True)
        assert [data for data, _ in pairs] == encode_many(msgs, value_codec=codec)
        for data, lay in pairs:
            assert lay == layout(data) and sum(lay) == len(data)


def test_seeded_masks_are_drawn_once_per_process_and_the_memory_stays_bounded():
    """seeded_indices keeps the masks it drew: the encoder's check and the decoder get the very same read-only
    array (no second draw, the same numbers as a fresh generator); a mask drawn elsewhere decodes as before; the
    kept masks never exceed the byte bound, least recently used out first."""
    from jwins.wire import index_codecs as ic

    fresh = lambda seed, dim, alpha: np.flatnonzero(np.random.default_rng(seed).random(dim) < alpha)  # noqa: E731
    first = ic.seeded_indices(12345, 5000, 0.1)
    assert ic.seeded_indices(12345, 5000, 0.1) is first and not first.flags.writeable
    np.testing.assert_array_equal(first, fresh(12345, 5000, 0.1))
    extra = {"mask_seed": 12345.0, "alpha": 0.1}
    assert ic.SEED.decode(b"", 5000, first.shape[0], 0, extra) is first
    other = {"mask_seed": 777.0, "alpha": 0.1}  # never drawn here: decoded from the seed
    np.testing.assert_array_equal(ic.SEED.decode(b"", 5000, fresh(777, 5000, 0.1).shape[0], 0, other),
                                  fresh(777, 5000, 0.1))
    recent = ic._RecentDraws(limit=10_000)
    for seed in range(50):
        recent.put((seed, 1000, 0.5), np.arange(500, dtype=np.int64))  # 4,000 bytes each
        assert recent.size <= 10_000
    assert recent.get((49, 1000, 0.5)) is not None and recent.get((0, 1000, 0.5)) is None


def test_compiled_elias_gamma_encoder_writes_the_numpy_encoders_bytes(monkeypatch):
    """The compiled elias-gamma encoder gives the numpy encoder's section byte for byte: empty, one index,
    every index, gaps up to 2**31 (the widest a u32 dim allows), and random sparse sets up to 40,000 indices;
    and the section decodes to the indices."""
    from jwins.wire import index_codecs as ic

    g = np.random.default_rng(5)
    cases = [(np.zeros(0, np.int64), 1), (np.array([0]), 1), (np.arange(10), 10),
             (np.array([0, 2**20, 2**31 - 1, 2**32 - 1]), 2**32)]
    for _ in range(60):
        dim = int(g.integers(1, 200_000))
        cases.append((np.sort(g.choice(dim, int(g.integers(0, min(dim, 40_000) + 1)), replace=False)), dim))
    for idx, dim in cases:
        idx = np.asarray(idx, dtype=np.int64)
        monkeypatch.setattr(ic, "COMPILED_ELIAS", True)
        fast = ic._elias_encode(idx, dim, {})
        monkeypatch.setattr(ic, "COMPILED_ELIAS", False)
        assert fast == ic._elias_encode(idx, dim, {})
        np.testing.assert_array_equal(ic._elias_decode(fast[1], dim, idx.shape[0], 0, {}), idx)


def _decode_outcome(ic, monkeypatch, compiled: bool, section: bytes, dim: int, k: int):
    monkeypatch.setattr(ic, "COMPILED_ELIAS", compiled)
    try:
        return ic._elias_decode(section, dim, k, 0, {}).tolist()
    except WireError as e:
        return str(e)


def test_compiled_elias_gamma_decoder_agrees_with_the_numpy_decoder_on_good_and_forged_sections(monkeypatch):
    """The compiled decoder reads every section the numpy decoder reads, to the same indices, and a section the
    numpy decoder rejects is rejected with the numpy decoder's words: valid sections (gaps up to 2**31), then
    each with a flipped bit, a byte cut off, a byte added, k off by one and a dim one smaller than the last
    index needs; and sections of random bytes. The fast path must actually run on the valid ones."""
    from jwins.wire import index_codecs as ic

    g = np.random.default_rng(11)
    sets = [(np.array([0]), 1), (np.arange(10), 10), (np.array([3]), 4), (np.array([0, 2**20, 2**31 - 1]), 2**31),
            (np.array([0, 2**20, 2**31 - 1, 2**32 - 1]), 2**32)]
    for _ in range(40):
        dim = int(g.integers(1, 100_000))
        sets.append((np.sort(g.choice(dim, int(g.integers(1, min(dim, 5_000) + 1)), replace=False)), dim))
    cases = []
    for idx, dim in sets:
        idx = np.asarray(idx, dtype=np.int64)
        section = ic._elias_compiled(idx).tobytes()
        k = idx.shape[0]
        out = np.empty(k, dtype=np.int64)
        bounds = ic._elias_bounds(len(section), dim, k)
        assert ic._elias_decode_compiled(wire_bits.as_u8(section), dim, *bounds, out)  # the fast path itself
        np.testing.assert_array_equal(out, idx)
        cases += [(section, dim, k), (section[:-1], dim, k), (section + b"\x00", dim, k), (section + b"\x80", dim, k),
                  (section, dim, k + 1), (section, dim, k - 1), (section, int(idx[-1]), k)]
        for _ in range(12):
            flipped = bytearray(section)
            flipped[int(g.integers(len(section)))] ^= 1 << int(g.integers(8))
            cases.append((bytes(flipped), dim, k))
    for _ in range(300):
        cases.append((g.integers(0, 256, int(g.integers(1, 40)), dtype=np.uint8).tobytes(),
                      int(g.integers(1, 5_000)), int(g.integers(1, 60))))
    decoded = 0
    for section, dim, k in cases:
        expected = _decode_outcome(ic, monkeypatch, False, section, dim, k)
        assert _decode_outcome(ic, monkeypatch, True, section, dim, k) == expected, (section, dim, k)
        decoded += isinstance(expected, list)
    assert decoded > len(sets)  # some forged sections decode (a flipped low bit moves one index)
