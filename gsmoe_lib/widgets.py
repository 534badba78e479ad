"""Interactive tuning widgets for the notebooks: thin ipywidgets wrappers over tested library functions.

- `TGSTuner`: every `tgs.TGSConfig` choice as a slider / drop-down over a chosen training video; redraws
  the score curve, detected peaks, kernels and pseudo-labels (`figures.plot_tgs_explain`) on every change;
  its "save" button writes the configuration as JSON (`TGSConfig.to_json`), the file the training
  notebooks' `tgs_config` parameter and `gsmoe train --tgs-config` accept.
- `AlarmExplorer`: a threshold slider and a target false-alarm rate over a run's test scores; shows
  frame-level precision / recall / F1 and false alarms per hour (`operating_point.operating_point`, whose
  docstring defines a false alarm) and a timeline of one video; its "save" button writes the operating
  point JSON that `gsmoe score --operating-point` accepts.

No logic lives here beyond wiring: the math is in `tgs/` and `metrics.py`, the plots in `figures.py`.
Both work headless (tests, papermill): setting a control's `.value` redraws, `button.click()` saves, and the
state is readable from `.config` / `.point`. `.figure` is the last drawn figure, `.image` its PNG (what a
batch run displays), `.redraws` counts draws. Redraws run on the kernel's main thread (`_one_at_a_time`),
and the Output area is filled only once the widget is displayed.
Display a widget in a notebook by making it the cell's last expression (or `display(widget)`).
"""

from __future__ import annotations

import functools
import io
import os
import threading
from pathlib import Path
from typing import Any, Callable, Mapping

import ipywidgets as W
import numpy as np
from IPython.display import Image, display
from matplotlib.figure import Figure

from gsmoe_lib import figures, runs
from gsmoe_lib.operating_point import operating_curve, operating_point, threshold_for_false_alarm_rate
from gsmoe_lib.tgs import NORMALIZE_MODES, SCALES, SIGMA_MODES, TGSConfig, explain


def _kernel_loop() -> Any:
    """The IPython kernel's main-thread event loop (tornado IOLoop), or None outside a kernel."""
    try:
        from IPython import get_ipython

        return getattr(getattr(get_ipython(), "kernel", None), "io_loop", None)
    except ImportError:  # pragma: no cover
        return None


def _one_at_a_time(redraw: Callable[..., None]) -> Callable[..., None]:
    """Run a widget's redraws on the kernel's main thread, one at a time (a lock per widget).

    Why: in JupyterLab (ipykernel 7 with subshells, jupyterlab_widgets 3) the comm messages of one slider drag
    are handled on threads other than the kernel's main thread, so an observer (`redraw`) ran there and sent
    its own comm and display messages (the Output area's updates) from that thread, beside the main thread's:
    ZeroMQ sockets are not thread-safe, and a message can be lost, leaving the client waiting for a kernel
    that is idle. A redraw asked for on another thread is handed to the kernel's main-thread event loop
    (`IOLoop.add_callback`, the one thread-safe call) and runs there; outside a kernel (tests, scripts) it
    runs at once. The lock keeps a redraw whole: every comm message ends with IPython's post_execute event,
    where matplotlib-inline's `flush_figures` displays and closes *every* pyplot figure, which once blanked
    a plot being redrawn (tests/browser); the figures are also outside pyplot (`_FigureWidget._new_figure`).
    """

    @functools.wraps(redraw)
    def wrapper(self: "_FigureWidget", *args: Any, **kwargs: Any) -> None:
        loop = _kernel_loop()
        if loop is not None and threading.current_thread() is not threading.main_thread():
            loop.add_callback(functools.partial(wrapper, self, *args, **kwargs))
            return
        with self._draw_lock:
            redraw(self, *args, **kwargs)

    return wrapper


class _FigureWidget:
    """What both widgets share: an Output area redrawn with a new matplotlib figure, and a status line."""

    box: W.Widget

    def __init__(self) -> None:
        self.output = W.Output()
        self.status = W.HTML()
        self.figure: Any = None
        self.redraws = 0
        self._draw_lock = threading.RLock()  # see _one_at_a_time
        self._live = False  # displayed as a widget: its Output area shows each redraw (`_ipython_display_`)

    @staticmethod
    def _new_figure(figsize: tuple[float, float]) -> Figure:
        """A figure outside pyplot (no flush_figures of another thread can show or close it; see _one_at_a_time)."""
        return Figure(figsize=figsize)

    @property
    def image(self) -> Image:
        """The last drawn figure as a PNG image (what the Output area shows; a batch run displays this)."""
        return Image(data=self._png, format="png")

    def _show(self, fig: Figure) -> None:
        # Rendered here, not by the inline backend's formatter: pyplot never held this figure, so nothing
        # guarantees that matplotlib-inline was loaded and registered one.
        buf = io.BytesIO()
        fig.savefig(buf, format="png", bbox_inches="tight")
        self.figure, self._png = fig, buf.getvalue()
        self.redraws += 1
        if self._live:
            self._fill_output()

    def _fill_output(self) -> None:
        # Only once the widget is displayed: a batch run (papermill) shows `.image` instead, and an Output area
        # filled there makes nbclient send the widget's state back to the kernel as shell requests during the
        # cell, traffic that a headless run does not need.
        with self.output:
            self.output.clear_output()  # not wait=True: nbclient (papermill) can stall on a deferred clear
            display(self.image)

    def _ipython_display_(self) -> None:
        self._live = True
        self._fill_output()
        display(self.box)


def _save_text(path: str | os.PathLike, text: str) -> Path:
    path = Path(path)
    runs.write_text(path, text if text.endswith("\n") else text + "\n")
    return path


def abnormal_video_curves(scores: np.ndarray, train: Any) -> dict[str, np.ndarray]:
    """The TGS tuner's input: name -> crop-averaged score curve [S] of every abnormal training video.

    scores [N', S]: `train.encode_train_set`'s scores of the pooled training samples of `train` (a
    `data.batching.TrainSet`); with crops on an axis ([N, C, S, D]) there are N·C rows, the C crops of a
    sample adjacent.
    """
    scores = np.asarray(scores)
    labels, video_index = np.asarray(train.labels.cpu()), np.asarray(train.video_index.cpu())  # [N], [N]
    if scores.shape[0] != labels.shape[0]:
        reps, rest = divmod(scores.shape[0], labels.shape[0])
        if rest:
            raise ValueError(f"{scores.shape[0]} score rows for {labels.shape[0]} training samples")
        labels, video_index = np.repeat(labels, reps), np.repeat(video_index, reps)
    return {train.video_names[v]: scores[video_index == v].mean(axis=0)  # [S], crops averaged
            for v in np.unique(video_index[labels == 1]).tolist()}


class TGSTuner(_FigureWidget):
    """Tune TGS pseudo-labels by eye over score curves.

    scores_by_video: name -> score curve [T] (e.g. the MIL encoder's scores of abnormal training videos);
    gt: optional name -> snippet ground truth [T] (shaded); config: the starting TGSConfig (its `source`
    is kept as is: it is a training choice, not a shape of the pseudo-labels); out_path: where "save" writes.
    """

    def __init__(
        self,
        scores_by_video: Mapping[str, np.ndarray],
        gt: Mapping[str, np.ndarray] | None = None,
        config: TGSConfig | None = None,
        out_path: str | os.PathLike = "tgs_config.json",
    ) -> None:
        super().__init__()
        if not scores_by_video:
            raise ValueError("TGSTuner needs at least one video's scores")
        self.scores = {k: np.asarray(v, dtype=np.float64) for k, v in scores_by_video.items()}
        self.gt = dict(gt or {})
        self.out_path = Path(out_path)
        c = config or TGSConfig()
        self._source = c.source
        style = {"description_width": "150px"}
        layout = W.Layout(width="420px")

        def slider(value: float, lo: float, hi: float, step: float, text: str) -> W.FloatSlider:
            return W.FloatSlider(value=value, min=lo, max=hi, step=step, description=text, style=style,
                                 layout=layout, continuous_update=False, readout_format=".3f")

        self.video = W.Dropdown(options=list(self.scores), description="video", style=style, layout=layout)
        self.controls: dict[str, W.ValueWidget] = {
            "prominence": slider(c.prominence, 0.0, 1.0, 0.01, "peak prominence"),
            "min_height": slider(c.min_height, 0.0, 1.0, 0.01, "min peak height"),
            "min_distance": W.IntSlider(value=c.min_distance, min=1, max=64, description="min peak distance",
                                        style=style, layout=layout, continuous_update=False),
            "rel_height": slider(c.rel_height, 0.05, 1.0, 0.05, "width at rel. height"),
            "edge_peaks": W.Checkbox(value=c.edge_peaks, description="peaks at the edges", style=style),
            "sigma_mode": W.Dropdown(options=list(SIGMA_MODES), value=c.sigma_mode, description="σ interpretation",
                                     style=style, layout=layout),
            "sigma_floor": slider(c.sigma_floor, 0.1, 10.0, 0.1, "σ floor (snippets)"),
            "threshold_scale": slider(c.threshold_scale, 0.0, 5.0, 0.1, "Eq. 3 σ scale"),
            "threshold_floor": slider(c.threshold_floor, 0.0, 0.5, 0.01, "Eq. 3 margin floor"),
            "normalize": W.Dropdown(options=list(NORMALIZE_MODES), value=c.normalize, description="normalisation",
                                    style=style, layout=layout),
            # "video": the thresholds above are fractions of each curve's own score range (the default)
            "scale": W.Dropdown(options=list(SCALES), value=c.scale, description="thresholds relative to",
                                style=style, layout=layout),
        }
        self.save_button = W.Button(description="save", icon="save", tooltip=f"write the TGS config to {out_path}")
        self.save_button.on_click(lambda _: self.save())
        self.video.observe(lambda _: self.redraw(), names="value")
        for w in self.controls.values():
            w.observe(lambda _: self.redraw(), names="value")
        left = W.VBox([self.video, *self.controls.values(), W.HBox([self.save_button, self.status])])
        self.box = W.VBox([left, self.output])
        self.redraw()

    @property
    def config(self) -> TGSConfig:
        """The TGSConfig the controls describe now."""
        return TGSConfig(**{k: w.value for k, w in self.controls.items()}, source=self._source)

    @_one_at_a_time
    def redraw(self) -> None:
        name = self.video.value
        cfg = self.config
        fig = figures.plot_tgs_explain(self.scores[name], cfg, gt=self.gt.get(name),
                                       ax=self._new_figure((8, 3.2)).subplots())
        fig.axes[0].set_title(f"{name}: {len(explain(self.scores[name], cfg)['peaks'])} kernel(s), "
                              f"σ '{cfg.sigma_mode}'")
        fig.tight_layout()
        self._show(fig)

    def save(self, path: str | os.PathLike | None = None) -> Path:
        """Write the current TGSConfig as JSON (atomically) to `path` (default: out_path)."""
        written = _save_text(path or self.out_path, self.config.to_json())
        self.status.value = f"saved to <code>{written}</code>"
        return written


class AlarmExplorer(_FigureWidget):
    """Pick an alarm threshold: frame-level precision / recall / F1 and false alarms per hour as it moves.

    video_scores: name -> snippet scores [T]; frame_labels: name -> [T*16]; fps: the videos' frame rate
    (UCF-Crime 30, XD-Violence 24); out_path: where "save" writes the operating point JSON.
    n_grid: thresholds of the metric-vs-threshold panel (computed once).
    """

    def __init__(
        self,
        video_scores: Mapping[str, np.ndarray],
        frame_labels: Mapping[str, np.ndarray],
        fps: float = 30.0,
        out_path: str | os.PathLike = "operating_point.json",
        threshold: float = 0.5,
        n_grid: int = 101,
    ) -> None:
        super().__init__()
        if not video_scores:
            raise ValueError("AlarmExplorer needs at least one video's scores")
        self.video_scores = {k: np.asarray(v, dtype=np.float64) for k, v in video_scores.items()}
        self.frame_labels = {k: np.asarray(frame_labels[k]) for k in self.video_scores}
        self.fps = float(fps)
        self.out_path = Path(out_path)
        self.grid = np.linspace(0.0, 1.0, n_grid)
        self.curve = operating_curve(self.video_scores, self.frame_labels, self.grid, self.fps)
        style = {"description_width": "170px"}
        layout = W.Layout(width="460px")
        self.threshold = W.FloatSlider(value=threshold, min=0.0, max=1.0, step=0.001, description="threshold",
                                       style=style, layout=layout, continuous_update=False, readout_format=".3f")
        self.target_rate = W.BoundedFloatText(value=1.0, min=0.0, max=1e6, step=0.5,
                                              description="target false alarms / h", style=style, layout=layout)
        self.apply_target = W.Button(description="threshold for target", tooltip="lowest threshold meeting the target")
        anomalous_first = sorted(self.video_scores, key=lambda n: -int(self.frame_labels[n].any()))
        self.video = W.Dropdown(options=anomalous_first, description="video", style=style, layout=layout)
        self.readout = W.HTML()
        self.save_button = W.Button(description="save", icon="save", tooltip=f"write the operating point to {out_path}")
        self.apply_target.on_click(lambda _: self.use_target())
        self.save_button.on_click(lambda _: self.save())
        self.threshold.observe(lambda _: self.redraw(), names="value")
        self.video.observe(lambda _: self.redraw(), names="value")
        controls = W.VBox([self.threshold, W.HBox([self.target_rate, self.apply_target]), self.video, self.readout,
                           W.HBox([self.save_button, self.status])])
        self.box = W.VBox([controls, self.output])
        self.redraw()

    @property
    def point(self) -> dict[str, float | int]:
        """`operating_point.operating_point` at the current threshold (plus the target rate in the box)."""
        op = operating_point(self.video_scores, self.frame_labels, self.threshold.value, self.fps)
        return {**op, "target_false_alarms_per_hour": float(self.target_rate.value)}

    def use_target(self) -> float:
        """Set the slider to the lowest threshold whose false alarms per hour stay within the target."""
        thr = threshold_for_false_alarm_rate(self.video_scores, self.frame_labels, self.target_rate.value, self.fps)
        self.threshold.max = max(1.0, thr)  # just above a top score of 1.0 is still a valid choice
        self.threshold.value = thr
        return thr

    @_one_at_a_time
    def redraw(self) -> None:
        p = self.point
        self.readout.value = (f"precision {p['precision']:.3f} · recall {p['recall']:.3f} · F1 {p['f1']:.3f} · "
                              f"{p['false_alarms']} false alarms in {p['hours']:.2f} h = "
                              f"<b>{p['false_alarms_per_hour']:.2f} / h</b>")
        name = self.video.value
        self._show(figures.plot_alarm_explorer(self.video_scores[name], self.frame_labels[name], self.threshold.value,
                                               self.curve, self.grid, name, fig=self._new_figure((11, 3.4))))

    def save(self, path: str | os.PathLike | None = None) -> Path:
        """Write the operating point JSON (threshold, precision, recall, f1, false_alarms_per_hour, fps, ...)."""
        written = runs.write_json(path or self.out_path, self.point)
        self.status.value = f"saved to <code>{written}</code>"
        return written
