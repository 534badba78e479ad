"""Every plot the notebooks show, and the one helper that saves them.

Figures are regenerated, never edited by hand. `save_figure` writes them with fixed metadata (no
software version, no creation date) and a fixed dpi, so the same results give byte-identical files and a
changed figure file always means changed results. Plot functions take data and return a matplotlib
Figure; they never save or close it (the caller decides).

The backend is left to the caller (a notebook's inline backend, Agg in tests and headless runs).
Units on every axis: time in snippets (one snippet = 16 frames), scores as probabilities in [0, 1].
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from gsmoe_lib.runs import atomic_path
from gsmoe_lib.tgs import TGSConfig, explain

if TYPE_CHECKING:
    import pandas as pd

DPI = 150
SNIPPET_LABEL = "snippet (16 frames)"
SCORE_LABEL = "anomaly score"

# Metadata that would change from one run to the next (dates, library versions) is switched off.
_METADATA = {
    "png": {"Software": None},
    "pdf": {"Creator": None, "Producer": None, "CreationDate": None},
    "svg": {"Creator": None, "Date": None},
}


def save_figure(
    fig: Figure, path_without_suffix: str | os.PathLike, formats: Sequence[str] = ("png", "pdf"), dpi: int = DPI
) -> list[Path]:
    """Save `fig` once per format as `<path>.<format>` (parents created, each file written atomically).

    Identical figures give byte-identical files. Returns the written paths; the figure stays open.
    """
    base = Path(path_without_suffix)
    written = []
    for fmt in formats:
        if fmt not in _METADATA:
            raise ValueError(f"save_figure: format {fmt!r} not supported; use one of {sorted(_METADATA)}")
        path = base.with_name(base.name + "." + fmt)
        with atomic_path(path) as tmp:
            # The temporary name has no meaningful suffix, so the format is given explicitly.
            fig.savefig(tmp, format=fmt, dpi=dpi, metadata=_METADATA[fmt])
        written.append(path)
    return written


def _shade_ground_truth(ax: Axes, gt: np.ndarray | None) -> None:
    """Shade the snippets whose ground truth [T] is 1 (one band per anomalous window)."""
    if gt is None:
        return
    g = np.asarray(gt).astype(bool)
    edges = np.diff(np.concatenate([[0], g.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    for i, (a, b) in enumerate(zip(starts, ends)):
        # Snippet t covers [t - 0.5, t + 0.5] on the axis.
        ax.axvspan(a - 0.5, b - 0.5, color="0.85", zorder=0, label="ground truth" if i == 0 else None)


def plot_tgs_explain(
    scores: np.ndarray, cfg: TGSConfig, gt: np.ndarray | None = None, ax: Axes | None = None
) -> Figure:
    """One score curve [T] with its TGS pieces: peaks, widths W_i, kernels f_i and the pseudo-label ŷ.

    `gt` is an optional snippet-level ground truth [T] (1 = anomalous), shaded in grey.
    """
    if ax is None:
        fig, ax = plt.subplots(figsize=(8, 3.2))
    else:
        fig = ax.figure
    e = explain(scores, cfg)
    t = np.arange(len(e["scores"]))
    _shade_ground_truth(ax, gt)
    ax.plot(t, e["scores"], color="black", lw=1.2, label="score s")
    peaks = e["peaks"]
    for i in range(len(peaks)):
        ax.plot(t, e["f"][i], color="tab:green", lw=1.0, ls="--", alpha=0.9, label="kernels f_i" if i == 0 else None)
        ax.hlines(
            e["thresholds"][i], peaks.left[i], peaks.right[i], color="tab:orange", lw=2,
            label="width W_i at Eq. 3 threshold" if i == 0 else None,
        )
    ax.plot(peaks.positions, peaks.heights, "v", color="tab:red", label="peaks P_i")
    ax.plot(t, e["y"], color="tab:blue", lw=2, alpha=0.7, label="pseudo-label ŷ")
    ax.set_xlabel(SNIPPET_LABEL)
    ax.set_ylabel(SCORE_LABEL)
    ax.set_ylim(-0.03, 1.05)
    ax.set_xlim(-0.5, max(len(t) - 0.5, 0.5))
    ax.set_title(f"TGS, σ mode '{cfg.sigma_mode}': {len(peaks)} kernel(s)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)
    return fig


def plot_sigma_interpretations(
    scores: np.ndarray, cfgs: dict[str, TGSConfig], gt: np.ndarray | None = None
) -> Figure:
    """The σ ambiguity of the paper: the same curve [T] explained once per configuration, one panel each."""
    if not cfgs:
        raise ValueError("plot_sigma_interpretations: give at least one configuration")
    fig, axes = plt.subplots(len(cfgs), 1, figsize=(8, 2.6 * len(cfgs)), sharex=True, squeeze=False)
    for ax, (name, cfg) in zip(axes[:, 0], cfgs.items()):
        plot_tgs_explain(scores, cfg, gt=gt, ax=ax)
        ax.set_title(f"{name}: σ mode '{cfg.sigma_mode}'")
    for ax in axes[1:, 0]:  # one legend, beside the top panel
        ax.get_legend().remove()
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------------
# Analysis figures (notebooks 30, 40, 41) and the alarm-threshold explorer (notebook 51)
# ---------------------------------------------------------------------------------------------------


def plot_classwise_auc(rows: dict[str, dict[str, float]], title: str = "Class-wise AUC") -> Figure:
    """Figure 4: grouped bars of the class-wise AUC (fractions, shown in percent), one group per class.

    rows: series name (e.g. "baseline", "GS-MoE") -> class -> AUC; the classes of the first series set the order.
    """
    if not rows:
        raise ValueError("plot_classwise_auc: give at least one series")
    classes = list(next(iter(rows.values())))
    x = np.arange(len(classes))
    width = 0.8 / len(rows)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(classes) + 2), 3.6))
    for j, (name, values) in enumerate(rows.items()):
        heights = [100.0 * float(values.get(c, np.nan)) for c in classes]
        ax.bar(x + (j - (len(rows) - 1) / 2) * width, heights, width, label=name)
    ax.axhline(50.0, color="0.5", lw=0.8, ls=":", label="chance (50)")
    ax.set_xticks(x, classes, rotation=45, ha="right")
    ax.set_ylabel("frame-level AUC (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title)
    ax.legend(fontsize="small", frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


def plot_tsne(
    xy: dict[str, np.ndarray], labels: np.ndarray, scores: dict[str, float] | None = None
) -> Figure:
    """Figure 5: one t-SNE panel per representation ([M, 2] each), points colored by class (labels [M])."""
    classes = sorted(set(np.asarray(labels).tolist()))
    cmap = plt.get_cmap("tab20", max(len(classes), 1))
    fig, axes = plt.subplots(1, len(xy), figsize=(4.2 * len(xy), 4.2), squeeze=False)
    for ax, (name, pts) in zip(axes[0], xy.items()):
        for k, c in enumerate(classes):
            sel = np.asarray(labels) == c
            ax.scatter(pts[sel, 0], pts[sel, 1], s=6, color=cmap(k), label=c, alpha=0.8)
        extra = f" (silhouette {scores[name]:.2f})" if scores and name in scores else ""
        ax.set_title(f"{name}{extra}")
        ax.set_xlabel("t-SNE 1")
        ax.set_ylabel("t-SNE 2")
    axes[0, -1].legend(fontsize="x-small", frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                       markerscale=2)
    fig.tight_layout()
    return fig


def plot_topk_vs_kernels(scores: np.ndarray, gt: np.ndarray | None, k: int, cfg: TGSConfig,
                         title: str = "") -> Figure:
    """Figure 2: a score curve [T], the top-k snippets MIL supervises, and the TGS kernels over them."""
    fig, ax = plt.subplots(figsize=(8, 3.2))
    s = np.asarray(scores, dtype=np.float64)
    e = explain(s, cfg)
    t = np.arange(s.size)
    _shade_ground_truth(ax, gt)
    ax.plot(t, s, color="black", lw=1.2, label="score s")
    top = np.argsort(-s, kind="stable")[:k]
    ax.plot(top, s[top], "o", color="tab:red", ms=4, label=f"top-{k} snippets (MIL)")
    for i in range(len(e["peaks"])):
        ax.fill_between(t, 0, e["f"][i], color="tab:green", alpha=0.3, label="TGS kernels f_i" if i == 0 else None)
    ax.set_xlabel(SNIPPET_LABEL)
    ax.set_ylabel(SCORE_LABEL)
    ax.set_ylim(-0.03, 1.05)
    ax.set_title(title or "top-k snippets vs TGS kernels")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)
    fig.tight_layout()
    return fig


def plot_kernel_heatmaps(videos: dict[str, tuple[np.ndarray, np.ndarray]]) -> Figure:
    """Figure 6: per video, its kernel activation ŷ [T] as a heatmap row above its ground truth [T] row."""
    if not videos:
        raise ValueError("plot_kernel_heatmaps: give at least one video")
    fig, axes = plt.subplots(len(videos), 1, figsize=(8, 1.5 * len(videos) + 0.6), squeeze=False,
                             layout="constrained")  # videos differ in length: each row has its own axis
    for ax, (name, (y, gt)) in zip(axes[:, 0], videos.items()):
        img = np.vstack([np.asarray(y, dtype=np.float64), np.asarray(gt, dtype=np.float64)])  # [2, T]
        im = ax.imshow(img, aspect="auto", cmap="magma", vmin=0, vmax=1, interpolation="nearest")
        ax.set_yticks([0, 1], ["kernels ŷ", "ground truth"], fontsize="small")
        ax.set_title(name, fontsize="small", loc="left")
        ax.set_xlabel(SNIPPET_LABEL if ax is axes[-1, 0] else "")
    fig.colorbar(im, ax=axes[:, 0].tolist(), label="activation (ŷ) / anomalous (ground truth)", shrink=0.8)
    return fig


def plot_alarm_explorer(
    scores: np.ndarray, frame_labels: np.ndarray, threshold: float, curve: dict[str, np.ndarray],
    thresholds: np.ndarray, name: str = "", fig: Figure | None = None,
) -> Figure:
    """The alarm-threshold explorer: one video's scores vs ground truth, and the metrics against the threshold.

    scores [T] and frame_labels [T*16] of the chosen video; curve: `operating_point.operating_curve` over `thresholds`.
    fig: an empty figure to draw into (the widget passes one that pyplot does not manage); default: a new one.
    """
    if fig is None:
        fig = plt.figure(figsize=(11, 3.4))
    ax1, ax2 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    s = np.asarray(scores, dtype=np.float64)
    gt = np.asarray(frame_labels).reshape(s.size, -1).mean(axis=1) >= 0.5  # [T] snippet ground truth
    t = np.arange(s.size)
    _shade_ground_truth(ax1, gt)
    ax1.plot(t, s, color="black", lw=1.2, label="score")
    ax1.axhline(threshold, color="tab:red", lw=1, ls="--", label=f"threshold {threshold:.3f}")
    alarm = s >= threshold
    ax1.fill_between(t, 0, 1, where=alarm, step="mid", color="tab:red", alpha=0.15, label="alarm")
    ax1.set_xlabel(SNIPPET_LABEL)
    ax1.set_ylabel(SCORE_LABEL)
    ax1.set_ylim(-0.03, 1.05)
    ax1.set_title(name or "timeline")
    ax1.legend(fontsize="x-small", frameon=False, loc="upper right")
    for key, color in (("precision", "tab:blue"), ("recall", "tab:orange"), ("f1", "tab:green")):
        ax2.plot(thresholds, curve[key], color=color, label=key)
    ax2.axvline(threshold, color="tab:red", lw=1, ls="--")
    ax2.set_xlabel("threshold (anomaly score)")
    ax2.set_ylabel("frame-level fraction")
    ax2.set_ylim(-0.03, 1.05)
    fa = ax2.twinx()
    fa.plot(thresholds, curve["false_alarms_per_hour"], color="tab:purple", ls=":", label="false alarms / h")
    fa.set_ylabel("false alarms per hour of video")
    lines = ax2.get_lines()[:3] + fa.get_lines()
    ax2.legend(lines, [ln.get_label() for ln in lines], fontsize="x-small", frameon=False, loc="center left")
    fig.tight_layout()
    return fig


def plot_feature_traces(
    videos: dict[str, tuple[np.ndarray, np.ndarray | None]], dims: Sequence[int]
) -> Figure:
    """A few feature dimensions over time, one panel per video, anomalous snippets shaded.

    videos: title -> (features [T, D] (crop-averaged), snippet ground truth [T] or None).
    dims: the feature dimensions to draw (a handful; one line each, same colours in every panel).
    """
    if not videos:
        raise ValueError("plot_feature_traces: give at least one video")
    fig, axes = plt.subplots(len(videos), 1, figsize=(8, 2.2 * len(videos)), squeeze=False)
    for ax, (title, (x, gt)) in zip(axes[:, 0], videos.items()):
        _shade_ground_truth(ax, gt)
        for j, d in enumerate(dims):
            ax.plot(np.asarray(x)[:, d], lw=1.0, color=f"C{j}", label=f"feature {d}")
        ax.set_title(title, fontsize="medium")
        ax.set_xlabel(SNIPPET_LABEL)
        ax.set_ylabel("feature value (a.u.)")
    axes[0, 0].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)
    fig.tight_layout()
    return fig


def plot_class_counts(counts: dict[str, dict[str, int]]) -> Figure:
    """Videos per class, one bar group per class and one bar per split (counts: split -> class -> videos)."""
    classes = sorted({c for per in counts.values() for c in per})
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(classes) + 1.2))
    height = 0.8 / max(len(counts), 1)
    y = np.arange(len(classes))
    for j, (split, per) in enumerate(counts.items()):
        ax.barh(y + j * height, [per.get(c, 0) for c in classes], height=height, label=split)
    ax.set_yticks(y + height * (len(counts) - 1) / 2, classes)
    ax.invert_yaxis()
    ax.set_xlabel("videos")
    ax.legend(frameon=False)
    fig.tight_layout()
    return fig


def plot_loss_history(histories: dict[str, list[dict[str, float]]], key: str = "total",
                      ylabel: str = "training loss") -> Figure:
    """Training loss against iteration, one line per run (histories: label -> stage history.json rows).

    When the histories hold validation rows (`training.validation`), the validation AUC of the held-out
    training videos is drawn on a second axis (dashed, same colour per run), the selected checkpoint circled.
    """
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    ax2 = None
    for n, (label, rows) in enumerate(histories.items()):
        colour = f"C{n}"
        loss = [r for r in rows if key in r]
        ax.plot([r["iteration"] for r in loss], [r[key] for r in loss], marker=".", color=colour,
                label=f"{label}: training loss")
        val = [r for r in rows if "validation" in r]
        if val:
            ax2 = ax2 or ax.twinx()
            ax2.plot([r["iteration"] for r in val], [100 * r["validation"] for r in val], "--", color=colour,
                     label=f"{label}: validation AUC")
            for r in val:
                if r.get("selected"):
                    ax2.plot(r["iteration"], 100 * r["validation"], "o", mfc="none", color=colour, ms=9)
    ax.set_xlabel("iteration (optimiser steps)")
    ax.set_ylabel(ylabel)
    if ax2 is not None:
        ax2.set_ylabel("validation AUC (%, held-out\ntraining videos, video level)")
    handles = ax.get_legend_handles_labels()
    if ax2 is not None:
        handles = tuple(a + b for a, b in zip(handles, ax2.get_legend_handles_labels()))
    if len(histories) > 1 or ax2 is not None:
        ax.legend(*handles, frameon=False, fontsize="small")
    fig.tight_layout()
    return fig


def plot_metric_bars(
    rows: dict[str, dict[str, float]], metrics: Sequence[str], names: dict[str, str] | None = None,
    paper: dict[str, dict[str, float]] | None = None, title: str = "",
) -> Figure:
    """Grouped bars of metrics (fractions, drawn in percent) per row, ± std where `<metric>_std` exists.

    rows: row label -> metrics dict; paper: row label -> {metric: percent} drawn as black markers.
    """
    names = names or {}
    fig, ax = plt.subplots(figsize=(1.6 + 1.5 * len(metrics), 3.4))
    width = 0.8 / max(len(rows), 1)
    x = np.arange(len(metrics))
    paper_labelled = False  # one legend entry for all paper markers
    for j, (label, values) in enumerate(rows.items()):
        means = [100.0 * float(values.get(m, np.nan)) for m in metrics]
        stds = [100.0 * float(values[f"{m}_std"]) if f"{m}_std" in values else 0.0 for m in metrics]
        ax.bar(x + j * width, means, width=width, yerr=stds if any(stds) else None, capsize=2, label=label)
        for i, m in enumerate(metrics):
            p = (paper or {}).get(label, {}).get(m)
            if p is not None:
                ax.plot(x[i] + j * width, p, "k_", markersize=12, mew=2, label=None if paper_labelled else "paper")
                paper_labelled = True
    ax.set_xticks(x + width * (len(rows) - 1) / 2, [names.get(m, m) for m in metrics])
    ax.set_ylabel("metric (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)
    fig.tight_layout()
    return fig


def plot_expert_class_auc(matrix: pd.DataFrame, title: str = "Expert x class snippet AUC") -> Figure:
    """Heatmap of an expert x class AUC matrix (`diagnostics.expert_class_auc`, fractions, drawn in percent).

    Rows are experts, columns classes; each cell is annotated with its value; the own expert of a class
    (the row named like the column) is outlined in black, so class experts that specialise show a bright,
    outlined diagonal. NaN cells (a class without test videos) are left blank.
    """
    values = 100.0 * matrix.to_numpy(dtype=np.float64)  # [E, K]
    experts, classes = [str(e) for e in matrix.index], [str(c) for c in matrix.columns]
    E, K = values.shape
    fig, ax = plt.subplots(figsize=(max(5.0, 0.55 * K + 2.5), max(3.0, 0.4 * E + 1.8)))
    finite = values[np.isfinite(values)]
    lo = min(50.0, float(finite.min())) if finite.size else 0.0
    image = ax.imshow(np.ma.masked_invalid(values), cmap="viridis", vmin=lo, vmax=100.0, aspect="auto")
    for e in range(E):
        for k in range(K):
            if np.isfinite(values[e, k]):
                dark = values[e, k] < lo + 0.6 * (100.0 - lo)
                ax.text(k, e, f"{values[e, k]:.0f}", ha="center", va="center", fontsize=6,
                        color="white" if dark else "black")
            if experts[e] == classes[k]:
                ax.add_patch(plt.Rectangle((k - 0.5, e - 0.5), 1, 1, fill=False, edgecolor="black", lw=1.8))
    ax.set_xticks(np.arange(K), classes, rotation=45, ha="right")
    ax.set_yticks(np.arange(E), experts)
    ax.set_xlabel("test class (its abnormal videos + all normal videos)")
    ax.set_ylabel("expert")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label="snippet AUC (%)")
    fig.tight_layout()
    return fig


def plot_video_scores(
    scores: np.ndarray, strongest: Sequence[str], expert_names: Sequence[str], threshold: float | None = None,
    frame_labels: np.ndarray | None = None, title: str = "", note: str = "",
) -> Figure:
    """One scored video (`gsmoe score --plot`): its score over time and which expert drove it.

    scores [T] in [0, 1]; strongest [T] the strongest expert's name per snippet (`ScoreResult.strongest_expert`),
    drawn as a coloured band under the curve; expert_names [E] fix the colours (an expert has the same colour
    in every video); threshold: the alarm threshold of an operating point (dashed line, alarms shaded);
    frame_labels [T*16] (1 = anomalous): the ground-truth windows, shaded grey; note: appended to the title.
    """
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    s = np.asarray(scores, dtype=np.float64)
    n_snippets = s.size
    names = [str(n) for n in expert_names]
    index = {n: i for i, n in enumerate(names)}
    unknown = sorted({str(n) for n in strongest} - set(index))
    if unknown:
        raise ValueError(f"plot_video_scores: strongest experts {unknown} are not among expert_names {names}")
    held = np.array([index[str(n)] for n in strongest], dtype=np.int64)  # [T] expert index per snippet
    base = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    cmap = ListedColormap([base(i % base.N) for i in range(max(len(names), 1))])

    fig, (ax, band) = plt.subplots(2, 1, figsize=(11, 3.8), sharex=True, gridspec_kw={"height_ratios": [6, 1]})
    if frame_labels is not None:
        gt = np.asarray(frame_labels).reshape(n_snippets, -1).mean(axis=1) >= 0.5  # [T] snippet ground truth
        _shade_ground_truth(ax, gt)
    t = np.arange(n_snippets)
    ax.plot(t, s, color="black", lw=1.2, label="score")
    if threshold is not None:
        ax.axhline(threshold, color="tab:red", lw=1, ls="--", label=f"alarm threshold {threshold:.3f}")
        ax.fill_between(t, 0, 1, where=s >= threshold, step="mid", color="tab:red", alpha=0.12, label="alarm")
    ax.set_ylabel(SCORE_LABEL)
    ax.set_ylim(-0.03, 1.05)
    ax.set_title(title + (f"  ({note})" if note else ""), fontsize="medium", loc="left")
    score_legend = ax.legend(fontsize="x-small", frameon=False, loc="upper left")
    # Experts in the order of how many snippets they hold, each with its share.
    counts = np.bincount(held, minlength=len(names))
    shown = [i for i in np.argsort(-counts, kind="stable") if counts[i] > 0]
    handles = [Patch(color=cmap(i), label=f"{names[i]} ({100.0 * counts[i] / n_snippets:.0f} %)") for i in shown]
    ax.legend(handles=handles, title="strongest expert (snippets)", fontsize="x-small", title_fontsize="x-small",
              frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.add_artist(score_legend)
    band.imshow(held[None, :], aspect="auto", cmap=cmap, vmin=-0.5, vmax=len(names) - 0.5, interpolation="nearest",
                extent=(-0.5, n_snippets - 0.5, 0, 1))
    band.set_yticks([])
    band.set_ylabel("expert", fontsize="small")
    band.set_xlabel(SNIPPET_LABEL)
    fig.tight_layout()
    return fig


def plot_sweep_spread(records: Sequence[dict], tables: Sequence[str] = ("ablation",)) -> Figure:
    """`gsmoe sweep`: per-seed values of each metric (one panel per metric), settings on x, one colour per row.

    records: the sweep's cell records (cell.json; "metrics" maps "<table>.<row>.<metric>" to a fraction).
    Each dot is one seed; a short black line marks the mean over seeds.
    """
    from gsmoe_lib.reporting import METRIC_NAMES, mean_std
    from gsmoe_lib.sweep_report import ordered_names

    done = [r for r in records if r["status"] == "done"]
    names = ordered_names((m for r in done for m in r["metrics"]), tables)
    metrics = list(dict.fromkeys(n.rsplit(".", 1)[1] for n in names))
    series = list(dict.fromkeys(n.rsplit(".", 1)[0] for n in names))
    settings = list(dict.fromkeys(r["setting_id"] for r in records))
    fig, axes = plt.subplots(1, max(len(metrics), 1), figsize=(3.2 * max(len(metrics), 1) + 1, 3.6), squeeze=False)
    width = 0.7 / max(len(series), 1)
    for ax, metric in zip(axes[0], metrics):
        for j, s in enumerate(series):
            offset = (j - (len(series) - 1) / 2) * width
            for i, sid in enumerate(settings):
                values = [100 * r["metrics"][f"{s}.{metric}"] for r in done
                          if r["setting_id"] == sid and f"{s}.{metric}" in r["metrics"]]
                if not values:
                    continue
                ax.scatter([i + offset] * len(values), values, s=14, color=f"C{j}", label=s if i == 0 else None)
                ax.hlines(mean_std(values)["mean"], i + offset - width / 2.5, i + offset + width / 2.5, color="black", lw=1)
        ax.set_xticks(range(len(settings)), settings, rotation=30, ha="right", fontsize=7)
        ax.set_xlabel("setting")
        ax.set_ylabel(f"{METRIC_NAMES.get(metric, metric)} (%)")
    if series:
        axes[0][0].legend(fontsize=7)
    fig.suptitle("Sweep: per-seed spread (dots: seeds, lines: means)")
    fig.tight_layout()
    return fig
