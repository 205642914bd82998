"""Config loading, overrides and validation errors."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from jwins import config
from jwins.errors import ConfigError


def test_defaults_follow_the_design_tree():
    cfg = config.load()
    assert (cfg.seed, cfg.nodes, cfg.rounds) == (0, 16, 100)
    assert cfg.data.name == "digits" and cfg.data.partition == "shards" and cfg.data.shards_per_node == 2
    assert cfg.topology.kind == "regular" and cfg.topology.degree == 4
    assert cfg.sharing.alphas == (0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 1.0)
    assert (cfg.wire.index_codec, cfg.wire.value_codec) == ("elias-gamma", "pcodec")


def test_toml_then_overrides(tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text('nodes = 8\nrounds = 5\n[topology]\ndegree = 3\n[sharing]\nalgorithm = "jwins"\n')
    cfg = config.load(path, ["topology.degree=5", "rounds=200", "sharing.alphas=[0.1, 1.0]", "data.name=mnist",
                             'sharing.wavelet="db4"', "model.same_init=false"])
    assert cfg.nodes == 8 and cfg.rounds == 200 and cfg.topology.degree == 5
    assert cfg.sharing.algorithm == "jwins" and cfg.sharing.alphas == (0.1, 1.0)
    assert cfg.data.name == "mnist" and cfg.sharing.wavelet == "db4" and cfg.model.same_init is False


def test_saved_json_round_trips(tmp_path):
    cfg = config.load(overrides=["nodes=6", "sharing.algorithm=choco", "sharing.gamma=0.2"])
    (tmp_path / "config.json").write_text(json.dumps(config.to_dict(cfg)))
    assert config.load(tmp_path / "config.json") == cfg
    assert config.load(tmp_path) == cfg  # a run directory works too


@pytest.mark.parametrize("overrides,match", [
    (["nodes=x"], r"nodes = 'x' must be an integer"),
    (["foo=1"], r"unknown config key foo; valid keys in the top level: seed, nodes"),
    (["train.lrr=0.1"], r"unknown config key train.lrr; valid keys in train: local_steps, batch_size, lr"),
    (["train.lr=0"], r"train.lr = 0.0 must be > 0"),
    (["topology.degree=16"], r"topology.degree = 16 must be < nodes = 16"),
    (["nodes=5", "topology.degree=3"], r"must be even for a regular graph"),
    (["sharing.algorithm=foo"], r"choose one of: full, subsample, topk, choco, jwins, local"),
    (["sharing.alphas=[0.1, 2.0]"], r"sharing.alphas = \[0.1, 2.0\] must be"),
    (["sharing.alphas=0.1"], r"must be a list"),
    (["sharing.wavelet=nope"], r"not a discrete PyWavelets wavelet"),
    (["wire.index_codec=zip"], r"wire.index_codec = 'zip' is not valid; choose one of: elias-gamma, rice"),
    (["topology.kind=file"], r"needs topology.path"),
    (["eval.nodes=-1"], r"eval.nodes = -1 must be >= 0"),
    (["topology.resample_every=-2"], r"topology.resample_every = -2 must be >= 0"),
    (["data"], r"must look like section.key=value"),
    (["data=3"], r"data is a section"),
    (["model.same_init=maybe"], r"must be true or false"),
])
def test_bad_values_fail_with_one_clear_line(overrides, match):
    with pytest.raises(ConfigError, match=match) as info:
        config.load(overrides=overrides)
    assert "\n" not in str(info.value)


def test_bad_toml_names_the_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("nodes = = 3")
    with pytest.raises(ConfigError, match="cannot parse config file .*bad.toml"):
        config.load(path)
    with pytest.raises(ConfigError, match="does not exist"):
        config.load(tmp_path / "missing.toml")


@pytest.mark.parametrize("path", sorted((Path(__file__).parent.parent / "examples").glob("*.toml")),
                         ids=lambda p: p.name)
def test_every_example_config_loads(path):
    """The shipped examples stay valid as the config tree changes (no data is touched)."""
    cfg = config.load(path)
    assert cfg.nodes >= 1 and cfg.rounds >= 1
    assert config.from_dict(config.to_dict(cfg)) == cfg
