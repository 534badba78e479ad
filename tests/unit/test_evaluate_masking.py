"""Expert masking (Table 4), subsets, snippet labels and kernel-vs-top-k coverage, on planted data."""

from types import SimpleNamespace
from typing import NamedTuple

import numpy as np
import pytest
import torch
from torch import nn

from gsmoe_lib.diagnostics import expert_masking
from gsmoe_lib.evaluate import Subset, kernel_topk_coverage, snippet_labels
from gsmoe_lib.metrics import classwise_auc
from gsmoe_lib.models.gate import Gate
from gsmoe_lib.models.gsmoe import GSMoEModel
from gsmoe_lib.tgs import TGSConfig

CLASSES = ("Abuse", "Arson", "Fighting")


class EncOut(NamedTuple):
    scores: torch.Tensor
    features: torch.Tensor


class IdentityEncoder(nn.Module):
    """features = the input; scores = the first feature (stands in for URDMU)."""

    def forward(self, x, training_extras=False):
        return EncOut(torch.sigmoid(x[..., 0]), x)


class FeatureExperts(nn.Module):
    """expert e's logit = feature e (what the gate reads), its score the sigmoid of it."""

    n_experts = len(CLASSES)

    def logits(self, f, in_groups=False):
        return f[..., : self.n_experts]

    def forward(self, f):
        return torch.sigmoid(self.logits(f))


class MaxGate(nn.Module):
    """final score = max over the (masked, by zero) expert inputs, so a masked class expert removes its signal."""

    def forward(self, expert_scores, features, expert_mask=None, mask_fill="zero"):
        if expert_mask is not None:
            expert_scores = expert_scores * expert_mask
        s = expert_scores.amax(-1)
        return SimpleNamespace(scores=s, embedding=expert_scores)


class Split:
    """Two videos per class; a class's anomalous snippets light up that class's feature only."""

    def __init__(self):
        rng = np.random.default_rng(0)
        self.classes = CLASSES
        self.videos, self._x, self._y = [], [], []
        for k, cls in enumerate(CLASSES):
            for j in range(2):
                T = 12
                y = np.zeros(T, np.uint8)
                y[3 + j: 8 + j] = 1
                x = rng.random((2, T, 4)).astype(np.float32) * 0.1  # [C, T, D], background noise
                x[:, y == 1, k] += 0.8
                self.videos.append(SimpleNamespace(name=f"{cls}{j:03d}", label=1, classes=(cls,)))
                self._x.append(x)
                self._y.append(np.repeat(y, 16))
        self.videos.append(SimpleNamespace(name="Normal000", label=0, classes=()))
        self._x.append(rng.random((2, 12, 4)).astype(np.float32) * 0.1)
        self._y.append(np.zeros(12 * 16, np.uint8))
        self.loaded = []

    def load(self, i):
        self.loaded.append(i)
        return self._x[i]

    def frame_labels(self, i):
        return self._y[i]


def planted_model():
    return GSMoEModel(IdentityEncoder(), FeatureExperts(), MaxGate())


def test_masking_drops_the_masked_class_to_chance():
    split = Split()
    result = expert_masking(planted_model(), split, list(CLASSES), fills=("zero",))
    assert list(result) == list(CLASSES)
    for cls in CLASSES:
        assert result[cls]["unmasked"] == pytest.approx(1.0)
        assert result[cls]["zero"] < 0.8  # only background noise of other experts is left


def test_unmasked_equals_classwise_auc_and_passes_are_per_class():
    split = Split()
    model = planted_model()
    result = expert_masking(model, split, list(CLASSES), classes=["Arson"], fills=("zero",))
    idx = [2, 3]
    sub = Subset(split, idx)
    scores = {v.name: model(torch.from_numpy(split._x[i])[None]).scores[0].numpy() for v, i in zip(sub.videos, idx)}
    ref = classwise_auc(scores, {v.name: split._y[i] for v, i in zip(sub.videos, idx)},
                        {v.name: v.classes for v in sub.videos}, classes=["Arson"])["Arson"]
    assert result["Arson"]["unmasked"] == pytest.approx(ref)
    split.loaded.clear()
    expert_masking(model, split, list(CLASSES), classes=["Arson"], fills=("zero",))
    assert sorted(split.loaded) == [2, 2, 3, 3]  # the class's videos only: one unmasked and one masked pass


def test_mask_reaches_only_the_masked_expert_at_the_gate():
    torch.manual_seed(0)
    gate = Gate(len(CLASSES), 4, d_model=16, ffn_hidden=32, mlp_hidden=(16, 8, 4), dropout=0.0).eval()
    model = GSMoEModel(IdentityEncoder(), FeatureExperts(), gate).eval()
    seen = []
    gate.expert_proj.register_forward_hook(lambda m, inp, out: seen.append(inp[0].detach().clone()))
    split = Split()
    x = torch.from_numpy(split._x[0])[None]
    model(x)
    mask = torch.tensor([1.0, 0.0, 1.0])
    model(x, expert_mask=mask)
    unmasked, masked = seen
    assert torch.all(masked[..., 1] == 0)
    assert torch.equal(masked[..., [0, 2]], unmasked[..., [0, 2]])
    assert unmasked[..., 1].abs().sum() > 0


def test_cluster_experts_are_refused():
    with pytest.raises(ValueError, match="class experts"):
        expert_masking(planted_model(), Split(), ["cluster 0", "cluster 1", "cluster 2"])


def test_snippet_labels_majority():
    fl = np.zeros(48, np.uint8)
    fl[8:16] = 1  # half of snippet 0 -> anomalous (>= 0.5)
    fl[16:20] = 1  # a quarter of snippet 1 -> normal
    assert snippet_labels(fl).tolist() == [True, False, False]
    with pytest.raises(ValueError):
        snippet_labels(np.zeros(20))


def test_kernels_cover_more_of_a_long_anomaly_than_topk():
    T = 48
    s = np.full(T, 0.05)
    s[10:30] = 0.7
    s[20] = 0.9  # one peak on a long plateau
    gt = np.zeros(T, np.uint8)
    gt[10:30] = 1
    cov = kernel_topk_coverage({"v": s}, {"v": np.repeat(gt, 16)}, TGSConfig(threshold_floor=0.25))
    assert cov["n_gt_snippets"] == 20
    assert cov["topk_recall"] == pytest.approx(4 / 20)  # k = 48 // 16 + 1 = 4 snippets, all inside
    assert cov["topk_precision"] == 1.0
    assert cov["kernel_recall"] > cov["topk_recall"]
