"""The whole detector module (`models.gsmoe.GSMoEModel`): how crops meet the experts and the gate."""

import pytest
import torch

from gsmoe_lib.models.experts import Experts
from gsmoe_lib.models.gate import Gate
from gsmoe_lib.models.gsmoe import GSMoEModel, expert_inputs
from gsmoe_lib.models.urdmu import URDMU


def small_model(crops: str) -> GSMoEModel:
    torch.manual_seed(0)
    enc = URDMU(input_dim=6, dim=8, depth=1, heads=2, dim_head=4, mlp_dim=8, memory_slots=20, head_hidden=5)
    experts = Experts(3, enc.feature_dim, d_model=8, n_heads=2, ffn_hidden=8, mlp_hidden=4)
    gate = Gate(3, enc.feature_dim, d_model=8, n_heads=2, ffn_hidden=8, mlp_hidden=(8, 4, 4))
    return GSMoEModel(enc, experts, gate, crops=crops).eval()


def test_each_crop_goes_through_experts_and_gate():
    model = small_model("each")
    x = torch.randn(2, 3, 11, 6)  # [B, C, T, D]
    out = model(x)
    per_crop = [model(x[:, c]) for c in range(3)]  # one crop at a time
    assert torch.allclose(out.scores, torch.stack([o.scores for o in per_crop]).mean(0), atol=1e-6)
    assert torch.allclose(out.expert_scores, torch.stack([o.expert_scores for o in per_crop]).mean(0), atol=1e-6)


def test_mean_mode_runs_experts_and_gate_on_crop_averaged_features():
    model = small_model("mean")
    x = torch.randn(2, 3, 11, 6)
    out = model(x)
    enc = model.encoder(x)  # crop-averaged scores [B, T] and features [B, T, F]
    expert_logits = model.experts.logits(enc.features)
    assert torch.allclose(out.expert_scores, torch.sigmoid(expert_logits), atol=1e-6)
    # the gate reads the experts' logits (paper §3.2), not their probabilities
    assert torch.allclose(out.scores, model.gate(expert_logits, enc.features).scores, atol=1e-6)
    assert not torch.allclose(out.scores, model.gate(torch.sigmoid(expert_logits), enc.features).scores, atol=1e-6)
    assert torch.allclose(out.encoder_scores, enc.scores, atol=1e-6)
    # The experts are non-linear: averaging their inputs is not averaging their outputs.
    each = small_model("each")(x)
    assert torch.allclose(out.encoder_scores, each.encoder_scores, atol=1e-6)
    assert not torch.allclose(out.expert_scores, each.expert_scores, atol=1e-4)


def test_unknown_crop_mode_is_an_error():
    with pytest.raises(ValueError, match="unknown crop mode 'median'"):
        small_model("median")


def input_reading_model(crops: str) -> GSMoEModel:
    """Experts built for the extension ExpertsConfig.inputs="task+i3d": they read [task-aware | input] features."""
    torch.manual_seed(0)
    enc = URDMU(input_dim=6, dim=8, depth=1, heads=2, dim_head=4, mlp_dim=8, memory_slots=20, head_hidden=5)
    experts = Experts(3, enc.feature_dim + 6, d_model=8, n_heads=2, ffn_hidden=8, mlp_hidden=4, input_dim=6)
    gate = Gate(3, enc.feature_dim, d_model=8, n_heads=2, ffn_hidden=8, mlp_hidden=(8, 4, 4))
    return GSMoEModel(enc, experts, gate, crops=crops).eval()


@pytest.mark.parametrize("crops", ["each", "mean"])
def test_experts_reading_the_input_get_it_beside_the_task_aware_features(crops):
    model = input_reading_model(crops)
    x = torch.randn(2, 3, 11, 6)  # [B, C, T, D]
    out = model(x)
    if crops == "mean":
        rows = x.mean(1)  # [B, T, D]
        feats = model.encoder(x, training_extras=False).features
    else:
        rows = x.reshape(6, 11, 6)  # [B·C, T, D]
        feats = model.encoder(rows, training_extras=False).features
    logits = model.experts.logits(torch.cat([feats, rows], -1))  # [rows, T, E]
    expected = torch.sigmoid(logits)
    if crops == "each":
        expected = expected.reshape(2, 3, 11, 3).mean(1)
    assert torch.allclose(out.expert_scores, expected, atol=1e-6)
    # the input matters: another input beside the same task-aware features changes the experts' scores
    assert not torch.allclose(model.experts.logits(torch.cat([feats, rows + 1], -1)), logits)


def test_experts_reading_the_input_keep_it_in_their_checkpoint_and_the_paper_args_stay_as_they_were():
    experts = input_reading_model("each").experts
    again = Experts.from_checkpoint(experts.checkpoint_payload())
    assert again.input_dim == 6 and again.feature_dim == experts.feature_dim
    assert "input_dim" not in Experts(2, 8, d_model=8, n_heads=2).model_args  # the paper's experts
    with pytest.raises(ValueError, match="input_dim"):
        Experts(2, 8, d_model=8, n_heads=2, input_dim=8)  # no room for task-aware features


def test_experts_reading_the_input_say_when_the_input_width_is_wrong():
    experts = input_reading_model("each").experts
    feats = torch.randn(1, 5, experts.feature_dim - 6)
    assert expert_inputs(experts, feats, torch.randn(1, 5, 6)).shape == (1, 5, experts.feature_dim)
    with pytest.raises(ValueError, match="width 6 .* width 4"):
        expert_inputs(experts, feats, torch.randn(1, 5, 4))
