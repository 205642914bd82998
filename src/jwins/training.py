"""Local training of all hosted nodes, and batched evaluation.

Each node samples its mini-batches from its own partition with a stream keyed by (seed, node, round), so
the batches do not depend on which process hosts the node. The SGD update (lr, momentum, weight decay, as
``torch.optim.SGD``) is applied to the whole [N, D] matrix at once; gradients come from a per-node loop
(fastest on CPU) or from ``torch.func.vmap`` over nodes (``train.method = "vmap"``, for GPUs).

On CPU the per-node loop and the evaluation run nodes side by side (:mod:`jwins.parallel`): the thread budget
(``engine.threads``) goes to worker threads that each run whole nodes single-threaded, not to splitting a
node's tiny ops. What a node computes does not depend on which thread runs it.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from . import parallel, rng
from .flat import FlatModel


def loss_fn(task: str):
    return F.cross_entropy if task == "classification" else (lambda out, y: F.mse_loss(out, y))


def batch_indices(part: np.ndarray, *, seed: int, node: int, round: int, steps: int, batch_size: int
                  ) -> np.ndarray:
    """[steps, batch_size] sample ids for one node and round: a shuffled pass over the node's data, wrapping
    into a fresh shuffle when the round needs more samples than the node holds."""
    g = rng.stream(seed, "batches", node, round)
    need = steps * batch_size
    if len(part) >= need:
        chosen = part[g.permutation(len(part))[:need]]
    else:
        reps = -(-need // len(part))
        chosen = np.concatenate([part[g.permutation(len(part))] for _ in range(reps)])[:need]
    return chosen.reshape(steps, batch_size)


@dataclass
class TrainState:
    momentum: Tensor | None  # [N, D] SGD momentum buffers, or None without momentum


class Trainer:
    """Runs ``local_steps`` SGD steps on every active hosted node."""

    def __init__(self, flat: FlatModel, train_x: Tensor, train_y: Tensor, parts: list[np.ndarray],
                 nodes: list[int], *, task: str, seed: int, local_steps: int, batch_size: int, lr: float,
                 momentum: float = 0.0, weight_decay: float = 0.0, method: str = "loop"):
        self.flat, self.train_x, self.train_y = flat, train_x, train_y
        self.parts, self.nodes = parts, nodes
        self.loss = loss_fn(task)
        self.seed, self.steps, self.batch_size = seed, local_steps, batch_size
        self.lr, self.momentum, self.weight_decay, self.method = lr, momentum, weight_decay, method
        self._grads: Tensor | None = None  # [N, D] gradient buffer kept across rounds (a fresh one page-faults)
        if method == "vmap":
            def one(row, x, y):
                return self.loss(self.flat(row, x), y)
            self._vgrad = torch.func.vmap(torch.func.grad_and_value(one))

    def init(self, params: Tensor) -> TrainState:
        return TrainState(torch.zeros_like(params) if self.momentum > 0 else None)

    def round(self, state: TrainState, params: Tensor, round: int, active: np.ndarray | None = None
              ) -> tuple[Tensor, np.ndarray]:
        """Train in place; return the mean training loss per node over its steps (NaN for inactive nodes)."""
        n = params.shape[0]
        active = np.ones(n, dtype=bool) if active is None else active
        losses = np.full(n, np.nan)
        if self.steps == 0 or not active.any():
            return params, losses
        rows = np.flatnonzero(active)
        ids = np.stack([batch_indices(self.parts[r], seed=self.seed, node=self.nodes[r], round=round,
                                      steps=self.steps, batch_size=self.batch_size) for r in rows])
        ids_t = torch.from_numpy(ids)
        rows_t = torch.from_numpy(rows).to(params.device)
        if self._grads is None or self._grads.shape != params.shape or self._grads.device != params.device \
                or self._grads.dtype != params.dtype:
            self._grads = torch.empty_like(params)
        grads = self._grads[:len(rows)]  # every row is written at every step before it is read
        total = np.zeros(len(rows))
        section = parallel.single_threaded() if self.method == "loop" and params.device.type == "cpu" \
            else contextlib.nullcontext()
        with section:
            workers = parallel.budget(params.device)
            for step in range(self.steps):
                if self.method == "vmap":
                    x = self.train_x[ids_t[:, step]].to(params.device)
                    y = self.train_y[ids_t[:, step]].to(params.device)
                    g, value = self._vgrad(params[rows_t], x, y)
                    grads.copy_(g)
                    total += value.detach().cpu().numpy()
                else:
                    def node_step(flat: FlatModel, j: int, step: int = step) -> float:
                        batch = ids_t[j, step]
                        x = self.train_x[batch].to(params.device)
                        y = self.train_y[batch].to(params.device)
                        row = params[rows[j]].detach().requires_grad_(True)
                        value = self.loss(flat(row, x), y)
                        (g,) = torch.autograd.grad(value, row)
                        grads[j] = g
                        return float(value.detach())

                    total += np.asarray(parallel.map_nodes(node_step, range(len(rows)), self.flat, workers))
                self._update(state, params, rows_t, grads, all_rows=len(rows) == n)
        losses[rows] = total / self.steps
        return params, losses

    @torch.no_grad()
    def _update(self, state: TrainState, params: Tensor, rows: Tensor, grads: Tensor, *, all_rows: bool):
        if self.weight_decay:
            grads.add_(params[rows] if not all_rows else params, alpha=self.weight_decay)
        if state.momentum is not None:
            if all_rows:
                state.momentum.mul_(self.momentum).add_(grads)
                grads = state.momentum
            else:
                buf = state.momentum[rows].mul_(self.momentum).add_(grads)
                state.momentum[rows] = buf
                grads = buf
        if all_rows:
            params.sub_(grads, alpha=self.lr)
        else:
            params[rows] = params[rows].sub_(grads, alpha=self.lr)  # the same fused update as above


@torch.inference_mode()
def evaluate(flat: FlatModel, params: Tensor, test_x: Tensor, test_y: Tensor, *, task: str,
             batch_size: int = 256, should_stop: Callable[[], bool] | None = None
             ) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-node (metric, loss) on a test set: accuracy for classification, RMSE for regression.

    ``should_stop`` is asked before every batch; once it says True the remaining batches are skipped and the
    result is None (a run being stopped does not wait for a long evaluation)."""
    n = params.shape[0]
    metric, loss = np.zeros(n), np.zeros(n)
    count = len(test_y)

    starts = range(0, count, batch_size)

    @torch.inference_mode()
    def one(model: FlatModel, item: tuple[int, int]) -> tuple[float, float] | None:
        if should_stop is not None and should_stop():
            return None
        i, start = item
        x = test_x[start:start + batch_size].to(params.device)
        y = test_y[start:start + batch_size].to(params.device)
        out = model.infer(params[i], x)
        if task == "classification":
            return float((out.argmax(1) == y).sum()), float(F.cross_entropy(out, y, reduction="sum"))
        return 0.0, float(F.mse_loss(out, y, reduction="sum"))

    # every (node, batch) is independent: spread them over the workers, then sum each node's in batch order
    items = [(i, start) for i in range(n) for start in starts]
    done = parallel.map_nodes(one, items, flat, parallel.budget(params.device))
    if any(r is None for r in done):
        return None
    results = iter(done)
    for i in range(n):
        correct = total_loss = 0.0
        for _ in starts:
            c, l = next(results)
            correct += c
            total_loss += l
        loss[i] = total_loss / count
        metric[i] = correct / count if task == "classification" else np.sqrt(loss[i])
    return metric, loss
