"""Nodes sharded over torch.distributed ranks: the byte messages travel over gloo, the math stays wherever
``engine.device`` says.

Layout
------
The N nodes are split into contiguous blocks over the K ranks (block sizes differ by at most one; the first
``N % K`` ranks get the larger blocks), so gathering per-node rows in rank order gives them in node order.

Wire protocol (point-to-point only, never a pickled object)
-----------------------------------------------------------
Every frame a rank sends to another is its bytes followed by a 16-byte trailer (``jwinsEND`` and the round,
int64), and every receive is posted with :data:`SLACK` bytes of zeros beyond the trailer. gloo accepts a
frame shorter than the buffer posted for it without a word, and aborts the whole process (in C++, every rank
with it) when one is longer; so the receiver checks that the trailer sits exactly where the frame should end,
for the round it expects, with nothing after it: a truncated frame, one longer by up to SLACK bytes, one left
over from another round or one with the wrong counts is a :class:`~jwins.errors.PeerError` naming the rank
that sent it (and the other ranks are told). A frame longer than that still aborts gloo: no protocol over
gloo's point-to-point calls can refuse it, only a transport of our own could.

* ``exchange`` (once per round): for every pair of ranks that share an edge this round, each side sends one
  int64 tensor ``[round, len(message of sender 1), len(message of sender 2), ...]`` (``-1``: that sender sent
  nothing) listing, in node order, its hosted senders that have a neighbour on the other rank; then one uint8
  tensor with those messages concatenated. Each message crosses a rank boundary once; the receiving rank hands
  the same bytes to all its hosted neighbours of the sender. Both sides derive the lists from the graph, so
  no other metadata travels. Both phases use ``dist.batch_isend_irecv``. The declared sizes are checked
  before anything is allocated for them: a size below -1, a message over ``max_message_bytes`` or a peer's
  total over ``max_peer_bytes`` is a :class:`~jwins.errors.PeerError` naming that rank and the round (and
  the other ranks are told).
* ``gather``: every rank except 0 sends its rows as one float64 tensor to rank 0 (the shapes follow from the
  block sizes); rank 0 concatenates them in rank order. The sends are waited for at the next exchange, so
  ranks other than 0 do not stall while rank 0 writes metrics.
* a control channel: at start-up every rank posts one receive (int64 ``[kind, rank, round, reason]``) from
  every other rank. It carries the start-up check that all ranks run the same configuration, the final
  handshake (every rank tells every other one it is done, so no rank tears down while a peer still needs it)
  and, when something goes wrong, an abort notice naming the rank at fault, which lets a rank that only sees
  the fallout ("rank 0 closed its connection") name the rank that really went missing.

Faults
------
Every wait has a deadline of ``engine.timeout`` seconds. A peer whose connection closes (it died) or that does
not answer in time raises :class:`~jwins.errors.PeerError` naming that rank and the round; the rank that saw
it first tells the others, so all of them stop (each within ``engine.timeout`` of when it started waiting)
with an error that names the same rank. Rank 0 has written ``metrics.jsonl`` up to the last complete round.

Launch
------
* one machine: ``torchrun --nproc-per-node K -m jwins run CONFIG --set engine.kind=distributed``, or simply
  ``jwins run CONFIG --set engine.workers=K`` (:mod:`jwins.launch` starts and supervises the K ranks);
* several machines: the same torchrun command on each with ``--nnodes M --node-rank I --rdzv-backend c10d
  --rdzv-endpoint HOST:PORT`` (see the README).
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError, JwinsError, PeerError

if TYPE_CHECKING:  # importing topology (and so torch) is left to the ranks: the launcher stays light
    from ..topology import Graph

# control-channel kinds and reasons
_DONE, _ABORT = 1, 2
_CLOSED, _TIMEOUT, _ERROR, _INTERRUPTED, _MALFORMED, _BAD_FRAME = 0, 1, 2, 3, 4, 5
# the end of every frame (followed by the round, int64) and the room left after it in every receive buffer
_END = b"jwinsEND"
TRAILER = 16
SLACK = 4096
# the default bounds on what a peer may declare in phase 1 of an exchange (see DistributedEngine)
MAX_MESSAGE_BYTES = 1 << 30
MAX_PEER_BYTES = 1 << 30
# tags, offset by a per-engine base so that engines that share a process group never mix messages
_T_SIZES, _T_PAYLOAD, _T_GATHER, _T_CTRL, _T_HELLO, _T_BARRIER, _T_SHUT = range(1, 8)
_TAG_STRIDE = 8
_FOREVER = timedelta(days=1)   # what the waiter threads pass to gloo: the deadlines are kept here instead


def block_bounds(num_nodes: int, world_size: int) -> np.ndarray:
    """[K + 1] start of each rank's block of nodes (and the end): contiguous, sizes differ by at most one."""
    base, extra = divmod(num_nodes, world_size)
    counts = np.full(world_size, base, dtype=np.int64)
    counts[:extra] += 1
    return np.concatenate([[0], np.cumsum(counts)])


class _Waiter:
    """Waits for gloo works, in order, in a daemon thread, so that the caller can give up at its own deadline.

    gloo's own timeout (``work.wait(timeout)``) closes every connection of the process when it fires, after
    which no abort notice could go out; so gloo is never asked to time out and the thread is simply left
    behind when a peer never answers.
    """

    def __init__(self, items: list[tuple[int, Any]], registry: list | None = None):
        self.items = items
        self.index = 0
        self.error: BaseException | None = None
        self._done = threading.Event()
        if registry is not None:
            registry[:] = [w for w in registry if not w.finished]
            registry.append(self)
        threading.Thread(target=self._run, name="jwins-gloo-wait", daemon=True).start()

    def _run(self) -> None:
        for i, (_, work) in enumerate(self.items):
            self.index = i
            try:
                work.wait(_FOREVER)
            except BaseException as e:  # noqa: BLE001 - reported to the caller
                self.error = e
                break
        self._done.set()

    def wait(self, seconds: float) -> bool:
        """True when every work finished (successfully or not, see ``error``) within ``seconds``."""
        return self._done.wait(max(seconds, 0.0))

    @property
    def peer(self) -> int:
        return self.items[self.index][0]

    @property
    def finished(self) -> bool:
        return self._done.is_set()


@dataclass(frozen=True)
class _Plan:
    """Who sends what to whom for one graph, from this rank's point of view."""

    send: dict[int, list[int]]   # peer rank -> my hosted senders with a neighbour there (node order)
    recv: dict[int, list[int]]   # peer rank -> its senders with a neighbour here (node order)


class DistributedEngine:
    """Hosts a contiguous block of nodes on this torch.distributed rank; bytes travel over gloo.

    ``timeout``: seconds before a silent peer is declared gone (also gloo's own timeout). ``device``: where
    the model math runs; a bare ``"cuda"`` becomes this rank's ``LOCAL_RANK``-th GPU. ``config``: when given,
    the ranks check at start-up that they all run the same configuration.

    ``max_message_bytes`` / ``max_peer_bytes`` (also attributes, which the loop may set before the first
    exchange): the largest message, and the largest total of one peer's messages in one round, that this rank
    accepts; a peer declaring more is at fault (PeerError) and nothing is allocated for it. The engine does not
    know the message dimension, so the defaults (:data:`MAX_MESSAGE_BYTES`, :data:`MAX_PEER_BYTES`: 1 GiB each)
    are generous; the loop knows the bound of a message for its model and can set a tight one.
    """

    trusted = False           # peers' bytes are decoded as untrusted (the isolated decoders)
    _instances = 0            # engines made in this process: each gets its own tags
    _created_group = False    # this module initialised the default process group
    _gloo_group = None        # the gloo group made when the default group is not gloo (e.g. NCCL)

    def __init__(self, num_nodes: int, *, timeout: float = 60.0, device: str = "cpu", config: Any = None,
                 max_message_bytes: int = MAX_MESSAGE_BYTES, max_peer_bytes: int = MAX_PEER_BYTES):
        import torch
        import torch.distributed as dist

        self._dist = dist
        self.timeout = float(timeout)
        self.max_message_bytes = int(max_message_bytes)
        self.max_peer_bytes = int(max_peer_bytes)
        self.num_nodes = int(num_nodes)
        self._closed = False
        self._failed = False          # an error was raised or announced: no final handshake
        self._abort_sent = False
        self._round1 = 0              # the round being run, 1-based as in metrics.jsonl (0: before the first)
        self._pending: list[tuple[int, str, Any, Any, int]] = []   # sends not yet waited for
        self._waiters: list[_Waiter] = []   # waiter threads that may still be blocked
        self._plan_graph: Graph | None = None
        self._plan: _Plan | None = None
        self._exc_at_start = sys.exc_info()[1]
        self.started = time.time()    # rank 0's clock, once the ranks have met: names the default run directory

        if dist.is_available() and dist.is_initialized():
            rank, world = dist.get_rank(), dist.get_world_size()
        else:
            missing = [k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
            if missing:
                raise JwinsError(
                    "engine.kind = 'distributed' needs the torch.distributed environment "
                    f"({', '.join(missing)} not set): start the ranks with `torchrun --nproc-per-node K -m jwins "
                    "run ... --set engine.kind=distributed`, or let `jwins run --set engine.workers=K` start them")
            rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        if world > self.num_nodes:
            raise ConfigError(f"{world} ranks but only nodes = {self.num_nodes}: every rank needs at least one "
                              "node; use fewer ranks or more nodes")
        self.rank, self.world_size = rank, world
        self.bounds = block_bounds(self.num_nodes, world)
        self.nodes = list(range(int(self.bounds[rank]), int(self.bounds[rank + 1])))
        self._rank_of = np.repeat(np.arange(world), np.diff(self.bounds))
        self.transport = self

        self.device = torch.device(device)
        if self.device.type == "cuda" and self.device.index is None and torch.cuda.is_available():
            local = int(os.environ.get("LOCAL_RANK", rank))
            torch.cuda.set_device(local % torch.cuda.device_count())
            self.device = torch.device("cuda", torch.cuda.current_device())

        # A world of one rank needs no process group. The group this module creates stays up for later runs
        # in the same process (tearing it down and meeting again on the same MASTER_PORT races with the
        # other ranks' teardown); it is destroyed only after a failure, when its connections are gone anyway.
        self._group = None
        if world > 1 and not dist.is_initialized():
            try:
                dist.init_process_group("gloo", timeout=timedelta(seconds=self.timeout), rank=rank,
                                        world_size=world, store=_loopback_store(rank, world, self.timeout))
            except Exception as e:  # DistStoreError, RuntimeError, ...
                where = f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')}"
                raise PeerError(f"rank {rank} of {world}: the ranks did not all meet at {where} within "
                                f"engine.timeout = {self.timeout:g} s ({_first_line(e)}); start all {world} ranks "
                                "with the same MASTER_ADDR/MASTER_PORT (torchrun does this)") from e
            DistributedEngine._created_group = True
        elif world > 1 and dist.get_backend() != "gloo":
            if DistributedEngine._gloo_group is None:
                DistributedEngine._gloo_group = dist.new_group(backend="gloo",
                                                               timeout=timedelta(seconds=self.timeout))
            self._group = DistributedEngine._gloo_group
        self._owned = world > 1 and DistributedEngine._created_group

        base = _TAG_STRIDE * (DistributedEngine._instances % 100_000)
        DistributedEngine._instances += 1
        self._tag = {name: base + t for name, t in
                     (("sizes", _T_SIZES), ("payload", _T_PAYLOAD), ("gather", _T_GATHER), ("ctrl", _T_CTRL),
                      ("hello", _T_HELLO), ("barrier", _T_BARRIER), ("shut", _T_SHUT))}
        # the control channel: one receive posted from every peer, completed by DONE or ABORT
        self._ctrl: dict[int, dict[str, Any]] = {}
        try:
            for peer in self._peers():
                buf = _buffer(4 * 8)
                work = dist.irecv(buf, src=peer, group=self._group, tag=self._tag["ctrl"])
                self._ctrl[peer] = {"buf": buf, "work": work, "waiter": None}
            self._hello(config)
        except BaseException:
            self._failed = True
            self.close()
            raise

    # ----------------------------------------------------------------------------------------- helpers
    def _peers(self) -> list[int]:
        return [p for p in range(self.world_size) if p != self.rank]

    def _describe_rank(self, rank: int) -> str:
        lo, hi = int(self.bounds[rank]), int(self.bounds[rank + 1]) - 1
        return f"rank {rank} (node {lo})" if lo == hi else f"rank {rank} (nodes {lo}-{hi})"

    def _round_text(self, round1: int) -> str:
        return f"in round {round1}" if round1 > 0 else "before the first round"

    def _post(self, ops_by_peer: dict[int, list], what: str) -> list[tuple[int, Any]]:
        """Post each peer's P2P ops as one batch; a peer whose connection is already gone fails here."""
        dist = self._dist
        works = []
        for peer, ops in ops_by_peer.items():
            if not ops:
                continue
            try:
                works.extend((peer, w) for w in dist.batch_isend_irecv(ops))
            except Exception as e:
                self._peer_failed(peer, what, e)
        return works

    def _wait(self, works: list[tuple[int, Any]], what: str, deadline: float | None = None) -> None:
        """Wait for ``works`` until ``deadline`` (default: ``timeout`` from now); a failed or late peer
        raises PeerError."""
        if not works:
            return
        deadline = time.monotonic() + self.timeout if deadline is None else deadline
        waiter = _Waiter(works, self._waiters)
        finished = waiter.wait(deadline - time.monotonic())
        if waiter.error is not None:
            self._peer_failed(waiter.peer, what, waiter.error)
        if not finished:
            self._peer_failed(waiter.peer, what, None)

    def flush(self) -> None:
        """Wait until the results this rank sent to rank 0 in earlier rounds were taken (a peer that does not
        take them in time is a PeerError)."""
        pending, self._pending = self._pending, []
        deadline = time.monotonic() + self.timeout
        for peer, what, work, _tensor, round1 in pending:
            saved, self._round1 = self._round1, round1
            self._wait([(peer, work)], what, deadline)
            self._round1 = saved

    def _ctrl_waiter(self, peer: int) -> _Waiter:
        entry = self._ctrl[peer]
        if entry["waiter"] is None:
            entry["waiter"] = _Waiter([(peer, entry["work"])], self._waiters)
        return entry["waiter"]

    def _ctrl_message(self, peer: int, wait_s: float = 0.0) -> np.ndarray | None:
        """The control message ``peer`` sent us, if it arrives within ``wait_s`` (a broken link: None)."""
        if peer not in self._ctrl:
            return None
        waiter = self._ctrl_waiter(peer)
        if waiter.wait(wait_s) and waiter.error is None:
            return self._ctrl_note(peer)
        return None

    def _ctrl_note(self, peer: int) -> np.ndarray:
        """The ``[kind, rank, round, reason]`` that ``peer`` sent on the control channel; a malformed one is
        read as an abort naming ``peer`` itself."""
        buf = self._ctrl[peer]["buf"]
        if _fault(buf, 4 * 8, 0) is not None:
            return np.array([_ABORT, peer, self._round1, _BAD_FRAME], dtype=np.int64)
        return buf[:32].numpy().view(np.int64).copy()

    def _send_ctrl(self, kind: int, culprit: int, round1: int, reason: int, skip: set[int]) -> None:
        """Best effort: tell every other rank (except ``skip``) ``kind``; never raises."""
        import torch

        dist = self._dist
        msg = _frame(torch.tensor([kind, culprit, round1, reason], dtype=torch.int64), 0)
        works = []
        for q in self._peers():
            if q in skip:
                continue
            try:
                works.append(dist.isend(msg, dst=q, group=self._group, tag=self._tag["ctrl"]))
            except Exception:
                pass
        if works:
            _Waiter([(-1, w) for w in works], self._waiters).wait(min(2.0, self.timeout))

    def _peer_failed(self, peer: int, what: str, exc: BaseException | None) -> None:
        """Name the rank at fault (``exc`` None: ``peer`` is late), tell the others, raise PeerError.

        If a rank already found the culprit it has told us on the control channel (before its connection
        closed, which is often how we noticed): then we name that culprit, not the messenger.
        """
        reason = _TIMEOUT if exc is None or "timeout" in str(exc).lower() else _CLOSED
        culprit, round1, reporter = peer, self._round1, None
        # what peer told us (waiting a moment for it), then what anyone else already told us
        notes = [(peer, self._ctrl_message(peer, 0.5 if exc is None else 0.2))]
        notes += [(q, self._ctrl_message(q)) for q in self._peers() if q != peer]
        aborts = [(q, note) for q, note in notes if note is not None and int(note[0]) == _ABORT]
        first = notes[0][1]
        if aborts:
            reporter, note = aborts[0]
            culprit, round1, reason = int(note[1]), int(note[2]), int(note[3])
        elif first is not None and int(first[0]) == _DONE:
            self._failed = True
            self._abort(self.rank, round1, _ERROR, skip={peer})
            raise PeerError(f"{self._describe_rank(peer)} finished the run while rank {self.rank} still expected "
                            f"data from it ({what}, {self._round_text(self._round1)}): the ranks disagree about "
                            "the experiment; start them all with the same configuration")
        self._failed = True
        # the culprit is told too: if it is only slow, it learns why the others stopped
        self._abort(culprit, round1, reason, skip=set() if reporter is None else {reporter})
        raise PeerError(self._message(culprit, round1, reason, reporter, what)) from exc

    def _abort(self, culprit: int, round1: int, reason: int, skip: set[int]) -> None:
        if not self._abort_sent:
            self._abort_sent = True
            self._send_ctrl(_ABORT, culprit, round1, reason, skip | {self.rank})

    def _message(self, culprit: int, round1: int, reason: int, reporter: int | None, what: str) -> str:
        who = self._describe_rank(culprit)
        when = self._round_text(round1)
        if culprit == self.rank:
            if reason == _TIMEOUT:
                return (f"rank {reporter} gave up on this rank ({who}) {when}: it heard nothing from it within "
                        f"engine.timeout = {self.timeout:g} s; is the timeout shorter than a round's work?")
            return f"rank {reporter} reported this rank ({who}) as failed {when}"
        how = {
            _CLOSED: f"{who} went missing {when}: its connection closed (the process exited or crashed)",
            _TIMEOUT: f"{who} stopped answering {when}: nothing arrived within engine.timeout = "
                      f"{self.timeout:g} s",
            _ERROR: f"{who} failed with an error {when} (its own message says why)",
            _INTERRUPTED: f"{who} was interrupted {when}",
            _MALFORMED: f"{who} sent malformed message sizes {when}",
            _BAD_FRAME: f"{who} sent a malformed frame {when}",
        }.get(reason, f"{who} failed {when}")
        seen = f"rank {reporter} reported it to rank {self.rank}" if reporter is not None else \
            f"seen by rank {self.rank} while {what}"
        return f"{how} [{seen}]; the other ranks stop too"

    def _hello(self, config: Any) -> None:
        """Start-up check: every rank runs the same world and configuration (rank 0 compares the digests);
        rank 0 also hands out its start time, so that every rank names the same default run directory."""
        import torch

        dist = self._dist
        if self.world_size == 1:
            return
        digest = _fingerprint(self.num_nodes, config)
        what = "checking at start-up that all ranks run the same configuration"
        if self.rank == 0:
            bufs = {p: _buffer(32) for p in self._peers()}
            works = self._post({p: [dist.P2POp(dist.irecv, b, p, self._group, self._tag["hello"])]
                                for p, b in bufs.items()}, what)
            self._wait(works, what)
            bad = [p for p, b in bufs.items() if bytes(self._unframe(p, b, 32, what).numpy()) != digest]
            reply = _frame(torch.tensor([len(bad), bad[0] if bad else -1, round(self.started * 1e6)],
                                        dtype=torch.int64), 0)
            works = self._post({p: [dist.P2POp(dist.isend, reply, p, self._group, self._tag["hello"])]
                                for p in self._peers()}, what)
            self._wait(works, what)
        else:
            mine = _frame(torch.frombuffer(bytearray(digest), dtype=torch.uint8), 0)
            buf = _buffer(3 * 8)
            works = self._post({0: [dist.P2POp(dist.isend, mine, 0, self._group, self._tag["hello"]),
                                    dist.P2POp(dist.irecv, buf, 0, self._group, self._tag["hello"])]}, what)
            self._wait(works, what)
            reply = self._unframe(0, buf, 3 * 8, what).view(torch.int64)
            bad = [int(reply[1])] if int(reply[0]) else []
            self.started = int(reply[2]) / 1e6
        if bad:
            raise ConfigError(f"rank {bad[0]} runs a different configuration (or number of nodes) than rank 0; "
                              "every rank must run the same config (only engine.* and out may differ)")

    def _plan_for(self, graph: Graph) -> _Plan:
        if graph is self._plan_graph and self._plan is not None:
            return self._plan
        if graph.num_nodes != self.num_nodes:
            raise ValueError(f"graph has {graph.num_nodes} nodes but the engine was built for {self.num_nodes}")
        send: dict[int, list[int]] = {}
        remote: dict[int, set[int]] = {}
        for s in self.nodes:
            ranks = set()
            for u in graph.neighbors[s]:
                p = int(self._rank_of[u])
                if p != self.rank:
                    ranks.add(p)
                    remote.setdefault(p, set()).add(u)   # the graph is symmetric: u sends to s
            for p in ranks:
                send.setdefault(p, []).append(s)
        recv = {p: sorted(us) for p, us in remote.items()}
        plan = _Plan(dict(sorted(send.items())), dict(sorted(recv.items())))
        self._plan_graph, self._plan = graph, plan
        return plan

    def _check_sizes(self, peer: int, senders: list[int], sizes: list[int]) -> None:
        """The sizes ``peer`` declared for its ``senders``' messages: each -1 (nothing sent) or 0 ..
        ``max_message_bytes``, their sum at most ``max_peer_bytes``; else PeerError naming ``peer`` (the other
        ranks are told). Python ints: no sum can overflow."""
        bad = None
        for s, n in zip(senders, sizes):
            if n < -1:
                bad = f"{n} bytes for node {s}'s message"
            elif n > self.max_message_bytes:
                bad = f"{n} bytes for node {s}'s message, more than the {self.max_message_bytes} a message may have"
            if bad:
                break
        else:
            total = sum(n for n in sizes if n > 0)
            if total > self.max_peer_bytes:
                bad = f"{total} bytes in all, more than the {self.max_peer_bytes} one rank may send in a round"
        if bad:
            self._failed = True
            self._abort(peer, self._round1, _MALFORMED, skip=set())
            raise PeerError(f"{self._describe_rank(peer)} sent malformed message sizes "
                            f"{self._round_text(self._round1)} ({bad}) [seen by rank {self.rank}]; nothing was "
                            "received from it, and the other ranks stop too")

    def _unframe(self, peer: int, buf: Any, nbytes: int, what: str, round1: int | None = None) -> Any:
        """The ``nbytes`` of the frame ``peer`` sent into ``buf`` (and, with ``round1``, for that round); a
        frame that does not end where it should is a PeerError naming ``peer`` (the other ranks are told)."""
        fault = _fault(buf, nbytes, round1)
        if fault is not None:
            self._failed = True
            self._abort(peer, self._round1, _BAD_FRAME, skip=set())
            raise PeerError(f"{self._describe_rank(peer)} sent a malformed frame {self._round_text(self._round1)} "
                            f"while {what} ({fault}) [seen by rank {self.rank}]; nothing from it was used, and the "
                            "other ranks stop too")
        return buf[:nbytes]

    # ------------------------------------------------------------------------------------- interface
    def exchange(self, outgoing: dict[int, bytes], graph: Graph, round: int
                 ) -> dict[int, list[tuple[int, bytes]]]:
        """Deliver each hosted sender's bytes to all its neighbours; return every hosted receiver's inbox
        ``[(sender, bytes), ...]`` sorted by sender."""
        import torch

        dist = self._dist
        self._round1 = round + 1
        hosted = set(self.nodes)
        foreign = [s for s in outgoing if s not in hosted]
        if foreign:
            raise ValueError(f"rank {self.rank} was asked to send for nodes {foreign[:5]} it does not host")
        plan = self._plan_for(graph)

        # phase 1: sizes
        sizes_out = {p: _frame(torch.tensor([round] + [len(outgoing[s]) if s in outgoing else -1 for s in senders],
                                            dtype=torch.int64), self._round1) for p, senders in plan.send.items()}
        sizes_buf = {p: _buffer(8 * (1 + len(senders))) for p, senders in plan.recv.items()}
        what = "exchanging message sizes"
        ops: dict[int, list] = {}
        for p, t in sizes_out.items():
            ops.setdefault(p, []).append(dist.P2POp(dist.isend, t, p, self._group, self._tag["sizes"]))
        for p, t in sizes_buf.items():
            ops.setdefault(p, []).append(dist.P2POp(dist.irecv, t, p, self._group, self._tag["sizes"]))
        self._wait(self._post(ops, what), what)
        sizes_in = {}
        for p, t in sizes_buf.items():
            sizes_in[p] = t = self._unframe(p, t, 8 * (1 + len(plan.recv[p])), what).view(torch.int64)
            if int(t[0]) != round:
                self._failed = True
                raise PeerError(f"rank {p} sent its messages of round {int(t[0]) + 1} while rank {self.rank} is in "
                                f"round {round + 1}: the ranks are out of step (do they all run the same config?)")
            self._check_sizes(p, plan.recv[p], t[1:].tolist())

        # phase 2: the messages, concatenated per peer rank
        what = "exchanging messages"
        ops = {}
        keep = []
        for p, senders in plan.send.items():
            parts = [outgoing[s] for s in senders if s in outgoing]
            if any(parts):   # the messages and the trailer joined in one copy
                t = torch.frombuffer(bytearray(b"".join([*parts, _trailer(self._round1)])), dtype=torch.uint8)
                keep.append(t)
                ops.setdefault(p, []).append(dist.P2POp(dist.isend, t, p, self._group, self._tag["payload"]))
        totals = {p: int(t[1:].clamp(min=0).sum()) for p, t in sizes_in.items()}
        bufs = {}
        for p, total in totals.items():
            if total:
                bufs[p] = _buffer(total)
                ops.setdefault(p, []).append(dist.P2POp(dist.irecv, bufs[p], p, self._group,
                                                        self._tag["payload"]))
        # A peer that is late here finished phase 1 with us, so it is waiting on a third rank: give the rank
        # that waits on that one directly the time to time out and tell us who it is.
        self._wait(self._post(ops, what), what, time.monotonic() + self.timeout + min(self.timeout, 5.0))
        # the previous round's gather sends are surely taken by now; reap them
        self.flush()

        received: dict[int, bytes] = {}
        for p, senders in plan.recv.items():
            data = b""
            if p in bufs:
                data = bytes(self._unframe(p, bufs[p], totals[p], what, self._round1).numpy())
            offset = 0
            for s, n in zip(senders, sizes_in[p][1:].tolist()):
                if n >= 0:
                    received[s] = data[offset:offset + n]
                    offset += n
        inbox: dict[int, list[tuple[int, bytes]]] = {}
        for v in self.nodes:
            pairs = []
            for u in graph.neighbors[v]:   # sorted: the inbox is in sender order
                data = outgoing.get(u) if u in hosted else received.get(u)
                if data is not None:
                    pairs.append((u, data))
            inbox[v] = pairs
        return inbox

    def gather(self, values: np.ndarray) -> np.ndarray:
        """Rank 0 gets the world's rows (one per node, in node order) as float64; other ranks get their own."""
        import torch

        dist = self._dist
        values = np.ascontiguousarray(values, dtype=np.float64)
        if len(values) != len(self.nodes):
            raise ValueError(f"gather needs one row per hosted node ({len(self.nodes)}), got {len(values)}")
        if self.world_size == 1:
            return values
        what = "gathering results on rank 0"
        if self.rank != 0:
            t = _frame(torch.from_numpy(values.copy()), self._round1)
            try:
                work = dist.isend(t, dst=0, group=self._group, tag=self._tag["gather"])
            except Exception as e:
                self._peer_failed(0, what, e)
            self._pending.append((0, what, work, t, self._round1))
            return values
        tail = values.shape[1:]
        shapes = {p: (int(self.bounds[p + 1] - self.bounds[p]), *tail) for p in self._peers()}
        sizes = {p: 8 * int(np.prod(shape)) for p, shape in shapes.items()}
        bufs = {p: _buffer(sizes[p]) for p in self._peers()}
        works = self._post({p: [dist.P2POp(dist.irecv, b, p, self._group, self._tag["gather"])]
                            for p, b in bufs.items()}, what)
        self._wait(works, what)
        rows = [self._unframe(p, bufs[p], sizes[p], what, self._round1).numpy().view(np.float64).reshape(shapes[p])
                for p in self._peers()]
        return np.concatenate([values] + rows, axis=0)

    def agree(self, flag: bool) -> bool:
        """Whether any rank passed True; every rank gets the same answer (through rank 0). Used at the end of
        every round so that a Ctrl-C seen by some ranks stops all of them after the same round."""
        return self._reduce(int(bool(flag)), max) > 0

    def minimum(self, value: int) -> int:
        """The smallest ``value`` any rank passed; every rank gets it (e.g. the newest checkpoint round that
        every rank holds)."""
        return self._reduce(int(value), min)

    def _reduce(self, value: int, op) -> int:
        """``op`` over one int64 from every rank, computed by rank 0 and sent back to all."""
        import torch

        dist = self._dist
        if self.world_size == 1:
            return value
        self.flush()
        what = "agreeing on the end of the round"
        if self.rank == 0:
            bufs = {p: _buffer(8) for p in self._peers()}
            self._wait(self._post({p: [dist.P2POp(dist.irecv, b, p, self._group, self._tag["barrier"])]
                                   for p, b in bufs.items()}, what), what)
            got = [int(self._unframe(p, b, 8, what).view(torch.int64)[0]) for p, b in bufs.items()]
            answer = op([value, *got])
            frame = _frame(torch.tensor([answer], dtype=torch.int64), 0)
            self._wait(self._post({p: [dist.P2POp(dist.isend, frame, p, self._group, self._tag["barrier"])]
                                   for p in self._peers()}, what), what)
            return int(answer)
        mine = _frame(torch.tensor([value], dtype=torch.int64), 0)
        buf = _buffer(8)
        self._wait(self._post({0: [dist.P2POp(dist.isend, mine, 0, self._group, self._tag["barrier"]),
                                   dist.P2POp(dist.irecv, buf, 0, self._group, self._tag["barrier"])]}, what),
                   what)
        return int(self._unframe(0, buf, 8, what).view(torch.int64)[0])

    def limit_messages(self, max_bytes: int) -> None:
        """The largest message a sender of this run can produce: a peer declaring more (or a total over the
        senders this rank hears from beyond what they could send) is faulty."""
        self.max_message_bytes = int(max_bytes)
        self.max_peer_bytes = int(max_bytes) * int(max(np.diff(self.bounds)))

    def close(self) -> None:
        """End of the run. After success: the final handshake (every rank waits until all are done); the
        process group stays up for the next run in this process. While an exception propagates (or after a peer
        failure): tell the others, then tear down without waiting (and destroy the group this module made)."""
        if self._closed:
            return
        self._closed = True
        exc = sys.exc_info()[1]
        if exc is self._exc_at_start:
            exc = None
        clean = False
        try:
            if exc is None and not self._failed:
                self._finish()
                clean = True
            elif not self._abort_sent and self.world_size > 1 and not isinstance(exc, PeerError):
                interrupted = isinstance(exc, KeyboardInterrupt) or type(exc).__name__ == "Interrupted"
                self._abort(self.rank, self._round1, _INTERRUPTED if interrupted else _ERROR, skip=set())
        finally:
            self._pending = []
            if any(not w.finished for w in self._waiters):
                self._release_waiters()
            self._ctrl, self._waiters, self._plan, self._plan_graph = {}, [], None, None
            if self._owned and not clean:
                DistributedEngine._created_group = False
                try:
                    self._dist.destroy_process_group()
                except Exception:
                    pass

    def _release_waiters(self) -> None:
        """Close every gloo connection of this process (a gloo timeout does exactly that) so that the waiter
        threads still blocked on silent peers return now: one that returned during interpreter shutdown would
        abort the process ("terminate called without an active exception")."""
        import torch

        for q in self._peers():
            try:
                work = self._dist.irecv(torch.zeros(1), src=q, group=self._group, tag=self._tag["shut"])
            except Exception:
                continue   # this connection is closed already; try another
            try:
                work.wait(timedelta(milliseconds=1))
            except Exception:
                pass
            break
        end = time.monotonic() + 2.0
        for waiter in self._waiters:
            waiter.wait(end - time.monotonic())
        self._waiters = []

    def _finish(self) -> None:
        import torch

        dist = self._dist
        if self.world_size == 1:
            return
        self.flush()
        what = "finishing the run"
        done = _frame(torch.tensor([_DONE, self.rank, self._round1, 0], dtype=torch.int64), 0)
        sends = []
        for q in self._peers():
            try:
                sends.append((q, dist.isend(done, dst=q, group=self._group, tag=self._tag["ctrl"])))
            except Exception as e:
                self._peer_failed(q, what, e)
        deadline = time.monotonic() + self.timeout
        for q in self._peers():
            waiter = self._ctrl_waiter(q)
            finished = waiter.wait(deadline - time.monotonic())
            if waiter.error is not None:
                self._peer_failed(q, what, waiter.error)
            if not finished:
                self._peer_failed(q, what, None)
            got = self._ctrl_note(q)
            if int(got[0]) == _ABORT:
                self._failed = True
                raise PeerError(self._message(int(got[1]), int(got[2]), int(got[3]), q, what))
        self._wait(sends, what, deadline)


def _trailer(round1: int) -> bytes:
    return _END + int(round1).to_bytes(8, "little", signed=True)


def _frame(t: Any, round1: int) -> Any:
    """The bytes of tensor ``t`` followed by the trailer: what travels."""
    import torch

    body = t.contiguous().reshape(-1).view(torch.uint8)
    return torch.cat([body, torch.frombuffer(bytearray(_trailer(round1)), dtype=torch.uint8)])


def _buffer(nbytes: int) -> Any:
    """A receive buffer for a frame of ``nbytes``: room for its trailer and :data:`SLACK` zeros more."""
    import torch

    return torch.zeros(nbytes + TRAILER + SLACK, dtype=torch.uint8)


def _fault(buf: Any, nbytes: int, round1: int | None) -> str | None:
    """What is wrong with the frame received into ``buf`` where ``nbytes`` were expected (None: nothing)."""
    raw = buf.numpy()
    tail = bytes(raw[nbytes:nbytes + TRAILER])
    if tail[:len(_END)] != _END:
        if not raw.any():
            return f"an empty frame where {nbytes} bytes were expected"
        ends = bytes(raw).find(_END)
        if 0 <= ends < nbytes:
            return f"{ends} bytes where {nbytes} were expected: truncated, or counts that disagree with its data"
        if ends > nbytes:
            return f"{ends} bytes where {nbytes} were expected: longer than it announced"
        return f"no end marker after the {nbytes} bytes expected (another protocol, or more than {SLACK} bytes too long)"
    if raw[nbytes + TRAILER:].any():
        return f"bytes after the end of the {nbytes} expected"
    got = int.from_bytes(tail[len(_END):], "little", signed=True)
    if round1 is not None and got != round1:
        return f"a frame of round {got} where round {round1} was expected (left over, or replayed)"
    return None


def _loopback_store(rank: int, world: int, timeout: float):
    """For ranks that ``jwins.launch`` started on one machine (``JWINS_LOCAL_RENDEZVOUS=1``): the rendezvous
    store of rank 0 listens on the loopback address only (torch's own listens on every address), so no other
    machine can join or read it. None otherwise (torchrun's env:// rendezvous)."""
    if os.environ.get("JWINS_LOCAL_RENDEZVOUS") != "1":
        return None
    import socket

    from torch.distributed import TCPStore

    host, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
    if rank != 0:
        return TCPStore(host, port, world, False, timeout=timedelta(seconds=timeout))
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(world + 8)
    # the store serves on this socket for as long as the process lives: detached, it is never closed under the
    # store's feet (older torch's store aborts the process when its listening socket goes away)
    fd = listener.detach()
    try:
        return TCPStore(host, port, world, True, timeout=timedelta(seconds=timeout), master_listen_fd=fd)
    except RuntimeError:  # torch before 2.5: its libuv store cannot serve a given socket, the legacy one can
        return TCPStore(host, port, world, True, timeout=timedelta(seconds=timeout), master_listen_fd=fd,
                        use_libuv=False)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__


def _fingerprint(num_nodes: int, config: Any) -> bytes:
    data: dict[str, Any] = {"nodes": num_nodes}
    if config is not None:
        from .. import config as config_mod

        tree = config_mod.to_dict(config)
        data.update(config_mod.numbers(tree))
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).digest()
