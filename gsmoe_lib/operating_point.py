"""Operating points: a threshold turns snippet scores into alarms (the alarm-threshold explorer, `gsmoe score`).

The curve metrics of `metrics.py` (AUC, AP) rank; an operator needs one threshold and what it costs.
An alarm is raised on every frame whose snippet score is >= the threshold (a snippet's score covers its
16 frames, `SNIPPET_FRAMES`). Precision, recall and F1 count frames pooled over all videos, as the curve
metrics do. A *false alarm* is what an operator would see as one spurious alert: a maximal run of
consecutive alarm frames inside one video that contains no anomalous frame. A run that touches an anomaly,
however long, is not a false alarm; a run never crosses from one video into the next. False alarms per hour
divide the count by the duration of all given videos (frames / fps / 3600), normal and abnormal alike.
Conventions where a ratio is 0 / 0: precision with no alarm frame is 1 (nothing false was raised, the end
point of scikit-learn's precision-recall curve); recall without anomalous frames is NaN.
Because a snippet's frames are alarmed together, all of this is computed on snippets with per-snippet
counts of anomalous frames, never on the 16x longer frame arrays.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from gsmoe_lib.data.ground_truth import SNIPPET_FRAMES as FRAMES_PER_SNIPPET  # the one definition
from gsmoe_lib.metrics import video_arrays


def _snippet_arrays(
    video_scores: Mapping[str, np.ndarray], frame_labels: Mapping[str, np.ndarray], factor: int
) -> tuple[np.ndarray, np.ndarray]:
    """All videos' snippets concatenated with one separator between videos.

    Returns scores [N] (float64, -inf at separators, so no threshold alarms them) and the number of
    anomalous frames of each snippet [N] (0 at separators).
    """
    scores_parts, anomalous_parts = [], []
    for name, scores in video_scores.items():
        s, labels = video_arrays(name, scores, frame_labels, factor)  # [T], [T*factor]
        scores_parts += [s, np.array([-np.inf])]
        anomalous_parts += [labels.reshape(s.size, factor).sum(axis=1, dtype=np.int64), np.zeros(1, np.int64)]
    if not scores_parts:
        raise ValueError("no videos given")
    return np.concatenate(scores_parts), np.concatenate(anomalous_parts)


def _hours(scores: np.ndarray, factor: int, fps: float) -> float:
    """The duration of all videos in `scores` [N] (snippets and -inf separators), in hours."""
    return int(np.count_nonzero(np.isfinite(scores))) * factor / fps / 3600.0


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
    alarm = scores >= threshold  # [N]; separators (-inf) never alarm
    tp = int(anomalous[alarm].sum())
    alarm_frames = int(np.count_nonzero(alarm)) * factor
    positives = int(anomalous.sum())
    precision = tp / alarm_frames if alarm_frames else 1.0
    recall = tp / positives if positives else math.nan
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    false_alarms = _count_false_alarms(alarm, anomalous)
    hours = _hours(scores, factor, fps)
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
    hours = _hours(scores, factor, fps)
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
