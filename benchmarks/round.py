"""Round benchmark: seconds per round, split into phases, for many nodes in one process.

    python benchmarks/round.py                                  # the full table (about 10-15 minutes on 2 cores)
    python benchmarks/round.py --nodes 16 --datasets cifar10    # one slice
    python benchmarks/round.py --threads 1,2                    # compare torch intra-op thread counts
    python benchmarks/round.py --code before=/tmp/old/src       # also run another checkout's code, interleaved

For every (dataset, N) it runs, interleaved and each in a fresh subprocess (so that each reads its own peak
RSS): the "training floor" ``sharing.algorithm = local`` (the same training, no sharing), full sharing and
JWINS, with the value codec at its default (fpzip) and float32. Each run does ``--warmup`` rounds that are
not counted, then ``--rounds`` measured ones; ``--repeats`` > 1 repeats the whole interleaved sequence and
pools the measured rounds. Times are medians over measured rounds; ``x floor`` is the round time over the
median round time of ``local`` for the same (dataset, N, threads). Evaluation is measured separately: the
last round of every run evaluates ``--eval-nodes`` nodes on the whole test set and the table reports
seconds per evaluated node.

Data: CIFAR-10-shaped data is synthetic (random images, ``--cifar-samples`` training and 10,000 test samples,
written in the real ``cifar-10-batches-py`` pickle format to a temporary directory); Fashion-MNIST is the real
data set if it is installed (``/usr/share/datasets/fashion-mnist``), else skipped. LeNet (89,834 parameters)
for CIFAR-10, the small CNN (20,490) for Fashion-MNIST; 3-regular graph, batch 8, 3 local steps (the
decentralizepy JWINS tutorial's settings).

It is a benchmark, not a test: it prints tables.
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PHASES = ("train", "prepare", "encode", "exchange", "decode", "merge")
FASHION = Path("/usr/share/datasets/fashion-mnist")
REFERENCE = {"jwins": 0.296, "full": 0.165}  # decentralizepy, 16 nodes, LeNet/CIFAR-10, seconds per round


# ---------------------------------------------------------------------------------------------- child side

def child(spec: dict) -> dict:
    """Run one configuration; return per-round phase times, evaluation cost and peak RSS."""
    import resource

    import torch

    from jwins import config as config_mod
    from jwins import experiment

    records: dict[str, list[float]] = {p: [] for p in experiment.PHASES}
    marks: dict[str, float] = {}

    class RecordingTimer(experiment.Timer):  # the loop's own timer, keeping every interval
        def __call__(self, phase: str):
            inner = super().__call__(phase)
            outer = self

            class _Ctx:
                def __enter__(self_inner):
                    if phase == "evaluate" and "rss_before_eval" not in marks:
                        marks["rss_before_eval"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
                    self_inner.before = outer.totals[phase]
                    return inner.__enter__()

                def __exit__(self_inner, *exc):
                    inner.__exit__(*exc)
                    records[phase].append(outer.totals[phase] - self_inner.before)
            return _Ctx()

    experiment.Timer = RecordingTimer
    warmup, rounds = spec["warmup"], spec["rounds"]
    overrides = [
        f"nodes={spec['nodes']}", f"rounds={warmup + rounds}", f"seed={spec.get('seed', 0)}",
        f"data.name={spec['dataset']}", f"data.root={spec['root']}",
        "topology.kind=regular", "topology.degree=3",
        "train.local_steps=3", "train.batch_size=8", f"train.method={spec.get('method', 'loop')}",
        f"sharing.algorithm={spec['algorithm']}", f"wire.value_codec={spec['codec']}",
        "eval.every=0", f"eval.nodes={min(spec['eval_nodes'], spec['nodes'])}",
        f"engine.threads={spec['threads']}",
        *spec.get("extra", []),
    ]
    cfg = config_mod.load(overrides=overrides)
    t0 = time.perf_counter()
    result = experiment.run(cfg, write=False)
    wall = time.perf_counter() - t0
    evaluate = sum(records["evaluate"])
    round_seconds = [m["round_seconds"] for m in result.metrics]
    round_seconds[-1] -= evaluate  # the final round evaluated; report it separately
    out = {
        "spec": spec,
        "round": round_seconds[warmup:],
        "phases": {p: records[p][warmup:] for p in PHASES},
        "eval_per_node": evaluate / max(1, min(spec["eval_nodes"], spec["nodes"])),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "rounds_rss_mb": marks.get("rss_before_eval", float("nan")),
        "jwins": str(Path(experiment.__file__).parent),
        "wall": wall,
        "threads": torch.get_num_threads(),
        "dim": int(result.params.shape[1]),
        "bytes_per_round": result.metrics[-1]["bytes_sent"],
    }
    return out


# --------------------------------------------------------------------------------------------- parent side

def write_synthetic_cifar(root: Path, train: int, test: int = 10_000, seed: int = 0) -> Path:
    """Random CIFAR-10-shaped data in the python-pickle layout (data_batch_1..5, test_batch)."""
    import numpy as np

    g = np.random.default_rng(seed)
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True, exist_ok=True)
    per = -(-train // 5)
    for name, n in [(f"data_batch_{i}", per) for i in range(1, 6)] + [("test_batch", test)]:
        labels = g.integers(0, 10, size=n)
        # a little label signal so that training has something to learn
        base = g.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        data = ((base.astype(np.int32) // 2) + (labels[:, None] * 12)).clip(0, 255).astype(np.uint8)
        (d / name).write_bytes(pickle.dumps({b"data": data, b"labels": labels.tolist()}))
    return root


def run_child(spec: dict) -> dict:
    env = dict(os.environ)
    env.setdefault("PYTHONHASHSEED", "0")
    if spec.get("src"):
        env["PYTHONPATH"] = spec["src"] + os.pathsep + env.get("PYTHONPATH", "")
    env.update(spec.get("env") or {})
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True,
                          text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"child failed for {spec}:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def table(results: list[dict]) -> str:
    head = (f"{'dataset':<13} {'N':>4} {'code':<6} {'thr':>3} {'algorithm':<10} {'codec':<7} {'s/round':>8} "
            f"{'x floor':>7} {'x train':>7} " + " ".join(f"{p:>8}" for p in PHASES)
            + f" {'other':>7} {'eval/node':>9} {'peak MB':>8} {'rnd MB':>7} {'MB/node':>7}")
    lines = [head, "-" * len(head)]
    floors: dict[tuple, float] = {}
    grouped: dict[tuple, list[dict]] = {}
    for r in results:
        s = r["spec"]
        grouped.setdefault((s["dataset"], s["nodes"], s.get("code", "now"), s["threads"], s["algorithm"],
                            s["codec"], s.get("method", "loop"), tuple(s.get("extra", []))), []).append(r)
    rows = []
    for key, runs in grouped.items():
        dataset, n, code, threads, algorithm, codec, method, extra = key
        rnd = median([x for r in runs for x in r["round"]])
        phases = {p: median([x for r in runs for x in r["phases"][p]]) for p in PHASES}
        if algorithm == "local" and method == "loop" and not extra:
            floors[(dataset, n, code, threads)] = rnd
        # round time over the train phase of the same rounds: the finest-grained interleaving there is
        own = median([x / t for r in runs for x, t in zip(r["round"], r["phases"]["train"]) if t > 0])
        rows.append((key, rnd, own, phases, median([r["eval_per_node"] for r in runs]),
                     max(r["peak_rss_mb"] for r in runs), max(r.get("rounds_rss_mb", float("nan")) for r in runs)))
    for key, rnd, own, phases, ev, rss, rounds_rss in rows:
        dataset, n, code, threads, algorithm, codec, method, extra = key
        name = algorithm + ("/vmap" if method == "vmap" else "") + ("*" if extra else "")
        floor = floors.get((dataset, n, code, threads))
        ratio = f"{rnd / floor:7.2f}" if floor else f"{'':>7}"
        other = rnd - sum(phases.values())
        lines.append(f"{dataset:<13} {n:>4} {code:<6} {threads:>3} {name:<10} "
                     f"{codec if algorithm != 'local' else '-':<7} {rnd:8.3f} {ratio} {own:7.2f} "
                     + " ".join(f"{phases[p]:8.4f}" for p in PHASES)
                     + f" {other:7.4f} {ev:9.3f} {rss:8.0f} {rounds_rss:7.0f} {rss / n:7.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--nodes", default="16,96,256", help="comma-separated node counts")
    ap.add_argument("--datasets", default="cifar10,fashion-mnist")
    ap.add_argument("--algorithms", default="local,full,jwins")
    ap.add_argument("--codecs", default="fpzip,float32", help="value codecs for full and jwins")
    ap.add_argument("--threads", default="0", help="engine.threads values (0 = the loop's default)")
    ap.add_argument("--method", default="loop", help="train.method values: loop, vmap")
    ap.add_argument("--rounds", type=int, default=5, help="measured rounds per run")
    ap.add_argument("--warmup", type=int, default=1, help="rounds not counted")
    ap.add_argument("--repeats", type=int, default=1, help="repeat the interleaved sequence and pool")
    ap.add_argument("--eval-nodes", type=int, default=4, help="nodes evaluated in the last round")
    ap.add_argument("--cifar-samples", type=int, default=10_000, help="synthetic CIFAR-10 training samples")
    ap.add_argument("--cifar-root", default="", help="use this cifar-10-batches-py data instead of synthetic data")
    ap.add_argument("--set", action="append", default=[], help="extra config override for every run")
    ap.add_argument("--code", action="append", default=[],
                    help="LABEL=SRC[@THREADS][+VAR=VALUE...]: also run the jwins package under SRC (another "
                         "checkout's src/; empty: this one), interleaved, optionally with its own engine.threads "
                         "and environment variables")
    ap.add_argument("--json", help="also write the raw results here")
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return

    datasets = args.datasets.split(",")
    if "fashion-mnist" in datasets and not FASHION.is_dir():
        print(f"# {FASHION} not found: skipping Fashion-MNIST")
        datasets.remove("fashion-mnist")
    with tempfile.TemporaryDirectory(prefix="jwins-bench-") as tmp:
        roots = {"fashion-mnist": str(FASHION)}
        if "cifar10" in datasets:
            roots["cifar10"] = args.cifar_root or str(write_synthetic_cifar(Path(tmp), args.cifar_samples))
        codes = [("now", "", None, {})]
        for c in args.code:  # LABEL=SRC[@THREADS][+VAR=VALUE...]
            label, src = c.split("=", 1)
            src, *env = src.split("+")
            src, _, pinned = src.partition("@")
            codes.append((label, src, int(pinned) if pinned else None, dict(e.split("=", 1) for e in env)))
        specs = []
        for dataset in datasets:
            for n in [int(x) for x in args.nodes.split(",")]:
                for threads in [int(x) for x in args.threads.split(",")]:
                    for method in args.method.split(","):
                        for algorithm in args.algorithms.split(","):
                            for codec in (["float32"] if algorithm == "local" else args.codecs.split(",")):
                                for code, src, pinned, env in codes:
                                    specs.append(dict(dataset=dataset, root=roots[dataset], nodes=n,
                                                      threads=threads if pinned is None else pinned,
                                                      algorithm=algorithm, codec=codec,
                                                      method=method, warmup=args.warmup, rounds=args.rounds,
                                                      eval_nodes=args.eval_nodes, extra=args.set, code=code,
                                                      src=src, env=env))
        results = []
        start = time.perf_counter()
        for rep in range(args.repeats):
            for spec in specs:  # interleaved: every configuration once per repeat
                r = run_child(spec)
                results.append(r)
                print(f"# {spec['dataset']} N={spec['nodes']} {spec['code']} threads={spec['threads']} "
                      f"{spec['algorithm']} {spec['codec']} {spec['method']}: {median(r['round']):.3f} s/round "
                      f"({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
    print(f"# seconds per round (median of {args.rounds} rounds after {args.warmup} warm-up, x{args.repeats}); "
          f"phases in seconds; eval/node = seconds to evaluate one node on the whole test set; peak MB = peak RSS "
          f"of the run (fresh process), rnd MB = peak RSS before the final evaluation; MB/node = peak MB / N")
    print(table(results))
    for r in results:
        s = r["spec"]
        if s["dataset"] == "cifar10" and s["nodes"] == 16 and s["algorithm"] in REFERENCE and s["codec"] == "fpzip":
            ref = REFERENCE[s["algorithm"]]
            print(f"# cifar10 {s['algorithm']} N=16 ({s['code']}, threads={s['threads']}): {median(r['round']):.3f} "
                  f"s/round; decentralizepy {ref:.3f} s/round: ratio {ref / median(r['round']):.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
