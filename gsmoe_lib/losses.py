"""Training objectives of the task encoder: MIL top-k, UR-DMU's auxiliary terms, smoothness, sparsity.

Weak supervision gives one label per video, so every video-level term first reduces the per-snippet
scores `[B, T]` to one video score: the mean of its k highest snippet scores, with UR-DMU's
k = T // 16 + 1 (13 for the 200 pooled segments of training). The MIL objective is the binary cross-entropy
of that video score against the video label (the paper's Eq. 2: L_topk-norm on normal videos plus
L_topk-abn on abnormal ones).

`urdmu_loss` is UR-DMU's full objective (Zhou et al., AAAI 2023, and its public code):

    L = BCE(topk-mean(s), y)
        + 0.1 * (BCE(topk-mean(A_att), 1) + BCE(topk-mean(1 - N_Aatt), 1) + BCE(N_att, 1) + BCE(A_Natt, 0))
        + 0.1 * triplet(anchor, positive, negative; margin 1, on L2-normalised vectors)
        + 0.001 * KL(N(mu, exp(logvar)) || N(0, 1))
        + 0.0001 * mean(relu(100 - |abnormal aug| + |normal aug|))

with the memory attentions and the other inputs produced by `URDMU` in training mode (see
`gsmoe_lib.models.urdmu`). It relies on UR-DMU's batch convention: the first half of the batch is normal,
the second half abnormal; the memory terms use that structure, the labels are used by the MIL term only.

Every BCE is `torch.nn.BCELoss`'s (log clamped at -100, bounded gradient at saturated scores) computed in
float32 with autocast switched off locally, so the loss is the same under bf16 autocast. Nothing here calls `.item()`:
the parts come back as detached tensors and the training loop decides when to synchronise.

`smoothness` and `sparsity` are Sultani et al.'s (2018) regularisers, averaged over the abnormal videos of
the batch; their weights are the caller's: Sultani et al. use λ1 = λ2 = 8e-5 (the TGS stages' default, as the
paper cites them); RTFM's 8e-4 / 8e-3 belong to RTFM, whose sparsity is a norm, not a sum.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# k_for_length lives with the model whose memory attention uses the same k (models -> losses would be a circle);
# `losses.k_for_length` stays importable for the MIL terms' callers.
from gsmoe_lib.models.urdmu import URDMUOutput, k_for_length  # noqa: F401


def topk_mean(scores: Tensor, k: int) -> Tensor:
    """Mean of the k largest values of each row: `[B, T] -> [B]`."""
    T = scores.shape[-1]
    if not 1 <= k <= T:
        raise ValueError(f"topk_mean: k must be in [1, T={T}], got k={k}")
    return scores.topk(k, dim=-1).values.mean(-1)


def bce(p: Tensor, target: Tensor | float, reduction: str = "mean") -> Tensor:
    """`torch.nn.BCELoss` in float32, whatever the dtype of `p` and whether autocast is on.

    BCELoss clamps the log at -100 and bounds its gradient where a score saturates at exactly 0 or 1
    (frequent in bf16); a hand-written log would give a NaN gradient there. It refuses to run under CUDA
    autocast, hence the local switch-off.
    """
    p = p.float()
    # A scalar target becomes a fill on p's device (a tensor made from a Python float would be a host copy).
    target = target.float().expand_as(p) if isinstance(target, Tensor) else torch.full_like(p, float(target))
    with torch.autocast(device_type=p.device.type, enabled=False):
        return F.binary_cross_entropy(p, target, reduction=reduction)


def _masked_mean(per_video: Tensor, mask: Tensor) -> Tensor:
    """Mean of `per_video [B]` over the videos where `mask [B]` is true; 0 when none is (no host sync)."""
    w = mask.to(per_video.dtype)
    return (per_video * w).sum() / w.sum().clamp(min=1.0)


def mil_bce(scores: Tensor, labels: Tensor, k: int) -> Tensor:
    """MIL term: BCE(top-k mean score, video label), averaged over all B videos.

    scores [B, T] in [0, 1]; labels [B] (0 normal, 1 abnormal). This is the paper's Eq. 2,
    L_topk-norm on the normal videos plus L_topk-abn on the abnormal ones, in one mean.
    """
    return bce(topk_mean(scores, k), labels.float())


def topk_normal_loss(scores: Tensor, labels: Tensor, k: int) -> Tensor:
    """The paper's L_topk-norm: BCE(top-k mean score, 0), averaged over the normal videos only.

    scores [B, T]; labels [B]. Abnormal videos contribute nothing (TGS fine-tuning supervises them with
    pseudo-labels instead); a batch without normal videos gives 0.
    """
    per_video = bce(topk_mean(scores, k), 0.0, reduction="none")  # [B]
    return _masked_mean(per_video, labels == 0)


def smoothness(scores: Tensor, labels: Tensor) -> Tensor:
    """Sum over t of (s[t+1] - s[t])^2 per video, averaged over the abnormal videos (labels == 1)."""
    per_video = (scores[:, 1:] - scores[:, :-1]).float().pow(2).sum(-1)  # [B]
    return _masked_mean(per_video, labels == 1)


def sparsity(scores: Tensor, labels: Tensor) -> Tensor:
    """Sum of the snippet scores per video, averaged over the abnormal videos (labels == 1)."""
    return _masked_mean(scores.float().sum(-1), labels == 1)


def urdmu_loss(
    output: URDMUOutput,
    labels: Tensor,
    k: int | None = None,
    memory_weight: float = 0.1,
    triplet_weight: float = 0.1,
    kl_weight: float = 0.001,
    distance_weight: float = 0.0001,
    triplet_margin: float = 1.0,
    distance_margin: float = 100.0,
) -> tuple[Tensor, dict[str, Tensor]]:
    """UR-DMU's training objective (module docstring) on a training-mode `URDMUOutput`.

    labels [B]: the batch is the first half normal, second half abnormal (UR-DMU's convention).
    k defaults to T // 16 + 1. Returns (loss, parts) with parts detached scalar tensors: `mil`, `A_att`,
    `N_Aatt`, `N_att`, `A_Natt` (the four memory BCEs), `triplet`, `kl`, `distance`, `total`.
    """
    if output.A_att is None:
        raise ValueError("urdmu_loss needs the training extras: run URDMU in training mode (model.train())")
    T = output.scores.shape[-1]
    k = k_for_length(T) if k is None else k

    mil = mil_bce(output.scores, labels, k)
    # Abnormal videos: some snippets match the abnormal memory, some do not match the normal one.
    a_att = bce(topk_mean(output.A_att, k), 1.0)
    n_aatt = bce(topk_mean(1.0 - output.N_Aatt, k), 1.0)
    # Normal videos: every snippet matches the normal memory and none the abnormal one.
    n_att = bce(output.N_att, 1.0)
    a_natt = bce(output.A_Natt, 0.0)

    triplet = F.triplet_margin_loss(
        F.normalize(output.triplet_anchor.float(), dim=-1),
        F.normalize(output.triplet_positive.float(), dim=-1),
        F.normalize(output.triplet_negative.float(), dim=-1),
        margin=triplet_margin,
    )
    # UR-DMU sums the KL over time (dim 1 of [B/2*C, T, dim]) and averages over videos and channels.
    mu, logvar = output.kl_mu.float(), output.kl_logvar.float()
    kl = (-0.5 * (1.0 + logvar - mu.pow(2) - logvar.exp()).sum(1)).mean()
    distance = torch.relu(
        distance_margin - output.abnormal_aug_norm.float() + output.normal_aug_norm.float()
    ).mean()

    total = (
        mil
        + memory_weight * (a_att + n_aatt + n_att + a_natt)
        + triplet_weight * triplet
        + kl_weight * kl
        + distance_weight * distance
    )
    parts = {
        "mil": mil,
        "A_att": a_att,
        "N_Aatt": n_aatt,
        "N_att": n_att,
        "A_Natt": a_natt,
        "triplet": triplet,
        "kl": kl,
        "distance": distance,
        "total": total,
    }
    return total, {name: value.detach() for name, value in parts.items()}


def sultani_ranking_loss(
    scores: Tensor,
    labels: Tensor,
    smooth_weight: float = 8e-5,
    sparse_weight: float = 8e-5,
    margin: float = 1.0,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Sultani et al.'s (2018) MIL ranking loss on bags of segments: (loss, detached parts).

        hinge = mean over (abnormal a, normal n) pairs of max(0, margin - max_t s_a[t] + max_t s_n[t])
        loss  = hinge + smooth_weight * smoothness(s, y) + sparse_weight * sparsity(s, y)

    smoothness = Σ_t (s[t] - s[t+1])², sparsity = Σ_t s[t], each a per-video sum averaged over the abnormal
    videos (the functions above); λ1 = λ2 = 8e-5 as in their paper and code.

    scores [B, S] in [0, 1] (one bag per video); labels [B] (0 normal, 1 abnormal), in any order. A batch
    without normal or without abnormal bags has hinge 0.
    Every (abnormal, normal) pair of the batch is used, as the original Keras code
    (WaqasSultani/AnomalyDetectionCVPR2018: for each normal video the hinge summed over the batch's abnormal
    videos, averaged over the normal videos, plus both regularisers summed over the abnormal videos; that
    loss is this one times the number of abnormal videos, a scale Adagrad all but removes). The PyTorch
    ports pair the i-th abnormal bag with the i-th normal one only. With margin 1 and scores in [0, 1] the
    hinge never clips (1 - a + n >= 0), so both give the same value and gradient: 1 - mean a + mean n.
    Parts: `hinge`, `smooth`, `sparse` (unweighted), `total`.
    """
    if scores.dim() != 2 or labels.shape != scores.shape[:1]:
        raise ValueError(f"sultani_ranking_loss: scores must be [B, S] and labels [B], got {tuple(scores.shape)} "
                         f"and {tuple(labels.shape)}")
    scores = scores.float()
    top = scores.amax(-1)  # [B]: each bag's highest-scoring segment
    # the hinge of every (row a, column n) pair, kept where a is abnormal and n normal (masks: no host sync)
    pair = torch.relu(margin - top[:, None] + top[None, :])  # [B, B]
    mask = ((labels == 1)[:, None] & (labels == 0)[None, :]).to(pair.dtype)
    hinge = (pair * mask).sum() / mask.sum().clamp(min=1.0)
    smooth, sparse = smoothness(scores, labels), sparsity(scores, labels)
    total = hinge + smooth_weight * smooth + sparse_weight * sparse
    parts = {"hinge": hinge, "smooth": smooth, "sparse": sparse, "total": total}
    return total, {name: value.detach() for name, value in parts.items()}
