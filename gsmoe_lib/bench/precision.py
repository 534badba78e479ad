"""How the numeric precision moves the metrics and the wall time of the whole pipeline.

Trains the four stages (encoder, TGS fine-tuning, experts, gate) and the reference Sultani MIL detector
(`training.stages.REFERENCE_STAGES`) once per (precision, seed) on a synthetic dataset and reports every
stage's test metrics and seconds, then the mean and standard deviation over the seeds and the difference to
fp32. Precisions:

    none   fp32 everywhere (the default of `gsmoe train`)
    bf16   bf16 autocast for every forward pass, training and scoring (`PipelineConfig.amp = "bf16"`)
    tf32   fp32 tensors, TF32 matrix products (CUDA only; `torch.backends.*.allow_tf32`)

    gsmoe bench precision --device cpu --precisions none,bf16 --seeds 0,1,2 --json OUT.json
    gsmoe bench precision --precisions none --config overrides.json   # any PipelineConfig change

`--config` takes nested PipelineConfig overrides (as `gsmoe train --config`), so the same loop measures a
setting over seeds, e.g. {"experts": {"lr": 3e-4}}; the overrides are recorded in the JSON.

Each (precision, seed) is its own run folder under `--runs` (default runs/precision); a finished stage is
loaded, not retrained, so an interrupted measurement resumes. Seconds are only comparable between runs that
trained their stages in this call (`loaded` is recorded per stage). Seeds vary the training, not the data:
every run reads the same synthetic dataset (`--data-seed`), as `make reproduce` does.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from gsmoe_lib import runs
from gsmoe_lib.data.synthetic import synthesize
from gsmoe_lib.device import tf32_matmuls
from gsmoe_lib.reporting import REPORTED_METRICS, mean_std, points
from gsmoe_lib.training.config import PROFILES, PipelineConfig, config_for
from gsmoe_lib.training.data import Data, load_data
from gsmoe_lib.training.pipeline import run_pipeline
from gsmoe_lib.training.stages import REFERENCE_STAGES, STAGES

PRECISIONS = ("none", "bf16", "tf32")
METRICS = REPORTED_METRICS  # the paper's four, in percent
MEASURED_STAGES = STAGES + REFERENCE_STAGES  # the Sultani MIL floor beside GS-MoE's stages


def measure_one(cfg: PipelineConfig, run_dir: str | Path, precision: str, data: Data | None = None,
                references: tuple[str, ...] = REFERENCE_STAGES) -> dict[str, Any]:
    """Train (or load) the stages of one run, STAGES then `references` (default: the Sultani MIL floor).

    stage -> {metrics in percent, seconds (its training and test-set evaluation), loaded}.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
    if precision == "tf32" and torch.device(cfg.device).type != "cuda":
        raise ValueError(f"precision 'tf32' only exists on CUDA, but the device is {cfg.device!r}")
    cfg = replace(cfg, amp="bf16" if precision == "bf16" else "none")
    data = data or load_data(cfg.data, cfg.device, progress=False)

    def timed(stages: tuple[str, ...]) -> dict[str, Any]:
        """The last of `stages`: run_pipeline loads the ones before it (finished with the same config), so the
        time of the call is the time of that stage."""
        t = time.perf_counter()
        res = run_pipeline(cfg, run_dir, stages, progress=False, data=data)[stages[-1]]
        if torch.device(cfg.device).type == "cuda":
            torch.cuda.synchronize()  # the stage's queued GPU work belongs to its time
        return {"seconds": time.perf_counter() - t, "loaded": res.skipped,
                **{k: 100.0 * float(res.metrics[k]) for k in METRICS}}

    with tf32_matmuls(precision == "tf32"):
        stages = {stage: timed(STAGES[: i + 1]) for i, stage in enumerate(STAGES)}
        for stage in references:  # independent of the stages above: trained and timed on its own
            stages[stage] = timed((stage,))
    return stages


def summarise(records: list[dict[str, Any]], baseline: str = "none") -> dict[str, Any]:
    """precision -> stage -> metric -> {mean, std, n, delta (mean minus the baseline's mean, when measured)}.

    mean ± std: `reporting.mean_std` (the sample standard deviation, n - 1; NaN for a single seed).
    """
    precisions = list(dict.fromkeys(r["precision"] for r in records))
    out: dict[str, Any] = {}
    for p in precisions:
        rows = [r for r in records if r["precision"] == p]
        out[p] = {}
        for stage in MEASURED_STAGES:
            out[p][stage] = {}
            for key in (*METRICS, "seconds"):
                out[p][stage][key] = mean_std(r["stages"][stage][key] for r in rows)
    if baseline in out:
        for p in precisions:
            for stage in MEASURED_STAGES:
                for key, cell in out[p][stage].items():
                    cell["delta"] = cell["mean"] - out[baseline][stage][key]["mean"]
    return out


def table(summary: dict[str, Any]) -> str:
    """A readable table: one line per precision and stage, AUC and AP as mean ± std (Δ to fp32), seconds."""
    lines = [f"{'precision':9s} {'stage':8s} {'AUC %':>22s} {'AP %':>22s} {'seconds':>9s}"]
    for p, stages in summary.items():
        for stage, cells in stages.items():
            parts = []
            for key in ("auc", "ap"):
                c = cells[key]
                delta = f" ({points(c['delta'])})" if "delta" in c and p != "none" else ""
                parts.append(points(c["mean"], c["std"], signed=False) + delta)
            lines.append(f"{p:9s} {stage:8s} {parts[0]:>22s} {parts[1]:>22s} {cells['seconds']['mean']:9.1f}")
    return "\n".join(lines)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Every (precision, seed) run of the command line `args`: the JSON-ready result (records and summary)."""
    precisions = [p for p in args.precisions.split(",") if p]
    seeds = [int(s) for s in args.seeds.split(",") if s]
    unknown = [p for p in precisions if p not in PRECISIONS]
    if unknown or not precisions or not seeds:
        raise ValueError(f"--precisions must list some of {', '.join(PRECISIONS)} (got {args.precisions!r}) "
                         f"and --seeds at least one seed (got {args.seeds!r})")
    if args.threads:
        torch.set_num_threads(args.threads)
    data_root = args.data_root or synthesize(
        Path(args.runs) / "data", profile=args.profile, seed=args.data_seed, dataset=args.dataset)
    overrides = runs.read_json(args.config) if args.config else None
    base = config_for(args.profile, str(data_root), dataset=args.dataset, device=args.device, overrides=overrides)
    data = load_data(base.data, base.device, progress=False)
    records = []
    for seed in seeds:
        for p in precisions:  # interleaved, so that a drift of the machine's speed hits every precision alike
            stages = measure_one(replace(base, seed=seed), Path(args.runs) / f"{p}-seed{seed}", p, data)
            records.append({"precision": p, "seed": seed, "stages": stages})
            m = stages["gate"]
            print(f"{p:5s} seed {seed}: gate AUC {m['auc']:.2f} AP {m['ap']:.2f}, "
                  f"{sum(s['seconds'] for s in stages.values()):.1f} s", flush=True)
    summary = summarise(records)
    result = {"environment": runs.environment_record(None, args.device), "profile": args.profile,
              "overrides": overrides,
              "dataset": args.dataset, "data_root": str(data_root), "data_seed": args.data_seed,
              "records": records, "summary": summary}
    print(table(summary))
    if args.json:
        runs.write_json(args.json, result)
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precisions", default="none,bf16", help="comma-separated subset of " + ",".join(PRECISIONS))
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated training seeds")
    parser.add_argument("--profile", choices=tuple(PROFILES), default="quick")
    parser.add_argument("--dataset", choices=("ucf-crime", "xd-violence"), default="ucf-crime")
    parser.add_argument("--data-root", default=None, help="dataset folder (default: synthesize one under --runs)")
    parser.add_argument("--data-seed", type=int, default=0, help="seed of the synthetic dataset")
    parser.add_argument("--config", default=None, help="JSON file of nested PipelineConfig overrides (as gsmoe train)")
    parser.add_argument("--runs", default="runs/precision", help="folder of the run folders")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--json", default=None, help="write the records and the summary here")


def run(args: argparse.Namespace) -> int:
    measure(args)
    return 0
