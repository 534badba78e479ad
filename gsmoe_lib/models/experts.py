"""The class experts of GS-MoE (paper §3.2, Stage 2): E small transformers run as one batched module.

One expert per anomaly class (13 on UCF-Crime, 6 on XD-Violence, or k cluster experts) reads the task-aware
features of the UR-DMU encoder and gives each snippet a score in [0, 1]: how much that snippet looks like an
anomaly of the expert's class. The paper: "a transformer block with 4 self-attention heads, followed by a
two-layer MLP with GELU activation", no positional embedding, no class token, ~0.5 M parameters per expert.

One expert, read top to bottom (what `SingleExpert` computes):

    features [B, T, F] -> Linear(F, d_model)                          input projection
        -> x + SelfAttention(LN(x)), 4 heads                          transformer block, pre-norm
        -> x + FFN(LN(x)), FFN = d_model -> ffn_hidden -> d_model, GELU
        -> LN -> Linear(d_model, mlp_hidden) -> GELU -> Linear(mlp_hidden, 1) -> sigmoid   two-layer MLP head

Decisions where the paper is silent (all constructor parameters):
- F = 1024 is far too wide for a 0.5 M-parameter transformer, so an input projection F -> d_model comes first.
- The "transformer block" is the standard one (attention + its own feed-forward layer); the "two-layer MLP"
  is the head after it.
- Defaults d_model = 192, ffn_hidden = 384, mlp_hidden = 96, dropout = 0.1 give, with F = 1024:
      input projection  1024·192 + 192                          = 196,800
      attention         (192·576 + 576) + (192·192 + 192)        = 148,224
      feed-forward      (192·384 + 384) + (384·192 + 192)        = 148,032
      3 LayerNorms      3 · 2 · 192                              =   1,152
      head              (192·96 + 96) + (96 + 1)                 =  18,625
      one expert                                                 = 512,833  (13 experts: 6,666,829)

Speed: the paper runs its experts one after another. Here all E experts are ONE computation: every weight is
stacked along a leading expert axis ([E, in, out]), activations are kept expert-major ([E, B·T, d]) so that
each linear layer is one batched matmul (baddbmm), and attention folds the expert axis into the batch
([E·B, heads, T, dh]) for one `scaled_dot_product_attention` call.
No Python loop over experts.

Training all experts in one step: the experts share nothing (every op is per expert), so a per-expert loss
[B, E] multiplied by a membership mask `expert_mask [B, E]` (1 where video b is in expert e's training set:
its class's abnormal videos plus normal videos) trains each expert only on its own videos; the gradient of
expert e's weights is exactly zero from the videos outside its set. The trainer does the masking; this
module only has to return the per-expert scores [B, T, E].

`Experts.expert(i)` returns expert i as a standalone `SingleExpert` (ordinary nn.Linear / nn.LayerNorm,
weights copied) to inspect one expert, and `forward(..., experts=[...])` runs a subset.

Extension (not in the paper; `ExpertsConfig.inputs = "task+i3d"`, off by default): `input_dim` = D > 0 says
that the experts read [task-aware features | input features] side by side, F = F_task + D; the first layer is
then Linear(F_task + D, d_model) and nothing else changes. `GSMoEModel` builds that input.

Dimension letters: B videos, T snippets, N = B·T, F task-aware feature width (with the extension: plus the
input width D), E experts, d d_model, h ffn_hidden, m mlp_hidden.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from gsmoe_lib.models.blocks import TransformerBlock, check_padding_mask, current_limits, mlp, multi_head_attention
from gsmoe_lib.models.dropout import dropout
from gsmoe_lib.models.model_args import SavesArgs


class SingleExpert(nn.Module):
    """One expert as an ordinary module; the batched `Experts` computes exactly this for each of its E experts."""

    def __init__(
        self,
        feature_dim: int,
        d_model: int = 192,
        n_heads: int = 4,
        ffn_hidden: int = 384,
        mlp_hidden: int = 96,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.input = nn.Linear(feature_dim, d_model)
        self.block = TransformerBlock(d_model, n_heads, ffn_hidden, dropout)
        self.norm = nn.LayerNorm(d_model)
        self.head = mlp([d_model, mlp_hidden, 1], dropout)

    def forward(self, features: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """features [B, T, F], key_padding_mask [B, T] (True = padded) -> scores [B, T] in [0, 1]."""
        check_padding_mask(key_padding_mask, features.shape[0], features.shape[1])
        x = self.block(self.input(features), key_padding_mask)  # [B, T, d]
        return torch.sigmoid(self.head(self.norm(x)).squeeze(-1))


# Stacked linear layers: name -> (input size attribute, output size attribute). Each is stored as a weight
# [E, in, out] (transposed w.r.t. nn.Linear, so that x @ W needs no transpose) and a bias [E, out].
_LINEARS = {
    "input": ("feature_dim", "d_model"),
    "qkv": ("d_model", "d_qkv"),
    "attn_out": ("d_model", "d_model"),
    "ffn1": ("d_model", "ffn_hidden"),
    "ffn2": ("ffn_hidden", "d_model"),
    "head1": ("d_model", "mlp_hidden"),
    "head2": ("mlp_hidden", "one"),
}
_NORMS = ("norm1", "norm2", "norm_head")


class Experts(SavesArgs, nn.Module):
    """E independent experts with stacked weights; forward(features [B, T, F]) -> scores [B, T, E] in [0, 1]."""

    # checkpoints before model_args: these sizes; n_heads, ffn_hidden and mlp_hidden were always the defaults
    LEGACY_ARGS = {"n_experts": None, "feature_dim": None, "d_model": None, "dropout": None}

    def __init__(
        self,
        n_experts: int,
        feature_dim: int,
        d_model: int = 192,
        n_heads: int = 4,
        ffn_hidden: int = 384,
        mlp_hidden: int = 96,
        dropout: float = 0.1,
        input_dim: int = 0,
    ) -> None:
        super().__init__()
        if n_experts < 1:
            raise ValueError(f"n_experts must be at least 1, got {n_experts}")
        if d_model % n_heads != 0:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        self.model_args = dict(n_experts=n_experts, feature_dim=feature_dim, d_model=d_model, n_heads=n_heads,
                               ffn_hidden=ffn_hidden, mlp_hidden=mlp_hidden, dropout=dropout)
        if input_dim < 0 or input_dim >= feature_dim:
            raise ValueError(f"input_dim must be in [0, feature_dim={feature_dim}), got {input_dim}")
        if input_dim:  # recorded only when set, so the paper's experts keep their exact model_args
            self.model_args["input_dim"] = input_dim
        # The extension ExpertsConfig.inputs="task+i3d": the last `input_dim` of the feature_dim columns are
        # the snippet's input (I3D) features beside the task-aware ones; GSMoEModel concatenates them. 0: the paper.
        self.input_dim = input_dim
        self.n_experts = n_experts
        self.feature_dim = feature_dim
        self.d_model = d_model
        self.n_heads = n_heads
        self.ffn_hidden = ffn_hidden
        self.mlp_hidden = mlp_hidden
        self.dropout = dropout
        sizes = {
            "feature_dim": feature_dim, "d_model": d_model, "d_qkv": 3 * d_model,
            "ffn_hidden": ffn_hidden, "mlp_hidden": mlp_hidden, "one": 1,
        }
        for name, (d_in, d_out) in _LINEARS.items():
            self.register_parameter(f"{name}_weight", nn.Parameter(torch.empty(n_experts, sizes[d_in], sizes[d_out])))
            self.register_parameter(f"{name}_bias", nn.Parameter(torch.empty(n_experts, sizes[d_out])))
        for name in _NORMS:
            self.register_parameter(f"{name}_weight", nn.Parameter(torch.empty(n_experts, d_model)))
            self.register_parameter(f"{name}_bias", nn.Parameter(torch.empty(n_experts, d_model)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise each expert's slice as its own nn.Linear / nn.LayerNorm would be.

        nn.Linear draws weight and bias i.i.d. from U(-1/sqrt(in), 1/sqrt(in)); drawing the whole stacked
        tensor i.i.d. from the same law gives every expert an independent draw of that initialisation.
        """
        for name in _LINEARS:
            weight = getattr(self, f"{name}_weight")
            bound = 1.0 / math.sqrt(weight.shape[1])
            nn.init.uniform_(weight, -bound, bound)
            nn.init.uniform_(getattr(self, f"{name}_bias"), -bound, bound)
        for name in _NORMS:
            nn.init.ones_(getattr(self, f"{name}_weight"))
            nn.init.zeros_(getattr(self, f"{name}_bias"))

    def forward(
        self,
        features: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        experts: Sequence[int] | None = None,
    ) -> torch.Tensor:
        """Per-snippet scores of every expert (or of the listed `experts`, in that order).

        features [B, T, F], key_padding_mask [B, T] (True = padded) -> scores [B, T, E] in [0, 1]
        (E = len(experts) when a subset is given).
        Per-expert inputs: features [E, B, T, F] runs expert e on its own batch features[e] (how the
        trainer feeds every expert its own class's videos in one step); the result is still [B, T, E].
        """
        return torch.sigmoid(self.logits(features, key_padding_mask, experts))

    def logits(
        self,
        features: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        experts: Sequence[int] | None = None,
        in_groups: bool = False,
    ) -> torch.Tensor:
        """Like `forward` but before the sigmoid (for BCE-with-logits): [B, T, E].

        in_groups (scoring, `GSMoEModel` in evaluation): a call of more than `MemoryLimits.expert_snippets` rows
        (E x B x T) runs a few experts at a time; the logits equal one call's up to float rounding. Off by
        default, so that the training stages' frozen passes (sized to fit) keep their exact numbers.
        """
        if features.ndim not in (3, 4) or features.shape[-1] != self.feature_dim:
            raise ValueError(
                f"Experts expect task-aware features [B, T, F={self.feature_dim}] or per-expert [E, B, T, F], "
                f"got {tuple(features.shape)}"
            )
        b, t = features.shape[-3:-1]
        check_padding_mask(key_padding_mask, b, t)
        ids = list(range(self.n_experts)) if experts is None else list(experts)
        per_group = max(1, current_limits().expert_rows(features.device) // max(1, b * t))
        if in_groups and features.ndim == 3 and len(ids) > per_group:
            # A long video being scored: a few experts at a time (blocks.MemoryLimits.expert_snippets); the
            # experts share nothing, so the groups' logits are the one call's.
            return torch.cat([self.logits(features, key_padding_mask, ids[i : i + per_group])
                              for i in range(0, len(ids), per_group)], dim=-1)  # [B, T, E]
        p = self._stacked(experts)
        e = p["input_weight"].shape[0]
        drop = self.dropout if self.training else 0.0

        # Expert-major layout [E, B·T, ·]: every per-expert linear layer is then one batched matmul.
        if features.ndim == 3:  # one batch shared by every expert
            x = torch.einsum("nf,efd->end", features.reshape(b * t, -1), p["input_weight"])
        else:  # [E, B, T, F]: each expert its own batch
            if features.shape[0] != e:
                raise ValueError(f"per-expert features have {features.shape[0]} batches for {e} experts")
            x = torch.bmm(features.reshape(e, b * t, -1), p["input_weight"])
        x = x + p["input_bias"][:, None, :]  # [E, B·T, d]

        # Self-attention, pre-norm. The expert axis is folded into the batch: [E·B, T, d].
        qkv = _linear(_layer_norm(x, p, "norm1"), p, "qkv")  # [E, B·T, 3d]
        q, k, v = (z.reshape(e * b, t, self.d_model) for z in qkv.chunk(3, dim=-1))
        mask = None
        if key_padding_mask is not None:
            mask = key_padding_mask[None].expand(e, b, t).reshape(e * b, t)  # [E·B, T]
        att = multi_head_attention(q, k, v, self.n_heads, mask, dropout_p=drop).reshape(e, b * t, self.d_model)
        x = x + dropout(_linear(att, p, "attn_out"), drop, self.training)

        # Feed-forward, pre-norm.
        h = dropout(F.gelu(_linear(_layer_norm(x, p, "norm2"), p, "ffn1")), drop, self.training)
        x = x + dropout(_linear(h, p, "ffn2"), drop, self.training)  # [E, B·T, d]

        # Two-layer MLP head -> one logit per snippet and expert.
        h = dropout(F.gelu(_linear(_layer_norm(x, p, "norm_head"), p, "head1")), drop, self.training)
        return _linear(h, p, "head2").view(e, b, t).permute(1, 2, 0)  # [E, B·T, 1] -> [B, T, E]

    def expert(self, i: int) -> SingleExpert:
        """Expert i as a standalone `SingleExpert` (a copy: editing it does not change this module)."""
        if not 0 <= i < self.n_experts:
            raise IndexError(f"expert index {i} out of range for {self.n_experts} experts")
        single = SingleExpert(
            self.feature_dim, self.d_model, self.n_heads, self.ffn_hidden, self.mlp_hidden, self.dropout
        ).to(device=self.input_weight.device, dtype=self.input_weight.dtype)
        d = self.d_model
        attn = single.block.attn
        # nn.Linear stores weight [out, in]; the stacked weights are [E, in, out].
        targets = {
            "input": single.input, "attn_out": attn.out, "ffn1": single.block.ffn[0],
            "ffn2": single.block.ffn[3], "head1": single.head[0], "head2": single.head[3],
        }
        norms = {"norm1": single.block.norm1, "norm2": single.block.norm2, "norm_head": single.norm}
        with torch.no_grad():
            for name, layer in targets.items():
                layer.weight.copy_(getattr(self, f"{name}_weight")[i].T)
                layer.bias.copy_(getattr(self, f"{name}_bias")[i])
            qkv_w, qkv_b = self.qkv_weight[i], self.qkv_bias[i]  # [d, 3d], [3d]
            for j, layer in enumerate((attn.q, attn.k, attn.v)):
                layer.weight.copy_(qkv_w[:, j * d : (j + 1) * d].T)
                layer.bias.copy_(qkv_b[j * d : (j + 1) * d])
            for name, norm in norms.items():
                norm.weight.copy_(getattr(self, f"{name}_weight")[i])
                norm.bias.copy_(getattr(self, f"{name}_bias")[i])
        single.train(self.training)
        return single

    def _stacked(self, experts: Sequence[int] | None) -> dict[str, torch.Tensor]:
        """All stacked parameters by name, restricted to the listed experts when a subset is asked for."""
        params = dict(self.named_parameters(recurse=False))
        if experts is None:
            return params
        experts = list(experts)
        if not experts or min(experts) < 0 or max(experts) >= self.n_experts:
            raise IndexError(f"experts {experts} must be a non-empty list of indices below {self.n_experts}")
        idx = torch.tensor(experts, dtype=torch.long, device=self.input_weight.device)
        return {name: w.index_select(0, idx) for name, w in params.items()}


def _linear(x: torch.Tensor, p: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    """Each expert's own linear layer: b [E, 1, out] + x [E, N, in] @ W [E, in, out] -> [E, N, out]."""
    return torch.baddbmm(p[f"{name}_bias"][:, None, :], x, p[f"{name}_weight"])


def _layer_norm(x: torch.Tensor, p: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    """Each expert's own LayerNorm over d: x [E, N, d] -> [E, N, d]."""
    y = F.layer_norm(x, x.shape[-1:])
    return y * p[f"{name}_weight"][:, None, :] + p[f"{name}_bias"][:, None, :]
