import json

import numpy as np
import pytest
import torch

from gsmoe_lib import tgs
from gsmoe_lib.tgs import TGSConfig

T = 120
t = np.arange(T)


def bump(center: float, width: float, height: float = 0.8, base: float = 0.05) -> np.ndarray:
    return base + height * np.exp(-((t - center) ** 2) / (2 * width**2))


def plateau(start: int, stop: int, height: float = 0.9, base: float = 0.05) -> np.ndarray:
    s = np.full(T, base)
    s[start:stop] = height
    s[(start + stop) // 2] = height + 0.05  # a single highest snippet inside the anomaly
    return s


# ---------------------------------------------------------------------------------------------- peaks


def test_one_clean_bump_gives_one_at_peak_zero_far_away():
    s = bump(40, 5)
    e = tgs.explain(s, TGSConfig())
    assert e["peaks"].positions.tolist() == [40]
    y = e["y"]
    assert y[40] == pytest.approx(1.0)
    assert y.min() >= 0.0 and y.max() <= 1.0
    assert np.all(y[80:] < 1e-6) and np.all(y[:15] < 1e-6)


def test_two_separated_bumps_give_two_kernels():
    s = np.maximum(bump(30, 4), bump(90, 4, height=0.6))
    e = tgs.explain(s, TGSConfig())
    assert e["peaks"].positions.tolist() == [30, 90]
    assert e["f"].shape == (2, T)
    assert e["y"][30] == pytest.approx(1.0) and e["y"][90] == pytest.approx(1.0)
    assert e["y"][60] < 1e-3


@pytest.mark.parametrize("s", [np.zeros(T), np.full(T, 0.4), np.zeros(1), np.zeros(0)])
def test_flat_or_empty_curve_gives_no_kernel(s):
    e = tgs.explain(s, TGSConfig())
    assert len(e["peaks"]) == 0 and e["f"].shape == (0, len(s))
    assert np.all(e["y"] == 0)


def test_peak_below_prominence_threshold_is_ignored():
    s = np.maximum(bump(30, 4), bump(90, 4, height=0.05))  # second bump has prominence ~0.05
    assert tgs.detect_peaks(s, TGSConfig(prominence=0.1, min_height=0.0)).positions.tolist() == [30]
    assert tgs.detect_peaks(s, TGSConfig(prominence=0.01, min_height=0.0)).positions.tolist() == [30, 90]


def test_peak_below_min_height_is_ignored():
    s = np.maximum(bump(30, 4), bump(90, 4, height=0.2, base=0.0))  # second peak: score 0.2, prominence 0.15
    assert tgs.detect_peaks(s, TGSConfig(min_height=0.0)).positions.tolist() == [30, 90]
    assert tgs.detect_peaks(s, TGSConfig(min_height=0.3)).positions.tolist() == [30]


def test_peak_at_the_edge_is_found_only_with_edge_peaks():
    s = 0.05 + 0.8 * np.exp(-t / 6.0)  # anomaly at the very start, falling from snippet 0
    assert tgs.detect_peaks(s, TGSConfig(edge_peaks=True)).positions.tolist() == [0]
    assert len(tgs.detect_peaks(s, TGSConfig(edge_peaks=False))) == 0


# ---------------------------------------------------------------------------------------- equations


def test_eq3_mask_hand_computed():
    # Window at rel_height 0.5 is {9, 10, 11}: scores 0.5, 0.9, 0.7; std = 0.1633; threshold 0.7367.
    s = np.zeros(20)
    s[9:12] = [0.5, 0.9, 0.7]
    peaks = tgs.detect_peaks(s, TGSConfig())
    assert peaks.positions.tolist() == [10]
    G = tgs.kernel_masks(s, peaks, TGSConfig())
    assert np.flatnonzero(G[0]).tolist() == [10]  # 0.7 and 0.5 are below 0.9 - 0.163
    G_loose = tgs.kernel_masks(s, peaks, TGSConfig(threshold_scale=2.0))  # threshold 0.573
    assert np.flatnonzero(G_loose[0]).tolist() == [10, 11]
    G_floor = tgs.kernel_masks(s, peaks, TGSConfig(threshold_floor=0.45))  # threshold 0.45
    assert np.flatnonzero(G_floor[0]).tolist() == [9, 10, 11]


def test_threshold_floor_keeps_flat_topped_anomaly_literal_rule_does_not():
    s = plateau(30, 80)  # std inside the window ≈ 0.007
    literal = tgs.explain(s, TGSConfig(threshold_floor=0.0))
    assert np.flatnonzero(literal["G"][0]).tolist() == [55]
    floored = tgs.explain(s, TGSConfig())
    assert np.flatnonzero(floored["G"][0]).tolist() == list(range(30, 80))


def test_eq4_splat_and_eq5_render_hand_computed():
    peaks = tgs.Peaks(np.array([2, 6]), np.array([1.0, 5.0]), np.array([3.0, 7.0]), np.ones(2), np.ones(2))
    G = np.ones((2, 9))
    f = tgs.splat(G, peaks, np.array([1.0, 2.0]), 9)
    assert f[0, 3] == pytest.approx(np.exp(-0.5)) and f[1, 8] == pytest.approx(np.exp(-4 / 8))
    y_max = tgs.render(f, TGSConfig(normalize="max"))
    y_clamp = tgs.render(f, TGSConfig(normalize="clamp"))
    total = f.sum(0)
    np.testing.assert_allclose(y_max, total / total.max())
    np.testing.assert_allclose(y_clamp, np.minimum(total, 1.0))


def test_sigma_modes_hand_computed():
    # A 3-snippet plateau: window {9, 10, 11}, equal score mass -> temporal σ² = (1 + 0 + 1) / 3.
    s = np.zeros(20)
    s[9:12] = [0.8, 0.85, 0.8]
    cfg = TGSConfig(sigma_floor=0.01)
    peaks = tgs.detect_peaks(s, cfg)
    temporal = tgs.kernel_sigmas(s, peaks, cfg)[0]
    w = s[9:12]
    assert temporal == pytest.approx(np.sqrt((w * np.array([1, 0, 1])).sum() / w.sum()))
    score = tgs.kernel_sigmas(s, peaks, TGSConfig(sigma_mode="score", sigma_floor=0.01))[0]
    assert score == pytest.approx(np.std(w))
    width = tgs.kernel_sigmas(s, peaks, TGSConfig(sigma_mode="width", sigma_floor=0.01))[0]
    assert width == pytest.approx(peaks.widths[0] / (2 * np.sqrt(2 * np.log(2))))
    assert tgs.kernel_sigmas(s, peaks, TGSConfig(sigma_mode="score", sigma_floor=1.0))[0] == 1.0


@pytest.mark.parametrize("s", [plateau(30, 80), bump(60, 15)], ids=["plateau", "gaussian"])
def test_temporal_kernels_of_a_long_anomaly_are_wider_than_score_kernels(s):
    y_temporal = tgs.explain(s, TGSConfig(sigma_mode="temporal"))["y"]
    y_score = tgs.explain(s, TGSConfig(sigma_mode="score"))["y"]
    assert (y_temporal > 0.5).sum() >= 15
    assert (y_score > 0.5).sum() <= 3
    assert y_temporal.sum() > 3 * y_score.sum()


def test_non_finite_score_names_the_video():
    x = np.tile(bump(40, 5), (3, 1))
    x[1, 7] = np.nan
    with pytest.raises(ValueError, match="Abuse028_x264"):
        tgs.pseudo_labels(x, TGSConfig(), names=["a", "Abuse028_x264", "c"])
    with pytest.raises(ValueError, match="video 1 of the batch"):
        tgs.pseudo_labels(x, TGSConfig())


# -------------------------------------------------------------------------------------------- batches


def _batch() -> np.ndarray:
    rng = np.random.default_rng(0)
    curves = [bump(40, 5), np.maximum(bump(20, 3), bump(90, 12)), np.zeros(T), plateau(50, 100)]
    return np.clip(np.stack(curves) + rng.normal(0, 0.01, (4, T)), 0, 1)


def test_batch_equals_per_video():
    x = _batch()
    for cfg in (TGSConfig(), TGSConfig(sigma_mode="width", normalize="clamp")):
        y = tgs.pseudo_labels(x, cfg)
        assert y.shape == x.shape and y.dtype == x.dtype
        for b in range(len(x)):
            np.testing.assert_allclose(y[b], tgs.explain(x[b], cfg)["y"], atol=1e-12)


def test_torch_in_torch_out_same_device_no_grad():
    x = torch.tensor(_batch(), dtype=torch.float32, requires_grad=True)
    y = tgs.pseudo_labels(x, TGSConfig())
    assert isinstance(y, torch.Tensor) and y.device == x.device and y.dtype == x.dtype
    assert not y.requires_grad
    np.testing.assert_allclose(y.numpy(), tgs.pseudo_labels(x.detach().double().numpy(), TGSConfig()), atol=1e-6)


def test_padded_lengths_are_respected():
    x = _batch()
    lengths = [60, T, 10, 100]
    padded = x.copy()
    for b, n in enumerate(lengths):
        padded[b, n:] = 5.0 if b % 2 else np.nan  # junk in the padding must not matter
    y = tgs.pseudo_labels(padded, TGSConfig(), lengths=lengths)
    for b, n in enumerate(lengths):
        np.testing.assert_allclose(y[b, :n], tgs.explain(x[b, :n], TGSConfig())["y"], atol=1e-12)
        assert np.all(y[b, n:] == 0)
    with pytest.raises(ValueError, match="lengths"):
        tgs.pseudo_labels(x, TGSConfig(), lengths=[1, 2, 3, T + 1])


def test_config_json_round_trip_and_unknown_keys():
    cfg = TGSConfig(prominence=0.2, sigma_mode="width", normalize="clamp", source="encoder")
    assert TGSConfig.from_json(cfg.to_json()) == cfg
    assert TGSConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match=r"\['prominance'\]"):
        TGSConfig.from_dict({**cfg.to_dict(), "prominance": 0.1})
    with pytest.raises(ValueError, match="sigma_mode"):
        TGSConfig(sigma_mode="variance")


# ----------------------------------------------------------------------------------------------- loss


def _loss_inputs():
    torch.manual_seed(0)
    scores = torch.rand(4, 16).clamp(0.05, 0.95).requires_grad_(True)
    labels = torch.tensor([0, 0, 1, 1])
    pseudo = torch.zeros(4, 16)
    pseudo[2:, 3:6] = 1.0
    return scores, labels, pseudo


def test_loss_matches_hand_computation():
    scores, labels, pseudo = _loss_inputs()
    k = 3
    loss, parts = tgs.tgs_loss(scores, labels, pseudo, k)
    s = scores.detach()
    top = s[:2].topk(k, dim=1).values.mean(1)
    topk_norm = -torch.log(1 - top).mean()
    p, y = s[2:], pseudo[2:]
    bce = -(y * torch.log(p) + (1 - y) * torch.log(1 - p)).mean()
    smooth = ((p[:, 1:] - p[:, :-1]) ** 2).sum(1).mean()
    sparse = p.sum(1).mean()
    expected = topk_norm + bce + 8e-5 * smooth + 8e-5 * sparse  # Sultani et al.'s weights
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert parts["bce"].item() == pytest.approx(bce.item(), rel=1e-5)
    assert parts["topk_norm"].item() == pytest.approx(topk_norm.item(), rel=1e-5)


def test_first_epoch_mode_ignores_abnormal_pseudo_labels():
    scores, labels, pseudo = _loss_inputs()
    other = torch.rand_like(pseudo)
    a, _ = tgs.tgs_loss(scores, labels, pseudo, 3, topk_only=True)
    b, parts = tgs.tgs_loss(scores, labels, other, 3, topk_only=True)
    assert a.item() == b.item() == parts["topk_norm"].item()
    a.backward()
    assert torch.all(scores.grad[2:] == 0) and torch.any(scores.grad[:2] != 0)
    full, _ = tgs.tgs_loss(scores, labels, pseudo, 3)
    assert full.item() != a.item()


def test_gradient_reaches_scores_not_pseudo():
    scores, labels, pseudo = _loss_inputs()
    pseudo.requires_grad_(True)
    loss, _ = tgs.tgs_loss(scores, labels, pseudo, 3)
    loss.backward()
    assert scores.grad is not None and torch.all(torch.isfinite(scores.grad)) and scores.grad.abs().sum() > 0
    assert pseudo.grad is None


def test_loss_is_finite_at_saturated_scores():
    scores = torch.tensor([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]], requires_grad=True)
    loss, _ = tgs.tgs_loss(scores, torch.tensor([0, 1]), torch.tensor([[0.0, 0, 0], [0.0, 1, 1]]), 1)
    loss.backward()
    assert torch.isfinite(loss) and torch.all(torch.isfinite(scores.grad))


def test_tgs_stage_teacher_pseudo_labels_are_the_frozen_encoders():
    """source "encoder": finetune_tgs splats the MIL encoder's eval-mode scores, once, for every sample."""
    from gsmoe_lib.data.batching import TrainSet
    from gsmoe_lib.models.urdmu import URDMU
    from gsmoe_lib.training.stages import teacher_pseudo_labels

    torch.manual_seed(0)
    encoder = URDMU(input_dim=16)
    encoder.train()  # dropout on: the teacher must switch it off
    n, S = 5, 24
    features = torch.rand(n, S, 16)
    ts = TrainSet(features, torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0]), torch.zeros(n, 1), torch.arange(n),
                  ("A",), [f"v{i}" for i in range(n)], "independent")
    cfg = TGSConfig(min_height=0.0, prominence=0.0)  # a kernel on every curve, whatever its scale
    got = teacher_pseudo_labels(encoder, ts, cfg, "cpu", "none", chunk=2)  # chunks of 2, 2, 1
    with torch.no_grad():
        want = tgs.pseudo_labels(encoder.eval()(features, training_extras=False).scores, cfg)
    assert got.shape == (n, S) and torch.allclose(got, want)
    assert torch.allclose(got.amax(-1), torch.ones(n))  # every curve got a kernel, normalised to 1


def test_video_scale_finds_the_same_kernels_at_any_score_level():
    """scale="video": a teacher whose scores are 100x lower (the tiny / XD quick / bf16 cases) gives the same ŷ."""
    t = np.arange(80)
    curve = 0.1 + 0.8 * np.exp(-((t - 30) ** 2) / 20.0) + 0.4 * np.exp(-((t - 60) ** 2) / 8.0)
    cfg = TGSConfig()
    y = tgs.pseudo_labels(curve[None], cfg)[0]
    assert y.max() == 1.0 and len(tgs.detect_peaks(curve, cfg)) == 2
    np.testing.assert_allclose(tgs.pseudo_labels(0.002 + curve[None] / 100, cfg)[0], y, atol=1e-9)
    absolute = TGSConfig(scale="absolute")
    assert tgs.pseudo_labels(0.002 + curve[None] / 100, absolute).max() == 0.0  # no peak reaches min_height
    assert tgs.pseudo_labels(np.full((1, 80), 0.3), cfg).max() == 0.0  # a flat curve: no kernel
    e = tgs.explain(0.002 + curve / 100, cfg)  # thresholds and heights come back in score units
    assert np.all(e["thresholds"] < e["peaks"].heights) and np.all(e["peaks"].heights < 0.02)


def test_per_sample_first_epoch_mask_drops_only_those_abnormal_samples():
    scores, labels, pseudo = _loss_inputs()
    mask = torch.tensor([False, False, True, False])  # sample 2 (abnormal) is still in its first epoch
    loss, _ = tgs.tgs_loss(scores, labels, pseudo, 3, topk_only=mask)
    loss.backward()
    assert torch.all(scores.grad[2] == 0) and torch.any(scores.grad[3] != 0) and torch.any(scores.grad[0] != 0)
    only3, _ = tgs.tgs_loss(scores[[0, 1, 3]], labels[[0, 1, 3]], pseudo[[0, 1, 3]], 3)
    torch.testing.assert_close(loss.detach(), only3.detach())
