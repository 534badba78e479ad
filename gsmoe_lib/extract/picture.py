"""A scored video as a picture: the anomaly score over time, with thumbnails of the frames at its highest peaks.

`gsmoe score --run RUN VIDEO.mp4 --i3d WEIGHTS --plot` and notebook 60 draw it. The peaks are the local
maxima of the snippet scores, highest first, at least `min_gap` snippets apart; each thumbnail is the middle
frame (16t + 8) of its snippet, decoded again from the video in one streaming pass (`decode.frames_at`).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from gsmoe_lib.extract.decode import frames_at
from gsmoe_lib.extract.recipes import SNIPPET_FRAMES
from gsmoe_lib.figures import SCORE_LABEL


def peak_snippets(scores: np.ndarray, k: int = 3, min_gap: int = 2) -> list[int]:
    """Up to k snippet indices of the highest local maxima of scores [T], at least min_gap apart, highest first."""
    s = np.asarray(scores, dtype=np.float64)
    padded = np.concatenate([[-np.inf], s, [-np.inf]])
    is_peak = (padded[1:-1] >= padded[:-2]) & (padded[1:-1] >= padded[2:])  # [T]
    chosen: list[int] = []
    for t in np.argsort(-s, kind="stable"):
        if is_peak[t] and all(abs(int(t) - c) >= min_gap for c in chosen):
            chosen.append(int(t))
        if len(chosen) == k:
            break
    return chosen


def plot_scores_with_thumbnails(scores: np.ndarray, video: str | Path, fps: float | None, n_frames: int | None = None,
                                k: int = 3, title: str = "", note: str = "") -> Figure:
    """Score over time (seconds at the video's frame rate; snippets when it is unknown) and k peak thumbnails.

    n_frames: the frames decoded (a last snippet filled under the ceil rule shows the video's last frame)."""
    s = np.asarray(scores, dtype=np.float64)
    peaks = peak_snippets(s, k)
    last = (n_frames - 1) if n_frames else None
    middle = {t: min(t * SNIPPET_FRAMES + SNIPPET_FRAMES // 2, last if last is not None else 10**12) for t in peaks}
    thumbs = frames_at(video, sorted(middle.values()))
    per_unit = (SNIPPET_FRAMES / fps) if fps else 1.0  # seconds per snippet (or 1 snippet)
    unit = "time (s, at the middle of each 16-frame snippet)" if fps else "snippet (16 frames)"
    fig = plt.figure(figsize=(11, 4.6))
    grid = fig.add_gridspec(2, max(len(peaks), 1), height_ratios=[3, 2])
    ax = fig.add_subplot(grid[0, :])
    t = (np.arange(s.size) + 0.5) * per_unit  # the middle of each snippet
    ax.plot(t, s, color="black", lw=1.2)
    for i, p in enumerate(peaks):
        ax.plot(t[p], s[p], "o", color="tab:red")
        ax.annotate(str(i + 1), (t[p], s[p]), textcoords="offset points", xytext=(4, 4), fontsize="small")
    ax.set_xlabel(unit)
    ax.set_ylabel(SCORE_LABEL)
    ax.set_ylim(-0.03, 1.05)
    ax.set_title(title + (f"  ({note})" if note else ""), fontsize="medium", loc="left")
    for i, p in enumerate(peaks):
        sub = fig.add_subplot(grid[1, i])
        frame = thumbs.get(middle[p])
        if frame is not None:
            sub.imshow(frame)
        when = f"{t[p]:.1f} s" if fps else f"snippet {p}"
        sub.set_title(f"{i + 1}: {when}, score {s[p]:.2f}", fontsize="small")
        sub.axis("off")
    fig.tight_layout()
    return fig
