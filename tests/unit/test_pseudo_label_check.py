"""`training.pseudo_labels.check_pseudo_labels`: a teacher whose scores never reach min_height gives
all-zero targets."""

import warnings

import pytest
import torch

from gsmoe_lib.tgs import TGSConfig, pseudo_labels
from gsmoe_lib.training.pseudo_labels import check_pseudo_labels


def curves(peak: float) -> tuple[torch.Tensor, torch.Tensor]:
    """4 samples x 32 snippets: 2 normal (flat 0.01), 2 abnormal with a bump of height `peak`."""
    t = torch.arange(32, dtype=torch.float32)
    bump = 0.01 + (peak - 0.01) * torch.exp(-((t - 16) ** 2) / 8)
    scores = torch.stack([torch.full((32,), 0.01), torch.full((32,), 0.01), bump, bump.roll(5)])
    return scores, torch.tensor([0, 0, 1, 1])


def test_no_kernel_on_any_abnormal_sample_is_warned_about_with_the_numbers():
    cfg = TGSConfig(scale="absolute")  # min_height 0.2 in score units (scale="video" would find the bump)
    scores, labels = curves(peak=0.19)
    pseudo = pseudo_labels(scores, cfg)
    assert float(pseudo.amax()) == 0.0
    expected = r"experts: no TGS kernel on any of the 2 abnormal .* reach 0\.190.*min_height=0\.2"
    with pytest.warns(UserWarning, match=expected):
        check_pseudo_labels(pseudo, scores, labels, cfg, "experts")


def test_a_teacher_that_reaches_min_height_passes_silently():
    cfg = TGSConfig(scale="absolute")
    scores, labels = curves(peak=0.6)
    pseudo = pseudo_labels(scores, cfg)
    assert float(pseudo[labels == 1].amax()) > 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_pseudo_labels(pseudo, scores, labels, cfg, "gate")
        # the same low teacher is fine with a lower threshold
        low = TGSConfig(min_height=0.1, scale="absolute")
        s, lab = curves(peak=0.19)
        check_pseudo_labels(pseudo_labels(s, low), s, lab, low, "gate")
