"""The whole GS-MoE detector as one module: task encoder -> experts -> gate.

Crops (the paper is silent on how its experts and gate meet the 10 crops; `crops` chooses):
- "each" (default): every crop is scored on its own, all the way through the encoder, the experts and the
  gate, and the final scores are averaged over crops (REFERENCE §4, "scores averaged over crops"). The
  experts and the gate were trained on single-crop samples, so this shows them what they were trained on.
  Cost: the experts and the gate run C times; at the default widths the whole GS-MoE costs about 3x the
  encoder alone (docs/studies/speed.md, "Where the time goes").
- "mean": the encoder scores every crop and averages its task-aware features over crops; the experts and
  the gate run once per video on that average. About 1.2x the encoder alone; the scores differ from "each"
  (the experts are non-linear). `gsmoe bench speed` times both, docs/studies/speed.md reports the metric effect.

At test time every expert runs on every video (a soft mixture): the experts are one batched module, so
the cost of E experts is one forward pass, not E.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from gsmoe_lib.models.blocks import mean_over_crops_in_passes
from gsmoe_lib.models.experts import Experts
from gsmoe_lib.models.gate import Gate
from gsmoe_lib.models.urdmu import URDMU

EXPERT_COMBINE_RULES = ("max", "mean")
CROP_MODES = ("each", "mean")


class GSMoEOutput(NamedTuple):
    scores: Tensor  # [B, T] final (gate) scores, averaged over crops
    expert_scores: Tensor  # [B, T, E] each expert's scores, averaged over crops
    encoder_scores: Tensor  # [B, T] the task encoder's own scores, averaged over crops
    embedding: Tensor  # [B, T, d] the gate's fused token representation, averaged over crops (t-SNE)


def combine_experts(expert_scores: Tensor, rule: str = "max") -> Tensor:
    """Table 2's "+experts" row (experts without the gate): one score per snippet from [.., T, E] -> [.., T].

    The paper does not say how the experts are combined without the gate. "max" (default) asks whether any
    expert sees its anomaly; "mean" averages them.
    """
    if rule == "max":
        return expert_scores.amax(dim=-1)
    if rule == "mean":
        return expert_scores.mean(dim=-1)
    raise ValueError(f"unknown expert combination rule {rule!r}; expected one of {EXPERT_COMBINE_RULES}")


def expert_inputs(experts: Experts, features: Tensor, inputs: Tensor) -> Tensor:
    """What the experts read: the task-aware features [.., T, F] (the paper), or, for experts built with
    `input_dim` (the extension ExpertsConfig.inputs="task+i3d"), [features | inputs] -> [.., T, F + D]."""
    width = getattr(experts, "input_dim", 0)  # a stand-in experts module (tests) reads the features only
    if not width:
        return features
    if inputs.shape[-1] != width:
        raise ValueError(f"these experts read input features of width {width} beside the task-aware "
                         f"ones, got inputs of width {inputs.shape[-1]}")
    return torch.cat([features, inputs.to(features.dtype)], dim=-1)


class GSMoEModel(nn.Module):
    """encoder (URDMU) + experts (Experts, E stacked) + gate (Gate)."""

    def __init__(self, encoder: URDMU, experts: Experts, gate: Gate | None = None, crops: str = "each") -> None:
        super().__init__()
        if crops not in CROP_MODES:
            raise ValueError(f"unknown crop mode {crops!r}; expected one of {CROP_MODES}")
        self.encoder = encoder
        self.experts = experts
        self.gate = gate
        self.crops = crops

    def forward(self, x: Tensor, expert_mask: Tensor | None = None, combine: str = "max",
                mask_fill: str = "zero") -> GSMoEOutput:
        """x [B, T, D] or [B, C, T, D] -> GSMoEOutput. Without a gate, `scores` combines the experts by `combine`.

        expert_mask [E] (1 keeps, 0 masks an expert before the gate; Table 4); `mask_fill` "zero" | "mean" says
        what the gate reads instead (gate.mask_experts). Without a gate a masked expert's score is 0.
        """
        if x.dim() == 3:
            x = x.unsqueeze(1)
        B, C, T, D = x.shape
        if self.crops == "each" and C > 1 and not self.training:
            # Each crop on its own through encoder, experts and gate, a long video's crops a few per pass
            # (blocks.MemoryLimits.pass_snippets): memory stays bounded whatever T. Rows are video-major [B·C].
            row_mask = expert_mask
            if expert_mask is not None and expert_mask.dim() == 2:  # [B, E] -> [B·C, E]
                row_mask = expert_mask.repeat_interleave(C, dim=0)

            def rows_forward(rows: Tensor, which: slice) -> GSMoEOutput:  # rows [n, T, D] -> per-row outputs
                mask = row_mask if row_mask is None or row_mask.dim() == 1 else row_mask[which]
                return self.forward(rows, mask, combine, mask_fill)

            return GSMoEOutput(*mean_over_crops_in_passes(rows_forward, x.reshape(B * C, T, D), C))
        if self.crops == "mean":
            enc = self.encoder(x, training_extras=False)  # averaged over crops: scores [B, T], features [B, T, F]
            rows = x.mean(1)  # [B, T, D]: the input beside those features (ExpertsConfig.inputs, an extension)
            C = 1  # the experts and the gate see one (crop-averaged) sequence per video
        else:
            rows = x.reshape(B * C, T, D)
            enc = self.encoder(rows, training_extras=False)  # [B·C, T], [B·C, T, F]
        # [B·C, T, E]; in evaluation a long pass runs a few experts at a time (blocks.MemoryLimits.expert_snippets)
        expert_logits = self.experts.logits(expert_inputs(self.experts, enc.features, rows),
                                            in_groups=not self.training)
        expert_scores = torch.sigmoid(expert_logits)
        if self.gate is not None:
            out = self.gate(expert_logits, enc.features, expert_mask=expert_mask, mask_fill=mask_fill)
            scores, embedding = out.scores, out.embedding  # [B·C, T], [B·C, T, d]
        else:
            masked = expert_scores if expert_mask is None else expert_scores * expert_mask.to(expert_scores.dtype)
            scores, embedding = combine_experts(masked, combine), enc.features

        def crop_mean(z: Tensor) -> Tensor:  # [B·C, ...] -> [B, ...]
            return z.reshape(B, C, *z.shape[1:]).mean(1) if C > 1 else z

        return GSMoEOutput(crop_mean(scores), crop_mean(expert_scores), crop_mean(enc.scores), crop_mean(embedding))
