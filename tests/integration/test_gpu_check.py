"""benchmarks/gpu_check.sh --small: every step of the prepared GPU measurement runs on the CPU at tiny sizes.

The GPU itself is only lent now and then; this keeps the script from rotting in between. No timing asserts.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_gpu_check_small_writes_every_result(tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, OUT=str(out), WORK=str(tmp_path / "work"), PYTHON=sys.executable, OMP_NUM_THREADS="1")
    proc = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--small"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=1200)
    log = (out / "gpu_check.log").read_text()
    assert proc.returncode == 0, log[-3000:]
    for step in ("smoke", "bench_fp32", "bench_tf32", "bench_bf16", "pipeline"):
        assert f"== {step}: exit 0" in log, log[-3000:]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["gpu_check.log", "bench_fp32.json", "bench_tf32.json", "bench_bf16.json", "pipeline.json"])
    fp32 = json.loads((out / "bench_fp32.json").read_text())["results"]
    assert {"encoder", "score_urdmu_all_crops", "score_gsmoe", "score_gsmoe_mean",
            "memory_gsmoe_longest_video", "memory_urdmu_all_crops_test_set"} <= set(fp32)
    assert json.loads((out / "bench_tf32.json").read_text())["settings"]["tf32"] is True
    assert json.loads((out / "bench_bf16.json").read_text())["settings"]["amp"] == "bf16"
    pipe = json.loads((out / "pipeline.json").read_text())
    assert set(pipe["stages"]) >= {"encoder", "tgs", "experts", "gate"} and pipe["stages_loaded_not_trained"] == []
    assert pipe["end_to_end_s"] == pytest.approx(
        pipe["load_s"] + sum(pipe["stages"][s]["seconds"] for s in ("encoder", "tgs", "experts", "gate")))
    assert "pipeline: end to end" in log  # the summary lines
