"""The fault-injection harness: run `gsmoe train` in a child process, kill it at a chosen moment, compare runs.

A child is forked from a fork server (multiprocessing "forkserver", gsmoe and torch preloaded, no torch
computation in the server: forking a process whose OpenMP threads ran is unsafe), so a child costs no
interpreter start; it runs `gsmoe_lib.cli.main(["train", ...])`, the console script's entry point.
`Kill(event, n)` makes the child SIGKILL itself at the n-th event of a kind:

    step      inside a training step: after backward, before the optimiser's update
    write     during a file write: the temporary file half written, not yet renamed (every checkpoint,
              record and score file goes through runs.atomic_path)
    stage     between stages: right after a stage's DONE is written
    (time)    the parent kills the child after a random delay (`run_child(..., kill_after=seconds)`)

The child appends where it died to `landings` (one line per kill) before killing itself, so a test can
report where its kills landed. `compare_runs` lists every difference between two run folders' stage files:
metrics.json, history.json, config.json, DONE bytes, every score array and every checkpoint tensor.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

_CONTEXT: Any = None
KILLS: list[str] = []  # where each kill of the session landed (printed by conftest at the end)
CASES: list[str] = []  # one line per disk-full / two-writer / bad-record case (printed by conftest)


def kill_table(kills: list[str] | None = None) -> dict[str, int]:
    """Where the kills landed (default: this process's `KILLS`), grouped: "step: inside a tgs step" -> count."""
    table: dict[str, int] = {}
    for line in KILLS if kills is None else kills:
        key = line.split(" (")[0].split(", step")[0]
        if key.startswith("write:"):
            key = "write: during the write of " + ("a partial checkpoint" if "partial" in key else
                                                   key.rsplit("/", 1)[-1].split(" ")[0])
        table[key] = table.get(key, 0) + 1
    return table

# A few settings of the tiny profile made smaller still, so that a child lives seconds; every stage has
# several partial checkpoints, refreshes its pseudo-labels, and the gate draws feature-dropout masks.
FAULT_OVERRIDES: dict[str, Any] = {
    "data": {"n_segments": 16},
    "encoder": {"iterations": 4, "batch_normal": 2, "batch_abnormal": 2, "checkpoint_every": 2},
    "tgs": {"iterations": 6, "batch_normal": 2, "batch_abnormal": 2, "checkpoint_every": 2, "warmup_iterations": 2,
            "refresh_every": 2},
    "experts": {"iterations": 8, "batch_normal": 2, "batch_abnormal": 2, "checkpoint_every": 3, "d_model": 16,
                "kind": "cluster", "n_clusters": 3, "warmup_iterations": 2, "refresh_every": 2},
    "gate": {"iterations": 8, "batch_normal": 2, "batch_abnormal": 2, "checkpoint_every": 3, "d_model": 16,
             "warmup_iterations": 2, "refresh_every": 2, "feature_dropout": 0.3},
}
STAGES = ("encoder", "tgs", "experts", "gate")
# The synthetic dataset of the suite: the tiny profile with fewer, narrower videos.
FAULT_DATA = dict(profile="tiny", seed=0, feature_dim=32, n_train_abnormal=13, n_train_normal=8, n_test_abnormal=13,
                  n_test_normal=3, min_snippets=12, max_snippets=24)


def write_summary(terminalreporter: Any, kills: list[str], cases: list[str]) -> None:
    """The end-of-session lines: how many kills were survived, where they landed, one line per other case."""
    if kills:
        terminalreporter.write_sep("-", f"fault suite: {len(kills)} kills survived (SIGKILL), each rerun "
                                        "equal to the uninterrupted run")
        for where, count in sorted(kill_table(kills).items()):
            terminalreporter.write_line(f"  {count:3d}  {where}")
    for line in cases:
        terminalreporter.write_line(f"  {line}")


class Kill(NamedTuple):
    event: str  # "step" | "write" | "stage"
    n: int  # the n-th event of that kind in the child


def context() -> Any:
    global _CONTEXT
    if _CONTEXT is None:
        _CONTEXT = mp.get_context("forkserver")
        # torch._dynamo: the first optimiser of a process imports it (torch's optimisers are wrapped in
        # torch._disable_dynamo), 1.4 s per child if the server has not (an import only, no computation)
        _CONTEXT.set_forkserver_preload(["torch", "torch._dynamo", "gsmoe_lib.cli", "gsmoe_lib.training.command",
                                         "gsmoe_lib.training.pipeline", "fault_child"])
    return _CONTEXT


def start_child(args: list[str], kill: Kill | None = None, log: Path | None = None) -> Any:
    """Start `gsmoe <args>` in a forked child without waiting: the multiprocessing Process."""
    import fault_child as child

    proc = context().Process(target=child.main, args=(list(args), kill, str(log) if log else None, None))
    proc.start()
    return proc


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under `folder`: relative path -> (bytes, modification time in ns)."""
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def run_child(args: list[str], kill: Kill | None = None, log: Path | None = None, landings: Path | None = None,
              kill_after: float | None = None, timeout: float = 300.0) -> int:
    """Run `gsmoe <args>` in a forked child; return its exit code (-9: killed)."""
    import fault_child as child

    proc = context().Process(target=child.main, args=(list(args), kill, str(log) if log else None,
                                                      str(landings) if landings else None))
    proc.start()
    proc.join(kill_after if kill_after is not None else timeout)
    if proc.exitcode is None:
        if kill_after is None:
            proc.kill()
            raise TimeoutError(f"gsmoe {' '.join(args)} did not finish in {timeout} s")
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        # The child may have finished on its own between the join's timeout and the kill (its exit code is then
        # 0, not -9): only a kill that landed is a landing.
        if landings is not None and proc.exitcode == -signal.SIGKILL:
            with open(landings, "a") as fh:
                fh.write(f"time: killed after {kill_after:.2f} s\n")
    return proc.exitcode


def train_args(data: Path, run: Path, config: Path, stages: str = "gate", extra: tuple[str, ...] = ()) -> list[str]:
    return ["train", "--profile", "tiny", "--data-root", str(data), "--run", str(run), "--config", str(config),
            "--stages", stages, *extra]


def _tensors(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Flatten a checkpoint payload to {dotted key: leaf}."""
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_tensors(v, f"{prefix}{k}."))
        return out
    if isinstance(obj, (list, tuple)):
        out = {}
        for i, v in enumerate(obj):
            out.update(_tensors(v, f"{prefix}{i}."))
        return out
    return {prefix.rstrip("."): obj}


def compare_runs(reference: Path, other: Path, stages: tuple[str, ...] = STAGES) -> list[str]:
    """Every difference between two runs' stage files (empty: identical results)."""
    import torch

    from gsmoe_lib import runs

    diffs: list[str] = []
    for stage in stages:
        a, b = reference / stage, other / stage
        for name in ("metrics.json", "history.json", "config.json", "DONE"):
            if not (b / name).is_file() or (a / name).read_bytes() != (b / name).read_bytes():
                diffs.append(f"{stage}/{name}")
        for npz in sorted(a.glob("test_*.npz")):
            sa, sb = runs.load_scores(npz), runs.load_scores(b / npz.name)
            if sa.keys() != sb.keys() or any(not np.array_equal(sa[k], sb[k]) for k in sa):
                diffs.append(f"{stage}/{npz.name}")
        ca = torch.load(a / "checkpoint.pt", weights_only=True)
        cb = torch.load(b / "checkpoint.pt", weights_only=True) if (b / "checkpoint.pt").is_file() else {}
        fa, fb = _tensors(ca), _tensors(cb)
        if fa.keys() != fb.keys():
            diffs.append(f"{stage}/checkpoint.pt keys")
        for k in fa.keys() & fb.keys():
            va, vb = fa[k], fb[k]
            same = torch.equal(va, vb) if isinstance(va, torch.Tensor) and isinstance(vb, torch.Tensor) else va == vb
            if not same:
                diffs.append(f"{stage}/checkpoint.pt:{k}")
        if list(b.glob("checkpoint.partial.pt")):
            diffs.append(f"{stage}/checkpoint.partial.pt left behind")
    return diffs


@contextmanager
def stdout_to(path: Path):
    """Redirect this process's stdout and stderr (file descriptors 1 and 2) to `path`."""
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    saved = os.dup(1), os.dup(2)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(fd)
