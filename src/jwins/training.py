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
        self._grads: Tensor | None = None  # [B, D] gradients of a block, kept across rounds (no page faults)
        if method == "vmap":
            def one(row, x, y):
                return self.loss(self.flat(row, x), y)
            self._vgrad = torch.func.vmap(torch.func.grad_and_value(one))

    def init(self, params: Tensor) -> TrainState:
        return TrainState(torch.zeros_like(params) if self.momentum > 0 else None)

    def round(self, state: TrainState, params: Tensor, round: int, active: np.ndarray | None = None
              ) -> tuple[Tensor, np.ndarray]:
        """Train in place; return the mean training loss per node over its steps (NaN for inactive nodes).

        Nodes are trained block by block (each block all its steps, then the next): the gradients live for one
        block, never as an [N, D] matrix. A node's numbers do not depend on the blocks or on the threads."""
        n = params.shape[0]
        active = np.ones(n, dtype=bool) if active is None else active
        losses = np.full(n, np.nan)
        if self.steps == 0 or not active.any():
            return params, losses
        rows = np.flatnonzero(active)
        ids = np.stack([batch_indices(self.parts[r], seed=self.seed, node=self.nodes[r], round=round,
                                      steps=self.steps, batch_size=self.batch_size) for r in rows])
        total = np.zeros(len(rows))
        section = parallel.single_threaded() if self.method == "loop" and params.device.type == "cpu" \
            else contextlib.nullcontext()
        with section:
            for block in parallel.row_chunks(len(rows), 1, row_bytes=8 * params.shape[1]):
                total[block] = self._train_block(state, params, rows[block], ids[block])
        losses[rows] = total / self.steps
        return params, losses

    def _train_block(self, state: TrainState, params: Tensor, rows: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """All the steps of the nodes ``rows``; the sum of each one's losses."""
        b = len(rows)
        if self._grads is None or self._grads.shape[0] < b or self._grads.shape[1:] != params.shape[1:] \
                or self._grads.device != params.device or self._grads.dtype != params.dtype:
            self._grads = torch.empty(b, *params.shape[1:], dtype=params.dtype, device=params.device)
        grads = self._grads[:b]  # every row is written at every step before it is read
        contiguous = b == rows[-1] - rows[0] + 1  # then the block's rows are a view of params
        where = slice(int(rows[0]), int(rows[-1]) + 1) if contiguous else torch.from_numpy(rows).to(params.device)
        ids_t = torch.from_numpy(ids)
        total = np.zeros(b)
        workers = parallel.budget(params.device)
        for step in range(self.steps):
            if self.method == "vmap":
                x = self.train_x[ids_t[:, step]].to(params.device)
                y = self.train_y[ids_t[:, step]].to(params.device)
                g, value = self._vgrad(params[where], x, y)
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

                total += np.asarray(parallel.map_nodes(node_step, range(b), self.flat, workers))
            self._update(state, params, where, grads)
        return total

    @torch.no_grad()
    def _update(self, state: TrainState, params: Tensor, where: slice | Tensor, grads: Tensor):
        """SGD on the block's rows (``where``: a slice, updated in place as a view, or row indices)."""
        view = isinstance(where, slice)
        block = params[where]
        if self.weight_decay:
            grads.add_(block, alpha=self.weight_decay)
        if state.momentum is not None:
            buf = state.momentum[where].mul_(self.momentum).add_(grads)
            if not view:
                state.momentum[where] = buf
            grads = buf
        block.sub_(grads, alpha=self.lr)
        if not view:
            params[where] = block


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
