"""The tuning widgets, headless: set .value / .click() and assert on the state, the redraws and the files."""

import json

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from gsmoe_lib.operating_point import operating_point, threshold_for_false_alarm_rate  # noqa: E402
from gsmoe_lib.tgs import TGSConfig, explain  # noqa: E402
from gsmoe_lib.widgets import AlarmExplorer, TGSTuner  # noqa: E402


def curves():
    t = np.arange(60)
    return {
        "two_peaks": 0.1 + 0.7 * np.exp(-((t - 15) ** 2) / 20) + 0.5 * np.exp(-((t - 40) ** 2) / 30),
        "flat": np.full(40, 0.3),
    }


def test_tgs_tuner_controls_set_the_config_and_redraw(tmp_path):
    # absolute scale: the prominences below are in score units
    tuner = TGSTuner(curves(), config=TGSConfig(source="encoder", scale="absolute"), out_path=tmp_path / "tgs.json")
    assert tuner.redraws == 1
    tuner.controls["prominence"].value = 0.55
    tuner.controls["sigma_mode"].value = "width"
    tuner.controls["normalize"].value = "clamp"
    assert tuner.redraws == 4
    cfg = tuner.config
    assert (cfg.prominence, cfg.sigma_mode, cfg.normalize, cfg.source) == (0.55, "width", "clamp", "encoder")
    # the drawn figure is the current config's: prominence 0.55 keeps only the taller peak
    assert "1 kernel" in tuner.figure.axes[0].get_title()
    assert len(explain(curves()["two_peaks"], cfg)["peaks"]) == 1
    tuner.video.value = "flat"
    assert tuner.redraws == 5 and "flat: 0 kernel" in tuner.figure.axes[0].get_title()


def test_tgs_tuner_save_writes_a_loadable_config(tmp_path):
    out = tmp_path / "sub" / "tgs.json"
    tuner = TGSTuner(curves(), out_path=out)
    tuner.controls["rel_height"].value = 0.8
    tuner.controls["min_distance"].value = 3
    tuner.save_button.click()
    loaded = TGSConfig.from_json(out.read_text())
    assert loaded == tuner.config and loaded.rel_height == 0.8 and loaded.min_distance == 3
    assert str(out) in tuner.status.value
    assert not list(out.parent.glob(".*tmp"))  # atomic write left nothing behind


def alarm_data():
    rng = np.random.default_rng(0)
    scores, labels = {}, {}
    for i in range(4):
        y = np.zeros(50, np.uint8)
        if i < 2:
            y[20:30] = 1
        scores[f"v{i}"] = np.clip(0.2 + 0.6 * y + 0.25 * rng.standard_normal(50), 0, 1)
        labels[f"v{i}"] = np.repeat(y, 16)
    return scores, labels


def test_alarm_explorer_threshold_and_target(tmp_path):
    scores, labels = alarm_data()
    ex = AlarmExplorer(scores, labels, fps=24.0, out_path=tmp_path / "op.json")
    assert ex.video.options[0] in ("v0", "v1")  # abnormal videos are offered first
    n = ex.redraws
    ex.threshold.value = 0.7
    assert ex.redraws == n + 1
    assert ex.point["f1"] == pytest.approx(operating_point(scores, labels, 0.7, fps=24.0)["f1"])
    assert "false alarms" in ex.readout.value
    ex.target_rate.value = 20.0
    ex.apply_target.click()
    expected = threshold_for_false_alarm_rate(scores, labels, 20.0, fps=24.0)
    assert ex.threshold.value == pytest.approx(expected)
    assert ex.point["false_alarms_per_hour"] <= 20.0


def test_alarm_explorer_save_is_what_gsmoe_score_reads(tmp_path):
    from gsmoe_lib.inference import read_operating_point

    scores, labels = alarm_data()
    ex = AlarmExplorer(scores, labels, out_path=tmp_path / "op.json")
    ex.threshold.value = 0.6
    ex.save_button.click()
    op = json.loads((tmp_path / "op.json").read_text())
    assert {"threshold", "precision", "recall", "f1", "false_alarms_per_hour", "fps"} <= set(op)
    assert op["threshold"] == pytest.approx(0.6) and op["fps"] == 30.0
    assert read_operating_point(tmp_path / "op.json")["threshold"] == pytest.approx(0.6)


def test_abnormal_video_curves_average_crops_of_abnormal_videos():
    from types import SimpleNamespace

    import torch

    from gsmoe_lib.widgets import abnormal_video_curves

    scores = np.array([[0.0, 1.0], [1.0, 1.0], [0.5, 0.5], [0.2, 0.2]])  # [N=4 samples, S=2]
    train = SimpleNamespace(labels=torch.tensor([1.0, 1.0, 0.0, 1.0]), video_index=torch.tensor([0, 0, 1, 2]),
                            video_names=["a", "n", "b"])  # video 0 has two crops
    out = abnormal_video_curves(scores, train)
    assert list(out) == ["a", "b"]
    np.testing.assert_allclose(out["a"], [0.5, 1.0])
    # crops on an axis: 2 samples x 2 crops, a sample's crops in adjacent rows
    axis = SimpleNamespace(labels=torch.tensor([1.0, 0.0]), video_index=torch.tensor([0, 1]), video_names=["a", "n"])
    out = abnormal_video_curves(scores, axis)
    assert list(out) == ["a"]
    np.testing.assert_allclose(out["a"], [0.5, 1.0])


def test_a_redraw_asked_for_on_another_thread_runs_on_the_kernels_main_thread(monkeypatch):
    """Comm messages handled on a kernel thread (ipykernel 7 subshells) must not draw and send from there."""
    import threading

    from gsmoe_lib import widgets

    queued = []

    class Loop:  # the kernel's IOLoop: add_callback is its one thread-safe call
        def add_callback(self, fn):
            queued.append(fn)

    tuner = widgets.TGSTuner({"a": np.linspace(0, 1, 32), "b": np.linspace(1, 0, 32)})
    before = tuner.redraws
    monkeypatch.setattr(widgets, "_kernel_loop", lambda: Loop())
    drawn_on = []
    original = widgets.TGSTuner.redraw.__wrapped__
    monkeypatch.setattr(widgets.TGSTuner, "redraw", widgets._one_at_a_time(
        lambda self: drawn_on.append(threading.current_thread()) or original(self)))
    worker = threading.Thread(target=lambda: setattr(tuner.video, "value", "b"))
    worker.start()
    worker.join()
    assert tuner.redraws == before and len(queued) == 1  # handed over, not drawn on the worker thread
    queued.pop()()  # the kernel's loop runs it on the main thread
    assert tuner.redraws == before + 1 and drawn_on == [threading.main_thread()]


def test_a_headless_widget_leaves_its_output_area_empty_until_displayed():
    """A batch run shows `.image`: redraws there send no Output-area messages (nbclient would echo them back)."""
    from gsmoe_lib import widgets

    tuner = widgets.TGSTuner({"a": np.linspace(0, 1, 32), "b": np.linspace(1, 0, 32)})
    tuner.video.value = "b"
    assert tuner.redraws == 2 and tuner.output.outputs == () and not tuner._live
