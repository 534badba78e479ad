"""Peak host (and device) memory of scoring, the `memory` stage of `gsmoe bench speed`.

Each measurement runs in a fresh python process (`python -m gsmoe_lib.bench.memory SPEC`, `memory_probe`):
a process that has already timed other stages would report their peak. The probe scores a memory-mapped
test set (`scoring.TestSet`), the whole set or its longest video (6,749 snippets at paper size), with one
mode, and reports the resident memory once the model is built, the peak while scoring, and the difference,
"beyond"; on CUDA also torch.cuda.max_memory_allocated.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import torch

from gsmoe_lib import runs
from gsmoe_lib.bench.meters import device_peak_mb, host_peak_mb
from gsmoe_lib.bench.scoring import TestSet, score_test_set, scoring_functions
from gsmoe_lib.bench.sizes import BenchSizes
from gsmoe_lib.host_memory import proc_status_mb
from gsmoe_lib.paths import PROJECT_ROOT

MEMORY_MODES = ("urdmu_all_crops", "gsmoe")  # measured by default (any of SCORE_MODES can be asked for)
MEMORY_SETS = ("test_set", "longest_video")


def _rss_mb() -> float:
    """Resident memory of this process now (Linux /proc; elsewhere the peak so far, an upper bound)."""
    now = proc_status_mb("VmRSS")
    return host_peak_mb() if now is None else now


def _reset_peak_rss() -> bool:
    """Start a new peak (VmHWM) from the current resident memory (Linux >= 4.0); False where impossible.

    Why not getrusage alone: after fork + exec a child's ru_maxrss starts at its parent's resident memory,
    so a probe started by a large process would report the parent's size.
    """
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return proc_status_mb("VmHWM") is not None
    except OSError:
        return False


def memory_probe(spec: dict[str, Any]) -> dict[str, Any]:
    """Score a memory-mapped test set with one mode in THIS process and report its memory (run it in a fresh one).

    spec: mode, folder (a `TestSet.synthetic(..., "mmap")` folder), videos (indices or None), small, device,
    amp, seed, threads, release_memory (default True: freed memory goes back to the system between videos,
    `host_memory`; False shows what the allocator keeps without it).
    Host: the resident memory once the model is built (`baseline_mb`), the peak while scoring (`peak_mb`: VmHWM
    reset at the baseline, Linux; elsewhere getrusage's, which includes everything before), and `beyond_mb` =
    peak - baseline, the memory scoring needs beyond the process and the model. The
    features are read one video at a time, so the video in hand (its copy, and its file pages while they are
    mapped) is part of beyond_mb.
    Device: torch.cuda.max_memory_allocated during scoring, and its baseline (the weights).
    """
    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    device = torch.device(spec["device"])
    runs.seed_everything(int(spec.get("seed", 0)))
    sizes = BenchSizes.small() if spec.get("small") else BenchSizes()
    fn = scoring_functions(sizes, device, spec.get("amp", "none"))[spec["mode"]]
    videos = TestSet.open(spec["folder"], spec.get("videos"))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        device_base = torch.cuda.memory_allocated(device) / 2**20
        torch.cuda.reset_peak_memory_stats(device)
    baseline, peak_before = _rss_mb(), host_peak_mb()
    fresh_peak = _reset_peak_rss()
    release = bool(spec.get("release_memory", True))
    _, seconds = score_test_set(fn, videos, device, release)
    peak = proc_status_mb("VmHWM") if fresh_peak else host_peak_mb()
    return {"mode": spec["mode"], "release_memory": release, "videos": len(videos),
            "snippets": sum(videos.lengths), "max_T": max(videos.lengths),
            "baseline_mb": baseline, "peak_mb": peak, "beyond_mb": max(0.0, peak - baseline),
            "peak_source": "VmHWM" if fresh_peak else "getrusage (includes the start-up)",
            "peak_before_scoring_mb": peak_before, "file_pages_after_mb": proc_status_mb("RssFile"),
            "seconds": seconds,
            "device_peak_mb": device_peak_mb(device),
            "device_baseline_mb": device_base if device.type == "cuda" else None}


def bench_memory(sizes: BenchSizes, device: torch.device, amp: str, gen: torch.Generator, seed: int,
                 modes: tuple[str, ...] = MEMORY_MODES, test_set: TestSet | None = None,
                 small: bool = False, release_memory: bool = True) -> dict[str, Any]:
    """Peak memory of scoring the test set and its longest video, per mode, each in a fresh python process."""
    own = test_set is None
    videos = test_set or TestSet.synthetic(sizes, device, gen, "mmap")
    if videos.source != "mmap":
        raise ValueError("the memory stage reads a memory-mapped test set (features 'mmap')")
    longest = max(range(len(videos)), key=lambda i: videos.lengths[i])
    results: dict[str, Any] = {}
    try:
        for mode in modes:
            for which, indices in (("test_set", None), ("longest_video", [longest])):
                spec = {"mode": mode, "folder": str(videos.folder), "videos": indices, "small": small,
                        "device": str(device), "amp": amp, "seed": seed, "threads": torch.get_num_threads(),
                        "release_memory": release_memory}
                cmd = [sys.executable, "-m", "gsmoe_lib.bench.memory", json.dumps(spec)]
                proc = subprocess.run(cmd, capture_output=True, text=True, env=_child_env())
                lines = proc.stdout.strip().splitlines()
                if proc.returncode != 0 or not lines:
                    raise RuntimeError(f"memory probe {mode} on the {which.replace('_', ' ')} failed "
                                       f"(exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
                results[f"memory_{mode}_{which}"] = json.loads(lines[-1]) | {
                    "features_mb": sum(videos.lengths) * sizes.crops * sizes.input_dim * 4 / 2**20
                    if which == "test_set" else videos.lengths[longest] * sizes.crops * sizes.input_dim * 4 / 2**20}
    finally:
        if own:
            videos.close()
    return results


def _child_env() -> dict[str, str]:
    """The environment of a probe: this one, with the project importable whatever the working directory."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(PROJECT_ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


if __name__ == "__main__":  # a child of bench_memory: one measurement, one JSON line on stdout
    print(json.dumps(memory_probe(json.loads(sys.argv[1]))))
