"""Videos into `gsmoe score`: the backbone and recipe a run implies, and the peaks the picture shows."""

from __future__ import annotations

import numpy as np
import pytest

from gsmoe_lib.extract.picture import peak_snippets
from gsmoe_lib.extract.scoring import defaults_for_run, run_dataset


@pytest.mark.parametrize("width, dataset, expected", [
    (1024, "ucf-crime", ("i3d-inception", "urdmu-10crop")),
    (2048, "ucf-crime", ("i3d-r50", "rtfm-10crop")),
    (1024, "xd-violence", ("i3d-inception", "xd-5crop")),
])
def test_backbone_from_width_and_recipe_from_dataset(width, dataset, expected):
    assert defaults_for_run(width, dataset) == expected


def test_overrides_win_and_a_mismatch_is_an_error():
    assert defaults_for_run(1024, "ucf-crime", recipe="deepmil-10crop") == ("i3d-inception", "deepmil-10crop")
    assert defaults_for_run(1024, "xd-violence", "i3d-inception", "centre") == ("i3d-inception", "centre")
    with pytest.raises(ValueError, match="i3d-r50 gives 2048-d features; the run was trained on 1024-d"):
        defaults_for_run(1024, "ucf-crime", backbone="i3d-r50")
    with pytest.raises(ValueError, match="no backbone gives 512-d features"):
        defaults_for_run(512, "ucf-crime")


def test_run_dataset_reads_the_tgs_stage_config(tmp_path):
    from gsmoe_lib import runs

    stage = tmp_path / "seed-0" / "tgs"
    stage.mkdir(parents=True)
    runs.write_json(stage / "config.json", {"stage": "tgs", "data": {"dataset": "xd-violence"}})
    assert run_dataset(tmp_path) == "xd-violence"
    assert run_dataset(tmp_path / "absent") == "ucf-crime"  # nothing to read: UCF-Crime, the default


def test_peaks_are_local_maxima_highest_first_and_apart():
    s = np.array([0.1, 0.9, 0.8, 0.2, 0.7, 0.1, 0.3, 0.95])
    assert peak_snippets(s, k=3) == [7, 1, 4]  # 2 (0.8) is not a peak: its neighbour 1 is higher
    assert peak_snippets(s, k=3, min_gap=4) == [7, 1]
    assert peak_snippets(np.array([0.5]), k=3) == [0]
