"""The child of the fault-injection harness (`fault_harness.run_child`): `gsmoe <args>`, killed at `Kill`.

Imported by the fork server before any child is forked (preloaded), so the patches below are installed in
the child only, by `main`.
"""

from __future__ import annotations

import os
import signal
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _die(landings: str | None, where: str) -> None:
    if landings:
        with open(landings, "a") as fh:
            fh.write(where + "\n")
            fh.flush()
            os.fsync(fh.fileno())
    os.kill(os.getpid(), signal.SIGKILL)


def _at_nth_write(runs: Any, count: dict[str, int], n: int, fault: Any) -> None:
    """Patch runs.atomic_path: the n-th write of this process stops half written (its temporary file cut to
    half, not renamed) and calls fault(final path, temporary path, full size)."""
    atomic = runs.atomic_path

    @contextmanager
    def faulty(path):
        with atomic(path) as tmp:
            yield tmp
            count["write"] += 1
            if count["write"] == n:
                size = tmp.stat().st_size
                with open(tmp, "r+b") as fh:
                    fh.truncate(size // 2)
                fault(Path(path), tmp, size)

    runs.atomic_path = faulty


def install_killer(kill: Any, landings: str | None) -> None:
    """Patch the library so that this process SIGKILLs itself at the kill.n-th event of kind kill.event."""
    from gsmoe_lib import runs
    from gsmoe_lib.training import loop

    count = {"step": 0, "write": 0, "stage": 0}
    current = {"stage": "(none)"}

    start = runs.StageDir.start

    def tracked_start(self, *a, **kw):
        current["stage"] = self.stage
        return start(self, *a, **kw)

    runs.StageDir.start = tracked_start

    if kill.event == "fsize":  # a file-size limit of n bytes: a larger write fails with EFBIG
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an error, not a signal that kills
        resource.setrlimit(resource.RLIMIT_FSIZE, (kill.n, kill.n))
        return
    if kill.event == "enospc":  # the disk fills during the n-th write of this process: half written, then ENOSPC
        import errno

        def disk_full(path: Path, tmp: Path, size: int) -> None:
            if landings:
                with open(landings, "a") as fh:
                    fh.write(f"enospc: the disk filled during the write of {path.parent.name}/{path.name}\n")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp))

        _at_nth_write(runs, count, kill.n, disk_full)
        return
    if kill.event == "slow":  # every step sleeps n/10 s (a writer that holds its run for a while)
        import time

        step = loop.optimizer_step

        def slow_step(loss, optimizer):
            time.sleep(kill.n / 10)
            step(loss, optimizer)

        loop.optimizer_step = slow_step
        return
    if kill.event == "interrupt":  # Ctrl-C (SIGINT) inside the n-th step, after backward, before the update
        def optimizer_step(loss, optimizer):
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            count["step"] += 1
            if count["step"] == kill.n:
                os.kill(os.getpid(), signal.SIGINT)
            optimizer.step()

        loop.optimizer_step = optimizer_step
    elif kill.event == "step":
        original = loop.optimizer_step

        def optimizer_step(loss, optimizer):
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            count["step"] += 1
            if count["step"] == kill.n:
                _die(landings, f"step: inside a training step of {current['stage']} (after backward, before the "
                               f"update), step {kill.n} of this process")
            optimizer.step()

        loop.optimizer_step = optimizer_step
        del original
    elif kill.event == "write":
        _at_nth_write(runs, count, kill.n, lambda path, tmp, size: _die(
            landings, f"write: during the write of {path.parent.name}/{path.name} (half of {size} bytes written, "
                      "not renamed)"))
    elif kill.event == "stage":
        finish = runs.StageDir.finish

        def finished(self, *a, **kw):
            finish(self, *a, **kw)
            count["stage"] += 1
            if count["stage"] == kill.n:
                _die(landings, f"stage: between stages, right after {self.stage}/DONE")

        runs.StageDir.finish = finished


def main(args: list[str], kill: Any, log: str | None, landings: str | None) -> None:
    import torch

    torch.set_num_threads(1)  # every child alike (the same numbers), and gentle on a shared 2-core machine
    if log:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
    if kill is not None:
        install_killer(kill, landings)
    from gsmoe_lib import cli

    code = cli.main(args)
    os._exit(code)
