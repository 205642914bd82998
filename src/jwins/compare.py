"""``jwins compare``: several algorithms on identical data, partition, topology, initial model and seed, each
possibly over several seeds and swept settings, run one after the other or side by side, resumable.

Each algorithm may sweep one or more settings (``choco:sharing.gamma=0.05,0.1,0.2``); it is then reported at
its best setting (highest final mean accuracy over seeds, or lowest RMSE), and every run of the sweep stays in
the comparison directory: ``<dir>/<algorithm>[-<setting>...]`` for one seed, ``.../seed-<s>`` for several.
``compare-plan.json`` records what was asked, so that ``jwins compare --resume DIR`` runs only what is missing
(finished runs are kept, interrupted ones continue from their checkpoint) and writes the table.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import config as config_mod
from . import registry, rundir
from .config import Config
from .errors import ConfigError, JwinsError

PLAN = rundir.PLAN


@dataclass
class Comparison:
    dir: Path
    rows: list[dict[str, Any]]          # the table: one row per algorithm at its best setting
    best: dict[str, Path]               # algorithm -> run directory of its best setting (first seed)
    sweep: list[dict[str, Any]]         # every setting: algorithm, settings, run dirs, final metric per seed
    target: float | None


@dataclass(frozen=True)
class Job:
    """One run of a comparison."""

    algorithm: str
    settings: tuple[str, ...]   # the swept overrides
    seed: int
    dir: Path
    config: Config


class CompareInterrupted(JwinsError):
    """A comparison stopped by Ctrl-C or SIGTERM; ``jwins compare --resume DIR`` runs what is missing."""

    def __init__(self, message: str, exit_status: int = 130):
        super().__init__(message)
        self.exit_status = exit_status


def parse_sweeps(specs: list[str], algorithms: list[str]) -> dict[str, list[list[str]]]:
    """``["choco:sharing.gamma=0.1,0.2", "choco:sharing.alpha=0.1,0.2"]`` -> per algorithm, the list of
    override sets to try (the product of all its swept keys)."""
    keys: dict[str, list[tuple[str, list[str]]]] = {}
    for spec in specs:
        if ":" not in spec or "=" not in spec:
            raise ConfigError(f"--sweep {spec!r} must look like ALGORITHM:section.key=v1,v2,... "
                              "e.g. choco:sharing.gamma=0.05,0.1,0.2")
        head, _, values = spec.partition("=")
        # the algorithm may itself be "module:attribute": it ends at the last ':' before the '='
        algorithm, _, key = head.rpartition(":")
        algorithm = registry.SHARING.canonical(algorithm) or algorithm
        if algorithm not in algorithms:
            raise ConfigError(f"--sweep {spec!r} names {algorithm!r}, which is not among --algorithms "
                              f"{','.join(algorithms)}")
        items = _split_values(values)
        if not items:
            raise ConfigError(f"--sweep {spec!r} lists no values")
        keys.setdefault(algorithm, []).append((key.strip(), items))
    sweeps = {}
    for algorithm in algorithms:
        swept = keys.get(algorithm, [])
        combos = itertools.product(*[[f"{k}={v}" for v in values] for k, values in swept])
        sweeps[algorithm] = [list(c) for c in combos]
    return sweeps


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


def _label(algorithm: str, overrides: list[str] | tuple[str, ...]) -> str:
    if not overrides:
        return algorithm
    return f"{algorithm} ({', '.join(o.split('.', 1)[-1] for o in overrides)})"


def _dirname(algorithm: str, overrides: list[str] | tuple[str, ...]) -> str:
    name = "-".join([algorithm, *[o.split(".", 1)[-1] for o in overrides]])
    return "".join(c if c.isalnum() or c in "-_.=" else "_" for c in name)


def plan(base: Config, algorithms: list[str], sweeps: list[str], seeds: list[int], root: Path) -> list[Job]:
    """Every run of the comparison, in the order they are reported."""
    per_algorithm = parse_sweeps(list(sweeps), algorithms)
    jobs = []
    for algorithm in algorithms:
        # [sharing.options] belong to the config's own algorithm; the others start without them
        own = base if algorithm == base.sharing.algorithm else \
            base.replace(sharing=dataclasses.replace(base.sharing, options={}))
        for overrides in per_algorithm[algorithm]:
            setting = root / _dirname(algorithm, overrides)
            for seed in seeds:
                cfg = config_mod.override(own, [f"sharing.algorithm={config_mod.quote(algorithm)}", *overrides,
                                                f"seed={seed}"])
                jobs.append(Job(algorithm, tuple(overrides), seed, setting if len(seeds) == 1 else
                                setting / f"seed-{seed}", cfg))
    return jobs


def compare(base: Config, algorithms: list[str], *, sweeps: list[str] = (), target: float | None = None,
            out: str | Path | None = None, quiet: bool = True, overwrite: bool = False,
            seeds: list[int] | None = None, jobs: int | None = None, targets: list[float] = ()) -> Comparison:
    """Run every algorithm (and its sweep, for every seed) from ``base``, then tabulate them against full
    sharing. ``jobs`` runs that many in separate processes side by side (default: what the cores allow given
    ``engine.threads``); ``targets`` adds bytes-to-target columns. A new comparison directory is claimed like
    a run directory."""
    try:
        algorithms = [registry.SHARING.check(a) for a in algorithms]
    except ConfigError as e:
        raise ConfigError(f"--algorithms: {e}") from None
    seeds = list(seeds) if seeds else [base.seed]
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds {','.join(map(str, seeds))} repeats a seed")
    root = rundir.claim(out or rundir.default_path("compare", base.data.name, time.time()), {},
                        overwrite=overwrite, exclusive=not out)
    request = {"config": config_mod.to_dict(base), "algorithms": algorithms, "sweeps": list(sweeps),
               "seeds": seeds, "target": target, "targets": list(targets)}
    rundir.atomic_write(root / PLAN, json.dumps(request, indent=2) + "\n")
    return _execute(root, request, quiet=quiet, jobs=jobs)


def resume(root: str | Path, *, quiet: bool = True, jobs: int | None = None) -> Comparison:
    """Continue the comparison in ``root``: run what is missing, keep what finished, write the table."""
    root = Path(root)
    request = rundir.read_json(root / PLAN, required=False)
    if request is None:
        raise JwinsError(f"{root} holds no {PLAN}: it is not a comparison directory (or was made by an older "
                         "jwins); start it again with jwins compare")
    return _execute(root, request, quiet=quiet, jobs=jobs)


def _execute(root: Path, request: dict[str, Any], *, quiet: bool, jobs: int | None) -> Comparison:
    base = config_mod.from_dict(request["config"])
    todo = plan(base, request["algorithms"], request["sweeps"], request["seeds"], root)
    _Runner(todo, root, quiet=quiet, jobs=_jobs(base, jobs, len(todo))).run()
    return _tabulate(root, base, todo, request)


def _jobs(base: Config, jobs: int | None, count: int) -> int:
    """Processes side by side: as asked, else the cores divided by the threads each run uses."""
    if jobs is not None:
        if jobs < 1:
            raise ConfigError(f"--jobs {jobs} must be >= 1")
        return min(jobs, max(1, count))
    cores = _cores()
    return max(1, min(count, cores // max(1, base.engine.threads or cores)))


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _state(job: Job) -> str:
    """done (summary written), resume (a checkpoint to continue from), fresh (nothing, or nothing usable)."""
    if (job.dir / rundir.SUMMARY).exists():
        return "done"
    from . import checkpoint

    if checkpoint.rounds_available(rundir.checkpoint_path(job.dir)):
        return "resume"
    return "fresh"


class _Runner:
    """Runs the jobs not done yet: in this process (jobs = 1) or in child processes, one progress line each."""

    def __init__(self, todo: list[Job], root: Path, *, quiet: bool, jobs: int):
        self.todo, self.root, self.quiet, self.jobs = todo, root, quiet, jobs

    def run(self) -> None:
        pending = [j for j in self.todo if _state(j) != "done"]
        if self.jobs == 1:
            for job in pending:
                self._in_process(job)
        else:
            self._in_processes(pending)

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

        threads = max(1, _cores() // self.jobs)
        queue, running, failed, stopped = list(pending), [], [], []
        procs: list[subprocess.Popen] = []
        forward = _Forward(procs)
        bars = _Bars(enabled=not self.quiet)
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
    """One progress line per running job, read from its metrics.jsonl."""

    def __init__(self, enabled: bool):
        self.enabled, self.bars = enabled, {}

    def add(self, job: Job) -> None:
        if self.enabled:
            from tqdm import tqdm

            self.bars[job.dir] = tqdm(total=job.config.rounds, desc=_label(job.algorithm, job.settings) +
                                      f" seed {job.seed}", unit="round", position=len(self.bars), leave=False)

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

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


def _best(sweep_log: list[dict[str, Any]]) -> dict[str, tuple[str, list[Path]]]:
    """Per algorithm, the label and run directories of its best setting (highest mean final accuracy over
    seeds, lowest RMSE)."""
    best: dict[str, tuple[float, str, list[Path]]] = {}
    for entry in sweep_log:
        final = entry["final"]
        score = float("-inf") if final is None else (-final if entry["metric"] == "rmse" else final)
        if entry["algorithm"] not in best or score > best[entry["algorithm"]][0]:
            best[entry["algorithm"]] = (score, _label(entry["algorithm"], entry["settings"]),
                                        [Path(d) for d in entry["run_dirs"]])
    return {a: (label, dirs) for a, (_, label, dirs) in best.items()}


def best_groups(root: str | Path) -> dict[str, list[Path]]:
    """A finished comparison's best setting per algorithm: label -> its run directories (one per seed)."""
    saved = rundir.read_json(Path(root) / "compare.json", required=True)
    return {label: dirs for label, dirs in _best(saved["sweep"]).values()}


def _tabulate(root: Path, base: Config, todo: list[Job], request: dict[str, Any]) -> Comparison:
    from . import plots, report

    settings: dict[tuple[str, tuple[str, ...]], list[Job]] = {}
    for job in todo:
        settings.setdefault((job.algorithm, job.settings), []).append(job)
    sweep_log = []
    for (algorithm, overrides), runs in settings.items():
        summaries = [rundir.read_json(job.dir / rundir.SUMMARY, required=True) for job in runs]
        finals = [summary["final_accuracy"]["mean"] for summary in summaries]
        known = [f for f in finals if f is not None]
        sweep_log.append({"algorithm": algorithm, "settings": list(overrides), "run_dirs": [str(j.dir) for j in runs],
                          "final": sum(known) / len(known) if known else None, "finals": finals,
                          "metric": summaries[0].get("test_metric_name", "accuracy")})
    best = _best(sweep_log)
    groups = {label: [report.read_run(d, label=label) for d in dirs] for label, dirs in best.values()}
    target = request.get("target")
    if target is None and "full" in best:
        full = groups[best["full"][0]]
        finals = [r.summary["final_accuracy"]["mean"] for r in full if r.summary]
        if finals and all(f is not None for f in finals):
            target = sum(finals) / len(finals) * (1.05 if full[0].metric_name == "rmse" else 0.95)
    rows = report.seed_table(groups, target=target, targets=request.get("targets", ()))
    (root / "compare.json").write_text(json.dumps({"target": target, "seeds": request["seeds"], "rows": rows,
                                                   "sweep": sweep_log}, indent=2, default=str) + "\n")
    (root / "compare.md").write_text(report.markdown_table(rows) + "\n")
    plots.plot_groups(groups, root / "plots", title=f"{base.data.name}, {base.nodes} nodes")
    return Comparison(root, rows, {a: dirs[0] for a, (_, dirs) in best.items()}, sweep_log, target)
