"""Kill `gsmoe train` anywhere (SIGKILL), rerun it: the finished run equals the uninterrupted run, bit for bit.

Each chain trains a fresh run folder, killing the child at moments drawn at random (`GSMOE_FAULT_SEED`):
inside a training step, during a file write (checkpoints included), between stages, or after a random
delay; the child is rerun until it finishes. Then every metrics.json, history.json, config.json, DONE,
score array and checkpoint tensor is compared with the uninterrupted run (`fault_run`). A Ctrl-C chain does
the same with SIGINT delivered inside steps (Jupyter's interrupt button): the partial checkpoint written then
must hold whole steps (`loop.StepBoundary`).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import fault_harness as fh

SEED = int(os.environ.get("GSMOE_FAULT_SEED", "2026"))
# Upper bounds of the event index drawn for a kill (a full run of FAULT_OVERRIDES has 26 steps, ~45 writes
# and 4 stage ends; an index past what the rerun still does lets it finish, which ends the chain).
DRAW = {"step": 16, "write": 30, "stage": 3}
TRAIN_KILLS = 16  # kills of the forked chains; the console-script and notebook tests add theirs (K >= 20 in all)


def _chain(args: list[str], rng: random.Random, landings: Path, log: Path, reference_seconds: float,
           events: tuple[str, ...], max_children: int = 12, first: fh.Kill | None = None) -> int:
    """Kill (`first`, then at random) and rerun until a child finishes; return the number of SIGKILLs."""
    kills = 0
    for child in range(max_children):
        event = first.event if first and child == 0 else rng.choice(events)
        if first and child == 0:
            code = fh.run_child(args, first, log=log, landings=landings)
        elif event == "time":
            code = fh.run_child(args, log=log, landings=landings, kill_after=rng.uniform(0.2, reference_seconds))
        else:
            code = fh.run_child(args, fh.Kill(event, rng.randint(1, DRAW[event])), log=log, landings=landings)
        if code == -signal.SIGKILL:
            kills += 1
            continue
        assert code == 0, log.read_text()[-3000:]
        return kills
    code = fh.run_child(args, log=log)
    assert code == 0, log.read_text()[-3000:]
    return kills


@pytest.mark.slow
def test_killed_anywhere_the_rerun_equals_the_uninterrupted_run(fault_data, fault_config, fault_run, tmp_path):
    rng = random.Random(SEED)
    print(f"GSMOE_FAULT_SEED={SEED}")
    reference_seconds = float((fault_run.parent / "reference.seconds").read_text())
    kills, chain = 0, 0
    while kills < TRAIN_KILLS:
        run, landings = tmp_path / f"chain-{chain}", tmp_path / f"landings-{chain}.txt"
        # the first chain starts with a kill during the write of the first partial checkpoint (write 4)
        made = _chain(fh.train_args(fault_data, run, fault_config), rng, landings, tmp_path / f"chain-{chain}.log",
                      reference_seconds, ("step", "step", "write", "write", "stage", "time"),
                      first=fh.Kill("write", 4) if chain == 0 else None)
        landed = landings.read_text().splitlines() if landings.is_file() else []
        assert len(landed) == made
        fh.KILLS.extend(landed)
        assert fh.compare_runs(fault_run, run) == [], f"chain {chain}: kills at {landed}"
        assert not list(run.rglob(".*.tmp")), "a killed write's temporary file was left behind"
        kills, chain = kills + made, chain + 1
    print(f"{kills} kills in {chain} chains survived: {landed}")


@pytest.mark.slow
def test_ctrl_c_inside_steps_resumes_bit_identically(fault_data, fault_config, fault_run, tmp_path):
    """SIGINT mid-step (after backward, before the update): the interrupt waits for the step's end, so the
    partial checkpoint holds whole steps; before this, a resume diverged from the uninterrupted run."""
    run, log = tmp_path / "run", tmp_path / "interrupts.log"
    interrupts = 0
    for n in (3, 5, 4, 6):
        code = fh.run_child(fh.train_args(fault_data, run, fault_config), fh.Kill("interrupt", n), log=log)
        assert code in (0, 130), log.read_text()[-3000:]
        interrupts += code == 130
        if code == 0:
            break
    else:
        assert fh.run_child(fh.train_args(fault_data, run, fault_config), log=log) == 0
    assert interrupts >= 3 and "stopping after this step" in log.read_text()
    assert fh.compare_runs(fault_run, run) == []


@pytest.mark.slow
def test_the_console_script_killed_at_random_moments(fault_data, fault_config, fault_run, tmp_path):
    """`gsmoe train` as a user runs it (its own interpreter), SIGKILLed at a random moment of training."""
    rng = random.Random(SEED + 1)
    gsmoe = Path(sys.executable).parent / "gsmoe"
    run = tmp_path / "run"
    cmd = [str(gsmoe), *fh.train_args(fault_data, run, fault_config)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # one thread, as the reference: the same numbers
    for _ in range(1):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                                env=env)
        deadline = time.monotonic() + 120
        while not list(run.glob("*/config.json")) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)  # training has started
        time.sleep(rng.uniform(0.0, 2.0))
        stage = sorted((p.parent.name for p in run.glob("*/config.json")), key=fh.STAGES.index)[-1:]
        os.killpg(proc.pid, signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL
        fh.KILLS.append(f"time: the gsmoe console script, during or after stage {stage}")
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert fh.compare_runs(fault_run, run) == []
