"""The sweep's summary (sweep_report): one row per setting, mean ± std over its finished seeds, and sweep.md."""

from __future__ import annotations

import math

import pytest

from gsmoe_lib.sweep_report import ordered_names, sweep_markdown, sweep_table


def test_sweep_table_and_markdown():
    records = [{"id": f"seed-{s}__x-1", "setting_id": "x-1", "setting": {"x": 1}, "seed": s, "status": "done",
                "worker": "local", "metrics": {"ablation.gsmoe.auc": 0.6 + 0.01 * s, "ablation.gsmoe.ap": 0.2}}
               for s in (0, 1)]
    records.append({"id": "seed-0__x-2", "setting_id": "x-2", "setting": {"x": 2}, "seed": 0, "status": "failed",
                    "worker": "local", "error": "boom", "metrics": {}})
    table = sweep_table(records, ["x"], ["ablation"])
    assert list(table["done"]) == [2, 0]
    assert table.loc[0, "ablation.gsmoe.auc_mean"] == pytest.approx(0.605)
    assert math.isnan(table.loc[1, "ablation.gsmoe.auc_mean"])
    md = sweep_markdown(table, records, "Sweep: tiny profile, seeds 0, 1", ["x"], ["ablation"])
    assert "| x-1 | 1 | 2 | 60.50 ± 0.71 | 20.00 ± 0.00 |" in md
    assert "| x-2 | 2 | 0 | – | – |" in md  # no finished seed: no number
    assert "- `seed-0__x-2` on local: boom" in md


def test_names_read_in_the_papers_order():
    names = ["ablation.tgs.auc", "ablation.baseline.ap", "ablation.baseline.auc", "encoder.auc", "ablation.gsmoe.auc"]
    assert ordered_names(names, ["ablation", "encoder"]) == [
        "ablation.baseline.auc", "ablation.baseline.ap", "ablation.tgs.auc", "ablation.gsmoe.auc", "encoder.auc"]
