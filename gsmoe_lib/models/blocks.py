"""Shared attention and MLP pieces for the gate (and for one expert run on its own).

Everything here is a plain pre-norm transformer part: LayerNorm before each sub-layer, a residual around
it, no positional embedding and no class token (the paper, "Implementation Details": the transformer blocks
of the experts and the gate have neither). Attention goes through
`torch.nn.functional.scaled_dot_product_attention` so that PyTorch picks its fastest kernel.

Padding convention (used across `gsmoe_lib.models`): `key_padding_mask` is a bool tensor [B, T] that is
True at padded snippets, as in `nn.MultiheadAttention`. Padded snippets are never attended to; their own
outputs are computed but meaningless, and the caller ignores them.

The batched experts (`experts.py`) keep their own stacked weights but share `multi_head_attention` below.

Memory for long videos (`MemoryLimits`, changed with the `memory_limits(...)` context manager): every attention
call of the project (these blocks, the experts, UR-DMU's global branch) goes through `attention`. A call over
`attention_scores` (sequence, head, query, key) scores runs in a fused SDPA kernel, which holds tiles of the
scores only, or, where none applies, with its queries in chunks. Each query's softmax runs over all keys, so
a chunk gives exactly the rows one call would (up to the order of float operations inside the kernel).
Scoring passes the crops of a long video through a model a few at a time (`mean_over_crops_in_passes`, used
by `URDMU` and `GSMoEModel`). Together they bound what one video holds at once by O(T x model width) instead
of O(crops x heads x T^2), whatever the attention backend.

Dimension letters: N sequences (B videos, or B·E video-expert pairs), T / Tq / Tk snippets, D model width,
H heads, dh head width.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from gsmoe_lib.models.dropout import Dropout, dropout, fast_mask_applies


def check_padding_mask(key_padding_mask: torch.Tensor | None, batch: int, length: int) -> None:
    """Raise a clear error when a padding mask has the wrong shape or hides a whole video.

    A video whose snippets are all padded has nothing to attend to: softmax over an empty set is NaN.
    """
    if key_padding_mask is None:
        return
    if key_padding_mask.dtype != torch.bool or tuple(key_padding_mask.shape) != (batch, length):
        raise ValueError(
            f"key_padding_mask must be a bool tensor [B, T] = [{batch}, {length}] (True at padded snippets), "
            f"got {key_padding_mask.dtype} {tuple(key_padding_mask.shape)}"
        )
    if bool(key_padding_mask.all(dim=1).any()):
        empty = torch.nonzero(key_padding_mask.all(dim=1)).flatten().tolist()
        raise ValueError(f"key_padding_mask pads every snippet of batch rows {empty}: nothing left to attend to")


@dataclass(frozen=True)
class MemoryLimits:
    """How much one forward pass may hold at once when a video is long (module docstring).

    attention_scores: the most (sequence x head x query x key) scores one attention call may cover in one
        piece. A larger call goes through one of SDPA's fused kernels, which hold only tiles of the scores
        (flash on the CPU; flash, memory-efficient or cuDNN on CUDA; PyTorch's math kernel is excluded), or,
        where none applies (attention dropout on the CPU, other devices) or `fused_attention` is False, in
        query chunks of at most this many scores. 2^26 scores are 256 MB in fp32. Measured on the CPU: the
        13 experts' call at T = 6,749 holds its 64 MB output and nothing more through the fused kernel, and
        takes 5.7 s against 6.7 s in chunks of 2^26 scores (docs/studies/memory.md).
    fused_attention: let calls over `attention_scores` use SDPA's fused kernels (False: always query chunks;
        the tests use it to exercise the chunks on the CPU).
    pass_snippets: the most crops x snippets one scoring pass sends through a model (`URDMU` in evaluation,
        `GSMoEModel`): a longer video goes through max(1, pass_snippets // T) crops at a time, and the crops'
        outputs are averaged as in one pass. A single crop is never split in time (attention spans the whole
        video). None (default): CPU_PASS_SNIPPETS on the CPU, ACCELERATOR_PASS_SNIPPETS elsewhere.
    local_dense_max_t: UR-DMU's fixed local kernel is a dense [T, T] product up to this T and a banded product
        beyond (`models.urdmu.local_mix`); 256 = 4 x its band of 64 snippets.
    expert_snippets: the most expert x snippet rows (E x B x T) one scoring call of `Experts` (`GSMoEModel`
        in evaluation: `Experts.logits(..., in_groups=True)`) computes at once; a larger call runs its experts
        in groups of max(1, expert_snippets // (B x T)) (they share nothing, so the groups give the one call's
        scores). None (default): CPU_EXPERT_SNIPPETS on the CPU,
        ACCELERATOR_EXPERT_SNIPPETS elsewhere. Why: one crop of the longest UCF-Crime test video (T = 6,749)
        through all 13 experts held 724 MB at once on the CPU; one expert at a time holds 16 MB of q, k, v.
    """

    attention_scores: int = 2**26
    fused_attention: bool = True
    pass_snippets: int | None = None
    local_dense_max_t: int = 256
    expert_snippets: int | None = None

    def __post_init__(self) -> None:
        for name in ("attention_scores", "pass_snippets", "local_dense_max_t", "expert_snippets"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"MemoryLimits.{name} must be at least 1, got {value}")

    def snippets_per_pass(self, device: torch.device) -> int:
        """`pass_snippets`, or the default of the device's type when it is None."""
        if self.pass_snippets is not None:
            return self.pass_snippets
        return CPU_PASS_SNIPPETS if device.type == "cpu" else ACCELERATOR_PASS_SNIPPETS

    def expert_rows(self, device: torch.device) -> int:
        """`expert_snippets`, or the default of the device's type when it is None."""
        if self.expert_snippets is not None:
            return self.expert_snippets
        return CPU_EXPERT_SNIPPETS if device.type == "cpu" else ACCELERATOR_EXPERT_SNIPPETS


# Default snippets per scoring pass. CPU: at 1,024 the largest per-snippet activation of a pass, the experts'
# q, k, v [13, 1024, 576], is 31 MB, and GS-MoE scored 10 crops of 300 and 1,000 snippets 10-25 % faster than
# in one pass on the 2-core CPU (less memory traffic), UR-DMU within a few percent (docs/studies/memory.md).
# GPU: a pass costs a few ms of kernel launches whatever its size, so passes are large: 16,384 snippets scores
# the UCF-Crime test set in 299 passes (290 videos), against 761 at 1,024, with an estimated 2 GB of
# activations at most (benchmarks/gpu_check.sh measures the peak).
CPU_PASS_SNIPPETS = 1024
ACCELERATOR_PASS_SNIPPETS = 16384
# Expert rows per call. CPU: 8,192 rows (13 experts over up to 630 snippets in one call) hold 19 MB of q, k, v
# (a crop longer than 8,192 snippets goes one expert at a time), and measured on the 2-core CPU the 13 experts
# ran as fast as in one call for T <= 1,000 and 12-15 % faster for T = 2,000 and 6,749 (smaller working sets;
# docs/studies/memory.md). GPU: 16 x a pass, so that every
# pass (at most 16,384 snippets) is one call of all 13 UCF-Crime experts: launches, not memory, set its speed.
CPU_EXPERT_SNIPPETS = 8192
ACCELERATOR_EXPERT_SNIPPETS = 16 * ACCELERATOR_PASS_SNIPPETS


_LIMITS = MemoryLimits()


def current_limits() -> MemoryLimits:
    """The memory limits in force (the defaults of `MemoryLimits` unless `memory_limits` changed them)."""
    return _LIMITS


@contextlib.contextmanager
def memory_limits(**changes: int) -> Iterator[MemoryLimits]:
    """Change some `MemoryLimits` fields inside the block; the previous limits come back afterwards.

    `with memory_limits(attention_scores=2**30, pass_snippets=10**9): ...` scores every video in one pass;
    the tests use small values to cross every threshold on short videos.
    """
    global _LIMITS
    before = _LIMITS
    _LIMITS = replace(before, **changes)
    try:
        yield _LIMITS
    finally:
        _LIMITS = before


def _attention_block(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None,
                     dropout_p: float) -> torch.Tensor:
    """One attention call: q [N, H, Tq, dh], k [N, H, Tk, dh], v [N, H, Tk, dv] -> [N, H, Tq, dv]."""
    if dropout_p > 0.0 and fast_mask_applies(q, dropout_p):
        # On the CPU, SDPA with dropout leaves its fused kernel for an unfused path that draws the mask with
        # bernoulli_ (3x the no-dropout time): the same unfused product with the cheap mask of `dropout`.
        logits = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5  # [N, H, Tq, Tk]
        if attn_mask is not None:
            logits = logits.masked_fill(~attn_mask, float("-inf"))
        return dropout(logits.softmax(-1), dropout_p) @ v
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p)


# SDPA kernels that never hold the whole [Tq, Tk] score matrix (the math kernel does).
_FUSED_BACKENDS = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION]


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None = None,
              dropout_p: float = 0.0) -> torch.Tensor:
    """softmax(q k^T / sqrt(dh)) v that never holds more than `MemoryLimits.attention_scores` scores at once.

    q [N, H, Tq, dh], k [N, H, Tk, dh], v [N, H, Tk, dv]; attn_mask bool, True where attention is allowed,
    broadcastable to [N, H, Tq, Tk] (its query axis of 1 or Tq) -> [N, H, Tq, dv]. A call over the limit goes
    through a fused SDPA kernel when one applies, else in query chunks (`MemoryLimits`); chunked results are
    laid out as [N, Tq, H, dv] in memory (as SDPA's CPU kernel returns them), so merging the heads is a view.
    """
    limits = current_limits()
    n, h, tq, _ = q.shape
    tk = k.shape[-2]
    if n * h * tq * tk <= limits.attention_scores:
        return _attention_block(q, k, v, attn_mask, dropout_p)
    if limits.fused_attention and not (dropout_p > 0.0 and fast_mask_applies(q, dropout_p)):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # PyTorch says why each fused kernel does not apply, if none does
                with sdpa_kernel(_FUSED_BACKENDS):
                    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p)
        except RuntimeError as err:  # no fused kernel for these inputs: query chunks below
            if "No available kernel" not in str(err):
                raise
    rows = max(1, limits.attention_scores // max(1, n * h * tk))  # queries per chunk
    chunks = []
    for start in range(0, tq, rows):
        mask = attn_mask
        if mask is not None and mask.shape[-2] != 1:  # a per-query mask follows its queries
            mask = mask[..., start : start + rows, :]
        chunks.append(_attention_block(q[:, :, start : start + rows], k, v, mask, dropout_p))
    # one copy, into the [N, Tq, H, dv] layout, so that the caller's merge of the heads is a view
    return torch.cat([c.transpose(1, 2) for c in chunks], dim=1).transpose(1, 2)  # [N, H, Tq, dv]


def mean_over_crops_in_passes(
    fn: Callable[[torch.Tensor, slice], Sequence[torch.Tensor]], rows: torch.Tensor, crops: int
) -> tuple[torch.Tensor, ...]:
    """The crop means of fn's outputs, with the rows sent through fn a few at a time (`MemoryLimits.pass_snippets`).

    rows [B·C, T, ...] (the C crops of each of B videos, video-major); fn(rows[which], which) -> a sequence of
    tensors [n, ...], one row each (`which`, a slice of the rows, lets fn pick per-row inputs of its own).
    Returns each output averaged over the crops of a video: [B, ...]. When all rows fit in one pass this is
    fn(rows) averaged with `mean`; otherwise running sums over the crops (kept in at least float32) are
    divided by C at the end, which equals the one-pass mean up to float rounding.
    """
    n_rows, length = rows.shape[0], rows.shape[1]
    if n_rows % crops:
        raise ValueError(f"{n_rows} rows are not a whole number of videos of {crops} crops")
    per_pass = max(1, current_limits().snippets_per_pass(rows.device) // max(1, length))  # rows per pass
    if per_pass >= n_rows:
        return tuple(z.reshape(-1, crops, *z.shape[1:]).mean(1) if crops > 1 else z for z in fn(rows, slice(None)))
    video = torch.arange(n_rows, device=rows.device) // crops  # [B·C] video of each row
    sums: list[torch.Tensor] = []
    dtypes: list[torch.dtype] = []
    for start in range(0, n_rows, per_pass):
        which = slice(start, start + per_pass)
        outs = fn(rows[which], which)
        if not sums:
            dtypes = [z.dtype for z in outs]
            sums = [z.new_zeros((n_rows // crops, *z.shape[1:]), dtype=torch.promote_types(z.dtype, torch.float32))
                    for z in outs]
        for total, z in zip(sums, outs):
            total.index_add_(0, video[which], z.to(total.dtype))
    return tuple((total / crops).to(dtype) for total, dtype in zip(sums, dtypes))


def multi_head_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    n_heads: int,
    key_padding_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """Scaled dot-product attention over already-projected queries, keys and values.

    q [N, Tq, D], k and v [N, Tk, D], key_padding_mask [N, Tk] (True = padded) -> [N, Tq, D].
    D is split into `n_heads` heads of D / n_heads each; the heads are concatenated back. Long sequences are
    attended in query chunks (`attention`).
    """
    n, tq, d = q.shape
    tk = k.shape[1]
    dh = d // n_heads
    # [N, T, D] -> [N, heads, T, dh]
    q = q.reshape(n, tq, n_heads, dh).transpose(1, 2)
    k = k.reshape(n, tk, n_heads, dh).transpose(1, 2)
    v = v.reshape(n, tk, n_heads, dh).transpose(1, 2)
    # SDPA's bool mask is True where attention is allowed; broadcast over heads and queries: [N, 1, 1, Tk].
    attn_mask = None if key_padding_mask is None else (~key_padding_mask)[:, None, None, :]
    out = attention(q, k, v, attn_mask, dropout_p)  # [N, heads, Tq, dh]
    return out.transpose(1, 2).reshape(n, tq, d)


class MultiHeadAttention(nn.Module):
    """Multi-head attention with separate query and key/value inputs (self-attention when they are equal)."""

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if d_model % n_heads != 0:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        self.n_heads = n_heads
        self.dropout = dropout
        self.q = nn.Linear(d_model, d_model)
        self.k = nn.Linear(d_model, d_model)
        self.v = nn.Linear(d_model, d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(
        self, x: torch.Tensor, context: torch.Tensor, key_padding_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x [N, Tq, D] attends to context [N, Tk, D] (mask [N, Tk], True = padded) -> [N, Tq, D]."""
        p = self.dropout if self.training else 0.0
        att = multi_head_attention(
            self.q(x), self.k(context), self.v(context), self.n_heads, key_padding_mask, dropout_p=p
        )
        return self.out(att)


def mlp(dims: Sequence[int], dropout: float = 0.0) -> nn.Sequential:
    """Linear layers through `dims` (len(dims) - 1 layers) with GELU and dropout between, none after the last.

    mlp([256, 256, 128, 64, 1]) is a four-layer MLP ending in one logit.
    """
    if len(dims) < 2:
        raise ValueError(f"an MLP needs at least an input and an output size, got dims={list(dims)}")
    layers: list[nn.Module] = []
    for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(d_in, d_out))
        if i < len(dims) - 2:
            layers += [nn.GELU(), Dropout(dropout)]
    return nn.Sequential(*layers)


class TransformerBlock(nn.Module):
    """Pre-norm transformer block: x + SelfAttention(LN(x)), then x + FFN(LN(x)); FFN = D -> ffn_hidden -> D, GELU."""

    def __init__(self, d_model: int, n_heads: int, ffn_hidden: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        self.attn = MultiHeadAttention(d_model, n_heads, dropout)
        self.norm2 = nn.LayerNorm(d_model)
        self.ffn = mlp([d_model, ffn_hidden, d_model], dropout)
        self.drop = Dropout(dropout)

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x [N, T, D], key_padding_mask [N, T] (True = padded) -> [N, T, D]."""
        h = self.norm1(x)
        x = x + self.drop(self.attn(h, h, key_padding_mask))
        return x + self.drop(self.ffn(self.norm2(x)))


class CrossAttentionBlock(nn.Module):
    """Pre-norm cross-attention block: x attends to a context sequence, then a feed-forward layer.

    x + CrossAttention(LN(x), LN_c(context)), then x + FFN(LN(x)). Queries come from x, keys and values
    from the context; the two sequences have the same width D (project them first).
    """

    def __init__(self, d_model: int, n_heads: int, ffn_hidden: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm_x = nn.LayerNorm(d_model)
        self.norm_context = nn.LayerNorm(d_model)
        self.attn = MultiHeadAttention(d_model, n_heads, dropout)
        self.norm_ffn = nn.LayerNorm(d_model)
        self.ffn = mlp([d_model, ffn_hidden, d_model], dropout)
        self.drop = Dropout(dropout)

    def forward(
        self, x: torch.Tensor, context: torch.Tensor, context_padding_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x [N, Tq, D], context [N, Tk, D], context_padding_mask [N, Tk] (True = padded) -> [N, Tq, D]."""
        x = x + self.drop(self.attn(self.norm_x(x), self.norm_context(context), context_padding_mask))
        return x + self.drop(self.ffn(self.norm_ffn(x)))
