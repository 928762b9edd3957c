"""Keep freed memory in the process for reuse (glibc malloc), for CPU inference and training loops.

A GNN forward pass over a batch of graphs allocates a few tensors of several MB per layer. With
glibc's defaults, blocks that large are ``mmap``-ed and returned to the OS when freed, so the next
pass page-faults on every page again: on the 2-core development machine that made the element-wise
ops of the batched job-shop policy 5-10x slower than their arithmetic. :func:`keep_freed_memory`
serves all allocations from the heap and never trims it (``mallopt(M_MMAP_MAX, 0)``,
``mallopt(M_TRIM_THRESHOLD, ...)``). It changes where memory comes from, never a computed value.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_done = False


def keep_freed_memory(trim_threshold_bytes: int = 1 << 30) -> bool:
    """Tune glibc malloc once per process (Linux only; elsewhere a no-op). Returns whether it applied.

    ``trim_threshold_bytes``: free memory at the top of the heap kept before returning it to the OS.
    """
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, int(trim_threshold_bytes)))
    _done = ok
    return ok
