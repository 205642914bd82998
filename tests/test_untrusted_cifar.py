"""CIFAR pickles from an untrusted source: numpy's own unpickling is never reached with a crafted state.

The malicious files are written here by pickling stand-in objects whose ``__reduce__`` names exactly the globals
the restricted unpickler allows (``numpy.dtype``, ``numpy._core.multiarray._reconstruct``, ``numpy.ndarray``)
with a state of our choosing. Files that crashed the process before (a segmentation fault) are read in a
subprocess, so a crash fails the test instead of killing pytest.
"""
from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jwins.data import load
from jwins.data.cifar import _read_cifar_batch, read_array_pickle
from jwins.errors import DataError

try:
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct

PLAIN_STATE = (3, "|", None, None, None, -1, -1, 0)


class Dtype:
    """Pickles as ``numpy.dtype(*args)`` followed by BUILD ``state``."""

    def __init__(self, args, state=PLAIN_STATE):
        self.args, self.state = args, state

    def __reduce__(self):
        return (np.dtype, self.args, self.state)


class Array:
    """Pickles as ``_reconstruct(numpy.ndarray, (0,), b'b')`` followed by BUILD ``(1, shape, dtype, fortran, raw)``."""

    def __init__(self, shape, dtype, raw, fortran=False, version=1, typecode=b"b"):
        self.state = (version, shape, dtype, fortran, raw)
        self.typecode = typecode

    def __reduce__(self):
        return (_reconstruct, (np.ndarray, (0,), self.typecode), self.state)


U1 = Dtype(("u1", False, True))
DATA = Array((4, 3072), U1, bytes(4 * 3072))


def batch(labels, data=DATA) -> bytes:
    return pickle.dumps({b"data": data, b"labels": labels}, protocol=4)


def object_field_claiming_no_objects() -> Dtype:
    """A record with one object field whose flags (0) say it holds no objects: numpy dereferences the bytes."""
    obj = Dtype(("O8", False, True), (3, "|", None, None, None, -1, -1, 0))
    return Dtype(("V8", False, True), (3, "|", None, ("a",), {"a": (obj, 0)}, 8, 1, 0))


BAD = {
    # crashed the process with a segmentation fault inside np.asarray(labels)
    "object-field": batch(Array((4,), object_field_claiming_no_objects(), b"\x41" * 32)),
    # an OverflowError traceback: a field 1 TiB past an 8-byte item
    "far-offset": batch(Array((4,), Dtype(("V8", False, True),
                                          (3, "|", None, ("a",), {"a": (U1, 1 << 40)}, 8, 1, 0)), bytes(32))),
    # a plain code whose state adds fields, a subarray, object flags, another item size or a wrong byte order
    "fields-on-u1": batch(Array((4,), Dtype(("u1", False, True), (3, "|", None, ("a",), {"a": (U1, 0)}, 1, 1, 0)),
                                bytes(4))),
    "subarray": batch(Array((4,), Dtype(("u1", False, True), (3, "|", (U1, (2,)), None, None, 2, 1, 0)), bytes(8))),
    "object-flags": batch(Array((4,), Dtype(("i8", False, True), (3, "<", None, None, None, -1, -1, 63)), bytes(32))),
    "item-size": batch(Array((4,), Dtype(("i8", False, True), (3, "<", None, None, None, 4096, -1, 0)), bytes(32))),
    "byte-order": batch(Array((4,), Dtype(("i8", False, True), (3, "|", None, None, None, -1, -1, 0)), bytes(32))),
    "object-array": batch(Array((4,), Dtype(("O8", False, True), (3, "|", None, None, None, -1, -1, 63)),
                                [1, 2, 3, 4])),
    "void": batch(Array((4,), Dtype(("V8", False, True), (3, "|", None, None, None, 8, 1, 0)), bytes(32))),
    "string-dtype": batch(Array((4,), Dtype(("U1", False, True), (3, "<", None, None, None, 4, 4, 8)), bytes(16))),
    # raw bytes that do not match shape x itemsize, in either direction; an absurd shape
    "short-data": batch([0, 1, 2, 3], Array((4, 3072), U1, bytes(100))),
    "long-data": batch([0, 1, 2, 3], Array((4, 3072), U1, bytes(4 * 3072 + 1))),
    "huge-shape": batch([0, 1, 2, 3], Array((1 << 40, 1 << 40), U1, bytes(16))),
    "negative-shape": batch([0, 1, 2, 3], Array((-4, 3072), U1, bytes(0))),
    "state-not-bytes": batch([0, 1, 2, 3], Array((4, 3072), U1, [0] * (4 * 3072))),
    "dtype-not-a-dtype": batch([0, 1, 2, 3], Array((4, 3072), "u1", bytes(4 * 3072))),
    "reconstruct-args": batch([0, 1, 2, 3], Array((4, 3072), U1, bytes(4 * 3072), typecode=b"x")),
    "bool-bytes": batch(Array((4,), Dtype(("b1", False, True)), b"\x00\x01\x02\x00")),
    # labels that are not a list of integers
    "labels-huge-int": batch([1 << 70, 0, 0, 0]),
    "labels-floats": batch([0.5, 1.0, 2.0, 3.0]),
    "labels-nested": batch([[0, 1], [2, 3]]),
    "labels-dict": batch({0: 1}),
    "labels-float-array": batch(Array((4,), Dtype(("f8", False, True), (3, "<", None, None, None, -1, -1, 0)),
                                      bytes(32))),
}

CHECK = """
import json, sys
from pathlib import Path
from jwins.data.cifar import _read_cifar_batch
from jwins.errors import DataError
for name in sys.argv[1:]:
    print("start", name, flush=True)
    try:
        _read_cifar_batch(Path(name), "labels", 10)
        print("result", json.dumps([name, "accepted"]), flush=True)
    except DataError as e:
        print("result", json.dumps([name, "DataError", str(e)]), flush=True)
    except BaseException as e:
        print("result", json.dumps([name, type(e).__name__, str(e)]), flush=True)
"""


def test_crafted_dtype_states_are_refused_without_crashing(tmp_path):
    files = []
    for name, raw in BAD.items():
        (tmp_path / name).write_bytes(raw)
        files.append(str(tmp_path / name))
    done = subprocess.run([sys.executable, "-c", CHECK, *files], capture_output=True, text=True, timeout=120)
    started = [line.split(" ", 1)[1] for line in done.stdout.splitlines() if line.startswith("start ")]
    assert done.returncode == 0, f"the reader died (status {done.returncode}) on {started[-1:]}: {done.stderr[-500:]}"
    results = {Path(r[0]).name: r[1:] for r in
               (json.loads(line.split(" ", 1)[1]) for line in done.stdout.splitlines() if line.startswith("result "))}
    assert set(results) == set(BAD)
    for name, (kind, *message) in results.items():
        assert kind == "DataError", (name, kind, message)
        text = message[0]
        assert "\n" not in text and text.startswith(str(tmp_path / name) + ":"), (name, text)
        assert len(text) < 300, (name, text)


def test_every_bad_file_names_itself_in_one_line(tmp_path):
    """The same files in this process (none of them crashes now): one DataError line naming the file."""
    for name in ("far-offset", "fields-on-u1", "huge-shape", "short-data", "labels-huge-int", "object-array"):
        (tmp_path / name).write_bytes(BAD[name])
        with pytest.raises(DataError) as e:
            _read_cifar_batch(tmp_path / name, "labels", 10)
        assert str(e.value).startswith(f"{tmp_path / name}:") and "\n" not in str(e.value), str(e.value)


def test_messages_say_what_is_wrong(tmp_path):
    cases = {
        "far-offset": "refusing a numpy dtype 'V8'",
        "fields-on-u1": "with fields or a subarray",
        "object-flags": "with flags 63",
        "huge-shape": "holding 16 bytes",
        "labels-floats": "'labels' is not a list of integers",
        "bool-bytes": "bytes other than 0 and 1",
    }
    for name, text in cases.items():
        (tmp_path / name).write_bytes(BAD[name])
        with pytest.raises(DataError, match=text):
            _read_cifar_batch(tmp_path / name, "labels", 10)


def test_plain_arrays_of_every_layout_still_load(tmp_path):
    """What numpy writes for plain arrays (little/big endian, Fortran order, Python 2's bytes strings and 0/1
    flags) is read, with the same values."""
    r = np.random.default_rng(0)
    pixels = r.integers(0, 256, (4, 3072)).astype(np.uint8)
    labels = np.array([3, 1, 4, 1])
    py2_u1 = Dtype((b"u1", 0, 1), (3, b"|", None, None, None, -1, -1, 0))
    files = {
        "numpy": pickle.dumps({b"data": pixels, b"labels": labels.astype("<i8")}),
        "big-endian-labels": pickle.dumps({b"data": pixels, b"labels": labels.astype(">i4")}),
        "fortran": pickle.dumps({b"data": np.asfortranarray(pixels), b"labels": labels.tolist()}),
        "python2": batch([3, 1, 4, 1], Array((4, 3072), py2_u1, pixels.tobytes(), fortran=0)),
    }
    # numpy's older 4-tuple array state (no version)
    old = Array((4, 3072), U1, pixels.tobytes())
    old.state = old.state[1:]
    files["old-state"] = batch([3, 1, 4, 1], old)
    for name, raw in files.items():
        (tmp_path / name).write_bytes(raw)
        x, y = _read_cifar_batch(tmp_path / name, "labels", 10)
        assert x.shape == (4, 3, 32, 32) and np.array_equal(x.reshape(4, -1), pixels), name
        assert y.dtype == np.int64 and y.tolist() == [3, 1, 4, 1], name
    # other plain dtypes, nested in lists and tuples, and a bare dtype
    obj = {"a": [np.arange(5, dtype="<f4"), (np.ones((2, 2), dtype=">u2"), np.zeros(0, dtype="i1"))],
           "b": np.dtype("<i2"), "c": np.array([True, False])}
    (tmp_path / "mixed").write_bytes(pickle.dumps(obj))
    got = read_array_pickle(tmp_path / "mixed")
    assert np.array_equal(got["a"][0], np.arange(5, dtype=np.float32))
    assert got["a"][1][0].dtype == np.dtype(">u2") and got["a"][1][0].sum() == 4
    assert got["b"] == np.dtype("<i2") and got["c"].tolist() == [True, False]


def test_a_crafted_file_inside_a_dataset_fails_the_load(tmp_path):
    d = tmp_path / "cifar10" / "cifar-10-batches-py"
    d.mkdir(parents=True)
    for f in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (d / f).write_bytes(batch([0, 1, 2, 3]))
    assert load("cifar10", tmp_path).num_train == 20
    (d / "data_batch_2").write_bytes(BAD["far-offset"])
    with pytest.raises(DataError, match=r"data_batch_2: refusing a numpy dtype 'V8'"):
        load("cifar10", tmp_path)
