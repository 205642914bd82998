"""``jwins.run``: one experiment, exactly as ``jwins run`` runs it (the command line is a call of this).

In one process it is :func:`jwins.experiment.run`; with ``engine.workers = K`` it starts K local ranks
(:mod:`jwins.launch`), which read the run directory's ``config.json`` and split the nodes between them, and
returns the run that rank 0 wrote; started by torchrun it is one rank of a distributed run.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from . import config as config_mod
from . import rundir
from .config import Config
from .errors import ConfigError, JwinsError, RunDirError
from .experiment import Interrupted, Result, run as run_here
from .launch import launch_local_workers, needs_local_launch
from .registry import PYTHON_OBJECT
from .world import record_objects


def interactive() -> bool:
    """Whether a person is watching: a terminal on stderr, or a notebook (where progress bars are wanted)."""
    if "ipykernel" in sys.modules:
        return True
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def run(config: Config, *, progress: bool | None = None, quiet: bool | None = None, engine=None,
        run_dir: str | Path | None = None, write: bool = True, resume: bool = False, overwrite: bool = False,
        sharing: Any = None, model: Any = None, dataset: Any = None, graph: Any = None) -> Result:
    """Run one experiment and return its :class:`~jwins.experiment.Result` (``result.run_dir`` is where it is).

    ``progress`` shows a progress bar (default: when a person is watching, a terminal or a notebook; ``quiet``
    is its opposite, kept for older callers). ``sharing``, ``model``, ``dataset`` and ``graph`` replace the
    parts the config names, as objects or factories. ``run_dir``, ``resume`` and ``overwrite`` are
    ``--out``, ``--resume`` and ``--overwrite``. With ``engine.workers = K`` (and no ``engine`` given) K local
    ranks run it; the result then carries the metrics and summary rank 0 wrote, and ``params`` is None."""
    if quiet is None:
        quiet = not (interactive() if progress is None else progress)
    if resume:
        if run_dir is None:
            raise ConfigError("resume=True continues the run in run_dir: give it (jwins run --resume RUN_DIR)")
        rundir.check_resumable(run_dir)
    if engine is not None or not needs_local_launch(config):
        return run_here(config, quiet=quiet, engine=engine, run_dir=run_dir, write=write, resume=resume,
                        overwrite=overwrite, sharing=sharing, model=model, dataset=dataset, graph=graph)
    return _run_local_workers(config, quiet=quiet, run_dir=run_dir, write=write, resume=resume,
                              overwrite=overwrite, given=dict(sharing=sharing, model=model, dataset=dataset,
                                                              graph=graph))


def _run_local_workers(config: Config, *, quiet: bool, run_dir, write: bool, resume: bool, overwrite: bool,
                       given: dict[str, Any]) -> Result:
    """``engine.workers`` ranks on this machine: the run directory gets the resolved config, the ranks read it."""
    if not write:
        raise ConfigError(f"engine.workers = {config.engine.workers} runs ranks that talk through the run "
                          "directory; give it one (write=True), or set engine.workers = 1")
    config = record_objects(config, **given)
    objects = [k for k, v in given.items() if v is not None]
    named = {"sharing": config.sharing.algorithm, "model": config.model.name, "dataset": config.data.name,
             "graph": config.topology.kind}
    for part in objects:
        if named[part].startswith(PYTHON_OBJECT):
            raise ConfigError(f"engine.workers = {config.engine.workers} starts ranks that import their parts by "
                              f"name, and the {part} given to jwins.run has none ({named[part]}); define it in a "
                              "module (a package.module:attribute) or set engine.workers = 1")
    resolved = config_mod.to_dict(config_mod.override(config, ["engine.kind=distributed"]))
    started = time.time()
    if resume:
        run_dir = Path(run_dir)
        saved = rundir.read_json(run_dir / rundir.CONFIG, required=True)
        from .checkpoint import differences

        changed = differences(saved, resolved)
        if changed:
            raise JwinsError(f"--resume {run_dir}: the run's configuration differs in {', '.join(changed[:5])}; "
                             "only rounds, checkpoint.* and engine.* may change when a run is continued")
        rundir.write_config(run_dir, resolved)  # the ranks read it: e.g. more rounds
    else:
        default = rundir.default_path(config.sharing.algorithm, config.data.name, started)
        run_dir = rundir.claim(run_dir or default, resolved, overwrite=overwrite, exclusive=not run_dir)
        rundir.write_config(run_dir, resolved)
    code = launch_local_workers(run_dir, config.engine.workers, timeout=config.engine.timeout, resume=resume,
                                quiet=quiet)
    if code:  # every rank stopped after the same round (Ctrl-C or SIGTERM); rank 0 said how to continue
        raise Interrupted(f"stopped; the ranks wrote a checkpoint in {run_dir}: continue with `jwins run "
                          f"--resume {run_dir}`", code - 128, announced=True)
    summary = rundir.read_json(Path(run_dir) / rundir.SUMMARY, required=False)
    if summary is None:
        raise RunDirError(f"the ranks finished but {Path(run_dir) / rundir.SUMMARY} is missing")
    return Result(config, Path(run_dir), rundir.read(run_dir).metrics, summary, None,
                  dict(summary.get("phase_seconds", {})))
