"""All nodes in one process: messages travel as bytes objects between in-memory inboxes."""
from __future__ import annotations

import time

import numpy as np

from ..topology import Graph


class LocalTransport:
    """Delivers each sender's bytes to all its neighbours, in sender order.

    The bytes never leave this process, so they are ``trusted``: the receiver decodes them in process.
    """

    trusted = True

    def exchange(self, outgoing: dict[int, bytes], graph: Graph, round: int
                 ) -> dict[int, list[tuple[int, bytes]]]:
        del round
        inbox: dict[int, list[tuple[int, bytes]]] = {i: [] for i in range(graph.num_nodes)}
        for sender in sorted(outgoing):
            data = outgoing[sender]
            for receiver in graph.neighbors[sender]:
                inbox[receiver].append((sender, data))
        return inbox


class LocalEngine:
    """Hosts every node of the world; gathering per-node results is the identity."""

    rank = 0
    world_size = 1

    def __init__(self, num_nodes: int):
        self.nodes = list(range(num_nodes))
        self.transport = LocalTransport()
        self.started = time.time()

    def gather(self, values: np.ndarray) -> np.ndarray:
        return values

    def agree(self, flag: bool) -> bool:
        return bool(flag)

    def minimum(self, value: int) -> int:
        return int(value)

    def limit_messages(self, max_bytes: int) -> None:
        del max_bytes  # the bytes never leave this process

    def close(self) -> None:
        pass
