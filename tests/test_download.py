"""Downloads against a fake network: resume, checksums, atomicity, safe extraction.  No test touches the net."""
from __future__ import annotations

import hashlib
import importlib
import io
import pickle
import tarfile
import urllib.error
import zipfile
from pathlib import Path

import numpy as np
import pytest

from jwins.data import load
from jwins.data.download import Remote, download

# jwins.data.download is the function (re-exported); the module is reached through importlib.
dl = importlib.import_module("jwins.data.download")
from jwins.errors import DataError


class FakeResponse(io.BytesIO):
    def __init__(self, body: bytes, status: int, headers: dict[str, str]):
        super().__init__(body)
        self.status = status
        self.headers = headers

    def getcode(self):
        return self.status


class FakeNet:
    """Serves ``files`` (url -> bytes); honours Range unless ``ranges`` is False; records every request."""

    def __init__(self, files: dict[str, bytes], ranges: bool = True, cut_after: int | None = None):
        self.files, self.ranges, self.cut_after = files, ranges, cut_after
        self.requests: list[tuple[str, dict[str, str]]] = []

    def __call__(self, url, headers, timeout):
        self.requests.append((url, dict(headers)))
        if url not in self.files:
            raise urllib.error.URLError(f"no route to {url}")
        body = self.files[url]
        rng = headers.get("Range")
        if rng and self.ranges:
            start = int(rng.removeprefix("bytes=").rstrip("-"))
            if start >= len(body):
                raise urllib.error.HTTPError(url, 416, "Range Not Satisfiable", {}, None)
            part = body[start:]
            resp_headers = {"Content-Length": str(len(part)),
                            "Content-Range": f"bytes {start}-{len(body) - 1}/{len(body)}"}
            status = 206
        else:
            part, status, resp_headers = body, 200, {"Content-Length": str(len(body))}
        if self.cut_after is not None:  # the connection drops: fewer bytes than announced
            part = part[: self.cut_after]
        return FakeResponse(part, status, resp_headers)


@pytest.fixture(autouse=True)
def no_real_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to use the real network")

    monkeypatch.setattr("urllib.request.urlopen", refuse)
    monkeypatch.setattr(dl, "_open_url", refuse)


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


PAYLOAD = bytes(range(256)) * 400  # 102400 bytes
URL = "https://example.invalid/data.bin"


def remote(**kw) -> Remote:
    args = {"filename": "data.bin", "urls": (URL,), "sha256": sha(PAYLOAD), "size": len(PAYLOAD)}
    args.update(kw)
    return Remote(**args)


def use(monkeypatch, net: FakeNet, *remotes: Remote, name="mnist"):
    monkeypatch.setattr(dl, "_open_url", net)
    monkeypatch.setitem(dl.SOURCES, name, tuple(remotes))


def test_fresh_download_is_verified_and_atomic(tmp_path, monkeypatch):
    net = FakeNet({URL: PAYLOAD})
    use(monkeypatch, net, remote())
    out = download("mnist", tmp_path, progress=False)
    assert out == tmp_path / "mnist"
    assert download("mnist", tmp_path / "mnist", progress=False) == out  # a root named like the dataset
    assert (out / "data.bin").read_bytes() == PAYLOAD
    assert not (out / "data.bin.part").exists()
    assert "Range" not in net.requests[0][1]
    download("mnist", tmp_path, progress=False)  # present and valid: no second request
    assert len(net.requests) == 1


def test_resume_sends_range_and_appends(tmp_path, monkeypatch):
    net = FakeNet({URL: PAYLOAD})
    use(monkeypatch, net, remote())
    (tmp_path / "mnist").mkdir()
    (tmp_path / "mnist" / "data.bin.part").write_bytes(PAYLOAD[:30000])
    download("mnist", tmp_path, progress=False)
    assert net.requests[0][1]["Range"] == "bytes=30000-"
    assert (tmp_path / "mnist" / "data.bin").read_bytes() == PAYLOAD
    assert not (tmp_path / "mnist" / "data.bin.part").exists()


def test_server_without_range_support_restarts(tmp_path, monkeypatch):
    net = FakeNet({URL: PAYLOAD}, ranges=False)
    use(monkeypatch, net, remote())
    (tmp_path / "mnist").mkdir()
    (tmp_path / "mnist" / "data.bin.part").write_bytes(b"garbage" * 10)
    download("mnist", tmp_path, progress=False)
    assert (tmp_path / "mnist" / "data.bin").read_bytes() == PAYLOAD


def test_complete_part_file_answered_416(tmp_path, monkeypatch):
    net = FakeNet({URL: PAYLOAD})
    use(monkeypatch, net, remote(size=None))  # size unknown: must ask, and the server says nothing is left
    (tmp_path / "mnist").mkdir()
    (tmp_path / "mnist" / "data.bin.part").write_bytes(PAYLOAD)
    download("mnist", tmp_path, progress=False)
    assert (tmp_path / "mnist" / "data.bin").read_bytes() == PAYLOAD


def test_checksum_mismatch_leaves_nothing(tmp_path, monkeypatch):
    tampered = PAYLOAD[:-1] + b"\x00"
    net = FakeNet({URL: tampered})
    use(monkeypatch, net, remote())
    with pytest.raises(DataError, match="checksum mismatch for data.bin.*sha256"):
        download("mnist", tmp_path, progress=False)
    assert not (tmp_path / "mnist" / "data.bin").exists()
    assert not (tmp_path / "mnist" / "data.bin.part").exists()


def test_size_and_md5_checks(tmp_path, monkeypatch):
    use(monkeypatch, FakeNet({URL: PAYLOAD}), remote(sha256=None, size=len(PAYLOAD) + 1))
    with pytest.raises(DataError, match="checksum mismatch.*size 102400 bytes, expected 102401"):
        download("mnist", tmp_path, progress=False)
    use(monkeypatch, FakeNet({URL: PAYLOAD}), remote(sha256=None, size=None, md5="0" * 32))
    with pytest.raises(DataError, match="md5"):
        download("mnist", tmp_path, progress=False)
    assert list((tmp_path / "mnist").iterdir()) == []


def test_interrupted_download_is_never_final_and_resumes(tmp_path, monkeypatch):
    use(monkeypatch, FakeNet({URL: PAYLOAD}, cut_after=40000), remote())
    with pytest.raises(DataError, match=r"(?s)could not download data.bin.*40000 of 102400.*resumes"):
        download("mnist", tmp_path, progress=False)
    part = tmp_path / "mnist" / "data.bin.part"
    assert not (tmp_path / "mnist" / "data.bin").exists()
    assert part.read_bytes() == PAYLOAD[:40000]
    net = FakeNet({URL: PAYLOAD})
    use(monkeypatch, net, remote())
    download("mnist", tmp_path, progress=False)
    assert net.requests[0][1]["Range"] == "bytes=40000-"
    assert (tmp_path / "mnist" / "data.bin").read_bytes() == PAYLOAD


def test_mirror_fallback_and_all_failing(tmp_path, monkeypatch):
    mirror = "https://mirror.invalid/data.bin"
    net = FakeNet({mirror: PAYLOAD})
    use(monkeypatch, net, remote(urls=(URL, mirror)))
    download("mnist", tmp_path, progress=False)
    assert [u for u, _ in net.requests] == [URL, mirror]
    use(monkeypatch, FakeNet({}), remote(filename="other.bin", urls=(URL, mirror)))
    with pytest.raises(DataError, match=r"could not download other.bin:\n  https://example.invalid"):
        download("mnist", tmp_path, progress=False)


def tar_gz(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return buf.getvalue()


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def archive_remote(filename: str, body: bytes, **kw) -> tuple[Remote, dict[str, bytes]]:
    url = f"https://example.invalid/{filename}"
    return Remote(filename, (url,), sha256=sha(body), size=len(body), extract=True, **kw), {url: body}


@pytest.mark.parametrize("evil", ["../escaped.txt", "ok/../../escaped.txt", "/tmp/escaped-jwins-test.txt"])
@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
def test_extraction_refuses_path_traversal(tmp_path, monkeypatch, evil, kind):
    members = {"good/file.txt": b"fine", evil: b"evil"}
    body = tar_gz(members) if kind == "tar.gz" else zip_bytes(members)
    r, files = archive_remote(f"a.{kind}", body)
    use(monkeypatch, FakeNet(files), r)
    root = tmp_path / "root"
    with pytest.raises(DataError, match="refusing to extract"):
        download("mnist", root, progress=False)
    assert not (tmp_path / "escaped.txt").exists() and not (root / "escaped.txt").exists()
    assert not Path("/tmp/escaped-jwins-test.txt").exists()
    assert not (root / "mnist" / "good").exists()  # nothing half-extracted is left in place
    assert not any(p.name.startswith(".unpack-") for p in (root / "mnist").iterdir())


def test_extraction_refuses_links(tmp_path, monkeypatch):
    r, files = archive_remote("a.tar.gz", tar_gz({"d/f.txt": b"x"}, links={"d/link": "/etc/passwd"}))
    use(monkeypatch, FakeNet(files), r)
    with pytest.raises(DataError, match="refusing to extract 'd/link'"):
        download("mnist", tmp_path, progress=False)


def test_extraction_places_files_and_is_not_repeated(tmp_path, monkeypatch):
    members = {"pkg-1.0/keep/a.txt": b"A", "pkg-1.0/keep/sub/b.txt": b"B", "pkg-1.0/setup.py": b"code"}
    r, files = archive_remote("pkg.tar.gz", tar_gz(members), only="pkg-1.0/keep/")
    net = FakeNet(files)
    use(monkeypatch, net, r)
    out = download("mnist", tmp_path, progress=False)
    assert (out / "pkg-1.0" / "keep" / "a.txt").read_bytes() == b"A"
    assert (out / "pkg-1.0" / "keep" / "sub" / "b.txt").read_bytes() == b"B"
    assert not (out / "pkg-1.0" / "setup.py").exists()  # outside `only`
    assert not (out / "pkg.tar.gz").exists()  # the archive is removed once unpacked
    download("mnist", tmp_path, progress=False)
    assert len(net.requests) == 1  # already unpacked: nothing fetched


def test_cifar10_end_to_end(tmp_path, monkeypatch):
    r = np.random.default_rng(0)
    members = {}
    for f in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"labels": r.integers(0, 10, 3).tolist(), b"data": r.integers(0, 256, (3, 3072)).astype(np.uint8)}
        members[f"cifar-10-batches-py/{f}"] = pickle.dumps(batch)
    rem, files = archive_remote("cifar-10-python.tar.gz", tar_gz(members))
    use(monkeypatch, FakeNet(files), rem, name="cifar10")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    download("cifar10", tmp_path, progress=True)
    d = load("cifar10", tmp_path)
    assert d.train_x.shape == (15, 3, 32, 32) and d.num_test == 3


def test_leaf_datasets_explain_instead(tmp_path, capsys):
    for name in ("femnist", "celeba"):
        with pytest.raises(DataError, match="preprocess.sh") as e:
            download(name, tmp_path, progress=False)
        assert "github.com/TalwalkarLab/leaf" in str(e.value)
        assert "preprocess.sh" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_sources_are_well_formed():
    for name, remotes in dl.SOURCES.items():
        for r in remotes:
            assert r.urls and all(u.startswith(("https://", "http://")) for u in r.urls)
            assert r.sha256 is None or (len(r.sha256) == 64 and int(r.sha256, 16) >= 0)
    assert all(r.sha256 for r in dl.SOURCES["mnist"] + dl.SOURCES["fashion-mnist"] + dl.SOURCES["cifar10"])
    with pytest.raises(DataError, match="unknown dataset"):
        download("nope", "/nonexistent")
