"""Giving freed host memory back to the system between videos.

Why: scoring frees everything a video needed before the next one starts, but glibc's allocator keeps most
freed blocks inside the process for reuse. Over a test set of very different lengths (the UCF-Crime test
set: 290 videos, 15 to 6,749 snippets) those kept blocks add up. Measured on the 2-core CPU with GS-MoE and
crops "each" (benchmarks/README.md, "Peak host memory of scoring"): the memory held between videos grew
from 0 to 1.4 GB over the set, and the peak while scoring the longest video, which comes late, was 2.07 GB
beyond the model. With `release_freed_memory()` after every video the memory held between videos stays
under 80 MB and the peak is the longest video's own, 1.3 GB.

`release_freed_memory` calls glibc's `malloc_trim(0)`, which returns the free pages of every arena to the
system. Its cost is the call (milliseconds) and the page faults when the next video needs the memory again.
Elsewhere (macOS, musl, Windows) it does nothing and returns False: those allocators give memory back on their
own terms.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys
from typing import Any


@functools.lru_cache(maxsize=1)
def _malloc_trim() -> Any:
    """glibc's malloc_trim, or None where the C library is not glibc."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # musl has no malloc_trim
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def release_freed_memory() -> bool:
    """Return the freed memory the allocator holds to the system (glibc); False where that is not possible."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)  # 0: keep no padding at the top of the heap
    return True
