"""Keeping freed memory in a process that makes the same large arrays over and over (a picture reader)."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 32 * 2**20  # the largest glibc accepts on 64-bit systems
_TRIM_THRESHOLD = 256 * 2**20
_TOP_PAD = 16 * 2**20


def keep_freed_memory() -> bool:
    """Let glibc's malloc reuse freed picture-sized blocks instead of returning them to the kernel; False where it is not glibc.

    Reading a picture makes dozens of arrays of a few hundred kilobytes to a few megabytes.
    By default glibc serves blocks that size straight from the kernel (mmap) and gives them
    back when freed, or trims them off the heap's top, so every array costs fresh pages and
    one page fault per 4 KiB: a 280x280 drawing took about 430 faults, a fifth of its CPU
    time on a virtual machine (benchmarks/RESULTS.md, section 9). Blocks up to 32 MiB now
    come from the heap, and up to 256 MiB of freed heap is kept for the next picture.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others: no mallopt, nothing to tune
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    settings = ((_M_MMAP_THRESHOLD, _MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, _TRIM_THRESHOLD), (_M_TOP_PAD, _TOP_PAD))
    return all(mallopt(parameter, value) == 1 for parameter, value in settings)
