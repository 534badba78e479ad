"""The robustness runner (`gsmoe bench robustness`) on the tiny profile: one variant × one seed.

The cell runs in a worker process (`--jobs 2`, spawned as on the GPU machine), so the pool, the
synthesis-then-cells scheduling and the record files are exercised; the second call must load the record.
"""

import json
import re

import pytest

from gsmoe_lib import cli, runs
from gsmoe_lib.bench import robustness as R
from gsmoe_lib.bench import robustness_report as report
from gsmoe_lib.reporting import METRIC_NAMES
from gsmoe_lib.training.stages import REFERENCE_STAGES, STAGES

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("robustness")
    # A few steps per stage: these tests check the benchmark's bookkeeping, not what the stages learn
    # (tests/integration/test_learning.py).
    short = {"iterations": 6, "checkpoint_every": 3}
    (root / "short.json").write_text(json.dumps({s: short for s in (*STAGES, *REFERENCE_STAGES)}))
    argv = ["bench", "robustness", "--profile", "tiny", "--variants", "ucf-half-saliency", "--seeds", "1",
            "--jobs", "2", "--threads", "1", "--work", str(root / "work"), "--out", str(root / "out"), "--quiet",
            "--config", str(root / "short.json")]
    assert cli.main(argv) == 0
    return root, argv, json.loads((root / "out" / "robustness.json").read_text())


def _md_rows(text: str, header_start: str) -> list[dict[str, str]]:
    """The rows of the markdown table whose header line starts with `header_start`."""
    lines = text.splitlines()
    i = next(n for n, line in enumerate(lines) if line.startswith(header_start))
    keys = [k.strip() for k in lines[i].strip("|").split("|")]
    rows = []
    for line in lines[i + 2:]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(keys, (c.strip() for c in line.strip("|").split("|")))))
    return rows


def test_the_cell_trains_every_stage_and_its_record_holds_the_stage_metrics(bench):
    root, _, result = bench
    assert result["cells_run"] == 1 and result["cells_cached"] == 0 and not result["failures"]
    (cell,) = result["cells"]
    assert (cell["variant"], cell["seed"]) == ("ucf-half-saliency", 0)
    assert R.pipeline_stages() == STAGES + REFERENCE_STAGES
    assert sorted(cell["stages"]) == sorted(R.pipeline_stages())  # the JSON file sorts its keys
    # the variant's own data: its generator config halves the tiny profile's saliency, with its dataset seed
    meta = json.loads((root / "work" / "data" / "tiny" / "ucf-half-saliency" / "gsmoe_dataset.json").read_text())
    assert meta["seed"] == R.VARIANTS["ucf-half-saliency"].data_seed
    assert meta["config"]["saliency_scale"] == pytest.approx(R.VARIANTS["ucf-half-saliency"].synth_config(
        "tiny").saliency_scale)
    for stage, rec in cell["stages"].items():
        metrics = runs.read_json(f"{cell['run_dir']}/{stage}/metrics.json")
        assert rec["auc_abnormal"] == pytest.approx(100 * metrics["auc_abnormal"])
        assert rec["score_std"] >= 0 and rec["seconds"] > 0 and rec["loaded"] is False
        assert rec["collapsed"] == bool(rec["collapse_reasons"])
    written = json.loads((root / "out" / "robustness.json").read_text())
    assert written["parameters"]["jobs"] == 2 and written["environment"]["torch"]
    assert written["parameters"]["seeds"] == {"ucf-half-saliency": [0]}


def test_the_markdown_table_matches_the_json(bench):
    root, _, _ = bench
    result = json.loads((root / "out" / "robustness.json").read_text())
    rows = _md_rows((root / "out" / "robustness.md").read_text(), "| variant | stage |")
    summary = result["summary"]["ucf-half-saliency"]["stages"]
    by_label = {label: stage for stage, label in report.STAGE_LABELS.items()}
    assert [by_label[r["stage"]] for r in rows] == [s for s in report.TABLE_ORDER if s in summary]
    (cell,) = result["cells"]
    for row in rows:
        stage = by_label[row["stage"]]
        for key in report.METRICS:
            label = METRIC_NAMES[key]
            m = re.fullmatch(r"\(?(-?[\d.]+)\)?", row[label])  # one seed: the mean, no spread
            assert m, row[label]
            assert float(m.group(1)) == pytest.approx(cell["stages"][stage][key], abs=0.005)
            assert row[label].startswith("(") == summary[stage]["collapsed"]
        assert row["status"] == ("ok" if not summary[stage]["collapsed"] else "collapsed on seed 0")
    targets = _md_rows((root / "out" / "robustness.md").read_text(), "| variant | target |")
    checks = result["checks"]["ucf-half-saliency"]
    assert [t["target"] for t in targets] == [c["target"] for c in checks]
    assert [t["result"] for t in targets] == [{True: "met", False: "**missed**", None: "incomplete"}[c["passed"]]
                                              for c in checks]


def test_a_second_call_loads_the_record_and_retrains_nothing(bench):
    root, argv, first = bench
    (cell,) = first["cells"]
    stamps = {s: (root / cell["run_dir"] / s / "checkpoint.pt").stat().st_mtime_ns for s in cell["stages"]}
    assert cli.main([*argv, "--jobs", "1"]) == 0
    again = json.loads((root / "out" / "robustness.json").read_text())
    assert again["cells_run"] == 0 and again["cells_cached"] == 1
    # as text: a one-seed std is NaN, and NaN != NaN
    assert json.dumps(again["cells"]) == json.dumps(first["cells"])
    assert json.dumps(again["summary"]) == json.dumps(first["summary"])
    assert {s: (root / cell["run_dir"] / s / "checkpoint.pt").stat().st_mtime_ns for s in cell["stages"]} == stamps
