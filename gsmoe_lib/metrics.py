"""Frame-level metrics of weakly-supervised video anomaly detection.

A model scores snippets (16 frames each); the benchmarks score frames. The protocol shared by UR-DMU,
RTFM, VadCLIP and the GS-MoE paper (REFERENCE.md §4):

1. scores per snippet are averaged over the crops of the video (`average_crops`, [C, T] -> [T]);
2. each snippet score is repeated 16 times, once per frame (`expand_to_frames`, [T] -> [T*16]);
3. the frames of all test videos are concatenated, in the order of the test list, and one curve is
   computed over the pool (a pooled metric, not a mean over videos).

Metrics (all returned as fractions in [0, 1]; tables show percent):

- ``auc``: ROC AUC over all test frames (the UCF-Crime headline).
- ``auc_abnormal`` (AUC_A): the same over the frames of abnormal test videos only, so that the many easy
  normal videos cannot lift the number.
- ``ap``: area under the precision-recall curve over all frames (the XD-Violence headline). Two conventions
  exist and give different numbers, so we report both:
  ``ap`` is scikit-learn's `average_precision_score` (step-wise sum, VadCLIP's convention);
  ``ap_trapz`` is the trapezoid rule over the curve, ``auc(recall, precision)``, as UR-DMU and XDVioDet
  compute it. The paper does not say which one it uses; it builds on UR-DMU's code, so ``ap_trapz`` is
  the likelier match (an inference, not a fact).
- ``ap_abnormal`` / ``ap_abnormal_trapz`` (AP_A): the same over abnormal videos only.
- class-wise AUC (paper Fig. 4 and Table 4): per anomaly class, the frame-level AUC over that class's
  test videos. The paper does not say whether normal test videos are pooled in. The parameter
  ``normal_videos`` decides: ``"none"`` (default) uses the class's abnormal videos only, so the AUC
  measures localisation inside those videos; this reading matches Table 4, where masking the class's
  expert gives AUC ≈ 50 (chance), which pooling thousands of easy normal frames in would not give.
  ``"all"`` adds every normal test video to each class.

Elsewhere: the paper's numbers, the metric names and every table of them are in `reporting.py`; a threshold
and its false alarms (operating points) in `operating_point.py`.

A metric that is undefined on the given frames (one class only, e.g. AUC_A of a split without abnormal
videos) is NaN with an `UndefinedMetricWarning`, never an exception: a smoke run on tiny data should still
write its metrics file.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import auc as _trapezoid_area
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

from gsmoe_lib.data.ground_truth import SNIPPET_FRAMES as FRAMES_PER_SNIPPET  # the one definition

# ----------------------------------------------------------------------------------------------------
# Snippets to frames


def average_crops(scores: np.ndarray) -> np.ndarray:
    """Mean over the crop axis: [C, T] -> [T]. A [T] input (one crop) is returned unchanged."""
    scores = np.asarray(scores)
    if scores.ndim == 1:
        return scores
    if scores.ndim != 2:
        raise ValueError(f"average_crops expects scores [C, T] or [T], got shape {scores.shape}")
    return scores.mean(axis=0)


def expand_to_frames(scores: np.ndarray, factor: int = FRAMES_PER_SNIPPET) -> np.ndarray:
    """Repeat each snippet score `factor` times: [T] -> [T*factor] (snippet t covers frames 16t..16t+15)."""
    scores = np.asarray(scores)
    if scores.ndim != 1:
        raise ValueError(f"expand_to_frames expects scores [T], got shape {scores.shape}")
    return np.repeat(scores, factor)


# ----------------------------------------------------------------------------------------------------
# Curve metrics on flat frame arrays, NaN (with a warning) where undefined


def _defined(labels: np.ndarray, what: str) -> bool:
    """True when `labels` holds both classes; otherwise warn that `what` is undefined."""
    n_pos = int(np.count_nonzero(labels))
    if labels.size == 0 or n_pos == 0 or n_pos == labels.size:
        warnings.warn(
            f"{what} is undefined on {labels.size} frames with {n_pos} anomalous: "
            "both normal and anomalous frames are needed; reporting NaN",
            UndefinedMetricWarning,
            stacklevel=3,
        )
        return False
    return True


def roc_auc(labels: np.ndarray, scores: np.ndarray, what: str = "AUC") -> float:
    """Frame-level ROC AUC; NaN if `labels` has one class only."""
    if not _defined(labels, what):
        return math.nan
    return float(roc_auc_score(labels, scores))


def average_precision(labels: np.ndarray, scores: np.ndarray, what: str = "AP") -> float:
    """Step-wise average precision (scikit-learn, VadCLIP); NaN if `labels` has one class only."""
    if not _defined(labels, what):
        return math.nan
    return float(average_precision_score(labels, scores))


def ap_trapezoid(labels: np.ndarray, scores: np.ndarray, what: str = "AP (trapezoid)") -> float:
    """Trapezoid area under the precision-recall curve, ``auc(recall, precision)`` (UR-DMU, XDVioDet).

    Uses every threshold of `precision_recall_curve` (its default, no dropped points) plus its closing
    point (recall 0, precision 1), exactly as those code bases do.
    """
    if not _defined(labels, what):
        return math.nan
    precision, recall, _ = precision_recall_curve(labels, scores)
    return float(_trapezoid_area(recall, precision))


# ----------------------------------------------------------------------------------------------------
# Per-video scores to pooled frame arrays


def video_arrays(name: str, scores: np.ndarray, frame_labels: Mapping[str, np.ndarray],
                 factor: int = FRAMES_PER_SNIPPET) -> tuple[np.ndarray, np.ndarray]:
    """One video's checked scores and labels: (snippet scores [T] float64, frame labels [T*factor] uint8).

    Checks what would otherwise fail far from its cause (or silently misalign a concatenation): missing
    labels, scores that are not [T], non-finite scores, and a length mismatch. Shared by the pooled metrics
    here and the operating points (`operating_point.py`).
    """
    if name not in frame_labels:
        raise ValueError(f"video {name!r} has scores but no frame labels")
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1:
        raise ValueError(
            f"video {name!r}: scores must be one per snippet [T], got shape {scores.shape} "
            "(average the crops first with average_crops)"
        )
    if not np.all(np.isfinite(scores)):
        raise ValueError(f"video {name!r}: scores contain NaN or infinite values")
    labels = np.asarray(frame_labels[name]).astype(np.uint8).ravel()
    if scores.size * factor != labels.size:
        raise ValueError(
            f"video {name!r}: {scores.size} snippet scores x {factor} = {scores.size * factor} frames, "
            f"but its frame labels have {labels.size} frames"
        )
    return scores, labels


def _frames_per_video(
    video_scores: Mapping[str, np.ndarray],
    frame_labels: Mapping[str, np.ndarray],
    factor: int,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name -> (frame scores [T*factor] float64, frame labels [T*factor] uint8), in `video_scores` order."""
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, scores in video_scores.items():
        scores, labels = video_arrays(name, scores, frame_labels, factor)
        out[name] = (expand_to_frames(scores, factor), labels)
    return out


def _pool(
    frames: Mapping[str, tuple[np.ndarray, np.ndarray]], names: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate the frames of `names`: (labels [N], scores [N]); empty arrays for no names."""
    if not names:
        return np.zeros(0, np.uint8), np.zeros(0, np.float64)
    labels = np.concatenate([frames[n][1] for n in names])
    scores = np.concatenate([frames[n][0] for n in names])
    return labels, scores


def evaluate_scores(
    video_scores: Mapping[str, np.ndarray],
    frame_labels: Mapping[str, np.ndarray],
    abnormal: Mapping[str, bool],
    factor: int = FRAMES_PER_SNIPPET,
) -> dict[str, float | int]:
    """The pooled frame-level metrics of one test split.

    video_scores: name -> snippet scores [T] (crops already averaged); their order is the pooling order.
    frame_labels: name -> frame labels [T*factor] (0 normal, 1 anomalous).
    abnormal: name -> whether the video is an abnormal video (selects the AUC_A / AP_A subset).
    Returns fractions ``auc, auc_abnormal, ap, ap_trapz, ap_abnormal, ap_abnormal_trapz`` and the counts
    ``n_videos, n_frames``.
    """
    frames = _frames_per_video(video_scores, frame_labels, factor)
    missing = [n for n in frames if n not in abnormal]
    if missing:
        raise ValueError(f"{len(missing)} videos have no abnormal flag, e.g. {missing[0]!r}")
    names = list(frames)
    abnormal_names = [n for n in names if abnormal[n]]

    labels, scores = _pool(frames, names)
    labels_a, scores_a = _pool(frames, abnormal_names)
    return {
        "auc": roc_auc(labels, scores, "AUC"),
        "auc_abnormal": roc_auc(labels_a, scores_a, "AUC_A (abnormal videos)"),
        "ap": average_precision(labels, scores, "AP"),
        "ap_trapz": ap_trapezoid(labels, scores, "AP (trapezoid)"),
        "ap_abnormal": average_precision(labels_a, scores_a, "AP_A (abnormal videos)"),
        "ap_abnormal_trapz": ap_trapezoid(labels_a, scores_a, "AP_A (abnormal videos, trapezoid)"),
        "n_videos": len(names),
        "n_frames": int(labels.size),
    }


def classwise_auc(
    video_scores: Mapping[str, np.ndarray],
    frame_labels: Mapping[str, np.ndarray],
    video_classes: Mapping[str, tuple[str, ...]],
    normal_videos: Literal["none", "all"] = "none",
    classes: Sequence[str] | None = None,
    factor: int = FRAMES_PER_SNIPPET,
) -> dict[str, float]:
    """Frame-level AUC per anomaly class (paper Fig. 4 / Table 4), as fractions.

    video_classes: name -> the video's anomaly classes (``()`` for a normal video; XD-Violence videos may
    have several and then count for each of them).
    normal_videos: ``"none"`` pools only the class's abnormal videos (default, see the module docstring);
    ``"all"`` adds every normal test video to every class.
    classes: the classes to report and their order (e.g. ``dataset.classes``); default: the sorted classes
    that occur in `video_classes`. A class without test videos is NaN.
    """
    if normal_videos not in ("none", "all"):
        raise ValueError(f"normal_videos must be 'none' or 'all', got {normal_videos!r}")
    frames = _frames_per_video(video_scores, frame_labels, factor)
    missing = [n for n in frames if n not in video_classes]
    if missing:
        raise ValueError(f"{len(missing)} videos have no class entry, e.g. {missing[0]!r}")
    names = list(frames)
    if classes is None:
        classes = sorted({c for n in names for c in video_classes[n]})
    normal_names = [n for n in names if not video_classes[n]] if normal_videos == "all" else []

    result: dict[str, float] = {}
    for cls in classes:
        members = [n for n in names if cls in video_classes[n]] + normal_names
        labels, scores = _pool(frames, members)
        result[cls] = roc_auc(labels, scores, f"class-wise AUC of {cls!r}")
    return result


# ----------------------------------------------------------------------------------------------------
# Collapse: a stage whose test scores are (nearly) constant has no ranking to measure

# A stage whose test scores have a pooled standard deviation below this is "collapsed": its AUC / AP are
# then set by float rounding and tie-breaking, not by what it learned, and are reported as "collapsed",
# not as metrics. Scores are probabilities in [0, 1]; the XD quick run's collapsed experts
# and gate had std 1.9e-4 and 1.5e-8, the working stages 0.1 to 0.3.
COLLAPSE_STD = 1e-3


def score_spread(video_scores: Mapping[str, np.ndarray]) -> float:
    """The standard deviation of all test snippet scores pooled over the videos (population std, ddof 0).

    video_scores: name -> scores [T] (or [C, T], crops averaged first). NaN scores are ignored; no finite
    score at all raises ValueError.
    """
    if not video_scores:
        raise ValueError("score_spread: no videos")
    pooled = np.concatenate([np.asarray(average_crops(np.asarray(s)), dtype=np.float64).ravel()
                             for s in video_scores.values()])
    finite = pooled[np.isfinite(pooled)]
    if finite.size == 0:
        raise ValueError(f"score_spread: no finite score among {pooled.size} snippets")
    return float(finite.std())


def collapse_report(video_scores: Mapping[str, np.ndarray], threshold: float = COLLAPSE_STD) -> dict[str, Any]:
    """{"score_std": pooled std of the test scores, "collapsed": std < threshold} (added to every stage's metrics)."""
    std = score_spread(video_scores)
    return {"score_std": std, "collapsed": bool(std < threshold)}
