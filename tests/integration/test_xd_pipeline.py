"""XD-Violence end to end on the tiny profile: 5 crops, multi-label videos, one expert per XD class."""

import numpy as np
import pytest

from gsmoe_lib import runs
from gsmoe_lib.data.lists import XD_CLASSES
from gsmoe_lib.data.synthetic import synthesize
from gsmoe_lib.inference import GSMoE
from gsmoe_lib.training import config, pipeline
from gsmoe_lib.training.data import load_data

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def xd_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("xd")
    data_root = synthesize(root / "data", profile="tiny", seed=0, dataset="xd-violence", feature_dim=128)
    cfg = config.config_for("tiny", str(data_root))
    data = load_data(cfg.data, progress=False)
    results = pipeline.run_pipeline(cfg, root / "run", progress=False, data=data)
    return root / "run", data, results


def test_all_four_stages_finish_with_metrics(xd_run):
    run, data, results = xd_run
    assert data.dataset == "xd-violence"
    assert list(results) == ["encoder", "tgs", "experts", "gate"]
    for name, res in results.items():
        assert (run / name / "DONE").is_file(), name
        for key in ("auc", "auc_abnormal", "ap", "ap_abnormal"):
            assert 0.0 <= res.metrics[key] <= 1.0, (name, key)
        scores = runs.load_scores(run / name / "test_scores.npz")
        assert list(scores) == [v.name for v in data.test.videos]


def test_one_expert_per_xd_class_and_five_crops_scored(xd_run):
    run, data, _ = xd_run
    detector = GSMoE.from_run(run)
    assert detector.expert_names == list(XD_CLASSES)
    video = data.test.load(0)  # [C, T, D]
    assert video.shape[0] == 5
    result = detector.score(video)
    assert result.expert_scores.shape == (video.shape[1], len(XD_CLASSES))
    assert np.all((result.scores >= 0) & (result.scores <= 1))
