"""`TGSConfig`: what the paper leaves open in TGS, and what we decided (every choice is a field).

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
  "Results": with "refresh" the XD TGS stage collapses and the UCF gate falls to chance). The tgs package
  only computes pseudo-labels from the scores it is given; the trainer reads the flag.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any

SIGMA_MODES = ("temporal", "score", "width")
NORMALIZE_MODES = ("max", "clamp")
SOURCES = ("encoder", "teacher-refresh", "refresh", "self")
SCALES = ("video", "absolute")


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
    # Whose scores make the pseudo-labels (the trainer reads this; see gsmoe_lib/training/pseudo_labels.py):
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

