"""Operating points (operating_point.py) against hand-computed cases and a brute-force reference."""

import math

import numpy as np
import pytest

from gsmoe_lib.operating_point import (
    false_alarm_curve,
    operating_curve,
    operating_point,
    threshold_for_false_alarm_rate,
)

F = 16


def frames(snippet_labels):
    return np.repeat(np.asarray(snippet_labels, dtype=np.uint8), F)


def test_hand_computed_point():
    # video a: alarms at snippets 0-1 (normal: one false alarm) and 3-4 (snippet 4 anomalous: not false)
    # video b: alarm at its last snippet (normal) and video c's first snippet: separate videos, two alarms.
    scores = {"a": np.array([0.9, 0.8, 0.1, 0.7, 0.9]), "b": np.array([0.1, 0.6]), "c": np.array([0.6, 0.2])}
    labels = {"a": frames([0, 0, 0, 0, 1]), "b": frames([0, 0]), "c": frames([0, 1])}
    p = operating_point(scores, labels, 0.5, fps=16.0)
    # alarm snippets: a0 a1 a3 a4 b1 c0 = 6 snippets; anomalous among them: a4 -> TP 16 frames of 96
    assert p["precision"] == pytest.approx(16 / 96)
    assert p["recall"] == pytest.approx(16 / 32)  # c1 is anomalous and missed
    assert p["f1"] == pytest.approx(2 * (1 / 6) * 0.5 / (1 / 6 + 0.5))
    assert p["false_alarms"] == 3  # a0-a1, b1, c0
    assert p["hours"] == pytest.approx(9 * 16 / 16 / 3600)  # 9 snippets of one second each
    assert p["false_alarms_per_hour"] == pytest.approx(3 / (9 / 3600))


def test_partial_snippet_labels_count_frames():
    scores = {"a": np.array([0.9, 0.1])}
    fl = np.zeros(32, np.uint8)
    fl[12:16] = 1  # 4 anomalous frames in snippet 0
    p = operating_point(scores, {"a": fl}, 0.5)
    assert p["precision"] == pytest.approx(4 / 16)
    assert p["recall"] == 1.0
    assert p["false_alarms"] == 0  # the run touches an anomalous frame


def test_no_alarm_conventions():
    p = operating_point({"a": np.array([0.1, 0.2])}, {"a": frames([0, 1])}, 0.9)
    assert p["precision"] == 1.0 and p["recall"] == 0.0 and p["f1"] == 0.0 and p["false_alarms"] == 0
    q = operating_point({"a": np.array([0.1, 0.2])}, {"a": frames([0, 0])}, 0.0)
    assert math.isnan(q["recall"])


def test_length_mismatch_names_the_video():
    with pytest.raises(ValueError, match="'v1'"):
        operating_point({"v1": np.zeros(3)}, {"v1": np.zeros(40)}, 0.5)


def _random_case(seed):
    rng = np.random.default_rng(seed)
    scores, labels = {}, {}
    for i in range(5):
        T = int(rng.integers(3, 30))
        scores[f"v{i}"] = np.round(rng.random(T), 1)  # ties on purpose
        labels[f"v{i}"] = frames(rng.random(T) < 0.3)
    return scores, labels


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_false_alarm_curve_matches_brute_force(seed):
    scores, labels = _random_case(seed)
    thresholds, counts = false_alarm_curve(scores, labels)
    expected_thresholds = np.unique(np.concatenate(list(scores.values())))[::-1]
    np.testing.assert_allclose(thresholds, expected_thresholds)
    brute = [operating_point(scores, labels, t)["false_alarms"] for t in thresholds]
    assert counts.tolist() == brute


@pytest.mark.parametrize("seed", [0, 3])
def test_threshold_for_rate_is_the_lowest_feasible(seed):
    scores, labels = _random_case(seed)
    hours = operating_point(scores, labels, 0.5)["hours"]
    target = 2 / hours  # at most two false alarms
    thr = threshold_for_false_alarm_rate(scores, labels, target)
    assert operating_point(scores, labels, thr)["false_alarms"] <= 2
    lower = [t for t in np.unique(np.concatenate(list(scores.values()))) if t < thr]
    assert all(operating_point(scores, labels, t)["false_alarms"] > 2 for t in lower)


def test_threshold_above_everything_when_nothing_fits():
    scores = {"a": np.array([0.9, 0.1])}
    thr = threshold_for_false_alarm_rate(scores, {"a": frames([0, 0])}, 0.0)
    assert thr > 0.9
    assert operating_point(scores, {"a": frames([0, 0])}, thr)["false_alarms"] == 0


def test_operating_curve_stacks_points():
    scores, labels = _random_case(4)
    curve = operating_curve(scores, labels, [0.2, 0.8])
    assert curve["recall"][0] >= curve["recall"][1]
    assert curve["f1"][1] == pytest.approx(operating_point(scores, labels, 0.8)["f1"])
