"""The widgets draw into figures pyplot never holds, so matplotlib-inline's flush_figures (run after every
comm message, possibly on another thread) can neither show nor close them (widgets._one_at_a_time)."""

from __future__ import annotations

import threading

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from gsmoe_lib.widgets import AlarmExplorer, TGSTuner  # noqa: E402


def _explorer(tmp_path):
    rng = np.random.default_rng(0)
    scores = {"a": rng.random(40), "b": rng.random(30)}
    labels = {"a": np.r_[np.zeros(320), np.ones(320)].astype(np.uint8), "b": np.zeros(480, np.uint8)}
    return AlarmExplorer(scores, labels, out_path=tmp_path / "op.json")


def test_redraws_leave_no_pyplot_figure_and_show_a_png(tmp_path):
    plt.close("all")
    explorer = _explorer(tmp_path)
    tuner = TGSTuner({"v": 0.1 + 0.7 * np.exp(-((np.arange(60) - 20) ** 2) / 20)}, out_path=tmp_path / "t.json")
    first = explorer.image.data
    explorer.threshold.value = 0.9
    assert plt.get_fignums() == []  # nothing for flush_figures to display or close
    assert explorer.image.data[:8] == b"\x89PNG\r\n\x1a\n" and explorer.image.data != first
    assert tuner.image.data[:8] == b"\x89PNG\r\n\x1a\n" and explorer.redraws == 2


def test_concurrent_redraws_are_serialised(tmp_path, monkeypatch):
    import time

    from gsmoe_lib import figures

    explorer = _explorer(tmp_path)
    plot, inside, most = figures.plot_alarm_explorer, [], []

    def slow_plot(*args, **kwargs):  # records how many redraws draw at once
        inside.append(1)
        most.append(len(inside))
        time.sleep(0.05)
        try:
            return plot(*args, **kwargs)
        finally:
            inside.pop()

    monkeypatch.setattr(figures, "plot_alarm_explorer", slow_plot)
    threads = [threading.Thread(target=explorer.redraw) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert max(most) == 1 and explorer.redraws == 5
