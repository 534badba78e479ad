"""Diagnostics of the mixture on planted inputs whose answers are known by hand.

Expert x class AUC matrix, own-expert advantage, masking by zero and by the others' mean, the drop it
causes, score spread / collapse, and the heatmap.
"""

from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from gsmoe_lib import figures  # noqa: E402
from gsmoe_lib.diagnostics import (  # noqa: E402
    advantage_over_seeds,
    collapse_over_seeds,
    expert_class_auc,
    expert_masking,
    expert_test_scores,
    masking_drop,
    own_expert_advantage,
    stage_collapse,
)
from gsmoe_lib.metrics import COLLAPSE_STD, collapse_report, score_spread  # noqa: E402
from gsmoe_lib.models.gate import Gate  # noqa: E402
from gsmoe_lib.models.gsmoe import GSMoEModel  # noqa: E402

CLASSES = ["Abuse", "Arson", "Fighting"]
T = 10


def planted(generic: bool = False, seed: int = 0):
    """Two videos per class and three normal ones; anomalous snippets 3..6 of each abnormal video.

    Expert e scores 1 on the anomalous snippets of class e's videos and 0 everywhere else, so on class c's
    snippets (plus the normal videos') expert c has AUC 1 and every other expert sees only ties (AUC 0.5).
    generic=True: expert 0 instead scores every anomalous snippet 1 (a shared detector, AUC 1 on every class).
    """
    scores, labels, classes = {}, {}, {}
    y = np.zeros(T, np.uint8)
    y[3:7] = 1
    for k, cls in enumerate(CLASSES):
        for j in range(2):
            s = np.zeros((T, len(CLASSES)), np.float32)
            s[y == 1, k] = 1.0
            if generic:
                s[y == 1, 0] = 1.0
            name = f"{cls}{j:03d}"
            scores[name], labels[name], classes[name] = s, np.repeat(y, 16), (cls,)
    for j in range(3):
        name = f"Normal{j:03d}"
        scores[name] = np.zeros((T, len(CLASSES)), np.float32)
        labels[name], classes[name] = np.zeros(T * 16, np.uint8), ()
    return scores, labels, classes


# ---- expert x class matrix and own-expert advantage ----


def test_specialised_experts_give_a_diagonal_and_a_50_point_advantage():
    scores, labels, classes = planted()
    m = expert_class_auc(scores, labels, classes, CLASSES, CLASSES)
    assert list(m.index) == CLASSES and list(m.columns) == CLASSES
    np.testing.assert_allclose(m.to_numpy(), np.where(np.eye(3, dtype=bool), 1.0, 0.5))
    adv = own_expert_advantage(m)
    assert adv["per_class"] == pytest.approx({c: 50.0 for c in CLASSES})  # 100 * (1 - 0.5)
    assert adv["mean"] == pytest.approx(50.0) and adv["n_positive"] == 3 and adv["n_classes"] == 3


def test_a_generic_expert_lowers_the_advantage_by_a_computable_amount():
    scores, labels, classes = planted(generic=True)
    m = expert_class_auc(scores, labels, classes, CLASSES, CLASSES)
    adv = own_expert_advantage(m)
    # Abuse: own expert (the generic one) 1.0 against (0.5 + 0.5) / 2 -> +50; Arson and Fighting: own 1.0
    # against the mean of the generic expert (1.0) and one tied expert (0.5) -> +25.
    assert adv["per_class"] == pytest.approx({"Abuse": 50.0, "Arson": 25.0, "Fighting": 25.0})
    assert adv["mean"] == pytest.approx(100.0 / 3)


def test_identical_experts_have_zero_advantage_and_a_swapped_one_is_negative():
    scores, labels, classes = planted()
    swapped = {n: s[:, [1, 0, 2]] for n, s in scores.items()}  # Abuse's and Arson's experts trade places
    adv = own_expert_advantage(expert_class_auc(swapped, labels, classes, CLASSES, CLASSES))
    assert adv["per_class"]["Abuse"] == pytest.approx(-25.0)  # own 0.5 against (1.0 + 0.5) / 2
    assert adv["per_class"]["Fighting"] == pytest.approx(50.0) and adv["n_positive"] == 1
    same = {n: np.repeat(s.max(1, keepdims=True), 3, axis=1) for n, s in scores.items()}  # 3 generic experts
    adv = own_expert_advantage(expert_class_auc(same, labels, classes, CLASSES, CLASSES))
    assert adv["per_class"] == pytest.approx({c: 0.0 for c in CLASSES}) and adv["n_positive"] == 0


def test_a_cell_pools_the_class_videos_with_all_normal_videos():
    rng = np.random.default_rng(1)
    scores, labels, classes = planted()
    scores = {n: rng.random(s.shape).astype(np.float32) for n, s in scores.items()}
    m = expert_class_auc(scores, labels, classes, CLASSES, CLASSES)
    names = ["Arson000", "Arson001", "Normal000", "Normal001", "Normal002"]
    y = np.concatenate([labels[n].reshape(-1, 16).mean(1) >= 0.5 for n in names])
    s = np.concatenate([scores[n][:, 2] for n in names])
    assert m.loc["Fighting", "Arson"] == pytest.approx(roc_auc_score(y, s))


def test_multi_label_videos_count_for_each_class_and_empty_classes_are_nan():
    scores, labels, classes = planted()
    classes = {n: (("Abuse", "Vandalism") if n == "Abuse000" else c) for n, c in classes.items()}
    cols = CLASSES + ["Vandalism", "Shooting"]
    m = expert_class_auc(scores, labels, classes, CLASSES, cols)
    assert m.loc["Abuse", "Vandalism"] == pytest.approx(1.0)  # Abuse000's snippets, scored by Abuse's expert
    assert m["Shooting"].isna().all()
    adv = own_expert_advantage(m)
    assert set(adv["per_class"]) == set(CLASSES)  # no own expert for Vandalism, no test video for Shooting


def test_advantage_is_none_for_cluster_experts_or_a_single_expert_and_arrays_need_names():
    m = pd.DataFrame(np.full((2, 3), 0.7), index=["cluster 0", "cluster 1"], columns=CLASSES)
    assert own_expert_advantage(m) is None
    assert own_expert_advantage(pd.DataFrame([[0.9]], index=["Abuse"], columns=["Abuse"])) is None
    with pytest.raises(ValueError, match="needs expert_names"):
        own_expert_advantage(np.eye(3))
    adv = own_expert_advantage(np.where(np.eye(3, dtype=bool), 0.9, 0.6), CLASSES, CLASSES)
    assert adv["mean"] == pytest.approx(30.0)


def test_matrix_errors_name_the_video():
    scores, labels, classes = planted()
    scores["Arson001"] = scores["Arson001"][:-1]
    with pytest.raises(ValueError, match="Arson001.*9 snippets.*10"):
        expert_class_auc(scores, labels, classes, CLASSES, CLASSES)
    scores, labels, classes = planted()
    with pytest.raises(ValueError, match=r"Abuse000.*\[T, E=2\]"):
        expert_class_auc(scores, labels, classes, CLASSES[:2], CLASSES)
    normal_free = {n: s for n, s in scores.items() if classes[n]}
    with pytest.raises(ValueError, match="no normal test video"):
        expert_class_auc(normal_free, labels, classes, CLASSES, CLASSES)


# ---- masking by zero and by the others' mean ----


class _Enc(torch.nn.Module):
    def forward(self, x, training_extras=False):
        return SimpleNamespace(scores=x[..., 0], features=x)


class _Experts(torch.nn.Module):
    """Expert e's logit = feature e (its score the sigmoid of it)."""

    n_experts = 3

    def logits(self, f, in_groups=False):
        return f[..., :3]

    def forward(self, f):
        return torch.sigmoid(self.logits(f))


class _SumGate(torch.nn.Module):
    """score = mean of its expert inputs, a masked one set to 0 or to the mean of the others."""

    def forward(self, inputs, features, expert_mask=None, mask_fill="zero"):
        if expert_mask is not None:
            kept = inputs * expert_mask
            fill = kept.sum(-1, keepdim=True) / expert_mask.sum() if mask_fill == "mean" else 0.0
            inputs = kept + (1 - expert_mask) * fill
        return SimpleNamespace(scores=inputs.mean(-1), embedding=inputs)


class _Split:
    """Per class two videos whose anomalous snippets light up that class's feature; others noise."""

    def __init__(self):
        rng = np.random.default_rng(0)
        self.classes, self.videos, self._x, self._y = CLASSES, [], [], []
        for k, cls in enumerate(CLASSES):
            for j in range(2):
                y = np.zeros(T, np.uint8)
                y[3 + j: 7 + j] = 1
                x = rng.random((2, T, 4)).astype(np.float32) * 0.1  # [C, T, D]
                x[:, y == 1, k] += 0.8
                self.videos.append(SimpleNamespace(name=f"{cls}{j:03d}", label=1, classes=(cls,)))
                self._x.append(x)
                self._y.append(np.repeat(y, 16))
        self.videos.append(SimpleNamespace(name="Normal000", label=0, classes=()))
        self._x.append(rng.random((2, T, 4)).astype(np.float32) * 0.1)
        self._y.append(np.zeros(T * 16, np.uint8))

    def load(self, i):
        return self._x[i]

    def frame_labels(self, i):
        return self._y[i]


def test_masking_two_ways_and_its_mean_drop():
    model = GSMoEModel(_Enc(), _Experts(), _SumGate())
    table = expert_masking(model, _Split(), CLASSES)
    assert list(table) == CLASSES
    for cls, row in table.items():
        assert set(row) == {"unmasked", "zero", "mean"}
        assert row["unmasked"] == pytest.approx(1.0)
        # Zero: only the other experts' noise is left (chance-like); mean: the masked class's signal is
        # gone too, as the others' mean carries none of it.
        assert row["zero"] < 0.8 and row["mean"] < 0.8
    drop = masking_drop(table)
    assert drop["zero"] == pytest.approx(100 * np.mean([1 - r["zero"] for r in table.values()]))
    assert drop["mean"] > 20
    assert expert_masking(model, _Split(), CLASSES, fills=("zero",)) == {
        c: {"unmasked": r["unmasked"], "zero": r["zero"]} for c, r in table.items()}  # each fill on its own


def test_mean_fill_reaches_the_gate_input_and_is_removed_afterwards():
    torch.manual_seed(0)
    gate = Gate(3, 4, d_model=16, ffn_hidden=32, mlp_hidden=(16, 8, 4), dropout=0.0).eval()
    model = GSMoEModel(_Enc(), _Experts(), gate).eval()
    seen = []
    gate.expert_proj.register_forward_hook(lambda m, inp, out: seen.append(inp[0].detach().clone()))
    split = _Split()
    expert_masking(model, split, CLASSES, classes=["Arson"], fills=("mean",))
    assert len(seen) == 4  # Arson's two videos: unmasked, then masked
    unmasked, masked = seen[0], seen[2]  # the same video (Arson000), [C, T, E]
    torch.testing.assert_close(masked[..., 1], masked[..., [0, 2]].mean(-1))  # the others' mean
    torch.testing.assert_close(masked[..., [0, 2]], unmasked[..., [0, 2]])  # the others unchanged
    seen.clear()
    model(torch.from_numpy(split._x[2])[None])
    assert not torch.allclose(seen[0][..., 1], seen[0][..., [0, 2]].mean(-1))  # the hook is gone


def test_a_model_taking_mask_fill_gets_it_passed_through():
    calls = []

    class WithFill(torch.nn.Module):
        def forward(self, x, expert_mask=None, mask_fill="zero", combine="max"):
            calls.append(mask_fill if expert_mask is not None else None)
            return SimpleNamespace(scores=x[:, 0, :, 0])

    expert_masking(WithFill(), _Split(), CLASSES, classes=["Abuse"])
    assert calls.count("zero") == 2 and calls.count("mean") == 2  # two Abuse videos, once per fill


def test_mean_fill_needs_a_model_taking_mask_fill():
    class ZeroOnly(torch.nn.Module):
        def forward(self, x, expert_mask=None):
            return SimpleNamespace(scores=x[:, 0, :, 0])

    assert set(expert_masking(ZeroOnly(), _Split(), CLASSES, fills=("zero",))["Abuse"]) == {"unmasked", "zero"}
    with pytest.raises(ValueError, match="'mean' needs a model whose forward takes mask_fill"):
        expert_masking(ZeroOnly(), _Split(), CLASSES, fills=("mean",))
    with pytest.raises(ValueError, match="unknown mask fills"):
        expert_masking(ZeroOnly(), _Split(), CLASSES, fills=("noise",))


def test_expert_test_scores_are_the_models_expert_outputs():
    model = GSMoEModel(_Enc(), _Experts(), _SumGate())
    split = _Split()
    out = expert_test_scores(model, split)
    assert list(out) == [v.name for v in split.videos]
    expected = 1 / (1 + np.exp(-split._x[3][..., :3]))  # [C, T, E]: each crop's expert scores
    np.testing.assert_allclose(out["Arson001"], expected.mean(0), rtol=1e-5)  # [T, E], crops averaged


# ---- spread and collapse ----


def test_score_spread_and_collapse():
    assert score_spread({"a": np.full(7, 0.3), "b": np.full(4, 0.3)}) == pytest.approx(0.0, abs=1e-12)
    assert collapse_report({"a": np.full(7, 0.25)}) == {"score_std": 0.0, "collapsed": True}
    # Pooled over videos, not per video: each video is constant, together they are {0, 1} -> std 0.5.
    assert score_spread({"a": np.zeros(5), "b": np.ones(5)}) == pytest.approx(0.5)
    assert collapse_report({"a": np.zeros(5), "b": np.ones(5)})["collapsed"] is False
    tiny = {"a": 0.5 + np.array([-1, 1]) * COLLAPSE_STD / 2}  # std = COLLAPSE_STD / 2
    assert collapse_report(tiny)["collapsed"] is True
    assert score_spread({"a": np.array([[0.0, 1.0], [1.0, 0.0]])}) == 0.0  # [C, T]: crops averaged first
    assert collapse_report({"a": np.linspace(0.5, 0.5 + 4 * COLLAPSE_STD, 9)})["collapsed"] is False
    assert score_spread({"a": np.array([0.0, np.nan, 1.0])}) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="no finite"):
        score_spread({"a": np.array([np.nan])})


def test_stage_collapse_reads_metrics_or_the_stage_scores(tmp_path):
    np.savez(tmp_path / "test_scores.npz", v0=np.full(6, 0.01), v1=np.full(3, 0.01))
    stages = {"encoder": SimpleNamespace(metrics={"score_std": 0.2, "collapsed": False}, path=tmp_path / "nope"),
              "gate": SimpleNamespace(metrics={"auc": 0.5}, path=tmp_path)}
    status = stage_collapse(stages)
    assert status == {"encoder": {"score_std": 0.2, "collapsed": False},
                      "gate": {"score_std": 0.0, "collapsed": True}}
    with pytest.raises(FileNotFoundError, match="'x'.*test_scores.npz"):
        stage_collapse({"x": SimpleNamespace(metrics={}, path=tmp_path / "missing")})


# ---- the heatmap ----


def test_heatmap_outlines_the_own_expert_and_labels_the_colour_bar():
    scores, labels, classes = planted()
    m = expert_class_auc(scores, labels, classes, CLASSES, CLASSES + ["Shooting"])  # one NaN column
    fig = figures.plot_expert_class_auc(m)
    ax, cbar = fig.axes
    assert cbar.get_ylabel() == "snippet AUC (%)"
    assert ax.get_ylabel() == "expert" and "class" in ax.get_xlabel()
    outlined = sorted((p.get_x() + 0.5, p.get_y() + 0.5) for p in ax.patches if not p.get_fill())
    assert outlined == [(0, 0), (1, 1), (2, 2)]  # the diagonal: own experts
    texts = [t.get_text() for t in ax.texts]
    assert texts.count("100") == 3 and texts.count("50") == 6  # 9 finite cells, no label on the NaN column
    plt.close(fig)


def test_advantage_and_collapse_over_seeds():
    a = {"per_class": {"Abuse": 4.0, "Arson": -2.0}, "mean": 1.0, "n_positive": 1, "n_classes": 2}
    b = {"per_class": {"Abuse": 2.0, "Arson": 4.0}, "mean": 3.0, "n_positive": 2, "n_classes": 2}
    s = advantage_over_seeds([a, b])
    assert s["per_class"] == {"Abuse": 3.0, "Arson": 1.0} and s["n_positive"] == 2 and s["n_classes"] == 2
    assert s["mean"] == 2.0 and s["std"] == pytest.approx(np.sqrt(2.0))
    assert np.isnan(advantage_over_seeds([a])["std"])
    assert advantage_over_seeds([a, None]) is None
    seed0 = {"encoder": {"score_std": 0.2, "collapsed": False}, "gate": {"score_std": 0.0, "collapsed": True}}
    seed1 = {"encoder": {"score_std": 0.4, "collapsed": False}, "gate": {"score_std": 0.1, "collapsed": False}}
    c = collapse_over_seeds([seed0, seed1])
    assert list(c) == ["encoder", "gate"]
    assert c["encoder"] == {"score_std": pytest.approx(0.3), "collapsed_seeds": 0, "n_seeds": 2,
                            "per_seed_std": [0.2, 0.4]}
    assert c["gate"]["collapsed_seeds"] == 1 and c["gate"]["score_std"] == pytest.approx(0.05)


# ---- collapse and diagnostics in the results (pipeline) ----


def test_a_collapsed_stage_is_shown_as_collapsed_not_as_a_metric():
    from gsmoe_lib.reporting import comparison_table, mean_over_seeds

    dead = mean_over_seeds([{"auc": 0.51, "score_std": 1e-5, "collapsed": True},
                            {"auc": 0.49, "score_std": 3e-5, "collapsed": True}])
    assert (dead["collapsed_seeds"], dead["n_seeds"], dead["score_std"]) == (2, 2, pytest.approx(2e-5))
    half = mean_over_seeds([{"auc": 0.8, "score_std": 0.2, "collapsed": False},
                            {"auc": 0.6, "score_std": 1e-5, "collapsed": True}])
    alive = mean_over_seeds([{"auc": 0.8, "score_std": 0.2, "collapsed": False}])
    md = comparison_table([("dead", "gate", dead), ("half", "tgs", half), ("alive", "baseline", alive)],
                          "ucf-crime", metrics=("auc",))
    rows = {line.split(" | ")[0].lstrip("| "): line for line in md.splitlines()[2:]}
    assert "collapsed (std 2.0e-05)" in rows["dead"] and "50.00" not in rows["dead"]
    assert "half (collapsed on 1 of 2 seeds)" in rows and "70.00" in rows["half (collapsed on 1 of 2 seeds)"]
    assert "80.00" in rows["alive"] and "collapsed" not in rows["alive"]
    assert "collapsed_seeds" not in mean_over_seeds([{"auc": 0.8}])  # old metrics without the report


def test_results_markdown_has_the_diagnostics():
    from gsmoe_lib.reporting import results_markdown

    md = results_markdown({
        "dataset": "ucf-crime",
        "specialisation": {"own_expert_advantage": {"mean": 3.25, "std": float("nan"), "n_positive": 11,
                                                    "n_classes": 13}},
        "masking": {"mean_drop": {"zero": 2.5, "mean": -0.75}, "paper_mean_drop": 40.0},
        "tsne": {"silhouette": {"baseline": -0.35, "experts": -0.125, "gate": 0.5}},
        "collapse": {"experts": {"score_std": 1.9e-4, "collapsed_seeds": 1, "n_seeds": 1}},
    })
    assert "+3.25 (11 of 13 classes positive)" in md
    assert "| +2.50 | 40.00 (masked ≈ 50)" in md and "| -0.75 |" in md
    assert "experts -0.125" in md
    assert "| experts | 1.90e-04 | 1 of 1 |" in md
