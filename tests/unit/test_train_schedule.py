"""The first-epoch (L_topk-norm only) schedule of the TGS-trained stages (`train._warmup`)."""

import types
import warnings

import pytest
import torch

from gsmoe_lib import train


def fake_train(n_abnormal: int, n_normal: int = 10):
    return types.SimpleNamespace(labels=torch.tensor([0] * n_normal + [1] * n_abnormal))


def stage(**kw) -> train.TGSTrainingConfig:
    return train.TGSTrainingConfig(**kw)


def test_none_means_one_epoch_of_abnormal_samples_and_an_explicit_value_wins():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert train._warmup(stage(iterations=1000, batch_abnormal=64), fake_train(8100), "tgs") == 127  # paper
        assert train._warmup(stage(iterations=60, batch_abnormal=8), fake_train(300), "experts") == 38  # UCF quick
        assert train._warmup(stage(iterations=50, warmup_iterations=5), fake_train(10_000), "tgs") == 5


def test_an_epoch_longer_than_the_cap_is_cut_and_warned_about():
    # the XD quick experts: 750 abnormal samples / 8 = 94 iterations of a 60-iteration stage
    with pytest.warns(UserWarning, match=r"experts: one epoch .* is 94 iterations.* cut to 40"):
        assert train._warmup(stage(iterations=60, batch_abnormal=8), fake_train(750), "experts") == 40
    with pytest.warns(UserWarning, match="cut to 15"):
        train._warmup(stage(iterations=50, batch_abnormal=16, warmup_max_fraction=0.3), fake_train(750), "tgs")


def test_an_explicit_warmup_covering_the_stage_is_warned_about():
    with pytest.warns(UserWarning, match="gate: warmup_iterations=80 covers all 80"):
        assert train._warmup(stage(iterations=80, warmup_iterations=80), fake_train(1), "gate") == 80


def test_a_cap_outside_zero_one_is_refused():
    with pytest.raises(ValueError, match="experts.warmup_max_fraction must be in"):
        train._warmup(stage(warmup_max_fraction=1.5), fake_train(10), "experts")
