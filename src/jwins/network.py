"""Faults and the network time model: which nodes are offline and which messages are lost in a round, which
nodes are slow, and how long a round takes on the modelled network.

Every draw is a stateless function of (seed, round), so all ranks of a distributed run agree without talking.
"""
from __future__ import annotations

import numpy as np

from . import rng
from .config import Config


def offline_nodes(config: Config, round: int) -> np.ndarray:
    """[N_world] bool: nodes offline this round (they neither train, send, receive nor average)."""
    if not config.faults.offline:
        return np.zeros(config.nodes, dtype=bool)
    return rng.stream(config.seed, "faults-offline", round).random(config.nodes) < config.faults.offline


def lost_links(config: Config, round: int) -> np.ndarray | None:
    """[N_world, N_world] bool: ``lost[j, i]`` if the message from j to i is lost this round."""
    if not config.faults.message_loss:
        return None
    return rng.stream(config.seed, "faults-loss", round).random((config.nodes, config.nodes)) < \
        config.faults.message_loss


def stragglers(config: Config) -> np.ndarray:
    """[N_world] compute-time multiplier of each node (``faults.straggler_slowdown`` for the stragglers)."""
    slow = rng.stream(config.seed, "faults-stragglers").random(config.nodes) < config.faults.stragglers
    return np.where(slow, config.faults.straggler_slowdown, 1.0)


def network_time(config: Config, compute: np.ndarray, message_bytes: np.ndarray, degrees: np.ndarray,
                 graph=None) -> float:
    """Modelled duration of one round: each node computes, then pushes its message to its neighbours; the
    round ends when the slowest node is done.

    Per node: ``compute_i + latency + bits_i / bandwidth`` where bits_i is the message times its degree over
    one uplink of ``bandwidth_mbps`` (``network.per_link = false``), or one message per link when every link
    has that bandwidth (``per_link = true``). Nodes that send nothing pay no latency.

    With ``network.hosts = H`` (and the round's ``graph``) the nodes live on H machines in contiguous blocks,
    as the ranks of a distributed run hold them: a machine computes its nodes one after the other (the sum of
    their compute), and its one uplink carries each message once to every other machine that has a neighbour
    of the sender (what the distributed engine sends); messages between nodes of one machine cost nothing. The
    machines exchange in lockstep: the round takes the slowest machine's work, then the slowest link's transfer.
    """
    net = config.network
    if net.hosts and graph is not None:
        return _hosts_time(config, compute, message_bytes, graph)
    sends = message_bytes > 0
    volume = message_bytes * (1 if net.per_link else degrees)
    transfer = volume * 8 / (net.bandwidth_mbps * 1e6) if net.bandwidth_mbps else np.zeros_like(compute)
    per_node = compute + np.where(sends, net.latency_ms / 1e3 + transfer, 0.0)
    return float(per_node.max()) if len(per_node) else 0.0


def _hosts_time(config: Config, compute: np.ndarray, message_bytes: np.ndarray, graph) -> float:
    net = config.network
    n = len(compute)
    hosts = min(net.hosts, n)
    base, extra = divmod(n, hosts)
    host_of = np.repeat(np.arange(hosts), [base + (h < extra) for h in range(hosts)])
    volume = np.zeros(hosts)
    for s in np.flatnonzero(message_bytes > 0):
        reached = {int(host_of[u]) for u in graph.neighbors[s]} - {int(host_of[s])}
        volume[host_of[s]] += message_bytes[s] * len(reached)
    work = np.bincount(host_of, weights=compute, minlength=hosts)
    transfer = volume * 8 / (net.bandwidth_mbps * 1e6) if net.bandwidth_mbps else np.zeros(hosts)
    # the machines exchange in lockstep, as the distributed engine does: the messages leave once every machine has
    # computed (each waits for its peers' sizes first), so the slowest machine's work comes before the slowest
    # link's transfer
    return float(work.max() + (net.latency_ms / 1e3 + transfer.max() if (volume > 0).any() else 0.0))
