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


def _frames_per_video(
    video_scores: Mapping[str, np.ndarray],
    frame_labels: Mapping[str, np.ndarray],
    factor: int,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name -> (frame scores [T*factor] float64, frame labels [T*factor] uint8), in `video_scores` order.

    Checks what would otherwise fail far from its cause (or silently misalign the concatenation):
    missing labels, scores that are not [T], non-finite scores, and a length mismatch.
    """
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, scores in video_scores.items():
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
        frames = expand_to_frames(scores, factor)
        if frames.size != labels.size:
            raise ValueError(
                f"video {name!r}: {scores.size} snippet scores x {factor} = {frames.size} frames, "
                f"but its frame labels have {labels.size} frames"
            )
        out[name] = (frames, labels)
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
# The paper's numbers, and our numbers beside them

# Percent, as printed. Keys: (dataset, row, metric). Rows: "ur-dmu" and "gs-moe" from Table 1 (state of
# the art); "baseline", "tgs", "experts", "gate" from Table 2 (the ablation, one row per training stage);
# "gate-no-features" from Table 3; "clusters-5/6/7" from Table 5. The paper disagrees with itself on
# UR-DMU's XD-Violence AP_A (Table 1: 83.94, Table 2 baseline: 82.91); both are kept under their rows.
# The paper does not say which AP convention it uses, so its AP is shown beside both of ours.
# "sultani": Table 1's MIL (Sultani et al. 2018) with I3D features, UCF-Crime AUC only (its XD-Violence
# numbers, AP 75.68 / AP_A 78.61, are C3D's and are not shown beside our I3D-shaped features).
PAPER_NUMBERS: dict[tuple[str, str, str], float] = {
    ("ucf-crime", "sultani", "auc"): 77.42,
    ("ucf-crime", "ur-dmu", "auc"): 86.97,
    ("ucf-crime", "ur-dmu", "auc_abnormal"): 70.81,
    ("xd-violence", "ur-dmu", "ap"): 81.66,
    ("xd-violence", "ur-dmu", "ap_abnormal"): 83.94,
    ("ucf-crime", "gs-moe", "auc"): 91.58,
    ("ucf-crime", "gs-moe", "auc_abnormal"): 83.86,
    ("xd-violence", "gs-moe", "ap"): 82.89,
    ("xd-violence", "gs-moe", "ap_abnormal"): 85.74,
    ("ucf-crime", "baseline", "auc"): 86.97,
    ("xd-violence", "baseline", "auc"): 94.07,
    ("ucf-crime", "baseline", "ap_abnormal"): 45.65,
    ("xd-violence", "baseline", "ap_abnormal"): 82.91,
    ("ucf-crime", "tgs", "auc"): 88.74,
    ("xd-violence", "tgs", "auc"): 94.13,
    ("ucf-crime", "tgs", "ap_abnormal"): 46.01,
    ("xd-violence", "tgs", "ap_abnormal"): 83.39,
    ("ucf-crime", "experts", "auc"): 89.53,
    ("xd-violence", "experts", "auc"): 94.29,
    ("ucf-crime", "experts", "ap_abnormal"): 47.17,
    ("xd-violence", "experts", "ap_abnormal"): 84.16,
    ("ucf-crime", "gate", "auc"): 91.58,
    ("xd-violence", "gate", "auc"): 94.52,
    ("ucf-crime", "gate", "ap_abnormal"): 51.63,
    ("xd-violence", "gate", "ap_abnormal"): 85.74,
    ("ucf-crime", "gate-no-features", "auc"): 90.98,
    ("xd-violence", "gate-no-features", "ap_abnormal"): 81.45,
    ("ucf-crime", "clusters-5", "auc"): 87.35,
    ("ucf-crime", "clusters-6", "auc"): 88.03,
    ("ucf-crime", "clusters-7", "auc"): 88.58,
}

# Table 4 (UCF-Crime, percent): class-wise AUC of the full GS-MoE ("unmasked") and with that class's
# expert's scores zeroed before the gate ("masked").
PAPER_CLASSWISE_AUC: dict[str, dict[str, float]] = {
    "unmasked": {
        "Abuse": 86.37, "Arrest": 55.48, "Arson": 61.73, "Assault": 63.12, "Burglary": 53.65,
        "Explosion": 57.04, "Fighting": 65.14, "RoadAccidents": 65.22, "Robbery": 72.37,
        "Shooting": 60.89, "Shoplifting": 54.73, "Stealing": 77.62, "Vandalism": 57.43,
    },
    "masked": {
        "Abuse": 50.02, "Arrest": 50.51, "Arson": 49.27, "Assault": 50.72, "Burglary": 49.49,
        "Explosion": 49.92, "Fighting": 49.95, "RoadAccidents": 49.91, "Robbery": 50.04,
        "Shooting": 49.20, "Shoplifting": 49.39, "Stealing": 50.52, "Vandalism": 49.87,
    },
}

METRIC_NAMES: dict[str, str] = {
    "auc": "AUC",
    "auc_abnormal": "AUC_A",
    "ap": "AP",
    "ap_trapz": "AP (trapz)",
    "ap_abnormal": "AP_A",
    "ap_abnormal_trapz": "AP_A (trapz)",
}

# Which paper number each of our metrics is compared with (both AP conventions face the paper's AP).
_PAPER_METRIC: dict[str, str] = {"ap_trapz": "ap", "ap_abnormal_trapz": "ap_abnormal"}


def _percent(value: float | None) -> str:
    if value is None:
        return "–"
    if math.isnan(value):
        return "nan"
    return f"{value:.2f}"


def metric_table(
    results: Mapping[str, Mapping[str, float]],
    dataset: str,
    metrics: Sequence[str] = ("auc", "auc_abnormal", "ap", "ap_trapz", "ap_abnormal", "ap_abnormal_trapz"),
) -> str:
    """A markdown table of our metrics beside the paper's, in percent.

    results: row -> metrics dict as returned by `evaluate_scores` (fractions); rows named like the keys
    of `PAPER_NUMBERS` ("baseline", "tgs", "experts", "gate", "gs-moe", ...) get the paper's number beside
    ours, other rows show "–" in the paper columns. dataset: "ucf-crime" or "xd-violence".
    """
    header = ["row"]
    for m in metrics:
        name = METRIC_NAMES.get(m, m)
        header += [f"{name} ours (%)", f"{name} paper (%)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row, values in results.items():
        cells = [row]
        for m in metrics:
            ours = values.get(m)
            paper = PAPER_NUMBERS.get((dataset, row, _PAPER_METRIC.get(m, m)))
            cells += [_percent(None if ours is None else 100.0 * float(ours)), _percent(paper)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------------
# Operating points: a threshold turns scores into alarms (the alarm-threshold explorer, `gsmoe score`)
#
# An alarm is raised on every frame whose snippet score is >= the threshold (a snippet's score covers its
# 16 frames). Precision, recall and F1 count frames pooled over all videos, as the curve metrics above.
# A *false alarm* is what an operator would see as one spurious alert: a maximal run of consecutive alarm
# frames inside one video that contains no anomalous frame. A run that touches an anomaly, however long,
# is not a false alarm; a run never crosses from one video into the next. False alarms per hour divide the
# count by the duration of all given videos (frames / fps / 3600), normal and abnormal alike.
# Conventions where a ratio is 0 / 0: precision with no alarm frame is 1 (nothing false was raised, the
# end point of scikit-learn's precision-recall curve); recall without anomalous frames is NaN.
# Because a snippet's frames are alarmed together, all of this is computed on snippets with per-snippet
# counts of anomalous frames, never on the 16x longer frame arrays.


def _snippet_arrays(
    video_scores: Mapping[str, np.ndarray], frame_labels: Mapping[str, np.ndarray], factor: int
) -> tuple[np.ndarray, np.ndarray]:
    """All videos' snippets concatenated with one separator between videos.

    Returns scores [N] (float64, -inf at separators, so no threshold alarms them) and the number of
    anomalous frames of each snippet [N] (0 at separators).
    """
    scores_parts, anomalous_parts = [], []
    for name, scores in video_scores.items():
        if name not in frame_labels:
            raise ValueError(f"video {name!r} has scores but no frame labels")
        s = np.asarray(scores, dtype=np.float64)
        if s.ndim != 1:
            raise ValueError(f"video {name!r}: scores must be one per snippet [T], got shape {s.shape}")
        if not np.all(np.isfinite(s)):
            raise ValueError(f"video {name!r}: scores contain NaN or infinite values")
        labels = np.asarray(frame_labels[name]).astype(np.int64).ravel()
        if labels.size != s.size * factor:
            raise ValueError(f"video {name!r}: {s.size} snippet scores x {factor} = {s.size * factor} frames, "
                             f"but its frame labels have {labels.size} frames")
        scores_parts += [s, np.array([-np.inf])]
        anomalous_parts += [labels.reshape(s.size, factor).sum(axis=1), np.zeros(1, np.int64)]
    if not scores_parts:
        raise ValueError("no videos given")
    return np.concatenate(scores_parts), np.concatenate(anomalous_parts)


def _count_false_alarms(alarm: np.ndarray, anomalous: np.ndarray) -> int:
    """Maximal runs of True in `alarm` [N] whose snippets hold no anomalous frame."""
    edges = np.diff(np.concatenate([[0], alarm.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)  # [R] run [start, end)
    cum = np.concatenate([[0], np.cumsum(anomalous)])
    return int(np.count_nonzero(cum[ends] - cum[starts] == 0))


def operating_point(
    video_scores: Mapping[str, np.ndarray],
    frame_labels: Mapping[str, np.ndarray],
    threshold: float,
    fps: float = 30.0,
    factor: int = FRAMES_PER_SNIPPET,
) -> dict[str, float | int]:
    """Frame-level precision, recall, F1 and false alarms per hour of alarms at `threshold`.

    video_scores: name -> snippet scores [T]; frame_labels: name -> [T*factor] (0 normal, 1 anomalous);
    fps: frames per second of the videos (UCF-Crime 30, XD-Violence 24), only used for the hours.
    Returns threshold, precision, recall, f1, false_alarms (count), hours, false_alarms_per_hour, fps.
    """
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    scores, anomalous = _snippet_arrays(video_scores, frame_labels, factor)
    real = np.isfinite(scores)
    alarm = scores >= threshold  # [N]; separators (-inf) never alarm
    tp = int(anomalous[alarm].sum())
    alarm_frames = int(np.count_nonzero(alarm)) * factor
    positives = int(anomalous.sum())
    precision = tp / alarm_frames if alarm_frames else 1.0
    recall = tp / positives if positives else math.nan
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    false_alarms = _count_false_alarms(alarm, anomalous)
    hours = int(np.count_nonzero(real)) * factor / fps / 3600.0
    return {
        "threshold": float(threshold),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "false_alarms": false_alarms,
        "hours": hours,
        "false_alarms_per_hour": false_alarms / hours if hours > 0 else math.nan,
        "fps": float(fps),
    }


def false_alarm_curve(
    video_scores: Mapping[str, np.ndarray],
    frame_labels: Mapping[str, np.ndarray],
    factor: int = FRAMES_PER_SNIPPET,
) -> tuple[np.ndarray, np.ndarray]:
    """The number of false alarms at every distinct threshold: (thresholds [U] descending, counts [U]).

    counts[i] is the false-alarm count of `operating_point` at thresholds[i] (the distinct snippet
    scores). The count is not monotone in the threshold (raising it can split one run into two), so every
    candidate is evaluated. Snippets are switched on from the highest score down and adjacent alarm runs
    are merged as intervals, so the whole curve costs one pass over the snippets rather than one per
    threshold.
    """
    scores, anomalous = _snippet_arrays(video_scores, frame_labels, factor)
    n = scores.size
    order = np.argsort(-scores, kind="stable")
    order = order[np.isfinite(scores[order])]
    active = np.zeros(n, dtype=bool)
    # A run [a, b] of active snippets is stored at its ends: left[b] = a, right[a] = b, and dirty[a] =
    # dirty[b] = whether it holds an anomalous frame.
    left, right = np.arange(n), np.arange(n)
    dirty = anomalous > 0
    count = 0
    thresholds, counts = [], []
    s_sorted = scores[order]
    for j, i in enumerate(order.tolist()):
        a, b, d = i, i, bool(dirty[i])
        if i > 0 and active[i - 1]:
            a = int(left[i - 1])
            count -= not dirty[a]
            d = d or bool(dirty[a])
        if i + 1 < n and active[i + 1]:
            b = int(right[i + 1])
            count -= not dirty[b]
            d = d or bool(dirty[b])
        active[i] = True
        left[b], right[a] = a, b
        dirty[a] = dirty[b] = d
        count += not d
        if j + 1 == len(order) or s_sorted[j + 1] != s_sorted[j]:  # all snippets tied at this score are on
            thresholds.append(float(s_sorted[j]))
            counts.append(count)
    return np.asarray(thresholds), np.asarray(counts, dtype=np.int64)


def threshold_for_false_alarm_rate(
    video_scores: Mapping[str, np.ndarray],
    frame_labels: Mapping[str, np.ndarray],
    max_false_alarms_per_hour: float,
    fps: float = 30.0,
    factor: int = FRAMES_PER_SNIPPET,
) -> float:
    """The lowest threshold (the highest recall) whose false alarms per hour stay <= the target.

    Candidates are the distinct snippet scores; when every one of them exceeds the target, the threshold
    just above the highest score (no alarm at all) is returned.
    """
    if max_false_alarms_per_hour < 0:
        raise ValueError(f"the target false-alarm rate must be >= 0, got {max_false_alarms_per_hour}")
    scores, _ = _snippet_arrays(video_scores, frame_labels, factor)
    hours = int(np.count_nonzero(np.isfinite(scores))) * factor / fps / 3600.0
    thresholds, counts = false_alarm_curve(video_scores, frame_labels, factor)
    ok = counts / hours <= max_false_alarms_per_hour
    if ok.any():
        return float(thresholds[ok].min())
    return float(np.nextafter(thresholds.max(), np.inf))


def operating_curve(
    video_scores: Mapping[str, np.ndarray],
    frame_labels: Mapping[str, np.ndarray],
    thresholds: Sequence[float] | np.ndarray,
    fps: float = 30.0,
    factor: int = FRAMES_PER_SNIPPET,
) -> dict[str, np.ndarray]:
    """`operating_point` at each of `thresholds`: name -> array [len(thresholds)] (precision, recall, ...)."""
    points = [operating_point(video_scores, frame_labels, float(t), fps, factor) for t in thresholds]
    return {k: np.asarray([p[k] for p in points], dtype=np.float64) for k in points[0]} if points else {}


# ----------------------------------------------------------------------------------------------------
# Collapse: a stage whose test scores are (nearly) constant has no ranking to measure

# A stage whose test scores have a pooled standard deviation below this is "collapsed": its AUC / AP are
# then set by float rounding and tie-breaking, not by what it learned, and are reported as "collapsed",
# not as metrics (issue 12). Scores are probabilities in [0, 1]; the XD quick run's collapsed experts
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
