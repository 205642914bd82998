"""The run directory: the one place that writes and reads what a run leaves behind.

A run directory holds ``config.json`` (the resolved configuration, written when the run starts and accepted
back by ``jwins run``), ``metrics.jsonl`` (one JSON object per round, appended as rounds finish),
``summary.json`` (written when the run finishes), checkpoints (``checkpoint.npz``, or one shard per rank
``checkpoint-R-of-K.npz``) and ``plots/``. The experiment loop writes it through :class:`Writer`; tables and
figures read it back through :func:`read`.

A directory is never silently reused: :func:`claim` refuses one that holds anything but this run's own
``config.json`` (unless asked to replace it as a whole), and default names are unique and created exclusively.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import config as config_mod
from .errors import JwinsError, RunDirError

CONFIG, METRICS, SUMMARY = "config.json", "metrics.jsonl", "summary.json"


# ----------------------------------------------------------------------------------------------- writing

def default_path(algorithm: str, dataset: str, started: float) -> Path:
    """``runs/<algorithm>-<dataset>-<date>-<time>-<suffix>``: the suffix comes from the start time's
    microseconds, so that runs started in the same second get different names, and every rank of one run
    (which share rank 0's start time) computes the same one."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(started))
    suffix = hashlib.sha256(repr(round(started * 1e6)).encode()).hexdigest()[:6]
    return Path("runs") / f"{_short(algorithm)}-{_short(dataset)}-{stamp}-{suffix}"


def _short(name: str) -> str:
    """A part's name fit for a folder name (``mypkg.algos:gossip_one`` -> ``gossip_one``)."""
    name = name.rsplit(":", 1)[-1].rsplit(".", 1)[-1]
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name) or "run"


def claim(path: str | Path, config: dict[str, Any], *, overwrite: bool = False, exclusive: bool = False,
          create: bool = True) -> Path:
    """Make ``path`` this run's directory and return it (``create=False``: only check that it could be).

    Refused (:class:`RunDirError`, one line): a path that is a file, or lies under one, or cannot be created; a
    directory that holds anything but this run's own ``config.json``; with ``exclusive``, a directory that exists
    at all (default names). ``overwrite`` replaces a directory as a whole only when :func:`replaceable` says
    jwins wrote all of it."""
    path = Path(path)
    for parent in [path, *path.parents]:
        if parent.exists():
            if not parent.is_dir():
                where = "is a file" if parent == path else f"lies under {parent}, which is a file"
                raise RunDirError(f"run directory {path} {where}; choose another --out")
            break
    if path.is_dir():
        if exclusive:
            raise RunDirError(f"run directory {path} exists already; choose another --out")
        entries = sorted(p.name for p in path.iterdir())
        if entries and not (entries == [CONFIG] and _same_config(path / CONFIG, config)):
            if not overwrite:
                raise RunDirError(_occupied(path, entries))
            replaceable(path)
            if not create:
                return path
            try:
                shutil.rmtree(path)
            except OSError as e:
                raise RunDirError(f"cannot replace run directory {path}: {e.strerror or e}") from None
    if not create:
        return path
    try:
        path.mkdir(parents=True, exist_ok=not exclusive)
    except FileExistsError:
        raise RunDirError(f"run directory {path} exists already; choose another --out") from None
    except (NotADirectoryError, FileNotFoundError):
        raise RunDirError(f"cannot create run directory {path}: a part of that path is a file") from None
    except OSError as e:
        raise RunDirError(f"cannot create run directory {path}: {e.strerror or e}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise RunDirError(f"cannot write into run directory {path}: permission denied")
    return path


def check_resumable(path: str | Path) -> Path:
    """``path`` as a run directory to continue, or a one-line RunDirError saying what it is instead."""
    path = Path(path)
    if not path.exists():
        raise RunDirError(f"--resume {path}: there is no such directory; give the directory an earlier run wrote "
                          "(its --out, or one under runs/)")
    if not path.is_dir() or not (path / CONFIG).is_file():
        what = "a file" if not path.is_dir() else f"not a jwins run directory (no {CONFIG})"
        hint = (f"; a comparison continues with jwins compare --resume {path}" if (path / PLAN).is_file() else
                "; give the directory an earlier run wrote (its --out, or one under runs/), or start a new run "
                "without --resume")
        raise RunDirError(f"--resume {path}: it is {what}{hint}")
    return path


def _occupied(path: Path, entries: list[str]) -> str:
    """Why a non-empty ``path`` is refused, and only the ways out that work for what is in it."""
    shown = ", ".join(entries[:4]) + (", ..." if len(entries) > 4 else "")
    head = f"run directory {path} is not empty ({shown})"
    if not ((path / CONFIG).is_file() or (path / PLAN).is_file()) or _foreign(path):
        return f"{head}, and jwins did not write all of it; choose another --out"
    ways = ["choose another --out", "replace it with --overwrite"]
    if (path / PLAN).exists():
        ways.append(f"or continue the comparison in it with jwins compare --resume {path}")
    elif any(path.glob("checkpoint*.npz")):
        ways.append(f"or continue the run in it with jwins run --resume {path}")
    else:
        ways[-1] = "or " + ways[-1]
    return f"{head}; {', '.join(ways)}"


# What jwins writes into a run directory, and into a comparison directory (whose settings are run directories,
# or folders of seed-<s> run directories). ``--overwrite`` replaces a directory only if every entry is one of
# these: a user's own file beside a run is never deleted.
PLAN = "compare-plan.json"
_RUN_FILES = re.compile(r"(config\.json|metrics\.jsonl|summary\.json|checkpoint(-\d+-of-\d+)?(\.prev)?\.npz)"
                        r"(\.tmp)?")
_COMPARE_FILES = re.compile(r"(compare-plan\.json|compare\.json|compare\.md)(\.tmp)?")
_FIGURES = re.compile(r"[\w.=,+-]+\.(png|svg)")
_EVENTS = re.compile(r"events\.out\.tfevents\..+")


def replaceable(path: str | Path) -> None:
    """Raise :class:`RunDirError` unless ``--overwrite`` may delete ``path``: a run or comparison directory
    that holds nothing jwins did not write, and never the working directory, one of its parents, the home
    directory or a file system root."""
    path = Path(path)
    if path.is_symlink():
        raise RunDirError(f"--overwrite {path}: it is a symbolic link; --overwrite replaces only a directory "
                          "jwins wrote; choose another --out")
    real, here, home = path.resolve(), Path.cwd().resolve(), Path.home().resolve()
    which = ("a file system root" if real == Path(real.anchor) else "the home directory" if real == home else
             "the current directory" if real == here else
             f"a parent of the current directory ({here})" if real in here.parents else None)
    if which:
        raise RunDirError(f"--overwrite {path}: it is {which}, which jwins never deletes; choose another --out, "
                          "e.g. --out runs/NAME")
    if not (path / CONFIG).is_file() and not (path / PLAN).is_file():
        raise RunDirError(f"--overwrite {path}: it is not a jwins run or comparison directory (no {CONFIG} or "
                          f"{PLAN}), so jwins will not delete it; choose another --out")
    foreign = _foreign(path)
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise RunDirError(f"--overwrite {path}: it holds {shown}, which jwins did not write; move "
                          f"{'it' if len(foreign) == 1 else 'them'} away or choose another --out")


def _foreign(path: Path, prefix: str = "") -> list[str]:
    """The entries under the directory ``path`` (as relative names) that jwins does not write there. A run
    directory may hold its files, ``plots/`` and ``tensorboard/``; a comparison directory its files, ``plots/``
    and its settings' folders; a folder without either marker (a setting of several seeds) only ``seed-<s>``
    folders. Symbolic links are never jwins's."""
    run, comparison = (path / CONFIG).is_file(), (path / PLAN).is_file()
    foreign: list[str] = []
    for entry in sorted(path.iterdir()):
        name, rel = entry.name, prefix + entry.name
        if entry.is_symlink():
            foreign.append(rel)
        elif entry.is_file():
            if not ((run and _RUN_FILES.fullmatch(name)) or (comparison and _COMPARE_FILES.fullmatch(name))):
                foreign.append(rel)
        elif name == "plots" and (run or comparison):
            foreign += _files_only(entry, _FIGURES, rel)
        elif name == TENSORBOARD and run:
            foreign += _files_only(entry, _EVENTS, rel)
        elif comparison or (not run and re.fullmatch(r"seed-\d+", name)):
            foreign += _foreign(entry, rel + "/")
        else:
            foreign.append(rel)
    return foreign


def _files_only(folder: Path, pattern: re.Pattern, rel: str) -> list[str]:
    return [f"{rel}/{p.name}" for p in sorted(folder.iterdir())
            if p.is_symlink() or not p.is_file() or not pattern.fullmatch(p.name)]


def _same_config(path: Path, config: dict[str, Any]) -> bool:
    """Whether ``path`` is ``config`` up to where it runs (:data:`jwins.config.NO_NUMBERS`): a directory a
    launcher prepared for this run."""
    def numbers(tree: Any) -> Any:
        return config_mod.numbers(tree) if isinstance(tree, dict) else tree
    try:
        return numbers(json.loads(path.read_text())) == numbers(json.loads(json.dumps(config)))
    except (OSError, ValueError):
        return False


def write_config(run_dir: Path, config: dict[str, Any]) -> None:
    atomic_write(Path(run_dir) / CONFIG, json.dumps(config, indent=2) + "\n")


def checkpoint_path(run_dir: str | Path, rank: int = 0, world_size: int = 1) -> Path:
    """Where rank ``rank`` of ``world_size`` keeps its checkpoint in ``run_dir``."""
    name = "checkpoint.npz" if world_size == 1 else f"checkpoint-{rank}-of-{world_size}.npz"
    return Path(run_dir) / name


TENSORBOARD = "tensorboard"


def check_tensorboard() -> None:
    """``log.tensorboard = true`` needs the tensorboard package: say so before any work."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        raise JwinsError("log.tensorboard = true needs the tensorboard package: pip install 'jwins[tensorboard]'"
                         ) from None


class Writer:
    """Writes one run directory: config.json at the start, metrics.jsonl line by line, summary.json at the end,
    and with ``tensorboard`` the same per-round numbers as TensorBoard scalars in ``tensorboard/``.

    A resumed run starts metrics.jsonl again from the checkpoint's records, so no round is lost or repeated
    (and TensorBoard discards what an interrupted run logged after the checkpoint).
    """

    def __init__(self, run_dir: Path, config: dict[str, Any], metrics_so_far: list[dict] = (),
                 tensorboard: bool = False):
        self.dir = Path(run_dir)
        write_config(self.dir, config)
        atomic_write(self.dir / METRICS, "".join(json.dumps(m) + "\n" for m in metrics_so_far))
        self._metrics = open(self.dir / METRICS, "a")
        self._board = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._board = SummaryWriter(str(self.dir / TENSORBOARD), purge_step=len(metrics_so_far) + 1)

    def append(self, record: dict) -> None:
        self._metrics.write(json.dumps(record) + "\n")
        self._metrics.flush()
        if self._board is not None:
            for key, value in record.items():
                if key != "round" and finite(value):
                    self._board.add_scalar(key, value, global_step=int(record["round"]))
            self._board.flush()

    def close(self) -> None:
        self._metrics.close()
        if self._board is not None:
            self._board.close()

    def finish(self, summary: dict) -> None:
        self.close()
        atomic_write(self.dir / SUMMARY, json.dumps(summary, indent=2) + "\n")


def atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------------------------- reading

@dataclass(frozen=True, eq=False)
class Run:
    """One run directory read back (compared and hashed by identity)."""

    dir: Path
    config: dict[str, Any]
    metrics: list[dict[str, Any]]
    summary: dict[str, Any] | None
    label: str

    @property
    def algorithm(self) -> str:
        return (self.config.get("sharing", {}).get("algorithm") or (self.summary or {}).get("algorithm")
                or self.dir.name)

    @property
    def dataset(self) -> str | None:
        return self.config.get("data", {}).get("name") or (self.summary or {}).get("dataset")

    @property
    def nodes(self) -> int | None:
        return self.config.get("nodes") or (self.summary or {}).get("nodes")

    @property
    def metric_name(self) -> str:
        """``"accuracy"`` or ``"rmse"``: what ``test_accuracy`` holds."""
        for m in reversed(self.metrics):
            if m.get("test_metric_name"):
                return m["test_metric_name"]
        return (self.summary or {}).get("test_metric_name") or "accuracy"

    @property
    def evaluated(self) -> list[dict[str, Any]]:
        """The rounds that carry a (finite) test metric."""
        return [m for m in self.metrics if finite(m.get("test_accuracy"))]

    def relabel(self, label: str) -> Run:
        return Run(self.dir, self.config, self.metrics, self.summary, label)


def finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def read(run_dir: str | Path, label: str | None = None) -> Run:
    """Read a run directory. ``label`` defaults to the sharing algorithm; pass e.g. ``"choco (gamma=0.2)"``
    to tell apart runs of one algorithm. Raises :class:`JwinsError` naming the file (and line) that is
    missing or damaged."""
    d = Path(run_dir)
    if not d.exists():
        raise JwinsError(f"run directory {d} does not exist")
    if not d.is_dir():
        raise JwinsError(f"{d} is not a run directory (it is a file); pass the directory `jwins run` wrote")
    config = read_json(d / CONFIG, required=True)
    summary = read_json(d / SUMMARY, required=False)
    metrics = _read_metrics(d / METRICS)
    if label is None:
        label = (config.get("sharing", {}).get("algorithm") if isinstance(config.get("sharing"), dict)
                 else None) or (summary or {}).get("algorithm") or d.name
    return Run(d, config, metrics, summary, str(label))


def read_json(path: Path, *, required: bool) -> dict[str, Any] | None:
    if not path.exists():
        if required:
            raise JwinsError(f"{path} is missing: {path.parent} is not a complete run directory "
                             f"(`jwins run` writes config.json when the run starts)")
        return None
    try:
        value = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise JwinsError(f"{path} is not valid JSON ({e}); the file is damaged") from None
    if not isinstance(value, dict):
        raise JwinsError(f"{path} holds a JSON {type(value).__name__}, not an object; the file is damaged")
    return value


def _read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        raise JwinsError(f"{path} is missing: the run recorded no rounds (did it start?)")
    metrics: list[dict[str, Any]] = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                if not line.endswith("\n") and f.read(1) == "":
                    break  # the last line, cut short by a crash mid-write: the rounds before it stand
                raise JwinsError(f"{path} line {n} is not valid JSON: {e.msg} at column {e.colno}: "
                                 f"{_clip(line)}") from None
            if not isinstance(record, dict):
                raise JwinsError(f"{path} line {n} is a JSON {type(record).__name__}, not an object: "
                                 f"{_clip(line)}")
            if not isinstance(record.get("round"), (int, float)) or isinstance(record.get("round"), bool):
                raise JwinsError(f"{path} line {n} has no numeric 'round': {_clip(line)}")
            metrics.append(record)
    if not metrics:
        raise JwinsError(f"{path} is empty: the run recorded no rounds yet")
    return metrics


def _clip(line: str, width: int = 80) -> str:
    line = line.strip()
    return repr(line if len(line) <= width else line[:width] + "...")
