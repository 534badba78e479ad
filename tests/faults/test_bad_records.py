"""A truncated record of a finished stage is named exactly, and the stage is never trained over: the run stops
before writing anything (every file of the run folder byte-identical afterwards)."""

from __future__ import annotations

import pytest

import fault_harness as fh
from gsmoe_lib import cli

DAMAGED = ["gate/metrics.json", "gate/config.json", "gate/DONE", "gate/test_scores.npz",
           "gate/test_expert_scores.npz", "tgs/metrics.json", "encoder/DONE", "experts/test_scores.npz",
           "gate/checkpoint.pt", "tgs/checkpoint.pt"]


@pytest.mark.parametrize("record", DAMAGED)
def test_a_truncated_record_is_named_and_never_trained_over(fault_data, fault_config, copy_run, capsys, record):
    run = copy_run()
    path = run / record
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # truncated, as a full disk or a bad copy leaves it
    before = fh.snapshot(run)
    assert cli.main(fh.train_args(fault_data, run, fault_config)) == 2
    error = capsys.readouterr().err
    assert str(path) in error and ("truncated" in error or "does not match" in error), error
    assert fh.snapshot(run) == before  # nothing written, nothing retrained
    fh.CASES.append(f"bad record {record} (half of it): named exactly, refused before any write; lost: nothing")


def test_a_replaced_run_moves_a_stage_with_a_bad_record_aside(fault_data, fault_config, copy_run, tmp_path):
    """`--replace` is the way on: the damaged stage is moved to RUN/replaced/, whole, and trained again."""
    run = copy_run()
    (run / "gate" / "DONE").write_text("")
    log = tmp_path / "replace.log"  # trained in a child, as the reference (same threads: the same numbers)
    assert fh.run_child(fh.train_args(fault_data, run, fault_config, extra=("--replace",)), log=log) == 0, \
        log.read_text()[-2000:]
    aside = list((run / "replaced").glob("gate-*-bad-record"))
    assert len(aside) == 1 and (aside[0] / "checkpoint.pt").is_file()
    assert fh.compare_runs(copy_run("reference-copy"), run) == []
