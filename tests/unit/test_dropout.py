"""The CPU dropout of `models.dropout`: its distribution, scaling, gradient and reproducibility."""

import pytest
import torch
import torch.nn.functional as F

from gsmoe_lib.models.blocks import multi_head_attention
from gsmoe_lib.models.dropout import Dropout, dropout, keep_mask


@pytest.mark.parametrize("p", [0.5, 0.1, 0.25])
def test_keep_fraction_and_scale(p):
    torch.manual_seed(0)
    x = torch.ones(400_000)
    y = dropout(x, p)
    kept = y != 0
    # 400k draws: the kept fraction's standard deviation is below 0.001.
    assert abs(kept.float().mean().item() - (1 - p)) < 0.004
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / (1 - p)))


def test_mask_bits_are_independent_of_position():
    # Four 16-bit draws come from one 64-bit word: neighbours must not be correlated.
    torch.manual_seed(1)
    m = keep_mask((200_000,), 0.5).float()
    corr = torch.corrcoef(torch.stack([m[:-1], m[1:]]))[0, 1].item()
    assert abs(corr) < 0.01


def test_gradient_is_the_scaled_mask():
    torch.manual_seed(2)
    x = torch.randn(64, 32, requires_grad=True)
    y = dropout(x, 0.5)
    y.sum().backward()
    assert torch.equal(x.grad, (y.detach() != 0).float() * 2.0)


def test_same_seed_same_mask_and_eval_is_identity():
    layer = Dropout(0.5)
    x = torch.randn(10, 100)
    torch.manual_seed(3)
    a = layer(x)
    torch.manual_seed(3)
    b = layer(x)
    assert torch.equal(a, b) and not torch.equal(a, x)
    assert layer.eval()(x) is x
    assert dropout(x, 0.0) is x


def test_bad_probability_is_an_error():
    with pytest.raises(ValueError, match="between 0 and 1"):
        Dropout(1.5)


def test_attention_dropout_on_cpu_matches_the_unfused_formula():
    q, k, v = (torch.randn(3, 7, 8) for _ in range(3))
    torch.manual_seed(4)
    got = multi_head_attention(q, k, v, n_heads=2, dropout_p=0.5)
    torch.manual_seed(4)
    mask = keep_mask((3, 2, 7, 7), 0.5).float() * 2.0  # the same draw the attention makes
    qh, kh, vh = (z.view(3, 7, 2, 4).transpose(1, 2) for z in (q, k, v))
    probs = torch.softmax(qh @ kh.transpose(-1, -2) / 2.0, -1)  # scale 1/sqrt(4)
    want = ((probs * mask) @ vh).transpose(1, 2).reshape(3, 7, 8)
    assert torch.allclose(got, want, atol=1e-6)
    # Without dropout it is still SDPA.
    sdpa = F.scaled_dot_product_attention(qh, kh, vh).transpose(1, 2).reshape(3, 7, 8)
    assert torch.allclose(multi_head_attention(q, k, v, 2), sdpa, atol=1e-6)
