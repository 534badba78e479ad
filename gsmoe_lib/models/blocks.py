"""Shared attention and MLP pieces for the gate (and for one expert run on its own).

Everything here is a plain pre-norm transformer part: LayerNorm before each sub-layer, a residual around
it, no positional embedding and no class token (the paper, "Implementation Details": the transformer blocks
of the experts and the gate have neither). Attention goes through
`torch.nn.functional.scaled_dot_product_attention` so that PyTorch picks its fastest kernel.

Padding convention (used across `gsmoe_lib.models`): `key_padding_mask` is a bool tensor [B, T] that is
True at padded snippets, as in `nn.MultiheadAttention`. Padded snippets are never attended to; their own
outputs are computed but meaningless, and the caller ignores them.

The batched experts (`experts.py`) keep their own stacked weights but share `multi_head_attention` below.

Dimension letters: N sequences (B videos, or B·E video-expert pairs), T / Tq / Tk snippets, D model width.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

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
    D is split into `n_heads` heads of D / n_heads each; the heads are concatenated back.
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
    if dropout_p > 0.0 and fast_mask_applies(q, dropout_p):
        # On the CPU, SDPA with dropout leaves its fused kernel for an unfused path that draws the mask with
        # bernoulli_ (3x the no-dropout time): the same unfused product with the cheap mask of `dropout`.
        logits = (q @ k.transpose(-1, -2)) * dh**-0.5  # [N, heads, Tq, Tk]
        if attn_mask is not None:
            logits = logits.masked_fill(~attn_mask, float("-inf"))
        out = dropout(logits.softmax(-1), dropout_p) @ v  # [N, heads, Tq, dh]
    else:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p)  # [N, heads, Tq, dh]
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
