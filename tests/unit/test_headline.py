"""The README's headline table comes from figures/results.json (gsmoe_lib/headline.py), and says what holds."""

import copy
import json

import pytest

from gsmoe_lib import headline
from gsmoe_lib.paths import PROJECT_ROOT

STAGE = {"auc": 0.85, "auc_abnormal": 0.80, "ap": 0.60, "ap_abnormal": 0.70}
RESULTS = {  # the keys of a `gsmoe reproduce` results.json that the headline reads
    "dataset": "ucf-crime", "profile": "quick", "seeds": 1, "device": "cpu",
    "versions": {"cpu": "AMD EPYC", "cpu_count": 2, "gpu": None, "torch": "2.13.0+cpu", "gsmoe": "0.2.0"},
    "ablation": {"baseline": dict(STAGE), "tgs": dict(STAGE, auc=0.84), "experts": dict(STAGE, auc=0.82),
                 "gsmoe": dict(STAGE, auc=0.83)},
    "sultani": dict(STAGE, auc=0.82),
    "specialisation": {"own_expert_advantage": {"mean": -1.4, "std": None, "n_positive": 7, "n_classes": 13}},
    "masking": {"mean_drop": {"zero": -0.06, "mean": -0.07}},
    "timings": {"00_data": 20.0, "10_task_encoder": 40.0},
}


def test_committed_readme_headline_matches_figures_results():
    """README.md's headline block is exactly what figures/results.json gives: regenerate with
    `python -m gsmoe_lib.headline` (the default `make reproduce` does it) instead of editing the numbers."""
    source = json.loads((PROJECT_ROOT / "figures" / "results.json").read_text())
    readme = (PROJECT_ROOT / "README.md").read_text()
    assert headline.replace_block(readme, headline.headline_markdown(source)) == readme, \
        "README.md's headline table differs from figures/results.json: run python -m gsmoe_lib.headline"


def test_committed_figures_readme_names_the_commit_and_the_same_table():
    source = json.loads((PROJECT_ROOT / "figures" / "results.json").read_text())
    assert source["commit"] and source["commit"] != "unknown"
    text = (PROJECT_ROOT / "figures" / "README.md").read_text()
    assert f"commit **{source['commit']}**" in text
    assert headline.headline_markdown(source) in text


def test_statements_follow_the_numbers():
    source = headline.headline_source(RESULTS, commit="abc1234")
    text = headline.headline_markdown(source)
    assert "Gate ≥ TGS ≥ baseline on AUC (the paper's order) **does not hold**: gate 83.00 / TGS 84.00 / baseline 85.00" in text
    assert "above the Sultani MIL reference on AUC holds: 85.00 against 82.00" in text
    assert "specialise" in text and "**does not hold**: -1.40, 7 of 13." in text
    # the same run with the paper's ordering and working experts: every statement flips to "holds"
    good = copy.deepcopy(RESULTS)
    good["ablation"]["gsmoe"]["auc"], good["ablation"]["tgs"]["auc"] = 0.90, 0.87
    good["specialisation"]["own_expert_advantage"].update(mean=4.0, n_positive=11)
    good["masking"]["mean_drop"]["zero"] = 5.0
    text = headline.headline_markdown(headline.headline_source(good, commit="abc1234"))
    assert "does not hold" not in text and text.count(" holds: ") == 4  # no t-SNE in RESULTS
    assert "| + gate = GS-MoE | 90.00 | 80.00 | 60.00 | 70.00 | 91.58 |" in text
    assert "the notebooks ran 1.0 min" in text


def test_write_figures_record_writes_both_files_and_only_readme_block(tmp_path):
    figures = tmp_path / "figures"
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\n{headline.HEADLINE_START}\nold table\n{headline.HEADLINE_END}\n\nrest\n")
    source = headline.write_figures_record(RESULTS, figures, readme, commit="abc1234")
    assert json.loads((figures / "results.json").read_text())["commit"] == "abc1234"
    assert "commit **abc1234**" in (figures / "README.md").read_text()
    text = readme.read_text()
    assert text.startswith("# title\n") and text.endswith(f"{headline.HEADLINE_END}\n\nrest\n")
    assert "old table" not in text and headline.headline_markdown(source) in text
    assert headline.main(["--source", str(figures / "results.json"), "--readme", str(readme), "--check"]) == 0
    readme.write_text(text.replace("85.00", "86.00"))
    assert headline.main(["--source", str(figures / "results.json"), "--readme", str(readme), "--check"]) == 1


def test_a_readme_without_the_block_is_one_clear_error():
    with pytest.raises(ValueError, match="no headline block"):
        headline.replace_block("# no markers here\n", "table")
