"""End-to-end behaviour of the experiment loop: consensus, averaging, determinism, the run directory."""
from __future__ import annotations

import json

import pytest
import torch

import jwins
from helpers import rows
from jwins import config, topology
from jwins.experiment import build_world, run

QUICK = ["nodes=8", "rounds=4", "topology.degree=3", "eval.every=2", "data.max_samples=600",
         "wire.value_codec=float32"]


def _cfg(*extra: str):
    return config.load(overrides=[*QUICK, *extra])


def test_consensus_converges_at_the_spectral_rate():
    """lr = 0 (no local steps) and distinct inits: every node approaches the initial global mean, with the
    deviation shrinking by at most the second eigenvalue modulus of W per round."""
    cfg = _cfg("train.local_steps=0", "model.same_init=false", "rounds=30", "eval.every=0")
    world, x0 = build_world(cfg, list(range(cfg.nodes)))
    result = run(cfg, write=False)
    w = topology.metropolis_hastings(world.graph)
    lam = 1 - topology.spectral_gap(w)
    mean = x0.mean(0, keepdim=True)
    dev0 = torch.linalg.norm(x0 - mean)
    dev = torch.linalg.norm(result.params - mean)
    torch.testing.assert_close(result.params.mean(0), x0.mean(0), atol=1e-5, rtol=0)
    assert dev <= dev0 * lam ** 30 * 1.01 + 1e-4
    assert dev < 0.5 * dev0


def test_full_graph_reaches_the_exact_mean_in_one_round():
    cfg = _cfg("train.local_steps=0", "model.same_init=false", "rounds=1", "topology.kind=full")
    world, x0 = build_world(cfg, list(range(cfg.nodes)))
    result = run(cfg, write=False)
    expected = x0.mean(0, keepdim=True).expand_as(x0)
    torch.testing.assert_close(result.params, expected, atol=1e-6, rtol=0)


def test_full_sharing_equals_dense_mixing_matrix_product():
    """One round of the simulator's full sharing (through the wire) equals W @ X."""
    cfg = _cfg("train.local_steps=0", "model.same_init=false", "rounds=1")
    world, x0 = build_world(cfg, list(range(cfg.nodes)))
    w = torch.from_numpy(topology.metropolis_hastings(world.graph)).float()
    result = run(cfg, write=False)
    torch.testing.assert_close(result.params, w @ x0, atol=1e-6, rtol=1e-5)




@pytest.mark.parametrize("algorithm", ["full", "jwins"])
def test_same_seed_same_metrics_different_seed_differs(tmp_path, algorithm):
    a = run(_cfg(f"sharing.algorithm={algorithm}"), run_dir=tmp_path / "a")
    b = run(_cfg(f"sharing.algorithm={algorithm}"), run_dir=tmp_path / "b")
    c = run(_cfg(f"sharing.algorithm={algorithm}", "seed=1"), run_dir=tmp_path / "c")
    assert rows(a.run_dir) == rows(b.run_dir)
    assert rows(a.run_dir) != rows(c.run_dir)


def test_run_directory_layout(tmp_path):
    result = run(_cfg(), run_dir=tmp_path / "run")
    d = result.run_dir
    saved = config.load(d / "config.json")
    assert saved == _cfg()
    rows = [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rows] == [1, 2, 3, 4]
    assert {"train_loss", "bytes_sent", "cumulative_bytes", "seconds", "bytes_indices", "bytes_values",
            "bytes_header"} <= set(rows[0])
    assert "test_accuracy" not in rows[0] and {"test_accuracy", "test_accuracy_min", "test_accuracy_max",
                                                "test_loss"} <= set(rows[1])
    summary = json.loads((d / "summary.json").read_text())
    assert summary["algorithm"] == "full" and summary["nodes"] == 8 and summary["rounds"] == 4
    assert summary["final_accuracy"]["mean"] == rows[-1]["test_accuracy"]
    assert summary["bytes_sent_per_node"] == pytest.approx(rows[-1]["cumulative_bytes"])
    # full sharing with float32 values: every node sends D*4 bytes plus a header to each of its 3 neighbours
    world, _ = build_world(_cfg(), list(range(8)))
    per_round = rows[0]["bytes_sent"]
    assert rows[0]["bytes_values"] == 4 * world.flat.dim * 3
    assert per_round == rows[0]["bytes_values"] + rows[0]["bytes_header"] and rows[0]["bytes_indices"] == 0


def test_local_sends_nothing_and_training_learns():
    result = run(_cfg("sharing.algorithm=local", "rounds=2"), write=False)
    assert result.summary["bytes_sent_per_node"] == 0
    trained = run(_cfg("rounds=30", "train.lr=0.1", "eval.every=30"), write=False)
    assert trained.summary["final_accuracy"]["mean"] > 0.3  # 10 classes: chance is 0.1


def test_public_api_is_what_the_cli_wraps(tmp_path, capsys):
    from jwins.cli import main

    code = main(["run", "--quiet", "--nodes", "8", "--rounds", "2", "--set", "topology.degree=3",
                 "--set", "data.max_samples=400", "--out", str(tmp_path / "cli")])
    assert code == 0
    out = capsys.readouterr().out
    assert "final accuracy" in out and "bytes sent per node" in out
    assert (tmp_path / "cli" / "summary.json").exists()
    from jwins import api

    assert jwins.run is api.run  # the CLI's `jwins run` calls this very function


def test_cli_config_errors_are_one_line(capsys):
    from jwins.cli import main

    assert main(["run", "--set", "topology.degree=20"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "jwins: error: topology.degree = 20 must be < nodes = 16; lower the degree or add nodes"


def test_more_nodes_than_samples_is_an_error():
    with pytest.raises(jwins.JwinsError, match="nodes = 64 > 50 training samples"):
        run(config.load(overrides=["nodes=64", "data.max_samples=50", "rounds=1"]), write=False)


def test_a_diverged_model_is_named_from_its_values(capsys, tmp_path):
    """Training that diverges is said in one line, found from the values themselves (not an error text)."""
    from jwins.cli import main

    code = main(["run", "--quiet", "--no-plots", "--out", str(tmp_path / "r"), "--nodes", "4", "--rounds", "5", "--set", "topology.degree=2",
                 "--set", "data.max_samples=200", "--set", "train.lr=500", "--set", "wire.value_codec=pcodec"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "model is not finite in round 1 (training diverged: " in err[0] and "lower train.lr" in err[0]


def test_a_run_that_cannot_fit_says_so_at_start_with_the_nodes_that_fit(tmp_path):
    """engine.memory_gb below what the nodes need: one line before any work, naming how many nodes fit; the
    estimate counts what the sharing state of one node really holds."""
    from jwins import world
    from jwins.errors import JwinsError

    cfg = config.load(overrides=["nodes=64", "topology.degree=3", "sharing.algorithm=jwins", "data.max_samples=500"])
    sharing, _ = world.build_sharing(cfg)
    dim = 6090  # small-cnn on digits' 8x8 images
    per_node = world.bytes_per_node(cfg, dim, sharing)
    state = sharing.init(torch.zeros(1, dim), [0])
    assert per_node == 4 * dim + 4 * (state.reference.numel() + state.accumulated.numel()) + \
        int(20 * sharing.message_dim(dim) * sharing.expected_fraction)
    tight = (world.BASELINE_BYTES + 40 * per_node + 4 * (8 << 20) * 2 + 2_000_000) / 2**30
    with pytest.raises(JwinsError, match=r"^64 nodes need about .* GB \(.* MB per node and .* GB for the data and "
                                         r"the rest\), more than engine.memory_gb = .*: about \d+ nodes fit; use "
                                         r"fewer nodes, or more ranks or machines"):
        run(cfg.replace(engine=cfg.engine.__class__(memory_gb=tight)), run_dir=tmp_path / "r")
    assert not (tmp_path / "r").exists()
    assert run(cfg.replace(rounds=1, engine=cfg.engine.__class__(memory_gb=8.0)), write=False).metrics
