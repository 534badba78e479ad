"""The encoder's `context_window` extension (`URDMU.temporal`) and `gsmoe bench context`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from gsmoe_lib.models.urdmu import URDMU
from gsmoe_lib.training.config import config_for, stage_config


def _model(w: int) -> URDMU:
    torch.manual_seed(0)
    return URDMU(input_dim=16, dim=32, heads=2, dim_head=8, mlp_dim=32, memory_slots=8, head_hidden=8,
                 context_window=w).eval()


def test_windows_are_independent_passes_and_the_whole_sequence_is_urdmu():
    x = torch.randn(1, 2, 11, 16)  # [B, C, T, D]: two full windows of 4 and a last one of 3
    windowed, whole = _model(4), _model(0)
    with torch.no_grad():
        s = windowed(x).scores  # [1, 11]
        parts = [whole(x[:, :, a:a + 4]).scores for a in (0, 4, 8)]  # the same weights, one window at a time
        # The memories and the head are per snippet, so independent windows give the windowed scores exactly.
        assert torch.allclose(s, torch.cat(parts, dim=1), atol=1e-6)
        # ... and the context matters: the whole-sequence scores differ
        assert not torch.allclose(s, whole(x).scores, atol=1e-4)
        # a window as long as the video is the whole video
        assert torch.allclose(_model(11)(x).scores, whole(x).scores, atol=1e-6)


def test_training_forward_uses_the_windows_and_keeps_the_whole_video_topk():
    m = _model(4).train()
    out = m(torch.randn(4, 1, 10, 16))  # half normal, half abnormal
    assert out.scores.shape == (4, 10) and out.A_att.shape == (2, 10)
    assert torch.isfinite(out.triplet_anchor).all()


def test_the_window_travels_with_the_checkpoint_and_zero_keeps_urdmu_args():
    assert "context_window" not in _model(0).model_args  # UR-DMU's own model_args, unchanged
    again = URDMU.from_checkpoint(_model(4).checkpoint_payload())
    assert again.context_window == 4
    with pytest.raises(ValueError, match="context_window"):
        URDMU(input_dim=16, context_window=-1)


def test_the_extension_off_keeps_the_stage_identity_of_before():
    cfg = config_for("tiny", "data/x", "", 0, "cpu")
    assert "context_window" not in stage_config(cfg, "encoder", None)["settings"]
    on = config_for("tiny", "data/x", "", 0, "cpu", overrides={"encoder": {"context_window": 4}})
    assert stage_config(on, "encoder", None)["settings"]["context_window"] == 4


def test_bench_context_scores_a_finished_run_and_its_whole_video_row_is_the_run(tiny_run, tmp_path):
    out = tmp_path / "context.json"
    proc = subprocess.run([sys.executable, "-m", "gsmoe_lib", "bench", "context", "--run", str(tiny_run),
                           "--windows", "0,1,4", "--json", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    record = json.loads(out.read_text())
    rows = {r["window"]: r for r in record["results"]}
    assert set(rows) == {0, 1, 4}
    metrics = json.loads((tiny_run / "seed-0" / "encoder" / "metrics.json").read_text())
    # window 0 is the run's own scoring of the test split
    assert rows[0]["auc"] == pytest.approx(100 * metrics["auc"], abs=1e-3)
    assert rows[0]["auc_abnormal"] == pytest.approx(100 * metrics["auc_abnormal"], abs=1e-3)
    assert all(0 <= r["within"] <= 100 for r in rows.values())
    assert "whole video" in proc.stdout


def test_bench_context_with_a_wrong_run_says_so_in_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "gsmoe_lib", "bench", "context", "--run", str(tmp_path / "nope")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "no such run folder" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_experts_reading_the_input_change_the_experts_identity_only_when_on():
    cfg = config_for("tiny", "/data", "ucf-crime", 0, "cpu")
    assert "inputs" not in stage_config(cfg, "experts", "up")["settings"]  # the paper: the identity of before
    on = config_for("tiny", "/data", "ucf-crime", 0, "cpu", {"experts": {"inputs": "task+i3d"}})
    assert stage_config(on, "experts", "up")["settings"]["inputs"] == "task+i3d"


def test_a_later_setting_at_its_old_value_keeps_the_benchmark_cells_keys():
    from dataclasses import asdict

    from gsmoe_lib.training.config import pipeline_identity

    cfg = config_for("tiny", "/data", "ucf-crime", 0, "cpu")
    ident = pipeline_identity(cfg)
    assert "inputs" not in ident["experts"]  # the paper's experts: the key of the cells trained before it existed
    later = ("inputs", "teacher", "class_teacher")
    assert {k: v for k, v in asdict(cfg)["experts"].items() if k not in later} == ident["experts"]
    on = config_for("tiny", "/data", "ucf-crime", 0, "cpu", {"experts": {"inputs": "task+i3d"}})
    assert pipeline_identity(on)["experts"]["inputs"] == "task+i3d"
