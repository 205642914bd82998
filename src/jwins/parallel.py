"""Node-parallel execution on CPU: the hosted nodes side by side, each op single-threaded.

The work of one round is many small, independent pieces: a node's SGD step on 8 images, one node's
evaluation, one row of a transform. Splitting each tiny op over torch's intra-op threads mostly
synchronises: on a 2-core machine an op on a node's 90k parameters took 15 us on 1 thread and 11 us to
1.6 ms on 2, the worst when another process keeps the second core busy (benchmarks/README.md). So the loop
runs torch single-threaded and spends the cores on nodes instead: ``budget()`` worker threads (the
``engine.threads`` setting, default one per core), each running whole nodes or blocks of rows with one
intra-op thread (a LeNet step on 8 images, quiet 2-core machine: 13.3 ms on 1 thread, 8.3 ms on 2 intra-op
threads, 6.3 ms with 2 nodes side by side). What an item computes does not depend on which thread runs it,
so the results are those of the sequential loop on one thread, bit for bit, whatever the thread count.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, TypeVar

import torch

if TYPE_CHECKING:
    from .flat import FlatModel

T = TypeVar("T")
R = TypeVar("R")

_pools: dict[int, ThreadPoolExecutor] = {}
_lock = threading.Lock()
_local = threading.local()


def cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def share() -> int:
    """This process's share of the cores: the ``LOCAL_WORLD_SIZE`` ranks on this machine (as torchrun and
    ``engine.workers`` set it) divide them."""
    try:
        ranks = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        ranks = 1
    return max(1, cores() // ranks)


_workers: int | None = None  # set by workers(); None: this process's share of the cores


@contextlib.contextmanager
def workers(count: int | None) -> Iterator[None]:
    """Within this block, spread per-node work over ``count`` threads (None or 0: one per core)."""
    global _workers
    saved, _workers = _workers, count or None
    try:
        yield
    finally:
        _workers = saved


def budget(device: torch.device | str = "cpu") -> int:
    """How many threads a process's work may use here: the :func:`workers` setting (``engine.threads``;
    default: this process's :func:`share` of the cores) on the CPU, 1 inside a worker thread (work does not
    fan out twice) and on an accelerator. The one budget of every executor: the node workers, the codec
    threads and the fpzip helper processes."""
    if torch.device(device).type != "cpu" or getattr(_local, "worker", False):
        return 1
    return _workers or share()


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """Run torch with one intra-op thread here, restoring the setting afterwards."""
    saved = torch.get_num_threads()
    if saved == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


@contextlib.contextmanager
def freed_memory_reused(limit: int = 256 << 20) -> Iterator[bool]:
    """:func:`reuse_freed_memory` within this block; afterwards glibc's default thresholds (128 KiB) again, so
    that a library caller's process is not left tuned (glibc's own sliding threshold, which any mallopt call
    turns off, does not come back)."""
    applied = reuse_freed_memory(limit)
    try:
        yield applied
    finally:
        if applied:
            _mallopt(128 << 10, 128 << 10)


def _mallopt(mmap_threshold: int, trim_threshold: int) -> bool:
    libc = ctypes.CDLL("libc.so.6")
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(libc.mallopt(m_mmap_threshold, mmap_threshold)) and bool(libc.mallopt(m_trim_threshold,
                                                                                       trim_threshold))


def reuse_freed_memory(limit: int = 256 << 20) -> bool:
    """Have glibc's malloc keep freed blocks of up to ``limit`` bytes for reuse rather than unmapping them.

    By default every block over 32 MB is a fresh ``mmap``: a [96, 89834] float32 matrix is 34.5 MB, so each
    temporary of a round paid ~8,400 page faults when first written (20 ms on this VM, against 5 ms for the
    arithmetic). Kept blocks are reused by the next round's temporaries. Blocks over ``limit`` (e.g. the
    activations of a 2048-image evaluation batch, 268 MB for LeNet) are still mapped and unmapped, so that
    they are not kept beside the round's blocks (which would raise the peak RSS). Leaves the allocator alone if
    MALLOC_MMAP_THRESHOLD_ or MALLOC_TRIM_THRESHOLD_ is set, or where the C library is not glibc. Returns
    whether the setting was applied.
    """
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        return False
    try:
        if platform.libc_ver()[0] != "glibc":
            return False
        return _mallopt(limit, 2 * limit)
    except (OSError, AttributeError):  # pragma: no cover - no usable libc
        return False


def pool(workers: int) -> ThreadPoolExecutor:
    """The process's executor of ``workers`` threads (made once, shared by every caller)."""
    return _pool(workers)


def _pool(workers: int) -> ThreadPoolExecutor:
    with _lock:
        if workers not in _pools:
            _pools[workers] = ThreadPoolExecutor(workers, thread_name_prefix="jwins-node")
        return _pools[workers]


def _in_worker(fn: Callable[[T], R]) -> Callable[[T], R]:
    def run(item: T) -> R:
        if not getattr(_local, "worker", False):
            torch.set_num_threads(1)  # a worker thread runs every op on its own
            _local.worker = True
        return fn(item)
    return run


def map_items(fn: Callable[[T], R], items: Sequence[T], workers: int | None = None) -> list[R]:
    """``[fn(item) for item in items]`` spread over ``workers`` threads (default :func:`budget`), each running
    torch single-threaded; results in the order of ``items``. One worker or one item: runs here, also with
    one intra-op thread."""
    workers = budget() if workers is None else workers
    if workers <= 1 or len(items) <= 1:
        with single_threaded():
            return [fn(item) for item in items]
    with single_threaded():  # new worker threads take the process-wide setting at their first op
        return list(_pool(workers).map(_in_worker(fn), items))


def replica(flat: FlatModel) -> FlatModel:
    """This thread's own copy of ``flat`` (``functional_call`` swaps a module's parameters while it runs, so
    threads must not share one); the main thread uses ``flat`` itself."""
    if threading.current_thread() is threading.main_thread():
        return flat
    replicas = getattr(_local, "replicas", None)
    if replicas is None:
        replicas = _local.replicas = weakref.WeakKeyDictionary()
    if flat not in replicas:
        replicas[flat] = flat.replica()
    return replicas[flat]


def map_nodes(fn: Callable[[FlatModel, T], R], items: Sequence[T], flat: FlatModel,
              workers: int | None = None) -> list[R]:
    """:func:`map_items` for work that calls the model: ``fn(model, item)`` with a per-thread replica."""
    return map_items(lambda item: fn(replica(flat), item), items, workers)


BLOCK_BYTES = 64 << 20  # default temporaries of one block of rows: a round's work is done block by block


_block_bytes: int | None = None  # set by memory(); None: BLOCK_BYTES
_spare_bytes: int = 0  # what a round may keep beyond its blocks (set by memory())


@contextlib.contextmanager
def memory(block_bytes: int | None, spare_bytes: int = 0) -> Iterator[None]:
    """Within this block, a block of rows may hold ``block_bytes`` of temporaries, and a round may keep
    ``spare_bytes`` more from one phase to the next (both from ``engine.memory_gb``)."""
    global _block_bytes, _spare_bytes
    saved, _block_bytes = (_block_bytes, _spare_bytes), block_bytes
    _spare_bytes = spare_bytes
    try:
        yield
    finally:
        _block_bytes, _spare_bytes = saved


def spare(nbytes: int) -> bool:
    """Whether a round may keep ``nbytes`` from one phase to the next (to save recomputing them)."""
    return nbytes <= _spare_bytes


def row_chunks(n: int, workers: int | None = None, min_rows: int = 4, row_bytes: int = 0) -> list[slice]:
    """Contiguous row ranges for splitting an [n, ...] computation over the workers (a few per worker, so a
    slow core does not hold the others up) and into blocks whose temporaries (``row_bytes`` per row) stay
    within the block budget: what lives only within a round never needs [n, ...] memory."""
    workers = budget() if workers is None else workers
    count = 1 if workers <= 1 or n < 2 * min_rows else min(n // min_rows, 4 * workers)
    if row_bytes and n:
        count = max(count, -(-n * row_bytes // (_block_bytes or BLOCK_BYTES)))
    count = max(1, min(count, n))
    bounds = [round(i * n / count) for i in range(count + 1)]
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
