"""Checkpoints: the full state of a run at a round boundary, in one ``.npz`` file written atomically.

A checkpoint holds the parameters, the optimizer state, the sharing state (every tensor field of its
NamedTuple), the metrics so far and the configuration it belongs to. Random streams are stateless functions
of (seed, node, round), so no generator state is needed. In the distributed runtime each rank writes its own
shard (ranks other than 0 keep no metrics: their shards hold an empty list).

Reading
-------
A checkpoint file is read as untrusted bytes, never with ``np.load``: the zip directory is opened with
:mod:`zipfile`, every member name is checked against the names a checkpoint has, and each member's ``.npy``
header is read (``numpy.lib.format``) and checked against what this run expects -- ``params``/``momentum``
float32 ``[N, D]``, the sharing state the dtype and shape of the run's state template, integers for
``format``/``round``, text of bounded length for ``config``/``metrics``/``extra`` -- before its data is read.
The data is then read with a hard cap: exactly the bytes the (checked) header gives, whatever the zip directory
claims, so no member can expand beyond its expected size; a member with more data than that is refused. Every
problem is one :class:`~jwins.errors.CheckpointError` line naming the file, the problem and how to recover.

Generations
-----------
:func:`save` keeps the file it replaces as the previous generation (``<stem>.prev.npz``) instead of deleting
it; :func:`commit` drops the previous generation once the caller knows every rank has written the new one.
So a world whose ranks crashed between their writes still has, on every rank, a round they all hold:
:func:`rounds_available` lists the rounds of a rank's generations (reading only each file's round) and
``load(path, round=R, ...)`` loads the generation holding round ``R``.
"""
from __future__ import annotations

import json
import math
import os
import struct
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from .config import NO_NUMBERS
from .errors import CheckpointError

FORMAT = 1
# Keys that may change between the interrupted run and its resumption: its length, and what never changes a number.
RESUMABLE_CHANGES = ("rounds", *NO_NUMBERS)

# What a checkpoint file may hold: these members, plus "sharing.<field>" for the sharing state's tensors.
_REQUIRED = ("format", "round", "config", "metrics", "params")
_OPTIONAL = ("extra", "momentum")
_MAX_MEMBERS = 64
_MAX_HEADER = 10_000          # bytes of one .npy header (numpy's own default limit)
_MAX_TEXT = 1 << 20           # characters of config and extra
_TEXT_PER_ROUND = 2048        # characters of metrics per round (a record is 400-750)
_CHUNK = 1 << 20
# what a damaged zip or .npy member raises inside zipfile / numpy.lib.format
_READ_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError, KeyError, struct.error,
                zlib.error, NotImplementedError, RuntimeError, OverflowError, SyntaxError, TypeError)


def comparable(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in RESUMABLE_CHANGES}


def differences(saved: dict, wanted: dict) -> list[str]:
    """The dotted keys in which two resolved configs differ, leaving out what a resumed run may change."""
    return sorted(_diff(comparable(json.loads(json.dumps(saved))), comparable(json.loads(json.dumps(wanted)))))


def previous(path: Path) -> Path:
    """Where the previous generation of the checkpoint ``path`` is kept: ``<stem>.prev<suffix>``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


# ----------------------------------------------------------------------------------------------------------
# Writing


def save(path: Path, *, round: int, config: dict, params: torch.Tensor, momentum: torch.Tensor | None,
         sharing_state: Any, metrics: list[dict], extra: dict | None = None) -> None:
    """Write atomically: to ``<path>.tmp``, flushed to disk, then renamed over ``path``. The file it replaces
    becomes the previous generation (:func:`previous`), which :func:`commit` removes."""
    path = Path(path)
    arrays: dict[str, np.ndarray] = {
        "format": np.array(FORMAT),
        "round": np.array(round),
        "config": np.array(json.dumps(config, sort_keys=True)),
        "metrics": np.array(json.dumps(metrics)),
        "extra": np.array(json.dumps(extra or {})),
        "params": params.detach().cpu().numpy(),
    }
    if momentum is not None:
        arrays["momentum"] = momentum.detach().cpu().numpy()
    for name, value in _fields(sharing_state).items():
        if isinstance(value, torch.Tensor):
            arrays[f"sharing.{name}"] = value.detach().cpu().numpy()
    tmp = path.with_name(path.name + ".tmp")
    path.parent.mkdir(parents=True, exist_ok=True)  # a rank on another machine may not have the run directory yet
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    if path.exists():
        _keep_as_previous(path)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _keep_as_previous(path: Path) -> None:
    """Make the current file the previous generation. With a hard link ``path`` never goes missing; where the
    file system has none, a rename (for a moment only the previous generation exists, which :func:`load` takes)."""
    prev = previous(path)
    link = prev.with_name(prev.name + ".tmp")
    try:
        link.unlink(missing_ok=True)
        os.link(path, link)
        os.replace(link, prev)
    except OSError:
        link.unlink(missing_ok=True)
        os.replace(path, prev)


def commit(path: Path) -> None:
    """Drop the previous generation of ``path``: call it once every rank has written its new checkpoint."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"cannot commit checkpoint {path}: it does not exist (save it first); the previous "
                              "generation is kept")
    previous(path).unlink(missing_ok=True)
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # a platform without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------------------------------------
# Reading


class Loaded:
    def __init__(self, round: int, metrics: list[dict], params: np.ndarray, momentum: np.ndarray | None,
                 sharing: Mapping[str, np.ndarray], extra: dict, path: Path | None = None):
        self.round, self.metrics, self.params, self.momentum = round, metrics, params, momentum
        self.sharing, self.extra, self.path = sharing, extra, path


def rounds_available(path: Path) -> list[int]:
    """The rounds held by the current and the previous generation of ``path`` (sorted, each once), reading only
    each file's round; a generation that is missing or whose round cannot be read is left out."""
    found = set()
    for file in _generations(Path(path)):
        try:
            found.add(_peek_round(file))
        except CheckpointError:
            continue
    return sorted(found)


def load(path: Path, *, config: dict, shape: tuple[int, int], round: int | None = None) -> Loaded:
    """Read a checkpoint, refusing a damaged or crafted one, or one that belongs to a different configuration.

    ``round=None``: the current generation (the previous one if only it exists); ``round=R``: the generation
    holding round R (CheckpointError if none does)."""
    path = Path(path)
    files = _generations(path)
    if not files:
        raise CheckpointError(f"no checkpoint at {path}; the run wrote none (set checkpoint.every) or it was moved")
    if round is None:
        return _load_file(files[0], path, config, tuple(shape))
    if type(round) is not int or round < 0:
        raise CheckpointError(f"cannot load checkpoint {path} at round {round!r}: a round is an integer >= 0")
    for file in files:
        try:
            if _peek_round(file) != round:
                continue
        except CheckpointError:
            continue
        return _load_file(file, path, config, tuple(shape))
    held = rounds_available(path)
    raise CheckpointError(f"no checkpoint of round {round} at {path}: its generations hold "
                          f"{'rounds ' + ', '.join(map(str, held)) if held else 'no readable round'}; resume from a "
                          "round every rank holds, or start over")


def _fields(state: Any) -> dict[str, Any]:
    """The fields of a sharing state: a NamedTuple's, or none for None."""
    return {} if state is None else state._asdict()


def restore_state(template: Any, arrays: Mapping[str, np.ndarray], device: torch.device) -> Any:
    """The sharing state ``template`` (a NamedTuple from ``init``) with its tensor fields read back.

    Each field must have exactly the template's dtype and shape; with ``Loaded.sharing`` this is checked on the
    member's header before its data is read."""
    if template is None:  # an algorithm that keeps no state (the protocol allows None)
        return None
    where = f"checkpoint {arrays.file}" if isinstance(arrays, _SharingArrays) else "checkpoint"
    fields = {}
    for name, value in _fields(template).items():
        if not isinstance(value, torch.Tensor):
            continue
        if name not in arrays:
            raise CheckpointError(f"{where} has no sharing state {name!r}: it was written by another sharing "
                                  "algorithm; resume with the run's own config.json")
        try:
            want = torch.empty(0, dtype=value.dtype).numpy().dtype
        except TypeError:
            raise CheckpointError(f"the sharing state {name!r} is a {value.dtype} tensor, which a checkpoint "
                                  "cannot hold") from None
        shape = tuple(value.shape)
        if isinstance(arrays, _SharingArrays):
            array = arrays.read(name, want, shape)
        else:
            array = arrays[name]
            if not isinstance(array, np.ndarray) or not _same_type(array.dtype, want) or array.shape != shape:
                got = f"{array.dtype} {array.shape}" if isinstance(array, np.ndarray) else type(array).__name__
                raise CheckpointError(f"{where}'s sharing state {name!r} is {got}, expected {want} {shape}")
        fields[name] = torch.from_numpy(np.array(array, dtype=want)).to(device)
    return template._replace(**fields)


def _generations(path: Path) -> list[Path]:
    return [f for f in (path, previous(path)) if f.exists()]


class _Refused(Exception):
    """One problem with one member; becomes a CheckpointError naming the file and how to recover."""


def _recovery(file: Path, path: Path) -> str:
    if file == path and previous(path).exists():
        return (f"delete it to resume from the previous generation {previous(path).name}, or start over "
                "(delete both)")
    return "delete it to start over, or resume from an intact copy"


def _load_file(file: Path, path: Path, config: dict, shape: tuple[int, ...]) -> Loaded:
    try:
        return _read_checkpoint(file, config, shape)
    except CheckpointError:
        raise
    except _Refused as e:
        raise CheckpointError(f"checkpoint {file} {e}; {_recovery(file, path)}") from None
    except _READ_ERRORS as e:
        reason = (str(e).strip().splitlines() or [""])[0][:200]
        raise CheckpointError(f"checkpoint {file} is damaged ({type(e).__name__}: {reason}); "
                              f"{_recovery(file, path)}") from None


def _members(zf: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    """The members by name (without ``.npy``), every name one a checkpoint has and none twice."""
    infos = zf.infolist()
    if len(infos) > _MAX_MEMBERS:
        raise _Refused(f"has {len(infos)} members, more than a checkpoint holds")
    members: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        name = info.filename
        key = name[:-4] if name.endswith(".npy") else None
        allowed = key in _REQUIRED or key in _OPTIONAL or (
            key is not None and key.startswith("sharing.") and key[len("sharing."):].isidentifier())
        if not allowed:
            raise _Refused(f"holds a member {name[:80]!r} that no checkpoint has")
        if key in members:
            raise _Refused(f"holds the member {name!r} twice")
        if info.flag_bits & 0x1:
            raise _Refused(f"holds an encrypted member {name!r}")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise _Refused(f"holds the member {name!r} compressed with method {info.compress_type} "
                           "(only stored and deflated members are read)")
        members[key] = info
    for key in _REQUIRED:
        if key not in members:
            raise _Refused(f"is incomplete: it has no {key!r}")
    return members


class _Header:
    def __init__(self, shape: tuple[int, ...], fortran: bool, dtype: np.dtype):
        self.shape, self.fortran, self.dtype = shape, fortran, dtype

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize

    def __eq__(self, other) -> bool:
        return isinstance(other, _Header) and (self.shape, self.fortran, self.dtype) == (
            other.shape, other.fortran, other.dtype)

    def describe(self) -> str:
        return f"{self.dtype} {self.shape}"


def _read_header(f, key: str) -> _Header:
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f, max_header_size=_MAX_HEADER)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(f, max_header_size=_MAX_HEADER)
    else:
        raise _Refused(f"has a member {key!r} in .npy format {version}, which checkpoints do not use")
    return _Header(tuple(shape), bool(fortran), dtype)


def _read_data(f, header: _Header, key: str) -> np.ndarray:
    """Exactly ``header.nbytes`` bytes of ``f`` (the caller checked the header), and not one more."""
    n = header.nbytes
    out = np.empty(n, dtype=np.uint8)
    view = memoryview(out)
    got = 0
    while got < n:
        chunk = f.read(min(_CHUNK, n - got))
        if not chunk:
            raise _Refused(f"is truncated: its member {key!r} holds {got} of the {n} bytes its header gives")
        view[got:got + len(chunk)] = chunk
        got += len(chunk)
    if f.read(1):
        raise _Refused(f"has a member {key!r} holding more data than its header gives ({n} bytes)")
    array = out.view(header.dtype).reshape(header.shape, order="F" if header.fortran else "C")
    return array if header.dtype.isnative else array.astype(header.dtype.newbyteorder("="))


def _same_type(dtype: np.dtype, want: np.dtype) -> bool:
    """``dtype`` is ``want``, in either byte order."""
    return dtype == want or dtype == want.newbyteorder()


def _plain(dtype: np.dtype) -> bool:
    return dtype.fields is None and dtype.subdtype is None and dtype.kind in "biufc"


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, key: str, check) -> np.ndarray:
    """Member ``key``: its header is handed to ``check`` (which raises _Refused) before any data is read."""
    with zf.open(info) as f:
        header = _read_header(f, key)
        check(header)
        return _read_data(f, header, key)


def _int_member(zf, members, key: str) -> int:
    def check(h: _Header) -> None:
        if h.shape != () or h.dtype.kind not in "iu" or not _plain(h.dtype) or h.dtype.itemsize > 8:
            raise _Refused(f"stores {key!r} as {h.describe()}, not one integer")

    return int(_read_member(zf, members[key], key, check)[()])


def _text_member(zf, members, key: str, limit: int) -> str:
    def check(h: _Header) -> None:
        if h.shape != () or h.dtype.kind != "U" or h.dtype.fields is not None:
            raise _Refused(f"stores {key!r} as {h.describe()}, not text")
        if h.dtype.itemsize // 4 > limit:
            raise _Refused(f"stores {key!r} as text of {h.dtype.itemsize // 4} characters, more than the {limit} "
                           "it can have")

    return str(_read_member(zf, members[key], key, check)[()])


def _json_member(zf, members, key: str, limit: int, kind: type) -> Any:
    text = _text_member(zf, members, key, limit)
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise _Refused(f"stores {key!r} as something other than JSON ({type(e).__name__}: "
                       f"{str(e).splitlines()[0][:100] if str(e) else ''})") from None
    if not isinstance(value, kind):
        raise _Refused(f"stores {key!r} as a JSON {type(value).__name__}, not a JSON "
                       f"{'object' if kind is dict else 'list'}")
    return value


def _array_member(zf, members, key: str, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    def check(h: _Header) -> None:
        if not _same_type(h.dtype, dtype) or h.shape != shape:
            raise _Refused(f"holds {key!r} as {h.describe()}, this run needs {dtype} {shape}")

    return _read_member(zf, members[key], key, check)


def _check_metrics(metrics: list, round: int) -> None:
    """One record per round 1..round, each a JSON object of numbers (and the metric's name)."""
    if metrics and len(metrics) != round:
        raise _Refused(f"is at round {round} but holds {len(metrics)} rounds of metrics")
    for i, record in enumerate(metrics, 1):
        if not isinstance(record, dict):
            raise _Refused(f"holds metrics whose record {i} is a JSON {type(record).__name__}, not an object")
        if type(record.get("round")) is not int or record["round"] != i:
            raise _Refused(f"holds metrics whose record {i} is of round {str(record.get('round'))[:20]}")
        for k, v in record.items():
            ok = isinstance(v, str) and len(v) <= 64 if k == "test_metric_name" else isinstance(v, (int, float))
            if not ok:
                raise _Refused(f"holds metrics whose record {i} has a {type(v).__name__} as {str(k)[:40]!r}")


def _read_checkpoint(file: Path, config: dict, shape: tuple[int, ...]) -> Loaded:
    wanted = comparable(json.loads(json.dumps(config, sort_keys=True)))
    stat = file.stat()
    with zipfile.ZipFile(file) as zf:
        members = _members(zf)
        fmt = _int_member(zf, members, "format")
        if fmt != FORMAT:
            raise CheckpointError(f"checkpoint {file} has format {fmt}; this jwins reads {FORMAT}")
        round = _int_member(zf, members, "round")
        rounds = config.get("rounds")
        if round < 0:
            raise _Refused(f"is at round {round}, a negative round")
        if type(rounds) is int and round > rounds:
            raise _Refused(f"is at round {round}, past this run's rounds = {rounds} (resume with rounds >= {round} "
                           "if the checkpoint is right)")
        saved = comparable(_json_member(zf, members, "config", _MAX_TEXT, dict))
        if saved != wanted:
            diff = sorted(_diff(saved, wanted))
            raise CheckpointError(f"checkpoint {file} belongs to a different configuration (differs in "
                                  f"{', '.join(diff[:5])}); resume with the run's own config.json")
        metrics = _json_member(zf, members, "metrics", _TEXT_PER_ROUND * (round + 1), list)
        _check_metrics(metrics, round)
        extra = _json_member(zf, members, "extra", _MAX_TEXT, dict) if "extra" in members else {}
        float32 = np.dtype(np.float32)
        params = _array_member(zf, members, "params", float32, shape)
        momentum = _array_member(zf, members, "momentum", float32, shape) if "momentum" in members else None
        sharing = {}
        for key, info in members.items():
            if key.startswith("sharing."):
                with zf.open(info) as f:
                    header = _read_header(f, key)
                if not _plain(header.dtype):
                    raise _Refused(f"holds the sharing state {key!r} as {header.dtype}, not numbers")
                sharing[key[len("sharing."):]] = (info, header)
    return Loaded(round, metrics, params, momentum, _SharingArrays(file, stat, sharing), extra, file)


class _SharingArrays(Mapping):
    """The sharing state's members of one checkpoint file, read on demand: :func:`restore_state` reads each
    with the template's dtype and shape, checked on the member's header before its data."""

    def __init__(self, file: Path, stat: os.stat_result, members: dict[str, tuple[zipfile.ZipInfo, _Header]]):
        self.file, self._stat, self._members = file, stat, members

    def __contains__(self, name) -> bool:
        return name in self._members

    def __iter__(self) -> Iterator[str]:
        return iter(self._members)

    def __len__(self) -> int:
        return len(self._members)

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._members:
            raise KeyError(name)
        header = self._members[name][1]
        return self.read(name, header.dtype, header.shape)

    def read(self, name: str, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
        """Field ``name``, which must be ``dtype`` (either byte order) of ``shape``."""
        key = f"sharing.{name}"
        info, header = self._members[name]
        if not _same_type(header.dtype, np.dtype(dtype)) or header.shape != tuple(shape):
            raise CheckpointError(f"checkpoint {self.file}'s sharing state {name!r} is {header.describe()}, this "
                                  f"run's sharing algorithm needs {np.dtype(dtype)} {tuple(shape)}; resume with the "
                                  "run's own config.json")
        try:
            now = self.file.stat()
            if (now.st_ino, now.st_size, now.st_mtime_ns) != (self._stat.st_ino, self._stat.st_size,
                                                               self._stat.st_mtime_ns):
                raise CheckpointError(f"checkpoint {self.file} changed while it was being read; resume again")
            with zipfile.ZipFile(self.file) as zf, zf.open(info) as f:
                if _read_header(f, key) != header:
                    raise _Refused(f"changed its member {key!r} while it was being read")
                return _read_data(f, header, key)
        except CheckpointError:
            raise
        except _Refused as e:
            raise CheckpointError(f"checkpoint {self.file} {e}; delete it to start over, or resume from an intact "
                                  "copy") from None
        except _READ_ERRORS as e:
            reason = (str(e).strip().splitlines() or [""])[0][:200]
            raise CheckpointError(f"checkpoint {self.file} is damaged ({type(e).__name__}: {reason}); delete it to "
                                  "start over, or resume from an intact copy") from None


def _peek_round(file: Path) -> int:
    """The round of checkpoint ``file``, reading only its ``round`` member."""
    try:
        with zipfile.ZipFile(file) as zf:
            members = _members(zf)
            round = _int_member(zf, members, "round")
    except _Refused as e:
        raise CheckpointError(f"checkpoint {file} {e}") from None
    except _READ_ERRORS as e:
        raise CheckpointError(f"checkpoint {file} is damaged ({type(e).__name__})") from None
    if round < 0:
        raise CheckpointError(f"checkpoint {file} is at round {round}, a negative round")
    return round


def _diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    out = []
    for key in set(a) | set(b):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _diff(va, vb, f"{prefix}{key}.")
        elif va != vb:
            out.append(f"{prefix}{key}")
    return out
