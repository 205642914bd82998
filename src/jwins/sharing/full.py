"""D-PSGD full sharing (Lian et al. 2017): every node sends its whole model; receivers average with
Metropolis-Hastings weights."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from torch import Tensor

from ..wire.message import Message
from .base import Inbox, Mixing, dense_messages, fill_in_average


class FullState(NamedTuple):
    nodes: tuple[int, ...]


class Full:
    def message_dim(self, dim: int) -> int:
        return dim

    def init(self, params: Tensor, nodes: list[int]) -> FullState:
        del params
        return FullState(tuple(nodes))

    def prepare(self, state: FullState, params: Tensor, round: int, rngs: list[np.random.Generator]
                ) -> tuple[list[Message], FullState]:
        del rngs
        return dense_messages(params, list(state.nodes), round), state

    def merge(self, state: FullState, params: Tensor, inbox: Inbox, mixing: Mixing) -> tuple[Tensor, FullState]:
        return fill_in_average(params, inbox, mixing), state


class Local:
    """No communication at all: the baseline that shows what collaboration gains."""

    def message_dim(self, dim: int) -> int:
        return dim

    def init(self, params: Tensor, nodes: list[int]) -> FullState:
        del params
        return FullState(tuple(nodes))

    def prepare(self, state, params, round, rngs):
        del params, round, rngs
        return [], state

    def merge(self, state, params, inbox, mixing):
        del inbox, mixing
        return params, state


def full() -> Full:
    return Full()


def local() -> Local:
    return Local()
