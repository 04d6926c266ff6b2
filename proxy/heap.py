"""The C library's allocator, set for a cache of bodies of every size (glibc's ``mallopt``; elsewhere nothing).

glibc gives an allocation of at least the *mmap threshold* a mapping of its own, unmapped (returned to the system)
when it is freed; smaller ones are carved from the heap, whose free memory goes back to the system only from its top.
The threshold starts at 128 KiB but moves: freeing a mapped chunk raises it to that chunk's size (up to 32 MiB). A
cache reads, keeps and evicts bodies of every size all day, so once a 1 MiB body has been freed, bodies up to 1 MiB
come from the heap, and the holes evicted ones leave between live ones stay resident, free but not returned.

Measured (issue 14 §5): a 64 MiB memory store churned for 5 minutes with bodies of 1 KiB to 1 MiB ended at 141 MiB
resident, of which glibc held 26 MiB free inside its heap (``mallinfo2().fordblks``); idle time did not change it,
``malloc_trim(0)`` gave 25 MiB back, and nothing Python still referenced accounted for it (the objects left were the
stored entries'). With the threshold fixed at 128 KiB the same run ended at 118 MiB with 3 MiB free in the heap, at
the same request rate. So the proxy fixes it at start-up (``--mmap-threshold``, default 128 KiB; 0 leaves glibc's
moving threshold).
"""

from __future__ import annotations

import ctypes

M_MMAP_THRESHOLD = -3  # glibc's malloc.h
MAX_MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc refuses more (HEAP_MAX_SIZE / 2 on 64-bit)


def set_mmap_threshold(size: int) -> bool:
    """Fix glibc's mmap threshold at ``size`` bytes, which also stops it moving. ``0``: leave the allocator as it
    is. True when set; False when ``size`` is 0 or the C library has no ``mallopt`` (musl, macOS)."""
    if not 0 <= size <= MAX_MMAP_THRESHOLD:
        raise ValueError(f"the mmap threshold must be 0 to {MAX_MMAP_THRESHOLD} bytes, got {size}")
    if size == 0:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the symbols the process has loaded: the C library's among them
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, size))
