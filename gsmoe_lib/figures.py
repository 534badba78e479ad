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
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from gsmoe_lib.runs import atomic_path
from gsmoe_lib.tgs import TGSConfig, explain

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
