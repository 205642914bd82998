"""fpzip in helper processes: isolation for untrusted streams, and parallelism for many messages.

The fpzip C decoder trusts its input: fuzzing fpzip 1.2.5 with malformed streams corrupts its heap and crashes
the process (even with zero padding after the stream). Untrusted streams are therefore decoded in a helper
process that only runs fpzip; the helper also re-compresses what it decoded and requires the identical stream
back, so only canonical streams are accepted. A helper that failed or crashed is replaced on the next call.

The fpzip binding holds the GIL (about 65 MB/s on one core of the development VM), so threads cannot share
its work; :meth:`FpzipHelpers.map` spreads a round's worth of compressions or decompressions over several
helper processes instead (one per core, shared among the ranks on this machine, at most :data:`MAX_HELPERS`). The bytes are those of an in-process
call: fpzip is deterministic.

Protocol (pipes, little-endian): request ``op (u8), size (u32), k (u32), payload``; reply ``status (u8)`` then,
on success, ``size (u32), payload``. ``op`` 0: checked decompression of a stream into ``k`` float32 values;
1: plain decompression (streams this process produced); 2: compression of ``k`` float32 values.
"""
from __future__ import annotations

import atexit
import os
import select
import struct
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from jwins.errors import WireError

CHECKED_DECOMPRESS, DECOMPRESS, COMPRESS = 0, 1, 2
MAX_HELPERS = 8
_REQUEST = struct.Struct("<BII")
_SIZE = struct.Struct("<I")

_HELPER_CODE = r"""# jwins.wire fpzip helper: see jwins/wire/fpzip_helpers.py for the protocol
import struct, sys
import numpy as np
import fpzip
inp, out = sys.stdin.buffer, sys.stdout.buffer
def read_exact(n):
    chunks = []
    while n:
        chunk = inp.read(n)
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)
while True:
    head = read_exact(9)
    if head is None:
        break
    op, size, k = struct.unpack("<BII", head)
    payload = read_exact(size)
    if payload is None:
        break
    reply = None
    try:
        if op == 2:
            arr = np.frombuffer(payload, dtype="<f4").astype(np.float32)
            reply = fpzip.compress(arr, precision=0, order="C")
        elif op == 1:
            reply = fpzip.decompress(payload).reshape(-1).astype("<f4").tobytes()
        elif op == 0:
            # zero padding keeps reads past the end of a truncated stream inside this buffer
            arr = fpzip.decompress(payload + bytes(12 * k + 64)).reshape(-1)
            if arr.dtype == np.float32 and arr.shape[0] == k and fpzip.compress(arr, precision=0, order="C") == payload:
                reply = arr.astype("<f4").tobytes()
    except Exception:
        reply = None
    if reply is None:
        out.write(b"\x00")
    else:
        out.write(b"\x01" + struct.pack("<I", len(reply)) + reply)
    out.flush()
"""


class HelperFailed(Exception):
    """The helper refused the request (status 0), crashed, or did not answer in time."""


class _Helper:
    """One helper process, started on first use and replaced after a failure."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.proc: subprocess.Popen | None = None

    def _start(self) -> subprocess.Popen:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if isinstance(p, str) and p)
        try:
            return subprocess.Popen(
                [sys.executable, "-c", _HELPER_CODE],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=env,
                close_fds=True,
                start_new_session=True,  # Ctrl-C in the terminal stops the run gracefully, not this helper
            )
        except (OSError, ValueError) as exc:
            raise WireError(f"cannot start an fpzip helper process: {exc}") from None

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            proc.kill()
            proc.wait(timeout=5)
        except Exception:  # noqa: BLE001 - best effort cleanup
            pass
        for pipe in (proc.stdin, proc.stdout):
            try:
                if pipe is not None:
                    pipe.close()
            except Exception:  # noqa: BLE001
                pass

    @staticmethod
    def _read(fd: int, n: int, deadline: float) -> bytes:
        chunks = []
        while n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                raise TimeoutError
            chunk = os.read(fd, min(n, 1 << 20))
            if not chunk:
                raise EOFError
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def request(self, op: int, payload: bytes, k: int, limit: int) -> bytes:
        """The helper's reply payload (at most ``limit`` bytes); HelperFailed if it refused, crashed or hung."""
        with self.lock:
            if self.proc is None or self.proc.poll() is not None:
                self.stop()
                self.proc = self._start()
            proc = self.proc
            deadline = time.monotonic() + 10.0 + 2e-6 * (k + len(payload))
            try:
                proc.stdin.write(_REQUEST.pack(op, len(payload), k) + payload)
                proc.stdin.flush()
                fd = proc.stdout.fileno()
                if self._read(fd, 1, deadline) != b"\x01":
                    if op == CHECKED_DECOMPRESS:
                        self.stop()  # it may have corrupted its own memory on the malformed stream
                    raise HelperFailed("refused")
                (size,) = _SIZE.unpack(self._read(fd, _SIZE.size, deadline))
                if size > limit:
                    self.stop()
                    raise HelperFailed(f"replied {size} bytes, at most {limit} expected")
                return self._read(fd, size, deadline)
            except (OSError, EOFError, ValueError):
                self.stop()
                raise HelperFailed("crashed") from None
            except TimeoutError:
                self.stop()
                raise HelperFailed("did not answer in time") from None


def default_size() -> int:
    """Helpers for :meth:`FpzipHelpers.map`: the process's thread budget (:func:`jwins.parallel.budget`: its
    share of the cores, or ``engine.threads``), at most :data:`MAX_HELPERS`."""
    from jwins import parallel

    return max(1, min(MAX_HELPERS, parallel.budget()))


class FpzipHelpers:
    """The helper processes of this process: helper 0 serves single untrusted decompressions; :meth:`map`
    uses all of them."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pid = os.getpid()
        self.helpers: list[_Helper] = []
        self.pool: ThreadPoolExecutor | None = None
        self.size = default_size()

    def _get(self, count: int) -> list[_Helper]:
        with self.lock:
            if self.pid != os.getpid():  # forked: the inherited helpers belong to the parent
                self.helpers, self.pool, self.pid = [], None, os.getpid()
            while len(self.helpers) < count:
                self.helpers.append(_Helper())
            return self.helpers[:count]

    def checked_decompress(self, stream: bytes, k: int) -> np.ndarray:
        """Decode an untrusted fpzip stream into ``k`` float32 values in helper 0; WireError if malformed."""
        try:
            payload = self._get(1)[0].request(CHECKED_DECOMPRESS, stream, k, 4 * k)
        except HelperFailed as exc:
            raise malformed(exc, k) from None
        return reply_values(payload, k)

    def map(self, op: int, payloads: list[bytes], ks: list[int]) -> list[bytes | HelperFailed]:
        """Run ``op`` on every payload, spread over the helpers (each takes the next pending item); per item
        the reply payload, or the :class:`HelperFailed` it raised."""
        n = len(payloads)
        helpers = self._get(max(1, min(self.size, n)))
        out: list[bytes | HelperFailed | None] = [None] * n
        pending = iter(range(n))
        take = threading.Lock()

        def limit(i: int) -> int:
            if op == COMPRESS:  # fpzip never expands float32 data by more than a small header
                return len(payloads[i]) + len(payloads[i]) // 8 + 1024
            return 4 * ks[i]

        def drain(helper: _Helper) -> None:
            while True:
                with take:
                    i = next(pending, None)
                if i is None:
                    return
                try:
                    out[i] = helper.request(op, payloads[i], ks[i], limit(i))
                except HelperFailed as exc:
                    out[i] = exc
                except WireError as exc:  # the helper could not be started
                    out[i] = HelperFailed(str(exc))

        if len(helpers) == 1:
            drain(helpers[0])
        else:
            with self.lock:
                if self.pool is None:
                    self.pool = ThreadPoolExecutor(MAX_HELPERS, thread_name_prefix="jwins-fpzip")
                pool = self.pool
            for future in [pool.submit(drain, h) for h in helpers]:
                future.result()
        return out  # type: ignore[return-value]

    def close(self) -> None:
        with self.lock:
            if self.pid == os.getpid():
                for helper in self.helpers:
                    with helper.lock:
                        helper.stop()
            self.helpers = []


def reply_values(payload: bytes, k: int) -> np.ndarray:
    """The float32 values of a decompression reply; WireError if there are not k of them."""
    if len(payload) != 4 * k:
        raise WireError(f"fpzip value stream is malformed (it does not decode to {k} float32 values)")
    return np.frombuffer(payload, dtype="<f4").astype(np.float32)


def malformed(exc: HelperFailed, k: int) -> WireError:
    """The WireError for an untrusted stream the helper refused, crashed on or did not finish."""
    reason = str(exc)
    if reason == "refused":
        return WireError(f"fpzip value stream is malformed (it does not decode to {k} float32 values)")
    if reason == "crashed":
        return WireError("fpzip value stream is malformed (the isolated fpzip decoder crashed on it)")
    if reason == "did not answer in time":
        return WireError("fpzip value stream is malformed (the isolated fpzip decoder did not finish)")
    return WireError(f"fpzip value stream could not be decoded ({reason})")


HELPERS = FpzipHelpers()
atexit.register(HELPERS.close)


def _reset_after_fork() -> None:
    HELPERS.lock = threading.Lock()
    HELPERS.helpers, HELPERS.pool, HELPERS.pid = [], None, os.getpid()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
