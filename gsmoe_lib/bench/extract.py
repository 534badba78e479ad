"""`gsmoe bench extract`: how fast `gsmoe extract` turns a video into features, which part limits it, and its
peak host memory on a long video.

Throughput, in snippets per second, on a generated 320 x 240 clip (`extract.demo`), for each recipe asked for
(default: 10 crops, `urdmu-10crop`, and `centre`):

    decode     decoding + resizing + cropping alone (the background thread's work, `decode.Snippets`)
    model      the backbone alone on those crops (`features.clip_features`)
    together   the whole `features.extract_video`: decoding on its thread while the model runs

`together / min(decode, model)` says how well the two overlap (1.0: the slower part alone sets the pace).

Memory: the peak resident host memory of `extract_video` on a generated `--memory-minutes` video (default
30 minutes at 25 frames/s, 320 x 240, 10 crops), minus the resident memory before it (the process, torch and
the model). The model there is a stand-in with the backbone's output width (a mean over each clip, projected
to D): a real I3D forward pass on a CPU would take hours for 28,000 clips, and its activations are the
model's memory, not the pipeline's. What it measures is what grows with the video: the decode queue, the
crops of one batch and the features [T, C, D] kept until they are written.

    gsmoe bench extract --weights rgb_imagenet.pt [--backbone i3d-inception] [--device cpu] [--json OUT.json]
    gsmoe bench extract                   # random weights (speed does not depend on the values)
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gsmoe_lib.bench.meters import host_peak_mb
from gsmoe_lib.host_memory import proc_status_mb, release_freed_memory


class PoolingStandIn(nn.Module):
    """A model-shaped stand-in for the memory measurement: clips [B, 3, 16, 224, 224] -> [B, D], almost free."""

    def __init__(self, feature_dim: int) -> None:
        super().__init__()
        self.register_buffer("projection", torch.randn(3, feature_dim))

    def features(self, clips: torch.Tensor) -> torch.Tensor:
        return clips.mean(dim=(2, 3, 4)) @ self.projection


def _load(weights: str | None, backbone: str, device: str, tmp: Path) -> nn.Module:
    from gsmoe_lib.extract.weights import KEY_SETS, load_backbone, random_weights

    if not weights:
        key_set = next(k.name for k in KEY_SETS.values() if k.backbone == backbone)
        weights = str(tmp / "random.pt")
        torch.save(random_weights(backbone, key_set), weights)
    return load_backbone(weights, backbone).model.to(device)


def measure_speed(video: Path, model: nn.Module, recipe_name: str, device: str, batch: int) -> dict[str, Any]:
    """Snippets/s of the three parts on `video`; wall and CPU seconds (CPU: all threads of this process)."""
    from gsmoe_lib.extract.decode import Snippets
    from gsmoe_lib.extract.features import clip_features, crop_batches, extract_video
    from gsmoe_lib.extract.recipes import get_recipe

    recipe = get_recipe(recipe_name)
    per_pass = max(1, batch // recipe.n_crops)  # snippets per forward pass, as extract_video groups them

    def timed(work) -> tuple[float, float]:
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        wall0, cpu0 = time.perf_counter(), time.process_time()
        work()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - wall0, time.process_time() - cpu0

    crops: list[np.ndarray] = []
    decode_s = timed(lambda: crops.extend(c for c, _ in crop_batches(Snippets(video, recipe, "floor"), recipe)))
    n = len(crops)
    clip_features(model, np.stack(crops[:per_pass]), recipe, device, batch=batch)  # warm-up at the timed shape

    def model_alone() -> None:
        for start in range(0, n, per_pass):
            clip_features(model, np.stack(crops[start:start + per_pass]), recipe, device, batch=batch)

    model_s = timed(model_alone)
    del crops
    together_s = timed(lambda: extract_video(video, model, recipe, "floor", device, batch=batch))
    parts = {"decode": decode_s, "model": model_s, "together": together_s}
    rates = {k: n / wall for k, (wall, _) in parts.items()}
    slower = min(rates["decode"], rates["model"])
    return {"recipe": recipe_name, "crops": recipe.n_crops, "snippets": n, "batch": batch,
            "snippets_per_s": {k: round(v, 3) for k, v in rates.items()},
            "cpu_s_per_snippet": {k: round(cpu / n, 3) for k, (_, cpu) in parts.items()},
            "limit": "model" if rates["model"] < rates["decode"] else "decode",
            "together_over_slower": round(rates["together"] / slower, 3)}


def measure_memory(minutes: float, feature_dim: int, recipe_name: str, tmp: Path, batch: int) -> dict[str, Any]:
    from gsmoe_lib.extract.demo import write_demo_video
    from gsmoe_lib.extract.features import extract_video
    from gsmoe_lib.extract.recipes import get_recipe

    n_frames = int(round(minutes * 60 * 25))
    t0 = time.perf_counter()
    video = write_demo_video(tmp / "long.mp4", n_frames, 320, 240, fps=25, noise=False)
    write_s = time.perf_counter() - t0
    model = PoolingStandIn(feature_dim)
    release_freed_memory(0.0)
    reset = _reset_peak()
    before_rss = proc_status_mb("VmRSS") or 0.0
    before_peak = host_peak_mb()
    t0 = time.perf_counter()
    vf = extract_video(video, model, get_recipe(recipe_name), "ceil", batch=batch)
    seconds = time.perf_counter() - t0
    # VmHWM since the reset (Linux), else the process's lifetime peak (an upper bound)
    peak = (proc_status_mb("VmHWM") if reset else None) or host_peak_mb()
    return {"minutes": minutes, "frames": n_frames, "video_mb": round(video.stat().st_size / 2**20, 1),
            "write_video_s": round(write_s, 1), "recipe": recipe_name, "snippets": int(vf.features.shape[0]),
            "features_mb": round(vf.features.nbytes / 2**20, 1), "seconds": round(seconds, 1),
            "rss_before_mb": round(before_rss, 1), "peak_mb": round(peak, 1),
            "peak_beyond_before_mb": round(peak - max(before_rss, 0.0), 1),
            "peak_before_mb": round(before_peak, 1), "peak_reset": reset}


def _reset_peak() -> bool:
    """Reset the kernel's peak resident memory (VmHWM) of this process, so the peak is the measured part's."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", default=None, help="backbone weights (default: random ones; speed is the same)")
    parser.add_argument("--backbone", default="i3d-inception", help="i3d-inception or i3d-r50")
    parser.add_argument("--recipes", default="urdmu-10crop,centre", help="comma-separated recipes to time")
    parser.add_argument("--frames", type=int, default=48, help="frames of the timed clip (16 per snippet)")
    parser.add_argument("--batch", type=int, default=10, help="clips per forward pass")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--memory-minutes", type=float, default=30.0,
                        help="length of the generated video of the memory measurement (0: skip it)")
    parser.add_argument("--json", default=None, metavar="FILE", help="also write the figures here")


def run(args: argparse.Namespace) -> int:
    from gsmoe_lib import runs
    from gsmoe_lib.extract.backbones import get_backbone
    from gsmoe_lib.extract.demo import write_demo_video

    out: dict[str, Any] = {"environment": runs.environment_record(device=args.device),
                           "load_average": list(os.getloadavg()), "speed": [], "memory": None}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        clip = write_demo_video(tmp / "clip.mp4", args.frames, 320, 240)
        model = _load(args.weights, args.backbone, args.device, tmp)
        for recipe in [r for r in args.recipes.split(",") if r]:
            row = measure_speed(clip, model, recipe, args.device, args.batch)
            out["speed"].append(row)
            print(json.dumps(row))
        del model
        if args.memory_minutes > 0:
            out["memory"] = measure_memory(args.memory_minutes, get_backbone(args.backbone).feature_dim,
                                           "urdmu-10crop", tmp, args.batch)
            print(json.dumps({"memory": out["memory"]}))
    out["load_average_after"] = list(os.getloadavg())
    if args.json:
        runs.write_json(args.json, out)
    return 0
