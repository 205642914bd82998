"""`jwins compare`: identical settings per arm, selection on validation only, paired differences, sweeps that
bracket, ablations and baselines, and a failed comparison that leaves nothing in the way of its fix."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from jwins import config
from jwins.compare import Arm, _select, ablation_arms, arms_for, compare, next_value, parse_sweeps, resume
from jwins.errors import ConfigError

TINY = ["nodes=6", "rounds=4", "topology.degree=2", "eval.every=2", "data.max_samples=300", "train.lr=0.05"]
T2 = 4.302653  # t(0.975, 2)


def _summary(path: Path) -> dict:
    return json.loads((path / "summary.json").read_text())


def test_parse_sweeps_builds_the_product_per_arm():
    plan = parse_sweeps(["choco:sharing.gamma=0.1,0.2", "choco:sharing.alpha=0.1,0.3",
                         "jwins:sharing.alphas=[0.1,1.0],[0.2,1.0]"], ["full", "choco", "jwins"])
    assert plan["full"] == [[]]
    assert len(plan["choco"]) == 4 and ["sharing.gamma=0.1", "sharing.alpha=0.3"] in plan["choco"]
    assert plan["jwins"] == [["sharing.alphas=[0.1,1.0]"], ["sharing.alphas=[0.2,1.0]"]]
    extended = parse_sweeps(["choco:sharing.gamma=0.1,0.2"], ["choco"], {"choco": {"sharing.gamma": ["0.4"]}})
    assert extended["choco"] == [["sharing.gamma=0.1"], ["sharing.gamma=0.2"], ["sharing.gamma=0.4"]]
    with pytest.raises(ConfigError, match="not among --algorithms"):
        parse_sweeps(["topk:sharing.alpha=0.1"], ["full"])
    with pytest.raises(ConfigError, match="must look like ALGORITHM:section.key="):
        parse_sweeps(["gamma=0.1"], ["choco"])


def test_a_sweep_without_a_validation_split_is_refused_before_anything_is_written(tmp_path):
    done = subprocess.run([sys.executable, "-m", "jwins", "compare", *[x for o in TINY for x in ("--set", o)],
                           "--algorithms", "full,choco", "--sweep", "choco:sharing.gamma=0.1,0.9", "--quiet"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "jwins: error: --sweep: choco has several settings, and compare selects among them on a validation split, "
        "never on the test set; hold one out with --set data.validation=0.1")
    assert list(tmp_path.iterdir()) == []


def test_selection_reads_validation_never_test():
    """gamma 0.1 has the better test accuracy, gamma 0.2 the better validation accuracy: 0.2 is selected."""
    log = [{"arm": "choco", "settings": ["sharing.gamma=0.1"], "validation_mean": 0.70, "test_mean": 0.80,
            "metric": "accuracy"},
           {"arm": "choco", "settings": ["sharing.gamma=0.2"], "validation_mean": 0.72, "test_mean": 0.60,
            "metric": "accuracy"},
           {"arm": "mf", "settings": ["train.lr=0.1"], "validation_mean": 0.9, "test_mean": 0.8, "metric": "rmse"},
           {"arm": "mf", "settings": ["train.lr=0.2"], "validation_mean": 1.1, "test_mean": 0.7, "metric": "rmse"}]
    chosen = _select(log)
    assert chosen["choco"]["settings"] == ["sharing.gamma=0.2"]
    assert chosen["mf"]["settings"] == ["train.lr=0.1"]  # the lower validation RMSE


def test_next_value_extends_a_grid_by_its_own_ratio_up_to_a_limit():
    assert next_value(["0.1", "0.2", "0.4"], "0.4", lambda v: True) == ("0.8", "extended")
    assert next_value(["0.1", "0.2", "0.4"], "0.1", lambda v: True) == ("0.05", "extended")
    assert next_value(["0.1", "0.2", "0.4"], "0.2", lambda v: True) == (None, "interior")
    assert next_value(["2", "3"], "3", lambda v: True) == ("5", "extended")    # integers stay integers: 3 * 1.5
    assert next_value(["-1", "0"], "0", lambda v: True) == ("1", "extended")   # arithmetic where a value is <= 0
    # gamma 0.5 wins of {0.2, 0.5}: 1.25 is above gamma's limit of 1, so the step is pulled back: sqrt(2.5)
    # -> 0.5 * 1.5811 = 0.790569
    assert next_value(["0.2", "0.5"], "0.5", lambda v: float(v) <= 1) == ("0.790569", "extended")
    assert next_value(["0.5", "1"], "1", lambda v: float(v) <= 1) == (None, "limit")
    assert next_value(["[0.1,1.0]", "[0.2,1.0]"], "[0.2,1.0]", lambda v: True) == (None, "not numeric")


def test_an_edge_winner_extends_its_grid_and_the_selection_is_the_best_validation(tmp_path):
    base = config.load(overrides=[*TINY, "data.validation=0.2"])
    result = compare(base, ["full"], sweeps=["full:train.lr=0.002,0.004"], out=tmp_path / "c", baselines=[],
                     bracket=2)
    plan = json.loads((tmp_path / "c" / "compare-plan.json").read_text())
    tried = ["0.002", "0.004", *plan["extended"].get("full", {}).get("train.lr", [])]
    vals = {lr: _summary(tmp_path / "c" / f"full-lr={lr}")["final_validation"]["mean"] for lr in tried}
    best = max(vals, key=vals.get)
    assert result.rows[0]["label"].startswith(f"full (lr={best})")
    assert result.best["full"] == tmp_path / "c" / f"full-lr={best}"
    # a two-value grid's winner is always at an edge: it was extended at least once, at most --bracket times,
    # and the table marks a winner still at an edge (which can only happen once the extensions are used up)
    steps = len(tried) - 2
    assert 1 <= steps <= 2
    at_edge = best in (min(tried, key=float), max(tried, key=float))
    assert result.rows[0]["label"].endswith("[edge]") == at_edge
    assert not at_edge or steps == 2
    saved = json.loads((tmp_path / "c" / "compare.json").read_text())
    assert [e["settings"] for e in saved["sweep"]] == [[f"train.lr={lr}"] for lr in tried]
    assert saved["selected"][0]["settings"] == [f"train.lr={best}"]
    assert "decided by the mean final validation metric" in (tmp_path / "c" / "compare.md").read_text()


def test_paired_differences_and_levels_over_seeds_by_hand(tmp_path):
    """Three seeds of full and JWINS: JWINS's row holds the mean of the per-seed differences of the final test
    accuracy with the paired t interval, and the geometric mean of the per-seed byte ratios; compare.json keeps
    the per-seed values."""
    base = config.load(overrides=[*TINY, "data.validation=0.2"])
    result = compare(base, ["full", "jwins"], seeds=[0, 1, 2], out=tmp_path / "c", baselines=[], targets=[0.2])
    full = [_summary(tmp_path / "c" / "full" / f"seed-{s}") for s in (0, 1, 2)]
    jw = [_summary(tmp_path / "c" / "jwins" / f"seed-{s}") for s in (0, 1, 2)]
    d = [j["final_accuracy"]["mean"] - f["final_accuracy"]["mean"] for j, f in zip(jw, full)]
    mean = sum(d) / 3
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / 2)
    row = result.rows[1]
    assert row["label"] == "jwins" and row["reference_label"] == "full"
    assert row["diff_final"]["mean"] == pytest.approx(mean)
    assert row["diff_final"]["low"] == pytest.approx(mean - T2 * sd / math.sqrt(3), rel=1e-5)
    assert row["diff_final"]["high"] == pytest.approx(mean + T2 * sd / math.sqrt(3), rel=1e-5)
    logs = [math.log(j["bytes_sent_per_node"] / f["bytes_sent_per_node"]) for j, f in zip(jw, full)]
    assert row["ratio_bytes"]["mean"] == pytest.approx(math.exp(sum(logs) / 3))
    assert row["final_mean_seeds"] == [j["final_accuracy"]["mean"] for j in jw]
    assert row["val_final_mean_seeds"] == [j["final_validation"]["mean"] for j in jw]
    assert result.rows[0].get("diff_final") is None  # the reference itself
    saved = json.loads((tmp_path / "c" / "compare.json").read_text())
    assert saved["rows"][1]["bytes_to_0.2_seeds"] == row["bytes_to_0.2_seeds"]
    assert len(saved["rows"][1]["bound_to_0.2_seeds"]) == 3
    assert saved["target_source"] == "validation"
    assert saved["target"] == pytest.approx(0.95 * sum(f["final_validation"]["mean"] for f in full) / 3)
    md = (tmp_path / "c" / "compare.md").read_text()
    assert "Paired by seed" in md and "| jwins | full |" in md
    # A finished comparison tabulated again with its targets read off the validation curve: nothing runs, the
    # finals stay, the crossings come from the validation evaluations.
    again = resume(tmp_path / "c", on="validation")
    assert again.rows[1]["final_mean_seeds"] == row["final_mean_seeds"]
    assert json.loads((tmp_path / "c" / "compare.json").read_text())["targets_on"] == "validation"
    assert "(val)" in (tmp_path / "c" / "compare.md").read_text()
    with pytest.raises(ConfigError, match="choose test or validation"):
        resume(tmp_path / "c", on="train")


def test_ablation_and_baselines_are_rows_with_their_own_settings(tmp_path):
    base = config.load(overrides=[*TINY, "sharing.alphas=[0.1,0.3]"])
    arms = arms_for(base, ["full"], ablation=True)
    assert [a.name for a in arms] == ["jwins", "full", "jwins/identity", "jwins/fixed-alpha", "jwins/no-accumulation",
                                      "jwins/value-selection", "local", "full/iid"]
    assert ablation_arms(base)[1] == Arm("jwins/fixed-alpha", "jwins", ("sharing.alphas=[0.2]",), "ablation")
    result = compare(base, ["jwins"], ablation=True, out=tmp_path / "c", baselines=["local", "iid"])
    labels = [r["label"] for r in result.rows]
    assert labels == ["jwins", "jwins/identity", "jwins/fixed-alpha", "jwins/no-accumulation",
                      "jwins/value-selection", "local", "full/iid"]
    assert all(r["reference_label"] == "jwins" for r in result.rows[1:])
    cfg = {p.name: json.loads((p / "config.json").read_text()) for p in (tmp_path / "c").iterdir()
           if (p / "config.json").exists()}
    assert cfg["jwins-identity"]["sharing"]["transform"] == "identity"
    assert cfg["jwins-fixed-alpha"]["sharing"]["alphas"] == [0.2]
    assert cfg["jwins-no-accumulation"]["sharing"]["accumulation"] is False
    assert cfg["jwins-value-selection"]["sharing"]["selection"] == "value"
    assert cfg["local"]["sharing"]["algorithm"] == "local"
    assert cfg["full-iid"]["data"]["partition"] == "iid" and cfg["jwins"]["data"]["partition"] == "shards"
    same = [{k: v for k, v in c.items() if k not in ("sharing", "data")} for c in cfg.values()]
    assert all(s == same[0] for s in same)
    assert result.rows[5]["bytes_per_node"] == 0.0  # local sends nothing


def test_a_comparison_that_fails_on_its_config_leaves_nothing_in_the_way(tmp_path):
    """A bad option is found before the directory is claimed; a plan that never started is replaced by the
    corrected command; without --out no stray runs/compare-... is left."""
    args = [sys.executable, "-m", "jwins", "compare", *[x for o in TINY for x in ("--set", o)], "--algorithms",
            "full,topk", "--baselines", "none", "--set", "data.validation=0.2", "--quiet"]
    bad = subprocess.run([*args, "--out", "c", "--sweep", "topk:sharing.alpha=0.1,2"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "sharing.alpha = 2.0 must be in (0, 1]" in bad.stderr
    assert not (tmp_path / "c").exists()
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "compare-plan.json").write_text("{}")  # a plan whose first run never started
    good = subprocess.run([*args, "--out", "c"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert good.returncode == 0, good.stderr
    assert (tmp_path / "c" / "compare.json").exists()
    missing = subprocess.run([*args, "--set", "data.name=mnist", "--set", "data.root=" + str(tmp_path)],
                             cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert missing.returncode != 0
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_compare_runs_identical_settings(tmp_path):
    base = config.load(overrides=[*TINY, "data.validation=0.2"])
    result = compare(base, ["full", "jwins", "choco"], sweeps=["choco:sharing.gamma=0.1,0.9"], out=tmp_path,
                     bracket=0, baselines=[])
    configs = {p.name: json.loads((p / "config.json").read_text()) for p in tmp_path.iterdir() if p.is_dir()
               and (p / "config.json").exists()}
    assert set(configs) == {"full", "jwins", "choco-gamma=0.1", "choco-gamma=0.9"}
    stripped = [{k: v for k, v in c.items() if k != "sharing"} for c in configs.values()]
    assert all(s == stripped[0] for s in stripped)
    rows = {r["algorithm"]: r for r in result.rows}
    assert rows["full"]["bytes_relative"] == pytest.approx(1.0)
    assert rows["jwins"]["bytes_per_node"] < rows["full"]["bytes_per_node"]
    assert rows["choco"]["selected_on"] == "validation" and rows["full"]["selected_on"] is None
    saved = json.loads((tmp_path / "compare.json").read_text())
    assert len(saved["rows"]) == 3 and len(saved["sweep"]) == 4
    assert (tmp_path / "plots" / "accuracy_bytes.png").stat().st_size > 0
