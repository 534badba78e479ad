import math

import pytest
import torch

from gsmoe_lib.losses import (
    bce,
    k_for_length,
    mil_bce,
    smoothness,
    sparsity,
    topk_mean,
    topk_normal_loss,
    urdmu_loss,
)
from gsmoe_lib.models.urdmu import URDMUOutput


def test_k_for_length():
    assert [k_for_length(T) for T in (1, 15, 16, 32, 200)] == [1, 1, 2, 3, 13]


def test_topk_mean_hand_values_and_bad_k():
    s = torch.tensor([[1.0, 5.0, 3.0, 2.0], [0.0, 0.0, 4.0, 0.0]])
    torch.testing.assert_close(topk_mean(s, 2), torch.tensor([4.0, 2.0]))
    with pytest.raises(ValueError, match="k=5"):
        topk_mean(s, 5)


def test_bce_matches_torch_and_clamps_like_bceloss():
    p, y = torch.tensor([0.2, 0.9, 0.5]), torch.tensor([0.0, 1.0, 1.0])
    torch.testing.assert_close(bce(p, y), torch.nn.functional.binary_cross_entropy(p, y))
    torch.testing.assert_close(bce(torch.tensor([0.0]), 1.0), torch.tensor(100.0))
    assert bce(p.bfloat16(), y).dtype == torch.float32


def test_mil_bce_hand_values():
    scores = torch.tensor([[0.1, 0.3, 0.2], [0.9, 0.5, 0.7]])
    # k = 2: top-2 means 0.25 (normal video) and 0.8 (abnormal video)
    expected = -(math.log(1 - 0.25) + math.log(0.8)) / 2
    assert mil_bce(scores, torch.tensor([0, 1]), 2).item() == pytest.approx(expected, rel=1e-6)


def test_topk_normal_loss_averages_over_normal_videos_only():
    scores = torch.tensor([[0.1, 0.3, 0.2], [0.9, 0.5, 0.7], [0.6, 0.2, 0.0]])
    labels = torch.tensor([0, 1, 0])
    expected = -(math.log(1 - 0.25) + math.log(1 - 0.4)) / 2  # top-2 means of videos 0 and 2
    assert topk_normal_loss(scores, labels, 2).item() == pytest.approx(expected, rel=1e-6)
    assert topk_normal_loss(scores, torch.ones(3), 2).item() == 0.0


def test_smoothness_and_sparsity_over_abnormal_videos():
    scores = torch.tensor([[0.0, 1.0, 0.0], [0.5, 0.5, 1.0], [9.0, 0.0, 9.0]])
    labels = torch.tensor([1, 1, 0])  # the third (normal) video must not count
    assert smoothness(scores, labels).item() == pytest.approx((2.0 + 0.25) / 2)
    assert sparsity(scores, labels).item() == pytest.approx((1.0 + 2.0) / 2)


def tiny_output(requires_grad: bool = False) -> URDMUOutput:
    """A hand-made training output: 1 normal + 1 abnormal video, T = 2 (k = 1), dim = 2.

    `t(row, ...)` stacks its arguments, so `t([a, b])` is [1, 2]: one video (B/2 = 1) of two snippets.
    """
    t = lambda *v: torch.tensor(v, requires_grad=requires_grad)  # noqa: E731
    return URDMUOutput(
        scores=t([0.2, 0.4], [0.6, 0.8]),
        features=torch.zeros(2, 2, 4),
        A_att=t([0.7, 0.5]),
        N_att=t([0.9, 0.6]),
        A_Natt=t([0.1, 0.3]),
        N_Aatt=t([0.4, 0.8]),
        triplet_anchor=t([3.0, 4.0]),  # normalised (0.6, 0.8)
        triplet_positive=t([0.0, 2.0]),  # (0, 1)
        triplet_negative=t([1.0, 0.0]),  # (1, 0)
        kl_mu=t([[0.5, 0.0], [0.0, 1.0]]),  # [1, T=2, 2]
        kl_logvar=t([[0.0, 1.0], [0.0, 0.0]]),
        abnormal_aug_norm=t([30.0]),
        normal_aug_norm=t([10.0]),
    )


def test_urdmu_loss_terms_by_hand():
    out = tiny_output()
    loss, parts = urdmu_loss(out, torch.tensor([0, 1]))
    ln = math.log
    mil = -(ln(1 - 0.4) + ln(0.8)) / 2
    a_att = -ln(0.7)  # top-1 of A_att against 1
    n_aatt = -ln(1 - 0.4)  # top-1 of 1 - N_Aatt = 0.6 against 1
    n_att = -(ln(0.9) + ln(0.6)) / 2
    a_natt = -(ln(1 - 0.1) + ln(1 - 0.3)) / 2
    d_ap = math.dist((0.6, 0.8), (0.0, 1.0))
    d_an = math.dist((0.6, 0.8), (1.0, 0.0))
    triplet = max(d_ap - d_an + 1.0, 0.0)
    # KL summed over time, then averaged over the 2 channels: channel 0 has (mu, logvar) = (0.5, 0), (0, 0);
    # channel 1 has (0, 1), (1, 0).
    term = lambda m, lv: 1 + lv - m * m - math.exp(lv)  # noqa: E731
    kl = (-0.5 * (term(0.5, 0) + term(0, 0)) - 0.5 * (term(0, 1) + term(1, 0))) / 2
    distance = 100 - 30 + 10
    expected = mil + 0.1 * (a_att + n_aatt + n_att + a_natt) + 0.1 * triplet + 0.001 * kl + 0.0001 * distance
    checks = dict(mil=mil, A_att=a_att, N_Aatt=n_aatt, N_att=n_att, A_Natt=a_natt, triplet=triplet, kl=kl,
                  distance=distance, total=expected)
    for name, value in checks.items():
        assert parts[name].item() == pytest.approx(value, rel=1e-4, abs=1e-6), name
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_urdmu_loss_weights_and_detached_parts():
    out = tiny_output(requires_grad=True)
    labels = torch.tensor([0, 1])
    loss, parts = urdmu_loss(out, labels)
    assert all(not v.requires_grad for v in parts.values())
    loss.backward()
    assert out.scores.grad is not None and out.kl_logvar.grad is not None and out.normal_aug_norm.grad is not None
    only_mil, _ = urdmu_loss(out, labels, memory_weight=0, triplet_weight=0, kl_weight=0, distance_weight=0)
    assert only_mil.item() == pytest.approx(parts["mil"].item())


def test_urdmu_loss_refuses_an_eval_output():
    with pytest.raises(ValueError, match="training mode"):
        urdmu_loss(URDMUOutput(torch.rand(2, 4), torch.rand(2, 4, 3)), torch.tensor([0, 1]))


def test_saturated_scores_give_finite_gradients_also_under_autocast():
    # Scores of exactly 0 and 1 (common in bf16) against the wrong label: BCELoss bounds both value and gradient.
    scores = torch.tensor([[1.0, 0.0], [0.0, 0.0]], requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = mil_bce(scores, torch.tensor([0, 1]), 1) + topk_normal_loss(scores, torch.tensor([0, 1]), 1)
    loss.backward()
    assert loss.item() == pytest.approx(100.0 + 100.0)
    assert torch.isfinite(scores.grad).all()


def test_the_encoder_stage_passes_its_auxiliary_weights_to_urdmu_loss():
    from gsmoe_lib.models.urdmu import URDMU
    from gsmoe_lib.training.loop import urdmu_update

    torch.manual_seed(0)
    model = URDMU(input_dim=8)
    x, labels = torch.rand(4, 16, 8), torch.tensor([0.0, 0.0, 1.0, 1.0])
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # no change to the weights: both calls see one model
    off = dict(memory_weight=0.0, triplet_weight=0.0, kl_weight=0.0, distance_weight=0.0)
    model.eval()  # no dropout: the two forward passes are the same (training_extras still computed)
    mil_only = urdmu_update(model, x, labels, 2, opt, **off)
    full = urdmu_update(model, x, labels, 2, opt)
    assert float(mil_only["total"]) == pytest.approx(float(mil_only["mil"]))
    assert float(full["total"]) > float(full["mil"])  # UR-DMU's own weights add the auxiliary terms
