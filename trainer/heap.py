"""Keep freed tensor memory in the heap of a training process (glibc `mallopt`)."""

from __future__ import annotations

# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc's ceiling for M_MMAP_THRESHOLD on 64-bit


def keep_heap() -> bool:
    """Keep freed tensor memory in the process heap instead of returning it to the kernel.

    A full-batch step allocates the same few MB-sized activations and gradients every time;
    glibc serves blocks that large with ``mmap`` and unmaps them on free, so every step pays
    hundreds of page faults to get zeroed pages back (200-350 per step for p = 97). Raising
    the mmap and trim thresholds keeps those blocks in the heap for reuse: the same arithmetic,
    identical weights, ~10 % faster steps (``benchmarks/keep_heap.py`` measures both sides).
    A no-op off glibc; returns whether it took effect.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    ok = mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX) == 1
    return mallopt(_M_TRIM_THRESHOLD, 2**30) == 1 and ok
