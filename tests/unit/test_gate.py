import pytest
import torch

from gsmoe_lib.models.gate import Gate, GateOutput

E, FDIM = 4, 12
SMALL = dict(d_model=16, n_heads=4, ffn_hidden=24, mlp_hidden=(16, 8, 4), dropout=0.0)


def small_gate(seed: int = 0, **overrides) -> Gate:
    torch.manual_seed(seed)
    return Gate(E, FDIM, **{**SMALL, **overrides})


def inputs(b: int = 2, t: int = 7, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, t, E, generator=g), torch.randn(b, t, FDIM, generator=g)


@pytest.mark.parametrize("use_features", [True, False])
@pytest.mark.parametrize("fusion", ["concat", "sum"])
def test_output_shapes_range_no_nan(use_features, fusion):
    gate = small_gate(use_features=use_features, fusion=fusion)
    scores, features = inputs()
    out = gate(scores, features * 10 if use_features else None)
    assert isinstance(out, GateOutput)
    assert out.scores.shape == out.logits.shape == (2, 7)
    assert out.embedding.shape == (2, 7, 16)
    assert torch.isfinite(out.embedding).all() and torch.isfinite(out.scores).all()
    assert (out.scores >= 0).all() and (out.scores <= 1).all()
    torch.testing.assert_close(out.scores, torch.sigmoid(out.logits))


@pytest.mark.parametrize("use_features", [True, False])
def test_every_parameter_gets_a_gradient(use_features):
    gate = small_gate(use_features=use_features)
    scores, features = inputs()
    gate(scores, features).scores.sum().backward()
    for name, p in gate.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_features_matter_only_when_used():
    scores, features = inputs()
    with_f = small_gate().eval()
    assert (with_f(scores, features).scores - with_f(scores, features + 1).scores).abs().max() > 1e-4
    without = small_gate(use_features=False).eval()
    torch.testing.assert_close(without(scores, features).scores, without(scores, None).scores)
    assert not hasattr(without, "feature_proj")


def test_expert_mask_acts_only_through_the_masked_expert():
    gate = small_gate().eval()
    scores, features = inputs()
    keep_all = torch.ones(E)
    drop_2 = torch.tensor([1.0, 1.0, 0.0, 1.0])
    # masking = zeroing that expert's scores before the projection
    zeroed = scores.clone()
    zeroed[..., 2] = 0.0
    torch.testing.assert_close(gate(scores, features, expert_mask=drop_2).scores, gate(zeroed, features).scores)
    # masking an expert whose scores are already zero changes nothing
    torch.testing.assert_close(gate(zeroed, features, expert_mask=drop_2).scores, gate(zeroed, features).scores)
    # ... while masking an active expert does change the output, and an all-ones mask does not
    assert (gate(scores, features, expert_mask=drop_2).scores - gate(scores, features).scores).abs().max() > 1e-4
    torch.testing.assert_close(gate(scores, features, expert_mask=keep_all).scores, gate(scores, features).scores)
    # bool and per-video [B, E] masks mean the same
    as_bool = gate(scores, features, expert_mask=drop_2.bool()).scores
    per_video = gate(scores, features, expert_mask=drop_2.expand(2, E)).scores
    torch.testing.assert_close(as_bool, gate(zeroed, features).scores)
    torch.testing.assert_close(per_video, gate(zeroed, features).scores)
    with pytest.raises(ValueError, match="expert_mask"):
        gate(scores, features, expert_mask=torch.ones(E + 1))


@pytest.mark.parametrize("use_features", [True, False])
def test_padding_does_not_change_unpadded_snippets(use_features):
    gate = small_gate(use_features=use_features).eval()
    scores, features = inputs(b=1, t=5)
    junk_s, junk_f = inputs(b=1, t=3, seed=9)
    padded_s, padded_f = torch.cat([scores, junk_s], 1), torch.cat([features, junk_f * 50], 1)
    pad = torch.tensor([[False] * 5 + [True] * 3])
    out = gate(padded_s, padded_f, key_padding_mask=pad)
    alone = gate(scores, features)
    torch.testing.assert_close(out.scores[:, :5], alone.scores, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out.embedding[:, :5], alone.embedding, atol=1e-5, rtol=1e-5)
    # without the mask the padding leaks in: the test can fail
    assert (gate(padded_s, padded_f).scores[:, :5] - alone.scores).abs().max() > 1e-5


def test_bad_inputs_are_clear_errors():
    gate = small_gate()
    scores, features = inputs()
    with pytest.raises(ValueError, match="needs features"):
        gate(scores, None)
    with pytest.raises(ValueError, match="E=4"):
        gate(scores[..., :3], features)
    with pytest.raises(ValueError, match="key_padding_mask"):
        gate(scores, features, key_padding_mask=torch.zeros(2, 7))
    with pytest.raises(ValueError, match="feature_dim"):
        Gate(E, None)


def test_deterministic_under_seed():
    scores, features = inputs()
    a, b = small_gate(seed=3).eval(), small_gate(seed=3).eval()
    assert torch.equal(a(scores, features).scores, b(scores, features).scores)
    assert not torch.equal(small_gate(seed=4).eval()(scores, features).scores, a(scores, features).scores)


def test_parameter_counts_near_paper():
    from gsmoe_lib.models.experts import Experts

    def count(m: torch.nn.Module) -> int:
        return sum(p.numel() for p in m.parameters())

    gate = count(Gate(13, 1024))
    assert gate == 2_875_137  # the arithmetic in the module docstring
    assert count(Gate(13, 1024, use_features=False)) == 1_690_625
    total = gate + count(Experts(13, 1024))
    assert 9.0e6 <= total <= 10.0e6
    urdmu = 6_492_929  # REFERENCE: released UR-DMU checkpoints
    assert 15.5e6 <= total + urdmu <= 16.5e6  # paper: ~16 M


def test_probs_input_is_the_sigmoid_of_the_logits():
    torch.manual_seed(3)
    logits, features = torch.randn(2, 6, E) * 3, torch.rand(2, 6, FDIM)
    as_probs = small_gate(expert_input="probs").eval()
    as_logits = small_gate(expert_input="logits").eval()
    torch.testing.assert_close(as_probs(logits, features).scores, as_logits(torch.sigmoid(logits), features).scores)
    with pytest.raises(ValueError, match="expert_input"):
        small_gate(expert_input="scores")


def test_mask_fill_mean_replaces_a_masked_expert_by_the_mean_of_the_others():
    from gsmoe_lib.models.gate import mask_experts

    x = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(2, 3, 4)  # [B, T, E]
    keep = torch.tensor([1.0, 0.0, 1.0, 1.0])
    zero, mean = mask_experts(x, keep, "zero"), mask_experts(x, keep, "mean")
    assert torch.all(zero[..., 1] == 0) and torch.equal(zero[..., [0, 2, 3]], x[..., [0, 2, 3]])
    torch.testing.assert_close(mean[..., 1], x[..., [0, 2, 3]].mean(-1))
    assert torch.equal(mean[..., [0, 2, 3]], x[..., [0, 2, 3]])
    gate = small_gate().eval()
    logits, features = torch.randn(2, 3, E), torch.rand(2, 3, FDIM)
    m = torch.ones(E)
    m[0] = 0
    want = gate(mask_experts(logits, m, "mean"), features).scores
    torch.testing.assert_close(gate(logits, features, expert_mask=m, mask_fill="mean").scores, want)
    with pytest.raises(ValueError, match="mask_fill"):
        gate(logits, features, expert_mask=m, mask_fill="one")
