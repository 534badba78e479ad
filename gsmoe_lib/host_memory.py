"""Giving freed host memory back to the system between videos.

Why: scoring frees everything a video needed before the next one starts, but glibc's allocator keeps most
freed blocks inside the process for reuse. Over a test set of very different lengths (the UCF-Crime test
set: 290 videos, 15 to 6,749 snippets) those kept blocks add up: measured on the 2-core CPU with GS-MoE and
crops "each", the memory held between videos grew from 0 to 1.4 GB over the set, and the peak came when the
longest video met it (docs/studies/memory.md). With `release_freed_memory()`
after every video (it releases once the process has grown by `RELEASE_ABOVE_MB` since the last release) the
memory held between videos stays bounded.

`release_freed_memory` calls glibc's `malloc_trim(0)`, which returns the free pages of every arena to the
system. Its cost is the call (≈ 16 ms at the scale of the UCF-sized test set) and the page faults when the
next video needs the memory again: released after every video, ≈ 5 % of the GS-MoE scoring time on the 2-core
CPU; hence the threshold.
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


# Release only once the process has grown this much since the last release: short videos then cost no trim
# and no page faults, and what the allocator keeps stays below this (plus what one video needs).
RELEASE_ABOVE_MB = 256.0

_rss_after_release: float | None = None  # resident MB right after the last release of this process


def release_freed_memory(above_mb: float = RELEASE_ABOVE_MB) -> bool:
    """Return the freed memory the allocator holds to the system (glibc) once the process has grown by more
    than `above_mb` MB since the last release (0: every call). True when memory was released by this call.

    Where the resident size cannot be read (no /proc), every call releases; off glibc nothing happens.
    """
    global _rss_after_release
    trim = _malloc_trim()
    if trim is None:
        return False
    now = proc_status_mb("VmRSS")
    if now is not None and _rss_after_release is not None and now - _rss_after_release <= above_mb:
        return False
    trim(0)  # 0: keep no padding at the top of the heap
    _rss_after_release = proc_status_mb("VmRSS")
    return True


def proc_status_mb(field: str) -> float | None:
    """A memory field of /proc/self/status (VmRSS, VmHWM, RssAnon, RssFile) in MB; None off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    return None
