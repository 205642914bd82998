"""Parts that live outside the package (examples/plugins/): a sharing algorithm, a model and a dataset, named in a
config as "module:attribute" or given to jwins.run as objects, run everywhere a built-in runs: the CLI, the
Python API, compare, two ranks and a resume. A part that cannot be used fails before any work, in one line."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import jwins
from helpers import assert_resume_continues, rows
from jwins import config, registry
from jwins.errors import ConfigError, JwinsError, TopologyError
from jwins.experiment import run

PLUGINS = Path(__file__).parent.parent / "examples" / "plugins"
EXAMPLE = PLUGINS / "event-triggered.toml"
QUICK = ["rounds=4", "eval.every=2"]


@pytest.fixture(scope="module")
def plugins():
    sys.path.insert(0, str(PLUGINS))
    try:
        import breast_cancer
        import event_triggered
        import mlp

        yield event_triggered, mlp, breast_cancer
    finally:
        sys.path.remove(str(PLUGINS))




def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jwins", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_the_example_runs_through_the_cli_from_anywhere(tmp_path):
    """`jwins run examples/plugins/event-triggered.toml` imports the three plugins from the config's folder, from
    another working directory; the saved config names them and runs again."""
    done = _cli("run", str(EXAMPLE), *[x for o in QUICK for x in ("--set", o)], "--out", "run", "--no-plots",
                "--quiet", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (saved["sharing"]["algorithm"], saved["model"]["name"], saved["data"]["name"]) == \
        ("event_triggered:event_triggered", "mlp:mlp", "breast_cancer:breast_cancer")
    assert str(PLUGINS) in saved["import_paths"]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["final_accuracy"]["mean"] > 0.6  # 2 classes
    again = _cli("run", "run", "--out", "again", "--no-plots", "--quiet", cwd=tmp_path)  # the saved config.json
    assert again.returncode == 0, again.stderr
    assert rows(tmp_path / "again") == rows(tmp_path / "run")


def test_objects_given_to_run_equal_the_names_in_the_config(tmp_path, plugins):
    """jwins.run(config, sharing=..., model=..., dataset=...) with the plugins as objects and factories gives the
    numbers of the config that names them; the saved config records their import paths."""
    event_triggered, mlp, breast_cancer = plugins
    named = run(config.load(EXAMPLE, QUICK), run_dir=tmp_path / "named")
    plain = config.load(overrides=[*QUICK, "nodes=8", "topology.degree=3", "data.partition=dirichlet",
                                   "data.dirichlet_alpha=1.0", "wire.value_codec=float32", "model.options.hidden=32"])
    given = jwins.run(plain, sharing=event_triggered.event_triggered(threshold=0.05, decay=0.97), model=mlp.mlp,
                      dataset=breast_cancer.breast_cancer, run_dir=tmp_path / "given")
    assert rows(tmp_path / "given") == rows(tmp_path / "named")
    assert torch.equal(given.params, named.params)
    saved = json.loads((tmp_path / "given" / "config.json").read_text())
    assert saved["model"]["name"] == "mlp:mlp" and saved["data"]["name"] == "breast_cancer:breast_cancer"
    assert saved["sharing"]["algorithm"].startswith("python:")  # an instance has no import path


def test_registered_names_work_in_a_config(tmp_path, plugins):
    """register_sharing / register_model / register_dataset / register_topology add names a config can use."""
    event_triggered, mlp, breast_cancer = plugins
    jwins.register_sharing("event-triggered", event_triggered.event_triggered)
    jwins.register_model("mlp", mlp.mlp)
    jwins.register_dataset("breast-cancer", breast_cancer.BREAST_CANCER)
    jwins.register_topology("circulant", lambda *, num_nodes, offsets=(1, 2): __import__("networkx").circulant_graph(
        num_nodes, offsets))
    try:
        cfg = config.load(overrides=[*QUICK, "nodes=8", "sharing.algorithm=event-triggered", "model.name=auto",
                                     "data.name=breast-cancer", "topology.kind=circulant", "topology.options.offsets=[1,3]"])
        result = run(cfg, write=False)
        assert result.summary["algorithm"] == "event-triggered" and result.summary["final_accuracy"]["mean"] > 0.6
    finally:
        for names, name in ((registry.SHARING, "event-triggered"), (registry.MODELS, "mlp"),
                            (registry.DATASETS, "breast-cancer"), (registry.TOPOLOGIES, "circulant")):
            names.unregister(name)


def test_the_sharing_contract_checks_a_registered_plugin(tmp_path, plugins):
    """As docs/extending.md says: registered with its send-everything setting, a plugin passes the contract
    tests the built-ins pass."""
    import test_sharing_contract as contract

    event_triggered, _, _ = plugins
    jwins.register_sharing("event-triggered", event_triggered.event_triggered,
                           everything=("sharing.options.threshold=0.0",))
    try:
        contract.test_sending_everything_is_full_sharing("event-triggered")
        contract.test_lost_messages_renormalise_the_mixing_weights("event-triggered")
        contract.test_resuming_from_a_checkpoint_continues_the_same_run("event-triggered", tmp_path)
    finally:
        registry.SHARING.unregister("event-triggered")


def test_a_networkx_generator_is_a_topology(tmp_path):
    """Any networkx generator that takes n (and seed) is a topology: "networkx:random_regular_graph" with
    [topology.options] d = 4."""
    cfg = config.load(overrides=[*QUICK, "nodes=10", "topology.kind=networkx:random_regular_graph",
                                 "topology.options.d=4", "data.max_samples=300", "wire.value_codec=float32"])
    from jwins.world import build_graph

    g = build_graph(cfg)
    assert g.num_nodes == 10 and set(g.degrees.tolist()) == {4}
    assert run(cfg, write=False).metrics[-1]["round"] == 4


def test_compare_runs_a_plugin_beside_the_built_ins(tmp_path):
    done = _cli("compare", str(EXAMPLE), "--algorithms", "full,event_triggered:event_triggered", "--sweep",
                "event_triggered:event_triggered:sharing.options.threshold=0.02,0.2", "--rounds", "4",
                "--set", "eval.every=2", "--set", "data.validation=0.2", "--baselines", "none", "--bracket", "0",
                "--out", "cmp", "--quiet", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    table = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert [r["algorithm"] for r in table["rows"]] == ["full", "event_triggered:event_triggered"]
    assert len(table["sweep"]) == 3
    assert table["rows"][1]["bytes_relative"] < 1.0  # it sends less than full sharing


def test_two_ranks_give_the_numbers_of_one_process(tmp_path):
    """engine.workers = 2: both ranks import the plugins (from the config's folder) and give the metrics of one
    process."""
    one = _cli("run", str(EXAMPLE), "--rounds", "6", "--out", "one", "--no-plots", "--quiet", cwd=tmp_path)
    two = _cli("run", str(EXAMPLE), "--rounds", "6", "--set", "engine.workers=2", "--out", "two", "--no-plots",
               "--quiet", cwd=tmp_path)
    assert one.returncode == 0 and two.returncode == 0, one.stderr + two.stderr
    assert rows(tmp_path / "two") == rows(tmp_path / "one")


def test_a_plugins_state_is_checkpointed(tmp_path):
    """The plugin's state (each node's last sent model) is saved like a built-in's: stopped after round 4 and
    resumed, the run equals the uninterrupted one."""
    assert_resume_continues(config.load(EXAMPLE, ["rounds=8", "eval.every=4", "checkpoint.every=2"]), tmp_path, cut=4)
    with np.load(tmp_path / "cut" / "checkpoint.npz") as z:
        assert "sharing.last_sent" in z.files


BAD = [
    (["sharing.algorithm=no_such_module:factory"], ConfigError,
     r"^sharing.algorithm = 'no_such_module:factory': no module named 'no_such_module'"),
    (["sharing.algorithm=event_triggered:nothing"], ConfigError,
     r"^sharing.algorithm = 'event_triggered:nothing': module event_triggered has no attribute 'nothing'"),
    (["sharing.options.threshold=-1"], ConfigError,
     r"^sharing.algorithm: event_triggered\(threshold=-1, decay=0.97\) raised ValueError: threshold = -1"),
    (["sharing.options.treshold=0.1"], ConfigError,
     r"^sharing.options.treshold: event_triggered takes no option 'treshold' \(it takes: threshold, decay\)"),
    (["sharing.algorithm=mlp:mlp"], ConfigError, r"^sharing.options.threshold: mlp takes no option 'threshold' "
                                                  r"\(it takes: num_classes, input_shape, hidden, depth\)"),
    (["sharing.algorithm=mlp:mlp", "sharing.options={}"], ConfigError,
     r"^sharing.algorithm: mlp\(\) raised TypeError"),
    (["sharing.algorithm=event_triggered:TriggerState", "sharing.options={}"], ConfigError,
     r"^sharing.algorithm: TriggerState\(\) raised TypeError"),
    (["sharing.algorithm=jwins.wire:Message", "sharing.options={}"], ConfigError,
     r"^sharing.algorithm: Message\(\) raised TypeError"),
    (["sharing.algorithm=numpy:zeros", "sharing.options={}"], ConfigError, r"^sharing.algorithm: .*raised TypeError"),
    (["model.name=event_triggered:event_triggered", "model.options={}"], ConfigError,
     r"^model.name: the model factory returned a EventTriggered, not a torch nn.Module"),
    (["data.name=mlp:mlp"], ConfigError, r"^data.name: mlp\(\) raised TypeError"),
    (["topology.kind=networkx:star_graph"], TopologyError, r"^the graph has 9 nodes but nodes = 8; they must match"),
    (["topology.kind=networkx:empty_graph"], TopologyError, r"graph is disconnected: 8 components"),
]


@pytest.mark.parametrize("overrides,error,match", BAD, ids=[b[0][0] for b in BAD])
def test_a_bad_plugin_fails_before_any_work_in_one_line(overrides, error, match, tmp_path):
    cfg = config.load(EXAMPLE, overrides)
    with pytest.raises(error, match=match) as info:
        run(cfg, run_dir=tmp_path / "run")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "run").exists()  # nothing was written: it failed before any work


def test_an_object_that_is_not_a_sharing_algorithm_is_named():
    cfg = config.load(EXAMPLE, [*QUICK, "sharing.options={}"])
    with pytest.raises(ConfigError, match=r"sharing.algorithm: object is not a sharing algorithm: it has no init, "
                                          r"message_dim, prepare, merge"):
        run(cfg, sharing=lambda: object(), write=False)


def test_the_cli_prints_one_line_for_a_missing_plugin(tmp_path):
    done = _cli("run", "--algorithm", "nowhere:algo", "--rounds", "1", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == ("jwins: error: sharing.algorithm = 'nowhere:algo': no module named 'nowhere' "
                                   "(looked in the working directory, the config file's folder and the installed "
                                   "packages)")
    assert not JwinsError.__subclasses__() == []  # (the error hierarchy is importable)


def test_a_sharing_object_is_refused_a_lossy_codec_it_cannot_follow(tmp_path):
    """CHOCO-SGD built by hand without rounding= would let the copies of x_hat drift with float16 values: refused
    in one line; its factory gets the codec's rounding, and an object built with it runs."""
    from jwins import wire
    from jwins.sharing import choco

    cfg = jwins.load_config(overrides=["nodes=6", "rounds=2", "topology.degree=2", "data.max_samples=300",
                                       "wire.value_codec=float16", "sharing.algorithm=choco"])
    with pytest.raises(ConfigError, match=r"wire.value_codec = 'float16' rounds the values sent, but the sharing "
                                          r"object given to jwins.run was built without rounding="):
        jwins.run(cfg, sharing=choco(), write=False)
    by_factory = jwins.run(cfg, sharing=choco, write=False)
    by_object = jwins.run(cfg, sharing=choco(rounding=wire.roundtrip("float16")), write=False)
    by_name = jwins.run(cfg, write=False)
    assert by_factory.metrics[-1]["train_loss"] == by_object.metrics[-1]["train_loss"] == \
        by_name.metrics[-1]["train_loss"]


def test_importing_a_plugin_leaves_the_process_as_it_was(tmp_path, monkeypatch):
    """The working directory and the config's folder are on the import path for the import only; the malloc
    tuning of a run is undone when it ends."""
    import sys as _sys

    from jwins import parallel
    from jwins.registry import import_object

    (tmp_path / "myplugin_xyz.py").write_text("def factory():\n    return 42\n")
    monkeypatch.chdir(tmp_path)
    before = list(_sys.path)
    assert import_object("myplugin_xyz:factory", key="sharing.algorithm", search=[str(tmp_path)])() == 42
    assert _sys.path == before
    calls = []
    monkeypatch.setattr(parallel, "_mallopt", lambda mmap, trim: calls.append((mmap, trim)) or True)
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    run(config.load(overrides=["nodes=4", "rounds=1", "topology.degree=2", "data.max_samples=200"]), write=False)
    assert calls == [(256 << 20, 512 << 20), (128 << 10, 128 << 10)]  # tuned for the run, then glibc's defaults


def test_a_factory_taking_kwargs_is_offered_everything():
    """A model factory with **kwargs that names none of the offered values gets them all (the dataset's
    metadata) beside its options; one that names some gets just those."""
    from jwins.registry import call

    seen = {}

    def factory(width=4, **kwargs):
        seen.update(kwargs, width=width)
        return "built"

    assert call(factory, key="model.name", options={"width": 8, "depth": 2},
                offered={"num_classes": 10, "input_shape": (1, 8, 8)}) == "built"
    assert seen == {"num_classes": 10, "input_shape": (1, 8, 8), "width": 8, "depth": 2}

    def named(num_classes, **kwargs):
        return num_classes, kwargs

    assert call(named, key="model.name", offered={"num_classes": 3, "input_shape": (2,)}) == (3, {})
