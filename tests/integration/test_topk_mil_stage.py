"""The top-k MIL MLP reference stage (gsmoe_lib/training/topk_mil.py) on the planted tiny synthetic data."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gsmoe_lib import runs
from gsmoe_lib.models.topk_mil import TopKMLP
from gsmoe_lib.training import config, pipeline
from gsmoe_lib.training.topk_mil import topk_k, train_topk_mil
from gsmoe_lib.training.validation import validation_rows


@pytest.fixture(scope="module")
def finished(tiny_data, tmp_path_factory):
    # the validation rule, which the tiny profile leaves off (its training set is too small to split)
    cfg = config.config_for("tiny", str(tiny_data), "", 0, "cpu",
                            overrides={"validation": {"selection": "validation", "share": 0.15}})
    run_dir = tmp_path_factory.mktemp("topk") / "run"
    return cfg, run_dir, pipeline.run_pipeline(cfg, run_dir, stages=("topk_mil",), progress=False)["topk_mil"]


def test_stage_learns_planted_anomalies_and_keeps_its_best_validated_checkpoint(finished):
    cfg, run_dir, res = finished
    assert not (run_dir / "encoder").exists() and not (run_dir / "sultani").exists()  # nothing else trained
    # Floor on the planted anomalies, seed 0: chance is 0.5; the tiny profile reaches 0.87 (seed 0)
    assert res.metrics["auc"] > 0.75, res.metrics["auc"]
    assert not res.metrics["collapsed"]
    history = runs.read_json(res.path / "history.json")
    rows = validation_rows(history)
    assert rows and all(r["iteration"] % cfg.topk_mil.validate_every == 0 or r["iteration"] ==
                        res.metrics["trained_iterations"] for r in rows)
    best = max(r["validation"] for r in rows)
    assert res.metrics["validation_best"] == best
    assert res.metrics["selected_iteration"] == next(r["iteration"] for r in rows if r["validation"] == best)


def test_the_model_and_its_k():
    assert TopKMLP.n_parameters(1024) == sum(p.numel() for p in TopKMLP(1024).parameters()) == 525_313
    assert [topk_k(s) for s in (8, 32, 64)] == [1, 2, 4]


def test_resumed_stage_gives_the_same_result(finished, tmp_path):
    cfg, _, res = finished

    class Stop(Exception):
        pass

    def stop(i: int) -> None:
        if i == 14:
            raise Stop

    with pytest.raises(Stop):
        train_topk_mil(cfg, None, tmp_path, progress=False, on_step=stop)
    assert train_topk_mil(cfg, None, tmp_path, progress=False).metrics == res.metrics
    # the other stages' pooling is not the reference's business; its own settings are
    stage = runs.StageDir(tmp_path, "topk_mil")
    assert stage.is_done(config.stage_config(replace(cfg, data=replace(cfg.data, n_segments=200)), "topk_mil", None))
    assert not stage.is_done(config.stage_config(replace(cfg, topk_mil=replace(cfg.topk_mil, lr=0.01)),
                                                 "topk_mil", None))
