"""TGS steps 1-4 on score curves: peaks and widths, Eq. 3 masks, σ, Eq. 4 kernels, Eq. 5 rendering.

Step 1 (`detect_peaks`) runs on one curve at a time (scipy's find_peaks is 1-D). Steps 2-4 work on many
peaks at once (`_kernels`: curves x [B, T] and each peak's owner video [K]), so one video (`kernel_masks`,
`kernel_sigmas`, `explain`) and a whole batch (`labels.pseudo_labels`) share the same code. Why each rule:
the docstring of `config.py`. Shapes: T snippets, K peaks, B videos.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from gsmoe_lib.tgs.config import TGSConfig

# 2 √(2 ln 2): full width at half maximum of a Gaussian, in units of its standard deviation.
_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


@dataclass
class Peaks:
    """The peaks of one score curve; each field has one entry per peak, K in all.

    `left` / `right` are peak_widths' interpolated bounds (fractional snippets); the window W_i holds the
    whole snippets between them.
    """

    positions: np.ndarray  # [K] int, snippet of the peak
    left: np.ndarray  # [K] float
    right: np.ndarray  # [K] float
    heights: np.ndarray  # [K] float, s[P_i]
    prominences: np.ndarray  # [K] float

    @property
    def widths(self) -> np.ndarray:
        return self.right - self.left  # [K] snippets

    def __len__(self) -> int:
        return len(self.positions)


# ---------------------------------------------------------------------------------------------------
# Step 1: peaks and widths (one video at a time: scipy is 1-D)
# ---------------------------------------------------------------------------------------------------


def detection_curve(scores: np.ndarray, cfg: TGSConfig) -> tuple[np.ndarray, float, float]:
    """The curve TGS works on, and how to map it back: (x [T], lo, span) with scores = lo + span · x.

    scale="video" (default): x = (s - min s) / (max s - min s), so every threshold of TGSConfig is a fraction of
    this video's score range; Eq. 5 rescales the rendered kernels to 1 anyway, so the absolute level of a
    teacher's scores (0.19 on an XD quick run, 0.002 on tiny, lower under bf16) no longer decides whether a video
    gets a kernel at all. A curve with max - min < `min_range` is flat and gets none. scale="absolute": x = s.
    """
    s = np.asarray(scores, dtype=np.float64)
    if cfg.scale == "absolute" or s.size == 0:
        return s, 0.0, 1.0
    lo, span = float(s.min()), float(s.max() - s.min())
    if span < cfg.min_range or span <= 0.0:
        return np.zeros_like(s), lo, 0.0
    return (s - lo) / span, lo, span


def detect_peaks(scores: np.ndarray, cfg: TGSConfig) -> Peaks:
    """Peaks P_i and width bounds W_i of one score curve [T] (no kernel for a flat curve).

    Detection runs on `detection_curve(scores, cfg)`; `heights` are reported in the units of `scores`.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1:
        raise ValueError(f"detect_peaks expects one curve [T], got shape {s.shape}")
    peaks = _detect(detection_curve(s, cfg)[0], cfg)
    peaks.heights = s[peaks.positions]
    return peaks


def _detect(s: np.ndarray, cfg: TGSConfig) -> Peaks:
    """detect_peaks on the detection curve itself (heights in its units)."""
    # Imported here, not at the top: scipy.signal costs ~0.6 s to import, and every `gsmoe` command and
    # notebook kernel imports this module, most of them without ever detecting a peak.
    from scipy.signal import find_peaks, peak_widths

    if s.size < 1:
        return _empty_peaks()
    # Padding with the minimum lets an edge snippet be a peak without creating one on a flat curve.
    pad = 1 if cfg.edge_peaks else 0
    edge = np.full(pad, s.min())
    x = np.concatenate([edge, s, edge])  # [T + 2 pad]
    pos, props = find_peaks(x, height=cfg.min_height, prominence=cfg.prominence, distance=cfg.min_distance)
    if len(pos) == 0:
        return _empty_peaks()
    bases = (props["prominences"], props["left_bases"], props["right_bases"])
    _, _, left, right = peak_widths(x, pos, rel_height=cfg.rel_height, prominence_data=bases)
    last = len(s) - 1
    return Peaks(
        positions=(pos - pad).astype(np.int64),
        left=np.clip(left - pad, 0.0, last),
        right=np.clip(right - pad, 0.0, last),
        heights=s[pos - pad],
        prominences=props["prominences"].astype(np.float64),
    )


def _empty_peaks() -> Peaks:
    z = np.zeros(0)
    return Peaks(np.zeros(0, dtype=np.int64), z, z.copy(), z.copy(), z.copy())


# ---------------------------------------------------------------------------------------------------
# Steps 2-4. The work is done for many peaks at once: x [B, T] holds the curves of B videos and
# `video` [K] says whose peak each one is, so one video (B = 1) and a whole batch share the same code.
# Window sums come from prefix sums (O(K) gathers); only the masks and kernels are [K, T].
# ---------------------------------------------------------------------------------------------------


@dataclass
class _Kernels:
    sigmas: np.ndarray  # [K] snippets, Eq. 4
    thresholds: np.ndarray  # [K] score units, Eq. 3
    G: np.ndarray  # [K, T] float 0/1, Eq. 3


def _window_bounds(peaks: Peaks) -> tuple[np.ndarray, np.ndarray]:
    """First and last whole snippet of each W_i (the peak is always inside)."""
    a = np.minimum(np.ceil(peaks.left).astype(np.int64), peaks.positions)
    b = np.maximum(np.floor(peaks.right).astype(np.int64), peaks.positions)
    return a, b  # [K], [K], inclusive


def _kernels(x: np.ndarray, video: np.ndarray, peaks: Peaks, cfg: TGSConfig) -> _Kernels:
    """Eq. 3 masks and σ of every peak; x [B, T] curves (padding already zeroed), video [K] owners."""
    B, T = x.shape
    a, b = _window_bounds(peaks)
    t = np.arange(T, dtype=np.float64)

    def window_sum(values: np.ndarray) -> np.ndarray:  # values [B, T] -> [K], sum over each W_i
        c = np.concatenate([np.zeros((B, 1)), np.cumsum(values, axis=1)], axis=1)  # [B, T+1]
        return c[video, b + 1] - c[video, a]

    n = (b - a + 1).astype(np.float64)  # [K] snippets in W_i
    mean = window_sum(x) / n
    score_std = np.sqrt(np.maximum(window_sum(x * x) / n - mean**2, 0.0))  # [K], population std

    if cfg.sigma_mode == "temporal":
        # Σ w (t - P)² = Σ w t² - 2 P Σ w t + P² Σ w, with the scores as non-negative weights w.
        w = np.clip(x, 0.0, None)  # [B, T]
        m0, m1, m2 = window_sum(w), window_sum(w * t), window_sum(w * t * t)
        P = peaks.positions.astype(np.float64)
        second = np.maximum(m2 - 2.0 * P * m1 + P * P * m0, 0.0)
        sigma = np.sqrt(second / np.where(m0 > 0, m0, 1.0))  # 0 when the window has no mass
    elif cfg.sigma_mode == "score":
        sigma = score_std
    else:  # "width"
        sigma = peaks.widths / _FWHM_PER_SIGMA

    thresholds = peaks.heights - np.maximum(cfg.threshold_scale * score_std, cfg.threshold_floor)  # [K]
    in_window = (t >= a[:, None]) & (t <= b[:, None])  # [K, T]
    G = in_window & (x[video] >= thresholds[:, None])  # [K, T]
    G[np.arange(len(peaks)), peaks.positions] = True  # the peak itself is always 1
    return _Kernels(np.maximum(sigma, cfg.sigma_floor), thresholds, G.astype(np.float64))


def _one_video(scores: np.ndarray, peaks: Peaks, cfg: TGSConfig) -> _Kernels:
    s = np.asarray(scores, dtype=np.float64)
    return _kernels(s[None, :], np.zeros(len(peaks), dtype=np.int64), peaks, cfg)


def kernel_masks(scores: np.ndarray, peaks: Peaks, cfg: TGSConfig) -> np.ndarray:
    """Eq. 3: the binary masks G [K, T] of the peaks of one curve [T]."""
    return _one_video(scores, peaks, cfg).G


def kernel_sigmas(scores: np.ndarray, peaks: Peaks, cfg: TGSConfig) -> np.ndarray:
    """σ_i [K] in snippets for Eq. 4, as chosen by `cfg.sigma_mode` and floored at `cfg.sigma_floor`."""
    return _one_video(scores, peaks, cfg).sigmas


def splat(G: np.ndarray, peaks: Peaks, sigmas: np.ndarray, T: int) -> np.ndarray:
    """Eq. 4: f_i(t) = G_i[t] · exp(-(t - P_i)² / (2 σ_i²)), returned as [K, T]."""
    if G.shape != (len(peaks), T):
        raise ValueError(f"splat: masks of shape {G.shape} do not match {len(peaks)} peaks x T={T}")
    d2 = (np.arange(T)[None, :] - peaks.positions[:, None]) ** 2  # [K, T]
    return G * np.exp(-d2 / (2.0 * np.asarray(sigmas, dtype=np.float64)[:, None] ** 2))


def render(f: np.ndarray, cfg: TGSConfig) -> np.ndarray:
    """Eq. 5: ŷ [T] = normalise(Σ_i f_i) from kernels f [K, T]; no kernel gives ŷ = 0."""
    return _normalise(np.asarray(f, dtype=np.float64).sum(axis=0), cfg)


def _normalise(total: np.ndarray, cfg: TGSConfig) -> np.ndarray:
    """Normalise Σf along the last axis ([T] or [B, T])."""
    if cfg.normalize == "clamp":
        return np.clip(total, 0.0, 1.0)
    if total.shape[-1] == 0:
        return total
    peak = total.max(axis=-1, keepdims=True)
    return total / np.where(peak > 0, peak, 1.0)


def explain(scores: np.ndarray, cfg: TGSConfig) -> dict[str, Any]:
    """Every intermediate of TGS on one curve [T], for figures and the tuner widget.

    Keys: scores [T], peaks (Peaks), widths [K], sigmas [K], thresholds [K] (Eq. 3, score units),
    G [K, T], f [K, T], y [T] (ŷ). Peaks and kernels are found on `detection_curve(scores, cfg)`.
    """
    s = np.asarray(scores, dtype=np.float64)
    _check_finite(s, "the curve")
    x, lo, span = detection_curve(s, cfg)
    peaks = _detect(x, cfg)
    k = _one_video(x, peaks, cfg)
    f = splat(k.G, peaks, k.sigmas, s.size)
    peaks.heights = s[peaks.positions]  # back to score units for plots
    return {
        "scores": s,
        "peaks": peaks,
        "widths": peaks.widths,
        "sigmas": k.sigmas,
        "thresholds": lo + span * k.thresholds,  # score units
        "G": k.G,
        "f": f,
        "y": render(f, cfg),
    }


def _check_finite(s: np.ndarray, who: str) -> None:
    if not np.isfinite(s).all():
        bad = np.flatnonzero(~np.isfinite(s))
        raise ValueError(f"TGS: {who} has non-finite scores at snippets {bad[:10].tolist()}")
