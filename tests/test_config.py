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
    (["nodes=5", "topology.degree=3"], r"topology.degree = 3 times the number of nodes, 3 \* 5 = 15 is odd"),
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


def test_the_settings_that_change_no_number_change_none(tmp_path):
    """Every section of config.NO_NUMBERS, changed, leaves every metric as it was (timings aside); and the list
    is exactly what the checkpoint lets a resume change (besides rounds), what a prepared directory ignores and
    what ranks may differ in."""
    from helpers import rows

    from jwins import checkpoint
    from jwins.experiment import run

    assert set(config.NO_NUMBERS) == {"engine", "checkpoint", "import_paths", "log"}
    assert set(checkpoint.RESUMABLE_CHANGES) == {"rounds", *config.NO_NUMBERS}
    base = ["nodes=6", "rounds=3", "topology.degree=2", "data.max_samples=300", "sharing.algorithm=jwins",
            "eval.every=1"]
    run(config.load(overrides=base), run_dir=tmp_path / "base")
    changed = {"engine": ["engine.threads=1", "engine.timeout=7"], "checkpoint": ["checkpoint.every=1"],
               "import_paths": [f"import_paths=[{json.dumps(str(tmp_path))}]"], "log": ["log.tensorboard=true"]}
    assert set(changed) == set(config.NO_NUMBERS)
    for section, overrides in changed.items():
        run(config.load(overrides=[*base, *overrides]), run_dir=tmp_path / section)
        assert rows(tmp_path / section) == rows(tmp_path / "base"), section
    tree = config.to_dict(config.load(overrides=base))
    assert set(tree) - set(config.numbers(tree)) == set(config.NO_NUMBERS)


def _defaults(factory) -> dict:
    import inspect

    return {k: p.default for k, p in inspect.signature(factory).parameters.items()
            if p.default is not inspect.Parameter.empty}


@pytest.mark.parametrize("kind,section", [("SHARING", "sharing"), ("TOPOLOGIES", "topology"), ("MODELS", "model")])
def test_the_built_ins_and_the_config_have_one_set_of_defaults(kind, section):
    """A built-in reads the section keys its registration lists; its factory's default for each is the config's
    default (or it has none and the config always gives it), so a part built from Python and one built from a
    config agree."""
    from jwins import registry

    names = getattr(registry, kind)
    defaults = config.to_dict(config.Config())[section]
    checked = 0
    for name in names.names():
        keys = names.entry(name).info.get("keys", ())
        factory_defaults = _defaults(names.load(name))
        for key in keys:
            if key in factory_defaults:
                want = defaults[key]
                got = factory_defaults[key]
                got = list(got) if isinstance(got, tuple) else got
                assert got == want, f"{name}: {key} defaults to {got!r} in the factory, {want!r} in the config"
                checked += 1
    assert checked > 0 or kind == "TOPOLOGIES"  # the topologies' keys have no default: the config gives them
