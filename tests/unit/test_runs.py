import json

import numpy as np
import pytest
import torch

from gsmoe_lib import runs


def test_write_json_atomic_and_no_temp_left(tmp_path):
    p = runs.write_json(tmp_path / "a" / "m.json", {"auc": torch.tensor(0.5).item(), "path": tmp_path})
    assert json.loads(p.read_text())["auc"] == 0.5
    assert [f.name for f in p.parent.iterdir()] == ["m.json"]


def test_failed_write_keeps_previous_file(tmp_path):
    target = tmp_path / "m.json"
    runs.write_json(target, {"v": 1})
    with pytest.raises(RuntimeError):
        with runs.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert json.loads(target.read_text()) == {"v": 1}
    assert sorted(f.name for f in tmp_path.iterdir()) == ["m.json"]


def test_checkpoint_roundtrip_and_kind_check(tmp_path):
    sd = {"w": torch.arange(3.0)}
    path = runs.save_checkpoint(tmp_path / "c.pt", {"state_dict": sd}, kind="urdmu")
    back = runs.load_checkpoint(path, kind="urdmu")
    assert torch.equal(back["state_dict"]["w"], sd["w"])
    with pytest.raises(ValueError, match="expected 'gate'"):
        runs.load_checkpoint(path, kind="gate")


def test_truncated_and_foreign_checkpoints_are_clear_errors(tmp_path):
    path = runs.save_checkpoint(tmp_path / "c.pt", {"state_dict": {"w": torch.ones(1000)}}, kind="urdmu")
    data = path.read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="trunc.pt"):
        runs.load_checkpoint(tmp_path / "trunc.pt", kind="urdmu")
    torch.save({"embedding.conv_1.0.weight": torch.ones(1)}, tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="not a gsmoe checkpoint"):
        runs.load_checkpoint(tmp_path / "foreign.pt", kind="urdmu")


def test_stage_done_depends_on_config(tmp_path):
    stage = runs.StageDir(tmp_path, "encoder")
    cfg = {"lr": 1e-4, "seed": 0}
    stage.start(cfg, seed=0)
    assert not stage.is_done(cfg)
    runs.save_checkpoint(stage.checkpoint, {}, kind="urdmu")
    stage.finish(cfg, {"auc": 0.9})
    assert stage.is_done(cfg)
    assert not stage.is_done({"lr": 1e-3, "seed": 0})
    env = json.loads((stage.path / "env.json").read_text())
    assert env["seed"] == 0 and env["torch"] == torch.__version__


def test_seed_everything_repeats():
    runs.seed_everything(3)
    a = torch.rand(4)
    runs.seed_everything(3)
    assert torch.equal(a, torch.rand(4))


def test_run_folder_knows_its_seeds_stages_and_upstream_chain(tmp_path):
    run = runs.Run(tmp_path / "run")
    seed = run.seed(1)
    assert seed.path == tmp_path / "run" / "seed-1"
    with pytest.raises(FileNotFoundError, match="seed-0"):
        run.training(0)  # nothing trained yet

    def finish(name: str, config: dict) -> runs.StageDir:
        stage = seed.stage(name)
        stage.start(config, seed=1)
        stage.write_results({"w": torch.ones(2)}, name, [{"iteration": 10, "total": 0.5}],
                            {"scores": {"v0": np.arange(3.0)}})
        stage.finish(config, {"auc": 0.5})
        return stage

    tgs = finish("tgs", {"stage": "tgs", "upstream": None})
    finish("experts", {"stage": "experts", "upstream": runs.config_hash({"stage": "other"})})
    experts_k2 = finish("experts-k2", {"stage": "experts-k2", "upstream": tgs.finished_hash()})
    finish("gate-k2", {"stage": "gate-k2", "upstream": experts_k2.finished_hash()})
    assert run.seeds() == [1] and run.training(1).path == seed.path and seed.training().path == seed.path
    # the gate's experts are found by hash, not by folder name; a stage of another upstream is refused
    assert seed.upstream("gate-k2", "experts").stage == "experts-k2"
    assert seed.upstream("experts-k2", "tgs").stage == "tgs"
    with pytest.raises(ValueError, match="no finished tgs stage"):
        seed.upstream("experts", "tgs")
    with pytest.raises(FileNotFoundError, match="gate"):
        seed.upstream("gate", "experts")
    assert seed.history("gate-k2") == [{"iteration": 10, "total": 0.5}]
    assert seed.metrics("tgs") == {"auc": 0.5} and seed.config("tgs")["stage"] == "tgs"
    np.testing.assert_array_equal(seed.scores("tgs")["v0"], np.arange(3.0))
    assert seed.stage("tgs").load_checkpoint("tgs")["w"].tolist() == [1.0, 1.0]
