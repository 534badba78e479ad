"""Freed host memory goes back to the system (glibc's malloc_trim), so scoring holds one video's memory."""

from __future__ import annotations

import pytest

from gsmoe_lib.host_memory import _malloc_trim, proc_status_mb, release_freed_memory

glibc = pytest.mark.skipif(_malloc_trim() is None or proc_status_mb("RssAnon") is None,
                           reason="needs glibc and Linux /proc (malloc_trim, RssAnon)")


@glibc
def test_release_returns_blocks_the_allocator_kept():
    # 3,000 blocks of 64 KB (below glibc's mmap threshold, so they live in the heap) with one block kept
    # after them: freeing them leaves ~190 MB free inside the heap that glibc does not return on its own
    # (it only trims the heap's top), which is how scoring videos of mixed lengths grew the process.
    blocks = [bytearray(65536) for _ in range(3000)]
    keeper = bytearray(65536)
    del blocks
    held = proc_status_mb("RssAnon")
    assert release_freed_memory(above_mb=0) is True
    released = held - proc_status_mb("RssAnon")
    assert released > 100, f"only {released:.0f} MB of ~190 MB freed went back to the system"
    assert len(keeper) == 65536


@glibc
def test_release_waits_until_the_process_has_grown_by_the_threshold():
    release_freed_memory(above_mb=0)  # the reference size: right after a release
    small = bytearray(8 * 2**20)  # 8 MB more, held
    assert release_freed_memory(above_mb=64) is False
    large = bytearray(128 * 2**20)  # now 136 MB more than at the last release
    assert release_freed_memory(above_mb=64) is True
    assert len(small) + len(large) > 0


def test_release_is_a_no_op_without_glibc(monkeypatch):
    monkeypatch.setattr("gsmoe_lib.host_memory._malloc_trim", lambda: None)
    assert release_freed_memory() is False
