"""Bounded memory for long videos (`models.blocks.MemoryLimits`): the chunked paths give the dense path's scores.

Small limits make short videos cross every threshold: attention in query chunks, UR-DMU's banded local kernel,
crops in several passes. Each check also asserts that the chunked path was taken (else it would prove nothing).
"""

import pytest
import torch
import torch.nn.functional as F

from gsmoe_lib.models import blocks, urdmu
from gsmoe_lib.models.blocks import MemoryLimits, attention, memory_limits, multi_head_attention
from gsmoe_lib.models.experts import Experts
from gsmoe_lib.models.gate import Gate
from gsmoe_lib.models.gsmoe import GSMoEModel
from gsmoe_lib.models.urdmu import URDMU

DENSE = dict(attention_scores=2**40, pass_snippets=2**40, local_dense_max_t=2**20, expert_snippets=2**40)
# attention: chunks of a few queries (not the fused kernel); passes: 2 crops of T <= 24 per pass, 1 crop
# beyond; local kernel: banded beyond 16 snippets; experts: groups of 2 or 1 of the 3 once a call has over 20
# rows per expert (T >= 16 with "each", T > 20 with "mean")
SMALL = dict(attention_scores=4 * 2 * 24, fused_attention=False, pass_snippets=48, local_dense_max_t=16,
             expert_snippets=60)
LENGTHS = (1, 5, 16, 17, 24, 25, 70, 150)  # both sides of every threshold, and beyond UR-DMU's band of 64
CROPS = 3


def small_gsmoe(crops: str = "each") -> GSMoEModel:
    torch.manual_seed(0)
    enc = URDMU(input_dim=6, dim=8, depth=2, heads=2, dim_head=4, mlp_dim=8, memory_slots=20, head_hidden=5)
    experts = Experts(3, enc.feature_dim, d_model=8, n_heads=2, ffn_hidden=8, mlp_hidden=4)
    gate = Gate(3, enc.feature_dim, d_model=8, n_heads=2, ffn_hidden=8, mlp_hidden=(8, 4, 4))
    return GSMoEModel(enc, experts, gate, crops=crops).eval()


class Spy:
    """Counts the chunked attention calls, the banded local branches and the passes of one forward."""

    def __init__(self, monkeypatch):
        self.chunked_attention = self.banded = self.passes = self.expert_groups = 0
        block, local, rows = blocks._attention_block, urdmu.local_mix, URDMU._evaluate_rows
        logits = Experts.logits

        def spy_block(q, k, *args):
            self.chunked_attention += q.shape[-2] < k.shape[-2]
            return block(q, k, *args)

        def spy_local(t):
            self.banded += t.shape[1] > blocks.current_limits().local_dense_max_t
            return local(t)

        def spy_rows(model, r):
            self.passes += 1
            return rows(model, r)

        def spy_logits(model, features, mask=None, experts=None, in_groups=False):
            self.expert_groups += experts is not None and len(experts) < model.n_experts
            return logits(model, features, mask, experts, in_groups)

        monkeypatch.setattr(Experts, "logits", spy_logits)
        monkeypatch.setattr(blocks, "_attention_block", spy_block)
        monkeypatch.setattr(urdmu, "local_mix", spy_local)
        monkeypatch.setattr(URDMU, "_evaluate_rows", spy_rows)


@pytest.mark.parametrize("crops", ["each", "mean"])
def test_gsmoe_scores_equal_the_dense_path_across_every_threshold(crops, monkeypatch):
    model = small_gsmoe(crops)
    for T in LENGTHS:
        x = torch.randn(1, CROPS, T, 6, generator=torch.Generator().manual_seed(T))
        with torch.inference_mode():
            with memory_limits(**DENSE):
                dense = model(x)
            spy = Spy(monkeypatch)
            with memory_limits(**SMALL):
                small = model(x)
            monkeypatch.undo()
        for name, a, b in zip(dense._fields, dense, small):
            torch.testing.assert_close(b, a, rtol=0, atol=1e-5, msg=lambda m: f"T={T} {name}: {m}")
        if T > 24:  # one crop per pass, the whole of each attention call cut into query chunks
            assert spy.passes == CROPS and spy.chunked_attention > 0, (T, vars(spy))
        if T > 16:
            assert spy.banded > 0, (T, vars(spy))
        if T <= 16:
            assert spy.passes == 1, (T, vars(spy))  # all three crops in one pass
        if T > 20:
            assert spy.expert_groups > 0, (T, vars(spy))
        if T <= 5:
            assert spy.expert_groups == 0, (T, vars(spy))


def test_urdmu_scores_and_features_equal_the_dense_path():
    torch.manual_seed(1)
    model = URDMU(input_dim=6, dim=8, depth=2, heads=2, dim_head=4, mlp_dim=8, memory_slots=20, head_hidden=5).eval()
    for T in LENGTHS:
        x = torch.randn(2, CROPS, T, 6, generator=torch.Generator().manual_seed(T))  # two videos: rows cross videos
        with torch.inference_mode():
            with memory_limits(**DENSE):
                dense = model(x)
            with memory_limits(**SMALL):
                small = model(x)
        torch.testing.assert_close(small.scores, dense.scores, rtol=0, atol=1e-5)
        torch.testing.assert_close(small.features, dense.features, rtol=0, atol=1e-5)


def test_query_chunks_equal_one_softmax_with_a_per_query_mask():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 37, 4, generator=g, dtype=torch.float64) for _ in range(3))
    mask = torch.rand(2, 1, 37, 37, generator=g) > 0.3
    mask[..., 0] = True  # every query sees at least one key
    reference = (q @ k.transpose(-1, -2) / 2.0).masked_fill(~mask, float("-inf")).softmax(-1) @ v
    with memory_limits(attention_scores=2 * 3 * 37 * 5, fused_attention=False):  # 5 queries per chunk
        got = attention(q, k, v, mask)
    torch.testing.assert_close(got, reference, rtol=0, atol=1e-12)
    # the layout the heads merge from: [N, Tq, H, dh] in memory
    assert got.transpose(1, 2).is_contiguous()


def test_multi_head_attention_with_padding_in_chunks():
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(3, 29, 8, generator=g) for _ in range(3))
    pad = torch.zeros(3, 29, dtype=torch.bool)
    pad[1, 20:] = True
    dense = multi_head_attention(q, k, v, 2, pad)
    with memory_limits(attention_scores=50, fused_attention=False):  # one query per chunk
        chunked = multi_head_attention(q, k, v, 2, pad)
    torch.testing.assert_close(chunked, dense, rtol=0, atol=1e-6)
    with memory_limits(attention_scores=50):  # over the limit: one call of a fused kernel (CPU flash)
        fused = multi_head_attention(q, k, v, 2, pad)
    torch.testing.assert_close(fused, dense, rtol=0, atol=1e-6)
    sdpa = F.scaled_dot_product_attention(
        q.view(3, 29, 2, 4).transpose(1, 2), k.view(3, 29, 2, 4).transpose(1, 2), v.view(3, 29, 2, 4).transpose(1, 2),
        attn_mask=(~pad)[:, None, None, :]).transpose(1, 2).reshape(3, 29, 8)
    torch.testing.assert_close(chunked, sdpa, rtol=0, atol=1e-6)


def test_over_the_limit_a_call_never_reaches_the_math_kernel(monkeypatch):
    """Over the limit SDPA may only pick a fused kernel; where none applies (dropout on the CPU), query chunks."""
    seen = []
    sdpa, block = F.scaled_dot_product_attention, blocks._attention_block

    def spy_sdpa(q, *args, **kwargs):
        seen.append(("sdpa", q.shape[-2], torch.backends.cuda.math_sdp_enabled()))
        return sdpa(q, *args, **kwargs)

    def spy_block(q, *args):
        seen.append(("chunk", q.shape[-2]))
        return block(q, *args)

    monkeypatch.setattr(blocks.F, "scaled_dot_product_attention", spy_sdpa)
    monkeypatch.setattr(blocks, "_attention_block", spy_block)
    q, k, v = (torch.randn(2, 2, 40, 4) for _ in range(3))
    with memory_limits(attention_scores=2 * 2 * 40 * 10):
        attention(q, k, v)
        assert seen == [("sdpa", 40, False)]  # one call, with the math kernel switched off
        assert torch.backends.cuda.math_sdp_enabled()  # and back on afterwards
        seen.clear()
        out = attention(q, k, v, dropout_p=0.5)  # the explicit dropout path of the CPU: 4 chunks of 10 queries
    assert out.shape == (2, 2, 40, 4) and seen == [("chunk", 10)] * 4


def test_limits_come_back_after_the_block_and_bad_limits_are_errors():
    before = blocks.current_limits()
    with memory_limits(pass_snippets=7) as limits:
        assert limits.pass_snippets == 7 and blocks.current_limits() is limits
    assert blocks.current_limits() == before
    with pytest.raises(ValueError, match="attention_scores"):
        MemoryLimits(attention_scores=0)
    with pytest.raises(TypeError):
        with memory_limits(no_such_limit=3):
            pass


def test_passes_default_by_device():
    limits = MemoryLimits()
    assert limits.snippets_per_pass(torch.device("cpu")) == blocks.CPU_PASS_SNIPPETS
    assert limits.snippets_per_pass(torch.device("cuda")) == blocks.ACCELERATOR_PASS_SNIPPETS
    assert MemoryLimits(pass_snippets=5).snippets_per_pass(torch.device("cuda")) == 5
    assert limits.expert_rows(torch.device("cpu")) == blocks.CPU_EXPERT_SNIPPETS
    # a GPU pass of the UCF-Crime experts stays one call: launches, not memory, set the GPU's speed
    assert limits.expert_rows(torch.device("cuda")) >= 13 * blocks.ACCELERATOR_PASS_SNIPPETS
    assert MemoryLimits(expert_snippets=7).expert_rows(torch.device("cuda")) == 7


def test_a_direct_experts_call_stays_one_call(monkeypatch):
    """The training stages' frozen passes call the experts directly: groups would change their last bits."""
    experts = small_gsmoe().experts.eval()
    spy = Spy(monkeypatch)
    with torch.inference_mode(), memory_limits(expert_snippets=1):
        experts.logits(torch.randn(4, 20, experts.feature_dim))
        assert spy.expert_groups == 0
        experts.logits(torch.randn(4, 20, experts.feature_dim), in_groups=True)
        assert spy.expert_groups == experts.n_experts


def test_training_mode_keeps_one_pass():
    """Training batches are sized to fit; splitting them would only change the order of dropout draws."""
    model = small_gsmoe().train()
    calls = []
    original = URDMU._evaluate_rows
    try:
        URDMU._evaluate_rows = lambda m, r: calls.append(r.shape[0]) or original(m, r)
        with memory_limits(pass_snippets=1):
            model.encoder(torch.randn(4, CROPS, 20, 6), training_extras=False)
    finally:
        URDMU._evaluate_rows = original
    assert calls == [4 * CROPS]
