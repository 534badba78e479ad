from pathlib import Path

import numpy as np
import pytest

from gsmoe_lib.data.ground_truth import detect_convention, expected_snippets, frame_labels
from gsmoe_lib.data.layouts import PACKAGED
from gsmoe_lib.data.lists import Annotation, read_annotations


def ann(windows, n_frames=None):
    return Annotation("Vid001_x264", tuple(windows), n_frames, Path("ann.txt"), 3)


def test_conventions_by_hand():
    assert [expected_snippets(160, c) for c in ("floor", "ceil", "deepmil")] == [10, 10, 9]
    assert [expected_snippets(161, c) for c in ("floor", "ceil", "deepmil")] == [10, 11, 10]
    assert detect_convention(160, 10) == "floor"
    assert detect_convention(160, 9) == "deepmil"
    assert detect_convention(161, 11) == "ceil"
    with pytest.raises(ValueError, match=r"video Vid001_x264: .*T=12 .*161 frames \(frame count from ann.txt:3\)"):
        detect_convention(161, 12, "Vid001_x264", "ann.txt:3")


def test_half_open_windows_and_inclusive_option():
    labels = frame_labels(ann([(3, 6), (30, 32)]), 2)
    assert labels.dtype == np.uint8 and labels.shape == (32,)
    assert np.flatnonzero(labels).tolist() == [3, 4, 5, 30, 31]
    inclusive = frame_labels(ann([(3, 6)]), 2, end_inclusive=True)
    assert np.flatnonzero(inclusive).tolist() == [3, 4, 5, 6]
    assert not frame_labels(None, 4).any() and frame_labels(None, 4).shape == (64,)


def test_window_past_end_without_frame_count():
    # ends up to one snippet (16 frames) past T*16 are clipped; further is an error naming the video
    assert frame_labels(ann([(20, 48)]), 2)[20:].all()
    with pytest.raises(ValueError, match=r"video Vid001_x264: annotation window \(20, 49\) in ann.txt:3"):
        frame_labels(ann([(20, 49)]), 2)
    assert frame_labels(ann([(20, 49)]), 2, tolerance=17).sum() == 12


def test_frame_count_checks_t_and_windows():
    # n = 100 frames: floor 6 / ceil 7; T = 8 belongs to another video
    assert frame_labels(ann([(90, 102)], 100), 7)[90:102].all()  # ceil; 2 frames past n is allowed
    assert frame_labels(ann([(90, 102)], 100), 6).shape == (96,)  # floor: cut at T*16
    with pytest.raises(ValueError, match=r"video Vid001_x264: features have T=8"):
        frame_labels(ann([(0, 10)], 100), 8)
    with pytest.raises(ValueError, match="ends past its 100 frames"):
        frame_labels(ann([(0, 117)], 100), 7)


def test_packaged_ucf_annotations_fit_every_convention():
    annotations = read_annotations(PACKAGED["ucf-crime"]["annotations"])
    for convention in ("floor", "ceil", "deepmil"):
        total = 0
        for a in annotations.values():
            t = expected_snippets(a.n_frames, convention)
            labels = frame_labels(a, t)
            total += labels.size
            assert labels.any() == bool(a.windows)
        expected = {"floor": 1_109_824, "ceil": 1_114_144, "deepmil": 1_109_824 - 20 * 16}[convention]
        assert total == expected
