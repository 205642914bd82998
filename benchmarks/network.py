"""The network time model against a real network: 16 LeNet nodes on 4 hosts (network namespaces with tbf-shaped
uplinks, benchmarks/hosts.py), full sharing, JWINS and CHOCO-SGD, uplinks of 10 and 100 Mbit/s.

    sudo python benchmarks/network.py                       # the table (a few minutes)
    sudo python benchmarks/network.py --rates 10 --rounds 4

Each run is the README's multi-machine recipe (static rendezvous, one rank per host) with ``network.hosts = 4``
and ``network.bandwidth_mbps`` at the link's rate, so one run records both its measured round time
(``round_seconds``) and what the model predicts for the same bytes and the compute each rank measured
(``network_seconds``, per round). The bytes each host put on its link (its interface's counter) are set beside
the payload that crosses hosts (each message once per other host with a neighbour of its sender, computed from
the messages of the same run replayed in the simulator) and the bytes the metrics report (every message once
per neighbour, within a host too). Needs root; prints tables.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import hosts  # noqa: E402

ALGORITHMS = {"full": [], "jwins": [], "choco": ["sharing.alpha=0.1", "sharing.gamma=0.2"]}


def settings(root: str, rounds: int, rate: float, hosts_count: int, algorithm: str) -> list[str]:
    return [f"nodes=16", f"rounds={rounds}", "data.name=cifar10", f"data.root={root}", "data.partition=iid",
            "topology.kind=regular", "topology.degree=4", "train.local_steps=3", "train.batch_size=8",
            f"sharing.algorithm={algorithm}", *ALGORITHMS[algorithm], "wire.value_codec=pcodec",
            "eval.every=0", "eval.nodes=2", "eval.max_samples=200", "engine.timeout=120",
            f"network.bandwidth_mbps={rate}", f"network.hosts={hosts_count}"]


def crossing_bytes(overrides: list[str], hosts_count: int) -> tuple[list[float], list[list[float]]]:
    """Per round: the bytes each host's messages must carry to other hosts (each message once per other host
    with a neighbour of its sender), from the simulator's messages (the same numbers as the distributed run)."""
    from jwins import config, experiment
    from jwins.engine import distributed
    from jwins.engine.local import LocalEngine

    cfg = config.load(overrides=overrides)
    bounds = distributed.block_bounds(cfg.nodes, hosts_count)
    host_of = {n: h for h in range(hosts_count) for n in range(int(bounds[h]), int(bounds[h + 1]))}
    per_round: list[list[float]] = []

    class Recording(LocalEngine):
        def __init__(self, n):
            super().__init__(n)
            inner = self.transport

            class Transport:
                trusted = inner.trusted

                def exchange(self, outgoing, graph, round):
                    out = [0.0] * hosts_count
                    for s, data in outgoing.items():
                        reached = {host_of[u] for u in graph.neighbors[s]} - {host_of[s]}
                        out[host_of[s]] += len(data) * len(reached)
                    per_round.append(out)
                    return inner.exchange(outgoing, graph, round)

            self.transport = Transport()

    result = experiment.run(cfg, engine=Recording(cfg.nodes), write=False)
    return [m["bytes_sent"] * cfg.nodes for m in result.metrics], per_round


def run_hosts(overrides: list[str], rate: float, count: int, work: Path) -> dict:
    toml = work / "config.toml"
    from jwins import config

    tree = config.to_dict(config.load(overrides=overrides))
    lines = [f"seed = {tree['seed']}", f"nodes = {tree['nodes']}", f"rounds = {tree['rounds']}"]
    for section in ("data", "topology", "train", "sharing", "wire", "eval", "engine", "network"):
        lines.append(f"[{section}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in tree[section].items() if v != {}]
    toml.write_text("\n".join(lines) + "\n")
    with hosts.Hosts(count, rates=[rate] * count) as h:
        before = [h.tx_bytes(i) for i in range(count)]
        procs = []
        for i in range(count):
            cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", str(count), "--node-rank", str(i),
                   "--nproc-per-node", "1", "--master-addr", h.addr(0), "--master-port", "29500", "-m", "jwins",
                   "run", str(toml), "--set", "engine.kind=distributed", "--out", str(work / "run"), "--quiet",
                   "--no-plots"]
            env = {**os.environ, "GLOO_SOCKET_IFNAME": "eth0", "OMP_NUM_THREADS": "1"}
            procs.append(h.start(i, cmd, env=env, stdout=open(work / f"host{i}.log", "w"),
                                 stderr=subprocess.STDOUT))
        codes = [p.wait(1800) for p in procs]
        sent = [h.tx_bytes(i) - before[i] for i in range(count)]
    if codes != [0] * count:
        raise SystemExit(f"a host failed: {codes}\n" + (work / "host0.log").read_text()[-2000:])
    metrics = [json.loads(line) for line in (work / "run" / "metrics.jsonl").read_text().splitlines()]
    return {"metrics": metrics, "tx": sent}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rates", default="10,100")
    ap.add_argument("--algorithms", default="full,jwins,choco")
    ap.add_argument("--rounds", type=int, default=5, help="rounds per run (the first is not counted)")
    ap.add_argument("--hosts", type=int, default=4)
    args = ap.parse_args(argv)
    why = hosts.available()
    if why:
        raise SystemExit(f"cannot make test hosts here: {why}")
    from round import write_synthetic_cifar

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = str(write_synthetic_cifar(Path(tmp), 5_000))
        for rate in [float(r) for r in args.rates.split(",")]:
            for algorithm in args.algorithms.split(","):
                overrides = settings(root, args.rounds, rate, args.hosts, algorithm)
                work = Path(tmp) / f"{algorithm}-{rate:g}"
                work.mkdir()
                got = run_hosts(overrides, rate, args.hosts, work)
                reported, crossing = crossing_bytes(overrides, args.hosts)
                ms = got["metrics"][1:]
                measured = statistics.median(m["round_seconds"] for m in ms)
                net = [m["network_seconds"] for m in got["metrics"]]
                modelled = statistics.median(b - a for a, b in zip(net, net[1:]))
                cross = sum(map(sum, crossing))
                rows.append([f"{rate:g}", algorithm, f"{measured:.2f}", f"{modelled:.2f}",
                             f"{measured / modelled:.2f}", f"{sum(reported) / 1e6:.2f}", f"{cross / 1e6:.2f}",
                             f"{sum(got['tx']) / 1e6:.2f}", f"{sum(got['tx']) / cross:.3f}"])
                print("  " + " ".join(rows[-1]), file=sys.stderr, flush=True)
    head = ["Mbit/s", "algorithm", "measured s/round", "modelled s/round", "measured/modelled",
            "reported MB", "crossing hosts MB", "on the links MB", "links/crossing"]
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    print("  ".join(c.ljust(w) for c, w in zip(head, widths)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(c.rjust(w) for c, w in zip(r, widths)))


if __name__ == "__main__":
    main()
