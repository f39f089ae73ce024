"""Keep a training process's freed memory for reuse, instead of handing it back to the kernel every step.

glibc's malloc serves an allocation above its mmap threshold (at most 32 MiB) with a fresh `mmap`, and `free`
unmaps it. A training step allocates the same large activations every step (a pick batch's first convolution
alone writes 854 x 16 x 32 x 32 floats, 56 MB), so every step maps them, zero-fills them through page faults,
and unmaps them again. On a pick Q-SFT step that is ~110,000 minor page faults and ~0.3 s of kernel time;
serving every allocation from the heap and never trimming it lets the next step reuse the pages it freed:
~2,000 faults, 7 ms, and the step 0.74x as long (BC's 0.86x; `benchmarks/allocator.py`, benchmarks/RESULTS.md).
The peak resident memory of a pick Q-SFT loop stayed where it was (1.50 GB, against 1.56 GB).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1   # mallopt parameters, glibc's malloc.h
_M_MMAP_MAX = -4


def keep_freed_memory() -> bool:
    """mallopt(M_MMAP_MAX, 0) and mallopt(M_TRIM_THRESHOLD, INT_MAX) for this process; True where they took
    effect (Linux with glibc), False elsewhere, where the platform's allocator is left as it is."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
