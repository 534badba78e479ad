"""The Sultani MIL reference stage (gsmoe_lib/training/sultani.py) on the planted tiny synthetic data, through run_pipeline."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from gsmoe_lib import runs
from gsmoe_lib.training import config, pipeline
from gsmoe_lib.training.data import load_data
from gsmoe_lib.training.sultani import train_sultani


class _Stop(Exception):
    pass


@pytest.fixture(scope="module")
def finished(tiny_data, tmp_path_factory):
    cfg = config.config_for("tiny", str(tiny_data), "", 0, "cpu")
    run_dir = tmp_path_factory.mktemp("sultani") / "run"
    return cfg, run_dir, pipeline.run_pipeline(cfg, run_dir, stages=("sultani",), progress=False)


def test_stage_learns_on_planted_data_and_writes_its_folder(finished, tiny_data):
    cfg, run_dir, results = finished
    assert list(results) == ["sultani"] and not (run_dir / "encoder").exists()  # nothing else trained
    res = results["sultani"]
    assert not res.skipped
    for name in ("config.json", "env.json", "checkpoint.pt", "metrics.json", "history.json", "test_scores.npz",
                 "DONE"):
        assert (res.path / name).is_file(), name
    # Floor on the planted anomalies: chance is 0.5; the tiny profile's 30 steps reach 0.60-0.68 (seeds 0-2).
    assert res.metrics["auc"] > 0.55, res.metrics["auc"]
    scores = runs.load_scores(res.path / "test_scores.npz")
    test = load_data(cfg.data, progress=False).test
    assert [v.name for v in test.videos] == list(scores)
    assert all(len(scores[v.name]) == test.n_snippets(i) for i, v in enumerate(test.videos))  # every snippet
    pooled = np.concatenate(list(scores.values()))
    assert pooled.std() > 1e-3 and res.metrics["test_score_std"] == pytest.approx(pooled.std(), rel=1e-5)
    history = runs.read_json(res.path / "history.json")
    assert [h["iteration"] for h in history] == [10, 20, 30]  # the loss, every 10 (tiny: fixed schedules)


def test_finished_stage_is_loaded_and_a_changed_config_is_not(finished):
    cfg, run_dir, results = finished
    again = pipeline.run_pipeline(cfg, run_dir, stages=("sultani",), progress=False)["sultani"]
    assert again.skipped and again.metrics == results["sultani"].metrics
    stage = runs.StageDir(run_dir, "sultani")

    def stage_config(c):
        return config.stage_config(c, "sultani", None)

    assert stage.is_done(stage_config(cfg))
    assert not stage.is_done(stage_config(replace(cfg, sultani=replace(cfg.sultani, lr=0.01))))
    assert not stage.is_done(stage_config(replace(cfg, seed=1)))
    # the other stages' pooling is not the Sultani stage's business
    assert stage.is_done(stage_config(replace(cfg, data=replace(cfg.data, n_segments=200))))


def test_interrupted_stage_resumes_to_the_same_result(finished, tmp_path):
    cfg, _, results = finished

    def stop(i: int) -> None:
        if i == 14:
            raise _Stop

    with pytest.raises(_Stop):
        train_sultani(cfg, None, tmp_path, progress=False, on_step=stop)
    assert (tmp_path / "sultani" / "checkpoint.partial.pt").is_file()
    resumed = train_sultani(cfg, None, tmp_path, progress=False)
    assert resumed.metrics == results["sultani"].metrics
    assert not (tmp_path / "sultani" / "checkpoint.partial.pt").exists()


def test_unknown_stage_and_bad_crops_are_errors(tiny_data, tmp_path):
    cfg = config.config_for("tiny", str(tiny_data), "", 0, "cpu")
    with pytest.raises(ValueError, match="sultan"):
        pipeline.run_pipeline(cfg, tmp_path, stages=("sultan",), progress=False)
    with pytest.raises(ValueError, match="crops"):
        train_sultani(replace(cfg, sultani=replace(cfg.sultani, crops="axis")), None, tmp_path, progress=False)
