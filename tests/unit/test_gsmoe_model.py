"""The whole detector module (`models.gsmoe.GSMoEModel`): how crops meet the experts and the gate."""

import pytest
import torch

from gsmoe_lib.models.experts import Experts
from gsmoe_lib.models.gate import Gate
from gsmoe_lib.models.gsmoe import GSMoEModel
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
