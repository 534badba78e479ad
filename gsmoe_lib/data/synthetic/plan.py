"""`gsmoe data synth`: a synthetic feature dataset in the real on-disk formats of UCF-Crime or XD-Violence.

The synthetic data lets every notebook, test and `make reproduce` run end to end on a CPU without the
real I3D features (tens of GB). It is written in the *real* layouts (UR-DMU per-crop lists, the UR-DMU
UCF annotation with frame counts, the XD-Violence per-crop lists and annotation), so every run goes
through the same loaders as the real data. Nothing here is from the paper: the generative model below is
our own design, and every knob is a field of `SynthConfig`.

Generative model (per dataset seed; K = `latent_dim`, D = `feature_dim`, T snippets, C crops)
-------------------------------------------------------------------------------------------
1. **Feature extractor.** A fixed random projection W [K, D] (entries N(0, gain²/K), `projection_gain`)
   and a per-dimension bias b [D] ~ N(`feature_bias_mean`, `feature_bias_std`²). A snippet with latent
   z [K] has the feature softplus(b + z W): non-negative like I3D average-pool features.
2. **Directions.** A shared "motion" direction u [K] (unit) and one signature per anomaly class,
   d_c = normalise(sqrt(1 - m²) · r_c + m · u) with r_c a random unit vector orthogonal to u and
   m = `motion_share`: anomalies move features partly the way any high-motion event does.
3. **Video length.** Test videos (UCF) are real test videos sampled from the packaged UR-DMU annotation
   (their names, frame counts and windows; at least one per class, and at least one two-window video);
   T_real = the DeepMIL snippet count of the real frame count, T = clip(round(T_real · `length_scale`),
   `min_snippets`, `max_snippets`), windows rescaled by T / T_real (kept at least `min_window_snippets`).
   Train videos (and all XD videos) draw T from a log-normal with mean `train_mean_snippets`
   (`xd_mean_snippets`) and log-std `length_sigma`, then the same scaling and clipping.
   The frame count n is 16·T + r with r in 1..15, so that the DeepMIL rule (T = floor(n/16), one fewer
   when 16 divides n) gives back T; windows lie in [0, 16·T).
4. **Windows of synthetic abnormal videos** (UCF train, all XD abnormal): one window, two with
   probability `multi_window_fraction` (UCF test: 16 of 140); the anomalous fraction of the video is
   Beta(`anomaly_fraction_beta`) (mean 0.2 like UCF test), split between the windows, placed at random.
   Train windows shape the features but are never written (weak labels only).
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

Profiles (`PROFILES`, overrides of the defaults) and their counts
-------------------------------------------------------------------
| profile | train (abnormal + normal) | test (abnormal + normal) | snippets / video | crops | size (UCF, D=1024) |
|---|---|---|---|---|---|
| tiny  | 20 + 20 = 40    | 13 + 10 = 23   | 20-80 (scale 1/8) | 2  | ≈ 25 MB |
| quick | 150 + 150 = 300 | 50 + 50 = 100  | 16-300 (scale 1/5) | 2  | ≈ 250 MB |
| full  | 810 + 800 = 1610 | 140 + 150 = 290 | real (UCF) | 10 | ≈ 35 GB (XD: ≈ 14 GB, 5 crops) |

For XD-Violence the full counts are 1905 + 2049 train and 500 + 300 test; tiny and quick use the same
counts as UCF. Abnormal train videos follow the real per-class proportions (at least one per class).
The XD lengths are our choice (no frame counts are published with the lists): a log-normal around
`xd_mean_snippets` = 150.

Writing is atomic: everything goes to a temporary folder beside DIR, renamed to DIR at the end. Files are
byte-identical for the same seed and config (one random stream per video, keyed by split and index).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from gsmoe_lib import runs
from gsmoe_lib.data.ground_truth import SNIPPET_FRAMES

GENERATOR_VERSION = 1
METADATA_FILE = "gsmoe_dataset.json"
RESOURCES = Path(__file__).resolve().parent / "resources"  # the packaged official lists (real names, lengths)

UCF_CLASSES = ("Abuse", "Arrest", "Arson", "Assault", "Burglary", "Explosion", "Fighting", "RoadAccidents",
               "Robbery", "Shooting", "Shoplifting", "Stealing", "Vandalism")
# Real UCF-Crime train videos per class (REFERENCE §6): the proportions of the synthetic train split.
UCF_TRAIN_COUNTS = {"Abuse": 48, "Arrest": 45, "Arson": 41, "Assault": 47, "Burglary": 87, "Explosion": 29,
                    "Fighting": 45, "RoadAccidents": 127, "Robbery": 145, "Shooting": 27, "Shoplifting": 29,
                    "Stealing": 95, "Vandalism": 45}
XD_CODES = {"B1": "Fighting", "B2": "Shooting", "B4": "Riot", "B5": "Abuse", "B6": "Car accident", "G": "Explosion"}
# XD train label proportions: our choice (roughly the real mix, fighting and riots most common).
XD_CODE_WEIGHTS = {"B1": 0.26, "B2": 0.2, "B4": 0.17, "B5": 0.07, "B6": 0.1, "G": 0.2}

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
    """Every knob of the generative model (see the module docstring for where each one acts)."""

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


PROFILES: dict[str, dict[str, Any]] = {
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


@dataclass
class _Video:
    """One video to generate: its name, where its crops go, and what the generator puts in it."""

    name: str                        # without crop suffix, e.g. Abuse028_x264
    folder: str                      # feature sub-folder under features/
    classes: tuple[str, ...]         # () for normal
    n_snippets: int                  # T
    n_frames: int
    windows: list[tuple[int, int]]   # frame windows [s, e] inclusive, within [0, 16 T)
    list_prefix: str = ""            # UCF: "dataset/<Class>/"


def make_config(profile: str = "quick", dataset: str = "ucf-crime", **overrides: Any) -> SynthConfig:
    """The config of a profile with `overrides` (SynthConfig field names) applied."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; expected one of {', '.join(PROFILES)}")
    if dataset not in ("ucf-crime", "xd-violence"):
        raise ValueError(f"unknown dataset {dataset!r}; expected ucf-crime or xd-violence")
    known = {f.name for f in fields(SynthConfig)}
    bad = sorted(set(overrides) - known)
    if bad:
        raise ValueError(f"unknown SynthConfig field(s) {', '.join(bad)}")
    values: dict[str, Any] = dict(PROFILES[profile])
    if dataset == "xd-violence":
        values["n_crops"] = 5  # XD-Violence features come in 5 crops
        if profile == "full":
            values.update(XD_FULL_COUNTS)
    values.update({k: v for k, v in overrides.items() if v is not None})
    cfg = SynthConfig(**values)
    if cfg.n_crops < 1 or cfg.feature_dim < 1 or cfg.latent_dim < 2:
        raise ValueError("n_crops and feature_dim must be >= 1 and latent_dim >= 2")
    return cfg


# ----------------------------------------------------------------------------------------------------
# Planning: names, lengths and windows of every video (cheap; decides the whole dataset's shape)
# ----------------------------------------------------------------------------------------------------

def _deepmil_snippets(n_frames: int) -> int:
    return n_frames // SNIPPET_FRAMES - (1 if n_frames % SNIPPET_FRAMES == 0 else 0)


def _scaled_length(t_real: float, cfg: SynthConfig) -> int:
    t = max(1, round(t_real * cfg.length_scale), cfg.min_snippets)
    return min(t, cfg.max_snippets) if cfg.max_snippets is not None else t


def _frame_count(t: int, rng: np.random.Generator) -> int:
    # 16 T + r with r in 1..15: the DeepMIL rule maps it back to T
    return SNIPPET_FRAMES * t + int(rng.integers(1, SNIPPET_FRAMES))


def _apportion(total: int, weights: dict[str, float], minimum: int) -> dict[str, int]:
    """Split `total` over keys proportionally to `weights` (largest remainders), then lift every key to
    `minimum` by taking from the largest shares (the real counts come back exactly when total = their sum)."""
    keys = sorted(weights)
    if total < minimum * len(keys):
        raise ValueError(f"{total} abnormal videos cannot give {minimum} to each of {len(keys)} classes")
    wsum = sum(weights.values())
    raw = {k: total * weights[k] / wsum for k in keys}
    out = {k: int(raw[k]) for k in keys}
    order = sorted(keys, key=lambda k: (-(raw[k] - int(raw[k])), k))
    for k in order[: total - sum(out.values())]:
        out[k] += 1
    for k in keys:
        while out[k] < minimum:
            donor = max(keys, key=lambda j: (out[j], j))
            out[donor] -= 1
            out[k] += 1
    return out


def _random_windows(t: int, rng: np.random.Generator, cfg: SynthConfig, n_windows: int) -> list[tuple[int, int]]:
    """`n_windows` disjoint frame windows covering a Beta-distributed fraction of a video of T snippets."""
    frac = float(rng.beta(*cfg.anomaly_fraction_beta))
    total = max(cfg.min_window_snippets * n_windows, round(frac * t))
    total = min(total, t)
    n_windows = max(1, min(n_windows, total // max(1, cfg.min_window_snippets)))
    # lengths: split total, each at least min_window_snippets
    cuts = sorted(rng.choice(np.arange(1, total), size=n_windows - 1, replace=False)) if n_windows > 1 else []
    lengths = np.diff([0, *cuts, total])
    free = t - total
    # gaps: n_windows + 1 non-negative parts of the free snippets, the inner ones at least 1 where possible
    gaps = rng.multinomial(free, np.ones(n_windows + 1) / (n_windows + 1))
    windows, pos = [], 0
    for i, length in enumerate(lengths):
        pos += int(gaps[i])
        windows.append((pos * SNIPPET_FRAMES, (pos + int(length)) * SNIPPET_FRAMES - 1))
        pos += int(length)
    return windows


def _read_resource(*parts: str) -> list[str]:
    text = RESOURCES.joinpath(*parts).read_text()
    return [line.strip() for line in text.splitlines() if line.strip()]


def _ucf_real_test() -> tuple[list[str], dict[str, tuple[str, int, list[tuple[int, int]]]]]:
    """The real test videos in list order, and per name (class, frame count, frame windows)."""
    order: list[str] = []
    for line in _read_resource("ucf_crime", "UCF_Test_urdmu_percrop.list"):
        name = Path(line).name.rsplit("__", 1)[0]
        if not order or order[-1] != name:
            order.append(name)
    info = {}
    for line in _read_resource("ucf_crime", "UCF_Annotation_urdmu_with_framecounts.txt"):
        tok = line.split()
        name = Path(tok[0]).stem
        cls = tok[2]
        w = [int(x) for x in tok[3:]]
        windows = [(w[i], w[i + 1]) for i in range(0, len(w), 2) if w[i] >= 0]
        info[name] = (cls, int(tok[1]), windows)
    return order, info


def _ucf_real_train() -> dict[str, list[str]]:
    """Real train video names per class ("Normal" for the normal ones), in the official order."""
    out: dict[str, list[str]] = {}
    for line in _read_resource("ucf_crime", "Anomaly_Train.txt"):
        folder, file = line.split("/")
        cls = "Normal" if folder.startswith("Training_Normal") else folder
        out.setdefault(cls, []).append(Path(file).stem)
    return out


def _plan_ucf(cfg: SynthConfig, seed: int) -> dict[str, list[_Video]]:
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    real_train = _ucf_real_train()
    train: list[_Video] = []
    quota = _apportion(cfg.n_train_abnormal, {c: float(n) for c, n in UCF_TRAIN_COUNTS.items()}, minimum=1)
    if cfg.n_train_normal > len(real_train["Normal"]):
        raise ValueError(f"n_train_normal={cfg.n_train_normal} exceeds the {len(real_train['Normal'])} real names")
    mu = math.log(cfg.train_mean_snippets) - cfg.length_sigma**2 / 2  # log-normal with that mean
    for cls in [*UCF_CLASSES, "Normal"]:
        n = cfg.n_train_normal if cls == "Normal" else quota[cls]
        names = real_train[cls]
        if n > len(names):
            raise ValueError(f"{n} train videos of {cls} requested, only {len(names)} real names exist")
        picked = sorted(rng.choice(len(names), size=n, replace=False))
        for i in picked:
            t = _scaled_length(float(rng.lognormal(mu, cfg.length_sigma)), cfg)
            folder = "Training_Normal_Videos_Anomaly" if cls == "Normal" else cls
            windows = [] if cls == "Normal" else _random_windows(
                t, rng, cfg, 2 if rng.random() < cfg.multi_window_fraction else 1)
            train.append(_Video(names[i], folder, () if cls == "Normal" else (cls,), t, _frame_count(t, rng),
                                windows, f"dataset/{folder}/"))

    order, info = _ucf_real_test()
    by_class: dict[str, list[str]] = {}
    for name in order:
        by_class.setdefault(info[name][0], []).append(name)
    real_counts = {c: float(len(by_class[c])) for c in UCF_CLASSES}
    if cfg.n_test_abnormal > sum(real_counts.values()) or cfg.n_test_normal > len(by_class["Normal"]):
        raise ValueError(f"UCF test has {int(sum(real_counts.values()))} abnormal and {len(by_class['Normal'])} "
                         f"normal real videos; asked for {cfg.n_test_abnormal} and {cfg.n_test_normal}")
    tquota = _apportion(cfg.n_test_abnormal, real_counts, minimum=1 if cfg.n_test_abnormal >= 13 else 0)
    for c in UCF_CLASSES:  # a class with fewer real videos than its quota passes the rest on
        while tquota[c] > len(by_class[c]):
            tquota[c] -= 1
            spare = max((k for k in UCF_CLASSES if tquota[k] < len(by_class[k])),
                        key=lambda k: real_counts[k] - tquota[k])
            tquota[spare] += 1
    chosen: set[str] = set()
    # at least round(16/140 of the abnormal test videos), and one, have two windows (REFERENCE §6)
    multi = [n for n in order if len(info[n][2]) > 1]
    want_multi = max(1, round(cfg.n_test_abnormal * len(multi) / 140)) if cfg.n_test_abnormal else 0
    for i in rng.permutation(len(multi)):
        name = multi[i]
        cls = info[name][0]
        if want_multi and sum(1 for n in chosen if info[n][0] == cls) < tquota[cls]:
            chosen.add(name)
            want_multi -= 1
    for cls in [*UCF_CLASSES, "Normal"]:
        need = (cfg.n_test_normal if cls == "Normal" else tquota[cls]) - sum(1 for n in chosen if info[n][0] == cls)
        rest = [n for n in by_class[cls] if n not in chosen]
        chosen.update(rest[i] for i in rng.choice(len(rest), size=need, replace=False))
    test: list[_Video] = []
    for name in order:  # the real list order: abnormal class-alphabetical, then normal
        if name not in chosen:
            continue
        cls, n_real, real_windows = info[name]
        t_real = _deepmil_snippets(n_real)
        t = _scaled_length(t_real, cfg)
        n_frames = n_real if t == t_real else _frame_count(t, rng)
        windows = []
        for s, e in real_windows:
            # proportional rescaling, then at least min_window_snippets and inside [0, 16 T)
            s2 = math.floor(s * t / t_real)
            e2 = math.ceil((e + 1) * t / t_real) - 1
            short = cfg.min_window_snippets * SNIPPET_FRAMES - (e2 - s2 + 1)
            if short > 0:
                s2, e2 = s2 - short // 2, e2 + short - short // 2
            lo, hi = 0, SNIPPET_FRAMES * t - 1
            if s2 < lo:
                s2, e2 = lo, e2 + lo - s2
            if e2 > hi:
                s2, e2 = max(lo, s2 - (e2 - hi)), hi
            windows.append((s2, e2))
        folder = "Testing_Normal_Videos_Anomaly" if cls == "Normal" else cls
        test.append(_Video(name, folder, () if cls == "Normal" else (cls,), t, n_frames, windows,
                           f"dataset/{folder}/"))
    return {"train": train, "test": test}


def _plan_xd(cfg: SynthConfig, seed: int) -> dict[str, list[_Video]]:
    rng = np.random.default_rng(np.random.SeedSequence([seed, 2]))
    mu = math.log(cfg.xd_mean_snippets) - cfg.length_sigma**2 / 2
    codes = sorted(XD_CODES)
    weights = np.array([XD_CODE_WEIGHTS[c] for c in codes])
    plan: dict[str, list[_Video]] = {}
    movie = 0
    for split, n_abn, n_norm in (("train", cfg.n_train_abnormal, cfg.n_train_normal),
                                 ("test", cfg.n_test_abnormal, cfg.n_test_normal)):
        # every code appears at least once among the abnormal videos when there are enough of them
        first = [codes[i % len(codes)] for i in range(min(n_abn, len(codes)))]
        videos = []
        for i in range(n_abn + n_norm):
            t = _scaled_length(float(rng.lognormal(mu, cfg.length_sigma)), cfg)
            movie += 1
            start = int(rng.integers(0, 2 * 3600))
            end = start + max(1, round(SNIPPET_FRAMES * t / 24))  # 24 fps
            stamp = "#" + "_".join(f"{s // 3600:02d}-{s % 3600 // 60:02d}-{s % 60:02d}" for s in (start, end))
            if i < n_abn:
                primary = first[i] if i < len(first) else codes[int(rng.choice(len(codes), p=weights / weights.sum()))]
                labels = [primary]
                if rng.random() < cfg.xd_extra_label_fraction:
                    other = [c for c in codes if c != primary]
                    labels.append(other[int(rng.integers(len(other)))])
                label = "-".join(labels + ["0"] * (3 - len(labels)))
                n_windows = 1 + int(rng.poisson(1.0))
                windows = _random_windows(t, rng, cfg, n_windows)
                classes = tuple(sorted(XD_CODES[c] for c in labels))
            else:
                label, windows, classes = "A", [], ()
            name = f"Synth.Movie.{movie:03d}__{stamp}_label_{label}"
            videos.append(_Video(name, split, classes, t, _frame_count(t, rng), windows))
        plan[split] = videos
    return plan


# ----------------------------------------------------------------------------------------------------
# Generation: the latent path of one video and its crops
# ----------------------------------------------------------------------------------------------------

@dataclass
class _World:
    """The fixed parts shared by all videos of a dataset: feature extractor and directions."""

    projection: np.ndarray   # [K, D]
    bias: np.ndarray         # [D]
    motion: np.ndarray       # [K] unit
    signatures: dict[str, np.ndarray]  # class -> [K] unit


def _make_world(cfg: SynthConfig, seed: int, classes: list[str]) -> _World:
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
    return _World(projection, bias, motion, signatures)


def _envelope(t: int, windows: list[tuple[int, int]], ramp: float) -> np.ndarray:
    """Anomaly envelope [T] in [0, 1]: 1 inside each window, linear ramps of `ramp` snippets at its edges."""
    u = np.arange(t) + 0.5  # snippet centres, in snippets
    env = np.zeros(t)
    for s, e in windows:
        s_snip, e_snip = s / SNIPPET_FRAMES, (e + 1) / SNIPPET_FRAMES
        r = max(min(ramp, (e_snip - s_snip) / 2), 1e-6)
        env = np.maximum(env, np.clip(np.minimum(u - s_snip, e_snip - u) / r, 0.0, 1.0))
    return env


def _latent_path(video: _Video, world: _World, cfg: SynthConfig, rng: np.random.Generator) -> np.ndarray:
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


def _video_features(video: _Video, world: _World, cfg: SynthConfig, rng: np.random.Generator) -> np.ndarray:
    """Features [C, T, D] float32 of one video."""
    z = _latent_path(video, world, cfg, rng)                      # [T, K]
    h = world.bias + z @ world.projection                         # [T, D]
    offsets = rng.normal(0.0, cfg.crop_offset_std, size=(cfg.n_crops, 1, cfg.feature_dim))
    noise = rng.normal(0.0, cfg.crop_noise_std, size=(cfg.n_crops, *h.shape))
    return np.logaddexp(0.0, h[None] + offsets + noise).astype(np.float32)  # softplus, [C, T, D]


# ----------------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------------

def _metadata(cfg: SynthConfig, plan: dict[str, list[_Video]], profile: str, seed: int, dataset: str) -> dict:
    counts = {}
    for split, videos in plan.items():
        counts[split] = {
            "videos": len(videos),
            "abnormal": sum(1 for v in videos if v.classes),
            "normal": sum(1 for v in videos if not v.classes),
            "snippets": sum(v.n_snippets for v in videos),
            "multi_window": sum(1 for v in videos if len(v.windows) > 1),
        }
    return {
        "format": "gsmoe-synthetic",
        "generator_version": GENERATOR_VERSION,
        "dataset": dataset,
        "layout": "ucf-percrop" if dataset == "ucf-crime" else "xd-percrop",
        "profile": profile,
        "seed": seed,
        "config": asdict(cfg),
        "counts": counts,
    }


def _estimated_bytes(cfg: SynthConfig, plan: dict[str, list[_Video]]) -> int:
    snippets = sum(v.n_snippets for videos in plan.values() for v in videos)
    n_files = sum(len(videos) for videos in plan.values()) * cfg.n_crops
    return snippets * cfg.n_crops * cfg.feature_dim * 4 + n_files * 128  # + the .npy headers


def _write_text_files(tmp: Path, plan: dict[str, list[_Video]], dataset: str, n_crops: int) -> None:
    if dataset == "ucf-crime":
        for split, fname in (("train", "UCF_Train.list"), ("test", "UCF_Test.list")):
            lines = [f"{v.list_prefix}{v.name}__{c}.npy" for v in plan[split] for c in range(n_crops)]
            (tmp / fname).write_text("\n".join(lines) + "\n")
        ann = []
        for v in plan["test"]:
            cls = v.classes[0] if v.classes else "Normal"
            w = [x for s, e in v.windows for x in (s, e)]
            w += [-1] * (4 - len(w))
            ann.append(f"{v.folder}/{v.name}.mp4 {v.n_frames} {cls} " + " ".join(map(str, w)))
        (tmp / "UCF_Annotation.txt").write_text("\n".join(ann) + "\n")
    else:
        for split, fname in (("train", "XD_Train.list"), ("test", "XD_Test.list")):
            lines = [f"{v.name}__{c}.npy" for v in plan[split] for c in range(n_crops)]
            (tmp / fname).write_text("\n".join(lines) + "\n")
        ann = [f"{v.name} " + " ".join(f"{s} {e}" for s, e in v.windows) for v in plan["test"] if v.classes]
        (tmp / "annotations.txt").write_text("\n".join(ann) + "\n")


def synthesize(out: str | os.PathLike, profile: str = "quick", seed: int = 0, dataset: str = "ucf-crime",
               force: bool = False, verbose: bool = False, **overrides: Any) -> Path:
    """Write the synthetic dataset to `out` and return its path.

    `overrides` are SynthConfig fields (e.g. n_crops=3, feature_dim=64). If `out` already holds the same
    dataset (same metadata) nothing is written; a different gsmoe dataset there is replaced only with
    `force`; a non-empty folder that is not a gsmoe dataset is never touched.
    """
    out = Path(out)
    cfg = make_config(profile, dataset, **overrides)
    plan = _plan_ucf(cfg, seed) if dataset == "ucf-crime" else _plan_xd(cfg, seed)
    meta = _metadata(cfg, plan, profile, seed, dataset)

    if out.exists():
        existing = out / METADATA_FILE
        if existing.is_file():
            try:
                same = json.loads(existing.read_text()) == json.loads(json.dumps(runs._to_jsonable(meta)))
            except json.JSONDecodeError:
                same = False
            if same:
                if verbose:
                    print(f"{out}: already holds this synthetic dataset; nothing to do")
                return out
            if not force:
                raise FileExistsError(f"{out}: holds a different synthetic dataset ({existing}); "
                                      "use --force to replace it")
        elif not out.is_dir() or any(out.iterdir()):
            raise FileExistsError(f"{out}: exists and is not a gsmoe synthetic dataset (no {METADATA_FILE}); "
                                  "refusing to replace it; remove it or choose another --out")

    size = _estimated_bytes(cfg, plan)
    if verbose:
        n = sum(len(v) for v in plan.values())
        print(f"writing {dataset} synthetic dataset ({profile}, seed {seed}): {n} videos x {cfg.n_crops} crops, "
              f"D={cfg.feature_dim}, estimated {size / 1e6:,.0f} MB to {out}")
    out.parent.mkdir(parents=True, exist_ok=True)
    if shutil.disk_usage(out.parent).free < size * 1.05:
        raise OSError(f"{out.parent}: not enough free disk space for an estimated {size / 1e6:,.0f} MB")

    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        runs.write_json(tmp / METADATA_FILE, meta)
        _write_text_files(tmp, plan, dataset, cfg.n_crops)
        world = _make_world(cfg, seed, UCF_CLASSES if dataset == "ucf-crime" else sorted(XD_CODES.values()))
        from tqdm.auto import tqdm

        jobs = [(split_id, i, v) for split_id, split in enumerate(("train", "test")) for i, v in enumerate(plan[split])]
        for split_id, i, video in tqdm(jobs, desc="synth videos", unit="video", disable=not verbose):
            rng = np.random.default_rng(np.random.SeedSequence([seed, 3, split_id, i]))
            x = _video_features(video, world, cfg, rng)  # [C, T, D]
            folder = tmp / "features" / video.folder
            folder.mkdir(parents=True, exist_ok=True)
            for c in range(cfg.n_crops):
                np.save(folder / f"{video.name}__{c}.npy", x[c])
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old)
        else:
            os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out


# ----------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path, help="dataset folder to write")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="quick",
                        help="tiny (tests), quick (CPU default, ~250 MB), full (real counts and lengths; tens of GB)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dataset", choices=["ucf-crime", "xd-violence"], default="ucf-crime")
    parser.add_argument("--crops", type=int, default=None, help="crops per video (default: the profile's)")
    parser.add_argument("--feature-dim", type=int, default=None, help="feature dimension D (default 1024)")
    parser.add_argument("--force", action="store_true", help="replace a different synthetic dataset at --out")


def run(args: argparse.Namespace) -> int:
    # Errors raise: cli.main reports them in one line (exit 2).
    synthesize(args.out, profile=args.profile, seed=args.seed, dataset=args.dataset, force=args.force,
               verbose=True, n_crops=args.crops, feature_dim=args.feature_dim)
    return 0
