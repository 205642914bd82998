"""Node-parallel execution on CPU: the hosted nodes side by side, each op single-threaded.

The work of one round is many small, independent pieces: a node's SGD step on 8 images, one node's
evaluation, one row of a transform. Splitting each tiny op over torch's intra-op threads mostly
synchronises: on a 2-core machine an op on a node's 90k parameters took 15 us on 1 thread and 11 us to
1.6 ms on 2, the worst when another process keeps the second core busy (benchmarks/README.md). So the loop
runs torch single-threaded and spends its thread budget on nodes instead: ``budget()`` worker threads
(torch's intra-op setting, i.e. ``engine.threads``), each running whole nodes or rows with one intra-op
thread. What an item computes does not depend on which thread runs it, so results are those of the plain
sequential loop.
"""
from __future__ import annotations

import contextlib
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


def budget(device: torch.device | str = "cpu") -> int:
    """Threads this process may use: torch's intra-op setting outside :func:`single_threaded` sections on CPU
    (inside one, the setting it replaced), 1 on an accelerator."""
    if torch.device(device).type != "cpu":
        return 1
    saved = getattr(_local, "saved", None)
    return saved if saved else torch.get_num_threads()


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """Run torch with one intra-op thread here, restoring the setting (and :func:`budget`) afterwards."""
    if getattr(_local, "saved", None):
        yield
        return
    saved = torch.get_num_threads()
    _local.saved = saved
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(saved)
        _local.saved = None


def _pool(workers: int) -> ThreadPoolExecutor:
    with _lock:
        if workers not in _pools:
            _pools[workers] = ThreadPoolExecutor(workers, thread_name_prefix="jwins-node")
        return _pools[workers]


def _in_worker(fn: Callable[[T], R]) -> Callable[[T], R]:
    def run(item: T) -> R:
        if not getattr(_local, "single", False):
            torch.set_num_threads(1)  # a worker thread runs every op on its own
            _local.single = True
        return fn(item)
    return run


def map_items(fn: Callable[[T], R], items: Sequence[T], workers: int | None = None) -> list[R]:
    """``[fn(item) for item in items]`` spread over ``workers`` threads (default :func:`budget`), each running
    torch single-threaded; results in the order of ``items``. One worker or one item: runs here."""
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


def row_chunks(n: int, workers: int | None = None, min_rows: int = 4) -> list[slice]:
    """Contiguous row ranges for splitting an [n, ...] computation over the workers (a few per worker, so a
    slow core does not hold the others up)."""
    workers = budget() if workers is None else workers
    if workers <= 1 or n < 2 * min_rows:
        return [slice(0, n)]
    count = min(n // min_rows, 4 * workers)
    bounds = [round(i * n / count) for i in range(count + 1)]
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
