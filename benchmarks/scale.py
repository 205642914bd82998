"""Scale benchmark: seconds per round, peak memory and set-up time from 16 to 10,000 nodes in one process.

    python benchmarks/scale.py                                   # N = 16, 96, 1,000, 10,000, every algorithm
    python benchmarks/scale.py --nodes 96,1000 --algorithms local,jwins

For every N it runs, each in a fresh subprocess (so that each reads its own peak RSS), the training floor
``local`` (the same training, no communication) and every built-in algorithm, and prints one table: seconds per
round (the median of the measured rounds), the ratio to ``local`` at the same N (and the same ratio "by
phases": local's round plus this algorithm's prepare, encode, decode and merge, which does not move with the
noise of the training phase), the phases, the peak RSS (in
all and per node), and the set-up time (data, partition, graph, initial models and sharing state, until the
first round starts).

Setting: LeNet (89,834 parameters) on CIFAR-10-shaped synthetic data (``--cifar-samples`` training images,
default 50,000 as the real set, written in the real ``cifar-10-batches-py`` format to a temporary folder), IID
partition, 4-regular graph, batch 8, 3 local steps, pcodec values, TopK/CHOCO-SGD/subsampling at alpha = 0.1,
JWINS with its default cut-off list; sampled evaluation (``--eval-nodes`` nodes on ``--eval-samples`` test
images, once at the end, not counted in the rounds).

It is a benchmark, not a test: it prints a table.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ALGORITHMS = ("local", "full", "subsample", "topk", "choco", "jwins")
PHASES = ("train", "prepare", "encode", "decode", "merge")


def child(spec: dict) -> dict:
    """One configuration: per-round seconds by phase, set-up seconds, peak RSS."""
    import resource

    from jwins import config as config_mod
    from jwins import experiment

    started = time.perf_counter()
    marks: dict[str, float] = {}
    records: dict[str, list[float]] = {p: [] for p in experiment.PHASES}

    class RecordingTimer(experiment.Timer):
        def __call__(self, phase: str):
            inner = super().__call__(phase)
            outer = self

            class _Ctx:
                def __enter__(self_inner):
                    marks.setdefault("first_phase", time.perf_counter())
                    self_inner.before = outer.totals[phase]
                    return inner.__enter__()

                def __exit__(self_inner, *exc):
                    inner.__exit__(*exc)
                    records[phase].append(outer.totals[phase] - self_inner.before)
            return _Ctx()

    experiment.Timer = RecordingTimer
    overrides = [
        f"nodes={spec['nodes']}", f"rounds={spec['warmup'] + spec['rounds']}", "seed=0",
        "data.name=cifar10", f"data.root={spec['root']}", "data.partition=iid",
        "topology.kind=regular", "topology.degree=4", "train.local_steps=3", "train.batch_size=8",
        f"sharing.algorithm={spec['algorithm']}", "sharing.alpha=0.1", "wire.value_codec=pcodec",
        "eval.every=0", f"eval.nodes={min(spec['eval_nodes'], spec['nodes'])}",
        f"eval.max_samples={spec['eval_samples']}", *spec.get("extra", []),
    ]
    cfg = config_mod.load(overrides=overrides)
    result = experiment.run(cfg, write=False)
    rounds = [m["round_seconds"] for m in result.metrics]
    evaluate = sum(records["evaluate"])
    rounds[-1] -= evaluate
    per_round = {p: records[p][spec["warmup"]:] for p in PHASES}
    return {"spec": spec, "round": rounds[spec["warmup"]:], "phases": per_round,
            "setup": marks.get("first_phase", started) - started,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
            "dim": int(result.params.shape[1])}


def run_child(spec: dict) -> dict | None:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True,
                          env=env)
    if proc.returncode != 0:
        print(f"  {spec['algorithm']} at N = {spec['nodes']} failed: {proc.stderr.strip().splitlines()[-1:]}",
              file=sys.stderr, flush=True)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(results: list[dict]) -> str:
    floor = {r["spec"]["nodes"]: statistics.median(r["round"]) for r in results if r["spec"]["algorithm"] == "local"}
    head = ["N", "algorithm", "s/round", "x local", "x local by phases", *(f"{p} s" for p in PHASES), "peak GB",
            "MB/node", "set-up s"]
    lines = []
    for r in results:
        n, alg = r["spec"]["nodes"], r["spec"]["algorithm"]
        s = statistics.median(r["round"])
        ratio = f"{s / floor[n]:.2f}" if n in floor and alg != "local" else "-"
        medians = {p: statistics.median(r["phases"][p]) for p in PHASES if r["phases"][p]}
        # the same ratio with this run's training replaced by local's: the training phase alone varies by up to
        # 10% from run to run on a shared machine, the communication phases far less
        added = sum(v for p, v in medians.items() if p != "train")
        by_phases = f"{1 + added / floor[n]:.2f}" if n in floor and alg != "local" else "-"
        phases = [f"{medians[p]:.3f}" if p in medians else "-" for p in PHASES]
        lines.append([f"{n:,}", alg, f"{s:.2f}", ratio, by_phases, *phases, f"{r['peak_rss_mb'] / 1024:.2f}",
                      f"{r['peak_rss_mb'] / n:.2f}", f"{r['setup']:.1f}"])
    widths = [max(len(x) for x in col) for col in zip(head, *lines)]
    fmt = (lambda row: "  ".join(c.rjust(w) if i > 1 else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))))
    return "\n".join([fmt(head), fmt(["-" * w for w in widths]), *(fmt(x) for x in lines)])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", default="16,96,1000,10000")
    ap.add_argument("--algorithms", default=",".join(ALGORITHMS))
    ap.add_argument("--rounds", type=int, default=3, help="measured rounds (2 at 10,000 nodes and more)")
    ap.add_argument("--warmup", type=int, default=1, help="rounds not counted (none at 10,000 nodes and more)")
    ap.add_argument("--cifar-samples", type=int, default=50_000)
    ap.add_argument("--eval-nodes", type=int, default=4)
    ap.add_argument("--eval-samples", type=int, default=500)
    ap.add_argument("--set", dest="extra", action="append", default=[], help="a config override for every run")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    sys.path.insert(0, str(HERE))
    from round import write_synthetic_cifar  # the same synthetic CIFAR-10 files as benchmarks/round.py

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        root = str(write_synthetic_cifar(Path(tmp), args.cifar_samples))
        for n in [int(x) for x in args.nodes.split(",")]:
            big = n >= 10_000
            for alg in args.algorithms.split(","):
                spec = {"nodes": n, "algorithm": alg, "root": root, "rounds": 2 if big else args.rounds,
                        "warmup": 0 if big else args.warmup, "eval_nodes": args.eval_nodes,
                        "eval_samples": args.eval_samples, "extra": args.extra}
                t0 = time.perf_counter()
                out = run_child(spec)
                if out is not None:
                    results.append(out)
                    print(f"  N = {n:,} {alg}: {statistics.median(out['round']):.2f} s/round, "
                          f"{out['peak_rss_mb'] / 1024:.2f} GB, set-up {out['setup']:.1f} s "
                          f"({time.perf_counter() - t0:.0f} s in all)", file=sys.stderr, flush=True)
    print(table(results))


if __name__ == "__main__":
    main()
