"""Every stage learns something: on the tiny profile with a fixed seed, each stage's test scores vary and rank the
anomalous frames above chance. A stage that collapses to a constant (the earlier XD quick failure: no TGS kernel,
every target 0, the stage learns 0) or learns the labels upside down fails here, not only in a benchmark."""

from __future__ import annotations

import json

import pytest

from gsmoe_lib.metrics import COLLAPSE_STD

STAGES = ("encoder", "tgs", "experts", "gate")
AUC_FLOOR = 0.6  # frame AUC; chance is 0.5


@pytest.mark.slow
@pytest.mark.parametrize("stage", STAGES)
def test_stage_is_not_collapsed_and_beats_chance(tiny_run, stage):
    metrics = json.loads((tiny_run / "seed-0" / stage / "metrics.json").read_text())
    assert metrics["score_std"] > COLLAPSE_STD and not metrics["collapsed"], metrics["score_std"]
    assert metrics["auc"] > AUC_FLOOR, f"{stage}: AUC {metrics['auc']:.3f} <= {AUC_FLOOR}"
    if stage != "encoder":  # every abnormal training sample has a TGS kernel to learn from
        assert metrics["pseudo_label_coverage"] > 0.5
