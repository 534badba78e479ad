"""A finished stage is never overwritten (runs.StageDir), and equal runs hash equal (config.data_identity)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gsmoe_lib import runs
from gsmoe_lib.training import config


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _finished(tmp_path: Path, config: dict) -> runs.StageDir:
    stage = runs.StageDir(tmp_path, "encoder")
    stage.start(config, seed=0)
    runs.save_checkpoint(stage.checkpoint, {"w": 1}, kind="urdmu")
    stage.finish(config, {"auc": 0.9})
    return stage


def test_a_finished_stage_asked_for_another_config_is_refused_untouched(tmp_path):
    old = {"settings": {"lr": 1e-4, "iterations": 12}, "data": {"dataset": "ucf-crime"}, "seed": 0}
    stage = _finished(tmp_path, old)
    before = _snapshot(stage.path)
    new = {"settings": {"lr": 3e-4, "iterations": 12}, "data": {"dataset": "ucf-crime"}, "seed": 0}
    with pytest.raises(runs.StageConflict) as err:
        stage.start(new, seed=0)
    message = str(err.value)
    assert "settings.lr: 0.0001 -> 0.0003" in message and "iterations" not in message  # only what differs
    assert str(stage.path) in message and "--replace" in message and "another run folder" in message
    assert _snapshot(stage.path) == before  # not one byte changed, DONE included
    assert stage.is_done(old)


def test_replacing_on_purpose_moves_the_finished_stage_aside_whole(tmp_path):
    old, new = {"lr": 1e-4}, {"lr": 3e-4}
    stage = _finished(tmp_path, old)
    before = _snapshot(stage.path)
    with runs.replace_finished_stages():
        stage.start(new, seed=0)
    moved = list((tmp_path / runs.REPLACED_DIR).iterdir())
    assert len(moved) == 1 and moved[0].name.startswith("encoder-")
    assert _snapshot(moved[0]) == before  # the old result, complete, in one place
    assert not stage.done_path.exists() and json.loads((stage.path / "config.json").read_text()) == new
    with pytest.raises(runs.StageConflict):  # the context is over: refusing again
        _finished(tmp_path, new).start(old, seed=0)


def test_an_unfinished_or_same_config_stage_starts_without_complaint(tmp_path):
    stage = runs.StageDir(tmp_path, "tgs")
    stage.start({"lr": 1}, seed=0)  # never finished: no result to lose
    stage.start({"lr": 2}, seed=0)
    assert json.loads((stage.path / "config.json").read_text()) == {"lr": 2}
    done = _finished(tmp_path, {"lr": 1})
    done.checkpoint.unlink()  # finished, same hash, checkpoint lost: retrained, DONE removed meanwhile
    done.start({"lr": 1}, seed=0)
    assert not done.done_path.exists()


def test_config_differences_names_added_and_removed_keys():
    diff = runs.config_differences({"a": {"b": 1, "c": 2}}, {"a": {"b": 1, "d": 3}})
    assert diff == ["a.c: 2 -> (absent)", "a.d: (absent) -> 3"]


def test_data_identity_is_normalised(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "train.list").write_text("x\n")
    monkeypatch.chdir(tmp_path)
    as_notebook = config.DataConfig(data_root="data", dataset=None, train_list="lists/train.list")
    as_reproduce = config.DataConfig(data_root=str(tmp_path / "data"), dataset="ucf-crime",
                                    train_list=str(tmp_path / "lists" / "train.list"), test_list="")
    a, b = config.data_identity(as_notebook), config.data_identity(as_reproduce)
    assert a == b and a["dataset"] == "ucf-crime" and len(a["content"]) == 16
    assert not any(str(tmp_path) in str(v) for v in a.values())  # by content: no path in the identity
    other = config.data_identity(config.DataConfig(data_root="data", dataset="xd-violence"))
    assert other["dataset"] == "xd-violence" and other != a
    (tmp_path / "lists" / "train.list").write_text("y\n")  # another list: another dataset
    assert config.data_identity(as_notebook)["content"] != a["content"]


def test_config_for_passes_the_list_files_and_defaults_to_the_project_data():
    from gsmoe_lib.paths import PROJECT_ROOT

    cfg = config.config_for("tiny", "", "", 0, "cpu", train_list="/l/t.list", test_list="", annotations="/l/a.txt")
    assert (cfg.data.train_list, cfg.data.test_list, cfg.data.annotations) == ("/l/t.list", None, "/l/a.txt")
    assert Path(cfg.data.data_root) == PROJECT_ROOT / "data" / "synthetic-tiny"


def test_the_default_data_of_xd_violence_is_the_xd_folder_everywhere(monkeypatch):
    """One resolver: `gsmoe train --dataset xd-violence` without --data-root reads what `gsmoe reproduce` builds."""
    from gsmoe_lib import reproduce
    from gsmoe_lib.paths import PROJECT_ROOT
    from gsmoe_lib.training import command

    xd = PROJECT_ROOT / "data" / "synthetic-quick-xd"
    assert Path(config.default_data_root("quick", "xd-violence")) == xd
    assert Path(config.default_data_root("paper", "ucf-crime")) == PROJECT_ROOT / "data" / "synthetic-quick"
    assert Path(config.config_for("tiny", dataset="xd-violence").data.data_root) == PROJECT_ROOT / "data" / "synthetic-tiny-xd"
    with pytest.raises(ValueError, match="dataset"):
        config.default_data_root("quick", "shanghaitech")

    built = []
    monkeypatch.setattr("gsmoe_lib.data.synthetic.synthesize", lambda root, **kw: built.append((root, kw)))
    assert reproduce.default_data("quick", "xd-violence") == xd and built[0][1]["dataset"] == "xd-violence"

    asked = []  # the CLI: the config run_pipeline receives
    monkeypatch.setattr(command, "run_pipeline", lambda cfg, run, stages: asked.append(cfg) or {})
    import argparse

    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    monkeypatch.setattr(command, "_data_is_built", lambda root: False)  # not built: the error names the XD data
    with pytest.raises(FileNotFoundError, match=f"{xd} --profile quick --dataset xd-violence`"):
        command.run(parser.parse_args(["--run", "r", "--dataset", "xd-violence"]))
    monkeypatch.setattr(command, "_data_is_built", lambda root: True)
    assert command.run(parser.parse_args(["--run", "r", "--dataset", "xd-violence"])) == 0
    assert Path(asked[0].data.data_root) == xd and asked[0].data.dataset == "xd-violence"
