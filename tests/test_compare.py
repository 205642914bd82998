"""`jwins compare` on a tiny run: identical settings per algorithm, sweeps, best setting, the table."""
from __future__ import annotations

import json

import pytest

from jwins import config
from jwins.compare import compare, parse_sweeps
from jwins.errors import ConfigError

TINY = ["nodes=6", "rounds=4", "topology.degree=2", "eval.every=2", "data.max_samples=300", "train.lr=0.05"]


def test_parse_sweeps_builds_the_product_per_algorithm():
    plan = parse_sweeps(["choco:sharing.gamma=0.1,0.2", "choco:sharing.alpha=0.1,0.3",
                         "jwins:sharing.alphas=[0.1,1.0],[0.2,1.0]"], ["full", "choco", "jwins"])
    assert plan["full"] == [[]]
    assert len(plan["choco"]) == 4 and ["sharing.gamma=0.1", "sharing.alpha=0.3"] in plan["choco"]
    assert plan["jwins"] == [["sharing.alphas=[0.1,1.0]"], ["sharing.alphas=[0.2,1.0]"]]
    with pytest.raises(ConfigError, match="not among --algorithms"):
        parse_sweeps(["topk:sharing.alpha=0.1"], ["full"])
    with pytest.raises(ConfigError, match="must look like ALGORITHM:section.key="):
        parse_sweeps(["gamma=0.1"], ["choco"])


def test_compare_runs_identical_settings_and_reports_best(tmp_path):
    base = config.load(overrides=TINY)
    result = compare(base, ["full", "jwins", "choco"], sweeps=["choco:sharing.gamma=0.1,0.9"], out=tmp_path)
    # identical data, topology, seed and initial model: only the sharing section differs between runs
    configs = {p.name: json.loads((p / "config.json").read_text()) for p in tmp_path.iterdir() if p.is_dir()
               and (p / "config.json").exists()}
    assert set(configs) == {"full", "jwins", "choco-gamma=0.1", "choco-gamma=0.9"}
    stripped = [{k: v for k, v in c.items() if k != "sharing"} for c in configs.values()]
    assert all(s == stripped[0] for s in stripped)
    # the best choco is the one with the higher final accuracy
    finals = {tuple(s["settings"]): s["final"] for s in result.sweep if s["algorithm"] == "choco"}
    best_gamma = max(finals, key=finals.get)[0]
    assert result.best["choco"].name == "choco-" + best_gamma.split(".", 1)[-1]
    rows = {r["algorithm"]: r for r in result.rows}
    assert rows["full"]["bytes_relative"] == pytest.approx(1.0)
    assert rows["jwins"]["bytes_per_node"] < rows["full"]["bytes_per_node"]
    full_final = json.loads((tmp_path / "full" / "summary.json").read_text())["final_accuracy"]["mean"]
    assert result.target == pytest.approx(0.95 * full_final)
    saved = json.loads((tmp_path / "compare.json").read_text())
    assert len(saved["rows"]) == 3 and len(saved["sweep"]) == 4
    assert (tmp_path / "compare.md").read_text().count("\n") >= 4
    assert (tmp_path / "plots" / "accuracy_bytes.png").stat().st_size > 0
