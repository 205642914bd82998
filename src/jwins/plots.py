"""Figures of run directories: accuracy per round, per byte and per modelled network time, training loss,
and the fraction sent per round. Drawn with Matplotlib's Agg canvas directly, so pyplot (and the user's
backend) is never touched; written as PNG and SVG.

>>> plot_runs(["runs/full", "runs/jwins"], "plots", title="digits")     # doctest: +SKIP
"""
from __future__ import annotations

import math
import os
import textwrap
from pathlib import Path
from typing import Any, Iterable, Sequence

from .errors import JwinsError
from .report import as_runs
from .rundir import Run, finite as _finite, read as read_run

__all__ = ["FIGURES", "plot_run", "plot_runs"]

MB = 1e6
# the figures' file stems, in the order written (alpha and accuracy_time only when the run recorded them)
FIGURES = ("accuracy_rounds", "accuracy_bytes", "loss", "alpha", "accuracy_time")


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*")
BANDS_UP_TO = 3  # shaded bands on a figure of at most this many runs
LINESTYLES = ("-", "--", "-.", ":")


def plot_run(run_dir: Run | str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """Figures for one run, written as PNG and SVG into ``out_dir`` (default ``run_dir/plots``).
    Returns the files written."""
    run = run_dir if isinstance(run_dir, Run) else read_run(run_dir)
    out = Path(out_dir) if out_dir is not None else run.dir / "plots"
    return _plot([run], out, title=run.label)


def figure_paths(out_dir: str | Path) -> list[Path]:
    """Every file a drawing may write into ``out_dir``."""
    return [Path(out_dir) / f"{name}.{ext}" for name in FIGURES for ext in ("png", "svg")]


def check_free(out_dir: str | Path) -> None:
    """Refuse, in one line, to draw over figures already in ``out_dir`` (for figures outside a run's own
    ``plots/``)."""
    taken = [p for p in figure_paths(out_dir) if p.exists()]
    if taken:
        raise JwinsError(f"{taken[0]} exists already; choose another --out, or add --overwrite to replace the "
                         f"figures in {out_dir}")


def default_out(run_dirs: Sequence[str | Path]) -> Path:
    """Where figures of several runs go by default: beside them, in ``<their folder>/plots-<a>-<b>...``."""
    paths = [Path(d).resolve() for d in run_dirs]
    parent = Path(os.path.commonpath([str(p.parent) for p in paths]))
    name = "plots-" + "-".join(p.name for p in paths)
    return parent / (name if len(name) <= 80 else name[:72] + f"-{len(paths)}-runs")


def plot_runs(run_dirs: Iterable[Run | str | Path], out_dir: str | Path, *, labels: Sequence[str] | None = None,
              title: str | None = None) -> list[Path]:
    """All runs on one figure per quantity, written as PNG and SVG into ``out_dir``. Runs of one algorithm
    are told apart by the config values that differ (or pass ``labels``). Returns the files written."""
    runs = as_runs(run_dirs, labels)
    if not runs:
        raise JwinsError("plot_runs needs at least one run directory")
    metrics = {r.metric_name for r in runs}
    if len(metrics) > 1:
        raise JwinsError(f"cannot draw {' and '.join(sorted(metrics))} runs on one axis: "
                         + ", ".join(f"{r.dir} ({r.metric_name})" for r in runs))
    return _plot(runs, Path(out_dir), title=title)


def plot_groups(groups: dict[str, Sequence[Run | str | Path]], out_dir: str | Path, *, title: str | None = None
                ) -> list[Path]:
    """One curve per group of runs that differ only in their seed: the mean over seeds, with a shaded band of
    the 95% Student-t interval of that mean (a group of one run is drawn as :func:`plot_runs` draws it, with
    its min-max band over nodes). Returns the files written."""
    runs = [_mean_run(label, as_runs(group)) for label, group in groups.items()]
    seeds = {len(group) for group in groups.values()}
    if max(seeds) < 2:
        return plot_runs(runs, out_dir, title=title)
    return _plot(runs, Path(out_dir), title=title, band=f"95% CI over {'/'.join(map(str, sorted(seeds)))} seeds")


def _mean_run(label: str, runs: list[Run]) -> Run:
    """A run whose metrics are the mean over ``runs`` (round by round), ``test_accuracy_min``/``_max`` the
    mean minus/plus the t-interval half-width over them."""
    from .report import t_interval

    if len(runs) == 1:
        return runs[0].relabel(label)
    length = min(len(r.metrics) for r in runs)
    records = []
    for i in range(length):
        rows = [r.metrics[i] for r in runs]
        record: dict[str, Any] = {"round": rows[0]["round"]}
        for key in ("train_loss", "cumulative_bytes", "alpha", "network_seconds", "test_accuracy"):
            values = [row[key] for row in rows if _finite(row.get(key))]
            if len(values) == len(rows):
                record[key] = sum(values) / len(values)
        if "test_accuracy" in record:
            half = t_interval([row["test_accuracy"] for row in rows]) or 0.0
            record.update(test_accuracy_min=record["test_accuracy"] - half,
                          test_accuracy_max=record["test_accuracy"] + half,
                          test_metric_name=rows[0].get("test_metric_name", "accuracy"))
        records.append(record)
    first = runs[0]
    return Run(first.dir, first.config, records, first.summary, label)


def _subtitle(runs: list[Run]) -> str:
    datasets = sorted({str(r.dataset) for r in runs if r.dataset})
    nodes = sorted({r.nodes for r in runs if r.nodes})
    parts = []
    if datasets:
        parts.append(", ".join(datasets))
    if nodes:
        parts.append(f"{'/'.join(str(n) for n in nodes)} nodes")
    return ", ".join(parts)


def _heading(title: str | None, runs: list[Run]) -> str:
    """The second title line: ``title`` with the dataset and node count appended unless it names them."""
    datasets = sorted({str(r.dataset) for r in runs if r.dataset})
    nodes = sorted({r.nodes for r in runs if r.nodes})
    sub = _subtitle(runs)
    if not title:
        return sub
    named = all(d in title for d in datasets) and (not nodes or f"{'/'.join(map(str, nodes))} nodes" in title)
    return title if named or not sub else f"{title}: {sub}"


def _plot(runs: list[Run], out: Path, *, title: str | None, band: str = "min–max over nodes") -> list[Path]:
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator

    out.mkdir(parents=True, exist_ok=True)
    metric = runs[0].metric_name
    acc = metric == "accuracy"
    scale = 100.0 if acc else 1.0
    y_label = "test accuracy (%)" if acc else "test RMSE (lower is better)"
    head = _heading(title, runs)
    styles = {id(r): (f"C{i % 10}", MARKERS[i % len(MARKERS)], LINESTYLES[(i // 10) % len(LINESTYLES)])
              for i, r in enumerate(runs)}  # one colour, marker and line style per run, the same in every figure

    def style(r: Run) -> tuple[str, str, Any]:
        return styles[id(r)]

    written: list[Path] = []

    def new(name: str):
        fig = Figure(figsize=(7.2, 4.8), layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        ax.set_title(f"{name}\n{head}" if head else name, fontsize=11)
        ax.grid(True, which="major", alpha=0.35)
        ax.grid(True, which="minor", alpha=0.12)
        return fig, ax

    shade = len(runs) <= BANDS_UP_TO  # more bands than that overlap into a grey wash: the curves alone

    def save(fig, ax, name: str, banded: bool = False) -> None:
        handles, labels = ax.get_legend_handles_labels()
        if banded and len(runs) > 1:  # the legend says what the shaded bands are
            from matplotlib.patches import Patch

            text = f"shaded: {band}" if shade else f"bands omitted ({len(runs)} runs; each run's figures have them)"
            handles.append(Patch(facecolor="0.6" if shade else "none", edgecolor="none", alpha=0.4))
            labels.append(text)
        if len(handles) == 1 and len(runs) == 1:
            pass  # a single run is named in the title already
        elif len(handles) <= 3 and max(len(lab) for lab in labels) <= 30:
            ax.legend(handles, labels, loc="best", fontsize=9, framealpha=0.85)
        else:  # a long legend goes under the axes, where it cannot hide a curve
            ncols = 2 if max(len(lab) for lab in labels) > 24 else 3
            fig.legend(handles, labels, loc="outside lower center", ncols=ncols, fontsize=9, frameon=False)
        with matplotlib.rc_context({"svg.hashsalt": "jwins", "svg.fonttype": "path"}):
            for ext in ("png", "svg"):
                path = out / f"{name}.{ext}"
                kwargs = {"dpi": 150} if ext == "png" else {"metadata": {"Date": None}}
                fig.savefig(path, format=ext, **kwargs)
                written.append(path)

    def log_x_if_spread(ax, ends: list[float]) -> None:
        """Compressed runs end at a fraction of full sharing's bytes or time: a log axis keeps them apart."""
        ends = [e for e in ends if _finite(e) and e > 0]
        if ends and max(ends) / min(ends) >= 5:
            ax.set_xscale("log")
            lo, hi = (v for v in ax.get_xlim())
            decades = math.log10(hi / lo) if lo > 0 else 9
            ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if decades <= 3.5 else (1.0,)))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))

    def markevery(n: int) -> int:
        return max(1, math.ceil(n / 12))

    def draw(ax, runs_: list[Run], x_of, shaded: bool = True) -> None:
        for r in runs_:
            ev = [m for m in r.evaluated if _finite(x_of(m))]
            if not ev:
                continue
            color, marker, ls = style(r)
            x = [x_of(m) for m in ev]
            y = [m["test_accuracy"] * scale for m in ev]
            single = len(runs_) == 1
            mean = "mean over nodes" if band.endswith("nodes") else "mean over seeds"
            ax.plot(x, y, color=color, marker=marker, ls=ls, lw=1.6, ms=4.5, markevery=markevery(len(x)),
                    label=mean if single else r.label)
            lo = [m.get("test_accuracy_min") for m in ev]
            hi = [m.get("test_accuracy_max") for m in ev]
            if not (shaded and shade and all(_finite(v) for v in lo + hi) and lo != hi):
                continue
            lo, hi = [v * scale for v in lo], [v * scale for v in hi]
            if len(x) == 1:  # a band needs two points: one evaluation gets an error bar
                ax.errorbar(x, y, yerr=[[max(0.0, y[0] - lo[0])], [max(0.0, hi[0] - y[0])]], color=color,
                            capsize=4, lw=1.2, ls="none", label=band if single else None)
            else:
                ax.fill_between(x, lo, hi, color=color, alpha=0.15 if len(runs_) <= 3 else 0.1, lw=0,
                                label=band if single else None)
        if acc:  # percentages: never below 0 or above 100, whatever the band's margin
            lo_, hi_ = ax.get_ylim()
            ax.set_ylim(max(0.0, lo_), min(100.5, hi_))

    int_rounds = MaxNLocator(integer=True)

    # accuracy vs rounds
    fig, ax = new(f"Test {'accuracy' if acc else 'RMSE'} per round")
    draw(ax, runs, lambda m: m["round"])
    ax.set_xlabel("round")
    ax.xaxis.set_major_locator(int_rounds)
    ax.set_ylabel(y_label)
    save(fig, ax, "accuracy_rounds", banded=True)

    # accuracy vs bytes
    fig, ax = new(f"Test {'accuracy' if acc else 'RMSE'} per data sent")
    draw(ax, runs, lambda m: m["cumulative_bytes"] / MB if _finite(m.get("cumulative_bytes")) else None)
    log_x_if_spread(ax, [r.metrics[-1].get("cumulative_bytes") for r in runs])
    ax.set_xlabel("data sent per node (MB, cumulative" + (", log scale)" if ax.get_xscale() == "log" else ")"))
    ax.set_ylabel(y_label)
    save(fig, ax, "accuracy_bytes", banded=True)

    # training loss
    fig, ax = new("Training loss per round")
    losses = []
    for r in runs:
        pts = [(m["round"], m["train_loss"]) for m in r.metrics if _finite(m.get("train_loss"))]
        if not pts:
            continue
        color, marker, ls = style(r)
        x, y = zip(*pts)
        losses += y
        ax.plot(x, y, color=color, ls=ls, lw=1.4, marker=None if len(runs) == 1 else marker, ms=4,
                markevery=markevery(len(x)), label=r.label)
    pos = [v for v in losses if v > 0]
    if pos and len(pos) == len(losses) and max(pos) / min(pos) > 10:  # spans a decade or more
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlabel("round")
    ax.xaxis.set_major_locator(int_rounds)
    ax.set_ylabel("training loss (mean over nodes" + (", log scale)" if ax.get_yscale() == "log" else ")"))
    save(fig, ax, "loss")

    # alpha per round
    # (a run that always sends everything, full sharing, draws no alpha figure: it would be a flat line at 100%)
    with_alpha = [r for r in runs if any(_finite(m.get("alpha")) and m["alpha"] < 1 for m in r.metrics)]
    if with_alpha:
        fig, ax = new("Fraction of coefficients sent per round (α)")
        fixed: dict[float, list[tuple[Run, list, list]]] = {}
        for r in with_alpha:
            pts = [(m["round"], 100 * m["alpha"]) for m in r.metrics if _finite(m.get("alpha"))]
            color, marker, ls = style(r)
            x, y = zip(*pts)
            mean = sum(y) / len(y)
            if max(y) - min(y) < 1e-9 * max(1.0, abs(mean)):  # a fixed alpha: a horizontal line
                fixed.setdefault(round(mean, 9), []).append((r, x, y))
            else:  # drawn per round: one dot per round, the mean dashed
                single = len(with_alpha) == 1
                ax.plot(x, y, color=color, ls="none", marker=marker, ms=3.0 if len(x) > 100 else 4.5,
                        alpha=0.75, zorder=3, label="per round" if single else f"{r.label} (mean {mean:.3g}%)")
                ax.axhline(mean, color=color, lw=1.2, ls=(0, (5, 3)), zorder=2,
                           label=f"mean {mean:.3g}%" if single else None)
        for value, group in fixed.items():  # runs with the same fixed alpha share one line (they would hide
            names = ", ".join(r.label for r, _, _ in group)  # each other)
            color = style(group[0][0])[0] if len(group) == 1 else "0.3"
            x = sorted({v for _, xs, _ in group for v in xs})
            ax.plot(x, [value] * len(x), color=color, lw=2.0, zorder=1,
                    label=textwrap.fill(f"{names}: fixed {value:.3g}%", 48))
        ax.set_xlabel("round")
        ax.xaxis.set_major_locator(int_rounds)
        ax.set_ylabel("coefficients sent, α (% of model)")
        ax.set_ylim(0, min(105, max(ax.get_ylim()[1], 5)))
        save(fig, ax, "alpha")

    # accuracy vs modelled network time
    with_net = [r for r in runs if any(_finite(m.get("network_seconds")) for m in r.evaluated)]
    if with_net:
        t_max = max(m["network_seconds"] for r in with_net for m in r.evaluated
                    if _finite(m.get("network_seconds")))
        div, unit = (3600.0, "h") if t_max > 3 * 3600 else (60.0, "min") if t_max > 600 else (1.0, "s")
        fig, ax = new(f"Test {'accuracy' if acc else 'RMSE'} per modelled time (compute + network)")
        draw(ax, with_net, lambda m: m["network_seconds"] / div if _finite(m.get("network_seconds")) else None)
        log_x_if_spread(ax, [max((m["network_seconds"] for m in r.metrics if _finite(m.get("network_seconds"))),
                                 default=None) for r in with_net])
        ax.set_xlabel(f"modelled time, compute + network ({unit}, cumulative"
                      + (", log scale)" if ax.get_xscale() == "log" else ")"))
        ax.set_ylabel(y_label)
        save(fig, ax, "accuracy_time", banded=True)
    return written
