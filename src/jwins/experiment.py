"""The one experiment loop that every engine runs: build the world from a config, then the rounds.

Per round: train -> :func:`jwins.communication.communicate` (prepare, encode, exchange, decode, merge) ->
evaluate -> one metrics record. Engines differ only in which nodes a process hosts and how bytes travel.
"""
from __future__ import annotations

import resource
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import checkpoint, parallel, rundir, topology
from . import config as config_mod
from .communication import communicate
from .console import Progress, evaluation_warning, format_summary
from .config import Config
from .errors import CheckpointError, JwinsError, RunDirError
from .network import lost_links, network_time, offline_nodes, stragglers
from .training import Trainer, evaluate
from .sharing.base import Mixing
from .timer import PHASES, Timer
from .world import World, block_bytes, build_world, record_objects, resampled_graph, spare_bytes



@dataclass(repr=False)
class Result:
    """What a run produced: its directory, per-round metrics, the summary and the final parameters."""

    config: Config
    run_dir: Path | None
    metrics: list[dict[str, Any]]
    summary: dict[str, Any]
    params: torch.Tensor | None  # [N, D] final parameters of the hosted nodes (None: run by local ranks)
    phase_seconds: dict[str, float] = field(default_factory=dict)

    def __repr__(self) -> str:
        final = (self.summary.get("final_accuracy") or {}).get("mean")
        name = self.summary.get("test_metric_name", "accuracy")
        shown = "n/a" if final is None else (f"{100 * final:.2f}%" if name == "accuracy" else f"{final:.4f}")
        return (f"Result(run_dir={str(self.run_dir)!r}, algorithm={self.config.sharing.algorithm!r}, "
                f"rounds={len(self.metrics)}, final {name}={shown}, "
                f"bytes_sent_per_node={self.summary.get('bytes_sent_per_node', 0) / 1e6:.3f} MB)")


class Interrupted(JwinsError):
    """The run was stopped by Ctrl-C or SIGTERM after writing a checkpoint; ``exit_status`` is the shell's
    convention for that signal (130, 143)."""

    def __init__(self, message: str, signum: int = signal.SIGINT, announced: bool = False):
        super().__init__(message)
        self.exit_status = 128 + int(signum)
        self.announced = announced  # the ranks said it already


def run(config: Config, *, quiet: bool = True, engine=None, run_dir: str | Path | None = None, write: bool = True,
        resume: bool = False, overwrite: bool = False, sharing: Any = None, model: Any = None, dataset: Any = None,
        graph: Any = None) -> Result:
    """Run one experiment and return its :class:`Result`.

    ``sharing``, ``model``, ``dataset`` and ``graph`` replace the parts the config names, as objects or
    factories (see :mod:`jwins.world`). ``engine`` decides where nodes live (default: from ``config.engine``).
    Only rank 0 writes the run directory: ``run_dir``, or a new ``runs/<algorithm>-<dataset>-<time>-<id>``; a
    directory holding anything but this run's config is refused unless ``overwrite`` (which replaces it) or
    ``resume`` (which continues the run from its last checkpoint, with the metrics of an uninterrupted run).
    """
    config = record_objects(config, sharing=sharing, model=model, dataset=dataset, graph=graph)
    threads = torch.get_num_threads()
    torch.set_num_threads(_threads(config))
    owned = engine is None
    engine = engine or _make_engine(config)
    try:
        # round temporaries reuse freed blocks instead of page-faulting fresh ones; nodes side by side on
        # engine.threads workers, or this process's share of the cores
        with parallel.freed_memory_reused(), parallel.workers(config.engine.threads), \
                parallel.memory(block_bytes(config), spare_bytes(config)):
            return _Run(config, engine, quiet=quiet, run_dir=run_dir, write=write, resume=resume, overwrite=overwrite,
                        given=dict(sharing=sharing, model=model, dataset=dataset, graph=graph)).loop()
    finally:
        torch.set_num_threads(threads)
        if owned:
            engine.close()  # tells the other ranks if this one failed; tears down what it made


def _threads(config: Config) -> int:
    """Torch intra-op threads for a run: ``engine.threads``, or 1 on the CPU. Per-node training is a stream of
    small kernels, for which one thread is fastest, and several threads spin against each other as soon as
    anything else uses the cores (measured on 2 cores under load: 0.58 s per round with 1 thread against 4.2 s
    with 2, 16 nodes of the Fashion-MNIST CNN)."""
    if config.engine.threads:
        return config.engine.threads
    return 1 if config.engine.device == "cpu" else torch.get_num_threads()


def _make_engine(config: Config):
    if config.engine.kind == "distributed":
        from .engine.distributed import DistributedEngine

        return DistributedEngine(config.nodes, timeout=config.engine.timeout, device=config.engine.device,
                                 config=config)
    from .engine.local import LocalEngine

    return LocalEngine(config.nodes)


class _Run:
    """One run: the set-up (world, trainer, states, run directory, resume) and then :meth:`loop`."""

    def __init__(self, config: Config, engine, *, quiet: bool, run_dir, write: bool, resume: bool, overwrite: bool,
                 given: dict[str, Any]):
        self.config, self.engine = config, engine
        self.resolved = config_mod.to_dict(config)
        self.dir = Path(run_dir) if run_dir else rundir.default_path(config.sharing.algorithm, config.data.name,
                                                                     engine.started)
        claimed = write and engine.rank == 0 and not resume
        if claimed:  # refuse a directory holding another run before any work
            rundir.claim(self.dir, self.resolved, overwrite=overwrite, exclusive=run_dir is None, create=False)
        if config.log.tensorboard and write and engine.rank == 0:
            rundir.check_tensorboard()
        world, params = build_world(config, engine.nodes, **given)  # parts given as objects or factories
        self.world, self.params = world, params
        self.graph, self.mixing = world.graph, world.mixing  # this epoch's (topology.resample_every)
        self.trainer = Trainer(world.flat, world.dataset.train_x.to(params.device),
                               world.dataset.train_y.to(params.device), world.parts, world.nodes,
                               task=world.dataset.task, seed=config.seed, local_steps=config.train.local_steps,
                               batch_size=config.train.batch_size, lr=config.train.lr,
                               momentum=config.train.momentum, weight_decay=config.train.weight_decay,
                               method=config.train.method)
        self.train_state = self.trainer.init(params)
        # the worst case of the wire: 8 bytes per index and per value of a message, plus its header and extras
        engine.limit_messages(4096 + 16 * world.sharing.message_dim(params.shape[1]))
        self.share_state = world.sharing.init(params, world.nodes)
        self.hosted = np.asarray(world.nodes)
        self.eval_rows = np.flatnonzero(np.isin(self.hosted, world.eval_nodes))
        self.metric_name = "accuracy" if world.dataset.task == "classification" else "rmse"
        self.slowdown = stragglers(config)[self.hosted]
        self.ckpt = rundir.checkpoint_path(self.dir, engine.rank, engine.world_size)
        self.metrics: list[dict[str, Any]] = []
        self.first_round = 0
        self.timer = Timer()
        self.pending = False  # this round's evaluation was cut short by a stop request
        if resume:
            self._restore()
        self.writer = None
        if write and engine.rank == 0:
            if claimed:
                rundir.claim(self.dir, self.resolved, overwrite=overwrite, exclusive=run_dir is None)
            self.writer = rundir.Writer(self.dir, self.resolved, self.metrics, tensorboard=config.log.tensorboard)
        self.write, self.quiet = write, quiet

    def _restore(self) -> None:
        summary = self.dir / rundir.SUMMARY
        if not self.ckpt.exists() and summary.exists():
            raise RunDirError(f"run {self.dir} is finished and wrote no checkpoint, so it cannot be continued (set "
                              "checkpoint.every to make a run that can be extended)")
        # the newest round every rank holds (a crash between two ranks' writes leaves them a generation apart)
        held = checkpoint.rounds_available(self.ckpt)
        common = self.engine.minimum(max(held, default=-1))
        unusable = self.engine.agree(common not in held)  # every rank asks, so that all of them stop together
        if held and common < 0:
            raise CheckpointError(f"another rank holds no checkpoint of this run (this one holds rounds {held} in "
                                  f"{self.ckpt}); that rank's own error names the missing file")
        if held and unusable:
            raise CheckpointError(f"the ranks' checkpoints share no round (this rank holds {held}); resume from a "
                                  "copy of the run directory where every rank's shard is intact")
        loaded = checkpoint.load(self.ckpt, config=self.resolved, shape=tuple(self.params.shape),
                                 round=common if held else None)
        if loaded.round >= self.config.rounds:
            raise RunDirError(f"run {self.dir} is finished ({loaded.round} of {self.config.rounds} rounds); to "
                              f"extend it, resume with more rounds: jwins run --resume {self.dir} --rounds "
                              f"{2 * loaded.round}")
        device = self.params.device
        self.params = torch.from_numpy(np.array(loaded.params)).to(device)
        if self.train_state.momentum is not None:
            self.train_state.momentum = torch.from_numpy(np.array(loaded.momentum)).to(device)
        self.share_state = checkpoint.restore_state(self.share_state, loaded.sharing, device)
        self.first_round, self.metrics = loaded.round, loaded.metrics
        if loaded.extra.get("pending_evaluation"):  # the run was stopped during this round's evaluation
            fields = self._evaluations(self.first_round - 1, None)
            if self.engine.rank == 0:
                record = {k: v for k, v in self.metrics[-1].items() if k != "pending_evaluation"}
                self.metrics[-1] = {**record, **fields}

    def loop(self) -> Result:
        config, engine = self.config, self.engine
        last = self.metrics[-1] if self.metrics else {}
        cumulative, net_total = last.get("cumulative_bytes", 0.0), last.get("network_seconds", 0.0)
        before, start = last.get("seconds", 0.0), time.perf_counter()
        bar = Progress(config, self.first_round) if not self.quiet and engine.rank == 0 else None
        completed = self.first_round
        with _GracefulStop(announce=engine.rank == 0) as stop:
            self.stop = stop
            try:
                for r in range(self.first_round, config.rounds):
                    self._regraph(r)
                    gathered, evaluated, round_seconds, offline = self._round(r)
                    completed = r + 1
                    if r == self.first_round and engine.rank == 0:
                        self._warn_if_evaluation_dominates(round_seconds)
                    if engine.rank == 0:
                        record = self._record(r, gathered, evaluated, round_seconds, offline, cumulative, net_total,
                                              before + time.perf_counter() - start)
                        cumulative, net_total = record["cumulative_bytes"], record.get("network_seconds", 0.0)
                        self.metrics.append(record)
                        if self.writer:
                            self.writer.append(record)
                        if bar is not None:
                            bar.show(record)
                    due = config.checkpoint.every and (r + 1) % config.checkpoint.every == 0
                    # a Ctrl-C seen by any rank stops every rank after this same round; in the last round there
                    # is nothing left to stop (and no collective to enter that another rank would not)
                    stopping = engine.agree(stop.requested) if r + 1 < config.rounds else False
                    if self.write and (due or stopping):
                        checkpoint.save(self.ckpt, round=r + 1, config=self.resolved, params=self.params,
                                        momentum=self.train_state.momentum, sharing_state=self.share_state,
                                        metrics=self.metrics, extra={"pending_evaluation": self.pending})
                        engine.agree(False)  # every rank has written this generation: the previous one may go
                        checkpoint.commit(self.ckpt)
                    if stopping:
                        raise Interrupted(f"stopped after round {r + 1} of {config.rounds}; a checkpoint is in "
                                          f"{self.dir}: continue with `jwins run --resume {self.dir}`",
                                          stop.signum)
            finally:
                if bar is not None:
                    bar.close()
                if self.writer and completed < config.rounds:
                    self.writer.close()
        seconds = before + time.perf_counter() - start
        summary = summarize(config, self.metrics, seconds, self.timer.totals) if engine.rank == 0 else {}
        if self.writer:
            self.writer.finish(summary)
        return Result(config, self.writer.dir if self.writer else None, self.metrics, summary, self.params,
                      self.timer.totals)

    def _round(self, r: int):
        """Train, communicate and (when due) evaluate round ``r``; the per-node rows gathered on rank 0."""
        config, w, engine = self.config, self.world, self.engine
        round_start, waited = time.perf_counter(), self.timer.totals["exchange"]
        offline = offline_nodes(config, r)
        active = ~offline[self.hosted]
        with self.timer("train"):
            self.params, losses = self.trainer.round(self.train_state, self.params, r, active)
        out = communicate(w.sharing, self.share_state, self.params, r, seed=config.seed, graph=self.graph,
                          mixing=self.mixing, transport=engine.transport, wire_config=config.wire,
                          index_codec=w.traits.index_codec, timer=self.timer, offline=offline,
                          lost=lost_links(config, r))
        self.params, self.share_state = out.params, out.state
        # what the network model adds the transfers to: this round's work, without the time spent waiting for
        # the bytes to travel (in a distributed run that wait is the real network's, not compute)
        compute_seconds = time.perf_counter() - round_start - (self.timer.totals["exchange"] - waited)
        last = r + 1 == config.rounds  # the final evaluation is never skipped
        evaluated = self._evaluations(r, None if last else (lambda: self.stop.requested))
        self.pending = evaluated is None  # stopped during an evaluation: it is done on resume
        per_node_compute = np.where(active, compute_seconds / max(1, int(active.sum())), 0.0) * self.slowdown
        sent = out.message_bytes * self.graph.degrees[self.hosted][:, None]  # over all of a node's links
        gathered = engine.gather(np.column_stack([losses, sent, out.alphas, per_node_compute,
                                                  out.message_bytes[:, 0]]))
        return gathered, evaluated or {}, time.perf_counter() - round_start, offline

    def _due(self, r: int) -> tuple[bool, bool]:
        """Whether the test and the validation evaluations are due after round ``r`` (both after the last)."""
        e, last = self.config.eval, r + 1 == self.config.rounds
        every = e.validation_every or e.every
        return (last or bool(e.every and (r + 1) % e.every == 0),
                len(self.world.validation) > 0 and (last or bool(every and (r + 1) % every == 0)))

    def _evaluations(self, r: int, should_stop) -> dict[str, Any] | None:
        """The evaluation fields of round ``r``'s record (``test_*`` and ``val_*``, where due; on rank 0),
        or None when a stop request cut one short."""
        fields: dict[str, Any] = {}
        everything = r + 1 == self.config.rounds and self.config.eval.final_full
        for split, due in zip(("test", "val"), self._due(r)):
            if due:  # eval.final_full is about the test set; validation keeps its sample (what selection reads)
                result = self._evaluate(should_stop, everything=everything and split == "test", split=split)
                if result is None:
                    return None
                if self.engine.rank == 0:
                    fields.update(self._fields(split, *result))
        return fields

    def _evaluate(self, should_stop, everything: bool = False, split: str = "test"):
        """Every rank evaluates its sampled nodes on the sampled test (or validation) set (``everything``: all
        its nodes on the whole set); rank 0 gets the world's (metric, loss) rows. None on every rank when a
        stop request cut the evaluation short on any rank."""
        w, engine = self.world, self.engine
        rows = np.arange(len(self.hosted)) if everything else self.eval_rows
        device = self.params.device
        if split == "val":
            test_x, test_y = (w.dataset.train_x[w.validation].to(device), w.dataset.train_y[w.validation].to(device)) \
                if everything else (w.val_x, w.val_y)
        else:
            test_x, test_y = (w.dataset.test_x.to(device), w.dataset.test_y.to(device)) if everything else \
                (w.test_x, w.test_y)
        with self.timer("evaluate"):
            result = evaluate(w.flat, self.params[rows], test_x, test_y, task=w.dataset.task,
                              batch_size=self.config.eval.batch_size, should_stop=should_stop)
        if engine.world_size > 1 and should_stop is not None:
            result = None if engine.agree(result is None) else result
        if result is None:
            return None
        full_acc, full_loss = np.full(len(self.hosted), np.nan), np.full(len(self.hosted), np.nan)
        full_acc[rows], full_loss[rows] = result
        return engine.gather(full_acc), engine.gather(full_loss)

    def _regraph(self, r: int) -> None:
        """With ``topology.resample_every = R``: a fresh graph of the same family every R rounds (drawn from the
        seed and ``r // R``, so the same on every rank and after a resume); the sharing algorithm's ``regraph``
        (if it has one) hears of every change. A resumed run first takes the graph of the round before it, so
        that a change at the round it resumes from is seen exactly as the uninterrupted run sees it."""
        every = self.config.topology.resample_every
        if not every:
            return
        if r == self.first_round and r > 0:
            self._use(self._graph_of((r - 1) // every))
        if r % every:
            return
        graph = self._graph_of(r // every)
        if graph == self.graph:
            return
        self._use(graph)
        if self.world.traits.regraph is not None:
            self.share_state = self.world.traits.regraph(self.share_state, self.mixing)

    def _use(self, graph: topology.Graph) -> None:
        self.graph = graph
        self.mixing = Mixing(topology.metropolis_hastings(graph, sparse=True), tuple(self.world.nodes))

    def _graph_of(self, epoch: int) -> topology.Graph:
        return self.world.graph if epoch == 0 else resampled_graph(self.config, self.world.graph, epoch)

    def _warn_if_evaluation_dominates(self, round_seconds: float) -> None:
        """Estimated from one forward batch after the first round: say so at once if evaluating will take more
        of the run than the rounds themselves."""
        config, w = self.config, self.world
        if not len(self.eval_rows):
            return
        batch = min(config.eval.batch_size, len(w.test_y))
        per_batch = _forward_seconds(w, self.params[self.eval_rows[:1]], batch)
        per_eval = per_batch * (-(-len(w.test_y) // batch)) * len(self.eval_rows) * self.engine.world_size / \
            max(1, parallel.budget(self.params.device))
        left = config.rounds - self.first_round
        evals = (left // config.eval.every if config.eval.every else 0) + 1
        warning = evaluation_warning(per_eval, evals, round_seconds, left,
                                     len(self.eval_rows) * self.engine.world_size, len(w.test_y))
        if warning:
            print(f"jwins: warning: {warning}", file=sys.stderr, flush=True)

    def _fields(self, split: str, acc: np.ndarray, loss: np.ndarray) -> dict[str, Any]:
        """``<split>_accuracy`` (the mean over the evaluated nodes; RMSE for regression), its min and max over
        nodes, ``<split>_loss``; ``test_metric_name`` with the test fields."""
        a = acc[~np.isnan(acc)]
        fields = {f"{split}_accuracy": float(a.mean()), f"{split}_accuracy_min": float(a.min()),
                  f"{split}_accuracy_max": float(a.max()), f"{split}_loss": _nanmean(loss)}
        return {**fields, "test_metric_name": self.metric_name} if split == "test" else fields

    def _record(self, r: int, gathered: np.ndarray, evaluated: dict[str, Any], round_seconds: float,
                offline: np.ndarray,
                cumulative: float, net_total: float, seconds: float) -> dict[str, Any]:
        """Round ``r``'s line of metrics.jsonl (rank 0): means over the world's nodes."""
        config = self.config
        losses, sent, alphas = gathered[:, 0], gathered[:, 1:5], gathered[:, 5]
        per_node = sent.sum(0) / config.nodes
        record: dict[str, Any] = {
            "round": r + 1, "train_loss": _nanmean(losses), "bytes_sent": float(per_node[0]),
            "bytes_header": float(per_node[1]), "bytes_indices": float(per_node[2]),
            "bytes_values": float(per_node[3]), "cumulative_bytes": float(cumulative + per_node[0]),
            "seconds": seconds, "round_seconds": round_seconds,
        }
        if not np.all(np.isnan(alphas)):
            record["alpha"] = _nanmean(alphas)
        if offline.any():
            record["offline"] = int(offline.sum())
        if config.network.bandwidth_mbps or config.network.latency_ms:
            record["network_seconds"] = net_total + network_time(config, gathered[:, 6], gathered[:, 7],
                                                                 self.graph.degrees, self.graph)
        record.update(evaluated)
        if self.pending:
            record["pending_evaluation"] = True
        return record


class _GracefulStop:
    """Ctrl-C (SIGINT) or SIGTERM, the first time: stop after the current round, skipping its evaluation if it
    is running (it is done on resume), and write a checkpoint; the second: say so again; the third: stop at
    once (the newest complete checkpoint and the metrics written so far stay usable)."""

    def __init__(self, announce: bool = True) -> None:
        self.requested = False
        self.signum = signal.SIGINT
        self.count = 0
        self.announce = announce
        self._previous: dict[int, Any] = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, frame):
        self.count += 1
        if self.count >= 3:
            raise KeyboardInterrupt
        if not self.requested:
            self.requested, self.signum = True, signum
        if self.announce:
            name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
            if self.count == 1:
                print(f"\njwins: {name}: stopping after the current round, with a checkpoint "
                      "(twice more to quit at once, without it)", file=sys.stderr, flush=True)
            else:
                print("jwins: still finishing the current round to write its checkpoint; once more to quit "
                      "without it", file=sys.stderr, flush=True)

    def __exit__(self, *exc):
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)


def _forward_seconds(world: World, rows: torch.Tensor, batch: int) -> float:
    """Seconds to evaluate one node on one test batch (what the evaluation cost is estimated from)."""
    start = time.perf_counter()
    evaluate(world.flat, rows, world.test_x[:batch], world.test_y[:batch], task=world.dataset.task, batch_size=batch)
    return time.perf_counter() - start


def _nanmean(a: np.ndarray) -> float:
    a = np.asarray(a, dtype=float)
    a = a[~np.isnan(a)]
    return float(a.mean()) if len(a) else float("nan")


def summarize(config: Config, metrics: list[dict], seconds: float, phases: dict[str, float]) -> dict[str, Any]:
    """summary.json: the final evaluation, bytes per node by part, time and memory."""
    evaluated = [m for m in metrics if "test_accuracy" in m]
    last = evaluated[-1] if evaluated else {}
    validated = [m for m in metrics if "val_accuracy" in m]
    val = {"final_validation": {k: validated[-1].get(f"val_accuracy{s}") for k, s in
                                (("mean", ""), ("min", "_min"), ("max", "_max"))}} if validated else {}
    return {
        "algorithm": config.sharing.algorithm,
        "dataset": config.data.name,
        "nodes": config.nodes,
        "rounds": len(metrics),
        "final_accuracy": {"mean": last.get("test_accuracy"), "min": last.get("test_accuracy_min"),
                           "max": last.get("test_accuracy_max")},
        "test_metric_name": last.get("test_metric_name", "accuracy"),
        "final_test_loss": last.get("test_loss"),
        **val,
        "bytes_sent_per_node": metrics[-1]["cumulative_bytes"] if metrics else 0.0,
        "bytes_indices_per_node": float(sum(m["bytes_indices"] for m in metrics)),
        "bytes_values_per_node": float(sum(m["bytes_values"] for m in metrics)),
        "bytes_header_per_node": float(sum(m["bytes_header"] for m in metrics)),
        "seconds": seconds,
        "seconds_per_round": seconds / max(1, len(metrics)),
        **({"modelled_seconds": metrics[-1]["network_seconds"]} if metrics and "network_seconds" in metrics[-1]
           else {}),
        "phase_seconds": phases,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }


__all__ = ["Interrupted", "PHASES", "Result", "World", "build_world", "format_summary", "run", "summarize"]
