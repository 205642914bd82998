"""``jwins compare``: several algorithms on identical data, partition, topology, initial model and seed.

Each algorithm may sweep one or more settings (``choco:sharing.gamma=0.05,0.1,0.2``); it is then reported at
its best setting (highest final mean accuracy, or lowest RMSE), and every run of the sweep stays in the
comparison directory.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import config as config_mod
from . import registry
from .config import Config
from .errors import ConfigError


@dataclass
class Comparison:
    dir: Path
    rows: list[dict[str, Any]]          # the table: one row per algorithm at its best setting
    best: dict[str, Path]               # algorithm -> run directory of its best setting
    sweep: list[dict[str, Any]]         # every run: algorithm, settings, run dir, final metric
    target: float | None


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


def _label(algorithm: str, overrides: list[str]) -> str:
    if not overrides:
        return algorithm
    return f"{algorithm} ({', '.join(o.split('.', 1)[-1] for o in overrides)})"


def _dirname(algorithm: str, overrides: list[str]) -> str:
    name = "-".join([algorithm, *[o.split(".", 1)[-1] for o in overrides]])
    return "".join(c if c.isalnum() or c in "-_.=" else "_" for c in name)


def compare(base: Config, algorithms: list[str], *, sweeps: list[str] = (), target: float | None = None,
            out: str | Path | None = None, quiet: bool = True, overwrite: bool = False) -> Comparison:
    """Run every algorithm (and its sweep) from ``base``, then tabulate them against full sharing."""
    from . import plots, report, rundir
    from .experiment import run

    try:
        algorithms = [registry.SHARING.check(a) for a in algorithms]
    except ConfigError as e:
        raise ConfigError(f"--algorithms: {e}") from None
    plan = parse_sweeps(list(sweeps), algorithms)
    default = rundir.default_path("compare", base.data.name, time.time())
    root = rundir.claim(out or default, {}, overwrite=overwrite, exclusive=not out)
    sweep_log: list[dict[str, Any]] = []
    best: dict[str, tuple[float, Path, str]] = {}
    for algorithm in algorithms:
        for overrides in plan[algorithm]:
            # [sharing.options] belong to the config's own algorithm; the others start without them
            own = base if algorithm == base.sharing.algorithm else \
                base.replace(sharing=dataclasses.replace(base.sharing, options={}))
            cfg = config_mod.override(own, [f"sharing.algorithm={config_mod.quote(algorithm)}", *overrides])
            run_dir = root / _dirname(algorithm, overrides)
            result = run(cfg, quiet=quiet, run_dir=run_dir)
            final = result.summary["final_accuracy"]["mean"]
            lower_better = result.summary.get("test_metric_name") == "rmse"
            score = float("-inf") if final is None else (-final if lower_better else final)
            sweep_log.append({"algorithm": algorithm, "settings": overrides, "run_dir": str(run_dir),
                              "final": final, "metric": result.summary.get("test_metric_name", "accuracy")})
            if algorithm not in best or score > best[algorithm][0]:
                best[algorithm] = (score, run_dir, _label(algorithm, overrides))
    runs = [report.read_run(path, label=label) for _, path, label in best.values()]
    if target is None and "full" in best:
        full_run = next(r for r in runs if r.config["sharing"]["algorithm"] == "full")
        final = full_run.summary["final_accuracy"]["mean"] if full_run.summary else None
        if final is not None:
            lower_better = full_run.summary.get("test_metric_name") == "rmse"
            target = final * (1.05 if lower_better else 0.95)
    rows = report.compare_table(runs, target=target)
    (root / "compare.json").write_text(json.dumps({"target": target, "rows": rows, "sweep": sweep_log}, indent=2,
                                                  default=str) + "\n")
    (root / "compare.md").write_text(report.markdown_table(rows) + "\n")
    plots.plot_runs([r.dir for r in runs], root / "plots", labels=[r.label for r in runs],
                    title=f"{base.data.name}, {base.nodes} nodes")
    return Comparison(root, rows, {a: p for a, (_, p, _) in best.items()}, sweep_log, target)

