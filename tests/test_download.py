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
    assert not (tmp_path / "mnist").exists()  # the dataset folder it created is removed again


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


# ---------------------------------------------------------------------------------------------- size caps


class Zeros(io.RawIOBase):
    """``n`` zero bytes, produced as read (so a big archive member costs no memory to write)."""

    def __init__(self, n: int):
        self.left = n

    def readable(self):
        return True

    def readinto(self, b):
        k = min(len(b), self.left)
        b[:k] = bytes(k)
        self.left -= k
        return k


def tar_bomb(size: int, name: str = "big/zeros.bin") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=9) as tar:
        tar.addfile(tarfile.TarInfo("big/small.txt"), io.BytesIO(b""))
        info = tarfile.TarInfo(name)
        info.size = size
        tar.addfile(info, Zeros(size))
    return buf.getvalue()


def zip_bomb(size: int, name: str = "big/zeros.bin", method=zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf, zf.open(name, "w", force_zip64=True) as out:
        for _ in range(size // (1 << 20)):
            out.write(bytes(1 << 20))
    return buf.getvalue()


@pytest.fixture
def unpacked_sizes(monkeypatch):
    """The bytes each temporary unpacking folder held when it was removed."""
    sizes: list[int] = []
    rmtree = dl.shutil.rmtree

    def measure(path, *args, **kwargs):
        if Path(path).name.startswith(".unpack-"):
            sizes.append(sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file()))
        return rmtree(path, *args, **kwargs)

    monkeypatch.setattr(dl.shutil, "rmtree", measure)
    return sizes


@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
def test_archive_bomb_stops_at_the_cap_and_leaves_nothing(tmp_path, monkeypatch, unpacked_sizes, kind):
    """A 20 KB archive that unpacks to 20 MiB, fetched for a Remote whose archive unpacks to at most 1 MiB: the
    unpacking stops at the cap while streaming and removes what it wrote; one line names the archive."""
    body = tar_bomb(20 << 20) if kind == "tar.gz" else zip_bomb(20 << 20)
    assert len(body) < 100_000
    r, files = archive_remote(f"a.{kind}", body, max_unpacked=1 << 20)
    use(monkeypatch, FakeNet(files), r)
    with pytest.raises(DataError) as e:
        download("mnist", tmp_path, progress=False)
    msg = str(e.value)
    assert "\n" not in msg and f"a.{kind}: unpacks to more than 1048576 bytes" in msg, msg
    assert unpacked_sizes and max(unpacked_sizes) <= (1 << 20) + dl._CHUNK   # never more than the cap on disk
    assert sorted(p.name for p in (tmp_path / "mnist").iterdir()) == [f"a.{kind}"]   # no member, no .unpack-*
    # the same archive with room enough unpacks
    r, files = archive_remote(f"a.{kind}", body, max_unpacked=32 << 20)
    use(monkeypatch, FakeNet(files), r)
    out = download("mnist", tmp_path, progress=False)
    assert (out / "big" / "zeros.bin").stat().st_size == 20 << 20


def test_official_archives_have_a_cap():
    remotes = [r for rs in dl.SOURCES.values() for r in rs] + list(dl.MOVIELENS_VARIANTS.values())
    for r in remotes:
        if r.extract:
            assert r.max_unpacked and r.max_unpacked <= dl.MAX_UNPACKED, r.filename
    # the cap of CIFAR's archives is above their real unpacked size (178 MiB), with a margin
    assert dl.SOURCES["cifar10"][0].max_unpacked >= 200 << 20


def test_tar_member_declaring_a_huge_size_is_refused_before_reading(tmp_path, monkeypatch, unpacked_sizes):
    """A tar header that claims 1 TB for a member (a few bytes follow): refused from the header, nothing read."""
    info = tarfile.TarInfo("big/huge.bin")
    info.size = 10**12
    raw = info.tobuf(format=tarfile.PAX_FORMAT) + b"x" * 4096
    buf = io.BytesIO()
    import gzip

    with gzip.GzipFile(fileobj=buf, mode="wb") as gz:
        gz.write(raw)
    r, files = archive_remote("a.tar.gz", buf.getvalue(), max_unpacked=1 << 20)
    use(monkeypatch, FakeNet(files), r)
    with pytest.raises(DataError, match=r"a.tar.gz: unpacks to more than 1048576 bytes \(member 'big/huge.bin' ends"):
        download("mnist", tmp_path, progress=False)
    assert unpacked_sizes == [0]


def _patch_zip_sizes(body: bytes, size: int) -> bytes:
    """The zip with its one member's uncompressed size (local header and central directory) set to ``size``."""
    import struct

    data = bytearray(body)
    local = data.index(b"PK\x03\x04")
    central = data.index(b"PK\x01\x02")
    struct.pack_into("<I", data, local + 22, size)
    struct.pack_into("<I", data, central + 24, size)
    return bytes(data)


def test_zip_member_that_lies_about_its_size(tmp_path, monkeypatch, unpacked_sizes):
    """The zip directory says 100 bytes, the deflate stream holds 4 MiB: no more than 100 bytes are written, and
    the member's CRC gives it away."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("m.bin", bytes(4 << 20))
    body = _patch_zip_sizes(buf.getvalue(), 100)
    r, files = archive_remote("a.zip", body, max_unpacked=1 << 20)
    use(monkeypatch, FakeNet(files), r)
    with pytest.raises(DataError, match=r"a.zip: cannot be unpacked \(BadZipFile: Bad CRC-32 for file 'm.bin'\)"):
        download("mnist", tmp_path, progress=False)
    assert max(unpacked_sizes) <= 100


def test_zip_without_an_output_bound_or_with_too_many_entries(tmp_path, monkeypatch):
    r, files = archive_remote("a.zip", zip_bomb(1 << 20, method=zipfile.ZIP_BZIP2), max_unpacked=4 << 20)
    use(monkeypatch, FakeNet(files), r)
    with pytest.raises(DataError, match=r"refusing to extract 'big/zeros.bin': compressed with method 12"):
        download("mnist", tmp_path, progress=False)
    monkeypatch.setattr(dl, "MAX_MEMBERS", 5)
    for kind in ("zip", "tar.gz"):
        members = {f"d/{i}.txt": b"x" for i in range(6)}
        body = zip_bytes(members) if kind == "zip" else tar_gz(members)
        r, files = archive_remote(f"many.{kind}", body)
        use(monkeypatch, FakeNet(files), r)
        with pytest.raises(DataError, match=f"many.{kind}: more than 5 entries"):
            download("mnist", tmp_path / kind, progress=False)


def test_failed_download_removes_the_folders_it_created(tmp_path, monkeypatch):
    use(monkeypatch, FakeNet({}), remote())
    root = tmp_path / "new" / "deeper"
    with pytest.raises(DataError, match="could not download data.bin"):
        download("mnist", root, progress=False)
    assert not (tmp_path / "new").exists()
    # a root that was there stays, and a folder holding a .part file to resume from stays
    (tmp_path / "kept").mkdir()
    with pytest.raises(DataError):
        download("mnist", tmp_path / "kept", progress=False)
    assert (tmp_path / "kept").is_dir() and not (tmp_path / "kept" / "mnist").exists()
    use(monkeypatch, FakeNet({URL: PAYLOAD}, cut_after=1000), remote())
    with pytest.raises(DataError, match="resumes"):
        download("mnist", root, progress=False)
    assert (root / "mnist" / "data.bin.part").stat().st_size == 1000
