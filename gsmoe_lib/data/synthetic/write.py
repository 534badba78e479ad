"""Writing a synthetic dataset (`synthesize`) and its command line, `gsmoe data synth`.

The dataset folder holds what a real one holds, in the real layouts (`data.layouts`): the list files
(UCF_Train.list / UCF_Test.list with the UR-DMU per-crop names, or XD_Train.list / XD_Test.list), the test
annotation (UCF_Annotation.txt with frame counts, or annotations.txt), features/<folder>/<video>__<c>.npy
([T, D] float32 per crop), and gsmoe_dataset.json (`layouts.DATASET_FILE`: generator version, dataset,
layout, profile, seed, the whole SynthConfig and the counts), which is how a rerun recognises the dataset.

Writing is atomic: everything goes to a temporary folder beside DIR, renamed to DIR at the end. Files are
byte-identical for the same seed and config (one random stream per video, keyed by split and index).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import numpy as np

from gsmoe_lib import runs
from gsmoe_lib.data.layouts import DATASET_FILE
from gsmoe_lib.data.lists import UCF_CLASSES, XD_CLASSES
from gsmoe_lib.data.synthetic.config import ANOMALY_MAGNITUDES, SYNTH_PROFILES, SynthConfig, synth_config
from gsmoe_lib.data.synthetic.features import make_world, video_features, video_rng
from gsmoe_lib.data.synthetic.plan import PlannedVideo, plan_dataset

# 1: the first generator (its anomalies raise the features' norm: `anomaly_magnitude="free"` writes it again);
# 2: anomalies magnitude-matched, magnitude bursts, the "world" key (features.py steps 7-8; drift.py).
GENERATOR_VERSION = 2

# The synthetic worlds (`gsmoe data synth --world`): "default" (features.py, what every default is chosen on)
# and "drift" (drift.py, written apart from it: used only to report, never to choose a default).
WORLDS = ("default", "drift")


def _metadata(cfg: SynthConfig, plan: dict[str, list[PlannedVideo]], profile: str, seed: int, dataset: str,
              world: str = "default", world_config: dict | None = None) -> dict:
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
        "world": world,
        **({"world_config": world_config} if world_config is not None else {}),
        "counts": counts,
    }


def _estimated_bytes(cfg: SynthConfig, plan: dict[str, list[PlannedVideo]]) -> int:
    snippets = sum(v.n_snippets for videos in plan.values() for v in videos)
    n_files = sum(len(videos) for videos in plan.values()) * cfg.n_crops
    return snippets * cfg.n_crops * cfg.feature_dim * 4 + n_files * 128  # + the .npy headers


def _write_text_files(tmp: Path, plan: dict[str, list[PlannedVideo]], dataset: str, n_crops: int) -> None:
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


def _feature_maker(world: str, cfg: SynthConfig, seed: int, dataset: str, profile: str,
                   world_overrides: dict[str, Any] | None) -> tuple[Callable[[PlannedVideo, int, int], np.ndarray],
                                                                    dict | None]:
    """(features of (video, split_id, index) -> [C, T, D], the world's own config for the metadata or None)."""
    classes = list(UCF_CLASSES if dataset == "ucf-crime" else XD_CLASSES)
    if world == "default":
        if world_overrides:
            raise ValueError("the default world takes SynthConfig overrides only, not world_overrides")
        made = make_world(cfg, seed, classes)
        return (lambda video, split_id, i: video_features(video, made, cfg, video_rng(seed, split_id, i))), None
    if world == "drift":
        from gsmoe_lib.data.synthetic import drift

        dcfg = drift.drift_config(profile, **(world_overrides or {}))
        made_drift = drift.make_drift_world(dcfg, cfg.feature_dim, seed, classes)
        return (lambda video, split_id, i: drift.drift_video_features(
            video, made_drift, cfg, dcfg, drift.drift_video_rng(seed, split_id, i))), asdict(dcfg)
    raise ValueError(f"unknown world {world!r}; expected one of {', '.join(WORLDS)}")


def synthesize(out: str | os.PathLike, profile: str = "quick", seed: int = 0, dataset: str = "ucf-crime",
               force: bool = False, verbose: bool = False, world: str = "default",
               world_overrides: dict[str, Any] | None = None, **overrides: Any) -> Path:
    """Write the synthetic dataset to `out` and return its path.

    `world`: "default" (features.py) or "drift" (drift.py: for reporting only, never for choosing a
    default). `overrides` are SynthConfig fields (e.g. n_crops=3, feature_dim=64); `world_overrides` the
    drift world's DriftConfig fields. If `out` already holds the same dataset (same metadata) nothing is
    written; a different gsmoe dataset there is replaced only with `force`; a non-empty folder that is not a
    gsmoe dataset is never touched.
    """
    out = Path(out)
    cfg = synth_config(profile, dataset, **overrides)
    plan = plan_dataset(cfg, seed, dataset)
    features, world_config = _feature_maker(world, cfg, seed, dataset, profile, world_overrides)
    meta = _metadata(cfg, plan, profile, seed, dataset, world, world_config)

    if out.exists():
        existing = out / DATASET_FILE
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
            raise FileExistsError(f"{out}: exists and is not a gsmoe synthetic dataset (no {DATASET_FILE}); "
                                  "refusing to replace it; remove it or choose another --out")

    size = _estimated_bytes(cfg, plan)
    if verbose:
        n = sum(len(v) for v in plan.values())
        print(f"writing {dataset} synthetic dataset ({world} world, {profile}, seed {seed}): {n} videos x "
              f"{cfg.n_crops} crops, "
              f"D={cfg.feature_dim}, estimated {size / 1e6:,.0f} MB to {out}")
    out.parent.mkdir(parents=True, exist_ok=True)
    if shutil.disk_usage(out.parent).free < size * 1.05:
        raise OSError(f"{out.parent}: not enough free disk space for an estimated {size / 1e6:,.0f} MB")

    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        runs.write_json(tmp / DATASET_FILE, meta)
        _write_text_files(tmp, plan, dataset, cfg.n_crops)
        from tqdm.auto import tqdm

        jobs = [(split_id, i, v) for split_id, split in enumerate(("train", "test")) for i, v in enumerate(plan[split])]
        for split_id, i, video in tqdm(jobs, desc="synth videos", unit="video", disable=not verbose):
            x = features(video, split_id, i)  # [C, T, D]
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
    parser.add_argument("--profile", choices=sorted(SYNTH_PROFILES), default="quick",
                        help="synthetic profile (SYNTH_PROFILES; not the training profiles): tiny (tests), "
                             "quick (CPU default, ~250 MB), full (real counts and lengths; tens of GB)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dataset", choices=["ucf-crime", "xd-violence"], default="ucf-crime")
    parser.add_argument("--crops", type=int, default=None, help="crops per video (default: the profile's)")
    parser.add_argument("--feature-dim", type=int, default=None, help="feature dimension D (default 1024)")
    parser.add_argument("--world", choices=WORLDS, default="default",
                        help="default: the generator every default is chosen on; drift: a second world written apart "
                             "from it (gradual mixing toward class prototypes, scene cuts and camera drift, a class "
                             "hierarchy), used only to report (gsmoe bench generalise), never to choose a default")
    parser.add_argument("--anomaly-magnitude", choices=ANOMALY_MAGNITUDES, default=None,
                        help="default world: 'matched' (the default: an anomaly changes the features' direction, not "
                             "their norm) or 'free' (generator version 1: the norm alone separates anomalies)")
    parser.add_argument("--force", action="store_true", help="replace a different synthetic dataset at --out")


def run(args: argparse.Namespace) -> int:
    # Errors raise: cli.main reports them in one line (exit 2).
    if args.world != "default" and args.anomaly_magnitude is not None:
        raise ValueError("--anomaly-magnitude is a knob of the default world only")
    out = synthesize(args.out, profile=args.profile, seed=args.seed, dataset=args.dataset, force=args.force,
                     verbose=True, world=args.world, n_crops=args.crops, feature_dim=args.feature_dim,
                     anomaly_magnitude=args.anomaly_magnitude)
    from gsmoe_lib.data.magnitude import describe, magnitude_metrics

    print(f"{out}: " + describe(magnitude_metrics(out, args.dataset)))
    return 0
