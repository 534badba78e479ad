"""The knobs of the synthetic generator (`SynthConfig`) and its named sizes (`SYNTH_PROFILES`).

`synth_config(profile, dataset, **overrides)` gives the `SynthConfig` of a *synthetic profile* (tiny /
quick / full, `gsmoe data synth --profile`). These are not the *training* profiles
(`training.config.PROFILES`, tiny / quick / paper: iterations and batch sizes) nor
`training.config.make_config`: the two sets share the names "tiny" and "quick",
so they carry different names in the code. The training side picks a synthetic profile for its default data
(tiny -> tiny; quick and paper -> quick: data/synthetic-tiny, data/synthetic-quick). The command line keeps
`gsmoe data synth --profile` (its choices tiny / quick / full say which set is meant), as does the "profile"
field of gsmoe_dataset.json (datasets stay byte-identical across the rename).

Synthetic profiles (`SYNTH_PROFILES`, overrides of the SynthConfig defaults) and their counts
---------------------------------------------------------------------------------------------
| profile | train (abnormal + normal) | test (abnormal + normal) | snippets / video | crops | size (UCF, D=1024) |
|---|---|---|---|---|---|
| tiny  | 20 + 20 = 40    | 13 + 10 = 23   | 20-80 (scale 1/8) | 2  | ≈ 25 MB |
| quick | 150 + 150 = 300 | 50 + 50 = 100  | 16-300 (scale 1/5) | 2  | ≈ 250 MB |
| full  | 810 + 800 = 1610 | 140 + 150 = 290 | real (UCF) | 10 | ≈ 35 GB (XD: ≈ 14 GB, 5 crops) |

For XD-Violence the full counts are 1905 + 2049 train and 500 + 300 test; tiny and quick use the same
counts as UCF (and 5 crops). Where each knob acts: the docstrings of `plan.py` (lengths, windows) and
`features.py` (everything a feature value depends on).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from gsmoe_lib.data.lists import DATASETS

ANOMALY_MAGNITUDES = ("matched", "free")  # SynthConfig.anomaly_magnitude (features.py, step 7)

DEFAULT_SALIENCY = {
    # obvious: large, sudden changes of the scene
    "Explosion": 3.0, "Arson": 2.6, "RoadAccidents": 2.6, "Car accident": 2.6,
    # intermediate
    "Shooting": 2.0, "Fighting": 2.0, "Riot": 2.0, "Assault": 1.8, "Abuse": 1.7, "Robbery": 1.6,
    "Vandalism": 1.5, "Burglary": 1.3,
    # subtle: small gestures in an ordinary scene
    "Arrest": 1.0, "Stealing": 0.9, "Shoplifting": 0.8,
}


@dataclass(frozen=True)
class SynthConfig:
    """Every knob of the generative model (where each one acts: the docstrings of plan.py and features.py)."""

    # counts
    n_train_abnormal: int = 150        # abnormal train videos, split over classes by the real proportions
    n_train_normal: int = 150
    n_test_abnormal: int = 50          # UCF: at most the 140 real abnormal test videos
    n_test_normal: int = 50            # UCF: at most the 150 real normal test videos
    # shapes
    n_crops: int = 2
    feature_dim: int = 1024            # D
    latent_dim: int = 32               # K
    # lengths
    length_scale: float = 0.2          # T = round(T_real * length_scale), then clipped
    min_snippets: int = 16
    max_snippets: int | None = 300     # None: no cap
    train_mean_snippets: float = 490.0  # UCF train mean (REFERENCE §6), before scaling
    xd_mean_snippets: float = 150.0    # our choice for XD-Violence, before scaling
    length_sigma: float = 0.8          # log-std of the log-normal train lengths
    # windows
    multi_window_fraction: float = 16 / 140
    anomaly_fraction_beta: tuple[float, float] = (1.2, 4.8)  # mean 0.2 (UCF test: median 0.14, mean 0.20)
    min_window_snippets: int = 2
    xd_extra_label_fraction: float = 0.25  # XD abnormal videos with a second class code
    # feature extractor
    projection_gain: float = 1.0
    feature_bias_mean: float = -1.0
    feature_bias_std: float = 0.5
    # latent path
    scene_std: float = 0.5
    ar_rho: float = 0.9
    background_std: float = 0.6
    motion_share: float = 0.4
    distractor_rate: float = 2.0       # bursts per 100 snippets, in every video
    distractor_snippets: float = 5.0
    distractor_amp: float = 1.5
    saliency: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_SALIENCY))
    saliency_scale: float = 2.5        # tuned: a top-k MIL MLP reaches ~0.84 frame AUC on quick
    saliency_jitter: float = 0.25      # log-std of the per-video amplitude
    signature_jitter: float = 0.3
    ramp_snippets: float = 1.5
    # crops
    crop_offset_std: float = 0.05
    crop_noise_std: float = 0.05
    # magnitude (features.py steps 7-8): "matched" keeps an anomalous snippet's norm that of the same snippet
    # without its anomaly; "free" is generator version 1 (the norm alone scores 80.1 AUC on quick)
    anomaly_magnitude: str = "matched"
    magnitude_burst_rate: float = 1.0      # high-magnitude non-anomalous bursts per 100 snippets, in every video
    magnitude_burst_snippets: float = 3.0  # their mean length
    magnitude_burst_gain: float = 0.5      # the feature is multiplied by up to 1 + gain


SYNTH_PROFILES: dict[str, dict[str, Any]] = {
    # tiny: a few videos with salient anomalies (saliency x2), so that a stage that learns nothing shows within
    # seconds of training (tests/integration/test_learning.py); at the default saliency the 12-step encoder
    # reaches ~0.6 AUC and every later stage inherits that noise.
    "tiny": dict(n_train_abnormal=20, n_train_normal=20, n_test_abnormal=13, n_test_normal=10, n_crops=2,
                 length_scale=1 / 8, min_snippets=20, max_snippets=80, saliency_scale=5.0),
    "quick": dict(),  # the SynthConfig defaults
    "full": dict(n_train_abnormal=810, n_train_normal=800, n_test_abnormal=140, n_test_normal=150, n_crops=10,
                 length_scale=1.0, min_snippets=1, max_snippets=None),
}
XD_FULL_COUNTS = dict(n_train_abnormal=1905, n_train_normal=2049, n_test_abnormal=500, n_test_normal=300, n_crops=5)


def synth_config(profile: str = "quick", dataset: str = "ucf-crime", **overrides: Any) -> SynthConfig:
    """The SynthConfig of a synthetic profile (`SYNTH_PROFILES`) with `overrides` (SynthConfig field names;
    None values are ignored) applied. XD-Violence always has 5 crops unless overridden."""
    if profile not in SYNTH_PROFILES:
        raise ValueError(f"unknown profile {profile!r}; expected one of {', '.join(SYNTH_PROFILES)}")
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; expected ucf-crime or xd-violence")
    known = {f.name for f in fields(SynthConfig)}
    bad = sorted(set(overrides) - known)
    if bad:
        raise ValueError(f"unknown SynthConfig field(s) {', '.join(bad)}")
    values: dict[str, Any] = dict(SYNTH_PROFILES[profile])
    if dataset == "xd-violence":
        values["n_crops"] = 5  # XD-Violence features come in 5 crops
        if profile == "full":
            values.update(XD_FULL_COUNTS)
    values.update({k: v for k, v in overrides.items() if v is not None})
    cfg = SynthConfig(**values)
    if cfg.n_crops < 1 or cfg.feature_dim < 1 or cfg.latent_dim < 2:
        raise ValueError("n_crops and feature_dim must be >= 1 and latent_dim >= 2")
    return cfg
