"""Reading run directories back: comparison tables and figures.

A run directory (written by ``jwins run``) holds ``config.json``, ``metrics.jsonl`` (one JSON object per
round) and, once the run finished, ``summary.json``.

>>> runs = [read_run(d) for d in ["runs/full", "runs/jwins"]]            # doctest: +SKIP
>>> print(format_table(compare_table(runs, target=0.9)))                # doctest: +SKIP
>>> plot_runs(["runs/full", "runs/jwins"], "plots", title="digits")     # doctest: +SKIP

Accuracies are fractions (0..1) everywhere in the data and in :func:`compare_table`'s rows; tables and
figures show them in percent. Regression runs (``test_metric_name == "rmse"``) are shown as RMSE, unscaled.
Figures are drawn with Matplotlib's Agg canvas directly, so pyplot (and the user's backend) is never touched.
"""
from __future__ import annotations

import json
import math
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from .errors import JwinsError

__all__ = ["Run", "read_run", "plot_run", "plot_runs", "target_reached", "compare_table", "format_table",
           "markdown_table"]

MB = 1e6
# the figures' file stems, in the order written (alpha and accuracy_time only when the run recorded them)
FIGURES = ("accuracy_rounds", "accuracy_bytes", "loss", "alpha", "accuracy_time")


# --------------------------------------------------------------------------------------------- reading

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
        return [m for m in self.metrics if _finite(m.get("test_accuracy"))]


def read_run(run_dir: str | Path, label: str | None = None) -> Run:
    """Read a run directory. ``label`` defaults to the sharing algorithm; pass e.g. ``"choco (gamma=0.2)"``
    to tell apart runs of one algorithm. Raises :class:`JwinsError` naming the file (and line) that is
    missing or damaged."""
    d = Path(run_dir)
    if not d.exists():
        raise JwinsError(f"run directory {d} does not exist")
    if not d.is_dir():
        raise JwinsError(f"{d} is not a run directory (it is a file); pass the directory `jwins run` wrote")
    config = _read_json(d / "config.json", required=True)
    summary = _read_json(d / "summary.json", required=False)
    metrics = _read_metrics(d / "metrics.jsonl")
    if label is None:
        label = (config.get("sharing", {}).get("algorithm") if isinstance(config.get("sharing"), dict)
                 else None) or (summary or {}).get("algorithm") or d.name
    return Run(d, config, metrics, summary, str(label))


def _read_json(path: Path, *, required: bool) -> dict[str, Any] | None:
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
                hint = " (the run may have been stopped mid-write)" if not line.endswith("\n") else ""
                raise JwinsError(f"{path} line {n} is not valid JSON: {e.msg} at column {e.colno}{hint}: "
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


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _as_runs(runs: Iterable[Run | str | Path], labels: Sequence[str] | None = None) -> list[Run]:
    runs = [r if isinstance(r, Run) else read_run(r) for r in runs]
    if labels is not None:
        labels = list(labels)
        if len(labels) != len(runs):
            raise JwinsError(f"{len(labels)} labels for {len(runs)} runs; give one label per run")
        return [Run(r.dir, r.config, r.metrics, r.summary, str(lab)) for r, lab in zip(runs, labels)]
    return _distinct_labels(runs)


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = json.dumps(v) if isinstance(v, list) else v
    return out


def _distinct_labels(runs: list[Run]) -> list[Run]:
    """Runs sharing a label get the config values that tell them apart appended, e.g. ``choco (gamma=0.2)``."""
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(runs):
        groups.setdefault(r.label, []).append(i)
    out = list(runs)
    for label, idx in groups.items():
        if len(idx) < 2:
            continue
        flat = [_flatten(runs[i].config) for i in idx]
        keys = sorted(set().union(*flat) - {"out"})
        differ = [k for k in keys if len({repr(f.get(k)) for f in flat}) > 1]
        differ.sort(key=lambda k: (not k.startswith("sharing."), k))  # sharing parameters first
        for i, f in zip(idx, flat):
            if differ:
                extra = ", ".join(f"{k.rsplit('.', 1)[-1]}={f.get(k)}" for k in differ[:3])
            else:
                extra = runs[i].dir.name
            r = runs[i]
            out[i] = Run(r.dir, r.config, r.metrics, r.summary, f"{label} ({extra})")
    return out


# --------------------------------------------------------------------------------------------- numbers

def target_reached(metrics: Sequence[dict[str, Any]], target: float, *, key: str = "test_accuracy",
                   higher_is_better: bool = True) -> dict[str, Any] | None:
    """The first evaluated round whose ``key`` reaches ``target`` (>= it, or <= it when lower is better):
    ``{"round", "cumulative_bytes", "seconds"}`` plus ``"network_seconds"`` when the run modelled the
    network. ``None`` if no round reached it."""
    for m in metrics:
        v = m.get(key)
        if not _finite(v):
            continue
        if (v >= target) if higher_is_better else (v <= target):
            hit = {"round": m["round"], "cumulative_bytes": m.get("cumulative_bytes"),
                   "seconds": m.get("seconds")}
            if "network_seconds" in m:
                hit["network_seconds"] = m["network_seconds"]
            return hit
    return None


def _sum(metrics: Sequence[dict[str, Any]], key: str) -> float | None:
    values = [m[key] for m in metrics if _finite(m.get(key))]
    return float(sum(values)) if values else None


def _part(run: Run, key: str) -> float | None:
    total = _sum(run.metrics, key)
    return total if total is not None else (run.summary or {}).get(f"{key}_per_node")


def compare_table(runs: Sequence[Run | str | Path], *, target: float | None = None,
                  reference: str = "full") -> list[dict[str, Any]]:
    """One row (a dict) per run, in the given order.

    Keys: ``label``, ``algorithm``, ``dataset``, ``nodes``, ``rounds``, ``metric`` ("accuracy"/"rmse"),
    ``final_mean``, ``final_min``, ``final_max`` (over nodes, at the last evaluated round; fractions for
    accuracy), ``final_worst`` (the worst node: min accuracy, max RMSE), ``bytes_per_node`` (total sent per node),
    ``bytes_relative`` (that divided by the reference run's, the run whose label or algorithm is
    ``reference`` on the same dataset and node count; None without one), ``reference``,
    ``bytes_indices_per_node``, ``bytes_values_per_node``, ``bytes_header_per_node``, ``seconds`` (wall).
    With ``target``: ``target``, ``rounds_to_target``, ``bytes_to_target`` (cumulative bytes per node when
    first reached; None if never). When any run has ``network_seconds``: ``network_seconds`` (modelled
    total) and, with ``target``, ``network_seconds_to_target``.

    ``target`` is in the metric's own units: an accuracy fraction (0.9, not 90) or an RMSE (lower is
    better for RMSE)."""
    runs = _as_runs(runs)
    network = any(any("network_seconds" in m for m in r.metrics) for r in runs)
    rows = []
    for r in runs:
        metric = r.metric_name
        if target is not None and metric == "accuracy" and not 0 <= target <= 1:
            raise JwinsError(f"target = {target} for an accuracy run ({r.dir}): accuracy targets are "
                             f"fractions, e.g. 0.9 for 90%")
        evaluated = r.evaluated
        last = evaluated[-1] if evaluated else {}
        final = (r.summary or {}).get("final_accuracy") or {}
        final_mean = last.get("test_accuracy", final.get("mean"))
        final_min = last.get("test_accuracy_min", final.get("min"))
        final_max = last.get("test_accuracy_max", final.get("max"))
        summary = r.summary or {}
        total = r.metrics[-1].get("cumulative_bytes")
        if not _finite(total):
            total = summary.get("bytes_sent_per_node") or _sum(r.metrics, "bytes_sent")
        row: dict[str, Any] = {
            "label": r.label,
            "algorithm": r.algorithm,
            "dataset": r.dataset,
            "nodes": r.nodes,
            "rounds": r.metrics[-1]["round"],
            "metric": metric,
            "final_mean": final_mean,
            "final_min": final_min,
            "final_max": final_max,
            "final_worst": final_max if metric == "rmse" else final_min,
            "bytes_per_node": total,
            "bytes_relative": None,
            "reference": reference,
            "bytes_indices_per_node": _part(r, "bytes_indices"),
            "bytes_values_per_node": _part(r, "bytes_values"),
            "bytes_header_per_node": _part(r, "bytes_header"),
            "seconds": summary.get("seconds", r.metrics[-1].get("seconds")),
        }
        if target is not None:
            hit = target_reached(r.metrics, target, higher_is_better=metric != "rmse")
            row.update(target=target, rounds_to_target=hit and hit["round"],
                       bytes_to_target=hit and hit["cumulative_bytes"])
            if network:
                row["network_seconds_to_target"] = hit.get("network_seconds") if hit else None
        if network:
            ns = [m["network_seconds"] for m in r.metrics if _finite(m.get("network_seconds"))]
            row["network_seconds"] = ns[-1] if ns else None
        rows.append(row)
    for r, row in zip(runs, rows):
        ref = _reference(runs, rows, r, reference)
        if ref is not None and _finite(ref["bytes_per_node"]) and ref["bytes_per_node"] > 0 \
                and _finite(row["bytes_per_node"]):
            row["bytes_relative"] = row["bytes_per_node"] / ref["bytes_per_node"]
    return rows


def _reference(runs: list[Run], rows: list[dict], run: Run, reference: str) -> dict | None:
    same = [(r, row) for r, row in zip(runs, rows) if r.dataset == run.dataset and r.nodes == run.nodes]
    for match in (lambda r: r.label == reference, lambda r: r.algorithm == reference):
        for r, row in same:
            if match(r):
                return row
    return None


# --------------------------------------------------------------------------------------------- tables

def _pct(v: Any, digits: int = 2) -> str | None:
    return f"{100 * v:.{digits}f}" if _finite(v) else None


def _metric(v: Any, metric: str) -> str | None:
    if not _finite(v):
        return None
    return f"{100 * v:.2f}" if metric == "accuracy" else f"{v:.4f}"


def _mb(v: Any) -> str | None:
    return f"{v / MB:.3f}" if _finite(v) else None


def _secs(v: Any) -> str | None:
    return f"{v:.1f}" if _finite(v) else None


def _columns(rows: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    """(header, row -> text or None) for each column that applies to these rows."""
    metrics = {row.get("metric", "accuracy") for row in rows}
    unit = "acc %" if metrics == {"accuracy"} else "RMSE" if metrics == {"rmse"} else "acc % / RMSE"
    worst = "min acc %" if metrics == {"accuracy"} else "max RMSE" if metrics == {"rmse"} else "worst acc % / RMSE"
    refs = {row.get("reference", "full") for row in rows}
    ref = refs.pop() if len(refs) == 1 else "ref"
    cols: list[tuple[str, Any]] = [
        ("run", lambda r: r.get("label")),
        (f"final {unit}", lambda r: _metric(r.get("final_mean"), r.get("metric", "accuracy"))),
        (worst, lambda r: _metric(r.get("final_worst", r.get("final_min")), r.get("metric", "accuracy"))),
        ("MB/node", lambda r: _mb(r.get("bytes_per_node"))),
        (f"vs {ref} %", lambda r: _pct(r.get("bytes_relative"), 1)),
        ("index MB", lambda r: _mb(r.get("bytes_indices_per_node"))),
        ("value MB", lambda r: _mb(r.get("bytes_values_per_node"))),
        ("header MB", lambda r: _mb(r.get("bytes_header_per_node"))),
    ]
    if any("target" in row for row in rows):
        targets = {(row.get("metric", "accuracy"), row.get("target")) for row in rows if "target" in row}
        if len(targets) == 1:
            metric, t = targets.pop()
            at = f"{100 * t:.1f}%" if metric == "accuracy" else f"RMSE {t:.4g}"
        else:
            at = "target"
        cols += [(f"rounds to {at}", lambda r: None if r.get("rounds_to_target") is None
                  else str(r["rounds_to_target"])),
                 (f"MB to {at}", lambda r: _mb(r.get("bytes_to_target")))]
        if any("network_seconds_to_target" in row for row in rows):
            cols.append((f"net s to {at}", lambda r: _secs(r.get("network_seconds_to_target"))))
    if any("network_seconds" in row for row in rows):
        cols.append(("net s total", lambda r: _secs(r.get("network_seconds"))))
    return cols


def _cells(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    cols = _columns(rows)
    header = [h for h, _ in cols]
    body = [[(lambda v: "-" if v is None else str(v))(get(row)) for _, get in cols] for row in rows]
    return header, body


def format_table(rows: list[dict[str, Any]]) -> str:
    """The rows of :func:`compare_table` as an aligned plain-text table (accuracy in %, bytes in MB per
    node, modelled network time in s; "-" where a value is missing or a target was not reached)."""
    if not rows:
        return "(no runs)"
    header, body = _cells(rows)
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]

    def fmt(line: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths)))

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([fmt(header), rule, *(fmt(line) for line in body)])


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The rows of :func:`compare_table` as a GitHub-flavoured markdown table."""
    if not rows:
        return ""
    header, body = _cells(rows)
    esc = (lambda s: s.replace("|", "\\|"))
    align = [":---" if i == 0 else "---:" for i in range(len(header))]
    lines = [header, align, *body]
    return "\n".join("| " + " | ".join(esc(c) for c in line) + " |" for line in lines)


# --------------------------------------------------------------------------------------------- figures

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*")
LINESTYLES = ("-", "--", "-.", ":")


def plot_run(run_dir: Run | str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """Figures for one run, written as PNG and SVG into ``out_dir`` (default ``run_dir/plots``).
    Returns the files written."""
    run = run_dir if isinstance(run_dir, Run) else read_run(run_dir)
    out = Path(out_dir) if out_dir is not None else run.dir / "plots"
    return _plot([run], out, title=run.label)


def plot_runs(run_dirs: Iterable[Run | str | Path], out_dir: str | Path, *, labels: Sequence[str] | None = None,
              title: str | None = None) -> list[Path]:
    """All runs on one figure per quantity, written as PNG and SVG into ``out_dir``. Runs of one algorithm
    are told apart by the config values that differ (or pass ``labels``). Returns the files written."""
    runs = _as_runs(run_dirs, labels)
    if not runs:
        raise JwinsError("plot_runs needs at least one run directory")
    metrics = {r.metric_name for r in runs}
    if len(metrics) > 1:
        raise JwinsError(f"cannot draw {' and '.join(sorted(metrics))} runs on one axis: "
                         + ", ".join(f"{r.dir} ({r.metric_name})" for r in runs))
    return _plot(runs, Path(out_dir), title=title)


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


def _plot(runs: list[Run], out: Path, *, title: str | None) -> list[Path]:
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

    def save(fig, ax, name: str) -> None:
        handles, labels = ax.get_legend_handles_labels()
        if len(handles) == 1 and len(runs) == 1:
            pass  # a single run is named in the title already
        elif len(handles) <= 3 and max(len(lab) for lab in labels) <= 30:
            ax.legend(loc="best", fontsize=9, framealpha=0.85)
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

    def draw(ax, runs_: list[Run], x_of, band: bool = True) -> None:
        for r in runs_:
            ev = [m for m in r.evaluated if _finite(x_of(m))]
            if not ev:
                continue
            color, marker, ls = style(r)
            x = [x_of(m) for m in ev]
            y = [m["test_accuracy"] * scale for m in ev]
            single = len(runs_) == 1
            ax.plot(x, y, color=color, marker=marker, ls=ls, lw=1.6, ms=4.5, markevery=markevery(len(x)),
                    label="mean over nodes" if single else r.label)
            lo = [m.get("test_accuracy_min") for m in ev]
            hi = [m.get("test_accuracy_max") for m in ev]
            if not (band and all(_finite(v) for v in lo + hi) and lo != hi):
                continue
            lo, hi = [v * scale for v in lo], [v * scale for v in hi]
            if len(x) == 1:  # a band needs two points: one evaluation gets an error bar
                ax.errorbar(x, y, yerr=[[max(0.0, y[0] - lo[0])], [max(0.0, hi[0] - y[0])]], color=color,
                            capsize=4, lw=1.2, ls="none", label="min–max over nodes" if single else None)
            else:
                ax.fill_between(x, lo, hi, color=color, alpha=0.15 if len(runs_) <= 3 else 0.1, lw=0,
                                label="min–max over nodes" if single else None)
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
    save(fig, ax, "accuracy_rounds")

    # accuracy vs bytes
    fig, ax = new(f"Test {'accuracy' if acc else 'RMSE'} per data sent")
    draw(ax, runs, lambda m: m["cumulative_bytes"] / MB if _finite(m.get("cumulative_bytes")) else None)
    log_x_if_spread(ax, [r.metrics[-1].get("cumulative_bytes") for r in runs])
    ax.set_xlabel("data sent per node (MB, cumulative" + (", log scale)" if ax.get_xscale() == "log" else ")"))
    ax.set_ylabel(y_label)
    save(fig, ax, "accuracy_bytes")

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
    with_alpha = [r for r in runs if any(_finite(m.get("alpha")) for m in r.metrics)]
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
        fig, ax = new(f"Test {'accuracy' if acc else 'RMSE'} per modelled network time")
        draw(ax, with_net, lambda m: m["network_seconds"] / div if _finite(m.get("network_seconds")) else None)
        log_x_if_spread(ax, [max((m["network_seconds"] for m in r.metrics if _finite(m.get("network_seconds"))),
                                 default=None) for r in with_net])
        ax.set_xlabel(f"modelled communication time ({unit}, cumulative"
                      + (", log scale)" if ax.get_xscale() == "log" else ")"))
        ax.set_ylabel(y_label)
        save(fig, ax, "accuracy_time")
    return written
