"""The first-epoch (L_topk-norm only) schedule of the TGS-trained stages (`training.pseudo_labels.warmup_per_pool`)."""

import warnings

import pytest
import torch

from gsmoe_lib.training import config, pseudo_labels
from gsmoe_lib.tgs import TGSConfig


def labels(n_abnormal: int, n_normal: int = 10) -> torch.Tensor:
    return torch.tensor([0] * n_normal + [1] * n_abnormal)  # [N] video labels, normal first


warmup = pseudo_labels.warmup_of_all_abnormal


def stage(**kw) -> config.TGSTrainingConfig:
    return config.TGSTrainingConfig(**kw)


def test_none_means_one_epoch_of_abnormal_samples_and_an_explicit_value_wins():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert warmup(stage(iterations=1000, batch_abnormal=64), labels(8100), "tgs") == 127  # paper
        assert warmup(stage(iterations=60, batch_abnormal=8), labels(300), "experts") == 38  # UCF quick
        assert warmup(stage(iterations=50, warmup_iterations=5), labels(10_000), "tgs") == 5


def test_an_epoch_longer_than_the_cap_is_cut_and_warned_about():
    # the XD quick experts: 750 abnormal samples / 8 = 94 iterations of a 60-iteration stage
    with pytest.warns(UserWarning, match=r"experts: one epoch .* is 94 iterations.* cut to 40"):
        assert warmup(stage(iterations=60, batch_abnormal=8), labels(750), "experts") == 40
    with pytest.warns(UserWarning, match="cut to 15"):
        warmup(stage(iterations=50, batch_abnormal=16, warmup_max_fraction=0.3), labels(750), "tgs")


def test_an_explicit_warmup_covering_the_stage_is_warned_about():
    with pytest.warns(UserWarning, match="gate: warmup_iterations=80 covers all 80"):
        assert warmup(stage(iterations=80, warmup_iterations=80), labels(1), "gate") == 80


def test_a_cap_outside_zero_one_is_refused():
    with pytest.raises(ValueError, match="experts.warmup_max_fraction must be in"):
        warmup(stage(warmup_max_fraction=1.5), labels(10), "experts")


def test_each_expert_counts_its_first_epoch_on_its_own_pool():
    # UCF quick-sized pools: a rare class finishes its first epoch long before the largest one
    sizes = torch.tensor([6, 30, 58])
    cfg = stage(iterations=600, batch_abnormal=8)
    assert pseudo_labels.warmup_per_pool(cfg, sizes, "experts").tolist() == [1, 4, 8]
    # "all": the earlier behaviour, every expert waits for an epoch of every abnormal sample (94 / 8 -> 12)
    assert pseudo_labels.warmup_per_pool(stage(iterations=600, batch_abnormal=8, warmup_pool="all"), sizes,
                                         "experts").tolist() == [12, 12, 12]
    with pytest.raises(ValueError, match="warmup_pool"):
        pseudo_labels.warmup_per_pool(stage(warmup_pool="class"), sizes, "experts")


def test_pseudo_labels_refresh_after_each_pools_first_epoch_then_every_period():
    member = torch.tensor([[1, 0], [1, 1], [0, 1], [0, 0]], dtype=torch.bool)  # [N, P]: sample 3 is normal
    store = pseudo_labels.PseudoLabels(4, 6, member, torch.tensor([2, 3]), 4, TGSConfig(), "cpu")
    due = [i for i in range(12) if bool(store.due(i).any())]
    assert due == [2, 3, 6, 7, 10, 11]
    assert store.due(3).tolist() == [False, True]
    calls = []

    def scores(rows):  # [n] -> [n, S, P]: a peak at snippet 1 for pool 0, at snippet 4 for pool 1
        calls.append(rows.tolist())
        s = torch.zeros(len(rows), 6, 2)
        s[:, 1, 0] = 1.0
        s[:, 4, 1] = 1.0
        return s

    assert not store.refresh(1, scores) and calls == []
    assert store.refresh(2, scores) and calls == [[0, 1]]  # only pool 0's samples are scored
    assert store.targets[0, :, 0].argmax() == 1 and store.targets[1, :, 0].argmax() == 1
    assert float(store.targets[:, :, 1].abs().sum()) == 0.0  # pool 1 still in its first epoch
    store.refresh(3, scores)
    assert store.targets[2, :, 1].argmax() == 4 and float(store.targets[0, :, 1].sum()) == 0.0  # not its member
    assert float(store.targets[3].sum()) == 0.0  # a normal sample never gets a kernel
    assert store.coverage() == 1.0 and int(store.refreshes) == 2


def test_loss_trend_reads_a_flat_tail_as_flat_and_a_falling_one_as_falling():
    flat = [{"total": 1.0 + 0.01 * (i % 2)} for i in range(50)]
    falling = [{"total": 2.0 - 0.03 * i} for i in range(50)]
    assert abs(pseudo_labels.loss_trend(flat)) < 0.05
    assert pseudo_labels.loss_trend(falling) < -0.2  # last fifth mean 0.68 against 0.98 the fifth before
    assert pseudo_labels.loss_trend(flat[:9]) is None
