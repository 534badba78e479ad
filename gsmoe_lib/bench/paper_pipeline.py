"""`gsmoe bench paper-pipeline`: the whole GS-MoE pipeline at paper-scale training settings, end to end, timed.

    gsmoe bench paper-pipeline --device cuda --precision tf32 --json OUT.json
    gsmoe bench paper-pipeline --small --json OUT.json          # tiny data, 6 steps a stage, the CPU, seconds

What runs: a synthetic dataset is written (`gsmoe_lib.data.synthetic`, profile `--data-profile`, default
"quick": 300 training and 100 test videos, 2 crops; "full" is UCF-Crime's 1,610 + 290 videos with 10 crops,
about 35 GB, which a short GPU lease cannot write, so `--crops` can shrink it), loaded once
(`training.data.load_data`: every training video pooled to 200 segments, on the device), then the four stages
(encoder, TGS fine-tuning, experts, gate) are trained and evaluated on the test split with the training
profile `--train-profile` (default "paper": 3000 UR-DMU iterations at 64 + 64, then 1000 iterations each of
TGS, the 13 experts and the gate, at 64 + 64 per expert). Each stage's time is its training and its test-set
evaluation, timed as `gsmoe bench precision` times them (`precision.measure_one`, without the reference
stage). The JSON holds the machine, the settings, the seconds of writing and loading the data, of every stage
and of the whole (load + stages: "end to end", the figure against the 3-minute target; writing the synthetic
data stands for feature extraction and is not counted), and each stage's AUC / AP in percent.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch

from gsmoe_lib import runs
from gsmoe_lib.bench.precision import PRECISIONS, measure_one
from gsmoe_lib.data.synthetic import synthesize
from gsmoe_lib.training.config import PROFILES, config_for
from gsmoe_lib.training.data import load_data
from gsmoe_lib.training.stages import STAGES

TARGET_S = 180.0  # target: the paper-scale pipeline under 3 minutes on one H100
# --small: a few steps of each stage on the tiny data; it checks that the command runs, not what stages learn.
SMALL_SCHEDULE = {stage: {"iterations": 6, "checkpoint_every": 3} for stage in STAGES}


def run_pipeline(work: Path, device: str, data_profile: str, train_profile: str, precision_name: str,
                 crops: int | None = None, seed: int = 0, overrides: dict[str, Any] | None = None
                 ) -> dict[str, Any]:
    """Write the data, load it, train and evaluate the four stages (the training profile with nested config
    `overrides` on top); the JSON-ready record."""
    if precision_name == "tf32" and torch.device(device).type != "cuda":
        raise ValueError(f"precision tf32 needs a CUDA device, got {device!r}")
    t0 = time.perf_counter()
    data_root = synthesize(work / "data", profile=data_profile, seed=0, n_crops=crops)
    synth_s = time.perf_counter() - t0
    cfg = config_for(train_profile, str(data_root), device=device, seed=seed, overrides=overrides)
    t0 = time.perf_counter()
    data = load_data(cfg.data, cfg.device, progress=False)
    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.synchronize()
    load_s = time.perf_counter() - t0
    run_dir = work / f"run-{train_profile}-{precision_name}-seed{seed}"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    stages = measure_one(cfg, run_dir, precision_name, data, references=())
    stage_s = sum(s["seconds"] for s in stages.values())
    loaded = [name for name, s in stages.items() if s["loaded"]]
    return {
        "environment": runs.environment_record(seed, device),
        "settings": {"data_profile": data_profile, "crops": crops, "train_profile": train_profile,
                     "precision": precision_name, "seed": seed, "device": device,
                     "train_samples": int(data.train.labels.numel()), "test_videos": len(data.test.videos),
                     "iterations": {s: getattr(cfg, s).iterations for s in STAGES},
                     "batch": {s: getattr(cfg, s).batch_normal + getattr(cfg, s).batch_abnormal
                               for s in STAGES}},
        "synth_s": synth_s, "load_s": load_s, "stages": stages,
        "end_to_end_s": load_s + stage_s, "target_s": TARGET_S,
        "stages_loaded_not_trained": loaded,  # a rerun in the same folder loads finished stages: not a timing
        "device_peak_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--precision", choices=PRECISIONS, default="tf32",
                        help="none (fp32), tf32 (CUDA) or bf16 autocast, as gsmoe bench precision")
    parser.add_argument("--data-profile", choices=("tiny", "quick", "full"), default="quick")
    parser.add_argument("--crops", type=int, default=None, help="crops per video (default: the data profile's)")
    parser.add_argument("--train-profile", choices=tuple(PROFILES), default="paper")
    parser.add_argument("--work", default="/tmp/gsmoe-paper-pipeline", help="data and run folders")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--small", action="store_true",
                        help="tiny data, 6 steps per stage, the CPU, fp32: checks the command in seconds")
    parser.add_argument("--json", default=None, help="write the record here")


def run(args: argparse.Namespace) -> int:
    if args.small:
        args.device, args.precision, args.data_profile, args.train_profile = "cpu", "none", "tiny", "tiny"
    if args.threads:
        torch.set_num_threads(args.threads)
    record = run_pipeline(Path(args.work), args.device, args.data_profile, args.train_profile, args.precision,
                          args.crops, overrides=SMALL_SCHEDULE if args.small else None)
    for name, s in record["stages"].items():
        print(f"{name:8s} {s['seconds']:8.1f} s  AUC {s['auc']:6.2f}  AP {s['ap']:6.2f}"
              + ("  (loaded, not trained)" if s["loaded"] else ""))
    print(f"data written in {record['synth_s']:.1f} s, loaded in {record['load_s']:.1f} s; end to end "
          f"(load + four stages) {record['end_to_end_s']:.1f} s against the target {TARGET_S:.0f} s")
    if args.json:
        runs.write_json(args.json, record)
        print(f"wrote {args.json}")
    return 0
