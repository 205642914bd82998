"""Distributed-runtime benchmark: rounds per second of the same experiment with 1 and 2 local workers.

    python benchmarks/distributed.py                          # 16 and 96 nodes, workers 1 and 2, digits
    python benchmarks/distributed.py --nodes 16 --workers 1,2,4 --rounds 10 --algorithm full

Each case is a plain ``jwins run`` in a fresh process (workers = 1: the local engine, all nodes in one
process; workers = K > 1: ``engine.workers=K``, K gloo ranks on 127.0.0.1 started by the launcher). What is
timed is rank 0's loop (summary.json ``seconds_per_round``: from the first round to the last, evaluation every
``--eval-every`` rounds included), not process start-up, data loading or the rendezvous. Also printed: the
seconds per round rank 0 spent in each phase; "exchange" is where the engines differ (in-memory dict vs.
sizes + payload over gloo, which also absorbs waiting for the slowest rank).

Threads: by default every process uses one torch thread (``engine.threads=1``), so the comparison is one
process against K processes. ``--threads 0`` keeps torch's default in the single process and the launcher's
cores // K per rank instead; with tiny per-node batches and other load on the machine, intra-op threads can
make the single process much slower (OpenMP threads wait on each other), which is not the engine's doing.
Data: digits (sklearn's 8x8 digits, bundled), the small CNN, jwins sharing with fpzip values by default.
fpzip values are decoded in an isolated helper process (one per rank), so "decode" pays a pipe round trip per
message, which grows when ranks and helpers compete for few cores; ``--value-codec float32`` avoids it.
Not a test; it prints a table.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_case(nodes: int, workers: int, args: argparse.Namespace, out: Path) -> dict:
    argv = [sys.executable, "-m", "jwins", "run", "--nodes", str(nodes), "--rounds", str(args.rounds),
            "--algorithm", args.algorithm, "--dataset", "digits", "--out", str(out), "--quiet", "--no-plots",
            "--set", f"topology.degree={args.degree}", "--set", f"eval.every={args.eval_every}",
            "--set", f"engine.workers={workers}", "--set", f"train.local_steps={args.local_steps}",
            "--set", f"engine.threads={args.threads}", "--set", f"wire.value_codec={args.value_codec}"]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "OMP_NUM_THREADS")}
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"case nodes={nodes} workers={workers} failed:\n{done.stderr}")
    summary = json.loads((out / "summary.json").read_text())
    return {"nodes": nodes, "workers": workers, "s_per_round": summary["seconds_per_round"],
            "phases": {k: v / summary["rounds"] for k, v in summary["phase_seconds"].items()}, "wall": wall}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", default="16,96", help="comma-separated node counts (default 16,96)")
    p.add_argument("--workers", default="1,2", help="comma-separated worker counts (default 1,2)")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--algorithm", default="jwins")
    p.add_argument("--degree", type=int, default=4)
    p.add_argument("--local-steps", type=int, default=3)
    p.add_argument("--eval-every", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch threads per process (0: torch's default)")
    p.add_argument("--value-codec", default="fpzip", help="wire.value_codec (default fpzip, the config default)")
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="jwins-bench-") as tmp:
        for nodes in [int(n) for n in args.nodes.split(",")]:
            for workers in [int(w) for w in args.workers.split(",")]:
                rows.append(run_case(nodes, workers, args, Path(tmp) / f"n{nodes}-w{workers}"))
    print(f"jwins distributed benchmark: digits, small CNN, {args.algorithm} ({args.value_codec}), "
          f"degree {args.degree}, "
          f"{args.local_steps} local steps, {args.rounds} rounds, eval every {args.eval_every}; "
          f"{os.cpu_count()} cores, {args.threads or 'default'} thread(s) per process")
    phases = ["train", "prepare", "encode", "exchange", "decode", "merge", "evaluate"]
    header = f"{'nodes':>5} {'workers':>7} {'rounds/s':>9} {'ms/round':>9}  " + \
             " ".join(f"{ph:>8}" for ph in phases) + f"  {'wall s':>6}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['nodes']:>5} {r['workers']:>7} {1 / r['s_per_round']:>9.2f} {1000 * r['s_per_round']:>9.1f}  "
              + " ".join(f"{1000 * r['phases'].get(ph, 0.0):>8.1f}" for ph in phases) + f"  {r['wall']:>6.1f}")
    print("(phase columns: ms per round on rank 0; wall: the whole command, start-up included)")


if __name__ == "__main__":
    main()
