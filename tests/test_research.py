"""Research-grade experiments: seeds with intervals, time-varying graphs, evaluation that scales, TensorBoard."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import reference_sharing as ref
from helpers import assert_resume_continues, rows
from jwins import config, topology
from jwins.compare import compare
from jwins.communication import communicate
from jwins.engine.local import LocalTransport
from jwins.experiment import run
from jwins.report import read_run, t_interval
from jwins.stats import crossing
from jwins.sharing import Mixing, choco
from jwins.world import build_world, evaluation_sample, resampled_graph

QUICK = ["nodes=8", "topology.degree=3", "data.max_samples=600", "wire.value_codec=float32", "eval.every=2"]


def _cfg(*extra: str) -> config.Config:
    return config.load(overrides=[*QUICK, *extra])




# ------------------------------------------------------------------------------------------------- seeds

def test_a_comparison_over_seeds_reports_means_and_t_intervals(tmp_path):
    """Every column is the mean over the seeds' runs and its 95% Student-t half-width; each seed changes the
    partition, the graph, the initial model and the batches."""
    result = compare(_cfg("rounds=4"), ["full", "jwins"], seeds=[0, 1, 2], out=tmp_path / "cmp", targets=[0.1, 0.2],
                     baselines=[])
    finals = {label: [json.loads((tmp_path / "cmp" / label / f"seed-{s}" / "summary.json").read_text())
                      ["final_accuracy"]["mean"] for s in (0, 1, 2)] for label in ("full", "jwins")}
    for row in result.rows:
        values = finals[row["label"]]
        assert row["seeds"] == 3
        assert row["final_mean"] == pytest.approx(np.mean(values))
        assert row["final_mean_ci"] == pytest.approx(t_interval(values))
        assert row["final_mean_ci"] == pytest.approx(4.302653 * np.std(values, ddof=1) / np.sqrt(3), rel=1e-5)
        for t in (0.1, 0.2):  # bytes to each extra target: the mean over every seed, a miss counted at its end
            crossings = [crossing(read_run(tmp_path / "cmp" / row["label"] / f"seed-{s}").metrics, t)
                         for s in (0, 1, 2)]
            assert row[f"bytes_to_{t:g}_reached"] == sum(c.bound != "not reached" for c in crossings)
            assert row[f"bytes_to_{t:g}"] == pytest.approx(np.mean([c.bytes for c in crossings]))
            assert row[f"bytes_to_{t:g}_bound"] == (">" if any(c.bound == "not reached" for c in crossings) else
                                                    "<" if any(c.bound == "at or before" for c in crossings) else "")
    configs = [json.loads((tmp_path / "cmp" / "full" / f"seed-{s}" / "config.json").read_text()) for s in (0, 1, 2)]
    assert [c["seed"] for c in configs] == [0, 1, 2]
    assert len({json.dumps(rows(tmp_path / "cmp" / "full" / f"seed-{s}")) for s in (0, 1, 2)}) == 3
    md = (tmp_path / "cmp" / "compare.md").read_text()
    assert "±" in md and "95% Student-t interval over 3 seeds" in md
    assert (tmp_path / "cmp" / "plots" / "accuracy_rounds.png").exists()


# ------------------------------------------------------------------------------------------------- graphs

def test_resampled_graphs_are_fresh_draws_of_the_family_from_the_seed():
    cfg = _cfg("topology.resample_every=1", "nodes=20")
    base = topology.regular(20, 3, seed=0)
    g1, g2 = resampled_graph(cfg, base, 1), resampled_graph(cfg, base, 2)
    assert g1 == resampled_graph(cfg, base, 1) and len({base, g1, g2}) == 3
    assert all(set(g.degrees.tolist()) == {3} for g in (g1, g2))
    ring = _cfg("topology.kind=ring", "topology.resample_every=1", "nodes=20")
    r1 = resampled_graph(ring, topology.ring(20), 1)
    assert r1 != topology.ring(20) and set(r1.degrees.tolist()) == {2}  # a ring, its nodes relabelled
    topology.check_connected(r1)


def _run_with_graphs(sharing, x0, graphs, rounds, *, index_codec=None):
    """communicate() round by round on the given graphs (with regraph calls, as the loop makes them)."""
    n = len(x0)
    params = torch.from_numpy(x0.copy())
    state = sharing.init(params, list(range(n)))
    for t in range(rounds):
        g = graphs[t]
        mixing = Mixing(topology.metropolis_hastings(g), tuple(range(n)))
        if t > 0 and g != graphs[t - 1] and hasattr(sharing, "regraph"):
            state = sharing.regraph(state, mixing)
        params = torch.from_numpy((params.numpy() + 0.05 * np.random.default_rng(t).normal(size=x0.shape))
                                  .astype(np.float32))
        yield params.numpy().copy(), g
        out = communicate(sharing, state, params, t, seed=7, graph=g, mixing=mixing, transport=LocalTransport(),
                          index_codec=index_codec)
        params, state = out.params, out.state
        yield out, g


def test_choco_on_a_changing_graph_equals_the_textbook_with_every_copy_known():
    """When neighbours change, CHOCO-SGD sends its whole public copy once and rebuilds s_i; it then equals the
    textbook algorithm in which every node knows every x_hat_j: s_i = sum_j w^t_ij x_hat_j on round t's graph."""
    n, dim, alpha, gamma = 10, 120, 0.2, 0.4
    graphs = [topology.regular(n, 3, seed=s) for s in (0, 0, 1, 2, 2, 3)]
    x0 = np.random.default_rng(0).normal(size=(n, dim)).astype(np.float32)
    hat = np.zeros((n, dim))
    steps = _run_with_graphs(choco(alpha=alpha, gamma=gamma), x0, graphs, len(graphs))
    for t in range(len(graphs)):
        x, g = next(steps)
        out, _ = next(steps)
        w = topology.metropolis_hastings(g)
        q = np.zeros_like(hat)
        for i in range(n):
            diff = x[i] - hat[i]
            keep = ref.top_indices(diff, int(round(alpha * dim)))
            q[i, keep] = diff[keep]
        hat = hat + q
        want = x + gamma * (w @ hat - hat)
        np.testing.assert_allclose(out.params.numpy(), want, rtol=1e-5, atol=1e-5, err_msg=f"round {t}")
        changed = t > 0 and g != graphs[t - 1]
        assert all(m.dense == changed for m in out.messages), f"round {t}: dense exactly when the graph changed"


@pytest.mark.parametrize("name", ["jwins", "topk"])
def test_accumulated_change_is_kept_across_a_new_neighbourhood(name):
    """JWINS and TopK keep each node's own accumulated change when neighbours change (it never depended on
    them): on per-round graphs they equal the reference run round by round on the same graphs."""
    n, dim = 10, 200
    graphs = [topology.regular(n, 3, seed=s) for s in range(5)]
    x0 = np.random.default_rng(1).normal(size=(n, dim)).astype(np.float32)
    if name == "jwins":
        from jwins.sharing import jwins
        sharing = jwins(transform="identity", alphas=(0.1, 0.3, 1.0))
        reference = ref.RefPartialModel([r for r in x0], [list(nb) for nb in graphs[0].neighbors], seed=7,
                                        alphas=(0.1, 0.3, 1.0))
    else:
        from jwins.sharing import topk
        sharing = topk(alpha=0.2)
        reference = ref.RefPartialModel([r for r in x0], [list(nb) for nb in graphs[0].neighbors], seed=7,
                                        alphas=(0.2,))
    steps = _run_with_graphs(sharing, x0, graphs, len(graphs))
    for t, g in enumerate(graphs):
        x, _ = next(steps)
        out, _ = next(steps)
        reference.neighbors = [list(nb) for nb in g.neighbors]
        reference.w = ref.mh_weights(reference.neighbors)
        want, _ = reference.round([r.copy() for r in x], t)
        np.testing.assert_allclose(out.params.numpy(), np.stack(want), rtol=1e-5, atol=1e-6, err_msg=f"round {t}")


def test_full_sharing_on_a_resampled_graph_mixes_with_each_rounds_weights():
    """D-PSGD with topology.resample_every = 2 through the whole loop: one round equals W_t x on the graph of its
    epoch (consensus only, no training)."""
    cfg = _cfg("train.local_steps=0", "model.same_init=false", "rounds=5", "topology.resample_every=2",
               "eval.every=0")
    world, x = build_world(cfg, list(range(cfg.nodes)))
    result = run(cfg, write=False)
    x = x.double()
    for t in range(5):
        g = world.graph if t < 2 else resampled_graph(cfg, world.graph, t // 2)
        x = torch.from_numpy(topology.metropolis_hastings(g)) @ x
    torch.testing.assert_close(result.params.double(), x, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("algorithm", ["choco", "jwins"])
def test_a_resumed_run_on_a_resampled_graph_continues_the_same_run(tmp_path, algorithm):
    """Stopped mid-epoch (round 4 of epochs of 3) and resumed: the same graphs and the same numbers."""
    cfg = _cfg(f"sharing.algorithm={algorithm}", "topology.resample_every=3", "rounds=8", "checkpoint.every=4")
    assert_resume_continues(cfg, tmp_path, cut=4)


@pytest.mark.parametrize("cut", [4, 6])
def test_choco_resumed_where_the_graph_returns_to_the_first_one_resyncs(tmp_path, cut):
    """A 4-node ring relabelled every round comes back to its first graph at epochs 4 and 6 (seed 0), right
    after a different one: resumed at that round, CHOCO-SGD must resync exactly as the uninterrupted run does."""
    cfg = _cfg("nodes=4", "topology.kind=ring", "topology.resample_every=1", "sharing.algorithm=choco",
               "rounds=8", "checkpoint.every=1", "eval.every=1")
    base = topology.ring(4)
    relabelled = resampled_graph(cfg, base, cut)
    assert resampled_graph(cfg, base, cut - 1) != relabelled
    assert (relabelled if cut else base) == build_world(cfg, list(range(4)))[0].graph  # back to the first graph
    assert_resume_continues(cfg, tmp_path, cut=cut)


# ------------------------------------------------------------------------------------------------- evaluation

def test_the_evaluation_sample_comes_from_the_seed_and_is_the_same_for_every_algorithm():
    a = evaluation_sample(_cfg("nodes=96", "topology.degree=4"), 10_000)
    b = evaluation_sample(_cfg("nodes=96", "topology.degree=4", "sharing.algorithm=jwins"), 10_000)
    c = evaluation_sample(_cfg("nodes=96", "topology.degree=4", "seed=1"), 10_000)
    assert np.array_equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert len(a[0]) == 16 and len(a[1]) == 2000 and not np.array_equal(a[0], c[0])
    assert list(evaluation_sample(_cfg("eval.nodes=0", "eval.max_samples=0"), 50)[0]) == list(range(8))


def test_final_full_evaluates_every_node_on_every_test_sample():
    cfg = _cfg("nodes=8", "eval.nodes=2", "eval.max_samples=50", "rounds=2", "eval.final_full=true")
    result = run(cfg, write=False)
    sampled = run(cfg.replace(eval=cfg.eval.__class__(every=2, nodes=0, max_samples=0)), write=False)
    final = result.metrics[-1]
    assert final["test_accuracy"] == pytest.approx(sampled.metrics[-1]["test_accuracy"])
    assert final["test_accuracy_min"] == pytest.approx(sampled.metrics[-1]["test_accuracy_min"])


def test_jwins_run_says_when_evaluation_would_dominate(capsys, monkeypatch):
    """After the first round the loop times one forward batch and, if the evaluations would take longer than the
    rounds, says so at once (the timing is replaced here, so the test does not depend on the machine's load)."""
    from jwins import experiment

    monkeypatch.setattr(experiment, "_forward_seconds", lambda *a: 30.0)  # a slow evaluation
    run(_cfg("rounds=3", "eval.every=1"), write=False)
    err = capsys.readouterr().err
    assert "jwins: warning: evaluation will take about" in err and "lower eval.nodes or eval.max_samples" in err
    monkeypatch.setattr(experiment, "_forward_seconds", lambda *a: 0.0)
    run(_cfg("rounds=3", "eval.every=1"), write=False)
    assert "evaluation will take" not in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------- logging

def test_tensorboard_events_hold_the_metrics(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run(_cfg("rounds=4", "log.tensorboard=true"), run_dir=tmp_path / "r")
    rows = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    events = EventAccumulator(str(tmp_path / "r" / "tensorboard"))
    events.Reload()
    for key in ("train_loss", "bytes_sent", "cumulative_bytes", "test_accuracy"):
        logged = [(e.step, e.value) for e in events.Scalars(key)]
        want = [(r["round"], r[key]) for r in rows if key in r]
        assert [s for s, _ in logged] == [s for s, _ in want]
        np.testing.assert_allclose([v for _, v in logged], [v for _, v in want], rtol=1e-6)


def test_bytes_to_match_finds_the_first_evaluation_at_the_references_final_accuracy(tmp_path):
    """examples/bytes_to_match.py, quoted in docs/results.md: per seed, the reference's final accuracy, where it
    was first reached, and where the other run first reached it (or never)."""
    import subprocess
    import sys
    from pathlib import Path

    def write(run, seed, points):
        d = tmp_path / run / f"seed-{seed}"
        d.mkdir(parents=True)
        lines = [{"round": r, "cumulative_bytes": mb * 1e6, "test_accuracy": a} for r, mb, a in points]
        lines.insert(1, {"round": 99, "cumulative_bytes": 0.0})  # not evaluated: ignored
        (d / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
        (d / "config.json").write_text("{}")

    write("ref", 0, [(10, 1.0, 0.5), (20, 2.0, 0.7), (30, 3.0, 0.65)])  # ends at 0.65, first reached at round 20
    write("ours", 0, [(10, 0.5, 0.6), (20, 0.8, 0.66), (30, 1.2, 0.9)])
    write("ref", 1, [(10, 1.0, 0.8)])
    write("ours", 1, [(10, 0.5, 0.7)])
    script = Path(__file__).parent.parent / "examples" / "bytes_to_match.py"
    out = subprocess.run([sys.executable, str(script), str(tmp_path), "ours", "ref"], capture_output=True,
                         text=True, check=True).stdout.splitlines()
    assert out == [
        "seed-0: ref ends at 65.00%, first reached at round 20 (2.000 MB); ours reaches it at round 20, 0.800 MB:"
        " 2.50x fewer bytes",
        "seed-1: ref ends at 80.00%, first reached at round 10 (1.000 MB); ours never reaches it",
    ]
    single = tmp_path / "one-seed"
    for run in ("ours", "ref"):
        (single / run).mkdir(parents=True)
        (single / run / "metrics.jsonl").write_text((tmp_path / run / "seed-0" / "metrics.jsonl").read_text())
        (single / run / "config.json").write_text("{}")
    out = subprocess.run([sys.executable, str(script), str(single), "ours", "ref"], capture_output=True,
                         text=True, check=True).stdout.splitlines()
    assert out == ["ref ends at 65.00%, first reached at round 20 (2.000 MB); ours reaches it at round 20, 0.800 MB:"
                   " 2.50x fewer bytes"]
    missing = subprocess.run([sys.executable, str(script), str(tmp_path), "absent", "ref"], capture_output=True,
                             text=True)
    assert missing.returncode == 2
    assert missing.stderr.strip() == f"bytes_to_match: run directory {tmp_path / 'absent' / 'seed-0'} does not exist"
