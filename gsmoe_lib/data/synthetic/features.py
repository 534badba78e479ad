"""The features of a synthetic video: a fixed random "feature extractor" applied to a latent path.

Generative model, the steps that decide feature values (K = `latent_dim`, D = `feature_dim`, T snippets,
C crops; steps 3-4, lengths and windows, are in `plan.py`):

1. **Feature extractor.** A fixed random projection W [K, D] (entries N(0, gain²/K), `projection_gain`)
   and a per-dimension bias b [D] ~ N(`feature_bias_mean`, `feature_bias_std`²). A snippet with latent
   z [K] has the feature softplus(b + z W): non-negative like I3D average-pool features.
2. **Directions.** A shared "motion" direction u [K] (unit) and one signature per anomaly class,
   d_c = normalise(sqrt(1 - m²) · r_c + m · u) with r_c a random unit vector orthogonal to u and
   m = `motion_share`: anomalies move features partly the way any high-motion event does.
5. **Latent path** z[t] = scene + background[t] + distractors[t] + anomaly[t]:
   - scene ~ N(0, `scene_std`²·I), constant over the video (camera, place);
   - background: AR(1) with coefficient `ar_rho` and stationary std `background_std` (smooth in time);
   - distractors: in *every* video (normal or not), Poisson(`distractor_rate` per 100 snippets) bursts of
     mean length `distractor_snippets` along the motion direction u, amplitude `distractor_amp`: high
     motion that is not an anomaly;
   - anomaly: envelope e[t] ∈ [0, 1] (1 inside a window, linear ramp-in / ramp-out over
     `ramp_snippets` at each edge) times saliency_c · `saliency_scale` · a per-video log-normal jitter
     (`saliency_jitter`) along the video's own direction normalise(d_c + `signature_jitter` · noise).
     `saliency` is the per-class table: Explosion, Arson, RoadAccidents obvious; Shoplifting, Stealing,
     Arrest subtle. An XD video with several labels mixes its classes' directions.
6. **Crops.** Crop c sees softplus(b + z W + o_c + ε_c[t]): o_c [D] a static per-crop offset
   (`crop_offset_std`) and ε white noise (`crop_noise_std`); crops agree but are not identical.
7. **Magnitude** (`anomaly_magnitude`). Softplus is convex, so any latent displacement raises the features'
   norm: left alone ("free", generator version 1), the L2 norm of a snippet's feature scores 80.1 frame AUC on
   the quick UCF-shaped default with no training (`data.magnitude`), while real I3D features of subtle
   anomalies barely move in norm (REFERENCE §6; an independent held-out UCF-shaped set: 48.9). "matched" (the
   default) rescales every anomalous snippet (all its crops by one factor) so that its crop-averaged feature
   has the L2 norm it would have had without its anomaly term (same scene, background, distractors, offsets
   and noise): the anomaly changes the feature's
   direction (shared motion part + class signature), never its norm.
8. **Magnitude bursts**, in every video, independent of its labels: Poisson(`magnitude_burst_rate` per 100
   snippets) bursts of mean length `magnitude_burst_snippets` that multiply the feature by up to
   1 + `magnitude_burst_gain` (a half-sine profile; lighting flashes, glare, a camera's gain): high-magnitude
   events that are not anomalies, on which a magnitude detector raises false alarms.

After 7 and 8 the untrained L2-norm score is near chance on the quick default (UCF- and XD-shaped; the
figures are in the README's data section and tests/unit/test_synthetic.py pins the band).

Random streams: the world from SeedSequence([seed, 0]); video i of split s (0 train, 1 test) from its own
SeedSequence([seed, 3, s, i]) (`video_rng`), so a video's features do not depend on the others.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from gsmoe_lib.data.ground_truth import SNIPPET_FRAMES
from gsmoe_lib.data.synthetic.config import ANOMALY_MAGNITUDES, SynthConfig
from gsmoe_lib.data.synthetic.plan import PlannedVideo


@dataclass
class World:
    """The fixed parts shared by all videos of a dataset: feature extractor and directions."""

    projection: np.ndarray   # [K, D]
    bias: np.ndarray         # [D]
    motion: np.ndarray       # [K] unit
    signatures: dict[str, np.ndarray]  # class -> [K] unit


def make_world(cfg: SynthConfig, seed: int, classes: list[str]) -> World:
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0]))
    k, d = cfg.latent_dim, cfg.feature_dim
    projection = rng.normal(0.0, cfg.projection_gain / math.sqrt(k), size=(k, d))
    bias = rng.normal(cfg.feature_bias_mean, cfg.feature_bias_std, size=d)
    motion = rng.normal(size=k)
    motion /= np.linalg.norm(motion)
    signatures = {}
    for cls in classes:
        r = rng.normal(size=k)
        r -= (r @ motion) * motion  # orthogonal to the motion direction
        r /= np.linalg.norm(r)
        v = math.sqrt(1 - cfg.motion_share**2) * r + cfg.motion_share * motion
        signatures[cls] = v / np.linalg.norm(v)
    return World(projection, bias, motion, signatures)


def _envelope(t: int, windows: list[tuple[int, int]], ramp: float) -> np.ndarray:
    """Anomaly envelope [T] in [0, 1]: 1 inside each window, linear ramps of `ramp` snippets at its edges."""
    u = np.arange(t) + 0.5  # snippet centres, in snippets
    env = np.zeros(t)
    for s, e in windows:
        s_snip, e_snip = s / SNIPPET_FRAMES, (e + 1) / SNIPPET_FRAMES
        r = max(min(ramp, (e_snip - s_snip) / 2), 1e-6)
        env = np.maximum(env, np.clip(np.minimum(u - s_snip, e_snip - u) / r, 0.0, 1.0))
    return env


def _latent_path(video: PlannedVideo, world: World, cfg: SynthConfig,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(z [T, K], anomaly [T, K]) of one video: z = scene + AR(1) background + motion distractors + anomaly,
    and the anomaly term alone (zeros for a normal video), so that z - anomaly is the video without it."""
    t, k = video.n_snippets, cfg.latent_dim
    z = np.empty((t, k))
    # AR(1) with stationary std background_std, started from its stationary law
    innov = rng.normal(0.0, cfg.background_std * math.sqrt(1 - cfg.ar_rho**2), size=(t, k))
    z[0] = rng.normal(0.0, cfg.background_std, size=k)
    for i in range(1, t):
        z[i] = cfg.ar_rho * z[i - 1] + innov[i]
    z += rng.normal(0.0, cfg.scene_std, size=k)  # scene, constant over the video
    # motion distractors: bursts with a smooth (half-sine) profile, in every video
    motion = burst_profile(t, cfg.distractor_rate, cfg.distractor_snippets, rng)  # [T]
    z += cfg.distractor_amp * motion[:, None] * world.motion[None, :]
    if video.classes:
        direction = sum(world.signatures[c] for c in video.classes)
        direction = direction + cfg.signature_jitter * rng.normal(size=k) / math.sqrt(k)
        direction /= np.linalg.norm(direction)
        amp = np.mean([cfg.saliency[c] for c in video.classes]) * cfg.saliency_scale
        amp *= float(rng.lognormal(0.0, cfg.saliency_jitter))
        anomaly = amp * _envelope(t, video.windows, cfg.ramp_snippets)[:, None] * direction[None, :]
        return z + anomaly, anomaly
    return z, np.zeros_like(z)


def burst_profile(t: int, rate: float, mean_snippets: float, rng: np.random.Generator) -> np.ndarray:
    """[T] sum of Poisson(`rate` per 100 snippets) half-sine bursts of exponential length (mean `mean_snippets`).

    The distractors (step 5) and the magnitude bursts (step 8) here, and the drift world's rushes and bursts.
    """
    n_bursts = int(rng.poisson(rate * t / 100))
    profile = np.zeros(t)
    for _ in range(n_bursts):
        length = max(1.0, float(rng.exponential(mean_snippets)))
        start = float(rng.uniform(-length / 2, t))
        u = (np.arange(t) + 0.5 - start) / length
        profile += np.where((u > 0) & (u < 1), np.sin(np.pi * np.clip(u, 0, 1)), 0.0)
    return profile


def _norm_ratio(reference: np.ndarray, x: np.ndarray) -> np.ndarray:
    """[T, 1]: ||reference[t]|| / ||x[t]|| for rows [T, D] (step 7: the factor that gives x the reference's norms)."""
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.linalg.norm(reference, axis=-1, keepdims=True) / np.maximum(norm, 1e-12)


def video_features(video: PlannedVideo, world: World, cfg: SynthConfig, rng: np.random.Generator) -> np.ndarray:
    """Features [C, T, D] float32 of one video."""
    if cfg.anomaly_magnitude not in ANOMALY_MAGNITUDES:
        raise ValueError(f"anomaly_magnitude {cfg.anomaly_magnitude!r}: expected one of "
                         f"{', '.join(ANOMALY_MAGNITUDES)}")
    z, anomaly = _latent_path(video, world, cfg, rng)             # [T, K] each
    h = world.bias + z @ world.projection                         # [T, D]
    offsets = rng.normal(0.0, cfg.crop_offset_std, size=(cfg.n_crops, 1, cfg.feature_dim))
    noise = rng.normal(0.0, cfg.crop_noise_std, size=(cfg.n_crops, *h.shape))
    x = np.logaddexp(0.0, h[None] + offsets + noise)              # softplus, [C, T, D]
    if cfg.anomaly_magnitude == "matched" and video.classes:
        h_without = world.bias + (z - anomaly) @ world.projection  # [T, D]: the same video without its anomaly
        without = np.logaddexp(0.0, h_without[None] + offsets + noise)  # [C, T, D]
        # one factor per snippet for all crops: the crop-averaged feature (what is scored) keeps its norm exactly
        x = x * _norm_ratio(without.mean(0), x.mean(0))[None]
    if cfg.magnitude_burst_rate > 0:
        gain = 1.0 + cfg.magnitude_burst_gain * burst_profile(video.n_snippets, cfg.magnitude_burst_rate,
                                                        cfg.magnitude_burst_snippets, rng)  # [T]
        x = x * gain[None, :, None]
    return x.astype(np.float32)


def video_rng(seed: int, split_id: int, index: int) -> np.random.Generator:
    """The random stream of video `index` of split `split_id` (0 train, 1 test)."""
    return np.random.default_rng(np.random.SeedSequence([seed, 3, split_id, index]))
