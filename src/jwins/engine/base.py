"""What the round loop needs from an engine: where nodes live (:class:`Engine`) and how bytes travel
(:class:`Transport`). One loop runs every engine; engines differ only in these.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np

from ..topology import Graph


class Transport(Protocol):
    """Moves each hosted sender's encoded message to all its neighbours."""

    #: whether the bytes received can only be this process's own encoder's output (the simulator), so that the
    #: receiver may skip the guards it puts around untrusted bytes (e.g. the isolated fpzip decoder)
    trusted: bool

    def exchange(self, outgoing: dict[int, bytes], graph: Graph, round: int
                 ) -> dict[int, list[tuple[int, bytes]]]:
        """Send ``outgoing[sender]`` to every neighbour of ``sender``; return each hosted receiver's inbox
        ``[(sender, bytes), ...]`` sorted by sender."""
        ...


class Engine(Protocol):
    """Hosts some nodes of the world in this process and talks to the processes that host the others."""

    rank: int                 # this process's rank (0 writes the run directory)
    world_size: int
    nodes: list[int]          # global ids of the hosted nodes, in row order
    transport: Transport
    started: float            # rank 0's wall clock when the world met (names default run directories)

    def gather(self, values: np.ndarray) -> np.ndarray:
        """Rank 0 gets the world's rows (one per node, in node order); other ranks get their own back."""
        ...

    def agree(self, flag: bool) -> bool:
        """Whether any rank passed True; every rank gets the same answer (a stop request seen by one)."""
        ...

    def minimum(self, value: int) -> int:
        """The smallest value any rank passed; every rank gets it (the newest checkpoint all ranks hold)."""
        ...

    def limit_messages(self, max_bytes: int) -> None:
        """The largest encoded message a node of this run can send: bytes a peer claims beyond it are a fault."""
        ...

    def close(self) -> None:
        """End of the run (also after a failure: tell the other ranks)."""
        ...
