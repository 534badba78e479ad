"""Sultani et al.'s MIL MLP and ranking loss (gsmoe_lib/models/sultani.py, losses.sultani_ranking_loss)."""

import pytest
import torch

from gsmoe_lib.losses import sultani_ranking_loss
from gsmoe_lib.models.sultani import SultaniMLP
from gsmoe_lib.training.config import SultaniConfig
from gsmoe_lib.training.sultani import score_fn


def test_shapes_range_and_parameter_count():
    torch.manual_seed(0)
    model = SultaniMLP(input_dim=48).eval()
    assert model(torch.randn(3, 7, 48)).shape == (3, 7)  # [B, T, D] -> [B, T]
    s = model(torch.randn(2, 4, 7, 48))  # [B, C, T, D] -> [B, C, T]
    assert s.shape == (2, 4, 7) and bool(((s > 0) & (s < 1)).all())
    # 48·512 + 512 + 512·32 + 32 + 32 + 1, counted from the built model
    assert sum(p.numel() for p in model.parameters()) == SultaniMLP.n_parameters(48) == 41_537
    assert SultaniMLP.n_parameters(1024) == 541_249  # the docstring's I3D figure
    with pytest.raises(ValueError, match="D=48"):
        model(torch.randn(1, 5, 64))


def test_every_parameter_gets_a_finite_gradient_and_dropout_acts_only_in_training():
    torch.manual_seed(0)
    model = SultaniMLP(input_dim=16, hidden=8, bottleneck=4)
    x = torch.randn(4, 6, 16)
    labels = torch.tensor([0.0, 0.0, 1.0, 1.0])
    loss, _ = sultani_ranking_loss(model(x), labels)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    model.train()
    assert not torch.equal(model(x), model(x))  # dropout 0.6 draws new masks
    model.eval()
    assert torch.equal(model(x), model(x))


def test_ranking_loss_hand_computed():
    # 2 normal bags (maxima 0.4, 0.05) and 2 abnormal bags (maxima 0.9, 0.6), S = 3, in mixed order
    scores = torch.tensor([[0.2, 0.9, 0.5],    # abnormal
                           [0.1, 0.4, 0.2],    # normal
                           [0.6, 0.1, 0.1],    # abnormal
                           [0.05, 0.0, 0.0]])  # normal
    labels = torch.tensor([1.0, 0.0, 1.0, 0.0])
    # pairs (a, n): 1-0.9+0.4, 1-0.9+0.05, 1-0.6+0.4, 1-0.6+0.05 -> 0.5, 0.15, 0.8, 0.45
    hinge = (0.5 + 0.15 + 0.8 + 0.45) / 4
    smooth = ((0.7**2 + 0.4**2) + (0.5**2 + 0.0)) / 2  # abnormal bags only: 0.65, 0.25
    sparse = (1.6 + 0.8) / 2
    loss, parts = sultani_ranking_loss(scores, labels, smooth_weight=0.1, sparse_weight=0.01)
    assert float(parts["hinge"]) == pytest.approx(hinge)
    assert float(parts["smooth"]) == pytest.approx(smooth)
    assert float(parts["sparse"]) == pytest.approx(sparse)
    assert float(loss) == pytest.approx(hinge + 0.1 * smooth + 0.01 * sparse)
    # Sultani's weights by default; normal bags' shapes do not enter the regularisers
    default, _ = sultani_ranking_loss(scores, labels)
    assert float(default) == pytest.approx(hinge + 8e-5 * (smooth + sparse))
    wiggly = scores.clone()
    wiggly[1] = torch.tensor([0.4, 0.0, 0.4])  # same maximum, other shape
    assert float(sultani_ranking_loss(wiggly, labels)[0]) == pytest.approx(float(default))


def test_ranking_loss_gradient_reaches_only_the_bag_maxima():
    scores = torch.tensor([[0.1, 0.3], [0.7, 0.2]], requires_grad=True)  # normal, abnormal
    loss, _ = sultani_ranking_loss(scores, torch.tensor([0.0, 1.0]), smooth_weight=0.0, sparse_weight=0.0)
    loss.backward()
    torch.testing.assert_close(scores.grad, torch.tensor([[0.0, 1.0], [-1.0, 0.0]]))


def test_ranking_loss_without_one_side_and_bad_shapes():
    scores = torch.rand(3, 5)
    _, parts = sultani_ranking_loss(scores, torch.ones(3))
    assert float(parts["hinge"]) == 0.0 and float(parts["sparse"]) > 0
    with pytest.raises(ValueError, match="labels"):
        sultani_ranking_loss(scores, torch.ones(4))


def test_score_fn_crop_modes():
    torch.manual_seed(0)
    model = SultaniMLP(input_dim=8).eval()
    x = torch.randn(1, 3, 5, 8)  # [1, C, T, D]
    torch.testing.assert_close(score_fn(model, "mean")(x), model(x.mean(1)))
    torch.testing.assert_close(score_fn(model, "independent")(x), model(x).mean(1))
    assert score_fn(model, "mean")(x).shape == (1, 5)


def test_config_defaults_are_sultanis():
    c = SultaniConfig()
    assert (c.n_segments, c.batch_normal, c.batch_abnormal, c.hidden, c.bottleneck, c.dropout) == (32, 30, 30, 512,
                                                                                                   32, 0.6)
    assert (c.lr, c.weight_decay, c.smooth_weight, c.sparse_weight) == (1e-3, 1e-3, 8e-5, 8e-5)


def test_results_md_puts_the_sultani_row_first_in_table_2_beside_the_papers_77_42():
    from gsmoe_lib.reporting import results_markdown

    row = {"auc": 0.8123, "auc_abnormal": 0.7, "ap": 0.5, "ap_abnormal": 0.6}
    md = results_markdown({"dataset": "ucf-crime", "profile": "quick", "seeds": 1,
                           "ablation": {"baseline": dict(row, auc=0.76)}, "sultani": row})
    table2 = md.split("## Table 2")[1].split("##")[0]
    lines = [ln for ln in table2.splitlines() if ln.startswith("| ") and "---" not in ln][1:]  # body rows
    assert lines[0].startswith("| Sultani MIL") and "| 81.23 | 77.42 |" in lines[0]
    assert lines[1].startswith("| UR-DMU baseline")
    assert "Sultani" not in results_markdown({"dataset": "ucf-crime", "ablation": {"baseline": row}})


def test_results_md_has_the_top_k_mil_row_and_names_the_stages_below_it():
    from gsmoe_lib.reporting import results_markdown

    row = {"auc": 0.8123, "auc_abnormal": 0.7, "ap": 0.5, "ap_abnormal": 0.6}
    results = {"dataset": "ucf-crime", "profile": "quick", "seeds": 1, "sultani": row,
               "topk_mil": dict(row, auc=0.83),
               "ablation": {"baseline": dict(row, auc=0.76), "tgs": dict(row, auc=0.84)}}
    md = results_markdown(results)
    table2 = md.split("## Table 2")[1].split("##")[0]
    lines = [ln for ln in table2.splitlines() if ln.startswith("| ") and "---" not in ln][1:]
    assert lines[0].startswith("| Sultani MIL") and lines[1].startswith("| top-k MIL MLP")
    assert "| 83.00 | – |" in lines[1]  # no paper number
    assert "**Below the top-k MIL reference** on AUC: UR-DMU baseline (encoder, MIL) (76.00 against 83.00)." \
        in table2 and "+ TGS (" not in table2
    results["ablation"]["baseline"]["auc"] = 0.9
    assert "Every stage is at or above the top-k MIL reference on AUC (83.00)." in results_markdown(results)
