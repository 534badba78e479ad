"""The plan of a synthetic dataset: every video's name, label, classes, length and anomaly windows.

Planning is cheap and decides the whole dataset's shape before any feature is drawn (`features.py`), and
is what the list and annotation files are written from (`write.py`). Real names and lengths come from the
packaged official lists (data/resources/), so a synthetic UCF test split looks like a subset of the real one.

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

(Steps 1-2 and 5-6 of the generative model are in `features.py`.) Abnormal train videos follow the real
per-class proportions (`lists.UCF_TRAIN_COUNTS`, at least one per class). The XD lengths are our choice (no
frame counts are published with the lists): a log-normal around `xd_mean_snippets` = 150. Each plan draws
from its own random stream (UCF: SeedSequence([seed, 1]), XD: [seed, 2]).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gsmoe_lib.data.ground_truth import SNIPPET_FRAMES
from gsmoe_lib.data.layouts import RESOURCES  # the packaged official lists (real names, lengths)
from gsmoe_lib.data.lists import UCF_CLASSES, UCF_TRAIN_COUNTS, XD_CODES
from gsmoe_lib.data.synthetic.config import SynthConfig

# XD train label proportions: our choice (roughly the real mix, fighting and riots most common).
XD_CODE_WEIGHTS = {"B1": 0.26, "B2": 0.2, "B4": 0.17, "B5": 0.07, "B6": 0.1, "G": 0.2}


@dataclass
class PlannedVideo:
    """One video to generate: its name, where its crops go, and what the generator puts in it."""

    name: str                        # without crop suffix, e.g. Abuse028_x264
    folder: str                      # feature sub-folder under features/
    classes: tuple[str, ...]         # () for normal
    n_snippets: int                  # T
    n_frames: int
    windows: list[tuple[int, int]]   # frame windows [s, e] inclusive, within [0, 16 T)
    list_prefix: str = ""            # UCF: "dataset/<Class>/"


def plan_dataset(cfg: SynthConfig, seed: int, dataset: str) -> dict[str, list[PlannedVideo]]:
    """{"train": [...], "test": [...]}: the videos of each split, in the order of the written lists."""
    return plan_ucf(cfg, seed) if dataset == "ucf-crime" else plan_xd(cfg, seed)


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


def ucf_real_test() -> tuple[list[str], dict[str, tuple[str, int, list[tuple[int, int]]]]]:
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


def plan_ucf(cfg: SynthConfig, seed: int) -> dict[str, list[PlannedVideo]]:
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    real_train = _ucf_real_train()
    train: list[PlannedVideo] = []
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
            train.append(PlannedVideo(names[i], folder, () if cls == "Normal" else (cls,), t, _frame_count(t, rng),
                                windows, f"dataset/{folder}/"))

    order, info = ucf_real_test()
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
    test: list[PlannedVideo] = []
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
        test.append(PlannedVideo(name, folder, () if cls == "Normal" else (cls,), t, n_frames, windows,
                           f"dataset/{folder}/"))
    return {"train": train, "test": test}


def plan_xd(cfg: SynthConfig, seed: int) -> dict[str, list[PlannedVideo]]:
    rng = np.random.default_rng(np.random.SeedSequence([seed, 2]))
    mu = math.log(cfg.xd_mean_snippets) - cfg.length_sigma**2 / 2
    codes = sorted(XD_CODES)
    weights = np.array([XD_CODE_WEIGHTS[c] for c in codes])
    splits: dict[str, list[PlannedVideo]] = {}
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
            videos.append(PlannedVideo(name, split, classes, t, _frame_count(t, rng), windows))
        splits[split] = videos
    return splits

