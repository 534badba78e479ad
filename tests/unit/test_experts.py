import math

import pytest
import torch
import torch.nn.functional as F

from gsmoe_lib.models.experts import Experts, SingleExpert

SMALL = dict(feature_dim=12, d_model=16, n_heads=4, ffn_hidden=24, mlp_hidden=8, dropout=0.0)


def small_experts(n_experts: int = 3, seed: int = 0, **overrides) -> Experts:
    torch.manual_seed(seed)
    return Experts(n_experts, **{**SMALL, **overrides})


def reference_expert(m: Experts, i: int, x: torch.Tensor, pad: torch.Tensor | None = None) -> torch.Tensor:
    """Expert i written out with plain tensor math from the stacked weights (explicit softmax attention)."""

    def lin(h, name):
        return h @ getattr(m, f"{name}_weight")[i] + getattr(m, f"{name}_bias")[i]

    def ln(h, name):
        mu, var = h.mean(-1, keepdim=True), h.var(-1, unbiased=False, keepdim=True)
        return (h - mu) / torch.sqrt(var + 1e-5) * getattr(m, f"{name}_weight")[i] + getattr(m, f"{name}_bias")[i]

    b, t, _ = x.shape
    d, nh = m.d_model, m.n_heads
    h = lin(x, "input")
    q, k, v = lin(ln(h, "norm1"), "qkv").split(d, dim=-1)
    q, k, v = (z.reshape(b, t, nh, d // nh).transpose(1, 2) for z in (q, k, v))  # [B, heads, T, dh]
    logits = q @ k.transpose(-1, -2) / math.sqrt(d // nh)
    if pad is not None:
        logits = logits.masked_fill(pad[:, None, None, :], float("-inf"))
    att = (logits.softmax(-1) @ v).transpose(1, 2).reshape(b, t, d)
    h = h + lin(att, "attn_out")
    h = h + lin(F.gelu(lin(ln(h, "norm2"), "ffn1")), "ffn2")
    return torch.sigmoid(lin(F.gelu(lin(ln(h, "norm_head"), "head1")), "head2").squeeze(-1))


def test_output_shape_range_no_nan():
    m = small_experts(5)
    y = m(torch.randn(2, 7, 12) * 10)
    assert y.shape == (2, 7, 5)
    assert torch.isfinite(y).all() and (y >= 0).all() and (y <= 1).all()


def test_batched_equals_each_expert_alone_and_reference():
    m = small_experts(4).eval()
    with torch.no_grad():  # LayerNorm affines away from their (1, 0) start, so that they are compared too
        for name in ("norm1", "norm2", "norm_head"):
            getattr(m, f"{name}_weight").uniform_(0.5, 1.5)
            getattr(m, f"{name}_bias").normal_()
    x = torch.randn(3, 9, 12)
    pad = torch.zeros(3, 9, dtype=torch.bool)
    pad[1, 6:] = True
    y = m(x, pad)
    for i in range(4):
        single = m.expert(i)
        assert isinstance(single, SingleExpert)
        torch.testing.assert_close(single(x, pad), y[..., i], atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(reference_expert(m, i, x, pad), y[..., i], atol=1e-6, rtol=1e-5)
    # the experts really differ (independent initialisation)
    assert (y[..., 0] - y[..., 1]).abs().max() > 1e-3


def test_subset_of_experts():
    m = small_experts(4).eval()
    x = torch.randn(2, 5, 12)
    torch.testing.assert_close(m(x, experts=[2, 0]), m(x)[..., [2, 0]])
    with pytest.raises(IndexError):
        m(x, experts=[4])


def test_every_parameter_of_every_expert_gets_a_gradient():
    m = small_experts(3)
    m(torch.randn(2, 6, 12)).sum().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None, name
        per_expert = p.grad.flatten(1).abs().sum(1)  # [E]
        assert (per_expert > 0).all(), f"{name}: {per_expert}"


def test_masked_loss_leaves_other_experts_gradient_exactly_zero():
    m = small_experts(3)
    scores = m(torch.randn(4, 6, 12))  # [B, T, E]
    loss_be = F.binary_cross_entropy(scores, torch.ones_like(scores), reduction="none").mean(1)  # [B, E]
    membership = torch.zeros(4, 3)
    membership[:, 0] = 1.0  # every video belongs to expert 0 only
    (loss_be * membership).sum().backward()
    for name, p in m.named_parameters():
        assert p.grad[0].abs().sum() > 0, name
        assert torch.equal(p.grad[1:], torch.zeros_like(p.grad[1:])), name


def test_padding_does_not_change_unpadded_snippets():
    m = small_experts(3).eval()
    short = torch.randn(1, 5, 12)
    padded = torch.cat([short, torch.randn(1, 4, 12) * 100], dim=1)
    pad = torch.tensor([[False] * 5 + [True] * 4])
    torch.testing.assert_close(m(padded, pad)[:, :5], m(short), atol=1e-6, rtol=1e-5)
    other = torch.cat([short, torch.randn(1, 4, 12)], dim=1)
    torch.testing.assert_close(m(padded, pad)[:, :5], m(other, pad)[:, :5], atol=1e-6, rtol=1e-5)
    # without the mask the garbage does leak in: the test can fail
    assert (m(padded)[:, :5] - m(short)).abs().max() > 1e-4


def test_bad_inputs_are_clear_errors():
    m = small_experts(2)
    with pytest.raises(ValueError, match="F=12"):
        m(torch.randn(2, 5, 13))
    with pytest.raises(ValueError, match="pads every snippet"):
        m(torch.randn(2, 5, 12), torch.tensor([[False] * 5, [True] * 5]))


def test_deterministic_under_seed():
    x = torch.randn(2, 6, 12)
    a, b = small_experts(3, seed=7), small_experts(3, seed=7)
    for (na, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.equal(pa, pb), na
    assert torch.equal(a.eval()(x), b.eval()(x))
    assert not torch.equal(small_experts(3, seed=8).input_weight, a.input_weight)


def test_initialisation_like_nn_linear_per_expert():
    m = Experts(2, feature_dim=400, d_model=64, ffn_hidden=128, mlp_hidden=32)
    bound = 1 / math.sqrt(400)
    w = m.input_weight  # [E, F, d]
    assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound
    assert not torch.equal(w[0], w[1])
    assert torch.equal(m.norm1_weight, torch.ones(2, 64))


def test_parameter_count_matches_paper_scale():
    m = Experts(13, feature_dim=1024)
    per_expert = sum(p.numel() for p in m.expert(0).parameters())
    assert per_expert == 512_833  # the arithmetic in the module docstring
    assert 0.45e6 <= per_expert <= 0.55e6
    assert sum(p.numel() for p in m.parameters()) == 13 * per_expert


def test_masked_training_teaches_each_expert_its_own_class():
    # Planted data: class-0 anomalies light up feature 0, class-1 anomalies feature 1, normal videos neither.
    torch.manual_seed(0)
    n, t = 8, 6
    x = torch.randn(3 * n, t, 12) * 0.3
    x[:n, :, 0] += 3.0  # class 0
    x[n : 2 * n, :, 1] += 3.0  # class 1
    target = torch.zeros(3 * n, 2)
    target[:n, 0] = 1.0
    target[n : 2 * n, 1] = 1.0
    membership = torch.ones(3 * n, 2)  # normal videos train both experts
    membership[n : 2 * n, 0] = 0.0  # expert 0 never sees class 1
    membership[:n, 1] = 0.0  # expert 1 never sees class 0
    m = small_experts(2)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2)
    for _ in range(25):
        scores = m(x)  # [B, T, 2]
        loss_be = F.binary_cross_entropy(scores, target[:, None, :].expand_as(scores), reduction="none").mean(1)
        loss = (loss_be * membership).sum() / membership.sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        s = m.eval()(x).mean(1)  # [B, 2]
    assert s[:n, 0].min() > 0.9 and s[2 * n :, 0].max() < 0.1
    assert s[n : 2 * n, 1].min() > 0.9 and s[2 * n :, 1].max() < 0.1


def test_per_expert_inputs_equal_each_expert_on_its_own_batch():
    torch.manual_seed(0)
    model = Experts(3, 16, d_model=8, n_heads=4, ffn_hidden=16, mlp_hidden=8).eval()
    x = torch.randn(3, 2, 5, 16)  # [E, B, T, F]: expert e gets x[e]
    out = model(x)  # [B, T, E]
    assert out.shape == (2, 5, 3)
    for e in range(3):
        torch.testing.assert_close(out[..., e], model(x[e])[..., e])
