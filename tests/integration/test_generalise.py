"""`gsmoe bench generalise` (gsmoe_lib/bench/generalise.py) on the tiny profile: one world, one seed.

The table has one row per stage (the references first, then every pipeline stage) with the metrics' columns
and the world's untrained L2-norm AUC; the JSON holds one record per stage with date, machine, commit and
command; a second call finds the finished cell instead of training it again.
"""

from __future__ import annotations

import json

import pytest

from gsmoe_lib.bench import generalise as G
from gsmoe_lib.cli import main
from gsmoe_lib.training.stages import REFERENCE_STAGES, STAGES


SHORT = {stage: {"iterations": 6, "checkpoint_every": 3} for stage in ("encoder", "tgs", "experts", "gate")} | {
    "sultani": {"iterations": 6, "checkpoint_every": 3}, "topk_mil": {"iterations": 6, "checkpoint_every": 3}}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    root = tmp_path_factory.mktemp("generalise")
    # A few steps per stage: these tests check the benchmark's bookkeeping, not what the stages learn
    # (tests/integration/test_learning.py).
    (root / "short.json").write_text(json.dumps(SHORT))
    argv = ["bench", "generalise", "--profile", "tiny", "--seeds", "1", "--worlds", "drift",
            "--work", str(root / "work"), "--out", str(root / "out"), "--quiet", "--config", str(root / "short.json")]
    assert main(argv) == 0
    return root, argv


@pytest.mark.slow
def test_table_rows_columns_and_records(finished):
    root, _ = finished
    result = json.loads((root / "out" / "generalise.json").read_text())
    references = [s for s in REFERENCE_STAGES if s not in STAGES]
    expected_stages = [*references, *STAGES]
    assert result["parameters"]["stages"] == expected_stages and result["failures"] == []

    # one row per stage of the one world, the references first
    table = result["table"]
    assert [r["world"] for r in table] == ["drift"] * len(expected_stages)
    assert [r["stage"] for r in table] == [G._stage_label(s) for s in expected_stages]
    # (the JSON sorts its keys; generalise.md keeps the column order, checked below)
    assert set(table[0]) == {"world", "stage", "seeds", "AUC", "AUC_A", "AP", "L2-norm AUC (untrained)",
                             "own-expert advantage", "status"}
    l2 = result["worlds"]["drift"]["l2_norm"]["auc"]
    assert 0.0 <= l2 <= 1.0 and all(r["L2-norm AUC (untrained)"] == f"{100 * l2:.2f}" for r in table)
    experts_row = table[expected_stages.index("experts")]
    assert experts_row["own-expert advantage"] != "–"  # the drift world's experts are class experts

    # one flat record per stage and seed, each stamped
    records = result["records"]
    assert sorted(r["stage"] for r in records) == sorted(expected_stages)
    for r in records:
        assert r["world"] == "drift" and r["generator"] == "drift" and r["seed"] == 0
        assert r["date"] and r["machine"] and r["commit"]
        assert r["command"].startswith("gsmoe bench generalise --worlds drift --seeds 1 --profile tiny")
        assert 0.0 <= r["auc"] <= 100.0 and r["l2_norm_auc"] == pytest.approx(100 * l2)  # percent, as the metrics

    assert result["parameters"]["overrides"] == SHORT and r["command"].endswith(f"--config {root / 'short.json'}")
    md = (root / "out" / "generalise.md").read_text()
    assert "Config overrides on top of the profile:" in md  # a cell trained with other settings says so
    assert "| world | stage | seeds | AUC | AUC_A | AP | L2-norm AUC (untrained) |" in md
    assert "used only to report, never to choose a default" in md
    for s in expected_stages:
        assert f"| drift | {G._stage_label(s)} | 1 |" in md


@pytest.mark.slow
def test_a_second_call_loads_the_finished_cell(finished, capsys):
    root, argv = finished
    cell = next((root / "work" / "cells" / "drift").rglob("seed-0.json"))
    mtime = cell.stat().st_mtime_ns
    first = json.loads((root / "out" / "generalise.json").read_text())["records"]
    assert main(argv) == 0
    assert cell.stat().st_mtime_ns == mtime  # not trained again
    again = json.loads((root / "out" / "generalise.json").read_text())["records"]
    assert [r["date"] for r in again] == [r["date"] for r in first]  # the records keep their training call's stamp


def test_unknown_world_is_one_line(tmp_path, capsys):
    assert main(["bench", "generalise", "--worlds", "mars", "--out", str(tmp_path)]) == 2
    assert "unknown world(s) mars" in capsys.readouterr().err


def test_the_generator_variants_are_worlds_with_their_own_generator_changes(tmp_path):
    from gsmoe_lib.bench.robustness import VARIANTS
    from gsmoe_lib.data.synthetic import synth_config

    variants = [v for v in VARIANTS.values() if not v.default]
    assert [w.name for w in G._worlds_from("variants")] == [v.name for v in variants]
    assert [w.name for w in G._worlds_from("drift,variants,drift")] == ["drift", *(v.name for v in variants)]
    assert [w.name for w in G._worlds_from("all")] == list(G.WORLDS)
    world = G.WORLDS["ucf-half-saliency"]
    assert world.data_seed == VARIANTS["ucf-half-saliency"].data_seed and world.world == "default"
    root = G.world_data(world, tmp_path, "tiny")  # written with the variant's SynthConfig change
    meta = json.loads((root / "gsmoe_dataset.json").read_text())
    base = synth_config("tiny", "ucf-crime").saliency_scale
    assert meta["config"]["saliency_scale"] == pytest.approx(0.5 * base) and meta["seed"] == world.data_seed
    assert G.WORLDS["drift"].synth_overrides("tiny") == {}  # a world that is not a variant changes nothing


def test_unknown_world_names_the_groups(tmp_path, capsys):
    assert main(["bench", "generalise", "--worlds", "variants,venus", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown world(s) venus" in err and "variants" in err
