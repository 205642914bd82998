"""``jwins compare``: several algorithms on identical data, partition, topology, initial model and seed, each
possibly over several seeds and swept settings, run one after the other or side by side, resumable.

A comparison is a pipeline of honest statistics (docs/design.md, "Comparisons"):

* **arms**: the algorithms asked for, the baselines (``local``: no communication; ``full/iid``: full sharing
  on an IID partition of the same data, the ceiling) and, with ``ablation``, JWINS with one component
  changed at a time;
* **selection on validation only**: an arm that sweeps settings (``choco:sharing.gamma=0.05,0.1,0.2``) is
  reported at the setting with the best mean final *validation* metric over seeds; a sweep without a
  validation split (``data.validation``) is refused. A numeric winner at the edge of its grid extends the
  grid (by the grid's own ratio) up to ``bracket`` times; a winner still at an edge is marked;
* **levels and paired differences**: every column is the mean over seeds with its t interval, and each row is
  paired to a reference row (full sharing by default; JWINS in an ablation), seed by seed;
* **targets interpolated, misses counted** (:func:`jwins.stats.crossing`).

Every run stays in the comparison directory: ``<dir>/<arm>[-<setting>...]`` for one seed, ``.../seed-<s>`` for
several. ``compare-plan.json`` records what was asked (and how the sweeps were extended), so that
``jwins compare --resume DIR`` runs only what is missing; ``compare.json`` holds every per-seed value that a
figure of the table was computed from.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import config as config_mod
from . import parallel, registry, rundir
from .config import Config
from .errors import ConfigError, JwinsError

PLAN = rundir.PLAN
BASELINES = ("local", "iid")
BRACKET = 2  # default extensions of a sweep whose winner is at an edge of its grid


@dataclass(frozen=True)
class Arm:
    """One row of the table before selection: an algorithm with fixed overrides."""

    name: str                       # the row's label and folder: "jwins", "full/iid", "jwins/identity"
    algorithm: str
    overrides: tuple[str, ...] = ()
    role: str = "algorithm"         # algorithm | baseline | ablation

    @property
    def folder(self) -> str:
        return self.name.replace("/", "-")


@dataclass
class Comparison:
    dir: Path
    rows: list[dict[str, Any]]          # the table: one row per arm at its selected setting
    best: dict[str, Path]               # arm -> run directory of its selected setting (first seed)
    sweep: list[dict[str, Any]]         # every setting: arm, settings, run dirs, validation and test per seed
    target: float | None
    target_source: str = ""


@dataclass(frozen=True)
class Job:
    """One run of a comparison."""

    arm: str
    algorithm: str
    settings: tuple[str, ...]   # the swept overrides
    seed: int
    dir: Path
    config: Config

    @property
    def label(self) -> str:
        return _label(self.arm, self.settings)


class CompareInterrupted(JwinsError):
    """A comparison stopped by Ctrl-C or SIGTERM; ``jwins compare --resume DIR`` runs what is missing."""

    def __init__(self, message: str, exit_status: int = 130):
        super().__init__(message)
        self.exit_status = exit_status


# ------------------------------------------------------------------------------------------------ arms

def ablation_arms(base: Config) -> list[Arm]:
    """JWINS with one component changed at a time, each paired to JWINS: the wavelet (identity transform), the
    randomized cut-off (a fixed alpha at the list's mean), the accumulation (off) and change-based selection
    (by value). The list's mean keeps the bytes close; the table shows how close."""
    mean = sum(base.sharing.alphas) / len(base.sharing.alphas)
    return [Arm("jwins/identity", "jwins", ("sharing.transform=identity",), "ablation"),
            Arm("jwins/fixed-alpha", "jwins", (f"sharing.alphas=[{mean:.6g}]",), "ablation"),
            Arm("jwins/no-accumulation", "jwins", ("sharing.accumulation=false",), "ablation"),
            Arm("jwins/value-selection", "jwins", ("sharing.selection=value",), "ablation")]


def arms_for(base: Config, algorithms: list[str], *, baselines: list[str] = BASELINES,
             ablation: bool = False) -> list[Arm]:
    """The arms of a comparison: the algorithms (JWINS first among them with ``ablation``), the ablations, then
    the baselines not already there."""
    try:
        algorithms = [registry.SHARING.check(a) for a in algorithms]
    except ConfigError as e:
        raise ConfigError(f"--algorithms: {e}") from None
    if ablation and "jwins" not in algorithms:
        algorithms = ["jwins", *algorithms]
    unknown = [b for b in baselines if b not in BASELINES]
    if unknown:
        raise ConfigError(f"--baselines {','.join(baselines)}: {unknown[0]!r} is not a baseline; choose from "
                          f"{', '.join(BASELINES)} (or none)")
    arms = [Arm(a, a) for a in algorithms]
    if ablation:
        arms += ablation_arms(base)
    if "local" in baselines and "local" not in algorithms:
        arms.append(Arm("local", "local", (), "baseline"))
    if "iid" in baselines and base.data.partition != "iid":
        arms.append(Arm("full/iid", "full", ("data.partition=iid",), "baseline"))
    names = [a.name for a in arms]
    if len(set(names)) != len(names):
        raise ConfigError(f"--algorithms names {sorted({n for n in names if names.count(n) > 1})[0]!r} twice")
    return arms


def _arm_dicts(arms: list[Arm]) -> list[dict[str, Any]]:
    return [dataclasses.asdict(a) for a in arms]


def _arms_from(request: dict[str, Any]) -> list[Arm]:
    if "arms" in request:
        return [Arm(a["name"], a["algorithm"], tuple(a["overrides"]), a["role"]) for a in request["arms"]]
    return [Arm(a, a) for a in request["algorithms"]]  # a plan written before arms


# ------------------------------------------------------------------------------------------------ sweeps

def parse_sweeps(specs: list[str], arms: list[str], extended: dict[str, dict[str, list[str]]] | None = None
                 ) -> dict[str, list[list[str]]]:
    """``["choco:sharing.gamma=0.1,0.2", "choco:sharing.alpha=0.1,0.2"]`` -> per arm, the list of override sets
    to try (the product of all its swept keys, each key's values followed by those ``extended`` added)."""
    keys = sweep_keys(specs, arms)
    sweeps = {}
    for arm in arms:
        swept = [(k, values + (extended or {}).get(arm, {}).get(k, [])) for k, values in keys.get(arm, [])]
        combos = itertools.product(*[[f"{k}={v}" for v in values] for k, values in swept])
        sweeps[arm] = [list(c) for c in combos]
    return sweeps


def sweep_keys(specs: list[str], arms: list[str]) -> dict[str, list[tuple[str, list[str]]]]:
    """Per arm, its swept keys and their values, in the order given."""
    keys: dict[str, list[tuple[str, list[str]]]] = {}
    for spec in specs:
        if ":" not in spec or "=" not in spec:
            raise ConfigError(f"--sweep {spec!r} must look like ALGORITHM:section.key=v1,v2,... "
                              "e.g. choco:sharing.gamma=0.05,0.1,0.2")
        head, _, values = spec.partition("=")
        # the algorithm may itself be "module:attribute": it ends at the last ':' before the '='
        arm, _, key = head.rpartition(":")
        arm = arm if arm in arms else (registry.SHARING.canonical(arm) or arm)
        if arm not in arms:
            raise ConfigError(f"--sweep {spec!r} names {arm!r}, which is not among --algorithms "
                              f"{','.join(arms)}")
        items = _split_values(values)
        if not items:
            raise ConfigError(f"--sweep {spec!r} lists no values")
        if any(k == key.strip() for k, _ in keys.get(arm, [])):
            raise ConfigError(f"--sweep {spec!r}: {key.strip()} is swept twice for {arm}; give its values once")
        keys.setdefault(arm, []).append((key.strip(), items))
    return keys


def _split_values(text: str) -> list[str]:
    """Split ``0.1,0.2`` or ``[0.1,1.0],[0.2,1.0]`` on the commas that are not inside brackets."""
    items, depth, current = [], 0, ""
    for ch in text:
        depth += ch == "["
        depth -= ch == "]"
        if ch == "," and depth == 0:
            items.append(current.strip())
            current = ""
        else:
            current += ch
    if current.strip():
        items.append(current.strip())
    return items


def _number(text: str) -> float | int | None:
    """A swept value as a number (TOML's grammar), or None when it is not one."""
    value = config_mod._parse_literal(text)
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _format(value: float | int) -> str:
    return str(value) if isinstance(value, int) else f"{value:.6g}"


def next_value(values: list[str], winner: str, valid) -> tuple[str | None, str]:
    """The value that extends a numeric grid past ``winner`` when it is at an edge, and why (``"interior"``,
    ``"not numeric"``, ``"extended"``, ``"limit"``: ``valid(text)`` refused every candidate).

    Past the top, the grid's own ratio between its two largest values (``x2`` for a one-value grid, the step
    instead of the ratio when a value is <= 0); past the bottom likewise. A candidate that ``valid`` refuses
    (a gamma above 1, say) is pulled back towards the edge (the square root of the ratio, half the step), up
    to four times. Integers stay integers.

    >>> next_value(["0.1", "0.2"], "0.2", lambda v: True)
    ('0.4', 'extended')
    >>> next_value(["0.2", "0.5"], "0.5", lambda v: float(v) <= 1)
    ('0.790569', 'extended')
    >>> next_value(["1.0", "2.0", "4.0"], "1.0", lambda v: True)
    ('0.5', 'extended')
    """
    numbers = [_number(v) for v in values]
    w = _number(winner)
    if w is None or any(n is None for n in numbers) or len(set(numbers)) < 1:
        return None, "not numeric"
    grid = sorted(set(numbers))
    if len(grid) > 1 and grid[0] < w < grid[-1]:
        return None, "interior"
    up = w == grid[-1] if len(grid) > 1 else True
    geometric = all(n > 0 for n in grid)
    if len(grid) == 1:
        step = 2.0 if geometric else 1.0
    elif geometric:
        step = grid[-1] / grid[-2] if up else grid[1] / grid[0]
    else:
        step = grid[-1] - grid[-2] if up else grid[1] - grid[0]
    integral = all(isinstance(n, int) for n in numbers)
    for _ in range(5):
        candidate = (w * step if up else w / step) if geometric else (w + step if up else w - step)
        if integral:
            candidate = int(math.floor(candidate + 0.5))
        text = _format(candidate)
        if candidate not in grid and candidate != w and valid(text):
            return text, "extended"
        step = math.sqrt(step) if geometric else step / 2
    return None, "limit"


# ------------------------------------------------------------------------------------------------ plan

def _label(arm: str, overrides: list[str] | tuple[str, ...]) -> str:
    if not overrides:
        return arm
    return f"{arm} ({', '.join(o.split('.', 1)[-1] for o in overrides)})"


def _dirname(arm: Arm, overrides: list[str] | tuple[str, ...]) -> str:
    name = "-".join([arm.folder, *[o.split(".", 1)[-1] for o in overrides]])
    return "".join(c if c.isalnum() or c in "-_.=" else "_" for c in name)


def _arm_config(base: Config, arm: Arm) -> Config:
    # [sharing.options] belong to the config's own algorithm; the others start without them
    own = base if arm.algorithm == base.sharing.algorithm else \
        base.replace(sharing=dataclasses.replace(base.sharing, options={}))
    return config_mod.override(own, [f"sharing.algorithm={config_mod.quote(arm.algorithm)}", *arm.overrides])


def plan(base: Config, arms: list[Arm], sweeps: list[str], seeds: list[int], root: Path,
         extended: dict[str, dict[str, list[str]]] | None = None) -> list[Job]:
    """Every run of the comparison, in the order they are reported."""
    per_arm = parse_sweeps(list(sweeps), [a.name for a in arms], extended)
    jobs = []
    for arm in arms:
        own = _arm_config(base, arm)
        for overrides in per_arm[arm.name]:
            setting = root / _dirname(arm, overrides)
            for seed in seeds:
                cfg = config_mod.override(own, [*overrides, f"seed={seed}"])
                jobs.append(Job(arm.name, arm.algorithm, tuple(overrides), seed,
                                setting if len(seeds) == 1 else setting / f"seed-{seed}", cfg))
    return jobs


def check_selection(base: Config, arms: list[Arm], sweeps: list[str], on: str = "test") -> None:
    """Refuse, in one line that names the fix, a comparison that would have to select on the test set."""
    swept = [a for a, keys in sweep_keys(list(sweeps), [a.name for a in arms]).items()
             if any(len(values) > 1 for _, values in keys)]
    if swept and not base.data.validation:
        raise ConfigError(f"--sweep: {swept[0]} has several settings, and compare selects among them on a "
                          "validation split, never on the test set; hold one out with --set data.validation=0.1")
    if on == "validation" and not base.data.validation:
        raise ConfigError("--targets-on validation needs a validation split; hold one out with --set "
                          "data.validation=0.1")


def compare(base: Config, algorithms: list[str], *, sweeps: list[str] = (), target: float | None = None,
            out: str | Path | None = None, quiet: bool = True, overwrite: bool = False,
            seeds: list[int] | None = None, jobs: int | None = None, targets: list[float] = (),
            reference: str | None = None, baselines: list[str] = BASELINES, ablation: bool = False,
            bracket: int = BRACKET, on: str = "test") -> Comparison:
    """Run every arm (and its sweep, for every seed) from ``base``, then tabulate them.

    ``baselines`` adds ``local`` and ``full/iid`` (``iid``) rows; ``ablation`` JWINS's components, paired to
    JWINS. ``reference`` is the row the others are paired to (default: JWINS in an ablation, else full sharing
    when present). ``bracket`` bounds how many times a sweep whose winner is at an edge is extended. ``jobs``
    runs that many in separate processes side by side (default: what the cores allow given
    ``engine.threads``); ``targets`` adds bytes-to-target columns, read off the test curve or, with
    ``on="validation"``, the validation curve. Everything is checked before the comparison directory is
    claimed (like a run directory)."""
    if on not in ("test", "validation"):
        raise ConfigError(f"--targets-on {on!r}: choose test or validation")
    if bracket < 0:
        raise ConfigError(f"--bracket {bracket} must be >= 0")
    arms = arms_for(base, algorithms, baselines=list(baselines), ablation=ablation)
    seeds = list(seeds) if seeds else [base.seed]
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds {','.join(map(str, seeds))} repeats a seed")
    check_selection(base, arms, sweeps, on)
    _check_reference(reference, arms)
    reference = reference or ("jwins" if ablation else "full")
    todo = plan(base, arms, list(sweeps), seeds, Path("."))  # every config checked before a directory is made
    _check_parts(todo)
    path = Path(out) if out else rundir.default_path("compare", base.data.name, time.time())
    if out and path.is_dir() and _never_started(path):  # a plan that failed before its first run: the
        rundir.replaceable(path)                       # corrected command replaces it
        shutil.rmtree(path)
    root = rundir.claim(path, {}, overwrite=overwrite, exclusive=not out)
    request = {"config": config_mod.to_dict(base), "arms": _arm_dicts(arms), "sweeps": list(sweeps),
               "seeds": seeds, "target": target, "targets": list(targets), "reference": reference,
               "bracket": bracket, "on": on, "extended": {}}
    rundir.atomic_write(root / PLAN, json.dumps(request, indent=2) + "\n")
    try:
        return _execute(root, request, quiet=quiet, jobs=jobs)
    except Exception:
        if not out and _never_started(root):  # nothing ran: leave no stray directory behind
            shutil.rmtree(root, ignore_errors=True)
        raise


def _check_parts(todo: list[Job]) -> None:
    """Build each distinct sharing algorithm once (cheap): a bad option fails before any directory is made."""
    from .world import build_sharing

    seen = set()
    for job in todo:
        key = json.dumps(config_mod.to_dict(job.config)["sharing"], sort_keys=True)
        if key not in seen:
            seen.add(key)
            build_sharing(job.config)


def _never_started(path: Path) -> bool:
    """A comparison directory that holds its plan and nothing any run wrote (empty folders at most)."""
    return (path / PLAN).is_file() and not any(p.is_file() and p != path / PLAN for p in path.rglob("*"))


def resume(root: str | Path, *, quiet: bool = True, jobs: int | None = None, reference: str | None = None,
           on: str | None = None) -> Comparison:
    """Continue the comparison in ``root``: run what is missing, keep what finished, write the table (paired to
    ``reference`` instead of the plan's, and with targets read off the ``on`` curve instead of the plan's, when
    given: a finished comparison is tabulated again, nothing runs)."""
    root = Path(root)
    if not root.is_dir():
        raise JwinsError(f"{root} is not a comparison directory (it does not exist); start one with jwins compare")
    request = rundir.read_json(root / PLAN, required=False)
    if request is None:
        raise JwinsError(f"{root} holds no {PLAN}: it is not a comparison directory (or was made by an older "
                         "jwins); start it again with jwins compare")
    if reference:
        _check_reference(reference, _arms_from(request))
        request["reference"] = reference
    if on:
        if on not in ("test", "validation"):
            raise ConfigError(f"targets on {on!r}: choose test or validation")
        request["on"] = on
    return _execute(root, request, quiet=quiet, jobs=jobs)


def _check_reference(reference: str | None, arms: list[Arm]) -> None:
    names = [a.name for a in arms]
    if reference and reference not in names and reference not in {a.algorithm for a in arms}:
        raise ConfigError(f"--reference {reference!r} is not a row of this comparison; choose one of "
                          f"{', '.join(names)}")


def _execute(root: Path, request: dict[str, Any], *, quiet: bool, jobs: int | None) -> Comparison:
    """Run what is missing; extend every sweep whose winner sits at an edge (up to ``bracket`` times, saving
    each extension in the plan so that a resume repeats it), then tabulate."""
    base = config_mod.from_dict(request["config"])
    arms = _arms_from(request)
    extended = request.setdefault("extended", {})
    bracket = request.get("bracket", 0)
    while True:
        todo = plan(base, arms, request["sweeps"], request["seeds"], root, extended)
        _Runner(todo, root, quiet=quiet, jobs=_jobs(base, jobs, len(todo))).run()
        log = _sweep_log(todo)
        steps = max((len(v) for keys in extended.values() for v in keys.values()), default=0)
        added = _extensions(base, arms, request["sweeps"], extended, log) if steps < bracket else {}
        if not added:
            break
        for arm, keys in added.items():
            for key, value in keys.items():
                extended.setdefault(arm, {}).setdefault(key, []).append(value)
        rundir.atomic_write(root / PLAN, json.dumps(request, indent=2) + "\n")
        if not quiet:
            for arm, keys in added.items():
                for key, value in keys.items():
                    print(f"jwins compare: {arm}'s best {key} is at the edge of its grid; trying {value}",
                          file=sys.stderr, flush=True)
    return _tabulate(root, base, todo, request, log)


def _validator(base: Config, arm: Arm, key: str):
    """Whether ``key=text`` is a valid setting of ``arm`` (a swept value past a limit is not)."""
    def valid(text: str) -> bool:
        try:
            config_mod.override(_arm_config(base, arm), [f"{key}={text}"])
        except ConfigError:
            return False
        return True
    return valid


def _edge_keys(base: Config, arms: list[Arm], sweeps: list[str], extended: dict[str, dict[str, list[str]]],
               chosen: dict[str, dict[str, Any]]):
    """(arm, key, its grid, the selected value, the next value, why) for every numeric swept key whose
    selected value lies at an edge of its grid (extended so far)."""
    keys = sweep_keys(list(sweeps), [a.name for a in arms])
    for arm in arms:
        if arm.name not in chosen:
            continue
        winner = dict(o.split("=", 1) for o in chosen[arm.name]["settings"])
        for key, values in keys.get(arm.name, []):
            grid = values + extended.get(arm.name, {}).get(key, [])
            if len(grid) > 1:
                value, why = next_value(grid, winner[key], _validator(base, arm, key))
                if why in ("extended", "limit"):
                    yield arm, key, grid, winner[key], value, why


def _extensions(base: Config, arms: list[Arm], sweeps: list[str], extended: dict[str, dict[str, list[str]]],
                log: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """For each arm whose selected setting has a numeric value at the edge of its key's grid: the next value."""
    added: dict[str, dict[str, str]] = {}
    for arm, key, _, _, value, why in _edge_keys(base, arms, sweeps, extended, _select(log)):
        if why == "extended":
            added.setdefault(arm.name, {})[key] = value
    return added


def _edges(base: Config, arms: list[Arm], request: dict[str, Any], chosen: dict[str, dict[str, Any]]
           ) -> dict[str, list[str]]:
    """Per arm, a line for each swept key whose selected value is still at an edge of its (extended) grid."""
    edges: dict[str, list[str]] = {}
    for arm, key, grid, winner, value, why in _edge_keys(base, arms, request["sweeps"], request.get("extended", {}),
                                                         chosen):
        top = _number(winner) == max(_number(v) for v in grid)
        name = key.split(".", 1)[-1]
        reason = (f"{key} allows nothing {'higher' if top else 'lower'}" if why == "limit" else
                  f"the next value, {value}, was not run (--bracket {request.get('bracket', 0)})")
        edges.setdefault(arm.name, []).append(f"{name}={winner} is the {'highest' if top else 'lowest'} tried; "
                                              f"{reason}")
    return edges


def _jobs(base: Config, jobs: int | None, count: int) -> int:
    """Processes side by side: as asked, else the cores divided by the threads each run uses."""
    if jobs is not None:
        if jobs < 1:
            raise ConfigError(f"--jobs {jobs} must be >= 1")
        return min(jobs, max(1, count))
    cores = parallel.cores()
    return max(1, min(count, cores // max(1, base.engine.threads or cores)))


def _state(job: Job) -> str:
    """done (summary written), resume (a checkpoint to continue from), fresh (nothing, or nothing usable)."""
    if (job.dir / rundir.SUMMARY).exists():
        return "done"
    from . import checkpoint

    if checkpoint.rounds_available(rundir.checkpoint_path(job.dir)):
        return "resume"
    return "fresh"


class _Runner:
    """Runs the jobs not done yet: in this process (jobs = 1) or in child processes, one progress line each, with
    the comparison's own line: run k of n and the time left."""

    def __init__(self, todo: list[Job], root: Path, *, quiet: bool, jobs: int):
        self.todo, self.root, self.quiet, self.jobs = todo, root, quiet, jobs

    def run(self) -> None:
        pending = [j for j in self.todo if _state(j) != "done"]
        self.total, self.done, self.started = len(pending), 0, time.perf_counter()
        self.rounds_left = sum(j.config.rounds for j in pending)
        self.rounds_done = 0
        if self.jobs == 1:
            for job in pending:
                self._announce(job)
                self._in_process(job)
                self._finished(job)
        else:
            self._in_processes(pending)

    def _eta(self) -> str:
        if not self.rounds_done:
            return ""
        per_round = (time.perf_counter() - self.started) / self.rounds_done
        return f"; about {_duration(per_round * self.rounds_left)} left"

    def _announce(self, job: Job) -> None:
        if not self.quiet:
            print(f"jwins compare: run {self.done + 1} of {self.total}: {job.label}, seed {job.seed}{self._eta()}",
                  file=sys.stderr, flush=True)

    def _finished(self, job: Job) -> None:
        self.done += 1
        self.rounds_done += job.config.rounds
        self.rounds_left -= job.config.rounds

    def _in_process(self, job: Job) -> None:
        from .experiment import Interrupted, run

        state = _state(job)
        try:
            run(job.config, quiet=self.quiet, run_dir=job.dir, resume=state == "resume", overwrite=state == "fresh")
        except Interrupted as e:
            raise CompareInterrupted(f"{e}; or continue the whole comparison with `jwins compare --resume "
                                     f"{self.root}`", e.exit_status) from None

    def _in_processes(self, pending: list[Job]) -> None:
        from .launch import _Forward

        threads = max(1, parallel.cores() // self.jobs)
        queue, running, failed, stopped = list(pending), [], [], []
        procs: list[subprocess.Popen] = []
        forward = _Forward(procs)
        bars = _Bars(enabled=not self.quiet, total=len(pending))
        try:
            while queue or running:
                while queue and len(running) < self.jobs:
                    job = queue.pop(0)
                    proc = _start(job, threads)
                    procs.append(proc)
                    running.append((job, proc))
                    bars.add(job)
                for job, proc in list(running):
                    bars.update(job)
                    code = proc.poll()
                    if code is None:
                        continue
                    running.remove((job, proc))
                    bars.remove(job)
                    if code in (130, 143):
                        stopped.append(code)
                    elif code != 0:
                        proc.stderr.seek(0)
                        failed.append((job, code, proc.stderr.read().decode(errors="replace").strip()))
                    if stopped:  # a stop request: start nothing new, let the running ones checkpoint
                        queue.clear()
                time.sleep(0.2)
        finally:
            forward.restore()
            bars.close()
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
                p.stderr.close()
        if failed:
            job, code, err = failed[0]
            last = err.splitlines()[-1] if err else f"exit status {code}"
            raise JwinsError(f"{len(failed)} run(s) failed; the first, {job.dir}: {last}")
        if stopped:
            raise CompareInterrupted("stopped; every run in progress wrote a checkpoint: continue the whole "
                                     f"comparison with `jwins compare --resume {self.root}`", stopped[0])


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _start(job: Job, threads: int) -> subprocess.Popen:
    state = _state(job)
    cfg = job.config if job.config.engine.threads else config_mod.override(job.config, [f"engine.threads={threads}"])
    if state == "resume":
        args = ["--resume", str(job.dir)]
    else:
        resolved = config_mod.to_dict(cfg)
        rundir.claim(job.dir, resolved, overwrite=True)
        rundir.write_config(job.dir, resolved)
        args = [str(job.dir / rundir.CONFIG), "--out", str(job.dir)]
    # stderr to a file, not a pipe: a child that writes much (warnings) must never block on a full pipe
    err = tempfile.TemporaryFile()
    proc = subprocess.Popen([sys.executable, "-m", "jwins", "run", *args, "--quiet", "--no-plots"],
                            stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    proc.stderr = err
    return proc


class _Bars:
    """The comparison's line (runs done of all, with tqdm's time left) and one progress line per running job,
    read from its metrics.jsonl."""

    def __init__(self, enabled: bool, total: int = 0):
        self.enabled, self.bars, self.overall = enabled, {}, None
        if enabled:
            from tqdm import tqdm

            self.overall = tqdm(total=total, desc="runs", unit="run", position=0, leave=False)

    def add(self, job: Job) -> None:
        if self.enabled:
            from tqdm import tqdm

            self.bars[job.dir] = tqdm(total=job.config.rounds, desc=f"{job.label} seed {job.seed}", unit="round",
                                      position=len(self.bars) + 1, leave=False)

    def update(self, job: Job) -> None:
        bar = self.bars.get(job.dir)
        if bar is not None:
            path = job.dir / rundir.METRICS
            done = sum(1 for _ in open(path)) if path.exists() else 0
            bar.update(done - bar.n)

    def remove(self, job: Job) -> None:
        bar = self.bars.pop(job.dir, None)
        if bar is not None:
            bar.close()
        if self.overall is not None:
            self.overall.update(1)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
        if self.overall is not None:
            self.overall.close()


# ------------------------------------------------------------------------------------------------ the table

def _sweep_log(todo: list[Job]) -> list[dict[str, Any]]:
    """One entry per setting: its runs, and each seed's final validation and test metrics."""
    settings: dict[tuple[str, tuple[str, ...]], list[Job]] = {}
    for job in todo:
        settings.setdefault((job.arm, job.settings), []).append(job)
    log = []
    for (arm, overrides), runs in settings.items():
        summaries = [rundir.read_json(job.dir / rundir.SUMMARY, required=True) for job in runs]
        finals = [s["final_accuracy"]["mean"] for s in summaries]
        vals = [(s.get("final_validation") or {}).get("mean") for s in summaries]
        log.append({"arm": arm, "algorithm": runs[0].algorithm, "settings": list(overrides),
                    "seeds": [j.seed for j in runs], "run_dirs": [str(j.dir) for j in runs],
                    "validation": vals, "test": finals,
                    "validation_mean": _mean(vals), "test_mean": _mean(finals),
                    "metric": summaries[0].get("test_metric_name", "accuracy")})
    return log


def _mean(values: list[float | None]) -> float | None:
    return sum(values) / len(values) if values and all(v is not None for v in values) else None


def _select(log: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per arm, its selected setting: the only one, or the best mean final validation metric over seeds
    (highest accuracy, lowest RMSE). The test metric is never looked at."""
    chosen: dict[str, tuple[float, dict[str, Any]]] = {}
    counts: dict[str, int] = {}
    for entry in log:
        counts[entry["arm"]] = counts.get(entry["arm"], 0) + 1
    for entry in log:
        arm = entry["arm"]
        if counts[arm] == 1:
            chosen[arm] = (0.0, entry)
            continue
        v = entry["validation_mean"]
        score = float("-inf") if v is None or not math.isfinite(v) else (-v if entry["metric"] == "rmse" else v)
        if arm not in chosen or score > chosen[arm][0]:
            chosen[arm] = (score, entry)
    return {arm: entry for arm, (_, entry) in chosen.items()}


def best_groups(root: str | Path) -> dict[str, list[Path]]:
    """A finished comparison's selected setting per arm: label -> its run directories (one per seed)."""
    saved = rundir.read_json(Path(root) / "compare.json", required=True)
    if "selected" in saved:
        return {s["label"]: [Path(d) for d in s["run_dirs"]] for s in saved["selected"]}
    best: dict[str, tuple[float, str, list[Path]]] = {}  # a comparison written before validation selection
    for entry in saved["sweep"]:
        final = entry.get("final")
        score = float("-inf") if final is None else (-final if entry.get("metric") == "rmse" else final)
        if entry["algorithm"] not in best or score > best[entry["algorithm"]][0]:
            best[entry["algorithm"]] = (score, _label(entry["algorithm"], entry["settings"]),
                                        [Path(d) for d in entry["run_dirs"]])
    return {label: dirs for _, label, dirs in best.values()}


def _tabulate(root: Path, base: Config, todo: list[Job], request: dict[str, Any],
              log: list[dict[str, Any]]) -> Comparison:
    from . import plots, report

    arms = _arms_from(request)
    chosen = _select(log)
    edges = _edges(base, arms, request, chosen)
    swept = {e["arm"] for e in log if sum(x["arm"] == e["arm"] for x in log) > 1}
    labels = {}
    for arm in arms:
        entry = chosen[arm.name]
        labels[arm.name] = _label(arm.name, entry["settings"]) + (" [edge]" if arm.name in edges else "")
        entry["selected"] = True
    groups = {labels[a.name]: [report.read_run(d, label=labels[a.name]) for d in chosen[a.name]["run_dirs"]]
              for a in arms}
    target, source = request.get("target"), "given"
    reference = request.get("reference") or "full"
    if target is None:
        target, source = _default_target(chosen, arms)
    on = request.get("on", "test")
    rows = report.seed_table(groups, target=target, targets=request.get("targets", ()), reference=reference, on=on)
    for arm, row in zip(arms, rows):
        row["arm"], row["role"] = arm.name, arm.role
        row["selected_on"] = "validation" if arm.name in swept else None
        row["edge"] = edges.get(arm.name)
    selected = [{"arm": a.name, "label": labels[a.name], "settings": chosen[a.name]["settings"],
                 "run_dirs": chosen[a.name]["run_dirs"]} for a in arms]
    (root / "compare.json").write_text(json.dumps(
        {"target": target, "target_source": source, "targets_on": on, "seeds": request["seeds"],
         "reference": reference, "selection": "the best mean final validation metric over seeds",
         "rows": rows, "selected": selected, "sweep": log, "edges": edges}, indent=2, default=str) + "\n")
    text = report.markdown_table(rows)
    if swept:
        text += "\n\n" + report.markdown_sweep(log, edges)
    (root / "compare.md").write_text(text + "\n")
    plots.plot_groups(groups, root / "plots", title=f"{base.data.name}, {base.nodes} nodes")
    return Comparison(root, rows, {a.name: Path(chosen[a.name]["run_dirs"][0]) for a in arms}, log, target, source)


def _default_target(chosen: dict[str, dict[str, Any]], arms: list[Arm]) -> tuple[float | None, str]:
    """95% of full sharing's final accuracy (105% of its RMSE), mean over seeds: of its validation metric when
    the runs have one (the target is then fixed without the test set), else of its test metric."""
    full = next((chosen[a.name] for a in arms if a.algorithm == "full" and a.role == "algorithm"), None)
    if full is None:
        return None, ""
    factor = 1.05 if full["metric"] == "rmse" else 0.95
    if full["validation_mean"] is not None:
        return full["validation_mean"] * factor, "validation"
    if full["test_mean"] is not None:
        return full["test_mean"] * factor, "test"
    return None, ""
