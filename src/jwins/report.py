"""Comparison tables of run directories (read through :mod:`jwins.rundir`).

>>> runs = [read_run(d) for d in ["runs/full", "runs/jwins"]]            # doctest: +SKIP
>>> print(format_table(compare_table(runs, target=0.9)))                # doctest: +SKIP

Accuracies are fractions (0..1) everywhere in the data and in :func:`compare_table`'s rows; tables show them in
percent. Regression runs (``test_metric_name == "rmse"``) are shown as RMSE, unscaled.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Sequence

from .errors import JwinsError
from .rundir import Run, finite as _finite, read as read_run

__all__ = ["Run", "as_runs", "compare_table", "format_table", "markdown_table", "read_run", "target_reached"]

MB = 1e6


def as_runs(runs: Iterable[Run | str | Path], labels: Sequence[str] | None = None) -> list[Run]:
    runs = [r if isinstance(r, Run) else read_run(r) for r in runs]
    if labels is not None:
        labels = list(labels)
        if len(labels) != len(runs):
            raise JwinsError(f"{len(labels)} labels for {len(runs)} runs; give one label per run")
        return [r.relabel(str(lab)) for r, lab in zip(runs, labels)]
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
            out[i] = r.relabel(f"{label} ({extra})")
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
                  reference: str = "full", targets: Sequence[float] = ()) -> list[dict[str, Any]]:
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

    Each of ``targets`` adds ``rounds_to_<t>`` and ``bytes_to_<t>`` (``t`` as ``%g`` formats it).

    ``target`` is in the metric's own units: an accuracy fraction (0.9, not 90) or an RMSE (lower is
    better for RMSE)."""
    runs = as_runs(runs)
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
        for t in targets:
            hit = target_reached(r.metrics, t, higher_is_better=metric != "rmse")
            row[f"rounds_to_{t:g}"], row[f"bytes_to_{t:g}"] = hit and hit["round"], hit and hit["cumulative_bytes"]
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


def _pm(row: dict[str, Any], key: str, fmt) -> str | None:
    """A cell: the value, with `` ± half-width`` when the row is a mean over seeds, and ``(k/n)`` when only k of
    n seeds reached a target."""
    text = fmt(row.get(key))
    if text is None:
        return None
    ci = row.get(f"{key}_ci")
    if ci is not None:
        text += f" ± {fmt(ci) if key not in ('rounds_to_target',) else f'{ci:.0f}'}"
    reached, seeds = row.get(f"{key}_reached"), row.get("seeds", 1)
    if reached is not None and reached < seeds:
        text += f" ({reached}/{seeds})"
    return text


def _rounds(v: Any) -> str | None:
    return None if not _finite(v) else (f"{v:.0f}" if float(v).is_integer() else f"{v:.1f}")


def _columns(rows: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    """(header, row -> text or None) for each column that applies to these rows."""
    metrics = {row.get("metric", "accuracy") for row in rows}
    unit = "acc %" if metrics == {"accuracy"} else "RMSE" if metrics == {"rmse"} else "acc % / RMSE"
    worst = "min acc %" if metrics == {"accuracy"} else "max RMSE" if metrics == {"rmse"} else "worst acc % / RMSE"
    refs = {row.get("reference", "full") for row in rows}
    ref = refs.pop() if len(refs) == 1 else "ref"
    cols: list[tuple[str, Any]] = [
        ("run", lambda r: r.get("label")),
        (f"final {unit}", lambda r: _pm(r, "final_mean", lambda v: _metric(v, r.get("metric", "accuracy")))),
        (worst, lambda r: _pm(r, "final_worst", lambda v: _metric(v, r.get("metric", "accuracy")))),
        ("MB/node", lambda r: _pm(r, "bytes_per_node", _mb)),
        (f"vs {ref} %", lambda r: _pm(r, "bytes_relative", lambda v: _pct(v, 1))),
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
        cols += [(f"rounds to {at}", lambda r: _pm(r, "rounds_to_target", _rounds)),
                 (f"MB to {at}", lambda r: _pm(r, "bytes_to_target", _mb))]
        if any("network_seconds_to_target" in row for row in rows):
            cols.append((f"net s to {at}", lambda r: _secs(r.get("network_seconds_to_target"))))
    extra = sorted({k[len("bytes_to_"):] for row in rows for k in row
                    if k.startswith("bytes_to_") and k != "bytes_to_target" and not k.endswith(("_ci", "_reached"))},
                   key=float)
    for t in extra:
        at = f"{100 * float(t):g}%" if rows[0].get("metric", "accuracy") == "accuracy" else f"RMSE {t}"
        cols.append((f"MB to {at}", lambda r, t=t: _pm(r, f"bytes_to_{t}", _mb)))
    if any("network_seconds" in row for row in rows):
        cols.append(("net s total", lambda r: _secs(r.get("network_seconds"))))
    return cols


def _cells(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    cols = _columns(rows)
    header = [h for h, _ in cols]
    body = [[(lambda v: "-" if v is None else str(v))(get(row)) for _, get in cols] for row in rows]
    return header, body


def _footnote(rows: list[dict[str, Any]]) -> str | None:
    seeds = {row.get("seeds", 1) for row in rows}
    if max(seeds) < 2:
        return None
    n = "/".join(str(k) for k in sorted(seeds))
    return (f"mean ± half-width of the 95% Student-t interval over {n} seeds; (k/n): only k of n seeds reached "
            "the target, the mean is over those")


def format_table(rows: list[dict[str, Any]]) -> str:
    """The rows of :func:`compare_table` or :func:`seed_table` as an aligned plain-text table (accuracy in %,
    bytes in MB per node, modelled network time in s; "-" where a value is missing or a target was not
    reached)."""
    if not rows:
        return "(no runs)"
    header, body = _cells(rows)
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]

    def fmt(line: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths)))

    rule = "  ".join("-" * w for w in widths)
    note = _footnote(rows)
    return "\n".join([fmt(header), rule, *(fmt(line) for line in body), *([note] if note else [])])


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The rows of :func:`compare_table` or :func:`seed_table` as a GitHub-flavoured markdown table."""
    if not rows:
        return ""
    header, body = _cells(rows)
    esc = (lambda s: s.replace("|", "\\|"))
    align = [":---" if i == 0 else "---:" for i in range(len(header))]
    lines = [header, align, *body]
    table = "\n".join("| " + " | ".join(esc(c) for c in line) + " |" for line in lines)
    note = _footnote(rows)
    return table + (f"\n\n{note}" if note else "")


# --------------------------------------------------------------------------------------------- seeds

MEANS = ("final_mean", "final_min", "final_max", "final_worst", "bytes_per_node", "bytes_relative",
         "bytes_indices_per_node", "bytes_values_per_node", "bytes_header_per_node", "seconds", "rounds_to_target",
         "bytes_to_target", "network_seconds", "network_seconds_to_target")


def t_interval(values: Sequence[float], confidence: float = 0.95) -> float | None:
    """Half-width of the Student-t confidence interval of the mean of ``values`` (None for fewer than 2).

    >>> round(t_interval([1.0, 2.0, 3.0]), 4)  # t(0.975, 2) * 1 / sqrt(3)
    2.4841
    """
    n = len(values)
    if n < 2:
        return None
    from scipy.stats import t

    mean = sum(values) / n
    sd = (sum((v - mean) ** 2 for v in values) / (n - 1)) ** 0.5
    return float(t.ppf(0.5 + confidence / 2, n - 1) * sd / n ** 0.5)


def seed_table(groups: dict[str, Sequence[Run | str | Path]], *, target: float | None = None,
               reference: str = "full", targets: Sequence[float] = ()) -> list[dict[str, Any]]:
    """One row per group of runs that differ only in their seed (label -> runs, every group with its seeds in
    the same order): the columns of :func:`compare_table`, each the mean over seeds, with ``<key>_ci`` (the
    half-width of the 95% Student-t interval) when there are several seeds. Bytes relative to the reference
    are taken per seed (against the reference run of the same seed), then averaged. For rounds and bytes to
    the target, the mean is over the seeds that reached it (``<key>_reached`` of ``seeds``)."""
    labels = list(groups)
    runs = {label: as_runs(groups[label]) for label in labels}
    counts = {len(r) for r in runs.values()}
    if len(counts) != 1:
        raise JwinsError(f"every group needs the same seeds; got {sorted(counts)} runs per group")
    n = counts.pop()
    per_seed = [compare_table([runs[label][i].relabel(label) for label in labels], target=target,
                              reference=reference, targets=targets) for i in range(n)]
    to_targets = [f"{kind}_to_{t:g}" for t in targets for kind in ("rounds", "bytes")]
    rows = []
    for j in range(len(labels)):
        seeds = [per_seed[i][j] for i in range(n)]
        row = {**seeds[0], "seeds": n}
        for key in (*MEANS, *to_targets):
            if not any(key in r for r in seeds):
                continue
            known = [r[key] for r in seeds if _finite(r.get(key))]
            row[key] = sum(known) / len(known) if known else None
            if n > 1:
                row[f"{key}_ci"] = t_interval(known)
            if "_to_" in key:
                row[f"{key}_reached"] = len(known)
        rows.append(row)
    return rows
