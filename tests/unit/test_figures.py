import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from gsmoe_lib import figures  # noqa: E402
from gsmoe_lib.tgs import TGSConfig  # noqa: E402

t = np.arange(100)
SCORES = 0.05 + 0.8 * np.exp(-((t - 30) ** 2) / (2 * 8**2)) + 0.4 * np.exp(-((t - 75) ** 2) / 8)
GT = ((t >= 20) & (t < 42)).astype(np.uint8)


def test_save_figure_is_byte_identical_and_atomic(tmp_path):
    fig = figures.plot_tgs_explain(SCORES, TGSConfig(), gt=GT)
    first = figures.save_figure(fig, tmp_path / "a" / "tgs")
    contents = {p.name: p.read_bytes() for p in first}
    second = figures.save_figure(fig, tmp_path / "a" / "tgs")
    plt.close(fig)
    assert [p.name for p in first] == ["tgs.png", "tgs.pdf"] == [p.name for p in second]
    for p in second:
        assert p.stat().st_size > 0 and p.read_bytes() == contents[p.name]
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["tgs.pdf", "tgs.png"]  # no temp files
    assert contents["tgs.png"].startswith(b"\x89PNG") and contents["tgs.pdf"].startswith(b"%PDF")


def test_save_figure_rejects_unknown_format(tmp_path):
    fig = plt.figure()
    with pytest.raises(ValueError, match="jpg"):
        figures.save_figure(fig, tmp_path / "x", formats=("jpg",))
    plt.close(fig)


def test_plot_tgs_explain_labels_and_content():
    fig = figures.plot_tgs_explain(SCORES, TGSConfig(), gt=GT)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "snippet (16 frames)" and ax.get_ylabel() == "anomaly score"
    labels = ax.get_legend_handles_labels()[1]
    assert {"score s", "peaks P_i", "pseudo-label ŷ", "kernels f_i", "ground truth"} <= set(labels)
    plt.close(fig)


def test_plot_tgs_explain_on_given_axes_and_flat_curve():
    fig, ax = plt.subplots()
    assert figures.plot_tgs_explain(np.zeros(50), TGSConfig(), ax=ax) is fig
    assert "0 kernel" in ax.get_title()
    plt.close(fig)


def test_plot_sigma_interpretations_one_panel_each():
    cfgs = {name: TGSConfig(sigma_mode=name) for name in ("temporal", "score", "width")}
    fig = figures.plot_sigma_interpretations(SCORES, cfgs, gt=GT)
    assert isinstance(fig, Figure) and len(fig.axes) == 3
    for ax, name in zip(fig.axes, cfgs):
        assert ax.get_xlabel() == "snippet (16 frames)" and name in ax.get_title()
    plt.close(fig)


def test_plot_sweep_spread_one_panel_per_metric_one_dot_per_seed():
    def record(setting, seed, status="done", **metrics):
        return {"setting_id": setting, "seed": seed, "status": status, "metrics": metrics}

    records = [record("x-1", 0, **{"ablation.gsmoe.auc": 0.60, "ablation.gsmoe.ap": 0.2}),
               record("x-1", 1, **{"ablation.gsmoe.auc": 0.62, "ablation.gsmoe.ap": 0.2}),
               record("x-2", 0, status="failed")]
    fig = figures.plot_sweep_spread(records, ("ablation",))
    auc, ap = fig.axes
    assert auc.get_ylabel() == "AUC (%)" and ap.get_ylabel() == "AP (%)"  # metrics in reading order
    assert [t.get_text() for t in auc.get_xticklabels()] == ["x-1", "x-2"]  # a failed setting keeps its place
    dots = auc.collections[0].get_offsets()
    assert sorted(dots[:, 1]) == pytest.approx([60.0, 62.0])  # one dot per finished seed, in percent
    assert auc.collections[1].get_segments()[0][0][1] == pytest.approx(61.0)  # the mean line
    plt.close(fig)


def test_loss_history_draws_the_validation_curve_on_a_labelled_second_axis():
    rows = [{"iteration": 10, "total": 0.7}, {"iteration": 10, "validation": 0.6},
            {"iteration": 20, "total": 0.5}, {"iteration": 20, "validation": 0.8, "selected": True}]
    fig = figures.plot_loss_history({"seed 0": rows})
    loss_ax, val_ax = fig.axes
    assert loss_ax.get_ylabel() == "training loss" and "validation AUC" in val_ax.get_ylabel()
    curve = [ln for ln in val_ax.get_lines() if ln.get_linestyle() == "--"][0]
    assert list(curve.get_ydata()) == [60.0, 80.0]  # percent
    marked = [ln for ln in val_ax.get_lines() if ln.get_marker() == "o"]
    assert [list(ln.get_xdata()) for ln in marked] == [[20]]  # the selected checkpoint
    assert [t.get_text() for t in loss_ax.get_legend().get_texts()] == ["seed 0: training loss",
                                                                       "seed 0: validation AUC"]
    plt.close(fig)
    assert len(figures.plot_loss_history({"a": rows[::2]}).axes) == 1  # no validation rows: one axis
