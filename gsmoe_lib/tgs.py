"""Temporal Gaussian Splatting (TGS): pseudo-labels from an abnormal video's own score curve, and L_TGS.

The idea (paper §3.1, Eqs. 3-6). Plain MIL supervises only the top-k snippets of an abnormal video, so a
model learns the most obvious part of an anomaly and ignores the rest. TGS turns the score curve s[0..T-1]
of an abnormal video into a dense target ŷ[0..T-1] in [0, 1]:

  1. detect peaks P_i of s and their widths W_i;
  2. Eq. 3, a binary mask per peak: G_i[t] = 1 at t = P_i, and 1 for t inside W_i with s[t] >= s[P_i] - σ_i;
  3. Eq. 4, splat a Gaussian on it: f_i(t) = G_i[t] · exp(-(t - P_i)² / (2 σ_i²));
  4. Eq. 5, render: ŷ = normalise(Σ_i f_i);

and trains with L_TGS = L_topk-norm + BCE(s, ŷ) (Eq. 6), the BCE on abnormal videos only.

What the paper leaves open, and what we decided (every choice is a `TGSConfig` field):

- **Peak detection.** The paper does not say how peaks and widths are found. We use
  `scipy.signal.find_peaks` with a prominence threshold (`prominence`, 0.1), a minimum peak score
  (`min_height`, 0.2: every kernel is 1 at its peak, so without it a noise bump of a quiet stretch
  would get a target of 1) and `min_distance`; then `scipy.signal.peak_widths` at `rel_height` (0.5:
  the width at half prominence).
  **Scale.** With `scale="video"` (default) each curve is first rescaled to [0, 1] by its own minimum and
  maximum (`detection_curve`), so these thresholds are fractions of the video's score range, not absolute
  scores. Eq. 5 renders every kernel to 1 at its peak anyway, so the level of the teacher's scores carries
  no information TGS uses; with absolute thresholds a teacher that scores low (XD quick: peaks at 0.19; the
  tiny profile: 0.002; bf16 runs) gave no kernel at all, every target was 0, and the stage learned to score
  0 everywhere. For a well-trained teacher (scores spanning about [0, 1]) the two scales agree.
  `scale="absolute"` keeps the earlier rule. A curve flatter than `min_range` gets no kernel.
  find_peaks never reports the first or last sample, so an anomaly at the very start or end of a video
  would be missed; with `edge_peaks=True` the curve is padded on both sides with its own minimum first
  (a flat curve still has no peak, a curve falling from its first snippet has a peak there).
  W_i is the set of whole snippets t with left_i <= t <= right_i (the interpolated width bounds).
- **σ_i, the ambiguity.** The text calls σ_i "the standard deviation of the scores around the peak
  within W_i" and uses it twice: in score units in Eq. 3 (a threshold below s[P_i]) and in snippet units
  in Eq. 4 (a temporal spread). One number cannot be both. `sigma_mode` picks the Eq. 4 spread:
    * "temporal" (default): the spread, in snippets, of the score mass inside W_i around P_i,
      σ_i² = Σ_{t∈W_i} s_t (t - P_i)² / Σ_{t∈W_i} s_t. A long anomaly gives a long kernel, as the
      paper's Figures 2b and 6 show.
    * "score": the literal reading, the standard deviation of the score values inside W_i (≈ 0.05-0.2
      for probabilities). Used as a temporal spread it collapses every kernel to its peak snippet
      (and then to `sigma_floor`); kept to show why it cannot be what the figures used.
    * "width": σ_i = |W_i| / (2 √(2 ln 2)), reading the width as the full width at half maximum of a
      Gaussian.
  Eq. 3's threshold is always in score units: s[P_i] - max(`threshold_scale` · std(s[W_i]),
  `threshold_floor`), with the (population) standard deviation of the score values inside W_i. The
  floor is our addition: on a flat-topped anomaly the std inside W_i is ≈ 0, and the literal rule keeps
  only the peak snippet whatever σ mode is used. With the default floor (0.1, the same as the default
  prominence: a dip smaller than that does not separate two peaks either) every snippet of W_i within
  0.1 of the peak score belongs to the kernel; `threshold_floor=0` is the literal Eq. 3.
  Every σ_i is floored at `sigma_floor` snippets so Eq. 4 never divides by zero.
- **Normalisation ‖·‖ of Eq. 5.** `normalize="max"` (default) divides Σf_i by its maximum over the
  video, the literal reading of a norm; `"clamp"` clips it to [0, 1] instead (overlapping kernels then
  saturate at 1 rather than lowering the other peaks). Every f_i is 1 at its own peak, so either way
  the highest point of ŷ is 1 when there is at least one kernel, and ŷ = 0 when there is none.
- **Whose scores.** The paper: "the Gaussian kernels are extracted from the abnormal scores produced by
  the model". `source="encoder"` (default) splats a frozen teacher's scores, computed once (the MIL encoder
  for TGS fine-tuning, the TGS encoder for the experts and the gate); `"refresh"` the stage's own eval-mode
  scores, recomputed once per epoch after its first epoch; `"teacher-refresh"` the teacher's first, then the
  stage's own; `"self"` each training step's own scores. The default was chosen by measurement (README,
  "Results": with "refresh" the XD TGS stage collapses and the UCF gate falls to chance). This module
  only computes pseudo-labels from the scores it is given; the trainer reads the flag.

Scores are probabilities (sigmoid outputs) throughout. Everything here except `tgs_loss` is host-side
numpy: find_peaks is 1-D, so videos are looped over for detection, then the kernels of all peaks of all
videos are rendered together as [K, T] arrays.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Sequence, TypeVar

import numpy as np
import torch
from scipy.signal import find_peaks, peak_widths

from gsmoe_lib import losses

SIGMA_MODES = ("temporal", "score", "width")
NORMALIZE_MODES = ("max", "clamp")
SOURCES = ("encoder", "teacher-refresh", "refresh", "self")
SCALES = ("video", "absolute")

# Probabilities are clamped to [EPS, 1 - EPS] before the BCE so log(0) never appears.
EPS = 1e-6

# 2 √(2 ln 2): full width at half maximum of a Gaussian, in units of its standard deviation.
_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))

ArrayOrTensor = TypeVar("ArrayOrTensor", np.ndarray, torch.Tensor)


@dataclass
class TGSConfig:
    """Every open choice of TGS (see the module docstring for why each default)."""

    prominence: float = 0.1  # find_peaks prominence threshold, score units
    min_height: float = 0.2  # a peak's own score must be at least this (score units)
    min_distance: int = 1  # minimum snippets between two peaks (find_peaks `distance`, >= 1)
    rel_height: float = 0.5  # peak_widths: width measured at this fraction of the prominence below the peak
    edge_peaks: bool = True  # pad with the curve's minimum so the first / last snippet can be a peak
    sigma_mode: str = "temporal"  # Eq. 4 spread: "temporal" | "score" | "width"
    sigma_floor: float = 1.0  # lower bound of every σ_i, snippets
    threshold_scale: float = 1.0  # Eq. 3: G=1 where s[t] >= s[P] - max(threshold_scale * std(s[W]), floor)
    threshold_floor: float = 0.1  # Eq. 3: the margin below s[P] is at least this (score units); 0 = literal
    normalize: str = "max"  # Eq. 5: "max" (divide by the max) | "clamp" (clip to [0, 1])
    # Peak detection on each curve rescaled to [0, 1] by its own min and max ("video"), so that prominence,
    # min_height and threshold_floor are fractions of the video's score range; "absolute" uses raw scores.
    scale: str = "video"
    min_range: float = 1e-6  # scale="video": a curve whose max - min is below this is flat (no kernel)
    # Whose scores make the pseudo-labels (the trainer reads this; see gsmoe_lib/train.py):
    # "encoder": a frozen teacher's scores, computed once (default, measured best on UCF and XD);
    # "refresh": the trained stage's own eval-mode scores, recomputed once per epoch after the warm-up;
    # "teacher-refresh": the teacher's first, then the stage's own, refreshed once per epoch of training on them;
    # "self": the stage's own scores at every step.
    source: str = "encoder"

    def __post_init__(self) -> None:
        if self.sigma_mode not in SIGMA_MODES:
            raise ValueError(f"TGSConfig.sigma_mode={self.sigma_mode!r}: expected one of {SIGMA_MODES}")
        if self.normalize not in NORMALIZE_MODES:
            raise ValueError(f"TGSConfig.normalize={self.normalize!r}: expected one of {NORMALIZE_MODES}")
        if self.source not in SOURCES:
            raise ValueError(f"TGSConfig.source={self.source!r}: expected one of {SOURCES}")
        if self.scale not in SCALES:
            raise ValueError(f"TGSConfig.scale={self.scale!r}: expected one of {SCALES}")
        if self.min_range < 0:
            raise ValueError(f"TGSConfig.min_range={self.min_range}: must be >= 0")
        if self.min_distance < 1:
            raise ValueError(f"TGSConfig.min_distance={self.min_distance}: must be >= 1 snippet")
        if not 0.0 < self.rel_height <= 1.0:
            raise ValueError(f"TGSConfig.rel_height={self.rel_height}: must be in (0, 1]")
        if self.sigma_floor <= 0:
            raise ValueError(f"TGSConfig.sigma_floor={self.sigma_floor}: must be > 0 snippets")
        if min(self.prominence, self.threshold_scale, self.threshold_floor) < 0:
            raise ValueError("TGSConfig.prominence, threshold_scale and threshold_floor must be >= 0")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TGSConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown TGSConfig keys {unknown}; known keys: {sorted(known)}")
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "TGSConfig":
        return cls.from_dict(json.loads(text))


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


# ---------------------------------------------------------------------------------------------------
# Batches
# ---------------------------------------------------------------------------------------------------


def _check_finite(s: np.ndarray, who: str) -> None:
    if not np.isfinite(s).all():
        bad = np.flatnonzero(~np.isfinite(s))
        raise ValueError(f"TGS: {who} has non-finite scores at snippets {bad[:10].tolist()}")


def pseudo_labels(
    scores: ArrayOrTensor,
    cfg: TGSConfig,
    lengths: Sequence[int] | np.ndarray | torch.Tensor | None = None,
    names: Sequence[str] | None = None,
) -> ArrayOrTensor:
    """TGS pseudo-labels ŷ [B, T] in [0, 1] for a batch of score curves [B, T].

    A torch tensor gives a detached tensor of the same dtype on the same device; numpy gives numpy.
    `lengths[b]` is the number of real snippets of video b (the rest is padding, which gets ŷ = 0 and is
    not looked at). `names` only serve error messages (a non-finite score names the video).
    """
    is_torch = isinstance(scores, torch.Tensor)
    x = scores.detach().to("cpu", torch.float64).numpy() if is_torch else np.asarray(scores, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"pseudo_labels expects scores [B, T], got shape {tuple(x.shape)}")
    B, T = x.shape
    if lengths is None:
        lens = np.full(B, T, dtype=np.int64)
    else:
        lens = np.asarray(lengths.cpu() if isinstance(lengths, torch.Tensor) else lengths, dtype=np.int64)
        if lens.shape != (B,) or (lens < 0).any() or (lens > T).any():
            raise ValueError(f"pseudo_labels: lengths must be {B} integers in [0, {T}], got {lens.tolist()}")
    if names is not None and len(names) != B:
        raise ValueError(f"pseudo_labels: {len(names)} names for {B} videos")

    # Detection, one video at a time on the host (scipy is 1-D).
    found: list[Peaks] = []
    x = x.copy()
    for i in range(B):
        s = x[i, : lens[i]]
        _check_finite(s, f"video {names[i]!r}" if names is not None else f"video {i} of the batch")
        x[i, : lens[i]] = detection_curve(s, cfg)[0]  # kernels below are computed on the same curve
        found.append(_detect(x[i, : lens[i]], cfg))
    peaks = Peaks(*(np.concatenate([getattr(p, k.name) for p in found]) for k in fields(Peaks)))
    video = np.repeat(np.arange(B), [len(p) for p in found])  # [K] which video each peak belongs to

    # Kernels of all peaks of all videos together. Windows end inside each video's real length; padded
    # values are zeroed first so they cannot reach any statistic or mask.
    x = np.where(np.arange(T)[None, :] < lens[:, None], x, 0.0)  # [B, T]
    k = _kernels(x, video, peaks, cfg)
    f = splat(k.G, peaks, k.sigmas, T)  # [K, T]
    owner = (np.arange(B)[:, None] == video[None, :]).astype(np.float64)  # [B, K] one-hot
    y = _normalise(owner @ f, cfg)  # [B, T], normalised Σ_i f_i per video

    if is_torch:
        return torch.from_numpy(y).to(device=scores.device, dtype=scores.dtype)
    in_dtype = np.asarray(scores).dtype
    return y.astype(in_dtype if in_dtype.kind == "f" else np.float64)


# ---------------------------------------------------------------------------------------------------
# The loss, Eq. 6
# ---------------------------------------------------------------------------------------------------
# The MIL pieces come from losses.py; every term is a masked mean, so a step needs no host sync.


def tgs_loss(
    scores: torch.Tensor,
    labels: torch.Tensor,
    pseudo: torch.Tensor,
    k: int,
    bce_weight: float = 1.0,
    smooth_weight: float = 8e-5,
    sparse_weight: float = 8e-5,
    topk_only: bool | torch.Tensor = False,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """L_TGS (Eq. 6) on a batch of probabilities `scores` [B, T] with video labels [B] (0 normal, 1 abnormal).

    loss = BCE(top-k mean of each normal video, 0)                       (L_topk-norm)
         + bce_weight    · BCE(s, ŷ) over the snippets of abnormal videos (ŷ = `pseudo`, [B, T])
         + smooth_weight · mean over abnormal videos of Σ_t (s[t+1] - s[t])²
         + sparse_weight · mean over abnormal videos of Σ_t s[t]
    `topk_only=True` (the first epoch) keeps only L_topk-norm: abnormal videos and `pseudo` are ignored;
    a bool tensor [B] does so per sample (an expert whose own first epoch is not over yet: its abnormal
    samples are ignored while the other experts' are trained). Default weights are Sultani et al.'s
    λ1 = λ2 = 8e-5 on per-video sums (the paper cites them for smoothness and sparsity).
    `pseudo` is detached here, so no gradient ever reaches it. Probabilities are clamped to
    [EPS, 1 - EPS] inside the BCE terms. Returns (loss, parts) with the detached parts
    "topk_norm", "bce", "smooth", "sparse" (unweighted) and "total".
    """
    if scores.ndim != 2 or pseudo.shape != scores.shape or labels.shape != scores.shape[:1]:
        raise ValueError(
            f"tgs_loss: scores {tuple(scores.shape)}, pseudo {tuple(pseudo.shape)}, labels {tuple(labels.shape)};"
            " expected [B, T], [B, T], [B]"
        )
    pseudo = pseudo.detach()
    topk_norm = losses.topk_normal_loss(scores, labels, k)  # 0 when the batch has no normal video
    if isinstance(topk_only, bool) and topk_only:
        bce = smooth = sparse = scores.sum() * 0.0  # keeps the graph alive
    else:
        trained = labels == 1  # [B] abnormal samples whose pseudo-labels are used
        if isinstance(topk_only, torch.Tensor):
            if topk_only.shape != labels.shape:
                raise ValueError(f"tgs_loss: topk_only mask {tuple(topk_only.shape)} must match labels {tuple(labels.shape)}")
            trained = trained & ~topk_only.to(trained.device, torch.bool)
        abnormal = trained.to(scores.dtype)  # [B]
        per_snippet = losses.bce(scores.clamp(EPS, 1.0 - EPS), pseudo, reduction="none")  # [B, T]
        bce = (per_snippet.mean(-1) * abnormal).sum() / abnormal.sum().clamp(min=1.0)
        smooth = losses.smoothness(scores, trained.to(labels.dtype))
        sparse = losses.sparsity(scores, trained.to(labels.dtype))

    loss = topk_norm + bce_weight * bce + smooth_weight * smooth + sparse_weight * sparse
    parts = {
        "topk_norm": topk_norm.detach(),
        "bce": bce.detach(),
        "smooth": smooth.detach(),
        "sparse": sparse.detach(),
        "total": loss.detach(),
    }
    return loss, parts
