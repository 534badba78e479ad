"""`gsmoe reproduce` end to end on the tiny profile: every notebook runs, and the files it writes are checked.

One module-scoped run (synthetic tiny data in a temporary folder, never the repository's data/) feeds
every test. Table 5 runs one cluster count (k = 3) instead of three to keep the file short.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

import nbformat
import pytest

from gsmoe_lib.metrics import COLLAPSE_STD
from gsmoe_lib.reporting import PAPER_NUMBERS
from gsmoe_lib.notebook import NotebookFailed, ParameterError
from gsmoe_lib.paths import PROJECT_ROOT
from gsmoe_lib.reproduce import NOTEBOOKS, reproduce

pytestmark = pytest.mark.slow

PRESENT = [nb for nb in NOTEBOOKS if (PROJECT_ROOT / "notebooks" / f"{nb}.ipynb").is_file()]
METRICS = ("auc", "auc_abnormal", "ap", "ap_abnormal")


@pytest.fixture(scope="module")
def data_root(tiny_data):
    return tiny_data


def _stage_files(seed_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(seed_dir)): p.read_bytes()
            for done in sorted(seed_dir.glob("*/DONE")) for p in sorted(done.parent.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished_run(tiny_run, tmp_path_factory):
    # A copy of the session's finished tiny run (tests/conftest.py), which other tests (other xdist workers)
    # read while this module writes its notebooks, results and ablation stages into the run folder.
    run = tmp_path_factory.mktemp("smoke") / "run"
    shutil.copytree(tiny_run / "seed-0", run / "seed-0", ignore=shutil.ignore_patterns("*.partial.pt"))
    return run


@pytest.fixture(scope="module")
def stages_before(finished_run):
    return _stage_files(finished_run / "seed-0")


@pytest.fixture(scope="module")
def run(finished_run, tiny_data, stages_before):
    # The notebooks find the copied run's stages done (same config) and load them, so the smoke run pays only
    # for the analysis and the ablation variants. The notebooks run with notebooks/ as working directory, as
    # in JupyterLab (reproduce.reproduce).
    reproduce(out=finished_run, data_root=tiny_data, profile="tiny", progress=False, timeout=300,
              params={"cluster_counts": [3]})
    return finished_run


def _fraction(x) -> bool:
    return isinstance(x, (int, float)) and (math.isnan(x) or 0.0 <= x <= 1.0)


def test_results_json_schema_and_ranges(run):
    results = json.loads((run / "results.json").read_text())
    assert (results["dataset"], results["profile"], results["seeds"]) == ("ucf-crime", "tiny", 1)
    assert set(results["ablation"]) == {"baseline", "tgs", "experts", "gsmoe"}
    for row, values in results["ablation"].items():
        for m in METRICS:
            assert _fraction(values[m]), (row, m, values[m])
            assert f"{m}_std" not in values  # one seed: no std
    assert set(results["table3"]) == {"with_features", "without_features"}
    assert results["table3"]["with_features"] == results["ablation"]["gsmoe"]  # the same gate stage
    assert set(results["table5"]) >= {"clusters-3", "class"}
    for key in ("encoder", "tgs", "experts", "gsmoe"):
        assert all(_fraction(results[key][m]) for m in METRICS), key
    assert results["experts"]["expert_names"] and len(results["experts"]["videos_per_expert"]) == len(
        results["experts"]["expert_names"])
    assert set(results["timings"]) == set(PRESENT) and all(t > 0 for t in results["timings"].values())
    assert results["versions"]["torch"]
    if "30_categories" in PRESENT:
        assert "table4" in results and "classwise" in results


def test_results_json_carries_the_diagnostics(run):
    """The diagnostics of the mixture: collapse status of every stage, expert x class matrix, own-expert
    advantage, masking two ways, silhouettes; consistent with each other and rendered in results.md."""
    results = json.loads((run / "results.json").read_text())
    for row, values in results["ablation"].items():  # every stage's metrics carry the collapse report
        assert values["n_seeds"] == 1 and values["collapsed_seeds"] in (0, 1) and values["score_std"] >= 0, row
        assert (values["score_std"] < COLLAPSE_STD) == bool(values["collapsed_seeds"]), row
    if "13_gate" in PRESENT:
        assert set(results["collapse"]) >= {"encoder", "tgs", "experts", "gate"}
        assert results["collapse"]["gate"]["score_std"] == pytest.approx(results["ablation"]["gsmoe"]["score_std"])
    if "12_experts" in PRESENT:
        spec = results["specialisation"]
        assert spec["expert_names"] == results["experts"]["expert_names"]
        assert set(spec["matrix"]) == set(spec["expert_names"])
        assert all(_fraction(v) for row in spec["matrix"].values() for v in row.values())
        adv = spec["own_expert_advantage"]  # class experts: defined, in points, one per class with test videos
        assert set(adv["per_class"]) <= set(spec["classes"]) and adv["n_classes"] == len(adv["per_class"]) > 0
        assert adv["mean"] == pytest.approx(sum(adv["per_class"].values()) / adv["n_classes"])
        assert adv["n_positive"] == sum(v > 0 for v in adv["per_class"].values())
        assert (run / "figures" / "expert_class_auc.png").is_file()
    if "30_categories" in PRESENT:
        t4 = results["table4"]
        assert set(t4) == {"unmasked", "masked", "masked_mean"} and set(t4["masked"]) == set(t4["unmasked"])
        drop = results["masking"]["mean_drop"]
        for fill, column in (("zero", "masked"), ("mean", "masked_mean")):
            diffs = [t4["unmasked"][c] - t4[column][c] for c in t4["unmasked"]
                     if not math.isnan(t4["unmasked"][c] - t4[column][c])]
            assert drop[fill] == pytest.approx(100 * sum(diffs) / len(diffs))
    if "40_tsne" in PRESENT:
        sil = results["tsne"]["silhouette"]
        assert set(sil) == {"baseline", "experts", "gate"} and all(-1 <= v <= 1 for v in sil.values())
        assert results["tsne"]["experts_minus_baseline"] == pytest.approx(sil["experts"] - sil["baseline"])
    md = (run / "results.md").read_text()
    assert "Diagnostics of the mixture" in md and "Stage collapse" in md
    if "10_task_encoder" in PRESENT:  # the top-k MIL reference row, and the sentence that compares with it
        assert "| top-k MIL MLP (reference, raw features) |" in md
        assert "**Below the top-k MIL reference** on AUC" in md or "at or above the top-k MIL reference on AUC" in md


def test_executed_notebooks_figures_and_timings(run):
    for nb in PRESENT:
        executed = nbformat.read(str(run / "notebooks" / f"{nb}.ipynb"), as_version=4)
        assert any(c.get("outputs") for c in executed.cells if c.cell_type == "code"), nb
    pngs = sorted((run / "figures").glob("*.png"))
    expected = {"data_class_counts", "data_feature_traces", "encoder_loss", "tgs_sigma_interpretations",
                "tgs_pseudo_labels", "tgs_loss", "experts_loss", "gate_loss", "table2_ablation",
                "table3_gate_features", "table5_cluster_experts"}
    assert expected <= {p.stem for p in pngs}
    for png in pngs:
        pdf = png.with_suffix(".pdf")
        assert png.stat().st_size > 1000 and pdf.is_file() and pdf.stat().st_size > 1000, png.name
    assert set(json.loads((run / "timings.json").read_text())) == set(PRESENT)


def test_the_notebooks_loaded_the_finished_stages_instead_of_retraining(run, stages_before):
    # The fixture's run was trained through train.config_for (dataset "", data root as given); reproduce
    # passes the dataset resolved and absolute paths: the same normalised config, so nothing was retrained.
    after = _stage_files(run / "seed-0")
    assert {"encoder/DONE", "gate/DONE"} <= set(stages_before)
    assert {k: after.get(k) for k in stages_before} == stages_before


def test_results_md_shows_the_papers_numbers(run):
    md = (run / "results.md").read_text()
    for key in (("ucf-crime", "gate", "auc"), ("ucf-crime", "gate-no-features", "auc"),
                ("ucf-crime", "baseline", "ap_abnormal")):
        assert f"{PAPER_NUMBERS[key]:.2f}" in md
    assert "Table 2" in md and "Table 3" in md and "Table 5" in md


def test_a_second_call_skips_every_notebook(run, data_root, capsys):
    before = {p.name: p.stat().st_mtime_ns for p in (run / "notebooks").glob("*.ipynb")}
    start = time.perf_counter()
    reproduce(out=run, data_root=data_root, profile="tiny", progress=False, params={"cluster_counts": [3]})
    elapsed = time.perf_counter() - start
    assert capsys.readouterr().out.count("up to date, skipped") == len(PRESENT)
    assert {p.name: p.stat().st_mtime_ns for p in (run / "notebooks").glob("*.ipynb")} == before
    assert elapsed < 60  # nothing executed (a generous bound: it only hashes files and merges JSON)


def test_an_unknown_parameter_is_an_error_naming_it(run, data_root):
    with pytest.raises(ParameterError, match="'cluster_count'"):
        reproduce(out=run, data_root=data_root, profile="tiny", progress=False, params={"cluster_count": [3]})


def _throwaway_notebook(folder: Path, body: str) -> None:
    cells = [nbformat.v4.new_markdown_cell("# throwaway"),
             nbformat.v4.new_code_cell("\n".join(f"{n}: {t} = {v}  # common" for n, t, v in (
                 ("run_dir", "str", '""'), ("data_root", "str", '""'), ("dataset", "str", '""'),
                 ("profile", "str", '"tiny"'), ("seeds", "int", "1"), ("device", "str", '"cpu"'))),
                 metadata={"tags": ["parameters"]}),
             nbformat.v4.new_code_cell("from gsmoe_lib.notebook import validate_parameters\n"
                                       "P = validate_parameters(globals())"),
             nbformat.v4.new_code_cell(body)]
    nb = nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "language": "python",
                                                                         "display_name": "Python 3"}})
    folder.mkdir()
    nbformat.write(nb, str(folder / "10_task_encoder.ipynb"))


def test_a_failing_notebook_stops_the_run_naming_notebook_and_cell(tmp_path, data_root):
    _throwaway_notebook(tmp_path / "notebooks", 'raise RuntimeError("planted failure")')
    with pytest.raises(NotebookFailed, match=r"10_task_encoder\.ipynb: cell \d+ failed with RuntimeError: planted"):
        reproduce(out=tmp_path / "run", data_root=data_root, profile="tiny", progress=False,
                  notebook_dir=tmp_path / "notebooks", notebooks=["10", "11"])
    assert not (tmp_path / "run" / "notebooks" / "10_task_encoder.done").exists()
    assert (tmp_path / "run" / "notebooks" / "10_task_encoder.failed.ipynb").is_file()


def test_your_video_notebook_extracts_and_scores_a_generated_clip(run):
    """60_your_video on its defaults: a generated 64-frame clip, random weights, the centre recipe."""
    if "60_your_video" not in PRESENT:
        pytest.skip("notebook 60_your_video not present")
    result = json.loads((run / "results" / "your_video.json").read_text())
    assert result["meaningless"] is True and result["recipe"] == "centre"
    assert result["snippets"] == 4 and 0.0 <= result["max_score"] <= 1.0  # ceil(64 / 16)
    assert (run / "figures" / "your_video.png").is_file()
    assert json.loads((run / "your_video" / "features" / "extract.json").read_text())["videos"]["generated_clip"][
        "frames_decoded"] == 64
