"""Metrics: snippets to frames, pooled AUC / AP against scikit-learn and hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_auc_score

from gsmoe_lib.metrics import (
    ap_trapezoid,
    average_crops,
    average_precision,
    classwise_auc,
    evaluate_scores,
    expand_to_frames,
    roc_auc,
)


def random_split(seed: int = 0, n_videos: int = 12):
    """Random snippet scores, frame labels with one window per abnormal video, abnormal flags."""
    rng = np.random.default_rng(seed)
    scores, labels, abnormal = {}, {}, {}
    for v in range(n_videos):
        name = f"video{v:02d}"
        t = int(rng.integers(3, 20))
        is_abnormal = v % 2 == 0
        frame_labels = np.zeros(t * 16, np.uint8)
        if is_abnormal:
            start = int(rng.integers(0, t * 16 - 10))
            frame_labels[start : start + int(rng.integers(5, 40))] = 1
        scores[name] = rng.random(t).astype(np.float32)
        labels[name] = frame_labels
        abnormal[name] = is_abnormal
    return scores, labels, abnormal


def test_average_crops_and_expand():
    scores = np.array([[0.0, 1.0, 0.5], [1.0, 0.0, 0.5]])  # [C=2, T=3]
    np.testing.assert_allclose(average_crops(scores), [0.5, 0.5, 0.5])
    np.testing.assert_allclose(average_crops(np.array([0.1, 0.2])), [0.1, 0.2])
    frames = expand_to_frames(np.array([0.1, 0.7]))
    assert frames.shape == (32,)
    np.testing.assert_allclose(frames[:16], 0.1)
    np.testing.assert_allclose(frames[16:], 0.7)
    np.testing.assert_allclose(expand_to_frames(np.array([1.0, 2.0]), factor=3), [1, 1, 1, 2, 2, 2])


def test_matches_sklearn_on_random_split():
    scores, labels, abnormal = random_split()
    m = evaluate_scores(scores, labels, abnormal)

    # reference: expand and concatenate by hand, in mapping order
    y = np.concatenate([labels[n] for n in scores])
    s = np.concatenate([np.repeat(scores[n], 16) for n in scores])
    ya = np.concatenate([labels[n] for n in scores if abnormal[n]])
    sa = np.concatenate([np.repeat(scores[n], 16) for n in scores if abnormal[n]])
    p, r, _ = precision_recall_curve(y, s)
    pa, ra, _ = precision_recall_curve(ya, sa)

    assert m["auc"] == pytest.approx(roc_auc_score(y, s))
    assert m["auc_abnormal"] == pytest.approx(roc_auc_score(ya, sa))
    assert m["ap"] == pytest.approx(average_precision_score(y, s))
    assert m["ap_trapz"] == pytest.approx(auc(r, p))
    assert m["ap_abnormal"] == pytest.approx(average_precision_score(ya, sa))
    assert m["ap_abnormal_trapz"] == pytest.approx(auc(ra, pa))
    assert m["n_videos"] == 12
    assert m["n_frames"] == y.size
    # the abnormal subset is a different pool, so its AUC differs from the pooled one
    assert m["auc"] != pytest.approx(m["auc_abnormal"])


def test_perfect_and_inverted_scores():
    labels = {"a": np.r_[np.zeros(32), np.ones(16)].astype(np.uint8), "n": np.zeros(32, np.uint8)}
    abnormal = {"a": True, "n": False}
    perfect = {"a": np.array([0.1, 0.2, 0.9]), "n": np.array([0.0, 0.3])}
    inverted = {k: 1.0 - v for k, v in perfect.items()}
    m = evaluate_scores(perfect, labels, abnormal)
    for key in ("auc", "auc_abnormal", "ap", "ap_trapz", "ap_abnormal", "ap_abnormal_trapz"):
        assert m[key] == pytest.approx(1.0), key
    m = evaluate_scores(inverted, labels, abnormal)
    assert m["auc"] == pytest.approx(0.0)
    assert m["auc_abnormal"] == pytest.approx(0.0)


def test_three_frame_case_by_hand():
    # labels [1, 0, 1], scores [0.9, 0.8, 0.3]. Thresholds from high to low:
    #   >= 0.9: precision 1,   recall 1/2
    #   >= 0.8: precision 1/2, recall 1/2
    #   >= 0.3: precision 2/3, recall 1
    # plus the closing point (recall 0, precision 1).
    # Trapezoid: 1/2 * (1 + 1)/2 + 0 + 1/2 * (1/2 + 2/3)/2 = 1/2 + 7/24 = 19/24.
    # Step-wise AP: 1/2 * 1 + 1/2 * 2/3 = 5/6.
    # ROC: positive-negative pairs ranked right: (0.9 > 0.8) yes, (0.3 > 0.8) no -> 1/2.
    y = np.array([1, 0, 1])
    s = np.array([0.9, 0.8, 0.3])
    assert ap_trapezoid(y, s) == pytest.approx(19 / 24)
    assert average_precision(y, s) == pytest.approx(5 / 6)
    assert roc_auc(y, s) == pytest.approx(0.5)


def test_length_mismatch_names_the_video():
    scores = {"Abuse028_x264": np.zeros(3)}
    labels = {"Abuse028_x264": np.zeros(47, np.uint8)}
    with pytest.raises(ValueError, match=r"Abuse028_x264.*48 frames.*47 frames"):
        evaluate_scores(scores, labels, {"Abuse028_x264": True})


def test_missing_labels_and_nan_scores_are_errors():
    with pytest.raises(ValueError, match="v1.*no frame labels"):
        evaluate_scores({"v1": np.zeros(2)}, {}, {"v1": False})
    with pytest.raises(ValueError, match="v1.*NaN"):
        evaluate_scores({"v1": np.array([0.1, np.nan])}, {"v1": np.zeros(32)}, {"v1": False})
    with pytest.raises(ValueError, match=r"v1.*\[T\]"):
        evaluate_scores({"v1": np.zeros((10, 2))}, {"v1": np.zeros(32)}, {"v1": False})


def test_undefined_metrics_are_nan_with_warning():
    # normal videos only: every metric needs both classes
    scores = {"n1": np.array([0.2, 0.4]), "n2": np.array([0.1])}
    labels = {"n1": np.zeros(32, np.uint8), "n2": np.zeros(16, np.uint8)}
    with pytest.warns(UndefinedMetricWarning):
        m = evaluate_scores(scores, labels, {"n1": False, "n2": False})
    assert all(math.isnan(m[k]) for k in ("auc", "auc_abnormal", "ap", "ap_trapz", "ap_abnormal"))
    assert m["n_frames"] == 48


def test_classwise_auc():
    # Abuse is perfectly localised inside its video, Arson is inverted; the normal video scores high,
    # which only matters when normal videos are pooled in.
    labels = {
        "abuse": np.r_[np.zeros(16), np.ones(16)].astype(np.uint8),
        "arson": np.r_[np.zeros(16), np.ones(16)].astype(np.uint8),
        "normal": np.zeros(16, np.uint8),
    }
    scores = {"abuse": np.array([0.1, 0.6]), "arson": np.array([0.9, 0.2]), "normal": np.array([0.8])}
    classes = {"abuse": ("Abuse",), "arson": ("Arson",), "normal": ()}

    only = classwise_auc(scores, labels, classes)
    assert only == pytest.approx({"Abuse": 1.0, "Arson": 0.0})

    # with the normal video: Abuse positives 0.6 vs negatives {0.1 (16 frames), 0.8 (16 frames)} -> 1/2
    pooled = classwise_auc(scores, labels, classes, normal_videos="all")
    assert pooled["Abuse"] == pytest.approx(0.5)
    assert pooled["Arson"] == pytest.approx(0.0)

    # an explicit class list fixes the order; a class without test videos is NaN
    with pytest.warns(UndefinedMetricWarning):
        explicit = classwise_auc(scores, labels, classes, classes=["Arson", "Abuse", "Shooting"])
    assert list(explicit) == ["Arson", "Abuse", "Shooting"]
    assert math.isnan(explicit["Shooting"])


def test_classwise_multilabel_video_counts_for_each_class():
    labels = {"v": np.r_[np.zeros(16), np.ones(16)].astype(np.uint8)}
    scores = {"v": np.array([0.0, 1.0])}
    result = classwise_auc(scores, labels, {"v": ("B1", "G")})
    assert result == pytest.approx({"B1": 1.0, "G": 1.0})
    with pytest.raises(ValueError, match="normal_videos"):
        classwise_auc(scores, labels, {"v": ("B1",)}, normal_videos="some")  # type: ignore[arg-type]
