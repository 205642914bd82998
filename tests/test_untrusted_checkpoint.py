"""Checkpoint files as untrusted bytes (crafted members, deflate bombs) and checkpoint generations.

Every crafted file gives one CheckpointError line naming the file, the problem and how to recover, and no member
is decompressed beyond the size this run expects of it.
"""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import torch

from helpers import peak_while
from jwins import checkpoint
from jwins.checkpoint import commit, load, previous, restore_state, rounds_available, save
from jwins.errors import CheckpointError

SHAPE = (3, 5)
CONFIG = {"rounds": 10, "seed": 1, "sharing": {"algorithm": "test"}, "engine": {"kind": "local"}}


class State(NamedTuple):
    nodes: tuple
    reference: torch.Tensor   # float32 [3, 7]
    sent: torch.Tensor        # bool [3]
    counts: torch.Tensor      # int64 [3, 2]


def template() -> State:
    return State((0, 1, 2), torch.zeros(3, 7), torch.zeros(3, dtype=torch.bool), torch.zeros(3, 2, dtype=torch.int64))


def metrics(rounds: int) -> list[dict]:
    return [{"round": i, "train_loss": 0.5 / i, "bytes_sent": 10.0 * i, "test_metric_name": "accuracy",
             "pending_evaluation": True} for i in range(1, rounds + 1)]


def write(path: Path, round: int = 2, seed: int = 0, records: list | None = None) -> dict:
    g = torch.Generator().manual_seed(seed)
    state = State((0, 1, 2), torch.randn(3, 7, generator=g), torch.tensor([True, False, True]),
                  torch.arange(6).view(3, 2) + seed)
    params, momentum = torch.randn(*SHAPE, generator=g), torch.randn(*SHAPE, generator=g)
    save(path, round=round, config=CONFIG, params=params, momentum=momentum, sharing_state=state,
         metrics=metrics(round) if records is None else records)
    return {"params": params, "momentum": momentum, "state": state}


def npy(value) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asanyarray(value), allow_pickle=False)
    return buf.getvalue()


def npy_header(descr, shape: tuple) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def craft(src: Path, out: Path, replace: dict | None = None, raw: dict | None = None, drop=(), add: dict | None = None,
          method=zipfile.ZIP_STORED) -> Path:
    """A copy of checkpoint ``src`` with members replaced by arrays (``replace``) or raw bytes (``raw``)."""
    replace, raw, add = replace or {}, raw or {}, add or {}
    with zipfile.ZipFile(src) as zi, zipfile.ZipFile(out, "w", method) as zo:
        for info in zi.infolist():
            key = info.filename[:-4]
            if key in drop:
                continue
            if key in replace:
                zo.writestr(info.filename, npy(replace[key]))
            elif key in raw:
                zo.writestr(info.filename, raw[key])
            else:
                zo.writestr(info.filename, zi.read(info))
        for name, data in add.items():
            zo.writestr(name, data)
    return out


def zip_with_raw_deflated(src: Path, out: Path, key: str, head: bytes, zeros: int) -> Path:
    """``src`` with member ``key`` replaced by ``head`` followed by ``zeros`` zero bytes, deflated (a thousandfold
    smaller); the zip directory states the real sizes: only the .npy header says what the member should hold."""
    with zipfile.ZipFile(src) as zi, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zo:
        for info in zi.infolist():
            if info.filename != key + ".npy":
                zo.writestr(info.filename, zi.read(info))
        info = zipfile.ZipInfo(key + ".npy")
        info.compress_type = zipfile.ZIP_DEFLATED
        with zo.open(info, "w", force_zip64=True) as w:
            w.write(head)
            for _ in range(zeros >> 20):
                w.write(bytes(1 << 20))
    return out


def refused(path: Path, match: str, **kw) -> str:
    kw = {"config": CONFIG, "shape": SHAPE, **kw}
    with pytest.raises(CheckpointError) as e:
        loaded = load(path, **kw)
        restore_state(template(), loaded.sharing, torch.device("cpu"))
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"checkpoint {path}"), msg
    assert match in msg, msg
    return msg




@pytest.fixture
def good(tmp_path) -> Path:
    path = tmp_path / "good.npz"
    write(path)
    return path


# ---------------------------------------------------------------------------------------------- reading


def test_a_good_checkpoint_round_trips(tmp_path):
    path = tmp_path / "c.npz"
    wrote = write(path, round=3)
    loaded = load(path, config=CONFIG, shape=SHAPE)
    assert loaded.round == 3 and loaded.metrics == metrics(3) and loaded.extra == {} and loaded.path == path
    assert np.array_equal(loaded.params, wrote["params"].numpy()) and loaded.params.dtype == np.float32
    assert np.array_equal(loaded.momentum, wrote["momentum"].numpy())
    state = restore_state(template(), loaded.sharing, torch.device("cpu"))
    for name in ("reference", "sent", "counts"):
        assert torch.equal(getattr(state, name), getattr(wrote["state"], name)), name
        assert getattr(state, name).dtype == getattr(template(), name).dtype
    assert set(loaded.sharing) == {"reference", "sent", "counts"}
    assert np.array_equal(loaded.sharing["counts"], wrote["state"].counts.numpy())
    # a compressed checkpoint (np.savez_compressed) and resumable keys that changed are fine too
    craft(path, tmp_path / "z.npz", method=zipfile.ZIP_DEFLATED)
    assert load(tmp_path / "z.npz", config={**CONFIG, "rounds": 20, "engine": {"kind": "x"}}, shape=SHAPE).round == 3


CRAFTED = {
    # name: (craft arguments, what the message says)
    "config-not-json": ({"replace": {"config": "{not json"}}, "stores 'config' as something other than JSON"),
    "config-list": ({"replace": {"config": "[1, 2]"}}, "stores 'config' as a JSON list, not a JSON object"),
    "config-number": ({"replace": {"config": np.array(3)}}, "stores 'config' as int64 (), not text"),
    "config-deep": ({"replace": {"config": "[" * 100_000}}, "stores 'config' as something other than JSON"),
    "format-vector": ({"replace": {"format": np.array([1, 1])}}, "stores 'format' as int64 (2,), not one integer"),
    "format-float": ({"replace": {"format": np.array(1.0)}}, "stores 'format' as float64 (), not one integer"),
    "format-text": ({"replace": {"format": np.array("1")}}, "stores 'format' as <U1 (), not one integer"),
    "metrics-object": ({"replace": {"metrics": '{"a": 1}'}}, "stores 'metrics' as a JSON dict, not a JSON list"),
    "metrics-string": ({"replace": {"metrics": '"x"'}}, "stores 'metrics' as a JSON str, not a JSON list"),
    "metrics-vector": ({"replace": {"metrics": np.array(["[]", "[]"])}}, "stores 'metrics' as <U2 (2,), not text"),
    "metrics-records": ({"replace": {"metrics": '["a", "b"]'}}, "record 1 is a JSON str, not an object"),
    "metrics-numbering": ({"replace": {"metrics": json.dumps([{"round": 2}, {"round": 1}])}}, "record 1 is of round 2"),
    "metrics-field": ({"replace": {"metrics": json.dumps([{"round": 1}, {"round": 2, "train_loss": "x"}])}},
                      "record 2 has a str as 'train_loss'"),
    "metrics-count": ({"replace": {"metrics": json.dumps([{"round": 1}])}}, "is at round 2 but holds 1 rounds"),
    "params-strings": ({"replace": {"params": np.full(SHAPE, "a")}}, "holds 'params' as <U1 (3, 5), this run needs "
                                                                    "float32 (3, 5)"),
    "params-float64": ({"replace": {"params": np.zeros(SHAPE)}}, "holds 'params' as float64 (3, 5)"),
    "params-shape": ({"replace": {"params": np.zeros((3, 6), np.float32)}}, "holds 'params' as float32 (3, 6)"),
    "params-object": ({"raw": {"params": npy_header("|O", SHAPE) + bytes(120)}}, "holds 'params' as object (3, 5)"),
    "params-record": ({"raw": {"params": npy_header([("a", "<f4")], SHAPE) + bytes(60)}}, "holds 'params' as [("),
    "momentum-shape": ({"replace": {"momentum": np.zeros((1,), np.float32)}}, "holds 'momentum' as float32 (1,)"),
    "round-negative": ({"replace": {"round": np.array(-3)}}, "is at round -3, a negative round"),
    "round-huge": ({"replace": {"round": np.array(10**6)}}, "is at round 1000000, past this run's rounds = 10"),
    "round-uncounted": ({"replace": {"round": np.array(5)}}, "is at round 5 but holds 2 rounds of metrics"),
    "unknown-member": ({"add": {"evil.npy": npy(1)}}, "holds a member 'evil.npy' that no checkpoint has"),
    "not-npy": ({"add": {"sharing.x": b"hello"}}, "holds a member 'sharing.x' that no checkpoint has"),
    "duplicate-member": ({"add": {"params.npy": npy(np.zeros(SHAPE, np.float32))}}, "holds the member 'params.npy' "
                                                                                     "twice"),
    "missing-params": ({"drop": ["params"]}, "is incomplete: it has no 'params'"),
    "bzip2": ({"method": zipfile.ZIP_BZIP2}, "compressed with method 12"),
    "npy-version": ({"raw": {"round": b"\x93NUMPY\x09\x00" + npy(2)[8:]}}, "has a member 'round' in .npy format "
                                                                          "(9, 0)"),
    "npy-garbage": ({"raw": {"round": b"not an npy file at all"}}, "is damaged"),
    "npy-short": ({"raw": {"params": npy(np.zeros(SHAPE, np.float32))[:-4]}}, "is truncated: its member 'params' "
                                                                              "holds 56 of the 60 bytes"),
    "npy-long": ({"raw": {"params": npy(np.zeros(SHAPE, np.float32)) + b"x"}}, "has a member 'params' holding more "
                                                                               "data than its header gives"),
    "sharing-object": ({"raw": {"sharing.reference": npy_header("|O", (3, 7)) + bytes(168)}},
                       "holds the sharing state 'sharing.reference' as object, not numbers"),
    "sharing-dtype": ({"replace": {"sharing.reference": np.zeros((3, 7))}}, "sharing state 'reference' is float64 "
                                                                            "(3, 7), this run's sharing algorithm "
                                                                            "needs float32 (3, 7)"),
    "sharing-shape": ({"replace": {"sharing.counts": np.zeros((3, 3), np.int64)}}, "'counts' is int64 (3, 3)"),
    "sharing-missing": ({"drop": ["sharing.sent"]}, "has no sharing state 'sent'"),
}


@pytest.mark.filterwarnings("ignore:Duplicate name")
@pytest.mark.parametrize("name", sorted(CRAFTED))
def test_crafted_checkpoint_gives_one_line(good, tmp_path, name):
    kwargs, match = CRAFTED[name]
    path = craft(good, tmp_path / f"{name}.npz", **kwargs)
    msg = refused(path, match)
    assert "delete it" in msg or "resume with" in msg or "resume from" in msg, msg


def test_a_checkpoint_of_another_config_or_format(good, tmp_path):
    refused(good, "belongs to a different configuration (differs in seed)", config={**CONFIG, "seed": 2})
    refused(craft(good, tmp_path / "f.npz", replace={"format": np.array(7)}), "has format 7; this jwins reads 1")
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 not really a zip")
    refused(tmp_path / "junk.npz", "is damaged (BadZipFile")


def test_a_deflate_bomb_that_declares_its_size_is_refused_from_the_header(good, tmp_path):
    """'extra' declared as 250 million characters (1 GB) of zeros, in a 1 MB deflate stream: refused from the
    .npy header, before any of it is decompressed (np.load read it all: 2 GB of memory for a 1.7 MB file)."""
    path = zip_with_raw_deflated(good, tmp_path / "bomb.npz", "extra", npy_header("<U250000000", ()), 64 << 20)
    assert path.stat().st_size < 200_000
    peak, error = peak_while(lambda: load(path, config=CONFIG, shape=SHAPE))
    assert isinstance(error, CheckpointError), error
    assert "stores 'extra' as text of 250000000 characters, more than the 1048576 it can have" in str(error)
    assert peak < 2 << 20, peak


@pytest.mark.parametrize("key,head", [
    ("params", npy(np.zeros(SHAPE, np.float32))),   # the right header, then 64 MiB more than it gives
    ("metrics", npy(np.array(json.dumps(metrics(2))))),
    ("round", npy(np.array(2))),
])
def test_a_member_never_expands_beyond_its_expected_size(good, tmp_path, key, head):
    path = zip_with_raw_deflated(good, tmp_path / "bomb.npz", key, head, 64 << 20)
    assert path.stat().st_size < 200_000
    peak, error = peak_while(lambda: load(path, config=CONFIG, shape=SHAPE))
    assert isinstance(error, CheckpointError), error
    assert f"has a member {key!r} holding more data than its header gives" in str(error), str(error)
    assert peak < 2 << 20, peak


def test_a_sharing_member_is_checked_against_the_template_before_its_data(good, tmp_path):
    """A sharing member declaring 10^6 x 10^6 floats: load reads its header only; restore_state refuses it from
    the header, with the template's dtype and shape."""
    path = zip_with_raw_deflated(good, tmp_path / "bomb.npz", "sharing.reference", npy_header("<f4", (10**6, 10**6)),
                                 16 << 20)
    loaded = load(path, config=CONFIG, shape=SHAPE)
    peak, error = peak_while(lambda: restore_state(template(), loaded.sharing, torch.device("cpu")))
    assert isinstance(error, CheckpointError)
    assert "sharing state 'reference' is float32 (1000000, 1000000), this run's sharing algorithm needs float32" \
        in str(error)
    assert peak < 1 << 20, peak
    # a plain dict of arrays is checked the same way
    with pytest.raises(CheckpointError, match=r"'sent' is int64 \(3,\), expected bool \(3,\)"):
        restore_state(template(), {"reference": np.zeros((3, 7), np.float32), "sent": np.zeros(3, np.int64),
                                   "counts": np.zeros((3, 2), np.int64)}, torch.device("cpu"))


def test_a_shard_without_metrics_is_accepted(tmp_path):
    """Ranks other than 0 keep no metrics: their shards hold an empty list at any round up to the run's rounds."""
    path = tmp_path / "checkpoint-1-of-2.npz"
    write(path, round=4, records=[])
    assert load(path, config=CONFIG, shape=SHAPE).round == 4


# ---------------------------------------------------------------------------------------------- generations


def test_generations_keep_the_previous_round_until_commit(tmp_path):
    path = tmp_path / "checkpoint-0-of-2.npz"
    two = write(path, round=2, seed=2)
    commit(path)
    assert not previous(path).exists() and previous(path).name == "checkpoint-0-of-2.prev.npz"
    four = write(path, round=4, seed=4)
    assert rounds_available(path) == [2, 4]
    at2 = load(path, config=CONFIG, shape=SHAPE, round=2)
    at4 = load(path, config=CONFIG, shape=SHAPE, round=4)
    assert at2.round == 2 and at2.metrics == metrics(2) and at2.path == previous(path)
    assert np.array_equal(at2.params, two["params"].numpy()) and np.array_equal(at4.params, four["params"].numpy())
    assert torch.equal(restore_state(template(), at2.sharing, torch.device("cpu")).counts, two["state"].counts)
    assert load(path, config=CONFIG, shape=SHAPE).round == 4   # no round: the current generation
    with pytest.raises(CheckpointError, match=r"no checkpoint of round 3 at .*: its generations hold rounds 2, 4"):
        load(path, config=CONFIG, shape=SHAPE, round=3)
    commit(path)
    assert rounds_available(path) == [4]
    with pytest.raises(CheckpointError, match="no checkpoint of round 2 at .*: its generations hold rounds 4;"):
        load(path, config=CONFIG, shape=SHAPE, round=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-0-of-2.npz"]


def test_ranks_that_crashed_between_their_writes_share_a_round(tmp_path):
    """Rank 0 wrote round 6, rank 1 crashed before writing it and still holds round 3: both hold round 3."""
    shards = [tmp_path / "checkpoint-0-of-2.npz", tmp_path / "checkpoint-1-of-2.npz"]
    for shard in shards:
        write(shard, round=3)
    for shard in shards:   # every rank wrote round 3
        commit(shard)
    write(shards[0], round=6)
    held = [set(rounds_available(s)) for s in shards]
    assert held == [{3, 6}, {3}]
    common = max(set.intersection(*held))
    assert [load(s, config=CONFIG, shape=SHAPE, round=common).round for s in shards] == [3, 3]


def test_rounds_available_reads_only_the_round(good, tmp_path):
    """A file whose params are a bomb still tells its round; a damaged file or a missing one is left out."""
    path = tmp_path / "c.npz"
    zip_with_raw_deflated(good, path, "params", npy(np.zeros(SHAPE, np.float32)), 64 << 20)
    held = []
    peak, error = peak_while(lambda: held.extend(rounds_available(path)))
    assert error is None and held == [2] and peak < 1 << 20, (error, peak)
    previous(path).write_bytes(b"garbage")
    assert rounds_available(path) == [2]
    assert rounds_available(tmp_path / "none.npz") == []


def test_save_is_atomic_and_keeps_both_generations_on_a_crash(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.npz"
    write(path, round=2)
    write(path, round=4)
    before = path.read_bytes(), previous(path).read_bytes()

    def crash(file, **arrays):
        file.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.np, "savez", crash)
    with pytest.raises(OSError):
        write(path, round=6)
    assert (path.read_bytes(), previous(path).read_bytes()) == before
    assert rounds_available(path) == [2, 4]


def test_without_hard_links_the_previous_generation_is_a_rename(tmp_path, monkeypatch):
    def no_links(*args):
        raise OSError("hard links not supported")

    monkeypatch.setattr(checkpoint.os, "link", no_links)
    path = tmp_path / "checkpoint.npz"
    write(path, round=2)
    write(path, round=4)
    assert rounds_available(path) == [2, 4]
    # a crash between the two renames leaves only the previous generation: load takes it
    path.unlink()
    assert load(path, config=CONFIG, shape=SHAPE).round == 2


def test_a_damaged_current_generation_points_to_the_previous_one(tmp_path):
    path = tmp_path / "checkpoint.npz"
    write(path, round=2)
    write(path, round=4)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    msg = refused(path, "is damaged")
    assert "delete it to resume from the previous generation checkpoint.prev.npz" in msg
    assert load(path, config=CONFIG, shape=SHAPE, round=2).round == 2
    with pytest.raises(CheckpointError, match="cannot commit checkpoint .*: it does not exist"):
        commit(tmp_path / "other.npz")


def test_resuming_a_run_through_the_loop(tmp_path):
    """The experiment loop's own save/load/restore_state still give a resumed run the uninterrupted metrics."""
    from jwins import config
    from jwins.experiment import run

    cfg = config.load(overrides=["nodes=4", "rounds=4", "topology.degree=2", "eval.every=2", "data.max_samples=200",
                                 "wire.value_codec=float32", "checkpoint.every=1", "sharing.algorithm=choco"])
    whole = run(cfg, run_dir=tmp_path / "whole", quiet=True)
    run(cfg.replace(rounds=2), run_dir=tmp_path / "cut", quiet=True)
    (tmp_path / "cut" / "summary.json").unlink()
    assert rounds_available(tmp_path / "cut" / "checkpoint.npz") == [2]  # round 1's generation was committed away
    resumed = run(cfg, run_dir=tmp_path / "cut", resume=True, quiet=True)
    torch.testing.assert_close(resumed.params, whole.params, rtol=0, atol=0)
    assert [m["round"] for m in resumed.metrics] == [1, 2, 3, 4]

