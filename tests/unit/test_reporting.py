"""Reporting: the one number format, the one mean ± std over seeds, and the tables beside the paper's."""

from __future__ import annotations

import math

import pytest

from gsmoe_lib.reporting import (
    PAPER_NUMBERS,
    comparison_table,
    mean_over_seeds,
    mean_std,
    paper_number,
    paper_rows,
    per_seed_table,
    percent,
    points,
)


def test_mean_std_known_values():
    ms = mean_std([0.80, 0.90, 0.85])
    assert ms["mean"] == pytest.approx(0.85)
    assert ms["std"] == pytest.approx(0.05)  # sample std (ddof 1): sqrt((0.05² + 0.05² + 0) / 2)
    assert ms["n"] == 3


def test_mean_std_one_value_has_no_spread_and_none_is_missing():
    one = mean_std([0.7, None])
    assert one["mean"] == 0.7 and one["n"] == 1
    assert math.isnan(one["std"])  # one seed says nothing about the spread
    empty = mean_std([None])
    assert empty["n"] == 0 and math.isnan(empty["mean"])


def test_mean_std_nan_is_reported_not_hidden():
    ms = mean_std([0.5, float("nan")])
    assert ms["n"] == 2 and math.isnan(ms["mean"]) and math.isnan(ms["std"])


def test_number_format():
    assert percent(0.91234) == "91.23"
    assert percent(0.91234, 0.0041) == "91.23 ± 0.41"
    assert percent(0.9, float("nan")) == "90.00"  # a NaN std (one seed) is left out
    assert percent(None) == "–" and percent(float("nan")) == "nan"
    assert points(3.2, 1.1) == "+3.20 ± 1.10"
    assert points(-0.5) == "-0.50" and points(77.42, signed=False) == "77.42"


def test_mean_over_seeds_companions():
    out = mean_over_seeds([{"auc": 0.8, "ap": 0.4}, {"auc": 0.9, "ap": 0.6}])
    assert out["auc"] == pytest.approx(0.85) and out["ap"] == pytest.approx(0.5)
    assert out["auc_std"] == pytest.approx(math.sqrt(0.005))
    assert "auc_std" not in mean_over_seeds([{"auc": 0.8}])  # one seed: no std companion
    assert "auc_abnormal" not in out  # absent from every seed: left out
    with pytest.raises(ValueError):
        mean_over_seeds([])


def test_per_seed_table_matches_mean_over_seeds():
    per_seed = [{"auc": 0.81, "auc_abnormal": 0.6, "ap": 0.5, "ap_abnormal": 0.41},
                {"auc": 0.90, "auc_abnormal": 0.7, "ap": 0.52, "ap_abnormal": 0.45},
                {"auc": 0.86, "auc_abnormal": 0.65, "ap": 0.49, "ap_abnormal": 0.47}]
    table = per_seed_table(per_seed, seeds=[3, 4, 5])
    assert list(table.index) == ["seed 3", "seed 4", "seed 5", "mean"]
    assert table.loc["seed 4", "auc"] == 90.0
    means = mean_over_seeds(per_seed)
    for m in ("auc", "auc_abnormal", "ap", "ap_abnormal"):
        assert table.loc["mean", m] == pytest.approx(round(100 * means[m], 2))


def test_comparison_table_percent_beside_paper():
    table = comparison_table(
        [("gate", "gate", {"auc": 0.9, "ap_abnormal": 0.5, "ap_abnormal_trapz": 0.49}),
         ("mine", "mine", {"auc": float("nan")}),
         ("two seeds", "gate", mean_over_seeds([{"auc": 0.8}, {"auc": 0.9}]))],
        dataset="ucf-crime",
        metrics=("auc", "ap_abnormal", "ap_abnormal_trapz"),
    )
    lines = table.strip().splitlines()
    assert lines[0] == (
        "| row | AUC ours (%) | AUC paper (%) | AP_A ours (%) | AP_A paper (%) "
        "| AP_A (trapz) ours (%) | AP_A (trapz) paper (%) |"
    )
    assert lines[2] == "| gate | 90.00 | 91.58 | 50.00 | 51.63 | 49.00 | 51.63 |"
    assert lines[3] == "| mine | nan | – | – | – | – | – |"
    assert lines[4].startswith("| two seeds | 85.00 ± 7.07 | 91.58 |")
    assert PAPER_NUMBERS[("xd-violence", "gs-moe", "ap")] == 82.89


def test_paper_number_faces_both_ap_conventions():
    assert paper_number("xd-violence", "gs-moe", "ap_trapz") == paper_number("xd-violence", "gs-moe", "ap") == 82.89
    assert paper_number("ucf-crime", "gs-moe", "ap") is None
    assert paper_rows("ucf-crime", {"GS-MoE": "gs-moe"}) == {"GS-MoE": {"auc": 91.58, "auc_abnormal": 83.86}}
