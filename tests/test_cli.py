"""Things a newcomer meets first on the command line."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from jwins import __version__, config
from jwins.cli import main
from jwins.experiment import run

TINY = ["--nodes", "6", "--set", "topology.degree=2", "--set", "data.max_samples=300", "--rounds", "2"]


def test_no_arguments_prints_the_help_and_version_works(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: jwins") and "run" in out and "compare" in out
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.strip() == f"jwins {__version__}"


def test_names_are_forgiving_about_spelling():
    assert config.load(overrides=["data.name=Fashion-MNIST"]).data.name == "fashion-mnist"
    assert config.load(overrides=["sharing.algorithm=JWINS", "topology.kind=Small_World"]).sharing.algorithm == "jwins"


def test_settings_the_algorithm_does_not_use_are_warned_about(tmp_path, capsys):
    assert main(["run", *TINY, "--set", "sharing.alphas=[0.1,1.0]", "--out", str(tmp_path / "r"), "--quiet",
                 "--no-plots"]) == 0
    err = capsys.readouterr().err
    assert "jwins: warning: sharing.alphas = (0.1, 1.0) is ignored: sharing.algorithm = 'full' does not use it" in err


def test_a_data_root_that_does_not_exist_is_an_error(tmp_path, capsys):
    assert main(["run", "--dataset", "mnist", "--set", f"data.root={tmp_path / 'nowhere'}", "--out",
                 str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("jwins: error: data.root = ") and "does not exist" in err and "\n" not in err
    assert not (tmp_path / "r").exists()


def test_errors_name_the_config_key(capsys):
    assert main(["run", "--nodes", "2", "--set", "topology.kind=small-world", "--set", "topology.degree=1"]) == 2
    err = capsys.readouterr().err
    assert "at least 3 nodes, got 2" in err and "num_nodes" not in err


def test_the_progress_bar_shows_no_accuracy_before_the_first_evaluation(tmp_path, capsys):
    run(config.load(overrides=["nodes=6", "topology.degree=2", "data.max_samples=300", "rounds=3", "eval.every=3"]),
        quiet=False, write=False)
    err = capsys.readouterr().err
    assert "nan" not in err and "acc=" in err


def test_plot_redraws_a_comparison_and_full_sharing_draws_no_flat_alpha(tmp_path):
    done = subprocess.run([sys.executable, "-m", "jwins", "compare", *TINY, "--algorithms", "full,jwins", "--out",
                           str(tmp_path / "cmp"), "--quiet"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    again = subprocess.run([sys.executable, "-m", "jwins", "plot", str(tmp_path / "cmp"), "--out",
                            str(tmp_path / "figs")], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert {Path(p).name for p in again.stdout.split()} >= {"accuracy_bytes.png", "accuracy_rounds.png", "alpha.png"}
    alone = subprocess.run([sys.executable, "-m", "jwins", "plot", str(tmp_path / "cmp" / "full")],
                           capture_output=True, text=True, timeout=300)
    assert alone.returncode == 0, alone.stderr
    assert "alpha" not in alone.stdout  # full sharing always sends everything: no flat line at 100%


def test_the_python_api_shows_progress_where_a_person_watches(capsys, monkeypatch):
    """jwins.run shows its progress bar when asked, or by default in a terminal or a notebook; its result names
    the run directory."""
    import jwins
    from jwins import api

    cfg = jwins.load_config(overrides=["nodes=4", "rounds=2", "topology.degree=2", "data.max_samples=200"])
    jwins.run(cfg, progress=True, write=False)
    assert "2/2" in capsys.readouterr().err
    jwins.run(cfg, progress=False, write=False)
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(api, "interactive", lambda: True)
    jwins.run(cfg, write=False)
    assert "2/2" in capsys.readouterr().err
    monkeypatch.setattr(api, "interactive", lambda: False)
    jwins.run(cfg, write=False)
    assert capsys.readouterr().err == ""
