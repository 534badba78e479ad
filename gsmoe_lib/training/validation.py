"""Weakly-supervised validation: how every stage chooses its length without looking at test labels.

A stratified share of the TRAINING videos is held out (`validation_split`: `ValidationConfig.share`, 15% by
default, every class represented, the normal videos too; deterministic from `ValidationConfig.split_seed`;
all crops of a video on the same side). Only their video-level labels are used, as in training.

Every `validate_every` steps a stage scores the held-out videos (`video_scores`: the crops' snippet scores
averaged, then the mean of the top k, k the stage's MIL k) and records their video-level ROC AUC
(`video_auc`; the experts add each expert's own-class AUC, `own_class_auc`). With `selection="validation"`
(the default) the stage keeps the checkpoint with the best validation score and stops when it has not
improved (by `min_delta`) for `patience` validations, up to its `iterations` (the profile's maximum): `EarlyStopping`,
driven by `loop.fit` through a `Validation`. With `selection="fixed"` the stage trains its `iterations`
and the curve is only recorded (the earlier behaviour, and the way to draw train / validation curves).

This departs from UR-DMU's practice, which keeps the checkpoint with the best TEST AUC (UCF-Crime) or AP
(XD-Violence): a number chosen on the test labels is not a test result. docs/decisions.md ("Weakly-supervised validation").
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np
import torch

from gsmoe_lib.data.batching import TrainSet

SELECTIONS = ("validation", "fixed")
NORMAL = "Normal"  # the stratum of the normal videos


def video_strata(labels: Sequence[float], classes: Sequence[Sequence[str]]) -> list[str]:
    """The stratum of each video: its first anomaly class (an XD video with several labels: the first), or
    "Normal" for a normal video."""
    return [NORMAL if not lab or not cls else str(cls[0]) for lab, cls in zip(labels, classes)]


def validation_split(labels: Sequence[float], classes: Sequence[Sequence[str]], share: float, seed: int
                     ) -> np.ndarray:
    """Which videos are held out for validation: a bool mask [V], stratified by `video_strata`.

    Each stratum of n videos gives round(share · n) of them, at least 1 when n >= 2 (so every class with
    two or more training videos is represented, and keeps at least one for training); a stratum of one
    video keeps it for training. Which videos: a permutation drawn from a generator seeded with `seed`, per
    stratum in sorted order, so the split depends only on the seed and the list of videos, not on the run.
    """
    if not 0.0 <= share < 1.0:
        raise ValueError(f"validation.share must be in [0, 1), got {share}")
    strata = video_strata(labels, classes)
    held = np.zeros(len(strata), dtype=bool)
    if share == 0.0:
        return held
    gen = torch.Generator().manual_seed(int(seed))
    for stratum in sorted(set(strata)):
        members = np.flatnonzero(np.asarray(strata) == stratum)
        n = len(members)
        n_held = 0 if n < 2 else min(n - 1, max(1, int(round(share * n))))
        order = torch.randperm(n, generator=gen).numpy()
        held[members[order[:n_held]]] = True
    return held


class HeldOut(NamedTuple):
    """The held-out samples of a training set (a video's crops together) and the ones that train."""

    train_mask: torch.Tensor  # [N] bool: the samples a stage trains on
    rows: torch.Tensor  # [N'] indices of the held-out samples
    labels: torch.Tensor  # [N'] their video labels
    class_index: torch.Tensor  # [N', K] their classes (multi-hot)
    video_index: torch.Tensor  # [N'] their videos


def hold_out(labels: torch.Tensor, class_index: torch.Tensor, video_index: torch.Tensor, classes: Sequence[str],
             vcfg: Any) -> HeldOut:
    """Split samples (labels [N], class_index [N, K], video_index [N]) by `validation_split` of their videos
    (`vcfg`: a `config.ValidationConfig`). Every pooling of one training list (any number of segments, crops
    independent, on an axis or averaged) gives the same held-out videos."""
    check_config(vcfg)
    video_index = video_index.cpu()
    videos = torch.unique(video_index)  # sorted
    first = {}
    for i, v in enumerate(video_index.tolist()):
        first.setdefault(v, i)
    rows_of_video = torch.tensor([first[int(v)] for v in videos])
    v_labels = labels.cpu()[rows_of_video].tolist()
    v_classes = [[classes[k] for k in torch.nonzero(class_index.cpu()[r]).flatten().tolist()] for r in rows_of_video]
    held_video = torch.zeros(int(videos.max()) + 1 if len(videos) else 0, dtype=torch.bool)
    held_video[videos] = torch.from_numpy(validation_split(v_labels, v_classes, vcfg.share, vcfg.split_seed))
    held = held_video[video_index]  # [N]
    rows = torch.nonzero(held).flatten()
    return HeldOut(~held, rows, labels.cpu()[rows], class_index.cpu()[rows], video_index[rows])


def hold_out_set(train: TrainSet, vcfg: Any) -> HeldOut:
    """`hold_out` of a pooled TrainSet's samples."""
    return hold_out(train.labels, train.class_index, train.video_index, train.classes, vcfg)


def check_config(vcfg: Any) -> None:
    if vcfg.selection not in SELECTIONS:
        raise ValueError(f"validation.selection must be one of {', '.join(SELECTIONS)}, got {vcfg.selection!r}")
    if not 0.0 <= vcfg.share < 1.0:
        raise ValueError(f"validation.share must be in [0, 1), got {vcfg.share}")
    if vcfg.selection == "validation" and vcfg.share == 0.0:
        raise ValueError('validation.selection "validation" needs held-out videos: set validation.share > 0 '
                         '(e.g. 0.15), or selection "fixed"')


# ---------------------------------------------------------------------------------------------------
# The scores


def video_scores(sample_scores: torch.Tensor, video_index: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Video-level scores of the held-out videos: (videos [V'] (their video_index), scores [V', ...]).

    sample_scores [N, S] or [N, S, E] (E experts) of N samples (crops); a video's crops are averaged
    snippet by snippet, then the mean of its k highest snippets is its score (per expert with E).
    """
    videos, inverse = torch.unique(video_index.cpu(), return_inverse=True)
    s = sample_scores.detach().float().cpu()
    sums = torch.zeros((len(videos), *s.shape[1:])).index_add_(0, inverse, s)
    counts = torch.bincount(inverse, minlength=len(videos)).float()
    mean = sums / counts.view(-1, *([1] * (s.dim() - 1)))  # [V', S(, E)]
    k = max(1, min(k, mean.shape[1]))
    return videos, mean.topk(k, dim=1).values.mean(1)  # [V'(, E)]


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC, NaN when only one class is present (e.g. an expert's class without held-out videos)."""
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels)
    if labels.min() == labels.max():
        return math.nan
    return float(roc_auc_score(labels, np.asarray(scores)))


def video_auc(val: HeldOut, sample_scores: torch.Tensor, k: int) -> float:
    """Video-level ROC AUC of the held-out videos' top-k scores (`video_scores`) against their labels.

    sample_scores [N', S]: the scores of `val.rows`."""
    videos, scores = video_scores(sample_scores, val.video_index, k)
    labels = _per_video(val.labels, val.video_index, videos)
    return roc_auc(labels.numpy(), scores.numpy())


def own_class_auc(val: HeldOut, expert_scores: torch.Tensor, k: int, own: torch.Tensor) -> list[float]:
    """Each expert's own-class validation AUC: expert e's video scores (expert_scores [N', S, E] of
    `val.rows`) on the held-out abnormal videos of its class or cluster (`own` [N', E]: sample in expert e's
    pool) against the held-out normal videos. NaN where an expert has no held-out video of its own."""
    videos, scores = video_scores(expert_scores, val.video_index, k)  # [V', E]
    labels = _per_video(val.labels, val.video_index, videos)  # [V']
    own_v = _per_video(own, val.video_index, videos).bool() & (labels[:, None] == 1)  # [V', E]
    normal = labels == 0
    out = []
    for e in range(scores.shape[1]):
        keep = own_v[:, e] | normal
        out.append(roc_auc(own_v[keep, e].numpy().astype(int), scores[keep, e].numpy()))
    return out


def _per_video(values: torch.Tensor, video_index: torch.Tensor, videos: torch.Tensor) -> torch.Tensor:
    """values [N, ...] per sample -> [V', ...] per video of `videos` (a video's crops share their labels)."""
    first = {int(v): i for i, v in reversed(list(enumerate(video_index.cpu().tolist())))}
    return values.cpu()[torch.tensor([first[int(v)] for v in videos])]


# ---------------------------------------------------------------------------------------------------
# What `fit` does with it


@dataclass
class Validation:
    """How `loop.fit` validates a stage.

    score() -> {"score": float, ...}: the stage's validation score (higher is better) and extra numbers to
    record (e.g. each expert's own-class AUC). Called every `every` steps and after the last step.
    `select`: keep the best checkpoint and stop after `patience` validations without improvement
    (selection "validation"); False: record only (selection "fixed"). Validations before `start` (e.g. a
    TGS stage's first epoch, L_topk-norm only) are recorded but neither selected nor counted. `keep`: the
    names of `fit`'s modules whose best state is kept (None: all).
    """

    score: Callable[[], dict[str, Any]]
    every: int
    patience: int
    select: bool = True
    start: int = 0
    keep: tuple[str, ...] | None = None
    min_delta: float = 0.0  # an improvement smaller than this does not reset the patience


class EarlyStopping:
    """The early-stopping state of one stage: best score, its iteration and modules' state, validations
    since. Saved in the partial checkpoint (`state_dict`), so a resumed stage stops where an uninterrupted
    one would."""

    def __init__(self, patience: int, min_delta: float = 0.0):
        if patience < 1:
            raise ValueError(f"patience must be >= 1 validation, got {patience}")
        self.patience, self.min_delta = patience, min_delta
        self.best_score = -math.inf
        self.reference = -math.inf  # the score an improvement must beat by min_delta to reset the patience
        self.best_iteration = 0
        self.best_state: dict[str, Any] | None = None
        self.since_best = 0

    def update(self, iteration: int, score: float, modules: dict[str, torch.nn.Module],
               keep: Sequence[str] | None = None) -> bool:
        """Record a validation score; True when the stage should stop (patience exhausted).

        Any better score becomes the kept state; only one better by `min_delta` than the last such resets the
        patience (smaller gains are the noise of a small held-out set). A NaN score (e.g. a held-out split
        without an abnormal video) never counts as an improvement.
        """
        if score > self.best_score:  # False for NaN
            self.best_score, self.best_iteration = float(score), iteration
            names = list(modules) if keep is None else list(keep)
            self.best_state = {n: copy.deepcopy(modules[n].state_dict()) for n in names}
        if score >= self.reference + self.min_delta and score > self.reference:
            self.reference, self.since_best = float(score), 0
            return False
        self.since_best += 1
        return self.since_best >= self.patience

    def restore(self, modules: dict[str, torch.nn.Module]) -> None:
        """Load the best state into `modules` (nothing when no validation improved on -inf)."""
        for name, state in (self.best_state or {}).items():
            modules[name].load_state_dict(state)

    def state_dict(self) -> dict[str, Any]:
        return {"patience": self.patience, "min_delta": self.min_delta, "best_score": self.best_score,
                "reference": self.reference, "best_iteration": self.best_iteration, "best_state": self.best_state,
                "since_best": self.since_best}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.patience, self.best_score = int(state["patience"]), float(state["best_score"])
        self.min_delta, self.reference = float(state["min_delta"]), float(state["reference"])
        self.best_iteration, self.since_best = int(state["best_iteration"]), int(state["since_best"])
        self.best_state = state["best_state"]


def stage_validation(vcfg: Any, settings: Any, val: HeldOut, score: Callable[[], dict[str, Any]], start: int = 0,
                     keep: tuple[str, ...] | None = None) -> Validation | None:
    """The `Validation` of a stage from the run's `ValidationConfig` and the stage's settings
    (`validate_every`, `patience`); None when nothing is held out (selection "fixed" with share 0)."""
    check_config(vcfg)
    if len(val.rows) == 0:
        return None
    return Validation(score, settings.validate_every, settings.patience, vcfg.selection == "validation", start, keep,
                      vcfg.min_delta)


def validation_rows(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The validation rows of a stage's history.json ({"iteration", "validation", ...})."""
    return [r for r in history if "validation" in r]


def selection_summary(history: list[dict[str, Any]]) -> dict[str, Any]:
    """What a stage's metrics.json says about its length: the selected iteration and its validation score,
    the last iteration trained and the number of validations."""
    rows = validation_rows(history)
    trained = max((int(r["iteration"]) for r in history), default=0)
    if not rows:
        return {"trained_iterations": trained}
    best = [r for r in rows if r.get("selected")]
    out: dict[str, Any] = {"trained_iterations": trained, "validations": len(rows),
                           "validation_last": rows[-1]["validation"]}
    if best:
        out.update(selected_iteration=int(best[-1]["iteration"]), validation_best=best[-1]["validation"])
    return out
