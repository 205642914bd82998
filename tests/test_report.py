"""jwins.rundir (reading run directories back), jwins.report (tables) and jwins.plots (figures), on small
hand-made runs."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from jwins import report
from jwins.errors import JwinsError
from jwins.plots import plot_run, plot_runs
from jwins.report import Run, compare_table, format_table, markdown_table, read_run, target_reached

ALL_FIGURES = ["accuracy_rounds", "accuracy_bytes", "loss", "alpha", "accuracy_time"]


def write_run(root: Path, name: str, *, algorithm: str, per_round: float, acc: dict[int, float],
              rounds: int = 4, alpha: list[float] | None = None, network: bool = False, metric: str = "accuracy",
              dataset: str = "digits", nodes: int = 4, summary: bool = True, net_per_round: float = 1.0,
              **sharing) -> Path:
    """A run directory as `jwins run` writes it: ``per_round`` bytes per node each round (a quarter of
    them index bytes, 100 header bytes), ``acc`` the mean test metric at the evaluated rounds (min/max
    0.05 either side), ``network_seconds`` = ``net_per_round`` s per round when ``network``."""
    d = root / name
    d.mkdir(parents=True)
    config = {"seed": 1, "nodes": nodes, "rounds": rounds, "out": str(d), "data": {"name": dataset},
              "sharing": {"algorithm": algorithm, "alpha": 0.1, "gamma": 0.5, **sharing},
              "network": {"bandwidth_mbps": 10.0 if network else 0.0, "latency_ms": 0.0}}
    (d / "config.json").write_text(json.dumps(config, indent=2))
    lines, cumulative = [], 0.0
    for r in range(1, rounds + 1):
        cumulative += per_round
        rec = {"round": r, "train_loss": 2.0 / r, "bytes_sent": per_round, "bytes_header": 100.0,
               "bytes_indices": (per_round - 100) / 4, "bytes_values": 3 * (per_round - 100) / 4,
               "cumulative_bytes": cumulative, "seconds": 0.5 * r, "round_seconds": 0.5}
        if alpha is not None:
            rec["alpha"] = alpha[r - 1]
        if network:
            rec["network_seconds"] = net_per_round * r
        if r in acc:
            rec.update(test_accuracy=acc[r], test_accuracy_min=acc[r] - 0.05, test_accuracy_max=acc[r] + 0.05,
                       test_loss=1.0 / r, test_metric_name=metric)
        lines.append(json.dumps(rec))
    (d / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    if summary:
        last = acc[max(acc)]
        (d / "summary.json").write_text(json.dumps({
            "algorithm": algorithm, "dataset": dataset, "nodes": nodes, "rounds": rounds,
            "final_accuracy": {"mean": last, "min": last - 0.05, "max": last + 0.05},
            "test_metric_name": metric, "bytes_sent_per_node": cumulative,
            "bytes_indices_per_node": rounds * (per_round - 100) / 4,
            "bytes_values_per_node": rounds * 3 * (per_round - 100) / 4, "bytes_header_per_node": rounds * 100.0,
            "seconds": 0.5 * rounds, "seconds_per_round": 0.5, "peak_rss_mb": 100.0}))
    return d


@pytest.fixture
def three_runs(tmp_path: Path) -> list[Path]:
    """full: 1 MB/round, reaches 70% at round 4. jwins: 0.25 MB/round, reaches exactly 70% at round 2.
    topk: 0.1 MB/round, never reaches 70%."""
    return [
        write_run(tmp_path, "full", algorithm="full", per_round=1e6, acc={2: 0.5, 4: 0.8}, network=True,
                  alpha=[1.0] * 4),
        write_run(tmp_path, "jwins", algorithm="jwins", per_round=2.5e5, acc={2: 0.7, 4: 0.75}, network=True,
                  alpha=[0.1, 0.4, 0.1, 0.4]),
        write_run(tmp_path, "topk", algorithm="topk", per_round=1e5, acc={2: 0.3, 4: 0.5}, network=True,
                  alpha=[0.1] * 4),
    ]


# ------------------------------------------------------------------------------------------- read_run

def test_read_run_reads_the_three_files(three_runs):
    run = read_run(three_runs[1])
    assert isinstance(run, Run)
    assert run.dir == three_runs[1] and run.label == "jwins" and run.algorithm == "jwins"
    assert run.dataset == "digits" and run.nodes == 4 and run.metric_name == "accuracy"
    assert [m["round"] for m in run.metrics] == [1, 2, 3, 4]
    assert [m["round"] for m in run.evaluated] == [2, 4]
    assert run.summary["bytes_sent_per_node"] == 1e6
    assert read_run(three_runs[1], label="jwins (alphas=2)").label == "jwins (alphas=2)"


def test_read_run_without_summary_is_a_run_in_progress(tmp_path):
    d = write_run(tmp_path, "r", algorithm="choco", per_round=1000, acc={4: 0.5}, summary=False)
    run = read_run(d)
    assert run.summary is None and run.label == "choco"
    row = compare_table([run])[0]
    assert row["bytes_per_node"] == 4000 and row["final_mean"] == 0.5


def test_read_run_missing_directory(tmp_path):
    with pytest.raises(JwinsError, match="does not exist"):
        read_run(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(JwinsError, match="not a run directory"):
        read_run(tmp_path / "file")


def test_read_run_missing_files(tmp_path):
    d = write_run(tmp_path, "r", algorithm="full", per_round=1000, acc={4: 0.5})
    (d / "metrics.jsonl").unlink()
    with pytest.raises(JwinsError, match=r"metrics\.jsonl is missing"):
        read_run(d)
    (d / "metrics.jsonl").write_text("\n")
    with pytest.raises(JwinsError, match=r"metrics\.jsonl is empty"):
        read_run(d)
    (d / "config.json").unlink()
    with pytest.raises(JwinsError, match=r"config\.json is missing"):
        read_run(d)


def test_read_run_corrupt_line_names_file_and_line(tmp_path):
    d = write_run(tmp_path, "r", algorithm="full", per_round=1000, acc={4: 0.5})
    lines = (d / "metrics.jsonl").read_text().splitlines()
    lines[2] = lines[2][:25]  # truncated mid-record
    (d / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(JwinsError, match=r"metrics\.jsonl line 3 is not valid JSON") as e:
        read_run(d)
    assert str(d / "metrics.jsonl") in str(e.value)
    lines[2] = "[1, 2]"
    (d / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(JwinsError, match="line 3 is a JSON list, not an object"):
        read_run(d)
    lines[2] = '{"train_loss": 1.0}'
    (d / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(JwinsError, match="line 3 has no numeric 'round'"):
        read_run(d)


def test_read_run_corrupt_summary(tmp_path):
    d = write_run(tmp_path, "r", algorithm="full", per_round=1000, acc={4: 0.5})
    (d / "summary.json").write_text("{not json")
    with pytest.raises(JwinsError, match=r"summary\.json is not valid JSON"):
        read_run(d)


# ------------------------------------------------------------------------------------------- target_reached

def test_target_reached_first_evaluated_round():
    metrics = [
        {"round": 1, "cumulative_bytes": 10.0, "seconds": 1.0, "test_accuracy": 0.2},
        {"round": 2, "cumulative_bytes": 20.0, "seconds": 2.0},                        # not evaluated
        {"round": 3, "cumulative_bytes": 30.0, "seconds": 3.0, "test_accuracy": float("nan")},
        {"round": 4, "cumulative_bytes": 40.0, "seconds": 4.0, "test_accuracy": 0.6},
        {"round": 5, "cumulative_bytes": 50.0, "seconds": 5.0, "test_accuracy": 0.9},
    ]
    assert target_reached(metrics, 0.6) == {"round": 4, "cumulative_bytes": 40.0, "seconds": 4.0}  # >= counts
    assert target_reached(metrics, 0.61)["round"] == 5
    assert target_reached(metrics, 0.1)["round"] == 1
    assert target_reached(metrics, 0.95) is None
    assert target_reached([], 0.5) is None
    # lower is better (RMSE): the first round at or below the target
    rmse = [dict(m, rmse=v) for m, v in zip(metrics, [3.0, None, 2.0, 1.5, 1.0])]
    assert target_reached(rmse, 1.6, key="rmse", higher_is_better=False)["round"] == 4
    assert target_reached(rmse, 0.5, key="rmse", higher_is_better=False) is None


def test_target_reached_reports_network_time():
    metrics = [{"round": 1, "cumulative_bytes": 5.0, "seconds": 0.1, "network_seconds": 7.5, "test_accuracy": 1.0}]
    assert target_reached(metrics, 0.5) == {"round": 1, "cumulative_bytes": 5.0, "seconds": 0.1,
                                            "network_seconds": 7.5}


# ------------------------------------------------------------------------------------------- compare_table

def test_compare_table_numbers(three_runs):
    rows = compare_table([read_run(d) for d in three_runs], target=0.7)
    full, jwins, topk = rows
    assert [r["label"] for r in rows] == ["full", "jwins", "topk"]
    assert full["final_mean"] == 0.8 and full["final_min"] == pytest.approx(0.75)
    assert jwins["final_mean"] == 0.75 and jwins["final_worst"] == pytest.approx(0.70)
    assert full["bytes_per_node"] == 4e6 and jwins["bytes_per_node"] == 1e6 and topk["bytes_per_node"] == 4e5
    assert full["bytes_relative"] == 1.0
    assert jwins["bytes_relative"] == pytest.approx(0.25)
    assert topk["bytes_relative"] == pytest.approx(0.10)
    assert jwins["bytes_indices_per_node"] == pytest.approx(4 * (2.5e5 - 100) / 4)
    assert jwins["bytes_values_per_node"] == pytest.approx(4 * 3 * (2.5e5 - 100) / 4)
    assert jwins["bytes_header_per_node"] == 400.0
    # to target 70%, interpolated between evaluations: full is at 50% after round 2 and 80% after round 4, so
    # it crosses 70% two thirds of the way, at round 10/3 (10/3 MB, 10/3 modelled seconds), with the bytes of
    # its bracketing evaluations 2 and 4 MB apart (0.6 of the figure: sparse); jwins is at 70% at its first
    # evaluation (round 2): an upper bound; topk never gets there: censored at its end (0.4 MB, a lower bound)
    assert full["rounds_to_target"] == pytest.approx(10 / 3) and full["bytes_to_target"] == pytest.approx(1e7 / 3)
    assert full["network_seconds_to_target"] == pytest.approx(10 / 3) and full["bytes_to_target_bound"] == ""
    assert full["bytes_to_target_sparse"] is True
    assert (jwins["rounds_to_target"], jwins["bytes_to_target"], jwins["network_seconds_to_target"]) == (2, 5e5, 2.0)
    assert jwins["bytes_to_target_bound"] == "<"
    assert (topk["rounds_to_target"], topk["bytes_to_target"], topk["bytes_to_target_bound"]) == (4, 4e5, ">")
    assert topk["bytes_to_target_reached"] == 0
    assert all(r["network_seconds"] == 4.0 for r in rows)


def test_seed_table_pairs_the_modelled_time_to_a_target_seed_by_seed(tmp_path):
    """Two seeds: full crosses 70% at round 3 1/3 (1 s a round), JWINS at round 2 2/3 (0.5 s, then 0.25 s a
    round): per-seed time ratios 0.4 and 0.2, paired as their geometric mean with the log-scale interval."""
    full = [write_run(tmp_path, f"full-{s}", algorithm="full", per_round=1e6, acc={2: 0.5, 4: 0.8}, network=True)
            for s in (0, 1)]
    jw = [write_run(tmp_path, f"jwins-{s}", algorithm="jwins", per_round=2.5e5, acc={2: 0.6, 4: 0.9}, network=True,
                    net_per_round=net) for s, net in ((0, 0.5), (1, 0.25))]
    rows = report.seed_table({"full": [report.read_run(d) for d in full],
                              "jwins": [report.read_run(d) for d in jw]}, target=0.7, reference="full")
    assert rows[0]["network_seconds_to_target_seeds"] == pytest.approx([10 / 3, 10 / 3])
    assert rows[1]["network_seconds_to_target_seeds"] == pytest.approx([4 / 3, 2 / 3])
    ratio = rows[1]["ratio_network_seconds_to_target"]
    half = 12.706205 * (math.log(2) / math.sqrt(2)) / math.sqrt(2)  # t(0.975, 1) x sd of the log ratios / sqrt(n)
    assert ratio["mean"] == pytest.approx(math.sqrt(0.4 * 0.2))
    assert ratio["low"] == pytest.approx(math.sqrt(0.08) * math.exp(-half), rel=1e-5)
    assert ratio["high"] == pytest.approx(math.sqrt(0.08) * math.exp(half), rel=1e-5)
    assert "net s to target ratio" in report.markdown_table(rows)


def test_compare_table_without_reference_or_target(three_runs):
    rows = compare_table(three_runs[1:])  # paths are read too; no full run
    assert [r["bytes_relative"] for r in rows] == [None, None]
    assert "rounds_to_target" not in rows[0]
    rows = compare_table(three_runs, reference="topk")
    assert rows[0]["bytes_relative"] == pytest.approx(10.0)


def test_compare_table_reference_only_within_same_dataset(tmp_path, three_runs):
    other = write_run(tmp_path, "other", algorithm="jwins", per_round=1e3, acc={4: 0.5}, dataset="cifar10")
    rows = compare_table([*three_runs, other])
    assert rows[3]["bytes_relative"] is None


def test_compare_table_rejects_percent_targets(three_runs):
    with pytest.raises(JwinsError, match="fractions"):
        compare_table(three_runs, target=70)


def test_compare_table_rmse_lower_is_better(tmp_path):
    d = write_run(tmp_path, "reg", algorithm="full", per_round=1e6, acc={2: 2.0, 4: 1.0}, metric="rmse")
    row = compare_table([d], target=1.5)[0]
    assert row["metric"] == "rmse" and row["rounds_to_target"] == 3  # 2.0 -> 1.0 between rounds 2 and 4
    assert row["final_worst"] == pytest.approx(1.05)  # the worst node has the largest RMSE
    text = format_table([row])
    assert "final RMSE" in text and "1.0000" in text and "max RMSE" in text and "%" not in text.split("\n")[2]


def test_same_algorithm_runs_get_distinct_labels(tmp_path):
    a = write_run(tmp_path, "a", algorithm="choco", per_round=1e3, acc={4: 0.5}, gamma=0.2)
    b = write_run(tmp_path, "b", algorithm="choco", per_round=1e3, acc={4: 0.6}, gamma=0.8)
    assert [r["label"] for r in compare_table([a, b])] == ["choco (gamma=0.2)", "choco (gamma=0.8)"]


# ------------------------------------------------------------------------------------------- text tables

def test_format_table(three_runs):
    text = format_table(compare_table(three_runs, target=0.7))
    lines = text.splitlines()
    assert len(lines) == 2 + 3 + 3  # header, rule, 3 rows, 3 notes
    header = lines[0]
    for unit in ("acc %", "MB/node", "vs full %", "rounds to 70.0%", "MB to 70.0%", "net s"):
        assert unit in header
    full, jwins, topk = lines[2:5]
    assert full.split()[:5] == ["full", "80.00", "75.00", "4.000", "100.0"]
    assert jwins.split()[:5] == ["jwins", "75.00", "70.00", "1.000", "25.0"]
    assert topk.split()[:5] == ["topk", "50.00", "45.00", "0.400", "10.0"]
    assert full.split()[-4:] == ["~3.3", "~3.333", "~3.3", "4.0"]   # rounds, MB, net s to target; net s total
    assert jwins.split()[-7:] == ["≤", "2", "≤", "0.500", "≤", "2.0", "4.0"]
    assert topk.split()[-7:] == [">", "4", ">", "0.400", ">", "4.0", "4.0"]
    assert len({len(line) for line in lines[:5]}) == 1  # aligned
    assert lines[5].startswith("~: the evaluations around the crossing") and lines[6].startswith("> x (k/n)")
    assert lines[7].startswith("≤ x: a seed reached the target at its first evaluation")


def test_format_table_missing_values_are_dashes():
    text = format_table([{"label": "x", "metric": "accuracy", "final_mean": None, "bytes_per_node": 2e6}])
    assert text.splitlines()[2].split() == ["x", "-", "-", "2.000", "-", "-", "-", "-"]
    assert format_table([]) == "(no runs)"


def test_markdown_table(three_runs):
    md = markdown_table(compare_table(three_runs, target=0.7))
    lines = md.split("\n\n")[0].splitlines()
    assert len(lines) == 2 + 3
    assert all(line.startswith("| ") and line.endswith(" |") for line in lines)
    assert lines[1].startswith("| :--- | ---: |")
    assert len({line.count(" | ") for line in lines}) == 1
    assert "| jwins | 75.00 | 70.00 | 1.000 | 25.0 |" in md


# ------------------------------------------------------------------------------------------- figures

def _check_files(paths: list[Path], out: Path, names: list[str]) -> None:
    assert sorted(paths) == sorted(out / f"{n}.{ext}" for n in names for ext in ("png", "svg"))
    for p in paths:
        data = p.read_bytes()
        assert len(data) > 1000, p
        if p.suffix == ".png":
            assert data[:8] == b"\x89PNG\r\n\x1a\n"
        else:
            assert b"<svg" in data[:1000]


def test_plot_run_writes_every_figure(three_runs):
    paths = plot_run(three_runs[1])
    _check_files(paths, three_runs[1] / "plots", ALL_FIGURES)


def test_plot_runs_all_on_one_figure(tmp_path, three_runs):
    out = tmp_path / "cmp"
    paths = plot_runs(three_runs, out, labels=["full", "jwins (ours)", "topk 10%"], title="digits sweep")
    _check_files(paths, out, ALL_FIGURES)
    svg = (out / "accuracy_rounds.svg").read_text()
    assert "jwins (ours)" in svg and "test accuracy (%)" in svg
    assert "digits sweep: digits, 4 nodes" in svg  # the dataset and node count are added to the title


def test_plot_runs_regression_is_rmse(tmp_path):
    runs = [write_run(tmp_path, a, algorithm=a, per_round=p, acc={2: 2.0, 4: 1.0}, metric="rmse")
            for a, p in (("full", 1e6), ("topk", 1e5))]
    out = tmp_path / "reg"
    _check_files(plot_runs(runs, out, title="digits, 4 nodes"), out, ["accuracy_rounds", "accuracy_bytes", "loss"])
    svg = (out / "accuracy_rounds.svg").read_text()
    assert "test RMSE" in svg and "accuracy (%)" not in svg
    assert svg.count("4 nodes") == 1  # a title that names them is not repeated


def test_plot_runs_rejects_mixed_metrics_and_bad_labels(tmp_path, three_runs):
    reg = write_run(tmp_path, "reg", algorithm="full", per_round=1e6, acc={4: 1.0}, metric="rmse")
    with pytest.raises(JwinsError, match="one axis"):
        plot_runs([three_runs[0], reg], tmp_path / "x")
    with pytest.raises(JwinsError, match="2 labels for 3 runs"):
        plot_runs(three_runs, tmp_path / "x", labels=["a", "b"])


def test_plot_run_without_alpha_or_network_never_imports_pyplot(tmp_path):
    """No alpha or network time recorded: three figures. They are drawn on an Agg canvas (in a fresh
    interpreter here), so the user's backend and pyplot's state are never touched."""
    d = write_run(tmp_path, "r", algorithm="full", per_round=1e3, acc={4: 0.5})  # one evaluation only
    out = tmp_path / "figs"
    code = ("import sys, json, jwins.plots as r; print(json.dumps([str(p) for p in r.plot_run(*sys.argv[1:])])); "
            "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'")
    done = subprocess.run([sys.executable, "-c", code, str(d), str(out)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    paths = [Path(p) for p in json.loads(done.stdout)]
    _check_files(paths, out, ["accuracy_rounds", "accuracy_bytes", "loss"])


def test_labels_tell_runs_apart_by_the_shortest_difference_that_changes_numbers(tmp_path):
    """Two full-sharing runs that differ in rounds, in import paths (where they ran) and in alphas (which full
    sharing ignores) are told apart by rounds alone; one key is enough for choco runs that differ in gamma and
    in the path of their plugins."""
    a = write_run(tmp_path, "a", algorithm="full", per_round=1e3, acc={4: 0.5}, alphas=[0.1, 1.0])
    b = write_run(tmp_path, "b", algorithm="full", per_round=1e3, acc={4: 0.6}, alphas=[0.2, 1.0])
    for d, rounds, paths in ((a, 120, ["/home/me/project/a"]), (b, 60, ["/home/me/project/b"])):
        cfg = json.loads((d / "config.json").read_text())
        cfg.update(rounds=rounds, import_paths=paths)
        (d / "config.json").write_text(json.dumps(cfg))
    assert [r["label"] for r in compare_table([a, b])] == ["full (rounds=120)", "full (rounds=60)"]
    c = write_run(tmp_path, "c", algorithm="choco", per_round=1e3, acc={4: 0.5}, gamma=0.2, compressor="topk")
    d = write_run(tmp_path, "d", algorithm="choco", per_round=1e3, acc={4: 0.5}, gamma=0.8, compressor="randomk")
    e = write_run(tmp_path, "e", algorithm="choco", per_round=1e3, acc={4: 0.5}, gamma=0.8, compressor="topk")
    assert [r["label"] for r in compare_table([c, d, e])] == [
        "choco (compressor=topk, gamma=0.2)", "choco (compressor=randomk, gamma=0.8)",
        "choco (compressor=topk, gamma=0.8)"]
    f = write_run(tmp_path, "f", algorithm="choco", per_round=1e3, acc={4: 0.5}, gamma=0.2, compressor="randomk")
    assert [r["label"] for r in compare_table([c, f])] == ["choco (compressor=topk)", "choco (compressor=randomk)"]
    same = write_run(tmp_path, "same", algorithm="choco", per_round=1e3, acc={4: 0.5}, gamma=0.2,
                     compressor="topk")
    assert [r["label"] for r in compare_table([c, same])] == ["choco (c)", "choco (same)"]


def test_plot_of_several_runs_goes_beside_them_and_never_over_a_file(tmp_path, three_runs):
    cli = [sys.executable, "-m", "jwins", "plot"]
    first = subprocess.run([*cli, *map(str, three_runs[:2])], capture_output=True, text=True, timeout=300,
                           cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    beside = tmp_path / "plots-full-jwins"
    assert {Path(p).parent for p in first.stdout.split()} == {beside} and not (tmp_path / "plots").exists()
    again = subprocess.run([*cli, *map(str, three_runs[:2])], capture_output=True, text=True, timeout=300,
                           cwd=tmp_path)
    assert again.returncode == 2
    assert again.stderr.strip() == (f"jwins: error: {beside / 'accuracy_rounds.png'} exists already; choose another "
                                    f"--out, or add --overwrite to replace the figures in {beside}")
    assert subprocess.run([*cli, *map(str, three_runs[:2]), "--overwrite"], capture_output=True, text=True,
                          timeout=300).returncode == 0
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "loss.png").write_bytes(b"my figure")
    refused = subprocess.run([*cli, *map(str, three_runs), "--out", str(mine)], capture_output=True, text=True,
                             timeout=300)
    assert refused.returncode == 2 and (mine / "loss.png").read_bytes() == b"my figure"
    # a run's own plots/ is redrawn in place
    assert subprocess.run([*cli, str(three_runs[0])], capture_output=True, text=True, timeout=300).returncode == 0
    assert subprocess.run([*cli, str(three_runs[0])], capture_output=True, text=True, timeout=300).returncode == 0


def test_band_legends_say_what_the_band_is_and_many_runs_draw_none(tmp_path):
    from jwins.plots import plot_groups

    groups = {name: [write_run(tmp_path / name, f"s{s}", algorithm=name, per_round=1e3 * (k + 1),
                               acc={2: 0.4 + 0.01 * s + 0.1 * k, 4: 0.6 + 0.02 * s + 0.1 * k})
                     for s in range(3)] for k, name in enumerate(("full", "jwins"))}
    plot_groups(groups, tmp_path / "two")
    assert "shaded: 95% CI over 3 seeds" in (tmp_path / "two" / "accuracy_rounds.svg").read_text()
    many = {name: [write_run(tmp_path / "many" / name, f"s{s}", algorithm=name, per_round=1e3 * (k + 1),
                             acc={2: 0.4 + 0.01 * s, 4: 0.6 + 0.02 * s}) for s in range(2)]
            for k, name in enumerate(("full", "jwins", "topk", "choco", "subsample"))}
    plot_groups(many, tmp_path / "five")
    svg = (tmp_path / "five" / "accuracy_rounds.svg").read_text()
    assert "bands omitted (5 runs" in svg and "shaded:" not in svg
