"""The `gsmoe bench` subcommands that have no test of their own run through `gsmoe_lib.cli.main` (and one through
the console script) on tiny inputs: scoring-options, moe-options (its table), encoder-schedule.

speed, precision and robustness: tests/unit/test_bench.py, tests/integration/test_precision.py and
test_robustness.py; paper-pipeline: tests/integration/test_gpu_check.py (`gpu_check.sh --small` runs it).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gsmoe_lib import cli, runs
from gsmoe_lib.bench import moe_options, scoring_options

GSMOE = Path(sys.executable).with_name("gsmoe")
ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "MPLBACKEND": "Agg"}


def test_scoring_options_scores_a_finished_run_four_ways(tiny_run, tmp_path):
    out = tmp_path / "options.json"
    assert cli.main(["bench", "scoring-options", "--run", str(tiny_run), "--json", str(out)]) == 0
    record = json.loads(out.read_text())
    assert [(r["crops"], r["amp"]) for r in record["results"]] == list(scoring_options.OPTIONS)
    rows = {(r["crops"], r["amp"]): r for r in record["results"]}
    # the fp32 "each" row is what the gate stage reported for its own test split (the pipeline's default)
    gate = runs.read_json(next(Path(tiny_run).glob("seed-0/gate/metrics.json")))
    assert rows[("each", "none")]["auc"] == pytest.approx(100 * gate["auc"], abs=1e-3)
    assert all(0 <= r["auc"] <= 100 and r["seconds"] > 0 for r in record["results"])


def test_scoring_options_without_a_run_is_a_one_line_error(tmp_path):
    assert GSMOE.is_file(), f"{GSMOE}: the console script is not installed (pip install -e .)"
    out = subprocess.run([str(GSMOE), "bench", "scoring-options", "--run", str(tmp_path / "nowhere")],
                         capture_output=True, text=True, timeout=300, env=ENV)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.strip().splitlines()[-1] == (
        f"gsmoe bench scoring-options: error: {tmp_path / 'nowhere'}: no such run folder (run `make reproduce` first)")


def _moe_record(seed: int, gate_auc: float) -> dict:
    metrics = {"auc": gate_auc, "auc_abnormal": 0.7, "ap": 0.5, "ap_abnormal": 0.6, "score_std": 0.1}
    return {"ds": "ucf", "seed": seed, "group": "D0",
            "D0": {"gate": metrics, "diag": {"advantage": {"mean": 2.0, "n_positive": 9, "n_classes": 13}}}}


def test_moe_options_summarises_a_results_file(tmp_path, capsys):
    path = tmp_path / "gpu_exp.json"
    path.write_text(json.dumps([_moe_record(0, 0.80), _moe_record(1, 0.90)]))
    assert cli.main(["bench", "moe-options", "--summarise", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    row = dict(zip(header, (c.strip() for c in lines[2].strip("|").split("|"))))
    assert len(lines) == 3 and row["stage"] == "gate" and row["seeds"] == "2"
    assert row["auc"] == "85.00 ± 7.07"  # 80 and 90: mean 85, sample std 10 / sqrt(2)


def test_moe_options_refuses_an_unknown_group_before_writing_data(tmp_path, capsys):
    assert cli.main(["bench", "moe-options", "--groups", "D0,A", "--work", str(tmp_path / "w"),
                     "--out", str(tmp_path / "o")]) == 2
    assert "unknown groups ['A']" in capsys.readouterr().err
    assert not (tmp_path / "w").exists() and set(moe_options.GROUPS) == {"D0", "R", "TR"}


@pytest.mark.parametrize("model", ["urdmu", "sultani"])
def test_encoder_schedule_prints_one_json_line_with_the_asked_iterations(tiny_data, model, capsys):
    argv = ["bench", "encoder-schedule", str(tiny_data), "--model", model, "--profile", "tiny",
            "--eval-at", "3,1", "--name", "t"]
    assert cli.main(argv) == 0
    (line,) = capsys.readouterr().out.strip().splitlines()
    out = json.loads(line)
    assert (out["name"], out["model"], out["profile"]) == ("t", model, "tiny")
    assert list(out["curve"]) == ["1", "3"]  # sorted, as JSON keys
    for point in out["curve"].values():
        assert 0 <= point["auc"] <= 100 and point["std"] >= 0 and point["train_s"] >= 0
