"""The per-class teachers extension (`training.class_teachers`, `models.topk_mil.StackedTopKMLP`): the stacked
model, the inputs it trains on, the smoothing and splatting of its scores, and the identities it changes.
The outcome on planted data is tests/integration/test_expert_specialisation.py."""

from __future__ import annotations

import pytest
import torch

from gsmoe_lib.models.topk_mil import StackedTopKMLP, TopKMLP
from gsmoe_lib.tgs import TGSConfig
from gsmoe_lib.training.class_teachers import check_teacher, pool_targets, smooth_scores, video_inputs
from gsmoe_lib.training.config import config_for, pipeline_identity, stage_config


def test_each_stacked_teacher_is_a_top_k_mlp_with_its_own_weights():
    m = StackedTopKMLP(3, 8, hidden=4, dropout=0.0, generator=torch.Generator().manual_seed(0)).eval()
    x = torch.rand(2, 5, 8)  # [B, T, D]
    every = m(x)  # [B, T, E]
    own = m.per_batch(x[None].expand(3, -1, -1, -1))  # [E, B, T]: each teacher its own copy of the batch
    assert every.shape == (2, 5, 3) and torch.allclose(every.permute(2, 0, 1), own, atol=1e-6)
    for e in range(3):
        single = TopKMLP(8, 4, 0.0).eval()
        with torch.no_grad():
            single.fc1.weight.copy_(m.w1[e].T)
            single.fc1.bias.copy_(m.b1[e])
            single.fc2.weight.copy_(m.w2[e][None])
            single.fc2.bias.copy_(m.b2[e:e + 1])
        assert torch.allclose(single(x), every[..., e], atol=1e-6)
    assert not torch.allclose(every[..., 0], every[..., 1])  # the teachers differ


def test_video_inputs_average_each_videos_crops_and_pool_its_segments():
    x = torch.arange(4 * 4 * 1, dtype=torch.float32).reshape(4, 4, 1)  # [N=4 samples, S=4, D=1]
    video_index = torch.tensor([7, 3, 7, 3])  # two crops of each of two videos, interleaved
    pooled, first = video_inputs(x, video_index, 2)
    assert first.tolist() == [1, 0]  # sorted videos (3, 7): their first samples
    # video 3 = mean of samples 1 and 3 = [8, 9, 10, 11], pooled in pairs -> [8.5, 10.5]
    assert pooled[:, :, 0].tolist() == [[8.5, 10.5], [4.5, 6.5]]


def test_smoothing_is_a_centred_moving_average_and_one_snippet_is_none():
    s = torch.zeros(1, 7, 2)
    s[0, 3, 0] = 3.0  # one spike in pool 0
    out = smooth_scores(s, 3)
    assert out[0, :, 0].tolist() == [0, 0, 1, 1, 1, 0, 0] and out[0, :, 1].abs().sum() == 0
    assert smooth_scores(s, 1) is s
    with pytest.raises(ValueError, match="odd"):
        smooth_scores(s, 4)


def test_pool_targets_splat_each_pool_only_on_its_own_samples():
    t = torch.arange(16, dtype=torch.float32)
    bump = torch.exp(-((t - 5) ** 2) / 4)  # a peak at snippet 5
    scores = torch.stack([torch.stack([bump, bump.flip(0)], -1)] * 2)  # [N=2, S=16, E=2]
    member = torch.tensor([[True, False], [False, True]])
    out = pool_targets(scores, member, TGSConfig())
    assert out[0, :, 0].argmax() == 5 and out[0, :, 0].max() == 1.0
    assert out[1, :, 1].argmax() == 10  # pool 1's teacher peaks at 15 - 5
    assert out[0, :, 1].abs().sum() == 0 and out[1, :, 0].abs().sum() == 0  # not in the pool: no target


def test_the_teachers_change_identities_only_when_on():
    cfg = config_for("tiny", "/data", "ucf-crime", 0, "cpu")
    for stage in ("experts", "gate"):  # the paper: the identities of before
        assert not {"teacher", "class_teacher"} & set(stage_config(cfg, stage, "up")["settings"])
    assert "teacher" not in pipeline_identity(cfg)["gate"]
    on = config_for("tiny", "/data", "ucf-crime", 0, "cpu",
                    {"experts": {"teacher": "per-class"}, "gate": {"teacher": "per-class"}})
    assert stage_config(on, "experts", "up")["settings"]["teacher"] == "per-class"
    gate = stage_config(on, "gate", "up")["settings"]
    assert gate["teacher"] == "per-class" and gate["class_teacher"]["hidden"] == 128  # its targets' teachers
    with pytest.raises(ValueError, match="experts.teacher must be one of"):
        check_teacher("per-video", "experts")


def test_each_teacher_keeps_its_best_held_out_state_and_all_stop_without_gains():
    from gsmoe_lib.training.class_teachers import train_teachers
    from gsmoe_lib.training.config import ClassTeacherConfig, ValidationConfig
    from gsmoe_lib.training.moe_stages import per_expert_batches
    from gsmoe_lib.training.validation import hold_out, own_class_auc

    g = torch.Generator().manual_seed(0)
    n_normal, per_class, S, D = 20, 8, 16, 6
    classes = [None] * n_normal + [c for c in range(2) for _ in range(per_class)]
    x = torch.randn(len(classes), S, D, generator=g) * 0.3  # [V, S, D]
    onehot = torch.zeros(len(classes), 2)
    for v, c in enumerate(classes):
        if c is not None:
            x[v, 4:8, c] += 1.0  # class c: its own feature axis, snippets 4-7 (weak: the held-out AUC moves)
            onehot[v, c] = 1.0
    labels = (onehot.sum(1) > 0).float()
    val = hold_out(labels, onehot, torch.arange(len(classes)), ("A", "B"), ValidationConfig(share=0.3))
    ct = ClassTeacherConfig(hidden=8, iterations=200, batch_normal=4, batch_abnormal=4, n_segments=S,
                            validate_every=10, patience=3)
    member = onehot.bool() & (labels[:, None] == 1)
    model, history = train_teachers(x, labels, member, val, ct, 0, per_expert_batches, min_delta=0.01)
    assert history and history[-1]["iteration"] < ct.iterations  # stopped by the patience
    assert all(h["improved"] == 0 for h in history[-ct.patience:])  # ... after `patience` validations without gain
    aucs = torch.tensor([h["own_class_auc"] for h in history])  # [validations, E]
    best = aucs.amax(0)  # [E]
    assert bool((aucs[-1] < best).any())  # a teacher got worse after its best: the last state is not the best
    with torch.no_grad():
        kept = own_class_auc(val, model(x[val.rows]), 1, member[val.rows])
    assert torch.allclose(torch.tensor(kept), best, atol=1e-6)  # the returned teachers are their best states
