"""One round of communication for the hosted nodes: prepare -> encode -> exchange -> decode -> merge.

A node only averages what came out of :func:`jwins.wire.decode`, and the bytes counted are the encoded
messages' lengths times the sender's degree.
"""
from __future__ import annotations

import contextlib
from typing import Any, NamedTuple

import numpy as np
import torch

from . import rng, wire
from .config import WireConfig
from .engine.base import Transport
from .errors import JwinsError, WireError
from .sharing.base import Mixing, Sharing
from .topology import Graph


class Exchanged(NamedTuple):
    params: torch.Tensor     # [N, D] after averaging
    state: Any               # the sharing state after the round
    messages: list           # what the hosted nodes sent (before encoding)
    message_bytes: np.ndarray  # [N, 4] each hosted node's message, as encoded: total, header, indices, values
    alphas: np.ndarray       # [N] the alpha each hosted node chose (NaN if it sent nothing)


def _no_timer(phase: str):
    return contextlib.nullcontext()


def communicate(sharing: Sharing, state: Any, params: torch.Tensor, round: int, *, seed: int, graph: Graph,
                mixing: Mixing, transport: Transport, wire_config: WireConfig | None = None,
                index_codec: str | None = None, timer=None, offline: np.ndarray | None = None,
                lost: np.ndarray | None = None) -> Exchanged:
    """One round of communication for the hosted nodes (``mixing.nodes``).

    ``index_codec`` overrides the wire's (an algorithm that requires its own, e.g. ``seed``). ``offline[i]``:
    node i neither sends nor averages (its parameters and sharing state are kept); ``lost[j, i]``: the message
    from j to i is lost on the way (it was still sent and counted). A receiver renormalises its
    Metropolis-Hastings weights over the messages that arrived.
    """
    timer = timer or _no_timer
    wire_config = wire_config or WireConfig()
    nodes = list(mixing.nodes)
    # offline nodes keep their parameters and state: algorithms update both in place, so their rows are saved
    # first (a copy of those rows only) and put back after the merge
    resting = np.flatnonzero(offline[nodes]) if offline is not None else np.zeros(0, dtype=np.int64)
    kept = _rows_of(params, state, resting) if len(resting) else None
    with timer("prepare"):
        rngs = [rng.stream(seed, "sharing", node, round) for node in nodes]
        messages, new_state, prepared = sharing.prepare(state, params, round, rngs)
    if offline is not None:
        messages = [m for m in messages if not offline[m.sender]]
    with timer("encode"):
        encoded = _encode_all(messages, index_codec or wire_config.index_codec, wire_config.value_codec, round)
    payloads = {sender: data for sender, (data, _) in encoded.items()}
    message_bytes = np.zeros((len(nodes), 4))
    alphas = np.full(len(nodes), np.nan)
    row_of = {node: i for i, node in enumerate(nodes)}
    for m in messages:
        i, (data, lay) = row_of[m.sender], encoded[m.sender]
        message_bytes[i] = (len(data), lay.header_bytes, lay.index_bytes, lay.value_bytes)
        # the alpha the algorithm chose, as it recorded it; a plugin that records none: the fraction it sent
        alphas[i] = m.alpha if m.alpha is not None else (1.0 if m.indices is None else m.k / m.dim)
    with timer("exchange"):
        raw = transport.exchange(payloads, graph, round)
    if lost is not None or offline is not None:
        raw = {i: [(j, data) for j, data in pairs
                   if not (lost is not None and lost[j, i]) and not (offline is not None and offline[i])]
               for i, pairs in raw.items()}
    with timer("decode"):
        inbox = _decode_inbox(raw, nodes, sharing.message_dim(params.shape[1]), round, trusted=transport.trusted)
    with timer("merge"):
        merged, new_state = sharing.merge(new_state, params, inbox, mixing, prepared)
    if kept is not None:
        merged, new_state = _put_back(merged, new_state, resting, *kept)
    return Exchanged(merged, new_state, messages, message_bytes, alphas)


def _rows_of(params: torch.Tensor, state: Any, rows: np.ndarray) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Copies of ``rows`` of the parameters and of every per-node tensor field of ``state``."""
    index = torch.from_numpy(rows).to(params.device)
    fields = {} if state is None else {name: value[index.to(value.device)].clone()
                                        for name, value in state._asdict().items()
                                        if isinstance(value, torch.Tensor) and value.shape[:1] == params.shape[:1]}
    return params[index].clone(), fields


def _put_back(params: torch.Tensor, state: Any, rows: np.ndarray, saved_params: torch.Tensor,
              saved_fields: dict[str, torch.Tensor]) -> tuple[torch.Tensor, Any]:
    """``params`` and ``state`` with the saved rows written back (offline nodes)."""
    index = torch.from_numpy(rows).to(params.device)
    params[index] = saved_params
    if state is None:
        return params, state
    for name, saved in saved_fields.items():
        value = getattr(state, name)
        if isinstance(value, torch.Tensor) and value.shape[1:] == saved.shape[1:]:
            value[index.to(value.device)] = saved
    return params, state


def _encode_all(messages, index_codec: str, value_codec: str, round: int) -> dict[int, tuple[bytes, Any]]:
    """Each sender's encoded message and the sizes of its parts."""
    try:
        payloads = wire.encode_many(messages, index_codec=index_codec, value_codec=value_codec, layouts=True)
    except ValueError:
        payloads = None  # find the message and say which node
    if payloads is not None:
        return {m.sender: pair for m, pair in zip(messages, payloads)}
    for m in messages:
        if not np.isfinite(m.values).all():
            bad = int(np.count_nonzero(~np.isfinite(m.values)))
            raise JwinsError(f"node {m.sender}'s model is not finite in round {round} (training diverged: {bad} of "
                             f"the {m.k} values it would send are NaN or infinite); lower train.lr")
        try:
            wire.encode(m, index_codec=index_codec, value_codec=value_codec)
        except ValueError as e:
            raise JwinsError(f"node {m.sender} cannot send its message of round {round}: {e}") from None
    raise AssertionError("encode_many failed where encode did not")  # pragma: no cover


def _decode_inbox(raw: dict[int, list[tuple[int, bytes]]], nodes: list[int], dim: int, round: int,
                  trusted: bool = False) -> dict[int, list[wire.Message]]:
    # every distinct payload is decoded once (in the simulator a sender's bytes reach all its neighbours)
    distinct: dict[int, bytes] = {}
    for receiver in nodes:
        for _, data in raw.get(receiver, []):
            distinct.setdefault(id(data), data)
    keys = list(distinct)
    cache = dict(zip(keys, wire.decode_many([distinct[key] for key in keys], dim=dim, trusted=trusted)))
    inbox: dict[int, list[wire.Message]] = {}
    for receiver in nodes:
        messages = []
        for sender, data in sorted(raw.get(receiver, []), key=lambda p: p[0]):
            m = cache[id(data)]
            if isinstance(m, WireError):
                raise WireError(f"round {round}: message from node {sender} to node {receiver}: {m}") from None
            if m.sender != sender or m.round != round:
                raise WireError(f"round {round}: node {receiver} got a message claiming sender {m.sender}, round "
                                f"{m.round} from node {sender}")
            messages.append(m)
        inbox[receiver] = messages
    return inbox
