"""`tgs_loss`: L_TGS (paper Eq. 6) = L_topk-norm + BCE(s, ŷ) on abnormal videos, plus smoothness and sparsity.

The MIL pieces come from losses.py; every term is a masked mean, so a step needs no host sync.
"""

from __future__ import annotations

import torch

from gsmoe_lib import losses

# Probabilities are clamped to [EPS, 1 - EPS] before the BCE so log(0) never appears.
EPS = 1e-6


def tgs_loss(
    scores: torch.Tensor,
    labels: torch.Tensor,
    pseudo: torch.Tensor,
    k: int,
    bce_weight: float = 1.0,
    smooth_weight: float = 8e-5,
    sparse_weight: float = 8e-5,
    topk_only: bool | torch.Tensor = False,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """L_TGS (Eq. 6) on a batch of probabilities `scores` [B, T] with video labels [B] (0 normal, 1 abnormal).

    loss = BCE(top-k mean of each normal video, 0)                       (L_topk-norm)
         + bce_weight    · BCE(s, ŷ) over the snippets of abnormal videos (ŷ = `pseudo`, [B, T])
         + smooth_weight · mean over abnormal videos of Σ_t (s[t+1] - s[t])²
         + sparse_weight · mean over abnormal videos of Σ_t s[t]
    `topk_only=True` (the first epoch) keeps only L_topk-norm: abnormal videos and `pseudo` are ignored;
    a bool tensor [B] does so per sample (an expert whose own first epoch is not over yet: its abnormal
    samples are ignored while the other experts' are trained). Default weights are Sultani et al.'s
    λ1 = λ2 = 8e-5 on per-video sums (the paper cites them for smoothness and sparsity).
    `pseudo` is detached here, so no gradient ever reaches it. Probabilities are clamped to
    [EPS, 1 - EPS] inside the BCE terms. Returns (loss, parts) with the detached parts
    "topk_norm", "bce", "smooth", "sparse" (unweighted) and "total".
    """
    if scores.ndim != 2 or pseudo.shape != scores.shape or labels.shape != scores.shape[:1]:
        raise ValueError(
            f"tgs_loss: scores {tuple(scores.shape)}, pseudo {tuple(pseudo.shape)}, labels {tuple(labels.shape)};"
            " expected [B, T], [B, T], [B]"
        )
    pseudo = pseudo.detach()
    topk_norm = losses.topk_normal_loss(scores, labels, k)  # 0 when the batch has no normal video
    if isinstance(topk_only, bool) and topk_only:
        bce = smooth = sparse = scores.sum() * 0.0  # keeps the graph alive
    else:
        trained = labels == 1  # [B] abnormal samples whose pseudo-labels are used
        if isinstance(topk_only, torch.Tensor):
            if topk_only.shape != labels.shape:
                raise ValueError(f"tgs_loss: topk_only mask {tuple(topk_only.shape)} must match labels {tuple(labels.shape)}")
            trained = trained & ~topk_only.to(trained.device, torch.bool)
        abnormal = trained.to(scores.dtype)  # [B]
        per_snippet = losses.bce(scores.clamp(EPS, 1.0 - EPS), pseudo, reduction="none")  # [B, T]
        bce = (per_snippet.mean(-1) * abnormal).sum() / abnormal.sum().clamp(min=1.0)
        smooth = losses.smoothness(scores, trained.to(labels.dtype))
        sparse = losses.sparsity(scores, trained.to(labels.dtype))

    loss = topk_norm + bce_weight * bce + smooth_weight * smooth + sparse_weight * sparse
    parts = {
        "topk_norm": topk_norm.detach(),
        "bce": bce.detach(),
        "smooth": smooth.detach(),
        "sparse": sparse.detach(),
        "total": loss.detach(),
    }
    return loss, parts
