"""The precision benchmark (`gsmoe bench precision`, gsmoe_lib/bench/precision.py) on the tiny profile: fp32 and bf16,
two seeds."""

import json
import statistics

import pytest

from gsmoe_lib import cli
from gsmoe_lib.bench import precision
from gsmoe_lib.training.config import config_for, make_config
from gsmoe_lib.training.stages import REFERENCE_STAGES, STAGES
from gsmoe_lib.data.synthetic import synthesize

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    root = tmp_path_factory.mktemp("precision")
    data_root = synthesize(root / "data", profile="tiny", seed=0, feature_dim=64)
    # Short stages: this test checks the benchmark's bookkeeping over 4 runs, not what the stages learn
    # (tests/integration/test_learning.py does that on the tiny profile itself).
    short = {"iterations": 10, "checkpoint_every": 5}
    (root / "overrides.json").write_text(json.dumps({"gate": {"dropout": 0.0, **short}, "experts": short,
                                                     "tgs": short}))
    argv = ["bench", "precision", "--profile", "tiny", "--data-root", str(data_root), "--runs", str(root / "runs"),
            "--precisions", "none,bf16", "--seeds", "0,1", "--config", str(root / "overrides.json")]
    assert cli.main([*argv, "--json", str(root / "out.json")]) == 0
    return root, argv, json.loads((root / "out.json").read_text())


def test_one_record_per_precision_and_seed_with_every_stage(measured):
    root, _, result = measured
    assert [(r["precision"], r["seed"]) for r in result["records"]] == [
        ("none", 0), ("bf16", 0), ("none", 1), ("bf16", 1)]
    for r in result["records"]:
        # every stage and the Sultani MIL floor (the JSON file sorts its keys)
        assert sorted(r["stages"]) == sorted(STAGES + REFERENCE_STAGES)
        assert (root / "runs" / f"{r['precision']}-seed{r['seed']}" / "gate" / "DONE").is_file()
        for cells in r["stages"].values():
            assert 0.0 <= cells["auc"] <= 100.0 and cells["seconds"] > 0 and cells["loaded"] is False
    written = json.loads((root / "out.json").read_text())
    assert written["environment"]["device"] == "cpu" and written["profile"] == "tiny"
    # the overrides reach the runs and are recorded
    assert written["overrides"]["gate"]["dropout"] == 0.0 and written["overrides"]["experts"]["iterations"] == 10
    gate_config = json.loads((root / "runs" / "none-seed0" / "gate" / "config.json").read_text())
    assert gate_config["settings"]["dropout"] == 0.0 != make_config("tiny").gate.dropout


def test_precision_changes_the_run_and_the_summary_follows_the_records(measured):
    _, _, result = measured
    recs = {(r["precision"], r["seed"]): r["stages"] for r in result["records"]}
    # bf16 autocast really trains differently (the encoder's scores are not the fp32 ones)
    assert recs[("none", 0)]["encoder"]["ap"] != recs[("bf16", 0)]["encoder"]["ap"]
    s = result["summary"]
    values = [recs[("bf16", seed)]["gate"]["auc"] for seed in (0, 1)]
    cell = s["bf16"]["gate"]["auc"]
    assert cell["mean"] == pytest.approx(statistics.fmean(values))
    assert cell["std"] == pytest.approx(statistics.stdev(values))
    assert cell["delta"] == pytest.approx(cell["mean"] - s["none"]["gate"]["auc"]["mean"])
    assert s["none"]["encoder"]["ap"]["delta"] == 0.0


def test_a_second_call_loads_the_finished_runs(measured):
    root, argv, _ = measured
    assert cli.main([*argv, "--json", str(root / "again.json")]) == 0
    again = json.loads((root / "again.json").read_text())
    assert all(c["loaded"] for r in again["records"] for c in r["stages"].values())


def test_bad_precision_is_refused(tmp_path, capsys):
    assert cli.main(["bench", "precision", "--precisions", "fp16", "--runs", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("gsmoe bench precision: error: --precisions must list some of")
    with pytest.raises(ValueError, match="only exists on CUDA"):
        precision.measure_one(config_for("tiny"), tmp_path / "r", "tf32")
