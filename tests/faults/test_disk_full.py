"""A full disk mid-run: the write fails naming its file and saying the disk is full; the previous checkpoint
and every finished stage stay intact and loadable; the next run resumes and equals the uninterrupted run."""

from __future__ import annotations

import pytest
import torch

import fault_harness as fh
from gsmoe_lib import runs


def _finished_records(run) -> dict:
    return {k: v for k, v in fh.snapshot(run).items() if k.split("/")[0] in ("encoder", "tgs")
            and not k.endswith("env.json")}


@pytest.mark.slow
def test_a_file_size_limit_hit_by_a_checkpoint_keeps_the_previous_one(fault_data, fault_config, fault_run, tmp_path):
    """RLIMIT_FSIZE in the child: the experts' next partial checkpoint cannot be written."""
    run, log = tmp_path / "run", tmp_path / "run.log"
    args = fh.train_args(fault_data, run, fault_config)
    assert fh.run_child(args, fh.Kill("stage", 2), log=log) == -9  # encoder and tgs finished
    assert fh.run_child(args, fh.Kill("step", 5), log=log) == -9  # experts: partial at iteration 3, killed in 5
    fh.KILLS += ["stage: between stages, right after tgs/DONE", "step: inside a training step of experts"]
    partial = run / "experts" / "checkpoint.partial.pt"
    before, finished = partial.read_bytes(), _finished_records(run)
    limit = len(before) - 1  # the next partial checkpoint (same tensors) does not fit; the records do
    log.write_text("")
    assert fh.run_child(args, fh.Kill("fsize", limit), log=log) == 2
    error = log.read_text()
    assert f"{partial}: the disk is full" in error, error[-2000:]
    assert partial.read_bytes() == before and runs.load_checkpoint(partial, "partial-experts")["iteration"] == 3
    assert _finished_records(run) == finished  # finished stages untouched and loadable
    runs.load_checkpoint(run / "tgs" / "checkpoint.pt", "urdmu")
    assert not list(run.rglob(".*.tmp"))
    assert fh.run_child(args, log=log) == 0  # room again: it resumes from iteration 3
    assert fh.compare_runs(fault_run, run) == []
    fh.CASES.append("disk full (RLIMIT_FSIZE) on the experts' partial checkpoint: previous checkpoint (iteration 3) "
                    "and finished stages intact; rerun equal; lost: nothing")


@pytest.mark.slow
@pytest.mark.parametrize("write", [5, 9])  # encoder/checkpoint.pt, encoder/DONE
def test_enospc_part_way_through_a_write(fault_data, fault_config, fault_run, tmp_path, write):
    """The disk fills during the n-th write of a run (a record, a score file, a checkpoint or DONE)."""
    run, log, landings = tmp_path / "run", tmp_path / "run.log", tmp_path / "landings.txt"
    args = fh.train_args(fault_data, run, fault_config)
    assert fh.run_child(args, fh.Kill("enospc", write), log=log, landings=landings) == 2
    where = landings.read_text().strip().rsplit(" ", 1)[-1]  # stage/file
    error = log.read_text()
    assert f"{run / where}: the disk is full" in error, error[-2000:]
    for done in run.glob("*/DONE"):  # every stage that finished before is whole
        stage = runs.StageDir(run, done.parent.name)
        stage.verify()
        torch.load(stage.checkpoint, weights_only=True)
    assert not list(run.rglob(".*.tmp"))
    assert fh.run_child(args, log=log) == 0
    assert fh.compare_runs(fault_run, run) == []
    fh.CASES.append(f"disk full (ENOSPC) during the write of {where}: earlier stages intact; rerun equal; "
                    "lost: nothing")
