"""The one experiment loop that every engine runs: build everything from a config, then the rounds.

Per round: train -> sharing.prepare -> wire.encode -> transport -> wire.decode -> sharing.merge -> metrics.
Engines differ only in which nodes a process hosts and how bytes travel.
"""
from __future__ import annotations

import contextlib
import json
import os
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from . import config as config_mod
from . import rng, topology, wire
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
    labels = dataset.train_y.numpy() if dataset.task == "classification" else None
    parts = partition_data(config.data.partition, dataset, config.nodes,
                           rng.stream(config.seed, "partition"),
                           shards_per_node=config.data.shards_per_node,
                           dirichlet_alpha=config.data.dirichlet_alpha)
    del labels
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


def default_run_dir(config: Config) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
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
    out = {}
    for m in messages:
        try:
            out[m.sender] = wire.encode(m, index_codec=index_codec, value_codec=value_codec)
        except ValueError as e:
            if "NaN" in str(e) or "inf" in str(e):
                raise JwinsError(f"node {m.sender}'s model is not finite in round {round} (training diverged): "
                                 f"{e}; lower train.lr") from None
            raise
    return out


def _decode_inbox(raw: dict[int, list[tuple[int, bytes]]], nodes: list[int], dim: int, round: int
                  ) -> dict[int, list[wire.Message]]:
    cache: dict[int, wire.Message] = {}
    inbox: dict[int, list[wire.Message]] = {}
    for receiver in nodes:
        messages = []
        for sender, data in sorted(raw.get(receiver, []), key=lambda p: p[0]):
            key = id(data)
            if key not in cache:
                try:
                    cache[key] = wire.decode(data, dim=dim)
                except WireError as e:
                    raise WireError(f"round {round}: message from node {sender} to node {receiver}: {e}") from None
            m = cache[key]
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
                mixing: Mixing, transport, wire_config=None, timer=None) -> Exchanged:
    """One round of communication for the hosted nodes: prepare, encode, exchange, decode, merge."""
    timer = timer or _NoTimer()
    wire_config = wire_config or config_mod.WireConfig()
    nodes = list(mixing.nodes)
    with timer("prepare"):
        rngs = [rng.stream(seed, "sharing", node, round) for node in nodes]
        messages, state = sharing.prepare(state, params, round, rngs)
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
    with timer("decode"):
        inbox = _decode_inbox(raw, nodes, sharing.message_dim(params.shape[1]), round)
    with timer("merge"):
        params, state = sharing.merge(state, params, inbox, mixing)
    return Exchanged(params, state, messages, payloads, sent, alphas)


def run(config: Config, *, quiet: bool = True, engine=None, run_dir: str | Path | None = None,
        write: bool = True) -> Result:
    """Run one experiment and return its :class:`Result`.

    ``engine`` decides where nodes live (default: all in this process). Only rank 0 writes the run directory.
    """
    from .engine.local import LocalEngine

    if config.engine.threads:
        torch.set_num_threads(config.engine.threads)
    engine = engine or LocalEngine(config.nodes)
    world, params = build_world(config, engine.nodes)
    sharing = make_sharing(config.sharing)
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

    writer = None
    if write and engine.rank == 0:
        out = Path(run_dir or config.out or default_run_dir(config))
        writer = _RunWriter(out, config)
    timer = _Timer()
    metrics: list[dict[str, Any]] = []
    cumulative = 0.0
    start = time.perf_counter()
    bar = None
    if not quiet and engine.rank == 0:
        from tqdm import tqdm
        bar = tqdm(total=config.rounds, desc=f"{config.sharing.algorithm}", unit="round", dynamic_ncols=True)
    last_acc = float("nan")
    try:
        for r in range(config.rounds):
            round_start = time.perf_counter()
            with timer("train"):
                params, losses = trainer.round(train_state, params, r)
            exchanged = communicate(sharing, share_state, params, r, seed=config.seed, graph=world.graph,
                                    mixing=world.mixing, transport=engine.transport, wire_config=config.wire,
                                    timer=timer)
            params, share_state = exchanged.params, exchanged.state
            sent = exchanged.sent
            alphas = exchanged.alphas
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
            losses_w, sent_w, alphas_w = engine.gather(losses), engine.gather(sent), engine.gather(alphas)
            if engine.rank != 0:
                continue
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
                "seconds": time.perf_counter() - start,
                "round_seconds": round_seconds,
            }
            if not np.all(np.isnan(alphas_w)):
                record["alpha"] = _nanmean(alphas_w)
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
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - start
    summary = _summary(config, metrics, seconds, timer.totals) if engine.rank == 0 else {}
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
    """The run directory: config.json at the start, metrics.jsonl line by line, summary.json at the end."""

    def __init__(self, out: Path, config: Config):
        self.dir = out
        out.mkdir(parents=True, exist_ok=True)
        _atomic_write(out / "config.json", json.dumps(config_mod.to_dict(config), indent=2) + "\n")
        self._metrics = open(out / "metrics.jsonl", "w")

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


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)
