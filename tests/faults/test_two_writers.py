"""Two writers on one run folder: the second refuses naming the holder, or waits (`--wait`); a killed
holder's lock is stale and taken over; readers (a finished run) never wait."""

from __future__ import annotations

import json
import socket
import time

import pytest

import fault_harness as fh


def _wait_for_lock(run, proc, timeout=120.0) -> dict:
    deadline = time.monotonic() + timeout
    lock = run / "writer.lock"
    while time.monotonic() < deadline and proc.is_alive():
        if lock.is_file() and lock.read_text().strip():
            return json.loads(lock.read_text())
        time.sleep(0.05)
    raise AssertionError("the first writer never took the lock")


@pytest.mark.slow
def test_a_second_writer_refuses_naming_the_holder_or_waits(fault_data, fault_config, fault_run, tmp_path):
    run = tmp_path / "run"
    args = fh.train_args(fault_data, run, fault_config)
    first = fh.start_child(args, fh.Kill("slow", 3), log=tmp_path / "first.log")  # 0.3 s per step
    holder = _wait_for_lock(run, first)
    assert holder["pid"] == first.pid and holder["host"] == socket.gethostname()
    refused_log = tmp_path / "second.log"
    assert fh.run_child(args, log=refused_log) == 2
    message = refused_log.read_text()
    assert f"another process is writing this run folder: process {first.pid} on host {socket.gethostname()}, " \
           f"started {holder['started']}" in message, message[-2000:]
    waited_log = tmp_path / "waiting.log"
    assert fh.run_child(args + ["--wait", "300"], log=waited_log) == 0  # waits, then loads what the first trained
    first.join(300)
    assert first.exitcode == 0
    assert waited_log.read_text().count("(loaded)") == 4
    assert fh.compare_runs(fault_run, run) == []
    assert (run / "writer.lock").read_text() == ""  # released: no holder recorded
    fh.CASES.append("two writers: the second refused naming pid, host and start time; with --wait it waited and "
                    "loaded the first's stages; lost: nothing")


@pytest.mark.slow
def test_a_killed_writers_lock_is_taken_over(fault_data, fault_config, fault_run, tmp_path):
    run, log = tmp_path / "run", tmp_path / "run.log"
    args = fh.train_args(fault_data, run, fault_config)
    assert fh.run_child(args, fh.Kill("step", 6), log=log) == -9
    stale = json.loads((run / "writer.lock").read_text())  # the killed holder's record is still there
    log.write_text("")
    assert fh.run_child(args, log=log) == 0
    assert f"took over the lock of process {stale['pid']}" in log.read_text()
    assert fh.compare_runs(fault_run, run) == []
    fh.KILLS.append("step: inside a training step of a lock holder (stale lock taken over)")
    fh.CASES.append("killed writer: its lock detected stale and taken over by the next run; rerun equal; "
                    "lost: nothing")


@pytest.mark.slow
def test_two_readers_of_a_finished_run_run_at_once(fault_data, fault_config, copy_run, tmp_path):
    run = copy_run()
    before = fh.snapshot(run)
    args = fh.train_args(fault_data, run, fault_config)
    readers = [fh.start_child(args, log=tmp_path / f"reader-{i}.log") for i in range(2)]
    for r in readers:
        r.join(120)
    assert [r.exitcode for r in readers] == [0, 0]
    assert all((tmp_path / f"reader-{i}.log").read_text().count("(loaded)") == 4 for i in range(2))
    assert fh.snapshot(run) == before  # readers write nothing, not even the lock file
    fh.CASES.append("two readers of a finished run at once: both loaded every stage, nothing written")
