"""`gsmoe bench speed`: how fast each training stage steps and how fast a UCF-Crime-sized test set is scored.

What is measured (synthetic values throughout: speed does not depend on what the numbers mean), one stage
each (`--stages`), each in the module named after it:

    encoder, tgs, experts, gate   one training step of each stage (`bench.steps`)
    score                         the 290 UCF-Crime test videos with their real lengths, scored four ways
                                  (`bench.scoring`: UR-DMU per crop / all crops, GS-MoE crops "each" / "mean")
    memory                        peak host memory of scoring (urdmu_all_crops and gsmoe by default) on the
                                  memory-mapped test set and on its longest video, each in a fresh python
                                  process (`bench.memory`)
    breakdown                     one scoring pass at a few lengths through the encoder, the experts and the
                                  gate, each timed and its operations counted (`bench.breakdown`)

Timing and memory readers: `bench.meters` (the peak resident host memory is cumulative over the stages of a
run: only the memory stage's fresh processes give one measurement's own peak; the peak device memory is reset
per stage). Sizes: `bench.sizes` (paper by default). Long videos go through the models within
`models.blocks.MemoryLimits` (recorded in the settings).

`--small` shrinks every size so that the whole benchmark runs in seconds on a CPU (the test suite runs it).
Options: `--amp none|bf16` (autocast), `--tf32` (TF32 matmuls and convolutions on CUDA), `--device`,
`--score-modes` (which of the scoring modes above to time), `--features auto|mmap|memory`, `--memory-modes`,
`--no-interleave`, `--keep-freed-memory` (no `host_memory.release_freed_memory` between videos).
The JSON holds the machine and versions (`runs.environment_record`), the settings, the load average
before and after (timings on a shared machine are only as good as its load) and one record per measurement.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import asdict, replace
from typing import Any

import torch

from gsmoe_lib import runs
from gsmoe_lib.bench.breakdown import LENGTHS, SMALL_LENGTHS, bench_breakdown, format_breakdown
from gsmoe_lib.bench.memory import MEMORY_MODES, bench_memory
from gsmoe_lib.bench.scoring import FEATURE_SOURCES, SCORE_MODES, TestSet, bench_scoring
from gsmoe_lib.bench.sizes import BenchSizes
from gsmoe_lib.bench.steps import bench_encoder, bench_experts, bench_gate, bench_tgs
from gsmoe_lib.device import tf32_matmuls
from gsmoe_lib.models.blocks import current_limits

STAGES = ("encoder", "tgs", "experts", "gate", "score", "memory", "breakdown")

# The bar to clear (REFERENCE §9): the official UR-DMU code, fp32, on the machines we use.
OFFICIAL_URDMU = {
    "one_h100": {"encoder_step_s": 0.034, "score_per_crop_s": 7.1, "score_all_crops_s": 1.6},
    "two_core_cpu": {"encoder_step_s": 7.2, "score_per_crop_s": 81.0, "score_per_crop_snippets_per_s": 855.0},
    "paper_gsmoe_rtx_a4500": {"score_s": 55.0, "training_hours": 3.0},
}


def run_benchmark(device: str = "cpu", amp: str = "none", tf32: bool = False, steps: int = 5, warmup: int = 2,
                  stages: tuple[str, ...] = STAGES, small: bool = False, seed: int = 0,
                  sizes: BenchSizes | None = None, score_modes: tuple[str, ...] = SCORE_MODES,
                  features: str = "auto", memory_modes: tuple[str, ...] = MEMORY_MODES,
                  interleave: bool | None = None, release_memory: bool = True) -> dict[str, Any]:
    """Run the chosen stages and return the JSON-ready record (environment, settings, results).

    features: where the scoring stage reads the test set ("auto": "mmap" on the CPU, pinned "memory" on CUDA;
    the memory stage always reads it memory-mapped). interleave: time the scoring modes video by video
    (default on the CPU; `score_interleaved`).
    """
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise ValueError(f"unknown benchmark stages {unknown}; expected a subset of {', '.join(STAGES)}")
    if amp not in ("none", "bf16"):
        raise ValueError(f"unknown amp mode {amp!r}; expected 'none' or 'bf16'")
    bad_modes = [m for m in score_modes if m not in SCORE_MODES]
    if bad_modes or not score_modes:
        raise ValueError(f"unknown scoring modes {bad_modes or '(none)'}; "
                         f"expected a subset of {', '.join(SCORE_MODES)}")
    bad_memory = [m for m in memory_modes if m not in SCORE_MODES]
    if bad_memory or not memory_modes:
        raise ValueError(f"unknown memory modes {bad_memory or '(none)'}; expected a subset of {', '.join(SCORE_MODES)}")
    if features not in FEATURE_SOURCES:
        raise ValueError(f"unknown feature source {features!r}; expected one of {', '.join(FEATURE_SOURCES)}")
    if steps < 1 or warmup < 0:
        raise ValueError(f"need steps >= 1 and warmup >= 0, got steps={steps}, warmup={warmup}")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: CUDA is not available on this machine")
    sizes = sizes or (BenchSizes.small() if small else BenchSizes.paper())
    runs.seed_everything(seed)
    gen = torch.Generator().manual_seed(seed)
    record: dict[str, Any] = {
        "environment": runs.environment_record(seed, device),
        "settings": {"device": device, "amp": amp, "tf32": tf32, "steps": steps, "warmup": warmup,
                     "stages": list(stages), "score_modes": list(score_modes), "small": small,
                     "features": features, "memory_modes": list(memory_modes), "interleave": interleave,
                     "release_memory": release_memory,
                     "memory_limits": asdict(current_limits())
                     | {"snippets_per_pass": current_limits().snippets_per_pass(dev)},
                     "sizes": asdict(replace(sizes, test_lengths=()))
                     | {"test_videos": len(sizes.test_lengths), "test_snippets": sum(sizes.test_lengths)}},
        "load_average_before": list(os.getloadavg()),
        "official_urdmu": OFFICIAL_URDMU,
        "results": {},
    }
    results = record["results"]
    source = ("memory" if dev.type == "cuda" else "mmap") if features == "auto" else features
    test_sets: dict[str, TestSet] = {}  # by source, written once for the scoring and memory stages

    def test_set(kind: str) -> TestSet:
        if kind not in test_sets:
            test_sets[kind] = TestSet.synthetic(sizes, dev, gen, kind)
        return test_sets[kind]

    try:
        with tf32_matmuls(tf32):
            for stage in stages:
                if stage == "encoder":
                    results["encoder"] = bench_encoder(sizes, dev, amp, steps, warmup, gen)
                elif stage == "tgs":
                    results["tgs"], results["tgs_pseudo_labels"] = bench_tgs(sizes, dev, amp, steps, warmup, gen)
                elif stage == "experts":
                    results["experts"] = bench_experts(sizes, dev, amp, steps, warmup, gen)
                elif stage == "gate":
                    results["gate"] = bench_gate(sizes, dev, amp, steps, warmup, gen)
                elif stage == "score":
                    results.update(bench_scoring(sizes, dev, amp, warmup, gen, score_modes, test_set(source),
                                                 interleave, release_memory))
                elif stage == "breakdown":
                    results.update(bench_breakdown(sizes, dev, gen, SMALL_LENGTHS if small else LENGTHS))
                else:
                    results.update(bench_memory(sizes, dev, amp, gen, seed, memory_modes, test_set("mmap"), small,
                                                release_memory))
    finally:
        for ts in test_sets.values():
            ts.close()
    record["load_average_after"] = list(os.getloadavg())
    return record


def format_table(record: dict[str, Any]) -> str:
    """The results as a readable table (times in seconds or milliseconds, throughput, peak memory)."""
    s, env = record["settings"], record["environment"]
    lines = [
        f"gsmoe bench speed  device={s['device']} ({env.get('gpu') or env.get('cpu')}, {env.get('cpu_count')} cores)  "
        f"amp={s['amp']} tf32={s['tf32']} small={s['small']}  torch {env.get('torch')}",
        f"load average before {record['load_average_before'][0]:.2f}, after {record['load_average_after'][0]:.2f}",
        f"{'measurement':28s} {'time':>12s} {'throughput':>22s} {'host peak':>11s} {'device peak':>12s}",
    ]

    def mem(r: dict[str, Any]) -> str:
        dev = r.get("device_peak_mb")
        return f"{r['host_peak_mb']:9.0f}MB {'' if dev is None else f'{dev:10.0f}MB'}"

    for name, r in record["results"].items():
        if name == "breakdown":
            lines += format_breakdown(r)
        elif "step_s" in r:
            lines.append(f"{name + ' step':28s} {r['step_s'] * 1000:10.1f}ms {r['videos_per_s']:14.1f} videos/s "
                         f"{mem(r)}")
        elif "total_s" in r:
            extra = (f"  ({r['vs_urdmu_all_crops']:.2f}x UR-DMU all crops, {r['vs_urdmu_all_crops_cpu']:.2f}x "
                     "in CPU time)" if "vs_urdmu_all_crops" in r else "")
            lines.append(f"{name:28s} {r['total_s']:11.2f}s {r['snippets_per_s']:12.0f} snippets/s "
                         f"{mem(r)}{extra}")
        elif name.startswith("memory_"):
            dev = r.get("device_peak_mb")
            lines.append(f"{name:42s} beyond {r['beyond_mb']:7.0f}MB (peak {r['peak_mb']:.0f}, baseline "
                         f"{r['baseline_mb']:.0f}, features {r['features_mb']:.0f})"
                         + ("" if dev is None else f"  device peak {dev:.0f}MB") + f"  {r['seconds']:.1f}s")
        elif name == "tgs_pseudo_labels":
            for key in ("tgs_batch", "experts_batch_self"):
                p = r[key]
                lines.append(f"{'pseudo-labels ' + key:28s} {p['call_s'] * 1000:10.1f}ms {p['curves']:14d} curves")
            lines.append(f"{'  share of a TGS step':28s} {r['fraction_of_tgs_step'] * 100:10.1f}%")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--amp", choices=("none", "bf16"), default="none", help="autocast precision")
    parser.add_argument("--tf32", action="store_true", help="allow TF32 matmuls and convolutions (CUDA)")
    parser.add_argument("--steps", type=int, default=5, help="timed training steps per stage")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps (and warm-up videos) first")
    parser.add_argument("--stages", default=",".join(STAGES), help="comma-separated subset of " + ",".join(STAGES))
    parser.add_argument("--score-modes", default=",".join(SCORE_MODES),
                        help="comma-separated subset of " + ",".join(SCORE_MODES) + " (the score stage)")
    parser.add_argument("--features", choices=FEATURE_SOURCES, default="auto",
                        help="scoring reads the test set memory-mapped per video or from host memory "
                             "(auto: mmap on the CPU, pinned memory on CUDA)")
    parser.add_argument("--memory-modes", default=",".join(MEMORY_MODES),
                        help="scoring modes whose peak memory the memory stage measures (one process each)")
    parser.add_argument("--keep-freed-memory", action="store_true",
                        help="do not give freed host memory back to the system between videos (host_memory; "
                             "to measure what the allocator keeps without it)")
    parser.add_argument("--no-interleave", action="store_true",
                        help="on the CPU, score the whole set with one mode after the other (not video by video)")
    parser.add_argument("--small", action="store_true", help="tiny sizes that run in seconds (the tests use it)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--json", default=None, help="write the record to this JSON file")


def run(args: argparse.Namespace) -> int:
    stages = tuple(s for s in args.stages.split(",") if s)
    if args.threads is not None:
        torch.set_num_threads(args.threads)  # before the environment record, which reports it
    modes = tuple(m for m in args.score_modes.split(",") if m)  # a bad value raises: cli.main reports it
    memory_modes = tuple(m for m in args.memory_modes.split(",") if m)
    record = run_benchmark(args.device, args.amp, args.tf32, args.steps, args.warmup, stages, args.small, args.seed,
                           score_modes=modes, features=args.features, memory_modes=memory_modes,
                           interleave=False if args.no_interleave else None,
                           release_memory=not args.keep_freed_memory)
    print(format_table(record))
    if args.json:
        runs.write_json(args.json, record)
        print(f"wrote {args.json}")
    return 0

