"""D-PSGD full sharing (Lian et al. 2017): every node sends its whole model; receivers average with
Metropolis-Hastings weights. And ``local``: no communication at all."""
from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np
from torch import Tensor

from ..wire.message import Message
from .base import Inbox, Mixing, dense_messages, fill_in_average


class Nodes(NamedTuple):
    """The state of a stateless algorithm: only which nodes it serves."""

    nodes: tuple[int, ...]


class Full:
    def message_dim(self, dim: int) -> int:
        return dim

    def init(self, params: Tensor, nodes: Sequence[int]) -> Nodes:
        del params
        return Nodes(tuple(nodes))

    def prepare(self, state: Nodes, params: Tensor, round: int, rngs: list[np.random.Generator]
                ) -> tuple[list[Message], Nodes, None]:
        del rngs
        return dense_messages(params, list(state.nodes), round), state, None

    def merge(self, state: Nodes, params: Tensor, inbox: Inbox, mixing: Mixing, prepared: None
              ) -> tuple[Tensor, Nodes]:
        del prepared
        return fill_in_average(params, inbox, mixing, out=params), state


class Local:
    """No communication at all: the baseline that shows what collaboration gains."""

    expected_fraction = 0.0

    def message_dim(self, dim: int) -> int:
        return dim

    def init(self, params: Tensor, nodes: Sequence[int]) -> Nodes:
        del params
        return Nodes(tuple(nodes))

    def prepare(self, state: Nodes, params: Tensor, round: int, rngs: list[np.random.Generator]
                ) -> tuple[list[Message], Nodes, None]:
        del params, round, rngs
        return [], state, None

    def merge(self, state: Nodes, params: Tensor, inbox: Inbox, mixing: Mixing, prepared: None
              ) -> tuple[Tensor, Nodes]:
        del inbox, mixing, prepared
        return params, state


def full() -> Full:
    return Full()


def local() -> Local:
    return Local()
