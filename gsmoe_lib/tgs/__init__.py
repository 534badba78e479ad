"""Temporal Gaussian Splatting (TGS): pseudo-labels from an abnormal video's own score curve, and L_TGS.

The idea (paper §3.1, Eqs. 3-6). Plain MIL supervises only the top-k snippets of an abnormal video, so a
model learns the most obvious part of an anomaly and ignores the rest. TGS turns the score curve s[0..T-1]
of an abnormal video into a dense target ŷ[0..T-1] in [0, 1]:

  1. detect peaks P_i of s and their widths W_i;
  2. Eq. 3, a binary mask per peak: G_i[t] = 1 at t = P_i, and 1 for t inside W_i with s[t] >= s[P_i] - σ_i;
  3. Eq. 4, splat a Gaussian on it: f_i(t) = G_i[t] · exp(-(t - P_i)² / (2 σ_i²));
  4. Eq. 5, render: ŷ = normalise(Σ_i f_i);

and trains with L_TGS = L_topk-norm + BCE(s, ŷ) (Eq. 6), the BCE on abnormal videos only.

Where each part lives:

  config.py   `TGSConfig`: every choice the paper leaves open, with what we decided and why
  kernels.py  steps 1-4 on one curve: `detect_peaks` (`Peaks`), `kernel_masks` (Eq. 3), `kernel_sigmas`,
              `splat` (Eq. 4), `render` (Eq. 5), and `explain` (every intermediate, for figures and widgets)
  labels.py   `pseudo_labels`: ŷ [B, T] for a batch of score curves, all peaks' kernels rendered together
  loss.py     `tgs_loss`: L_TGS (Eq. 6)


Scores are probabilities (sigmoid outputs) throughout. Everything here except `tgs_loss` is host-side
numpy: find_peaks is 1-D, so videos are looped over for detection, then the kernels of all peaks of all
videos are rendered together as [K, T] arrays.
"""

from gsmoe_lib.tgs.config import NORMALIZE_MODES, SCALES, SIGMA_MODES, SOURCES, TGSConfig
from gsmoe_lib.tgs.kernels import (
    Peaks,
    detect_peaks,
    detection_curve,
    explain,
    kernel_masks,
    kernel_sigmas,
    render,
    splat,
)
from gsmoe_lib.tgs.labels import pseudo_labels
from gsmoe_lib.tgs.loss import EPS, tgs_loss

__all__ = ["EPS", "NORMALIZE_MODES", "SCALES", "SIGMA_MODES", "SOURCES", "Peaks", "TGSConfig", "detect_peaks",
           "detection_curve", "explain", "kernel_masks", "kernel_sigmas", "pseudo_labels", "render", "splat",
           "tgs_loss"]
