"""Compiled loops: numba's ``njit`` without the GIL, cached on disk where numba finds a place to write.

The per-coefficient loops of a round (``docs/design.md``, "Sharing algorithms") are compiled once per machine
and loaded from numba's cache afterwards. Where no cache can be written (a read-only install without a
writable home directory), numba refuses ``cache=True`` when the function is defined; the kernels are then
compiled once per process instead of failing the import.
"""
from __future__ import annotations

from collections.abc import Callable

import numba


def kernel(fn: Callable) -> Callable:
    """``numba.njit(nogil=True, cache=True)(fn)``, or without the cache where numba has nowhere to keep it."""
    try:
        return numba.njit(nogil=True, cache=True)(fn)
    except RuntimeError:  # "cannot cache function ...: no locator available for file ..."
        return numba.njit(nogil=True)(fn)
