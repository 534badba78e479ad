"""figures.plot_video_scores (`gsmoe score --plot`): what is drawn is what was scored."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402

from gsmoe_lib import figures  # noqa: E402


def test_curve_threshold_expert_band_and_ground_truth():
    scores = np.array([0.1, 0.2, 0.9, 0.8, 0.1, 0.05])
    strongest = ["Arson", "Robbery", "Robbery", "Robbery", "Robbery", "Arson"]
    names = ["Arson", "Burglary", "Robbery"]
    gt = np.zeros(6 * 16, np.uint8)
    gt[2 * 16:4 * 16] = 1  # snippets 2 and 3 anomalous
    fig = figures.plot_video_scores(scores, strongest, names, threshold=0.5, frame_labels=gt, title="v")
    ax, band = fig.axes
    curve = next(line for line in ax.get_lines() if line.get_label() == "score")
    np.testing.assert_allclose(curve.get_ydata(), scores)
    assert any(line.get_label().startswith("alarm threshold 0.500") for line in ax.get_lines())
    image = band.get_images()[0]
    np.testing.assert_array_equal(np.asarray(image.get_array())[0], [0, 2, 2, 2, 2, 0])  # index in `names`
    # Each expert keeps its colour (its index in `names`), whichever experts a video shows.
    assert image.cmap(2) == to_rgba(figures.plt.get_cmap("tab10")(2))
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["Robbery (67 %)", "Arson (33 %)"]  # the experts shown, by snippets held
    shaded = [p for p in ax.patches if p.get_label() == "ground truth"]
    assert len(shaded) == 1 and ax.get_xlabel() == "" and band.get_xlabel() == figures.SNIPPET_LABEL
    assert ax.get_ylabel() == figures.SCORE_LABEL
    figures.plt.close(fig)


def test_without_threshold_or_truth_and_unknown_expert():
    fig = figures.plot_video_scores(np.zeros(3), ["a", "a", "a"], ["a"], note="no annotation")
    ax = fig.axes[0]
    assert not any(line.get_label().startswith("alarm") for line in ax.get_lines())
    assert not [p for p in ax.patches if p.get_label() == "ground truth"] and "no annotation" in ax.get_title(loc="left")
    figures.plt.close(fig)
    with pytest.raises(ValueError, match="'b'"):
        figures.plot_video_scores(np.zeros(2), ["a", "b"], ["a"])
