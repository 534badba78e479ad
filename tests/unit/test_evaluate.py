"""Scoring loop: per-video scores, crop averaging, oracle metrics, one video in memory at a time."""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from gsmoe_lib import evaluate
from gsmoe_lib.evaluate import evaluate_dataset, score_dataset


@dataclass
class Video:
    name: str
    label: int
    classes: tuple[str, ...]


class FakeSplit:
    """The FeatureDataset contract in memory: features [C, T, D] whose channel 0 carries the frame labels.

    Channel 0 of crop c is `label + c` per snippet, so its mean over crops is `label + (C-1)/2`: a score
    function reading it is an oracle, and only a crop average (not crop 0) gives that value.
    `load` counts how many of the arrays it handed out are still alive when it is called again.
    """

    def __init__(self, n_crops: int = 3, dim: int = 4):
        self.n_crops = n_crops
        self.classes = ["Abuse", "Arson"]
        self.videos = [
            Video("Abuse001", 1, ("Abuse",)),
            Video("Normal001", 0, ()),
            Video("Arson001", 1, ("Arson",)),
            Video("Normal002", 0, ()),
        ]
        # snippet labels per video
        self._labels = [
            np.array([0, 1, 1, 0, 0], np.uint8),
            np.zeros(3, np.uint8),
            np.array([0, 0, 0, 1, 1, 1, 0], np.uint8),
            np.zeros(4, np.uint8),
        ]
        rng = np.random.default_rng(0)
        self._features = []
        for labels in self._labels:
            x = rng.random((n_crops, labels.size, dim)).astype(np.float32)
            x[:, :, 0] = labels[None, :] + np.arange(n_crops, dtype=np.float32)[:, None]
            self._features.append(x)
        self._alive: list[weakref.ref] = []
        self.max_alive = 0

    def load(self, i: int) -> np.ndarray:
        self.max_alive = max(self.max_alive, sum(r() is not None for r in self._alive) + 1)
        x = self._features[i].copy()  # a fresh array per call, as a memory map would be
        self._alive.append(weakref.ref(x))
        return x

    def frame_labels(self, i: int) -> np.ndarray:
        return np.repeat(self._labels[i], 16)


def channel0_mean(x: torch.Tensor) -> torch.Tensor:
    return x[..., 0].mean(dim=1)  # [1, C, T, D] -> [1, T]


def test_scores_per_video_are_crop_averages():
    ds = FakeSplit()
    scores = score_dataset(channel0_mean, ds, progress=False)
    assert list(scores) == [v.name for v in ds.videos]
    for i, v in enumerate(ds.videos):
        expected = ds._labels[i] + (ds.n_crops - 1) / 2  # label + mean of 0..C-1
        assert scores[v.name].dtype == np.float32
        np.testing.assert_allclose(scores[v.name], expected, rtol=1e-6)


def test_loads_one_video_at_a_time():
    ds = FakeSplit()
    score_dataset(channel0_mean, ds, progress=False)
    assert ds.max_alive == 1


def test_freed_memory_goes_back_after_each_video(monkeypatch):
    # The allocator's kept blocks grew to 1.4 GB over the UCF-sized test set without this (host_memory);
    # a release only helps once the video's features are gone, so each call must find none alive.
    ds, alive_at_release = FakeSplit(), []
    monkeypatch.setattr(evaluate, "release_freed_memory",
                        lambda: alive_at_release.append(sum(r() is not None for r in ds._alive)))
    score_dataset(channel0_mean, ds, progress=False)
    assert alive_at_release == [0] * len(ds.videos)
    alive_at_release.clear()
    score_dataset(channel0_mean, ds, progress=False, release_memory=False)
    assert alive_at_release == []


def test_oracle_gives_perfect_metrics():
    metrics, scores = evaluate_dataset(channel0_mean, FakeSplit(), progress=False)
    assert metrics["auc"] == pytest.approx(1.0)
    assert metrics["auc_abnormal"] == pytest.approx(1.0)
    assert metrics["ap"] == pytest.approx(1.0)
    assert metrics["ap_trapz"] == pytest.approx(1.0)
    assert metrics["n_videos"] == 4
    assert metrics["n_frames"] == 16 * (5 + 3 + 7 + 4)
    assert metrics["classwise"] == pytest.approx({"Abuse": 1.0, "Arson": 1.0})
    assert set(scores) == {"Abuse001", "Normal001", "Arson001", "Normal002"}


def test_anti_oracle_and_classwise_keys():
    metrics, _ = evaluate_dataset(lambda x: -channel0_mean(x), FakeSplit(), progress=False)
    assert metrics["auc"] == pytest.approx(0.0)
    assert list(metrics["classwise"]) == ["Abuse", "Arson"]


def test_tuple_output_and_extras():
    def score_fn(x: torch.Tensor):
        per_crop = x[0, :, :, 0].T.unsqueeze(0)  # [1, T, C], like each expert's scores [1, T, E]
        return channel0_mean(x), per_crop, "ignored"

    ds = FakeSplit()
    scores, extras = score_dataset(score_fn, ds, progress=False, return_extra=True)
    assert extras["Arson001"].shape == (7, ds.n_crops)
    np.testing.assert_allclose(extras["Arson001"][:, 2], ds._labels[2] + 2)
    np.testing.assert_allclose(scores["Normal001"], 1.0)

    plain = score_dataset(score_fn, ds, progress=False)  # a tuple is fine without extras too
    np.testing.assert_allclose(plain["Arson001"], scores["Arson001"])
    with pytest.raises(ValueError, match="Abuse001.*second output"):
        score_dataset(lambda x: (channel0_mean(x),), ds, progress=False, return_extra=True)


def test_wrong_score_shape_names_the_video():
    with pytest.raises(ValueError, match=r"Abuse001.*\(1, 3, 5\).*\[1, 5\]"):
        score_dataset(lambda x: x[..., 0], FakeSplit(), progress=False)  # forgot to average crops


def test_module_is_scored_in_eval_mode_and_restored():
    class Probe(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.modes: list[bool] = []

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.modes.append(self.training)
            return channel0_mean(x)

    probe = Probe().train()
    score_dataset(probe, FakeSplit(), progress=False)
    assert probe.modes == [False] * 4
    assert probe.training
