"""The experts learn their own class through the stage's own code path (`training.moe_stages.train_experts`), on planted data.

Planted task-aware features (the encoder is a stub that passes its input through as the features): class c's
anomalies move the features along their own axis e_c, normal videos are noise. The teacher's scores mark every
anomaly alike (one shared target, the situation on the synthetic data), so only the per-expert pools can make expert c
the one that ranks class c highest. A trainer that fed every expert every class, or one class to all experts,
fails this test.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import NamedTuple

import numpy as np
import pytest
import torch

from gsmoe_lib import diagnostics, runs
from gsmoe_lib.training import config, moe_stages
from gsmoe_lib.training.data import Data
from gsmoe_lib.data.batching import TrainSet

CLASSES = ("Alpha", "Beta", "Gamma")
D, S, T_TEST = 12, 24, 32


class _Out(NamedTuple):
    scores: torch.Tensor  # [B, T]
    features: torch.Tensor  # [B, T, F]


class PassThrough(torch.nn.Module):
    """A stand-in task encoder: features = input, scores = a fixed squashing of the input."""

    feature_dim = D
    input_dim = D

    def forward(self, x: torch.Tensor, training_extras: bool = False) -> _Out:
        if x.dim() == 4:  # [B, C, T, D]: crops averaged, as URDMU does
            x = x.mean(1)
        return _Out(torch.sigmoid(x.sum(-1) - 2.0), x)


def planted(rng: np.random.Generator, cls: int | None, t: int) -> tuple[np.ndarray, np.ndarray]:
    """Features [t, D] and frame labels [t*16] of one video; cls None = normal."""
    x = rng.normal(0.0, 0.3, size=(t, D))
    y = np.zeros(t * 16, dtype=np.uint8)
    if cls is not None:
        a = int(rng.integers(2, t - 8))
        x[a:a + 6, cls] += 3.0
        y[a * 16:(a + 6) * 16] = 1
    return x.astype(np.float32), y


class Split:
    """An in-memory test split with the interface evaluation needs (evaluate.SplitLike)."""

    def __init__(self, rng: np.random.Generator, per_class: int = 4, normal: int = 6) -> None:
        self.classes = CLASSES
        self.videos, self._x, self._y = [], [], []
        for c in [None] * normal + [k for k in range(len(CLASSES)) for _ in range(per_class)]:
            x, y = planted(rng, c, T_TEST)
            name = f"v{len(self.videos)}"
            self.videos.append(SimpleNamespace(name=name, label=int(c is not None),
                                               classes=() if c is None else (CLASSES[c],)))
            self._x.append(x[None])  # [C=1, T, D]
            self._y.append(y)

    def load(self, i: int) -> np.ndarray:
        return self._x[i]

    def frame_labels(self, i: int) -> np.ndarray:
        return self._y[i]

    def __len__(self) -> int:
        return len(self.videos)


class WashOut(PassThrough):
    """A stand-in task encoder whose features are class-agnostic: every class axis is folded into one shared
    anomaly coordinate (what an encoder trained on video labels alone may keep), the class axes zeroed."""

    def forward(self, x: torch.Tensor, training_extras: bool = False) -> _Out:
        out = super().forward(x)
        return _Out(out.scores, wash_out(out.features))


def wash_out(x: torch.Tensor) -> torch.Tensor:
    """[.., D] -> [.., D]: the class axes' sum in column D-1, the class axes zeroed."""
    k = len(CLASSES)
    return torch.cat([torch.zeros_like(x[..., :k]), x[..., k:-1], x[..., :k].sum(-1, keepdim=True)], dim=-1)


def train_planted(tmp_path, encoder: torch.nn.Module, overrides: dict | None = None, teacher_fn=None,
                  run: dict | None = None):
    """Train the experts stage on the planted data; returns (stage result, own-expert advantage, expert × class
    AUC). `teacher_fn`: n -> the teacher's scores [n, S] (default: a bump on every anomaly, the same for all);
    `run`: overrides of the rest of the config."""
    rng = np.random.default_rng(0)
    feats, labels, classes, teacher = [], [], [], []
    for c in [None] * 30 + [k for k in range(len(CLASSES)) for _ in range(12)]:
        x, y = planted(rng, c, S)
        feats.append(x)
        labels.append(float(c is not None))
        onehot = np.zeros(len(CLASSES), dtype=np.float32)
        if c is not None:
            onehot[c] = 1.0
        classes.append(onehot)
        teacher.append(0.1 + 0.8 * y.reshape(S, 16).max(1))  # the same bump for every class
    n = len(feats)
    features = torch.from_numpy(np.stack(feats))  # [N, S, D]
    train_set = TrainSet(features, torch.tensor(labels), torch.from_numpy(np.stack(classes)), torch.arange(n),
                         CLASSES, [f"t{i}" for i in range(n)], "independent")
    data = Data(train_set, Split(rng), "ucf-crime")
    cfg = config.make_config("tiny", {"experts": {"iterations": 150, "warmup_iterations": 10, "d_model": 16,
                                                 "batch_normal": 6, "batch_abnormal": 6, "dropout": 0.0,
                                                 "lr": 3e-3, "checkpoint_every": 0, **(overrides or {})},
                                     **(run or {})})
    task_features = encoder(features).features  # what the stage's cache holds: the encoder's features [N, S, F]
    teacher_scores = torch.from_numpy(np.stack(teacher)).float() if teacher_fn is None else teacher_fn(n)
    cache = (task_features, teacher_scores)  # (features, teacher scores [N, S])
    res = moe_stages.train_experts(cfg, data, encoder, tmp_path, "planted", progress=False, cache=cache)

    assert res.metrics["expert_names"] == list(CLASSES)
    expert_scores = runs.load_scores(res.path / "test_expert_scores.npz")  # name -> [T, E]
    test = data.test
    matrix = diagnostics.expert_class_auc(expert_scores, {v.name: test.frame_labels(i) for i, v in enumerate(test.videos)},
                                       {v.name: v.classes for v in test.videos}, list(CLASSES), list(CLASSES))
    return res, diagnostics.own_expert_advantage(matrix), matrix


@pytest.mark.slow
def test_each_expert_ranks_its_own_class_highest(tmp_path):
    res, adv, matrix = train_planted(tmp_path, PassThrough())
    # every class: its own expert ranks it better than the other experts do, by a clear margin on average
    # (AUC points). An expert trained against normal videos only still fires on some other classes' anomalies
    # (they are not normal either), so single classes can be close; a trainer that mixed the pools is not.
    assert adv["n_positive"] == len(CLASSES), matrix
    assert min(adv["per_class"].values()) > 0.5 and adv["mean"] > 10.0, matrix
    assert not res.metrics["collapsed"]


@pytest.mark.slow
def test_experts_reading_the_input_features_find_the_classes_the_encoder_washed_out(tmp_path):
    """The extension ExpertsConfig.inputs="task+i3d": on class-agnostic task-aware features the experts of the
    paper cannot tell the classes apart; beside the input features they can."""
    _, paper, paper_matrix = train_planted(tmp_path / "task", WashOut())
    res, extended, matrix = train_planted(tmp_path / "task+i3d", WashOut(), {"inputs": "task+i3d"})
    assert abs(paper["mean"]) < 5.0, paper_matrix  # interchangeable experts: no class of their own
    assert extended["mean"] > 10.0 and extended["n_positive"] == len(CLASSES), matrix
    assert not res.metrics["collapsed"]


def decoy_teacher(n: int) -> torch.Tensor:
    """A teacher [N, S] that marks the same wrong stretch (snippets 0-3) of every video, whatever it holds."""
    scores = torch.full((n, S), 0.1)
    scores[:, :4] = 0.9
    return scores


@pytest.mark.slow
def test_per_class_teachers_give_each_expert_its_own_anomalies(tmp_path):
    """The extension ExpertsConfig.teacher="per-class": when the one teacher marks the wrong stretch, the paper's
    experts copy it; experts trained on their own class's teacher find the anomalies. A quarter of the videos is
    held out: a snippet MLP trained on a dozen videos of one class can also memorise a noise snippet of each (an
    inverted teacher): the teachers keep their dropout (0.6), and their own-class validation AUC keeps the state
    that generalises."""
    teach = {"class_teacher": {"hidden": 16, "iterations": 300, "lr": 3e-3, "batch_normal": 6, "batch_abnormal": 6,
                               "n_segments": S, "validate_every": 20, "smooth": 5}}  # planted noise is per snippet
    run = {"validation": {"selection": "validation", "share": 0.25}}
    paper, _, _ = train_planted(tmp_path / "encoder", PassThrough(), teacher_fn=decoy_teacher, run=run)
    res, adv, matrix = train_planted(tmp_path / "per-class", PassThrough(), {"teacher": "per-class", **teach},
                                     teacher_fn=decoy_teacher, run=run)
    assert paper.metrics["auc"] < 0.75  # localisation copied from the decoy
    assert res.metrics["auc"] > 0.9 and adv["mean"] > 10.0, (res.metrics["auc"], matrix)
    assert all(a > 0.9 for a in res.metrics["class_teacher_own_class_auc"])
    saved = list((tmp_path / "per-class" / "class_teachers").glob("*.pt"))
    assert len(saved) == 1
