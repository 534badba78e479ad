"""Effect of the scoring options on a finished run's test metrics and scoring time (issue 5).

For one trained run (default `runs/reproduce`, seed 0) it scores the test split with the whole GS-MoE four
ways, crops "each" / "mean" (`models.gsmoe`) x fp32 / bf16 autocast, and writes one JSON record (metrics in
percent, seconds, machine, versions) plus a table. The fp32 "each" row is the default the pipeline reports.

    python benchmarks/scoring_options.py [--run runs/reproduce] [--seed 0] [--device cpu] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from gsmoe_lib import runs
from gsmoe_lib.data.layouts import open_dataset
from gsmoe_lib.evaluate import evaluate_dataset
from gsmoe_lib.inference import GSMoE, resolve_run
from gsmoe_lib.train import config_from_dict, dataset_name

OPTIONS = (("each", "none"), ("mean", "none"), ("each", "bf16"), ("mean", "bf16"))
METRICS = ("auc", "auc_abnormal", "ap", "ap_abnormal")


def measure(run: str, seed: int, device: str) -> dict:
    root = resolve_run(run, seed)
    cfg = config_from_dict(runs.read_json(root / "pipeline_config.json"))
    d = cfg.data
    test = open_dataset(d.data_root, dataset_name(d), "test", train_list=d.train_list,
                        test_list=d.test_list, annotations=d.annotations)
    record = {"run": str(root), "environment": runs.environment_record(seed, device), "results": []}
    for crops, amp in OPTIONS:
        detector = GSMoE.from_run(run, device=device, seed=seed, crops=crops)

        def score(x: torch.Tensor, model=detector.model, amp=amp) -> torch.Tensor:
            with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=amp == "bf16"):
                return model(x).scores.float()

        t0 = time.perf_counter()
        metrics, _ = evaluate_dataset(score, test, device=device, progress=False)
        seconds = time.perf_counter() - t0
        row = {"crops": crops, "amp": amp, "seconds": seconds, **{m: 100 * float(metrics[m]) for m in METRICS}}
        record["results"].append(row)
        print(f"crops={crops:4s} amp={amp:4s} {seconds:7.1f} s  " + "  ".join(f"{m} {row[m]:.2f}" for m in METRICS),
              flush=True)
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="runs/reproduce")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if not Path(args.run).exists():
        print(f"{args.run}: no such run folder (run `make reproduce` first)", file=sys.stderr)
        return 2
    record = measure(args.run, args.seed, args.device)
    if args.json:
        runs.write_json(args.json, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
