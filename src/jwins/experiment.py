"""The one experiment loop that every engine runs: build everything from a config, then the rounds.

Per round: train -> sharing.prepare -> wire.encode -> transport -> wire.decode -> sharing.merge -> metrics.
Engines differ only in which nodes a process hosts and how bytes travel.
"""
from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from . import config as config_mod
from . import checkpoint, parallel, rng, topology, wire
from .config import Config
from .data import datasets
from .data.partition import partition as partition_data
from .errors import JwinsError, WireError
from .flat import FlatModel, init_params
from .models import build_model
from .sharing import make_sharing
from .sharing.base import Mixing
from .training import Trainer, evaluate

PHASES = ("train", "prepare", "encode", "exchange", "decode", "merge", "evaluate")


@dataclass
class Result:
    """What a run produced: its directory, per-round metrics, the summary and the final parameters."""

    config: Config
    run_dir: Path | None
    metrics: list[dict[str, Any]]
    summary: dict[str, Any]
    params: torch.Tensor  # [N, D] final parameters of the hosted nodes
    phase_seconds: dict[str, float] = field(default_factory=dict)


@dataclass
class World:
    """Everything built from a config that does not change during a run."""

    config: Config
    dataset: datasets.Dataset
    parts: list[np.ndarray]
    graph: topology.Graph
    mixing: Mixing
    flat: FlatModel
    nodes: list[int]
    eval_nodes: np.ndarray  # global ids evaluated
    test_x: torch.Tensor
    test_y: torch.Tensor


def _device(config: Config) -> torch.device:
    device = torch.device(config.engine.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise JwinsError(f"engine.device = {config.engine.device!r} but no CUDA device is available; "
                         "use engine.device = 'cpu'")
    return device


def build_world(config: Config, nodes: list[int]) -> tuple[World, torch.Tensor]:
    """Load data, partition it, build the graph, the model and the initial [N, D] parameters."""
    dataset = datasets.load(config.data.name, config.data.root, max_samples=config.data.max_samples)
    n_train = len(dataset.train_y)
    if config.nodes > n_train:
        raise JwinsError(f"nodes = {config.nodes} > {n_train} training samples of {config.data.name}; "
                         "use fewer nodes or more data")
    parts = partition_data(config.data.partition, dataset, config.nodes,
                           rng.stream(config.seed, "partition"),
                           shards_per_node=config.data.shards_per_node,
                           dirichlet_alpha=config.data.dirichlet_alpha)
    t = config.topology
    graph = topology.build(t.kind, config.nodes, degree=t.degree, probability=t.probability, path=t.path,
                           seed=config.seed)
    mixing = Mixing(topology.metropolis_hastings(graph), tuple(nodes))
    device = _device(config)

    def factory():
        return build_model(config.model.name, dataset=config.data.name, input_shape=dataset.input_shape,
                           num_classes=dataset.num_classes, meta={**dataset.meta, "mf_dim": config.model.mf_dim})

    flat, params = init_params(factory, nodes, seed=config.seed, same_init=config.model.same_init, device=device)
    if config.eval.nodes:
        eval_nodes = np.sort(rng.stream(config.seed, "eval").choice(config.nodes, config.eval.nodes,
                                                                      replace=False))
    else:
        eval_nodes = np.arange(config.nodes)
    test_x, test_y = dataset.test_x, dataset.test_y
    if config.eval.max_samples:
        test_x, test_y = test_x[:config.eval.max_samples], test_y[:config.eval.max_samples]
    world = World(config, dataset, [parts[i] for i in nodes], graph, mixing, flat, nodes, eval_nodes,
                  test_x.to(device), test_y.to(device))
    return world, params


def default_run_dir(config: Config, when: float | None = None) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(when))
    return Path("runs") / f"{config.sharing.algorithm}-{config.data.name}-{stamp}"


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class _Timer:
    def __init__(self) -> None:
        self.totals = {p: 0.0 for p in PHASES}

    def __call__(self, phase: str):
        timer = self

        class _Ctx:
            def __enter__(self_inner):
                self_inner.t0 = time.perf_counter()

            def __exit__(self_inner, *exc):
                timer.totals[phase] += time.perf_counter() - self_inner.t0
        return _Ctx()


def _encode_all(messages, index_codec: str, value_codec: str, round: int) -> dict[int, bytes]:
    try:
        payloads = wire.encode_many(messages, index_codec=index_codec, value_codec=value_codec)
    except ValueError:
        payloads = None  # find the message and say which node
    if payloads is not None:
        return {m.sender: data for m, data in zip(messages, payloads)}
    for m in messages:
        try:
            wire.encode(m, index_codec=index_codec, value_codec=value_codec)
        except ValueError as e:
            if "NaN" in str(e) or "inf" in str(e):
                raise JwinsError(f"node {m.sender}'s model is not finite in round {round} (training diverged): "
                                 f"{e}; lower train.lr") from None
            raise
    raise AssertionError("encode_many failed where encode did not")  # pragma: no cover


def _decode_inbox(raw: dict[int, list[tuple[int, bytes]]], nodes: list[int], dim: int, round: int,
                  trusted: bool = False) -> dict[int, list[wire.Message]]:
    # every distinct payload is decoded once (in the simulator a sender's bytes reach all its neighbours)
    distinct: dict[int, bytes] = {}
    for receiver in nodes:
        for _, data in raw.get(receiver, []):
            distinct.setdefault(id(data), data)
    keys = list(distinct)
    cache = dict(zip(keys, wire.decode_many([distinct[key] for key in keys], dim=dim, trusted=trusted)))
    inbox: dict[int, list[wire.Message]] = {}
    for receiver in nodes:
        messages = []
        for sender, data in sorted(raw.get(receiver, []), key=lambda p: p[0]):
            m = cache[id(data)]
            if isinstance(m, WireError):
                raise WireError(f"round {round}: message from node {sender} to node {receiver}: {m}") from None
            if m.sender != sender or m.round != round:
                raise WireError(f"round {round}: node {receiver} got a message claiming sender {m.sender}, round "
                                f"{m.round} from node {sender}")
            messages.append(m)
        inbox[receiver] = messages
    return inbox


class Exchanged(NamedTuple):
    params: torch.Tensor     # [N, D] after averaging
    state: Any               # the sharing state after the round
    messages: list           # what the hosted nodes sent (before encoding)
    payloads: dict[int, bytes]
    sent: np.ndarray         # [N, 4] bytes sent per hosted node over all its links: total, header, indices, values
    alphas: np.ndarray       # [N] fraction of coefficients each hosted node sent (NaN if it sent nothing)


class _NoTimer:
    def __call__(self, phase: str):
        return contextlib.nullcontext()


def communicate(sharing, state, params: torch.Tensor, round: int, *, seed: int, graph: topology.Graph,
                mixing: Mixing, transport, wire_config=None, timer=None, offline: np.ndarray | None = None,
                lost: np.ndarray | None = None) -> Exchanged:
    """One round of communication for the hosted nodes: prepare, encode, exchange, decode, merge.

    ``offline[i]``: node i neither sends nor averages (its parameters are kept); ``lost[j, i]``: the message
    from j to i is lost on the way (it was still sent and counted). A receiver renormalises its
    Metropolis-Hastings weights over the messages that arrived.
    """
    timer = timer or _NoTimer()
    wire_config = wire_config or config_mod.WireConfig()
    nodes = list(mixing.nodes)
    with timer("prepare"):
        rngs = [rng.stream(seed, "sharing", node, round) for node in nodes]
        messages, state = sharing.prepare(state, params, round, rngs)
    if offline is not None:
        messages = [m for m in messages if not offline[m.sender]]
    with timer("encode"):
        index_codec = getattr(sharing, "index_codec", None) or wire_config.index_codec
        payloads = _encode_all(messages, index_codec, wire_config.value_codec, round)
    sent = np.zeros((len(nodes), 4))
    alphas = np.full(len(nodes), np.nan)
    row_of = {node: i for i, node in enumerate(nodes)}
    for m in messages:
        i, data = row_of[m.sender], payloads[m.sender]
        lay = wire.layout(data)
        sent[i] = np.array([len(data), lay.header_bytes, lay.index_bytes, lay.value_bytes]) * graph.degree(m.sender)
        alphas[i] = 1.0 if m.indices is None else m.k / m.dim
    with timer("exchange"):
        raw = transport.exchange(payloads, graph, round)
    if lost is not None or offline is not None:
        raw = {i: [(j, data) for j, data in pairs
                   if not (lost is not None and lost[j, i]) and not (offline is not None and offline[i])]
               for i, pairs in raw.items()}
    with timer("decode"):
        inbox = _decode_inbox(raw, nodes, sharing.message_dim(params.shape[1]), round,
                              trusted=getattr(transport, "trusted", False))
    with timer("merge"):
        merged, state = sharing.merge(state, params, inbox, mixing)
    if offline is not None and offline[nodes].any():
        rows = torch.from_numpy(np.flatnonzero(offline[nodes])).to(params.device)
        merged = merged.clone() if merged is params else merged
        merged[rows] = params[rows]
    return Exchanged(merged, state, messages, payloads, sent, alphas)


class _GracefulStop:
    """The first Ctrl-C asks the loop to stop after the current round (and write a checkpoint); the second
    interrupts at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


class Interrupted(JwinsError):
    """The run was stopped by Ctrl-C after writing a checkpoint."""


def offline_nodes(config: Config, round: int) -> np.ndarray:
    """[N_world] bool: nodes offline this round (they neither train, send, receive nor average)."""
    if not config.faults.offline:
        return np.zeros(config.nodes, dtype=bool)
    return rng.stream(config.seed, "faults-offline", round).random(config.nodes) < config.faults.offline


def lost_links(config: Config, round: int) -> np.ndarray | None:
    """[N_world, N_world] bool: ``lost[j, i]`` if the message from j to i is lost this round."""
    if not config.faults.message_loss:
        return None
    return rng.stream(config.seed, "faults-loss", round).random((config.nodes, config.nodes)) < \
        config.faults.message_loss


def stragglers(config: Config) -> np.ndarray:
    """[N_world] compute-time multiplier of each node (``faults.straggler_slowdown`` for the stragglers)."""
    slow = rng.stream(config.seed, "faults-stragglers").random(config.nodes) < config.faults.stragglers
    return np.where(slow, config.faults.straggler_slowdown, 1.0)


def network_time(config: Config, compute: np.ndarray, message_bytes: np.ndarray, degrees: np.ndarray) -> float:
    """Modelled duration of one round: each node computes, then pushes its message to its neighbours; the
    round ends when the slowest node is done.

    Per node: ``compute_i + latency + bits_i / bandwidth`` where bits_i is the message times its degree over
    one uplink of ``bandwidth_mbps`` (``network.per_link = false``), or one message per link when every link
    has that bandwidth (``per_link = true``). Nodes that send nothing pay no latency.
    """
    net = config.network
    sends = message_bytes > 0
    volume = message_bytes * (1 if net.per_link else degrees)
    transfer = volume * 8 / (net.bandwidth_mbps * 1e6) if net.bandwidth_mbps else np.zeros_like(compute)
    per_node = compute + np.where(sends, net.latency_ms / 1e3 + transfer, 0.0)
    return float(per_node.max()) if len(per_node) else 0.0


def _restore_rows(old: Any, new: Any, rows: np.ndarray) -> Any:
    """``new`` with the given rows of every per-node tensor field put back to ``old``'s (offline nodes)."""
    if not len(rows):
        return new
    fields = {}
    for name, value in new._asdict().items():
        before = getattr(old, name)
        if isinstance(value, torch.Tensor) and isinstance(before, torch.Tensor) and value.shape == before.shape:
            value = value.clone()
            value[rows] = before[rows]
            fields[name] = value
    return new._replace(**fields)


def _make_engine(config: Config):
    from .engine.local import LocalEngine

    if config.engine.kind == "distributed":
        from .engine.distributed import DistributedEngine

        return DistributedEngine(config.nodes, timeout=config.engine.timeout, device=config.engine.device,
                                 config=config)
    return LocalEngine(config.nodes)


def run(config: Config, *, quiet: bool = True, engine=None, run_dir: str | Path | None = None,
        write: bool = True, resume: bool = False) -> Result:
    """Run one experiment and return its :class:`Result`.

    ``engine`` decides where nodes live (default: from ``config.engine``). Only rank 0 writes the run
    directory. ``resume`` continues the run in ``run_dir`` from its last checkpoint; the metrics of a resumed
    run are those of an uninterrupted one.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(_threads(config))
    parallel.reuse_freed_memory()  # round temporaries reuse freed blocks instead of page-faulting fresh ones
    try:
        with parallel.workers(config.engine.threads):  # nodes side by side: engine.threads, or one per core
            return _run(config, quiet=quiet, engine=engine, run_dir=run_dir, write=write, resume=resume)
    finally:
        torch.set_num_threads(threads)


def _threads(config: Config) -> int:
    """Torch intra-op threads for a run: ``engine.threads``, or 1 on the CPU. Per-node training is a stream of
    small kernels, for which one thread is fastest, and several threads spin against each other as soon as
    anything else uses the cores (measured on 2 cores under load: 0.58 s per round with 1 thread against 4.2 s
    with 2, 16 nodes of the Fashion-MNIST CNN)."""
    if config.engine.threads:
        return config.engine.threads
    return 1 if config.engine.device == "cpu" else torch.get_num_threads()


def _run(config: Config, *, quiet: bool, engine, run_dir, write: bool, resume: bool) -> Result:
    owned = engine is None
    engine = engine or _make_engine(config)
    try:  # a failure while setting up (missing data, a bad checkpoint) must still close the engine
        world, params = build_world(config, engine.nodes)
        sharing = make_sharing(config.sharing, config.wire.value_codec)
        trainer = Trainer(world.flat, world.dataset.train_x.to(params.device), world.dataset.train_y.to(params.device),
                          world.parts, world.nodes, task=world.dataset.task, seed=config.seed,
                          local_steps=config.train.local_steps, batch_size=config.train.batch_size,
                          lr=config.train.lr, momentum=config.train.momentum, weight_decay=config.train.weight_decay,
                          method=config.train.method)
        train_state = trainer.init(params)
        share_state = sharing.init(params, world.nodes)
        hosted = np.asarray(world.nodes)
        eval_rows = np.flatnonzero(np.isin(hosted, world.eval_nodes))
        metric_name = "accuracy" if world.dataset.task == "classification" else "rmse"
        slowdown = stragglers(config)[hosted]
        modelled = bool(config.network.bandwidth_mbps or config.network.latency_ms)

        out = Path(run_dir or config.out or default_run_dir(config, getattr(engine, "started", None)))
        resolved = config_mod.to_dict(config)
        ckpt_path = checkpoint.path_for(out, engine.rank, engine.world_size)
        metrics: list[dict[str, Any]] = []
        first_round = 0
        if resume:
            loaded = checkpoint.load(ckpt_path, config=resolved, shape=tuple(params.shape))
            params = torch.from_numpy(np.array(loaded.params)).to(params.device)
            if train_state.momentum is not None:
                train_state.momentum = torch.from_numpy(np.array(loaded.momentum)).to(params.device)
            share_state = checkpoint.restore_state(share_state, loaded.sharing, params.device)
            first_round, metrics = loaded.round, loaded.metrics
        cumulative = metrics[-1]["cumulative_bytes"] if metrics else 0.0
        net_total = metrics[-1].get("network_seconds", 0.0) if metrics else 0.0
        elapsed_before = metrics[-1]["seconds"] if metrics else 0.0

        writer = _RunWriter(out, config, metrics) if write and engine.rank == 0 else None
        timer = _Timer()
        start = time.perf_counter()
        bar = None
        if not quiet and engine.rank == 0:
            from tqdm import tqdm
            bar = tqdm(total=config.rounds, initial=first_round, desc=f"{config.sharing.algorithm}", unit="round",
                       dynamic_ncols=True)
        last_acc = float("nan")
        completed = first_round
    except BaseException:
        if owned:
            engine.close()  # tells the other ranks, and tears down the process group this run made
        raise
    with _GracefulStop() as stop:
        try:
            for r in range(first_round, config.rounds):
                round_start = time.perf_counter()
                offline = offline_nodes(config, r)
                active = ~offline[hosted]
                with timer("train"):
                    params, losses = trainer.round(train_state, params, r, active)
                before = share_state
                exchanged = communicate(sharing, share_state, params, r, seed=config.seed, graph=world.graph,
                                        mixing=world.mixing, transport=engine.transport, wire_config=config.wire,
                                        timer=timer, offline=offline, lost=lost_links(config, r))
                params, share_state = exchanged.params, exchanged.state
                if offline.any():
                    rows = np.flatnonzero(~active)
                    share_state = _restore_rows(before, share_state, rows)
                compute_seconds = time.perf_counter() - round_start
                evaluate_now = (config.eval.every and (r + 1) % config.eval.every == 0) or r + 1 == config.rounds
                acc = loss = None
                if evaluate_now:
                    with timer("evaluate"):
                        acc_h, loss_h = evaluate(world.flat, params[eval_rows], world.test_x, world.test_y,
                                                 task=world.dataset.task, batch_size=config.eval.batch_size)
                    full_acc = np.full(len(hosted), np.nan)
                    full_loss = np.full(len(hosted), np.nan)
                    full_acc[eval_rows], full_loss[eval_rows] = acc_h, loss_h
                    acc, loss = engine.gather(full_acc), engine.gather(full_loss)
                round_seconds = time.perf_counter() - round_start
                per_node_compute = np.where(active, compute_seconds / max(1, int(active.sum())), 0.0) * slowdown
                message_bytes = exchanged.sent[:, 0] / np.maximum(world.graph.degrees[hosted], 1)
                gathered = engine.gather(np.column_stack([losses, exchanged.sent, exchanged.alphas,
                                                          per_node_compute, message_bytes]))
                completed = r + 1
                if engine.rank == 0:
                    losses_w, sent_w, alphas_w = gathered[:, 0], gathered[:, 1:5], gathered[:, 5]
                    per_node = sent_w.sum(0) / config.nodes
                    cumulative += per_node[0]
                    record: dict[str, Any] = {
                        "round": r + 1,
                        "train_loss": _nanmean(losses_w),
                        "bytes_sent": float(per_node[0]),
                        "bytes_header": float(per_node[1]),
                        "bytes_indices": float(per_node[2]),
                        "bytes_values": float(per_node[3]),
                        "cumulative_bytes": float(cumulative),
                        "seconds": elapsed_before + time.perf_counter() - start,
                        "round_seconds": round_seconds,
                    }
                    if not np.all(np.isnan(alphas_w)):
                        record["alpha"] = _nanmean(alphas_w)
                    if offline.any():
                        record["offline"] = int(offline.sum())
                    if modelled:
                        net_total += network_time(config, gathered[:, 6], gathered[:, 7], world.graph.degrees)
                        record["network_seconds"] = net_total
                    if acc is not None:
                        a = acc[~np.isnan(acc)]
                        record.update(test_accuracy=float(a.mean()), test_accuracy_min=float(a.min()),
                                      test_accuracy_max=float(a.max()), test_loss=_nanmean(loss),
                                      test_metric_name=metric_name)
                        last_acc = record["test_accuracy"]
                    metrics.append(record)
                    if writer:
                        writer.append(record)
                    if bar is not None:
                        bar.set_postfix(loss=f"{record['train_loss']:.3f}", **{metric_name[:3]: f"{last_acc:.3f}"},
                                        MB=f"{cumulative / 1e6:.2f}", refresh=False)
                        bar.update(1)
                due = config.checkpoint.every and (r + 1) % config.checkpoint.every == 0
                # a Ctrl-C seen by any rank stops every rank after this same round
                stopping = engine.agree(stop.requested) if r + 1 < config.rounds else stop.requested
                if write and (due or stopping):
                    checkpoint.save(ckpt_path, round=r + 1, config=resolved, params=params,
                                    momentum=train_state.momentum, sharing_state=share_state, metrics=metrics)
                if stopping and r + 1 < config.rounds:
                    raise Interrupted(f"stopped after round {r + 1} of {config.rounds}; a checkpoint is in {out}: "
                                      f"continue with `jwins run --resume {out}`")
        finally:
            if bar is not None:
                bar.close()
            if writer and completed < config.rounds:
                writer.close()
            if owned:
                engine.close()
    seconds = time.perf_counter() - start
    summary = _summary(config, metrics, elapsed_before + seconds, timer.totals) if engine.rank == 0 else {}
    if writer:
        writer.finish(summary)
    return Result(config, writer.dir if writer else None, metrics, summary, params, timer.totals)


def _nanmean(a: np.ndarray) -> float:
    a = np.asarray(a, dtype=float)
    a = a[~np.isnan(a)]
    return float(a.mean()) if len(a) else float("nan")


def _summary(config: Config, metrics: list[dict], seconds: float, phases: dict[str, float]) -> dict[str, Any]:
    evaluated = [m for m in metrics if "test_accuracy" in m]
    last = evaluated[-1] if evaluated else {}
    return {
        "algorithm": config.sharing.algorithm,
        "dataset": config.data.name,
        "nodes": config.nodes,
        "rounds": len(metrics),
        "final_accuracy": {"mean": last.get("test_accuracy"), "min": last.get("test_accuracy_min"),
                           "max": last.get("test_accuracy_max")},
        "test_metric_name": last.get("test_metric_name", "accuracy"),
        "final_test_loss": last.get("test_loss"),
        "bytes_sent_per_node": metrics[-1]["cumulative_bytes"] if metrics else 0.0,
        "bytes_indices_per_node": float(sum(m["bytes_indices"] for m in metrics)),
        "bytes_values_per_node": float(sum(m["bytes_values"] for m in metrics)),
        "bytes_header_per_node": float(sum(m["bytes_header"] for m in metrics)),
        "seconds": seconds,
        "seconds_per_round": seconds / max(1, len(metrics)),
        "phase_seconds": phases,
        "peak_rss_mb": _peak_rss_mb(),
    }


class _RunWriter:
    """The run directory: config.json at the start, metrics.jsonl line by line, summary.json at the end.

    A resumed run starts metrics.jsonl again from the checkpoint's records, so no round is lost or repeated.
    """

    def __init__(self, out: Path, config: Config, metrics_so_far: list[dict] = ()):
        self.dir = out
        out.mkdir(parents=True, exist_ok=True)
        _atomic_write(out / "config.json", json.dumps(config_mod.to_dict(config), indent=2) + "\n")
        _atomic_write(out / "metrics.jsonl", "".join(json.dumps(m) + "\n" for m in metrics_so_far))
        self._metrics = open(out / "metrics.jsonl", "a")

    def close(self) -> None:
        self._metrics.close()

    def append(self, record: dict) -> None:
        self._metrics.write(json.dumps(record) + "\n")
        self._metrics.flush()

    def finish(self, summary: dict) -> None:
        self._metrics.close()
        _atomic_write(self.dir / "summary.json", json.dumps(summary, indent=2) + "\n")


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def format_summary(summary: dict) -> str:
    """A short human-readable table of a run's summary."""
    acc = summary["final_accuracy"]
    name = summary.get("test_metric_name", "accuracy")
    fmt = (lambda v: "n/a" if v is None else (f"{100 * v:.2f}%" if name == "accuracy" else f"{v:.4f}"))
    rows = [
        ("algorithm", summary["algorithm"]),
        ("nodes x rounds", f"{summary['nodes']} x {summary['rounds']}"),
        (f"final {name} (mean / min / max)", f"{fmt(acc['mean'])} / {fmt(acc['min'])} / {fmt(acc['max'])}"),
        ("bytes sent per node", f"{summary['bytes_sent_per_node'] / 1e6:.3f} MB"),
        ("  values / indices / header", f"{summary['bytes_values_per_node'] / 1e6:.3f} / "
                                        f"{summary['bytes_indices_per_node'] / 1e6:.3f} / "
                                        f"{summary['bytes_header_per_node'] / 1e6:.3f} MB"),
        ("time", f"{summary['seconds']:.1f} s ({summary['seconds_per_round'] * 1000:.0f} ms/round)"),
        ("peak memory", f"{summary['peak_rss_mb']:.0f} MB"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
