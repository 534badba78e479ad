"""How the numeric precision moves the metrics and the wall time of the whole pipeline (issue 5).

Trains the four stages (encoder, TGS fine-tuning, experts, gate) and the reference Sultani MIL detector
(`train.REFERENCE_STAGES`) once per (precision, seed) on a synthetic dataset and reports every stage's test
metrics and seconds, then the mean and standard deviation over the
seeds and the difference to fp32. Precisions:

    none   fp32 everywhere (the default of `gsmoe train`)
    bf16   bf16 autocast for every forward pass, training and scoring (`PipelineConfig.amp = "bf16"`)
    tf32   fp32 tensors, TF32 matrix products (CUDA only; `torch.backends.*.allow_tf32`)

    python -m gsmoe_lib.precision --device cpu --precisions none,bf16 --seeds 0,1,2 --json OUT.json
    python -m gsmoe_lib.precision --precisions none --config overrides.json   # any PipelineConfig change

`--config` takes nested PipelineConfig overrides (as `gsmoe train --config`), so the same loop measures a
setting over seeds, e.g. {"experts": {"lr": 3e-4}}; the overrides are recorded in the JSON.

Each (precision, seed) is its own run folder under `--runs` (default runs/precision); a finished stage is
loaded, not retrained, so an interrupted measurement resumes. Seconds are only comparable between runs that
trained their stages in this call (`loaded` is recorded per stage). Seeds vary the training, not the data:
every run reads the same synthetic dataset (`--data-seed`), as `make reproduce` does.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from gsmoe_lib import runs, train
from gsmoe_lib.device import tf32_matmuls
from gsmoe_lib.data.synthetic import synthesize

PRECISIONS = ("none", "bf16", "tf32")
METRICS = ("auc", "auc_abnormal", "ap", "ap_abnormal")
MEASURED_STAGES = train.STAGES + train.REFERENCE_STAGES  # the Sultani MIL floor beside GS-MoE's stages


def measure_one(cfg: train.PipelineConfig, run_dir: str | Path, precision: str, data: train.Data | None = None,
                ) -> dict[str, Any]:
    """Train (or load) the stages of one run (MEASURED_STAGES); stage -> {metrics in percent, seconds, loaded}."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
    if precision == "tf32" and torch.device(cfg.device).type != "cuda":
        raise ValueError(f"precision 'tf32' only exists on CUDA, but the device is {cfg.device!r}")
    cfg = replace(cfg, amp="bf16" if precision == "bf16" else "none")
    data = data or train.load_data(cfg.data, cfg.device, progress=False)
    stages: dict[str, Any] = {}
    with tf32_matmuls(precision == "tf32"):
        for i, stage in enumerate(train.STAGES):
            # run_pipeline loads the stages before this one (finished with the same config), so the time of
            # each call is the time of its last stage.
            t = time.perf_counter()
            res = train.run_pipeline(cfg, run_dir, train.STAGES[: i + 1], progress=False, data=data)[stage]
            stages[stage] = {"seconds": time.perf_counter() - t, "loaded": res.skipped,
                             **{k: 100.0 * float(res.metrics[k]) for k in METRICS}}
        for stage in train.REFERENCE_STAGES:  # independent of the stages above: timed on its own
            t = time.perf_counter()
            res = train.run_pipeline(cfg, run_dir, (stage,), progress=False, data=data)[stage]
            stages[stage] = {"seconds": time.perf_counter() - t, "loaded": res.skipped,
                             **{k: 100.0 * float(res.metrics[k]) for k in METRICS}}
    return stages


def summarise(records: list[dict[str, Any]], baseline: str = "none") -> dict[str, Any]:
    """precision -> stage -> metric -> {mean, std, n, delta (mean minus the baseline's mean, when measured)}.

    std is the sample standard deviation (n - 1), 0 for a single seed.
    """
    precisions = list(dict.fromkeys(r["precision"] for r in records))
    out: dict[str, Any] = {}
    for p in precisions:
        rows = [r for r in records if r["precision"] == p]
        out[p] = {}
        for stage in MEASURED_STAGES:
            out[p][stage] = {}
            for key in (*METRICS, "seconds"):
                values = [r["stages"][stage][key] for r in rows]
                out[p][stage][key] = {"mean": statistics.fmean(values), "n": len(values),
                                      "std": statistics.stdev(values) if len(values) > 1 else 0.0}
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
                delta = f" ({c['delta']:+.2f})" if "delta" in c and p != "none" else ""
                parts.append(f"{c['mean']:6.2f} ± {c['std']:4.2f}{delta}")
            lines.append(f"{p:9s} {stage:8s} {parts[0]:>22s} {parts[1]:>22s} {cells['seconds']['mean']:9.1f}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict[str, Any]:
    precisions = [p for p in args.precisions.split(",") if p]
    seeds = [int(s) for s in args.seeds.split(",") if s]
    unknown = [p for p in precisions if p not in PRECISIONS]
    if unknown or not precisions or not seeds:
        raise SystemExit(f"--precisions must list some of {', '.join(PRECISIONS)} (got {args.precisions!r}) "
                         f"and --seeds at least one seed (got {args.seeds!r})")
    if args.threads:
        torch.set_num_threads(args.threads)
    data_root = args.data_root or synthesize(
        Path(args.runs) / "data", profile=args.profile, seed=args.data_seed, dataset=args.dataset)
    overrides = runs.read_json(args.config) if args.config else None
    base = train.config_for(args.profile, str(data_root), dataset=args.dataset, device=args.device,
                            overrides=overrides)
    data = train.load_data(base.data, base.device, progress=False)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m gsmoe_lib.precision", description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precisions", default="none,bf16", help="comma-separated subset of " + ",".join(PRECISIONS))
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated training seeds")
    parser.add_argument("--profile", choices=tuple(train.PROFILES), default="quick")
    parser.add_argument("--dataset", choices=("ucf-crime", "xd-violence"), default="ucf-crime")
    parser.add_argument("--data-root", default=None, help="dataset folder (default: synthesize one under --runs)")
    parser.add_argument("--data-seed", type=int, default=0, help="seed of the synthetic dataset")
    parser.add_argument("--config", default=None, help="JSON file of nested PipelineConfig overrides (as gsmoe train)")
    parser.add_argument("--runs", default="runs/precision", help="folder of the run folders")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--json", default=None, help="write the records and the summary here")
    return parser


def main(argv: list[str] | None = None) -> int:
    run(build_parser().parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
