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

from . import stats
from .errors import JwinsError
from .rundir import Run, finite as _finite, read as read_run

__all__ = ["Run", "as_runs", "compare_table", "format_table", "markdown_table", "read_run", "seed_table",
           "target_reached"]

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
        if isinstance(v, dict) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = json.dumps(v) if isinstance(v, (list, dict)) else v
    return out


def _read_by(config: dict[str, Any]) -> set[str]:
    """The dotted keys of a saved config that change its run's numbers: not where it ran
    (:data:`jwins.config.NO_NUMBERS`), and of the sharing, topology and model sections only the keys the chosen
    part reads (its registration's ``keys``, its name and its ``options``)."""
    from . import registry
    from .config import NO_NUMBERS

    keys = set()
    for key in _flatten(config):
        section, _, name = key.partition(".")
        if section in NO_NUMBERS or key == "out":
            continue
        names = {"sharing": (registry.SHARING, "algorithm"), "topology": (registry.TOPOLOGIES, "kind"),
                 "model": (registry.MODELS, "name")}.get(section)
        if names is not None and name and name != names[1] and not name.startswith("options"):
            chosen = (config.get(section) or {}).get(names[1], "")
            canonical = names[0].canonical(str(chosen)) if chosen else None
            if canonical is None or name not in names[0].entry(canonical).info.get("keys", ()):
                continue  # a key the chosen part ignores (alphas for full sharing)
        keys.add(key)
    return keys


def _setting(key: str, value: Any) -> str:
    name = key.rsplit(".", 1)[-1]
    text = str(value)
    if isinstance(value, str) and ("/" in value or len(value) > 24):
        text = value.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1][:24]
    return f"{name}={text}"


def _distinct_labels(runs: list[Run]) -> list[Run]:
    """Runs sharing a label get the shortest difference that tells them apart appended, e.g. ``choco
    (gamma=0.2)``: the fewest settings that change numbers (read by their parts) whose values differ, the sharing
    section first; runs that differ in nothing else keep their directory's name."""
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(runs):
        groups.setdefault(r.label, []).append(i)
    out = list(runs)
    for label, idx in groups.items():
        if len(idx) < 2:
            continue
        flat = [_flatten(runs[i].config) for i in idx]
        relevant = set().union(*(_read_by(runs[i].config) for i in idx))
        candidates = [k for k in sorted(relevant) if len({repr(f.get(k)) for f in flat}) > 1]
        # most discriminating first, then the sharing section's keys, then by name
        candidates.sort(key=lambda k: (-len({repr(f.get(k)) for f in flat}), not k.startswith("sharing."), k))
        chosen: list[str] = []
        for key in candidates:
            if len({tuple(repr(f.get(k)) for k in chosen) for f in flat}) == len(flat):
                break
            chosen.append(key)
        for i, f in zip(idx, flat):
            extra = ", ".join(_setting(k, f.get(k)) for k in chosen) if chosen else runs[i].dir.name
            out[i] = runs[i].relabel(f"{label} ({extra})")
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


def _check_target(run: Run, target: float | None) -> None:
    if target is not None and run.metric_name == "accuracy" and not 0 <= target <= 1:
        raise JwinsError(f"target = {target} for an accuracy run ({run.dir}): accuracy targets are "
                         f"fractions, e.g. 0.9 for 90%")


def _run_row(r: Run, *, target: float | None, targets: Sequence[float], on: str) -> dict[str, Any]:
    """The numbers of one run (one seed)."""
    metric = r.metric_name
    evaluated = r.evaluated
    last = evaluated[-1] if evaluated else {}
    summary = r.summary or {}
    final = summary.get("final_accuracy") or {}
    final_mean = last.get("test_accuracy", final.get("mean"))
    final_min = last.get("test_accuracy_min", final.get("min"))
    final_max = last.get("test_accuracy_max", final.get("max"))
    validated = [m for m in r.metrics if _finite(m.get("val_accuracy"))]
    total = r.metrics[-1].get("cumulative_bytes")
    if not _finite(total):
        total = summary.get("bytes_sent_per_node") or _sum(r.metrics, "bytes_sent")
    row: dict[str, Any] = {
        "label": r.label, "algorithm": r.algorithm, "dataset": r.dataset, "nodes": r.nodes,
        "rounds": r.metrics[-1]["round"], "metric": metric,
        "final_mean": final_mean, "final_min": final_min, "final_max": final_max,
        "final_worst": final_max if metric == "rmse" else final_min,
        "val_final_mean": validated[-1]["val_accuracy"] if validated else None,
        "bytes_per_node": total,
        "bytes_indices_per_node": _part(r, "bytes_indices"),
        "bytes_values_per_node": _part(r, "bytes_values"),
        "bytes_header_per_node": _part(r, "bytes_header"),
        "seconds": summary.get("seconds", r.metrics[-1].get("seconds")),
    }
    key = "val_accuracy" if on == "validation" else "test_accuracy"
    if on == "validation" and not validated and (target is not None or targets):
        raise JwinsError(f"targets on the validation split, but {r.dir} has no validation metrics (set "
                         "data.validation, e.g. 0.1)")
    wanted = [(f"{t:g}", t) for t in targets] + ([("target", target)] if target is not None else [])
    for name, t in wanted:
        c = stats.crossing(r.metrics, t, key=key, higher_is_better=metric != "rmse")
        row[f"rounds_to_{name}"], row[f"bytes_to_{name}"] = c.round, c.bytes
        row[f"bound_to_{name}"], row[f"spread_to_{name}"] = c.bound, c.spread
        if c.network_seconds is not None:
            row[f"network_seconds_to_{name}"] = c.network_seconds
    if target is not None:
        row["target"] = target
    ns = [m["network_seconds"] for m in r.metrics if _finite(m.get("network_seconds"))]
    if ns:
        row["network_seconds"] = ns[-1]
    return row


def compare_table(runs: Sequence[Run | str | Path], *, target: float | None = None,
                  reference: str = "full", targets: Sequence[float] = (), on: str = "test") -> list[dict[str, Any]]:
    """One row (a dict) per run, in the given order: :func:`seed_table` with one seed per row.

    Keys: ``label``, ``algorithm``, ``dataset``, ``nodes``, ``rounds``, ``metric`` ("accuracy"/"rmse"),
    ``final_mean``, ``final_min``, ``final_max`` (over nodes, at the last evaluated round; fractions for
    accuracy), ``final_worst`` (the worst node: min accuracy, max RMSE), ``val_final_mean`` (on the validation
    split, when the run had one), ``bytes_per_node`` (total sent per node), ``bytes_relative`` (that divided by
    the reference run's, the run whose label or algorithm is ``reference`` on the same dataset and node count;
    None without one), ``reference``, ``bytes_indices_per_node``, ``bytes_values_per_node``,
    ``bytes_header_per_node``, ``seconds`` (wall). With ``target``: ``target``, ``rounds_to_target``,
    ``bytes_to_target`` (interpolated between evaluations, :func:`jwins.stats.crossing`) and
    ``bound_to_target`` (how it is known: interpolated, at or before the first evaluation, not reached: then
    the run's end). When any run has ``network_seconds``: ``network_seconds`` (modelled total) and
    ``network_seconds_to_target``. Each of ``targets`` adds ``rounds_to_<t>``, ``bytes_to_<t>``,
    ``bound_to_<t>`` (``t`` as ``%g`` formats it). ``on="validation"`` reads targets off the validation curve.

    ``target`` is in the metric's own units: an accuracy fraction (0.9, not 90) or an RMSE (lower is
    better for RMSE)."""
    runs = as_runs(runs)
    return seed_table({r.label: [r] for r in runs} if len({r.label for r in runs}) == len(runs) else
                      {f"{i}\0{r.label}": [r] for i, r in enumerate(runs)}, target=target, reference=reference,
                      targets=targets, on=on)


def _reference_label(labels: list[str], first: dict[str, Run], label: str, reference: str) -> str | None:
    """The label of the reference group for ``label``: the one labelled ``reference``, else the first whose
    algorithm is ``reference``, on the same dataset and node count."""
    run = first[label]
    same = [k for k in labels if first[k].dataset == run.dataset and first[k].nodes == run.nodes]
    for match in (lambda k: _shown(k) == reference, lambda k: first[k].algorithm == reference):
        for k in same:
            if match(k):
                return k
    return None


def _shown(label: str) -> str:
    return label.split("\0", 1)[-1]


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


SPARSE = 0.10  # a crossing whose bracketing evaluations differ by more bytes than this share of it is marked ~


def _pm(row: dict[str, Any], key: str, fmt) -> str | None:
    """A cell: the value, with `` ± half-width`` when the row is a mean over seeds; a target's cell is a bound
    (``> x (k/n)``: k of n seeds reached it, the others count at the bytes of their runs' end; ``<= x``:
    reached at the first evaluation) or, when the evaluations around the crossing lie far apart, ``~x``."""
    text = fmt(row.get(key))
    if text is None:
        return None
    bound = row.get(f"{key}_bound", "")
    if bound == "?":
        return "?"
    ci = row.get(f"{key}_ci")
    if ci is not None and not bound:
        text += f" ± {fmt(ci) if not key.startswith('rounds_to_') else _rounds(ci)}"
    if bound:
        text = f"{'≤' if bound == '<' else '>'} {text}"
    elif row.get(f"{key}_sparse"):
        text = "~" + text
    reached, seeds = row.get(f"{key}_reached"), row.get("seeds", 1)
    if reached is not None and reached < seeds and seeds > 1:
        text += f" ({reached}/{seeds})"
    return text


def _rounds(v: Any) -> str | None:
    return None if not _finite(v) else (f"{v:.0f}" if float(v).is_integer() else f"{v:.1f}")


def _target_keys(rows: list[dict[str, Any]]) -> list[str]:
    return sorted({k[len("bytes_to_"):] for row in rows for k in row
                   if k.startswith("bytes_to_") and k != "bytes_to_target"
                   and not k.endswith(("_ci", "_reached", "_bound", "_sparse", "_seeds"))}, key=float)


def _at(t: str, metric: str) -> str:
    return f"{100 * float(t):g}%" if metric == "accuracy" else f"RMSE {t}"


def _columns(rows: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    """(header, row -> text or None) for each column that applies to these rows."""
    metrics = {row.get("metric", "accuracy") for row in rows}
    unit = "acc %" if metrics == {"accuracy"} else "RMSE" if metrics == {"rmse"} else "acc % / RMSE"
    worst = "min acc %" if metrics == {"accuracy"} else "max RMSE" if metrics == {"rmse"} else "worst acc % / RMSE"
    refs = {row.get("reference_bytes", row.get("reference", "full")) for row in rows}
    ref = refs.pop() if len(refs) == 1 else "ref"
    cols: list[tuple[str, Any]] = [
        ("run", lambda r: r.get("label")),
        (f"final {unit}", lambda r: _pm(r, "final_mean", lambda v: _metric(v, r.get("metric", "accuracy")))),
        (worst, lambda r: _pm(r, "final_worst", lambda v: _metric(v, r.get("metric", "accuracy")))),
    ]
    if any(_finite(row.get("val_final_mean")) for row in rows):
        cols.append((f"val {unit}", lambda r: _pm(r, "val_final_mean",
                                                  lambda v: _metric(v, r.get("metric", "accuracy")))))
    cols += [
        ("MB/node", lambda r: _pm(r, "bytes_per_node", _mb)),
        (f"vs {ref} %", lambda r: _pm(r, "bytes_relative", lambda v: _pct(v, 1))),
        ("index MB", lambda r: _mb(r.get("bytes_indices_per_node"))),
        ("value MB", lambda r: _mb(r.get("bytes_values_per_node"))),
        ("header MB", lambda r: _mb(r.get("bytes_header_per_node"))),
    ]
    on = " (val)" if any(row.get("targets_on") == "validation" for row in rows) else ""
    if any("target" in row for row in rows):
        targets = {(row.get("metric", "accuracy"), row.get("target")) for row in rows if "target" in row}
        if len(targets) == 1:
            metric, t = targets.pop()
            at = f"{100 * t:.1f}%" if metric == "accuracy" else f"RMSE {t:.4g}"
        else:
            at = "target"
        cols += [(f"rounds to {at}{on}", lambda r: _pm(r, "rounds_to_target", _rounds)),
                 (f"MB to {at}{on}", lambda r: _pm(r, "bytes_to_target", _mb))]
        if any("network_seconds_to_target" in row for row in rows):
            cols.append((f"net s to {at}{on}", lambda r: _pm(r, "network_seconds_to_target", _secs)))
    metric = rows[0].get("metric", "accuracy")
    for t in _target_keys(rows):
        cols.append((f"MB to {_at(t, metric)}{on}", lambda r, t=t: _pm(r, f"bytes_to_{t}", _mb)))
    if any("network_seconds" in row for row in rows):
        cols.append(("net s total", lambda r: _pm(r, "network_seconds", _secs)))
    return cols


def _interval(iv: dict[str, Any] | None, fmt, *, sign: bool = False) -> str | None:
    """``mean [low, high]`` of a paired estimate (or its bound)."""
    if not iv or iv.get("mean") is None:
        return "?" if iv and iv.get("bound") == "?" else None
    f = (lambda v: ("+" if sign and v >= 0 else "") + fmt(v))
    if iv.get("bound"):
        return f"{'≤' if iv['bound'] == '<' else '>'} {f(iv['mean'])}"
    if iv.get("low") is None:
        return f(iv["mean"])
    return f"{f(iv['mean'])} [{f(iv['low'])}, {f(iv['high'])}]"


def _paired_columns(rows: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    metric = rows[0].get("metric", "accuracy")
    points = (lambda v: f"{100 * v:.2f}") if metric == "accuracy" else (lambda v: f"{v:.4f}")
    ratio = (lambda v: f"{v:.3f}x")
    cols: list[tuple[str, Any]] = [
        ("run", lambda r: r.get("label")),
        ("vs", lambda r: r.get("reference_label")),
        ("Δ final " + ("(points)" if metric == "accuracy" else "RMSE"),
         lambda r: _interval(r.get("diff_final"), points, sign=True)),
        ("MB ratio", lambda r: _interval(r.get("ratio_bytes"), ratio)),
    ]
    if any("ratio_bytes_to_target" in row for row in rows):
        cols.append(("MB to target ratio", lambda r: _interval(r.get("ratio_bytes_to_target"), ratio)))
    for t in _target_keys(rows):
        cols.append((f"MB to {_at(t, metric)} ratio", lambda r, t=t: _interval(r.get(f"ratio_bytes_to_{t}"), ratio)))
    if any("ratio_network_seconds_to_target" in row for row in rows):
        cols.append(("net s to target ratio",
                     lambda r: _interval(r.get("ratio_network_seconds_to_target"), ratio)))
    return cols


def _cells(rows: list[dict[str, Any]], columns) -> tuple[list[str], list[list[str]]]:
    cols = columns(rows)
    header = [h for h, _ in cols]
    body = [[(lambda v: "-" if v is None else str(v))(get(row)) for _, get in cols] for row in rows]
    return header, body


def _notes(rows: list[dict[str, Any]]) -> list[str]:
    notes = []
    seeds = {row.get("seeds", 1) for row in rows}
    if max(seeds) >= 2:
        n = "/".join(str(k) for k in sorted(seeds))
        notes.append(f"mean ± half-width of the 95% Student-t interval over {n} seeds")
    targets = [k for row in rows for k in row if k.startswith("bytes_to_") and not k.endswith(
        ("_ci", "_reached", "_bound", "_sparse", "_seeds"))]
    flags = {flag for row in rows for k in targets if k in row
             for flag in (row.get(f"{k}_bound") or "", "~" if row.get(f"{k}_sparse") else "")}
    if "~" in flags:
        notes.append(f"~: the evaluations around the crossing differ by more than {SPARSE:.0%} of its bytes "
                     "(interpolated between them); evaluate more often (eval.every, or eval.validation_every "
                     "with targets on validation) for a sharper figure")
    if ">" in flags:
        notes.append("> x (k/n): only k of n seeds reached the target; the others count at their run's end, so "
                     "the mean is a lower bound")
    if "<" in flags:
        notes.append("≤ x: a seed reached the target at its first evaluation, so the mean is an upper bound")
    return notes


def _paired_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [row for row in rows if row.get("diff_final") is not None or row.get("ratio_bytes") is not None]


def _text(header: list[str], body: list[list[str]]) -> list[str]:
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    left = 2 if header[1] == "vs" else 1  # the run's label (and its reference's) left-aligned, numbers right

    def fmt(line: list[str]) -> str:
        return "  ".join(c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths)))

    return [fmt(header), "  ".join("-" * w for w in widths), *(fmt(line) for line in body)]


def format_table(rows: list[dict[str, Any]]) -> str:
    """The rows of :func:`compare_table` or :func:`seed_table` as aligned plain-text tables: the levels
    (accuracy in %, bytes in MB per node, modelled network time in s; "-" where a value is missing), then,
    when the rows have a reference, the paired differences to it with their 95% intervals."""
    if not rows:
        return "(no runs)"
    lines = _text(*_cells(rows, _columns))
    paired = _paired_rows(rows)
    if paired and any(r.get("seeds", 1) > 1 for r in paired):
        lines += ["", "paired by seed (the mean of per-seed differences, or the geometric mean of per-seed ratios, "
                      "and its 95% interval):", *_text(*_cells(paired, _paired_columns))]
    return "\n".join([*lines, *_notes(rows)])


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The rows of :func:`compare_table` or :func:`seed_table` as GitHub-flavoured markdown tables (the levels,
    then the paired differences)."""
    if not rows:
        return ""

    def md(header, body) -> str:
        esc = (lambda s: s.replace("|", "\\|"))
        align = [":---" if i == 0 or (i == 1 and header[1] == "vs") else "---:" for i in range(len(header))]
        return "\n".join("| " + " | ".join(esc(c) for c in line) + " |" for line in [header, align, *body])

    parts = [md(*_cells(rows, _columns))]
    paired = _paired_rows(rows)
    if paired and any(r.get("seeds", 1) > 1 for r in paired):
        parts.append("Paired by seed (mean of per-seed differences, or geometric mean of per-seed ratios, "
                     "[95% interval]):\n\n" + md(*_cells(paired, _paired_columns)))
    notes = _notes(rows)
    return "\n\n".join(parts + (["; ".join(notes)] if notes else []))


def _sweep_cells(log: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    metric = log[0].get("metric", "accuracy") if log else "accuracy"
    unit = "acc %" if metric == "accuracy" else "RMSE"
    swept = [e for e in log if sum(x["arm"] == e["arm"] for x in log) > 1]
    header = ["setting", f"val {unit}", f"test {unit}", "selected"]
    body = [[e["arm"] + (f" ({', '.join(o.split('.', 1)[-1] for o in e['settings'])})" if e["settings"] else ""),
             _metric(e.get("validation_mean"), metric) or "-", _metric(e.get("test_mean"), metric) or "-",
             "yes" if e.get("selected") else ""] for e in swept]
    return header, body


def _sweep_notes(log: list[dict[str, Any]], edges: dict[str, list[str]]) -> list[str]:
    seeds = max((len(e.get("seeds", [])) for e in log), default=1)
    notes = [f"each sweep is decided by the mean final validation metric{f' over {seeds} seeds' if seeds > 1 else ''}"
             "; the test metric is shown, never used"]
    for arm, lines in edges.items():
        notes += [f"[edge] {arm}: {line}" for line in lines]
    return notes


def format_sweep(log: list[dict[str, Any]], edges: dict[str, list[str]] | None = None) -> str:
    """Every setting of the arms that swept one, with its mean final validation and test metrics and the
    one selected (on validation), then a line for each winner still at an edge of its grid."""
    header, body = _sweep_cells(log)
    if not body:
        return ""
    return "\n".join([*_text(header, body), *_sweep_notes(log, edges or {})])


def markdown_sweep(log: list[dict[str, Any]], edges: dict[str, list[str]] | None = None) -> str:
    header, body = _sweep_cells(log)
    if not body:
        return ""
    align = [":---", "---:", "---:", ":---"]
    table = "\n".join("| " + " | ".join(c.replace("|", "\\|") for c in line) + " |"
                      for line in [header, align, *body])
    return table + "\n\n" + "; ".join(_sweep_notes(log, edges or {}))


# --------------------------------------------------------------------------------------------- seeds

LEVELS = ("final_mean", "final_min", "final_max", "final_worst", "val_final_mean", "bytes_per_node",
          "bytes_relative", "bytes_indices_per_node", "bytes_values_per_node", "bytes_header_per_node", "seconds",
          "network_seconds")


def t_interval(values: Sequence[float], confidence: float = 0.95) -> float | None:
    """Half-width of the Student-t confidence interval of the mean of ``values`` (None for fewer than 2).

    >>> round(t_interval([1.0, 2.0, 3.0]), 4)  # t(0.975, 2) * 1 / sqrt(3)
    2.4841
    """
    return stats.t_interval(values, confidence)


def _as_dict(iv: stats.Interval) -> dict[str, Any]:
    return {"mean": iv.mean, "low": iv.low, "high": iv.high, "n": iv.n, "bound": iv.bound}


def seed_table(groups: dict[str, Sequence[Run | str | Path]], *, target: float | None = None,
               reference: str = "full", targets: Sequence[float] = (), on: str = "test") -> list[dict[str, Any]]:
    """One row per group of runs that differ only in their seed (label -> runs, every group with its seeds in
    the same order).

    Levels: each column of :func:`compare_table` is the mean over seeds, with ``<key>_ci`` (the half-width of
    the 95% Student-t interval) for several seeds, and ``<key>_seeds`` (the per-seed values it came from).
    Bytes relative to the reference are taken per seed (against the reference run of the same seed). Rounds
    and bytes to a target are interpolated per seed (:func:`jwins.stats.crossing`); a seed that never reaches it
    counts at its run's end and makes the mean a lower bound (``<key>_bound`` ``">"``, ``<key>_reached`` of
    ``seeds``), a seed that reached it at its first evaluation an upper bound (``"<"``); ``<key>_sparse``
    marks a crossing whose bracketing evaluations differ by more than :data:`SPARSE` of its bytes.

    Paired to the reference group (``reference_label``; none for the reference itself): ``diff_final`` (the
    mean of per-seed differences of the final metric, with its paired t interval: ``mean``, ``low``, ``high``),
    ``ratio_bytes`` and ``ratio_bytes_to_<t>`` (the geometric mean of per-seed ratios of bytes, and of bytes to
    each target, with the interval on the log scale, or a bound when seeds are censored), and with a network
    model ``ratio_network_seconds_to_<t>`` (the same for the modelled time to each target)."""
    labels = list(groups)
    runs = {label: as_runs(groups[label]) for label in labels}
    counts = {len(r) for r in runs.values()}
    if len(counts) != 1:
        raise JwinsError(f"every group needs the same seeds; got {sorted(counts)} runs per group")
    n = counts.pop()
    for group in runs.values():
        for r in group:
            _check_target(r, target)
    per_seed = {label: [_run_row(r.relabel(_shown(label)), target=target, targets=targets, on=on)
                        for r in runs[label]] for label in labels}
    first = {label: runs[label][0] for label in labels}
    names = [*(f"{t:g}" for t in targets), *(["target"] if target is not None else [])]
    rows = []
    for label in labels:
        seeds = per_seed[label]
        ref = _reference_label(labels, first, label, reference)
        row: dict[str, Any] = {**seeds[0], "seeds": n, "reference": reference,
                               "reference_label": _shown(ref) if ref else None, "targets_on": on}
        if ref is not None:
            for s, rs in zip(seeds, per_seed[ref]):
                s["bytes_relative"] = (s["bytes_per_node"] / rs["bytes_per_node"]
                                       if _finite(s["bytes_per_node"]) and _finite(rs["bytes_per_node"])
                                       and rs["bytes_per_node"] > 0 else None)
        else:
            for s in seeds:
                s["bytes_relative"] = None
        for key in LEVELS:
            values = [s.get(key) for s in seeds]
            known = [v for v in values if _finite(v)]
            if not any(key in s for s in seeds):
                continue
            lv = stats.level(known)
            row[key] = lv.mean
            row[f"{key}_seeds"] = values
            if n > 1:
                row[f"{key}_ci"] = lv.half_width
        for name in names:
            bounds = [s[f"bound_to_{name}"] for s in seeds]
            for kind in ("rounds", "bytes", "network_seconds"):
                key = f"{kind}_to_{name}"
                if not all(_finite(s.get(key)) for s in seeds):
                    continue
                values = [s[key] for s in seeds]
                iv = stats.censored_level(values, bounds)
                row[key], row[f"{key}_seeds"] = iv.mean, values
                row[f"{key}_bound"] = iv.bound
                row[f"{key}_reached"] = sum(b != stats.CENSORED for b in bounds)
                row[f"{key}_sparse"] = any(s[f"spread_to_{name}"] > SPARSE for s in seeds)
                if n > 1 and iv.low is not None:
                    row[f"{key}_ci"] = iv.mean - iv.low
            row[f"bound_to_{name}_seeds"] = bounds
        if ref is not None and ref != label:
            ref_seeds = per_seed[ref]
            finals = [s["final_mean"] for s in seeds]
            ref_finals = [s["final_mean"] for s in ref_seeds]
            if all(_finite(v) for v in finals + ref_finals):
                row["diff_final"] = _as_dict(stats.paired_difference(finals, ref_finals))
            sent = [s["bytes_per_node"] for s in seeds]
            ref_sent = [s["bytes_per_node"] for s in ref_seeds]
            if all(_finite(v) for v in sent + ref_sent):
                row["ratio_bytes"] = _as_dict(stats.paired_ratio(sent, ref_sent))
            for name in names:
                for kind in ("bytes", "network_seconds"):
                    key = f"{kind}_to_{name}"
                    if not all(_finite(s.get(key)) for s in seeds + ref_seeds):
                        continue
                    row[f"ratio_{key}"] = _as_dict(stats.paired_ratio(
                        [s[key] for s in seeds], [s[key] for s in ref_seeds],
                        values_censored=[s[f"bound_to_{name}"] == stats.CENSORED for s in seeds],
                        reference_censored=[s[f"bound_to_{name}"] == stats.CENSORED for s in ref_seeds]))
        for key in [k for k in row if k.startswith(("bound_to_", "spread_to_")) and not k.endswith("_seeds")]:
            del row[key]
        rows.append(row)
    return rows
