"""Stage training on the tiny synthetic profile: it runs, writes its records, skips, resumes exactly."""

import json
from dataclasses import replace

import pytest
import torch

from gsmoe_lib import runs
from gsmoe_lib.data.synthetic import synthesize
from gsmoe_lib.training import config, pipeline, stages
from gsmoe_lib.training.data import load_data

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_cfg_data(tmp_path_factory):
    """(config, loaded Data) of its own tiny dataset at D=128 (faster stages than conftest's `tiny_data`, D=1024)."""
    root = synthesize(tmp_path_factory.mktemp("data") / "tiny", profile="tiny", seed=0, feature_dim=128)
    cfg = config.config_for("tiny", str(root))
    return cfg, load_data(cfg.data, progress=False)


def _short(cfg, iterations=6, every=2):
    return replace(cfg, encoder=replace(cfg.encoder, iterations=iterations, checkpoint_every=every))


def test_encoder_stage_writes_records_and_metrics(tiny_cfg_data, tmp_path):
    cfg, data = tiny_cfg_data
    res = stages.train_encoder(_short(cfg), data, tmp_path, progress=False)
    stage = tmp_path / "encoder"
    for name in ("config.json", "env.json", "checkpoint.pt", "metrics.json", "history.json", "test_scores.npz", "DONE"):
        assert (stage / name).is_file(), name
    env = json.loads((stage / "env.json").read_text())
    assert env["seed"] == cfg.seed and env["torch"] == torch.__version__
    for key in ("auc", "auc_abnormal", "ap", "ap_abnormal"):
        assert 0.0 <= res.metrics[key] <= 1.0
    scores = runs.load_scores(stage / "test_scores.npz")
    assert list(scores) == [v.name for v in data.test.videos]
    assert not (stage / "checkpoint.partial.pt").exists()


def test_finished_stage_is_loaded_not_retrained(tiny_cfg_data, tmp_path):
    cfg, data = tiny_cfg_data
    first = stages.train_encoder(_short(cfg), data, tmp_path, progress=False)
    calls = []
    again = stages.train_encoder(_short(cfg), data, tmp_path, progress=False, on_step=calls.append)
    assert again.skipped and calls == []
    assert again.metrics["auc"] == first.metrics["auc"]
    for k, v in first.model.state_dict().items():
        assert torch.equal(v.cpu(), again.model.state_dict()[k].cpu())
    # Another config: refused, the finished stage untouched (runs.StageDir) ...
    with pytest.raises(runs.StageConflict, match="settings.iterations: 6 -> 4"):
        stages.train_encoder(_short(cfg, iterations=4), data, tmp_path, progress=False, on_step=calls.append)
    assert calls == [] and stages.train_encoder(_short(cfg), data, tmp_path, progress=False).skipped
    # ... unless replaced on purpose: the old stage is moved aside whole, the new one trained.
    with runs.replace_finished_stages():
        changed = stages.train_encoder(_short(cfg, iterations=4), data, tmp_path, progress=False, on_step=calls.append)
    assert not changed.skipped and len(calls) == 4
    assert len(list((tmp_path / runs.REPLACED_DIR).glob("encoder-*/DONE"))) == 1


def test_same_seed_same_numbers(tiny_cfg_data, tmp_path):
    cfg, data = tiny_cfg_data
    a = stages.train_encoder(_short(cfg), data, tmp_path / "a", progress=False)
    b = stages.train_encoder(_short(cfg), data, tmp_path / "b", progress=False)
    assert a.metrics["auc"] == b.metrics["auc"]
    assert all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()))


def test_interrupted_stage_resumes_to_the_same_result(tiny_cfg_data, tmp_path):
    cfg, data = tiny_cfg_data
    cfg = _short(cfg, iterations=6, every=2)
    reference = stages.train_encoder(cfg, data, tmp_path / "ref", progress=False)

    def interrupt(i):
        if i == 2:  # after the 3rd step: the partial checkpoint is written by the exception handler
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        stages.train_encoder(cfg, data, tmp_path / "run", progress=False, on_step=interrupt)
    partial = runs.load_checkpoint(tmp_path / "run" / "encoder" / "checkpoint.partial.pt", "partial-encoder")
    assert partial["iteration"] == 3
    steps = []
    resumed = stages.train_encoder(cfg, data, tmp_path / "run", progress=False, on_step=steps.append)
    assert steps == [3, 4, 5]
    for k, v in reference.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[k], v, rtol=0, atol=0)
    assert resumed.metrics["auc"] == reference.metrics["auc"]


def test_truncated_checkpoint_is_a_clear_error(tiny_cfg_data, tmp_path):
    cfg, data = tiny_cfg_data
    stages.train_encoder(_short(cfg), data, tmp_path, progress=False)
    ckpt = tmp_path / "encoder" / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    with pytest.raises(ValueError, match="checkpoint.pt"):
        stages.train_encoder(_short(cfg), data, tmp_path, progress=False)


def test_full_pipeline_and_variants_on_tiny(tiny_cfg_data, tmp_path):
    cfg, data = tiny_cfg_data
    results = pipeline.run_pipeline(cfg, tmp_path, progress=False, data=data)
    assert list(results) == list(stages.STAGES)
    assert results["experts"].metrics["expert_names"] == list(data.train.classes)
    gate_dir = tmp_path / "gate"
    experts = runs.load_scores(gate_dir / "test_expert_scores.npz")
    name = data.test.videos[0].name
    assert experts[name].shape == (data.test.n_snippets(0), len(data.train.classes))
    for res in results.values():
        assert 0.0 <= res.metrics["auc"] <= 1.0
    variant = pipeline.run_variant(cfg, tmp_path, "k2", experts={"kind": "cluster", "n_clusters": 2},
                                gate={"use_features": False}, data=data, progress=False)
    assert variant["experts"].metrics["expert_names"] == ["cluster 0", "cluster 1"]
    assert (tmp_path / "experts-k2" / "DONE").is_file() and (tmp_path / "gate-k2" / "DONE").is_file()
    assert not variant["gate"].model.gate.use_features


def test_unknown_config_key_is_an_error():
    with pytest.raises(ValueError, match="unknown config.encoder key 'iters'"):
        config.make_config("tiny", {"encoder": {"iters": 3}})
