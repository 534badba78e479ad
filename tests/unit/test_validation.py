"""Weakly-supervised validation (gsmoe_lib/training/validation.py) and its use by `loop.fit`: the held-out
split, the video-level scores, early stopping and the restored best checkpoint."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from gsmoe_lib import runs
from gsmoe_lib.training import validation as V
from gsmoe_lib.training.config import ValidationConfig
from gsmoe_lib.training.loop import fit

CLASSES = ("Abuse", "Arson", "Explosion")


def samples(n_per_class=(7, 5, 2), n_normal=20, crops=2):
    """Per-sample labels [N], class_index [N, K], video_index [N] of videos with `crops` samples each."""
    labels, classes, videos = [], [], []
    v = 0
    for k, n in enumerate(n_per_class):
        for _ in range(n):
            for _ in range(crops):
                labels.append(1.0), classes.append(np.eye(len(CLASSES))[k]), videos.append(v)
            v += 1
    for _ in range(n_normal):
        for _ in range(crops):
            labels.append(0.0), classes.append(np.zeros(len(CLASSES))), videos.append(v)
        v += 1
    return (torch.tensor(labels), torch.tensor(np.array(classes), dtype=torch.float32), torch.tensor(videos))


def test_split_is_stratified_deterministic_and_disjoint_from_training():
    labels, class_index, video_index = samples()
    cfg = ValidationConfig(share=0.15, split_seed=0)
    held = V.hold_out(labels, class_index, video_index, CLASSES, cfg)
    # disjoint and complete: a sample either trains or is held out
    assert not held.train_mask[held.rows].any() and int(held.train_mask.sum()) + len(held.rows) == len(labels)
    # a video's crops all on the same side
    for v in torch.unique(video_index):
        sides = held.train_mask[video_index == v]
        assert bool(sides.all()) or not bool(sides.any())
    # every class represented, the normal videos too: round(0.15 n), at least 1 (a class of 2 keeps one)
    held_videos = torch.unique(held.video_index)
    per_class = {c: int(((class_index[held.rows][:, k] > 0) & (held.labels == 1)).sum()) // 2
                 for k, c in enumerate(CLASSES)}
    assert per_class == {"Abuse": 1, "Arson": 1, "Explosion": 1}
    assert int((held.labels == 0).sum()) // 2 == 3  # round(0.15 x 20)
    assert len(held_videos) == 6
    # deterministic from the split seed, whatever the run; another seed holds out other videos
    again = V.hold_out(labels, class_index, video_index, CLASSES, cfg)
    assert torch.equal(again.rows, held.rows)
    other = V.hold_out(labels, class_index, video_index, CLASSES, ValidationConfig(share=0.15, split_seed=1))
    assert not torch.equal(other.rows, held.rows)


def test_split_settings_are_checked_and_share_zero_holds_out_nothing():
    labels, class_index, video_index = samples()
    none = V.hold_out(labels, class_index, video_index, CLASSES, ValidationConfig(selection="fixed", share=0.0))
    assert len(none.rows) == 0 and bool(none.train_mask.all())
    with pytest.raises(ValueError, match="needs held-out videos"):
        V.hold_out(labels, class_index, video_index, CLASSES, ValidationConfig(share=0.0))
    with pytest.raises(ValueError, match="selection"):
        V.hold_out(labels, class_index, video_index, CLASSES, ValidationConfig(selection="test"))


def test_video_scores_average_crops_then_take_the_top_k_mean():
    # two videos of two crops each, S = 4 snippets
    s = torch.tensor([[0.0, 1.0, 0.2, 0.0], [0.0, 0.6, 0.4, 0.0],   # video 3: crop mean [0, .8, .3, 0]
                      [0.1, 0.1, 0.1, 0.1], [0.1, 0.1, 0.1, 0.3]])  # video 5: crop mean [.1, .1, .1, .2]
    videos, scores = V.video_scores(s, torch.tensor([3, 3, 5, 5]), k=2)
    assert videos.tolist() == [3, 5]
    assert scores.tolist() == pytest.approx([0.55, 0.15])
    held = V.HeldOut(torch.zeros(4, dtype=torch.bool), torch.arange(4), torch.tensor([1.0, 1.0, 0.0, 0.0]),
                     torch.zeros(4, 1), torch.tensor([3, 3, 5, 5]))
    assert V.video_auc(held, s, k=2) == 1.0
    assert V.video_auc(held, s.flip(0), k=2) == 0.0


def test_own_class_auc_compares_an_experts_class_with_the_normals_only():
    # videos: 0 class A, 1 class B, 2 normal; expert 0 (A) scores B highest, A above the normal
    s = torch.tensor([[0.5], [0.9], [0.1]])[:, :, None].expand(3, 1, 2).clone()  # [N', S=1, E=2]
    s[:, 0, 1] = torch.tensor([0.05, 0.2, 0.1])  # expert 1 (B): A lowest
    own = torch.tensor([[True, False], [False, True], [False, False]])
    held = V.HeldOut(torch.zeros(3, dtype=torch.bool), torch.arange(3), torch.tensor([1.0, 1.0, 0.0]),
                     torch.zeros(3, 2), torch.arange(3))
    assert V.own_class_auc(held, s, 1, own) == [1.0, 1.0]  # each against the normal only, not the other class
    assert np.isnan(V.own_class_auc(held, s, 1, torch.zeros(3, 2, dtype=torch.bool))[0])


def test_early_stopping_stops_after_patience_and_keeps_the_best_state():
    m = torch.nn.Linear(1, 1)
    stop = V.EarlyStopping(patience=2)
    with torch.no_grad():
        m.weight.fill_(1.0)
    assert not stop.update(10, 0.7, {"m": m})
    with torch.no_grad():
        m.weight.fill_(2.0)
    assert not stop.update(20, 0.6, {"m": m})
    assert stop.update(30, float("nan"), {"m": m})  # NaN is no gain: the second validation without one stops
    assert stop.since_best == 2 and stop.best_iteration == 10
    restored = V.EarlyStopping(1)
    restored.load_state_dict(stop.state_dict())
    restored.restore({"m": m})
    assert float(m.weight.detach()) == 1.0 and restored.best_score == 0.7
    with pytest.raises(ValueError, match="patience"):
        V.EarlyStopping(0)


class _Walk(torch.nn.Module):
    """A 'model' whose parameter moves +1 per step; its validation score peaks when it equals `peak`."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))


def _fit(tmp_path, select: bool, peak: float = 6.0, iterations: int = 40, stop_at: int | None = None):
    model = _Walk()
    opt = torch.optim.SGD(model.parameters(), lr=1.0)

    def step(i, batch):
        if stop_at is not None and i + 1 == stop_at:
            raise KeyboardInterrupt
        opt.zero_grad()
        (-model.w).backward()  # gradient -1: w += 1 per step
        opt.step()
        return {"total": -model.w.detach()}

    def score():
        return {"score": -abs(float(model.w.detach()) - peak)}

    val = V.Validation(score, every=2, patience=3, select=select)
    stage = runs.Run(tmp_path).stage("walk")
    history = fit(stage, {"c": 1}, {"model": model}, opt, iterations, itertools.repeat(None), step,
                  checkpoint_every=4, progress=False, log_every=2, validation=val)
    return model, history, score


def test_fit_stops_when_validation_stops_improving_and_returns_the_best_checkpoint(tmp_path):
    model, history, score = _fit(tmp_path, select=True)
    rows = V.validation_rows(history)
    # best at step 6; three validations without improvement (8, 10, 12) stop the loop
    assert [r["iteration"] for r in rows] == [2, 4, 6, 8, 10, 12]
    assert max(r["iteration"] for r in history) == 12
    selected = [r for r in rows if r.get("selected")]
    assert [r["iteration"] for r in selected] == [6]
    # the returned model is the best validated one: its validation score equals the best recorded
    assert score()["score"] == selected[0]["validation"] == max(r["validation"] for r in rows)
    assert V.selection_summary(history) == {"trained_iterations": 12, "validations": 6, "validation_last": -6.0,
                                            "selected_iteration": 6, "validation_best": 0.0}


def test_fixed_selection_records_the_curve_and_trains_every_step(tmp_path):
    model, history, _ = _fit(tmp_path, select=False, iterations=20)
    rows = V.validation_rows(history)
    assert len(rows) == 10 and float(model.w.detach()) == 20.0
    assert [r["iteration"] for r in rows if r.get("selected")] == [20]


def test_an_interrupted_stage_resumes_its_early_stopping_state(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        _fit(tmp_path, select=True, stop_at=9)
    model, history, score = _fit(tmp_path, select=True)  # resumes at step 9 with best = step 6
    assert [r["iteration"] for r in V.validation_rows(history)] == [2, 4, 6, 8, 10, 12]
    assert float(model.w.detach()) == 6.0 and score()["score"] == 0.0


def test_gains_below_min_delta_are_kept_but_do_not_reset_the_patience():
    m = torch.nn.Linear(1, 1)
    stop = V.EarlyStopping(patience=2, min_delta=0.01)
    assert not stop.update(1, 0.80, {"m": m})
    assert not stop.update(2, 0.805, {"m": m})  # better, kept, but within the noise: patience 1 of 2 used
    assert stop.best_iteration == 2 and stop.since_best == 1
    assert stop.update(3, 0.809, {"m": m})  # still within 0.01 of 0.80: the patience runs out
    assert stop.best_iteration == 3 and stop.best_score == 0.809
