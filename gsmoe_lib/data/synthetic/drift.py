"""The drift world: a second synthetic world, written apart from the default generator, for reporting only.

**Use it only to report, never to choose a default.** The project's defaults (schedules, options) are chosen
on the default generator and its variants (`bench.robustness`); this world exists to show whether what was
chosen there carries over to data built on other assumptions (`gsmoe bench generalise`). A setting tuned
until it looks good here would make it one more training set and take away its only use.

    gsmoe data synth --world drift --out data/drift-quick --profile quick

It shares with the default only what a dataset on disk must share: the plan (`plan.py`: names, labels,
lengths, the real UCF test windows, the counts of `SynthConfig`) and the layouts (`write.py`), so every
loader and stage reads it. Everything that decides a feature value is its own, and differs from the default
world (`features.py`) in the three ways a held-out set can differ:

1. **How anomalies enter the features: a gradual mixing toward a class prototype.** A snippet's feature is a
   non-negative mixture of non-negative *atoms* (A [P, D], each unit-L2, active on `atom_support` of the
   dimensions). A normal snippet has mixture weights q0[t] (over the scene and activity atoms, summing to 1);
   inside an anomaly window the weights move toward the class prototype π_c:

       q[t] = (1 - α[t]) · q0[t] + α[t] · π_c

   α[t] rises to the class's peak strength (`DRIFT_STRENGTH` × `strength_scale`, × a per-video log-normal
   jitter `strength_jitter`): with probability `gradual_fraction` it rises *gradually*, a smoothstep over a
   ramp of U(`gradual_ramp`) of the window (a fight that escalates, a fire that spreads: long and gradual),
   else within one snippet (short and abrupt). The plan's windows already range from a few snippets to most
   of a video (the real UCF test windows: median 15 snippets, p10 5, p90 97).
2. **How normal videos vary: scene cuts and camera drift.** A video is a sequence of scenes, cut abruptly at
   Poisson(`cut_rate` per 100 snippets) times; each scene is a sparse Dirichlet(`scene_concentration`)
   mixture of the scene atoms, and within a scene the weights drift slowly (camera motion: a log-space AR(1)
   of coefficient `drift_rho` and stationary std `drift_std` per atom). Normal activity (people, vehicles:
   the activity atoms) comes and goes smoothly (AR(1) `activity_rho`, level `activity_level`), with
   Poisson(`rush_rate`) rushes of strong activity that are not anomalies, in every video.
3. **How classes relate: a hierarchy with partly shared subspaces.** The classes form three families
   (`FAMILIES`: violence, theft and property, accidents and disasters). π_c = `shared_weight` · the one atom
   shared by every anomaly + `family_weight` · the family's atom + the rest · the class's own atom. A
   family's atom overlaps one normal activity atom (`family_overlap`: fights look partly like a crowd
   moving; a road accident partly like traffic), so part of every anomaly lives in a subspace that normal
   videos also use.

**Magnitude carries no label.** The feature of snippet t is x[t] = m[t] · v[t] / ||v[t]||, v[t] = q[t] A: its
direction comes from the mixture, its norm m[t] from a process that never sees the labels: a log-normal
AR(1) around `magnitude_median` (`magnitude_rho`, `magnitude_std`; a per-scene level `magnitude_scene_std`,
off by default because a level shared by a whole window swings the pooled score by ±10 points) and bursts
that multiply it by up to 1 + `burst_gain` (Poisson `burst_rate` per 100 snippets, mean length
`burst_snippets`: flashes, glare) in every video. So the untrained L2-norm score (`data.magnitude`) is at
chance by construction, as for real I3D features of subtle anomalies.

Non-negative and temporally smooth like real I3D avg-pool features: atoms and weights are non-negative,
and the feature's direction changes through AR(1) processes with coefficients of 0.9 or more, except at the
scene cuts and the anomalies' abrupt onsets (its norm varies faster, by about 10%: see above).
Crops: x_c = x · exp(o_c + ε_c[t]), o_c [D] a per-crop offset (`crop_offset_std`), ε white noise
(`crop_noise_std`): non-negative, close, not identical.

Random streams: the world from SeedSequence([seed, 10]); video i of split s from SeedSequence([seed, 13,
s, i]): a video's features do not depend on the others. The plan's streams are the default world's, so a
drift dataset and a default dataset of the same seed and profile have the same videos, lengths and windows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from gsmoe_lib.data.ground_truth import SNIPPET_FRAMES
from gsmoe_lib.data.synthetic.config import SynthConfig
from gsmoe_lib.data.synthetic.features import burst_profile
from gsmoe_lib.data.synthetic.plan import PlannedVideo

# The class hierarchy (point 3 of the module docstring): every UCF-Crime and XD-Violence class in one family.
FAMILIES: dict[str, tuple[str, ...]] = {
    "violence": ("Abuse", "Arrest", "Assault", "Fighting", "Riot", "Shooting"),
    "theft and property": ("Burglary", "Robbery", "Shoplifting", "Stealing", "Vandalism"),
    "accidents and disasters": ("Arson", "Car accident", "Explosion", "RoadAccidents"),
}

# Peak mixing strength α toward the class prototype, before `strength_scale` (our choice: the share of the
# snippet's content the anomaly takes over; an explosion fills the frame, shoplifting is a gesture).
DRIFT_STRENGTH: dict[str, float] = {
    "Explosion": 0.6, "Arson": 0.5, "RoadAccidents": 0.5, "Car accident": 0.5,
    "Shooting": 0.4, "Fighting": 0.4, "Riot": 0.4, "Assault": 0.35, "Abuse": 0.35, "Robbery": 0.3,
    "Vandalism": 0.3, "Burglary": 0.25,
    "Arrest": 0.2, "Stealing": 0.18, "Shoplifting": 0.15,
}


@dataclass(frozen=True)
class DriftConfig:
    """The drift world's own knobs (where each acts: the module docstring). Counts, lengths, windows, crops
    and D come from the plan's `SynthConfig`."""

    # atoms
    n_scene_atoms: int = 24
    n_activity_atoms: int = 6
    atom_support: float = 0.25          # share of the D dimensions an atom is active on
    atom_floor: float = 0.02            # every atom's value off its support (dense, like I3D features)
    family_overlap: float = 0.5         # a family atom's share of one normal activity atom
    # normal videos
    cut_rate: float = 0.8               # scene cuts per 100 snippets
    scene_concentration: float = 0.3    # Dirichlet over the scene atoms (small: few atoms per scene)
    drift_rho: float = 0.97             # camera drift within a scene: log-weight AR(1)
    drift_std: float = 0.5
    activity_rho: float = 0.9
    activity_level: float = 0.15        # mean share of the activity atoms in a normal snippet
    rush_rate: float = 1.0              # rushes of strong normal activity per 100 snippets
    rush_snippets: float = 6.0
    rush_share: float = 0.35            # activity share at a rush's peak
    # anomalies
    strength: dict[str, float] = field(default_factory=lambda: dict(DRIFT_STRENGTH))
    strength_scale: float = 1.0
    strength_jitter: float = 0.25       # log-std of the per-video strength
    gradual_fraction: float = 0.5       # anomalies that rise gradually (the rest: within one snippet)
    gradual_ramp: tuple[float, float] = (0.3, 1.0)  # the ramp's share of the window, uniform
    shared_weight: float = 0.15         # π_c: the atom shared by every anomaly
    family_weight: float = 0.35         # π_c: the family's atom (the rest: the class's own atom)
    # magnitude: independent of every label. Its variation must be fast next to the anomaly windows: a level
    # shared by a whole window (per scene, or slow) decides by itself on which side of chance the pooled L2-norm
    # AUC falls (scene log-std 0.05 alone gave 60 / 39 / 59 / 49 AUC at dataset seeds 0-3, quick, D=256)
    magnitude_median: float = 12.0
    magnitude_scene_std: float = 0.0    # log-std of a scene's level (off: see above)
    magnitude_rho: float = 0.5
    magnitude_std: float = 0.1          # log-std of the variation within a scene (AR(1), `magnitude_rho`)
    burst_rate: float = 1.0             # high-magnitude bursts per 100 snippets
    burst_snippets: float = 3.0
    burst_gain: float = 0.5
    # crops
    crop_offset_std: float = 0.02
    crop_noise_std: float = 0.03


# Per synthetic profile, as SYNTH_PROFILES: tiny doubles the strengths (as tiny doubles the default world's
# saliency) so that a stage that learns nothing shows within seconds of training.
DRIFT_PROFILES: dict[str, dict[str, Any]] = {"tiny": {"strength_scale": 2.0}, "quick": {}, "full": {}}


def drift_config(profile: str = "quick", **overrides: Any) -> DriftConfig:
    """The DriftConfig of a synthetic profile (tiny / quick / full) with `overrides` (None values ignored)."""
    if profile not in DRIFT_PROFILES:
        raise ValueError(f"unknown profile {profile!r}; expected one of {', '.join(DRIFT_PROFILES)}")
    known = {f.name for f in fields(DriftConfig)}
    bad = sorted(set(overrides) - known)
    if bad:
        raise ValueError(f"unknown DriftConfig field(s) {', '.join(bad)}")
    return DriftConfig(**{**DRIFT_PROFILES[profile], **{k: v for k, v in overrides.items() if v is not None}})


def family_of(cls: str) -> str:
    for family, members in FAMILIES.items():
        if cls in members:
            return family
    raise ValueError(f"class {cls!r} belongs to no family of the drift world ({', '.join(FAMILIES)})")


@dataclass
class DriftWorld:
    """The fixed parts shared by all videos: atoms and the class prototypes over them.

    atoms: [P, D] non-negative, unit L2, in the order scene (n_scene), activity (n_activity), shared (1),
    families (one per FAMILIES key), classes (one per class). prototypes: class -> π_c [P] (sums to 1).
    """

    atoms: np.ndarray
    n_scene: int
    n_activity: int
    prototypes: dict[str, np.ndarray]


def _atom(rng: np.random.Generator, d: int, support: float, floor: float) -> np.ndarray:
    """A non-negative atom [D]: gamma-distributed values on a random `support` share of the dimensions."""
    a = np.full(d, floor)
    on = rng.random(d) < support
    a[on] += rng.gamma(0.7, 1.0, size=int(on.sum()))
    return a


def make_drift_world(dcfg: DriftConfig, feature_dim: int, seed: int, classes: list[str]) -> DriftWorld:
    rng = np.random.default_rng(np.random.SeedSequence([seed, 10]))
    d = feature_dim
    scene = [_atom(rng, d, dcfg.atom_support, dcfg.atom_floor) for _ in range(dcfg.n_scene_atoms)]
    activity = [_atom(rng, d, dcfg.atom_support, dcfg.atom_floor) for _ in range(dcfg.n_activity_atoms)]
    shared = _atom(rng, d, dcfg.atom_support, dcfg.atom_floor)
    unit = lambda a: a / np.linalg.norm(a)  # noqa: E731
    families = []
    for _ in FAMILIES:  # partly shared with one normal activity atom
        overlap = activity[int(rng.integers(len(activity)))]
        families.append(dcfg.family_overlap * unit(overlap)
                        + (1 - dcfg.family_overlap) * unit(_atom(rng, d, dcfg.atom_support, dcfg.atom_floor)))
    own = [_atom(rng, d, dcfg.atom_support, dcfg.atom_floor) for _ in classes]
    atoms = np.stack([unit(a) for a in (*scene, *activity, shared, *families, *own)])  # [P, D]
    n_scene, n_activity = len(scene), len(activity)
    shared_i = n_scene + n_activity
    family_i = {f: shared_i + 1 + j for j, f in enumerate(FAMILIES)}
    class_i0 = shared_i + 1 + len(FAMILIES)
    prototypes = {}
    for j, cls in enumerate(classes):
        pi = np.zeros(len(atoms))
        pi[shared_i] = dcfg.shared_weight
        pi[family_i[family_of(cls)]] = dcfg.family_weight
        pi[class_i0 + j] = 1.0 - dcfg.shared_weight - dcfg.family_weight
        prototypes[cls] = pi
    return DriftWorld(atoms, n_scene, n_activity, prototypes)


def _ar1(rng: np.random.Generator, t: int, k: int, rho: float, std: float) -> np.ndarray:
    """[T, K] stationary AR(1) with coefficient `rho` and stationary std `std`."""
    out = np.empty((t, k))
    innov = rng.normal(0.0, std * math.sqrt(1 - rho**2), size=(t, k))
    out[0] = rng.normal(0.0, std, size=k)
    for i in range(1, t):
        out[i] = rho * out[i - 1] + innov[i]
    return out


def scene_cuts(rng: np.random.Generator, t: int, rate: float) -> np.ndarray:
    """The scene index of every snippet [T] (int): cuts at Poisson(`rate` per 100 snippets) random snippets."""
    n_cuts = min(int(rng.poisson(rate * t / 100)), max(t - 1, 0))
    cuts = np.zeros(t, dtype=int)
    if n_cuts:
        cuts[rng.choice(np.arange(1, t), size=n_cuts, replace=False)] = 1
    return np.cumsum(cuts)


def anomaly_mixing(video: PlannedVideo, dcfg: DriftConfig, rng: np.random.Generator) -> np.ndarray:
    """α [T] in [0, 1): the share of each snippet taken over by the class prototype (point 1). Zeros for a
    normal video. Each window rises gradually (smoothstep over a ramp) or within one snippet."""
    t = video.n_snippets
    alpha = np.zeros(t)
    if not video.classes:
        return alpha
    peak = np.mean([dcfg.strength[c] for c in video.classes]) * dcfg.strength_scale
    peak = min(peak * float(rng.lognormal(0.0, dcfg.strength_jitter)), 0.95)
    u = np.arange(t) + 0.5  # snippet centres
    for s, e in video.windows:
        s_snip, e_snip = s / SNIPPET_FRAMES, (e + 1) / SNIPPET_FRAMES
        inside = (u > s_snip) & (u < e_snip)
        if rng.random() < dcfg.gradual_fraction:
            ramp = max(1.0, float(rng.uniform(*dcfg.gradual_ramp)) * (e_snip - s_snip))
        else:
            ramp = 1.0
        x = np.clip((u - s_snip) / ramp, 0.0, 1.0)
        alpha = np.maximum(alpha, np.where(inside, peak * x * x * (3 - 2 * x), 0.0))  # smoothstep rise
    return alpha


def normal_mixture(t: int, world: DriftWorld, dcfg: DriftConfig, rng: np.random.Generator,
                   scenes: np.ndarray) -> np.ndarray:
    """q0 [T, P]: the weights of a normal video over the atoms (scene and activity atoms only; rows sum to 1)."""
    p = len(world.atoms)
    q = np.zeros((t, p))
    base = np.zeros((t, world.n_scene))
    for k in range(int(scenes.max()) + 1):  # one sparse scene mixture per scene
        base[scenes == k] = rng.dirichlet(np.full(world.n_scene, dcfg.scene_concentration))
    drift = np.exp(_ar1(rng, t, world.n_scene, dcfg.drift_rho, dcfg.drift_std))  # camera drift [T, n_scene]
    w_scene = base * drift
    w_scene /= w_scene.sum(1, keepdims=True)
    # activity: a smooth share around activity_level, plus rushes
    level = dcfg.activity_level * np.exp(_ar1(rng, t, 1, dcfg.activity_rho, 0.5))[:, 0]            # [T]
    level = np.clip(level + dcfg.rush_share * burst_profile(t, dcfg.rush_rate, dcfg.rush_snippets, rng), 0.0, 0.9)
    mix = np.exp(_ar1(rng, t, world.n_activity, dcfg.activity_rho, 1.0))                           # [T, n_act]
    mix /= mix.sum(1, keepdims=True)
    q[:, :world.n_scene] = (1 - level)[:, None] * w_scene
    q[:, world.n_scene:world.n_scene + world.n_activity] = level[:, None] * mix
    return q


def magnitude(t: int, dcfg: DriftConfig, rng: np.random.Generator, scenes: np.ndarray) -> np.ndarray:
    """m [T] > 0: the feature norm of each snippet, drawn without reference to any label."""
    levels = rng.normal(0.0, dcfg.magnitude_scene_std, size=int(scenes.max()) + 1)[scenes]      # [T]
    slow = _ar1(rng, t, 1, dcfg.magnitude_rho, dcfg.magnitude_std)[:, 0]
    bursts = 1.0 + dcfg.burst_gain * burst_profile(t, dcfg.burst_rate, dcfg.burst_snippets, rng)
    return dcfg.magnitude_median * np.exp(levels + slow) * bursts


def drift_video_features(video: PlannedVideo, world: DriftWorld, cfg: SynthConfig, dcfg: DriftConfig,
                         rng: np.random.Generator) -> np.ndarray:
    """Features [C, T, D] float32 of one video of the drift world."""
    t = video.n_snippets
    scenes = scene_cuts(rng, t, dcfg.cut_rate)                       # [T]
    q = normal_mixture(t, world, dcfg, rng, scenes)                  # [T, P]
    alpha = anomaly_mixing(video, dcfg, rng)                         # [T]
    if video.classes:
        pi = np.mean([world.prototypes[c] for c in video.classes], axis=0)  # [P]; XD multi-label: the mean
        q = (1 - alpha)[:, None] * q + alpha[:, None] * pi[None, :]
    v = q @ world.atoms                                              # [T, D], non-negative
    x = magnitude(t, dcfg, rng, scenes)[:, None] * v / np.linalg.norm(v, axis=1, keepdims=True)
    offsets = rng.normal(0.0, dcfg.crop_offset_std, size=(cfg.n_crops, 1, cfg.feature_dim))
    noise = rng.normal(0.0, dcfg.crop_noise_std, size=(cfg.n_crops, t, cfg.feature_dim))
    return (x[None] * np.exp(offsets + noise)).astype(np.float32)   # [C, T, D]


def drift_video_rng(seed: int, split_id: int, index: int) -> np.random.Generator:
    """The random stream of video `index` of split `split_id` (0 train, 1 test) in the drift world."""
    return np.random.default_rng(np.random.SeedSequence([seed, 13, split_id, index]))
