"""`gsmoe bench scoring-options`: the scoring options' effect on a finished run's test metrics and time.

For one trained run (default `runs/reproduce`, seed 0) it scores the test split with the whole GS-MoE four
ways, crops "each" / "mean" (`models.gsmoe`) x fp32 / bf16 autocast, and writes one JSON record (metrics in
percent, seconds, machine, versions) plus a table. The fp32 "each" row is the default the pipeline reports.

    gsmoe bench scoring-options [--run runs/reproduce] [--seed 0] [--device cpu] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch

from gsmoe_lib import runs
from gsmoe_lib.data.layouts import open_dataset
from gsmoe_lib.device import autocast
from gsmoe_lib.evaluate import evaluate_dataset
from gsmoe_lib.inference import GSMoE, resolve_run
from gsmoe_lib.reporting import REPORTED_METRICS
from gsmoe_lib.training.config import config_from_dict, dataset_name

OPTIONS = (("each", "none"), ("mean", "none"), ("each", "bf16"), ("mean", "bf16"))  # (crops, amp)


def measure(run: str, seed: int, device: str) -> dict[str, Any]:
    """Score the run's test split with each of OPTIONS: the JSON-ready record, one row per option."""
    if not Path(run).exists():
        raise FileNotFoundError(f"{run}: no such run folder (run `make reproduce` first)")
    root = resolve_run(run, seed)
    cfg = config_from_dict(runs.read_json(root / "pipeline_config.json"))
    d = cfg.data
    test = open_dataset(d.data_root, dataset_name(d), "test", train_list=d.train_list,
                        test_list=d.test_list, annotations=d.annotations)
    record = {"run": str(root), "environment": runs.environment_record(seed, device), "results": []}
    for crops, amp in OPTIONS:
        detector = GSMoE.from_run(run, device=device, seed=seed, crops=crops)

        def score(x: torch.Tensor, model=detector.model, amp=amp) -> torch.Tensor:
            with autocast(device, amp):
                return model(x).scores.float()

        t0 = time.perf_counter()
        metrics, _ = evaluate_dataset(score, test, device=device, progress=False)
        seconds = time.perf_counter() - t0
        row = {"crops": crops, "amp": amp, "seconds": seconds,
               **{m: 100 * float(metrics[m]) for m in REPORTED_METRICS}}
        record["results"].append(row)
        print(f"crops={crops:4s} amp={amp:4s} {seconds:7.1f} s  "
              + "  ".join(f"{m} {row[m]:.2f}" for m in REPORTED_METRICS), flush=True)
    return record


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", default="runs/reproduce", help="a finished run folder (all four stages)")
    parser.add_argument("--seed", type=int, default=0, help="which seed of the run")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default=None, help="write the record here")


def run(args: argparse.Namespace) -> int:
    record = measure(args.run, args.seed, args.device)
    if args.json:
        runs.write_json(args.json, record)
    return 0
