"""Random subsampling (reference: SubSampling): each node sends a random fraction alpha of its parameters.

The mask is drawn from a seed that comes from the node's sharing stream for this round; only the seed and
alpha travel (wire index codec ``seed``) and the receiver regenerates the indices with
:func:`jwins.wire.seeded_indices`. Receivers fill the rest with their own values. As in the reference, only
alpha > metadata_cap sends the whole model densely (alpha = metadata_cap still sends a random mask).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from torch import Tensor

from ..wire import seeded_indices
from .. import parallel, rules
from ..wire.message import Message
from .base import Inbox, Mixing, dense_messages, fill_in_average, to_numpy
from .full import Nodes


class Subsample:
    index_codec = "seed"  # the seed travels instead of the indices

    def __init__(self, *, alpha: float = 0.1, metadata_cap: float = 0.5):
        if rules.fraction(alpha):
            raise ValueError(f"alpha = {alpha} {rules.fraction(alpha)}")
        self.alpha, self.metadata_cap = float(alpha), float(metadata_cap)

    def message_dim(self, dim: int) -> int:
        return dim

    @property
    def expected_fraction(self) -> float:
        return 1.0 if self.alpha > self.metadata_cap else self.alpha

    def init(self, params: Tensor, nodes: Sequence[int]) -> Nodes:
        del params
        return Nodes(tuple(nodes))

    def prepare(self, state: Nodes, params: Tensor, round: int, rngs: list[np.random.Generator]
                ) -> tuple[list[Message], Nodes, None]:
        if self.alpha > self.metadata_cap:
            return dense_messages(params, list(state.nodes), round, alpha=self.alpha), state, None
        values = to_numpy(params)
        dim = values.shape[1]
        seeds = [int(g.integers(0, 2**53)) for g in rngs]

        def rows(sl: slice) -> list[Message]:  # the masks drawn on the worker threads (numpy releases the GIL)
            out = []
            for i in range(*sl.indices(len(seeds))):
                idx = seeded_indices(seeds[i], dim, self.alpha)
                out.append(Message(state.nodes[i], round, dim, idx, values[i, idx],
                                   extra={"mask_seed": float(seeds[i]), "alpha": self.alpha}, alpha=self.alpha))
            return out

        blocks = parallel.map_items(rows, parallel.row_chunks(len(seeds), parallel.budget(params.device)))
        return [m for block in blocks for m in block], state, None

    def merge(self, state: Nodes, params: Tensor, inbox: Inbox, mixing: Mixing, prepared: None
              ) -> tuple[Tensor, Nodes]:
        del prepared
        return fill_in_average(params, inbox, mixing, out=params), state


def subsample(*, alpha: float = 0.1, metadata_cap: float = 0.5) -> Subsample:
    return Subsample(alpha=alpha, metadata_cap=metadata_cap)
