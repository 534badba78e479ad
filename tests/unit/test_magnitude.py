"""The untrained L2-norm score (gsmoe_lib/data/magnitude.py) and the synthetic worlds' magnitude.

Neither world may be separable by feature magnitude: on a quick dataset (the quick profile's counts and
lengths; D=64 keeps the file fast) with a fixed seed, the L2-norm score's frame AUC lies within 0.4-0.6,
while the first generator (anomaly_magnitude="free", no magnitude bursts) is far from it.
"""

from __future__ import annotations

import numpy as np
import pytest

from gsmoe_lib.data import synthetic as S
from gsmoe_lib.data.layouts import open_dataset
from gsmoe_lib.data.magnitude import NEAR_CHANCE, describe, magnitude_metrics, magnitude_scores
from gsmoe_lib.metrics import evaluate_scores

BAND = (0.4, 0.6)


@pytest.fixture(scope="module")
def quick_root(tmp_path_factory):
    return tmp_path_factory.mktemp("mag")


def _auc(root, **kwargs) -> dict:
    return magnitude_metrics(S.synthesize(root / "_".join(f"{k}-{v}" for k, v in kwargs.items()), "quick", seed=0,
                                          feature_dim=64, **kwargs))


def test_scores_are_the_norm_of_the_crop_average(tmp_path):
    root = S.synthesize(tmp_path / "t", "tiny", seed=0, feature_dim=16)
    test = open_dataset(root, "ucf-crime", "test")
    scores = magnitude_scores(test)
    assert list(scores) == [v.name for v in test.videos]
    x = test.load(3)                                          # [C, T, D]
    expected = np.sqrt(((x.astype(np.float64).mean(0)) ** 2).sum(1))
    np.testing.assert_allclose(scores[test.videos[3].name], expected, rtol=1e-12)
    # the metrics are the project's pooled metrics of those scores
    labels = {v.name: test.frame_labels(i) for i, v in enumerate(test.videos)}
    abnormal = {v.name: v.label == 1 for v in test.videos}
    assert magnitude_metrics(root) == evaluate_scores(scores, labels, abnormal)


@pytest.mark.parametrize("world", S.WORLDS)
@pytest.mark.parametrize("dataset", ["ucf-crime", "xd-violence"])
def test_worlds_are_not_separable_by_magnitude(quick_root, world, dataset):
    m = _auc(quick_root, world=world, dataset=dataset)
    assert BAND[0] < m["auc"] < BAND[1], (world, dataset, m["auc"])


def test_the_first_generator_was_separable_by_magnitude(quick_root):
    m = _auc(quick_root, anomaly_magnitude="free", magnitude_burst_rate=0.0)
    assert m["auc"] > 0.6  # 0.80 at D=1024: the norm alone found the anomalies
    assert "far from chance" in describe(m)


def test_describe_says_near_chance_within_the_band():
    assert "near chance" in describe({"auc": 0.5 + NEAR_CHANCE / 2, "auc_abnormal": 0.5, "ap": 0.1})
    assert "far from chance" in describe({"auc": 0.5 - 2 * NEAR_CHANCE, "auc_abnormal": 0.5, "ap": 0.1})


def test_synth_command_prints_the_magnitude_score(tmp_path, capsys):
    from gsmoe_lib.cli import main

    assert main(["data", "synth", "--out", str(tmp_path / "d"), "--profile", "tiny", "--feature-dim", "8",
                 "--world", "drift"]) == 0
    out = capsys.readouterr().out
    assert "drift world" in out and "untrained L2-norm score" in out and "AUC" in out
    # --anomaly-magnitude belongs to the default world
    assert main(["data", "synth", "--out", str(tmp_path / "e"), "--profile", "tiny", "--world", "drift",
                 "--anomaly-magnitude", "free"]) == 2
    assert "default world only" in capsys.readouterr().err


def test_results_md_reports_the_magnitude_score():
    from gsmoe_lib.reporting import results_markdown

    md = results_markdown({"dataset": "ucf-crime", "profile": "quick", "seeds": 1,
                           "l2_norm": {"auc": 51.04, "auc_abnormal": 54.9, "ap": 9.8}})
    assert "Untrained L2-norm score of the test features (chance 50): AUC 51.04, AUC_A 54.90, AP 9.80" in md
    assert "L2-norm" not in results_markdown({"dataset": "ucf-crime", "profile": "quick", "seeds": 1})
