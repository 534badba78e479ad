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

Random streams: the world from SeedSequence([seed, 0]); video i of split s (0 train, 1 test) from its own
SeedSequence([seed, 3, s, i]) (`video_rng`), so a video's features do not depend on the others.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from gsmoe_lib.data.ground_truth import SNIPPET_FRAMES
from gsmoe_lib.data.synthetic.config import SynthConfig
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


def _latent_path(video: PlannedVideo, world: World, cfg: SynthConfig, rng: np.random.Generator) -> np.ndarray:
    """z [T, K] of one video: scene + AR(1) background + motion distractors + anomaly."""
    t, k = video.n_snippets, cfg.latent_dim
    z = np.empty((t, k))
    # AR(1) with stationary std background_std, started from its stationary law
    innov = rng.normal(0.0, cfg.background_std * math.sqrt(1 - cfg.ar_rho**2), size=(t, k))
    z[0] = rng.normal(0.0, cfg.background_std, size=k)
    for i in range(1, t):
        z[i] = cfg.ar_rho * z[i - 1] + innov[i]
    z += rng.normal(0.0, cfg.scene_std, size=k)  # scene, constant over the video
    # motion distractors: bursts with a smooth (half-sine) profile, in every video
    n_bursts = int(rng.poisson(cfg.distractor_rate * t / 100))
    motion = np.zeros(t)
    for _ in range(n_bursts):
        length = max(1.0, float(rng.exponential(cfg.distractor_snippets)))
        start = float(rng.uniform(-length / 2, t))
        u = (np.arange(t) + 0.5 - start) / length
        motion += np.where((u > 0) & (u < 1), np.sin(np.pi * np.clip(u, 0, 1)), 0.0)
    z += cfg.distractor_amp * motion[:, None] * world.motion[None, :]
    if video.classes:
        direction = sum(world.signatures[c] for c in video.classes)
        direction = direction + cfg.signature_jitter * rng.normal(size=k) / math.sqrt(k)
        direction /= np.linalg.norm(direction)
        amp = np.mean([cfg.saliency[c] for c in video.classes]) * cfg.saliency_scale
        amp *= float(rng.lognormal(0.0, cfg.saliency_jitter))
        z += amp * _envelope(t, video.windows, cfg.ramp_snippets)[:, None] * direction[None, :]
    return z


def video_features(video: PlannedVideo, world: World, cfg: SynthConfig, rng: np.random.Generator) -> np.ndarray:
    """Features [C, T, D] float32 of one video."""
    z = _latent_path(video, world, cfg, rng)                      # [T, K]
    h = world.bias + z @ world.projection                         # [T, D]
    offsets = rng.normal(0.0, cfg.crop_offset_std, size=(cfg.n_crops, 1, cfg.feature_dim))
    noise = rng.normal(0.0, cfg.crop_noise_std, size=(cfg.n_crops, *h.shape))
    return np.logaddexp(0.0, h[None] + offsets + noise).astype(np.float32)  # softplus, [C, T, D]


def video_rng(seed: int, split_id: int, index: int) -> np.random.Generator:
    """The random stream of video `index` of split `split_id` (0 train, 1 test)."""
    return np.random.default_rng(np.random.SeedSequence([seed, 3, split_id, index]))
