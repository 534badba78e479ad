"""The pseudo-labels ŷ of a TGS-trained stage: when they exist, where they come from, and whether they are sane.

Every stage after the encoder (TGS fine-tuning, experts, gate) trains on L_TGS (Eq. 6), whose frame-level
target ŷ is splatted from anomaly scores by `tgs.pseudo_labels`. This module decides the schedule around it:

- The first epoch has no pseudo-labels (L_topk-norm only). It is counted on each stage's OWN abnormal pool
  (`warmup_per_pool`): for expert e one pass over its class's samples, for TGS and the gate over every
  abnormal sample; capped at `warmup_max_fraction` of the stage, with a warning, so that a short schedule
  still trains on pseudo-labels.
- Where ŷ comes from (`TGSConfig.source`): "refresh" (default) splats the stage's own eval-mode scores of its
  training pool at the end of its first epoch and once per epoch after it (`refresh_period`); the paper:
  "the Gaussian kernels are extracted from the abnormal scores produced by the model", so each expert
  refines what it itself finds in its class. "encoder" splats a frozen teacher's scores once (the MIL
  encoder's for TGS, the TGS encoder's for experts and gate); "teacher-refresh" starts from the teacher and
  then refreshes; "self" splats each training step's own scores (no store).
- `PseudoLabels` holds ŷ for the training pool [N, S, P] (P pools: one per expert, or one) as a module, so
  a partial checkpoint saves it and a resumed stage continues with the labels it had.

The checks say when a stage's targets are degenerate: `check_pseudo_labels` (no abnormal sample got a
kernel from the teacher), `check_coverage` (most abnormal samples have none at the end), `loss_trend` (the
loss still falling at the end: too few iterations); `training_health` collects them into a stage's metrics.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Callable

import numpy as np
import torch

from gsmoe_lib.tgs import TGSConfig, pseudo_labels
from gsmoe_lib.training.config import TGSTrainingConfig

# The sources that keep a store of labels and recompute them from the stage's own scores.
REFRESHING = ("refresh", "teacher-refresh")
# The sources whose labels start from a frozen teacher's scores.
FROM_TEACHER = ("encoder", "teacher-refresh")


def warmup_per_pool(cfg: TGSTrainingConfig, pool_sizes: torch.Tensor, stage: str) -> torch.Tensor:
    """Iterations of "the first epoch" for each training pool [P] (one pool per expert, or one for a stage).

    `cfg.warmup_iterations` when set, else one pass over the pool's abnormal samples at `batch_abnormal` per
    step (`warmup_pool="stage"`: the pool's own size; "all": the largest pool, the earlier behaviour, where an
    expert of a rare class waited for an epoch of every abnormal sample), capped at `warmup_max_fraction`
    of the stage, with a warning when the cap applies.
    """
    if not 0.0 < cfg.warmup_max_fraction <= 1.0:
        raise ValueError(f"{stage}.warmup_max_fraction must be in (0, 1], got {cfg.warmup_max_fraction}")
    if cfg.warmup_pool not in ("stage", "all"):
        raise ValueError(f"{stage}.warmup_pool must be 'stage' or 'all', got {cfg.warmup_pool!r}")
    sizes = pool_sizes.to(torch.long).cpu()
    if cfg.warmup_iterations is not None:
        if cfg.warmup_iterations >= cfg.iterations:
            warnings.warn(f"{stage}: warmup_iterations={cfg.warmup_iterations} covers all {cfg.iterations} "
                          "iterations: no step will see a pseudo-label", stacklevel=3)
        return torch.full_like(sizes, cfg.warmup_iterations)
    if cfg.warmup_pool == "all":
        sizes = torch.full_like(sizes, int(sizes.sum()) if len(sizes) > 1 else int(sizes.max()))
    epoch = ((sizes + max(1, cfg.batch_abnormal) - 1) // max(1, cfg.batch_abnormal)).clamp(min=1)
    cap = max(1, int(cfg.warmup_max_fraction * cfg.iterations))
    if bool((epoch > cap).any()):
        warnings.warn(
            f"{stage}: one epoch of abnormal samples is {int(epoch.max())} iterations, more than "
            f"{cfg.warmup_max_fraction:.2f} of the stage's {cfg.iterations}; the first epoch (L_topk-norm only) is "
            f"cut to {cap} so that the pseudo-labels train the rest. Raise {stage}.iterations for the paper's "
            "schedule.", stacklevel=3)
    return epoch.clamp(max=cap)


def warmup_of_all_abnormal(cfg: TGSTrainingConfig, labels: torch.Tensor, stage: str) -> int:
    """Iterations of "the first epoch" of a stage whose one pool is every abnormal sample (labels [N])."""
    return int(warmup_per_pool(cfg, torch.tensor([int((labels == 1).sum())]), stage)[0])


def refresh_period(cfg: TGSTrainingConfig, pool_sizes: torch.Tensor) -> int:
    """Iterations between two refreshes of the pseudo-labels (source "refresh"): `cfg.refresh_every`, else one
    epoch of the mean pool (each step draws `batch_abnormal` samples of every pool)."""
    if cfg.refresh_every is not None:
        if cfg.refresh_every < 1:
            raise ValueError(f"refresh_every must be >= 1, got {cfg.refresh_every}")
        return int(cfg.refresh_every)
    return max(1, math.ceil(float(pool_sizes.float().mean()) / max(1, cfg.batch_abnormal)))


class PseudoLabels(torch.nn.Module):
    """The pseudo-labels ŷ of a TGS-trained stage's training pool, and when they are recomputed.

    targets: [N, S, P] buffer (P pools: one per expert, or 1), saved with the stage's partial checkpoints so a
    resumed run continues with the labels it had. `source` (TGSConfig.source):
      "encoder": set once from a frozen teacher's scores (`set_all`), never refreshed;
      "refresh": recomputed from the stage's own eval-mode scores (`score_fn`) at the end of each pool's first
                 epoch, then every `period` iterations;
      "teacher-refresh": set from the teacher, then refreshed from the stage's own scores after one period of
                 training on them, and every period after that;
      "self":    not stored; the trainer splats each step's own training-mode scores.
    """

    def __init__(self, n: int, s: int, member: torch.Tensor, warmup: torch.Tensor, period: int, tgs_cfg: TGSConfig,
                 device: torch.device | str) -> None:
        super().__init__()
        self.member = member.cpu()  # [N, P] bool: which abnormal samples each pool's labels cover
        # First refresh: at the end of each pool's first epoch ("refresh"), or one period later when the labels
        # start from a teacher ("teacher-refresh": the stage first trains one epoch on the teacher's labels).
        self.warmup = warmup.cpu() + (period if tgs_cfg.source == "teacher-refresh" else 0)  # [P]
        self.period = period
        self.tgs_cfg = tgs_cfg
        self.register_buffer("targets", torch.zeros(n, s, member.shape[1], device=device))
        self.register_buffer("refreshes", torch.zeros((), dtype=torch.long))

    @classmethod
    def for_stage(cls, cfg: TGSTrainingConfig, member: torch.Tensor, n_segments: int, warmup: torch.Tensor,
                  device: torch.device | str) -> "PseudoLabels":
        """The store of a stage whose pools are the columns of member [N, P] (warm-up [P] per pool)."""
        return cls(len(member), n_segments, member, warmup, refresh_period(cfg, member.sum(0)), cfg.tgs, device)

    def set_all(self, pseudo: torch.Tensor) -> None:
        """Every pool gets the same labels pseudo [N, S] (a frozen teacher's)."""
        self.targets.copy_(pseudo.to(self.targets)[:, :, None].expand_as(self.targets))

    def set_per_pool(self, pseudo: torch.Tensor) -> None:
        """Each pool its own labels: pseudo [N, S, P] (per-pool teachers')."""
        self.targets.copy_(pseudo.to(self.targets))

    def set_from_teacher(self, teacher_scores: torch.Tensor, labels: torch.Tensor, stage: str) -> None:
        """ŷ of every pool splatted from a frozen teacher's scores [N, S] (labels [N]), with the check."""
        self.set_all(splat_teacher(teacher_scores, labels, self.tgs_cfg, stage))

    def due(self, i: int) -> torch.Tensor:
        """[P] bool: pools whose labels are recomputed before step i."""
        since = i - self.warmup  # [P]
        return (since >= 0) & (since % self.period == 0)

    @torch.no_grad()
    def refresh(self, i: int, score_fn: Callable[[torch.Tensor], torch.Tensor], chunk: int = 256) -> bool:
        """Recompute the due pools' labels from score_fn(sample indices [n]) -> scores [n, S, P]; True if any."""
        due = self.due(i)
        if not bool(due.any()):
            return False
        rows = torch.nonzero(self.member[:, due].any(1)).flatten()  # samples of any due pool
        scores = torch.cat([score_fn(rows[a:a + chunk]).float() for a in range(0, len(rows), chunk)])  # [n, S, P]
        for p in torch.nonzero(due).flatten().tolist():
            mine = self.member[rows, p]  # [n]
            if bool(mine.any()):
                self.targets[rows[mine].to(self.targets.device), :, p] = pseudo_labels(scores[mine, :, p], self.tgs_cfg)
        self.refreshes += 1
        return True

    def labels_of(self, idx: torch.Tensor, pool: torch.Tensor | int = 0) -> torch.Tensor:
        """ŷ [.., S] of samples idx [..] in pools `pool` (an int, or a tensor broadcast with idx)."""
        return self.targets[idx, :, pool]

    def coverage(self) -> float:
        """Share of (abnormal sample, pool) pairs whose current labels hold at least one kernel."""
        has = self.targets.amax(1).cpu() > 0  # [N, P]
        m = self.member
        return float((has & m).sum()) / max(1, int(m.sum()))


def splat_teacher(scores: torch.Tensor, labels: torch.Tensor, tgs_cfg: TGSConfig, stage: str) -> torch.Tensor:
    """ŷ [N, S] splatted from a frozen teacher's scores [N, S] (labels [N]), checked (`check_pseudo_labels`)."""
    pseudo = pseudo_labels(scores, tgs_cfg)
    check_pseudo_labels(pseudo, scores, labels, tgs_cfg, stage)
    return pseudo


def check_pseudo_labels(pseudo: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, tgs_cfg: TGSConfig,
                        stage: str) -> None:
    """Warn when no abnormal training sample got a TGS kernel: the stage would then learn to score 0.

    pseudo, scores [N, S] (the teacher's pseudo-labels and the scores they were splatted from), labels [N].
    Happens when the teacher's scores never make a peak of `min_height` and `prominence`: every target ŷ is
    0, and BCE + sparsity pull the stage to 0.
    """
    abnormal = (labels == 1).to(pseudo.device)
    if not bool(abnormal.any()) or float(pseudo[abnormal].amax()) > 0.0:
        return
    top = float(scores[abnormal.to(scores.device)].amax())
    warnings.warn(
        f"{stage}: no TGS kernel on any of the {int(abnormal.sum())} abnormal training samples (the teacher's "
        f"scores reach {top:.3f}; a kernel needs a peak of height >= min_height={tgs_cfg.min_height} and "
        f"prominence >= {tgs_cfg.prominence}), so every pseudo-label is 0 and this stage learns to score 0 "
        f"everywhere. Lower {stage}.tgs.min_height or .prominence, or train the encoder stages longer.",
        stacklevel=2,
    )


def check_coverage(store: PseudoLabels, stage: str, min_share: float = 0.5) -> dict[str, Any]:
    """Warn (and say so in the metrics) when most abnormal training samples got no TGS kernel: the stage then
    learns to score 0 on them. Returns {"pseudo_label_coverage": share, "pseudo_labels_degenerate": bool}."""
    share = store.coverage()
    bad = share < min_share
    if bad:
        warnings.warn(f"{stage}: only {100 * share:.1f}% of the abnormal training samples have a TGS kernel in "
                      f"their pseudo-labels (source {store.tgs_cfg.source!r}); this stage is reported as degenerate.",
                      stacklevel=3)
    return {"pseudo_label_coverage": share, "pseudo_labels_degenerate": bool(bad)}


def loss_trend(history: list[dict[str, float]], key: str = "total") -> float | None:
    """How much the loss still moved in the last fifth of training: (mean of the last fifth of the logged values
    - mean of the fifth before it) / mean of the last fifth. Negative = still falling. None with fewer than 10
    logged values. Batch-to-batch noise makes single values useless; fifths average it out. |trend| < 0.1 reads
    as flat (trained long enough)."""
    values = np.asarray([h[key] for h in history if key in h], dtype=np.float64)
    n = len(values) // 5
    if n < 2:
        return None
    last, before = values[-n:].mean(), values[-2 * n:-n].mean()
    return float((last - before) / last) if last > 0 else 0.0


def training_health(store: PseudoLabels, source: str, history: list[dict[str, float]], stage: str) -> dict[str, Any]:
    """What a stage's metrics say about its training: pseudo-label coverage, refreshes, loss trend."""
    out: dict[str, Any] = {"pseudo_label_source": source, "loss_trend_last_fifth": loss_trend(history)}
    if source != "self":
        out.update(check_coverage(store, stage))
        out["pseudo_label_refreshes"] = int(store.refreshes)
    return out
