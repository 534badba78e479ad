"""Identity by content, nothing written before the check, and loading untrusted files."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import torch

import fault_harness as fh
from gsmoe_lib import cli, runs
from gsmoe_lib.training.config import DataConfig, data_identity


def test_a_copied_dataset_keeps_its_stages_and_a_changed_feature_file_changes_them(
        fault_data, fault_config, copy_run, tmp_path, capsys):
    moved = shutil.copytree(fault_data, tmp_path / "elsewhere" / "data")
    assert data_identity(DataConfig(data_root=str(moved))) == data_identity(DataConfig(data_root=str(fault_data)))
    run = copy_run()
    before = fh.snapshot(run)
    assert cli.main(fh.train_args(moved, run, fault_config)) == 0  # the copy: every stage loads
    assert capsys.readouterr().out.count("(loaded)") == 4
    changed = {k for k, v in fh.snapshot(run).items() if before.get(k) != v}
    assert changed <= {"pipeline_config.json", "writer.lock"}  # the record of what was asked (another data_root)

    feature = sorted(moved.rglob("*.npy"))[0]
    np.save(feature, np.load(feature)[:-1])  # one snippet fewer: another size and header
    ident = data_identity(DataConfig(data_root=str(moved)))
    assert ident["content"] != data_identity(DataConfig(data_root=str(fault_data)))["content"]
    before = fh.snapshot(run)
    assert cli.main(fh.train_args(moved, run, fault_config)) == 2
    assert "data.content" in capsys.readouterr().err
    assert fh.snapshot(run) == before


def test_a_refused_config_leaves_every_file_byte_identical(fault_data, fault_config, copy_run, tmp_path, capsys):
    run = copy_run()
    other = json.loads(fault_config.read_text())
    other["gate"] = {**other["gate"], "lr": 1e-2}
    other_config = tmp_path / "other.json"
    other_config.write_text(json.dumps(other))
    (run / "pipeline_config.json").write_text((run / "pipeline_config.json").read_text())  # a fresh mtime
    before = fh.snapshot(run)
    assert cli.main(fh.train_args(fault_data, run, other_config)) == 2
    error = capsys.readouterr().err
    assert "run/gate: this stage finished with another config" in error and "settings.lr" in error
    assert fh.snapshot(run) == before  # pipeline_config.json included, bytes and modification times


class _RunsCode:
    """Pickles as a call of os.system: loading it with pickle would run a command."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_file_carrying_a_pickled_callable_is_refused(tmp_path):
    marker = tmp_path / "ran"
    evil = tmp_path / "checkpoint.pt"
    torch.save({"format": runs.CHECKPOINT_FORMAT, "kind": "gate", "state": _RunsCode(marker)}, evil)
    with pytest.raises(runs.BadRecord, match="pickled function, is refused and never executed"):
        runs.load_checkpoint(evil, "gate")
    from gsmoe_lib.models.urdmu import load_released

    with pytest.raises(ValueError, match="refused and never executed"):  # as a "released UR-DMU" file
        load_released(evil)
    scores = tmp_path / "test_scores.npz"
    np.savez(scores, video=np.array([_RunsCode(marker)], dtype=object))
    with pytest.raises(runs.BadRecord, match=str(scores)):
        runs.load_scores(scores)
    assert not marker.exists()  # nothing ran
