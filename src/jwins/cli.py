"""The ``jwins`` command line. Every command is a thin wrapper over the Python API."""
from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from .errors import JwinsError

SHORT_FLAGS = {"nodes": "nodes", "rounds": "rounds", "seed": "seed", "dataset": "data.name",
               "algorithm": "sharing.algorithm"}


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", help="TOML config file, or a run directory / its config.json")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set topology.degree=6 --set sharing.alphas=[0.1,1.0]")
    p.add_argument("--nodes", type=int, help="number of nodes")
    p.add_argument("--rounds", type=int, help="number of rounds")
    p.add_argument("--seed", type=int, help="random seed")
    p.add_argument("--dataset", help="dataset (data.name)")
    p.add_argument("--algorithm", help="sharing algorithm: full, subsample, topk, choco, jwins, local, "
                                       "or package.module:factory")
    p.add_argument("--out", help="output directory (default: a new one under runs/)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it holds an earlier run or comparison and nothing else (never the "
                        "current, home or a parent directory)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _config_from(args: argparse.Namespace):
    from . import config

    overrides = list(args.overrides)
    for flag, key in SHORT_FLAGS.items():
        value = getattr(args, flag, None)
        if value is not None:
            overrides.append(f"{key}={value}" if not isinstance(value, str) else f"{key}={config.quote(value)}")
    return config.load(args.config, overrides)


def _warn_ignored(cfg) -> None:
    from .config import ignored

    for line in ignored(cfg):
        print(f"jwins: warning: {line}", file=sys.stderr)


def cmd_run(args: argparse.Namespace) -> int:
    if args.resume:
        if args.config:
            raise JwinsError("--resume RUN_DIR reads the run's own config.json; do not also give a config file")
        if args.out:
            raise JwinsError("--resume RUN_DIR continues the run in RUN_DIR; do not also give --out")
        from . import rundir

        args.config = rundir.check_resumable(args.resume)
    cfg = _config_from(args)
    _warn_ignored(cfg)
    if args.seeds:  # one run per seed, then the mean and interval of every column
        from . import compare

        if args.resume:
            raise JwinsError("--seeds makes a comparison directory: continue it with jwins compare --resume DIR")
        try:
            result = compare.compare(cfg, [cfg.sharing.algorithm], out=args.out, quiet=args.quiet,
                                     overwrite=args.overwrite, seeds=_seeds(args.seeds), jobs=args.jobs)
        except compare.CompareInterrupted as e:
            print(f"jwins: {e}", file=sys.stderr)
            return e.exit_status
        _print_comparison(result, given_target=False)
        return 0
    from .api import run
    from .console import format_summary
    from .experiment import Interrupted

    try:
        result = run(cfg, quiet=args.quiet, run_dir=args.resume or args.out, resume=bool(args.resume),
                     overwrite=args.overwrite)
    except Interrupted as e:
        if os.environ.get("RANK", "0") == "0" and not e.announced:  # every rank stopped after the same round
            print(f"jwins: {e}", file=sys.stderr)
        return e.exit_status
    if not result.summary:  # a rank other than 0 of a distributed run: rank 0 reports
        return 0
    print(format_summary(result.summary))
    if not args.no_plots and result.run_dir is not None:
        from . import plots

        plots.plot_run(result.run_dir)
    print(f"run directory: {result.run_dir}")
    return 0


def _seeds(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise JwinsError(f"--seeds {text!r} must be integers separated by commas, e.g. --seeds 0,1,2") from None
    if not seeds or any(s < 0 for s in seeds):
        raise JwinsError(f"--seeds {text!r} must list seeds >= 0, e.g. --seeds 0,1,2")
    return seeds


def _targets(text: str | None) -> list[float]:
    if not text:
        return []
    try:
        return [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise JwinsError(f"--targets {text!r} must be numbers separated by commas, e.g. 0.7,0.75,0.8") from None


def cmd_compare(args: argparse.Namespace) -> int:
    from . import compare

    try:
        if args.resume:
            if args.config or args.overrides or args.out:
                raise JwinsError("--resume DIR continues the comparison in DIR with its own plan; give nothing else")
            result = compare.resume(args.resume, quiet=args.quiet, jobs=args.jobs, reference=args.reference,
                                    on=args.targets_on)
        else:
            cfg = _config_from(args)
            algorithms = [a.strip() for a in args.algorithms.split(",") if a.strip()]
            baselines = [] if args.baselines.strip().lower() == "none" else \
                [b.strip() for b in args.baselines.split(",") if b.strip()]
            result = compare.compare(cfg, algorithms, sweeps=args.sweep, target=args.target, out=args.out,
                                     quiet=args.quiet, overwrite=args.overwrite, seeds=_seeds(args.seeds),
                                     jobs=args.jobs, targets=_targets(args.targets), reference=args.reference,
                                     baselines=baselines, ablation=args.ablation, bracket=args.bracket,
                                     on=args.targets_on or "test")
    except compare.CompareInterrupted as e:
        print(f"jwins: {e}", file=sys.stderr)
        return e.exit_status
    _print_comparison(result, given_target=args.target is not None)
    return 0


def _print_comparison(result, *, given_target: bool) -> None:
    from . import report

    print(report.format_table(result.rows))
    sweep = report.format_sweep(result.sweep, {r["arm"]: r["edge"] for r in result.rows if r.get("edge")})
    if sweep:
        print()
        print(sweep)
    if result.target is not None:
        what = "given" if given_target else f"95% of full sharing's final {result.target_source} metric"
        print(f"target: {result.target:.4g} ({what})")
    print(f"comparison directory: {result.dir}")


def cmd_plot(args: argparse.Namespace) -> int:
    from . import plots

    own = len(args.runs) == 1 and not args.out  # a run's or a comparison's own plots/: redrawn in place
    if len(args.runs) == 1:
        out = Path(args.out) if args.out else Path(args.runs[0]) / "plots"
    else:
        out = Path(args.out) if args.out else plots.default_out(args.runs)
    if not own and not args.overwrite:
        plots.check_free(out)
    if len(args.runs) == 1 and (Path(args.runs[0]) / "compare.json").exists():  # a comparison directory
        from .compare import best_groups

        paths = plots.plot_groups(best_groups(args.runs[0]), out)
    elif len(args.runs) == 1:
        paths = plots.plot_run(args.runs[0], out)
    else:
        paths = plots.plot_runs(args.runs, out)
    for path in paths:
        print(path)
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from . import data

    if args.action == "list":
        for entry in data.describe():
            where = entry.get("path") or ", ".join(str(p) for p in entry.get("searched", []))
            status = "found" if entry.get("found") else "missing"
            print(f"{entry['name']:<14} {status:<8} {where}")
        return 0
    from .data import download

    path = download.download(args.name, args.root or Path.home() / ".cache" / "jwins" / args.name,
                             progress=not args.quiet)
    print(f"{args.name} is in {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="jwins", description="Communication-efficient decentralized learning.")
    parser.add_argument("--version", action="version", version=f"jwins {__version__}")
    sub = parser.add_subparsers(dest="command", required=False)
    p_run = sub.add_parser("run", help="run one experiment (default: digits, 16 nodes, full sharing)")
    _add_config_args(p_run)
    p_run.add_argument("--no-plots", action="store_true", help="do not draw the figures at the end")
    p_run.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its last checkpoint")
    p_run.add_argument("--seeds", metavar="S1,S2,...", help="run once per seed and report means with 95%% intervals")
    p_run.add_argument("--jobs", type=int, help="with --seeds: runs side by side in this many processes")
    p_run.set_defaults(func=cmd_run)
    p_cmp = sub.add_parser("compare", help="run several algorithms on identical settings and tabulate them")
    _add_config_args(p_cmp)
    p_cmp.add_argument("--algorithms", default="full,jwins,choco,topk,subsample",
                       help="comma-separated algorithms (default: full,jwins,choco,topk,subsample)")
    p_cmp.add_argument("--sweep", action="append", default=[], metavar="ALG:KEY=V1,V2",
                       help="try several values of a setting for one algorithm and keep the best on the "
                            "validation split (data.validation), e.g. --sweep choco:sharing.gamma=0.05,0.1,0.2,0.5")
    p_cmp.add_argument("--target", type=float, help="target accuracy (fraction) for rounds/bytes-to-target "
                                                     "(default: 95%% of full sharing's final accuracy, on the "
                                                     "validation split when there is one)")
    p_cmp.add_argument("--targets", metavar="T1,T2,...", help="more accuracy targets, each with a bytes-to-target "
                                                               "column, e.g. 0.7,0.75,0.8")
    p_cmp.add_argument("--seeds", metavar="S1,S2,...", help="run every setting once per seed (partition, graph, "
                                                             "initial model, batches) and report 95%% intervals")
    p_cmp.add_argument("--jobs", type=int, help="independent runs side by side in this many processes (default: "
                                                "the cores divided by engine.threads)")
    p_cmp.add_argument("--reference", help="the row the others are paired to, seed by seed (default: full "
                                            "sharing; jwins with --ablation); with --resume DIR, pairs a finished "
                                            "comparison to another row without running anything")
    p_cmp.add_argument("--baselines", default="local,iid", metavar="local,iid|none",
                       help="rows added to every table: local (no communication) and iid (full sharing on an IID "
                            "partition of the same data, the ceiling); default local,iid")
    p_cmp.add_argument("--ablation", action="store_true",
                       help="also run JWINS with one component changed at a time (identity transform, a fixed "
                            "alpha at the list's mean, no accumulation, value-based selection), paired to JWINS")
    p_cmp.add_argument("--bracket", type=int, default=2, metavar="N",
                       help="extend a numeric sweep whose winner is at an edge of its grid up to N times "
                            "(default 2; 0: never)")
    p_cmp.add_argument("--targets-on", choices=("test", "validation"), default=None,
                       help="read rounds and bytes to a target off the test curve (default) or the validation "
                            "curve (evaluated every eval.validation_every rounds); with --resume DIR, tabulates a "
                            "finished comparison again on that curve")
    p_cmp.add_argument("--resume", metavar="DIR", help="run what an interrupted comparison left undone")
    p_cmp.set_defaults(func=cmd_compare)
    p_plot = sub.add_parser("plot", help="redraw the figures of one or more run directories")
    p_plot.add_argument("runs", nargs="+", help="run directories")
    p_plot.add_argument("--out", help="directory for the figures (default: RUN_DIR/plots; for several runs, "
                                      "plots-<names> beside them)")
    p_plot.add_argument("--overwrite", action="store_true", help="replace figures already in --out")
    p_plot.set_defaults(func=cmd_plot)
    p_data = sub.add_parser("data", help="list datasets, or download one (needs internet)")
    data_sub = p_data.add_subparsers(dest="action", required=True)
    data_sub.add_parser("list", help="where each dataset was found, or where it is looked for")
    p_dl = data_sub.add_parser("download", help="download a dataset")
    p_dl.add_argument("name")
    p_dl.add_argument("--root", help="directory to put it in (default ~/.cache/jwins/NAME)")
    p_dl.add_argument("--quiet", action="store_true")
    p_data.set_defaults(func=cmd_data)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except JwinsError as e:
        print(f"jwins: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("jwins: interrupted", file=sys.stderr)
        return 130
    finally:
        # a Ctrl-C that arrives while the process exits must not print a traceback from the interpreter's
        # shutdown: what had to be written is written
        signal.signal(signal.SIGINT, signal.SIG_IGN)


if __name__ == "__main__":
    raise SystemExit(main())
