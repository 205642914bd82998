"""Event-triggered sharing, a plugin for jwins (the trigger of SPARQ-SGD, Singh et al., 2021).

A node sends its whole model only in the rounds where it has moved by more than ``threshold`` (relative L2
distance) since the model it last sent; the threshold decays by ``decay`` every round, so nodes talk less early,
when models are far apart anyway, and more as they converge. Receivers average with the neighbours they heard
from, their Metropolis-Hastings weights renormalised over those (jwins' fill-in averaging does that).

Use it from a config: ``sharing.algorithm = "event_triggered:event_triggered"`` with ``[sharing.options]``
``threshold = 0.05``; or from Python: ``jwins.run(config, sharing=event_triggered(threshold=0.05))``.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np
import torch

from jwins.sharing import fill_in_average
from jwins.wire import Message


class TriggerState(NamedTuple):
    """What carries over between rounds; its tensors are saved in checkpoints."""

    nodes: tuple[int, ...]
    last_sent: torch.Tensor   # [N, D] the model each node last sent


class EventTriggered:
    def __init__(self, threshold: float, decay: float):
        if threshold < 0 or not 0 < decay <= 1:
            raise ValueError(f"threshold = {threshold} must be >= 0 and decay = {decay} in (0, 1]")
        self.threshold, self.decay = threshold, decay

    def message_dim(self, dim: int) -> int:
        return dim  # whole models travel

    def init(self, params: torch.Tensor, nodes: Sequence[int]) -> TriggerState:
        return TriggerState(tuple(nodes), params.clone())

    def prepare(self, state: TriggerState, params: torch.Tensor, round: int, rngs: list[np.random.Generator]):
        moved = (params - state.last_sent).norm(dim=1) / state.last_sent.norm(dim=1).clamp_min(1e-12)
        send = (moved > self.threshold * self.decay ** round) | (round == 0)
        values = params.detach().cpu().numpy()
        messages = [Message(node, round, params.shape[1], None, values[i].copy())
                    for i, node in enumerate(state.nodes) if send[i]]
        last_sent = torch.where(send.unsqueeze(1), params, state.last_sent)
        return messages, state._replace(last_sent=last_sent), None  # nothing to hand from prepare to merge

    def merge(self, state: TriggerState, params: torch.Tensor, inbox, mixing, prepared: None):
        return fill_in_average(params, inbox, mixing), state


def event_triggered(*, threshold: float = 0.05, decay: float = 0.98) -> EventTriggered:
    """The factory a config names; ``[sharing.options]`` keys are its keyword arguments."""
    return EventTriggered(threshold, decay)
