"""Robustness benchmark: the whole pipeline over variants of the synthetic generator × seeds.

A recipe tuned on one dataset can hold there and nowhere else. This benchmark trains every stage (the
UR-DMU baseline, TGS fine-tuning, the experts, the gate, and the Sultani MIL reference when the pipeline
has it) on several *variants* of the synthetic generator (`gsmoe_lib.data.synthetic`), each with its own
dataset seed, for several training seeds, and checks the targets on every variant.

    gsmoe bench robustness                              # every variant, quick profile, CPU
    gsmoe bench robustness --device cuda --jobs 8       # the lent GPU machine (16 cores)
    gsmoe bench robustness --variants ucf,xd --seeds 1 --profile tiny --out /tmp/rb
    gsmoe bench robustness --list                       # the variants and what is cached

Variants (`VARIANTS`). Each changes the *profile's* generator config (so that `--profile tiny` shrinks
every variant alike): `scale` multiplies a SynthConfig field of the profile, `set` replaces it. Every
variant but the two defaults has a dataset seed of its own, so no variant shares the default's videos.

| variant | dataset | data seed | change to the profile's generator | seeds |
|---|---|---|---|---|
| ucf | UCF-shaped | 0 | none (the default of `make reproduce`) | 5 |
| xd | XD-shaped | 0 | none (5 crops, multi-label) | 5 |
| ucf-reseed | UCF-shaped | 5 | none: another draw of the same generator (the control for the others) | 3 |
| ucf-half-saliency | UCF-shaped | 1 | saliency_scale × 0.5 | 3 |
| ucf-distractors-2x | UCF-shaped | 2 | distractor_rate × 2 (motion bursts that are not anomalies) | 3 |
| ucf-10-crops | UCF-shaped | 3 | n_crops = 10 (the real UCF-Crime layout) | 3 |
| ucf-lengths | UCF-shaped | 4 | length_scale × 2, max_snippets × 2, train_mean_snippets × 0.4 (see below) | 3 |

ucf-lengths asks for test videos twice as long and train videos 0.8× as long; after the clip to
`min_snippets` (16 on quick) the quick profile gets, at dataset seeds 0 / 4 / 7, a mean test length of
75 / 68 / 76 snippets (default 44 / 45 / 46) and a mean train length of 77 / 82 / 80 (default 94 / 97 / 95).
On tiny, whose lengths are clipped to 20-80, only the test videos change.

Cells. One (variant, training seed) is a cell: its data is synthesised once per variant under
`WORK/data/<data profile>/<variant>` (cached: the same generator config is not written twice), its stages train into
`WORK/runs/<variant>/<key>/seed-<s>` and its record goes to `WORK/cells/<variant>/<key>/seed-<s>.json`.
`<key>` hashes everything that decides the cell's numbers (the PipelineConfig, the generator config, the
stages, the device), so a changed config gets fresh folders and never meets a stage finished with another
config (runs.StageConflict); a finished cell (its record exists) is not rerun, and an interrupted cell
resumes from its finished stages (training.pipeline.run_pipeline). `--rerun` deletes the requested cells' records and
run folders first (for code changes that leave the config alone).

Parallel cells (`--jobs N`): N worker processes (spawned, so CUDA works in them), each with `--threads`
torch threads (default: the CPU count // N). The variants' data are synthesised in the same pool, first,
and each variant's cells start as soon as its data is written, so the slowest synthesis (ucf-10-crops,
25 s on the 2-core CPU) overlaps the other variants' training. Stage seconds of parallel cells share the
machine: compare them only within one call with the same `--jobs`.

Collapse (a stage degenerate on a seed: reported as collapsed, not as a metric), the summary over seeds,
the checks of the targets on every variant and the markdown tables: `bench.robustness_report`.

Outputs: `OUT/robustness.json` (parameters, environment, variants with their full generator configs, every
cell, the summary, the checks, failures) and `OUT/robustness.md` (the same as tables). OUT defaults to
benchmarks/results-<machine> (results-cpu, results-h100, ...).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import time
import traceback
import warnings
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from gsmoe_lib import runs
from gsmoe_lib.training.config import synthetic_profile
from gsmoe_lib.bench.robustness_report import (MIN_KERNEL_FRACTION, check_targets, markdown, stage_record,
                                               summarise)
DATA_PROFILE = {p: synthetic_profile(p) for p in ("tiny", "quick", "paper")}  # training.config names the data


@dataclass(frozen=True)
class Variant:
    """One variant of the synthetic generator: a dataset, its seed, and changes to the profile's config."""

    name: str
    description: str
    dataset: str = "ucf-crime"
    data_seed: int = 0
    scale: dict[str, float] = field(default_factory=dict)  # SynthConfig field -> factor on the profile's value
    set: dict[str, Any] = field(default_factory=dict)      # SynthConfig field -> value
    seeds: int = 3                                         # training seeds by default
    default: bool = False                                  # the dataset's default (its own extra targets)

    def synth_overrides(self, data_profile: str) -> dict[str, Any]:
        """SynthConfig overrides of this variant on top of `data_profile` (tiny / quick / full)."""
        from gsmoe_lib.data.synthetic import synth_config

        base = asdict(synth_config(data_profile, self.dataset))
        out: dict[str, Any] = {}
        for key, factor in self.scale.items():
            if key not in base:
                raise ValueError(f"variant {self.name}: unknown SynthConfig field {key!r}")
            if base[key] is not None:  # e.g. max_snippets=None (no cap) stays uncapped
                value = base[key] * factor
                out[key] = round(value) if isinstance(base[key], int) else value
        out.update(self.set)
        return out

    def synth_config(self, data_profile: str):
        from gsmoe_lib.data.synthetic import synth_config

        return synth_config(data_profile, self.dataset, **self.synth_overrides(data_profile))


VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("ucf", "the UCF-shaped default (make reproduce)", seeds=5, default=True),
    Variant("xd", "the XD-shaped default (5 crops, multi-label)", dataset="xd-violence", seeds=5, default=True),
    Variant("ucf-reseed", "the UCF-shaped default, another dataset seed (control)", data_seed=5),
    Variant("ucf-half-saliency", "half the anomalies' saliency", data_seed=1, scale={"saliency_scale": 0.5}),
    Variant("ucf-distractors-2x", "twice the rate of motion distractors", data_seed=2,
            scale={"distractor_rate": 2.0}),
    Variant("ucf-10-crops", "10 crops per video (the real UCF-Crime layout)", data_seed=3, set={"n_crops": 10}),
    Variant("ucf-lengths", "longer test videos (x2 before clipping), shorter train videos (x0.8)", data_seed=4,
            scale={"length_scale": 2.0, "max_snippets": 2.0, "train_mean_snippets": 0.4}),
)}


# ----------------------------------------------------------------------------------------------------
# Cells
# ----------------------------------------------------------------------------------------------------

def pipeline_stages(references: str | None = None) -> tuple[str, ...]:
    """The stages a cell trains: STAGES, plus the reference stages ("sultani") the pipeline has.

    references: comma-separated subset of REFERENCE_STAGES ("" for none, None for all of them).
    """
    from gsmoe_lib.training.stages import REFERENCE_STAGES, STAGES

    available = tuple(s for s in REFERENCE_STAGES if s not in STAGES)
    wanted = available if references is None else tuple(s for s in references.split(",") if s)
    unknown = [s for s in wanted if s not in available]
    if unknown:
        raise ValueError(f"unknown reference stage(s) {', '.join(unknown)}; this pipeline has: "
                         f"{', '.join(available) or 'none'}")
    return tuple(STAGES) + wanted


def variant_data_root(work: Path, variant: Variant, profile: str) -> Path:
    """WORK/data/<data profile>/<variant>: one folder per generator config, whichever profile asks."""
    return Path(work) / "data" / DATA_PROFILE[profile] / variant.name


def cell_config(variant: Variant, seed: int, work: Path, profile: str, device: str,
                overrides: dict[str, Any] | None = None):
    """The PipelineConfig of one cell (the profile, the variant's data, the seed, the overrides)."""
    from gsmoe_lib.training.config import config_for

    return config_for(profile, str(variant_data_root(work, variant, profile).resolve()), variant.dataset,
                            seed, device, overrides)


def cell_key(variant: Variant, profile: str, device: str, overrides: dict[str, Any] | None,
             stages: tuple[str, ...], work: Path) -> str:
    """A short hash of everything that decides a variant's cells' numbers except the training seed."""
    from gsmoe_lib.training.config import pipeline_identity

    cfg = cell_config(variant, 0, work, profile, device, overrides)
    ident = {"pipeline": pipeline_identity(cfg), "synth": asdict(variant.synth_config(DATA_PROFILE[profile])),
             "dataset": variant.dataset, "data_seed": variant.data_seed, "stages": list(stages)}
    return runs.config_hash(ident)[:10]


def cell_paths(work: Path, variant: str, key: str, seed: int) -> tuple[Path, Path]:
    """(run folder, record file) of one cell."""
    return (Path(work) / "runs" / variant / key / f"seed-{seed}",
            Path(work) / "cells" / variant / key / f"seed-{seed}.json")


def synth_variant(variant: Variant, work: str | Path, profile: str) -> str:
    """Write (or find, when already written) the variant's dataset; returns its folder."""
    from gsmoe_lib.data.synthetic import synthesize

    out = variant_data_root(Path(work), variant, profile)
    synthesize(out, profile=DATA_PROFILE[profile], seed=variant.data_seed, dataset=variant.dataset,
               force=True, **variant.synth_overrides(DATA_PROFILE[profile]))
    return str(out)


def _set_threads(threads: int) -> None:
    import torch

    if threads > 0:
        torch.set_num_threads(threads)


def run_cell(task: dict[str, Any]) -> dict[str, Any]:
    """Train (or load) one cell's stages and write its record; the unit of work of the pool.

    task: variant (a Variant's fields), seed, work, profile, device, overrides, stages, key, threads,
    min_kernel_fraction. Returns the record; an exception is returned as {"error": ...} with the task.
    """
    from gsmoe_lib.bench import precision
    from gsmoe_lib.training.data import load_data
    from gsmoe_lib.training.pipeline import run_pipeline

    variant = Variant(**task["variant"])
    seed, work = task["seed"], Path(task["work"])
    run_dir, record_path = cell_paths(work, variant.name, task["key"], seed)
    start, cpu_start = time.perf_counter(), time.process_time()
    try:
        _set_threads(task["threads"])
        cfg = cell_config(variant, seed, work, task["profile"], task["device"], task["overrides"])
        with warnings.catch_warnings(record=True) as caught:  # the stages' warnings go into the record
            warnings.simplefilter("always")
            data = load_data(cfg.data, cfg.device, progress=False)
            # precision.measure_one trains STAGES one after another and times each (fp32)
            measured = precision.measure_one(cfg, run_dir, "none", data)
            extra = [s for s in task["stages"] if s not in measured]
            if extra:
                t = time.perf_counter()
                # the reference stages train alone (run_pipeline: stages=("sultani",) trains nothing else)
                res = run_pipeline(cfg, run_dir, tuple(extra), progress=False, data=data)
                seconds = time.perf_counter() - t
                for s in extra:
                    measured[s] = {"seconds": seconds / len(extra), "loaded": res[s].skipped}
        stages = {s: stage_record(run_dir, s, measured[s], task["min_kernel_fraction"])
                  for s in task["stages"]}
        record = {"variant": variant.name, "seed": seed, "key": task["key"], "dataset": variant.dataset,
                  "data_seed": variant.data_seed, "device": task["device"], "threads": task["threads"],
                  "seconds": time.perf_counter() - start, "stages": stages,
                  # CPU seconds of this process (all its threads): less sensitive than the wall time to a
                  # machine shared with other work
                  "cpu_seconds": time.process_time() - cpu_start,
                  "warnings": sorted({str(w.message) for w in caught}), "run_dir": str(run_dir)}
        runs.write_json(record_path, record)
        return record
    except Exception as exc:  # noqa: BLE001 - one failed cell must not stop the others; it is reported
        return {"variant": variant.name, "seed": seed, "key": task["key"],
                "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(),
                "seconds": time.perf_counter() - start}


def _synth_task(task: dict[str, Any]) -> str:
    _set_threads(task["threads"])
    return synth_variant(Variant(**task["variant"]), task["work"], task["profile"])


THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def _init_worker(threads: int) -> None:
    _set_threads(threads)


def execute(variants: list[Variant], cell_tasks: dict[str, list[dict[str, Any]]], synth: dict[str, dict[str, Any]],
            jobs: int, threads: int, on_done: Callable[[dict[str, Any]], None]) -> None:
    """Synthesise each variant's data, then run its cells; with jobs > 1 in a pool of spawned processes.

    A variant's cells are submitted as soon as its data is written, so synthesis overlaps training.
    """
    if jobs <= 1:
        for v in variants:
            if not cell_tasks.get(v.name):
                continue
            synth_error = None
            try:
                _synth_task(synth[v.name])
            except Exception as exc:  # noqa: BLE001
                synth_error = f"synthesis failed: {type(exc).__name__}: {exc}"
            for task in cell_tasks[v.name]:
                on_done({"variant": v.name, "seed": task["seed"], "key": task["key"], "error": synth_error}
                        if synth_error else run_cell(task))
        return
    import multiprocessing

    # The workers inherit these at spawn, before numpy or torch start their thread pools: each of the N
    # workers keeps to its share of the cores.
    saved = {var: os.environ.get(var) for var in THREAD_VARS}
    os.environ.update({var: str(max(threads, 1)) for var in THREAD_VARS})
    try:
        _run_pool(variants, cell_tasks, synth, jobs, threads, on_done, multiprocessing.get_context("spawn"))
    finally:
        for var, value in saved.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value


def _run_pool(variants: list[Variant], cell_tasks: dict[str, list[dict[str, Any]]],
              synth: dict[str, dict[str, Any]], jobs: int, threads: int,
              on_done: Callable[[dict[str, Any]], None], context: Any) -> None:
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_init_worker,
                             initargs=(threads,)) as pool:
        pending: dict[Future, tuple[str, dict[str, Any]]] = {}
        for v in variants:
            if cell_tasks.get(v.name):
                pending[pool.submit(_synth_task, synth[v.name])] = ("synth", {"name": v.name})
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                kind, what = pending.pop(fut)
                # run_cell reports its own errors; an exception here is a synthesis that failed or a worker
                # that died (e.g. killed for memory: the pool is then broken and every later cell fails too)
                exc = fut.exception()
                if kind == "synth":
                    for task in cell_tasks[what["name"]]:
                        if exc is None:
                            pending[pool.submit(run_cell, task)] = ("cell", task)
                        else:
                            on_done({"variant": what["name"], "seed": task["seed"], "key": task["key"],
                                     "error": f"synthesis failed: {type(exc).__name__}: {exc}"})
                else:
                    on_done(fut.result() if exc is None else {
                        "variant": what["variant"]["name"], "seed": what["seed"], "key": what["key"],
                        "error": f"worker failed: {type(exc).__name__}: {exc}"})


# ----------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------

def default_out(device: str) -> Path:
    """benchmarks/results-<machine>: results-cpu, or the GPU's model (results-h100, ...)."""
    from gsmoe_lib.paths import PROJECT_ROOT

    tag = "cpu"
    if device.startswith("cuda"):
        import torch

        name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else ""
        m = re.search(r"\b([A-Z]+\d{2,4})\b", name)
        tag = m.group(1).lower() if m else "cuda"
    return PROJECT_ROOT / "benchmarks" / f"results-{tag}"


def _variants_from(arg: str | None) -> list[Variant]:
    names = [n for n in (arg or "").split(",") if n] or list(VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    return [VARIANTS[n] for n in names]


def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Run (or load) the cells the command line `args` asks for; the result written to robustness.json
    ({} with --list)."""
    variants = _variants_from(args.variants)
    if args.seeds is not None and args.seeds < 1:
        raise ValueError(f"--seeds must be at least 1 (got {args.seeds})")
    if args.seeds is not None:
        variants = [replace(v, seeds=args.seeds) for v in variants]
    jobs = max(1, args.jobs)
    threads = args.threads or max(1, (os.cpu_count() or 1) // jobs)
    work = Path(args.work).resolve()
    overrides = runs.read_json(args.config) if args.config else None
    stages = pipeline_stages(args.references)
    keys = {v.name: cell_key(v, args.profile, args.device, overrides, stages, work) for v in variants}

    cached: list[dict[str, Any]] = []
    todo: dict[str, list[dict[str, Any]]] = {}
    for v in variants:
        for seed in range(v.seeds):
            run_dir, record = cell_paths(work, v.name, keys[v.name], seed)
            if args.rerun:
                record.unlink(missing_ok=True)
                shutil.rmtree(run_dir, ignore_errors=True)
            if record.is_file():
                cached.append(runs.read_json(record))
                continue
            todo.setdefault(v.name, []).append({
                "variant": asdict(v), "seed": seed, "work": str(work), "profile": args.profile,
                "device": args.device, "overrides": overrides, "stages": stages, "key": keys[v.name],
                "threads": threads, "min_kernel_fraction": args.min_kernel_fraction})
    if args.list:
        for v in variants:
            n_todo = len(todo.get(v.name, []))
            print(f"{v.name:20s} {v.dataset:11s} data seed {v.data_seed}  {v.seeds} seeds, {v.seeds - n_todo} "
                  f"cached  key {keys[v.name]}  {v.description}")
        return {}
    synth = {v.name: {"variant": asdict(v), "work": str(work), "profile": args.profile, "threads": threads}
             for v in variants}
    fresh: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    out = Path(args.out) if args.out else default_out(args.device)
    environment = runs.environment_record(None, args.device)
    start = time.perf_counter()

    def write(complete: bool) -> dict[str, Any]:
        """robustness.json / .md from the cells so far (after every cell: a run cut short keeps its results)."""
        cells = sorted(cached + fresh, key=lambda c: ([v.name for v in variants].index(c["variant"]), c["seed"]))
        summary = summarise(cells, stages)
        result = {
            "parameters": {"profile": args.profile, "device": args.device, "jobs": jobs, "threads": threads,
                           "work": str(work), "overrides": overrides, "stages": list(stages),
                           "min_kernel_fraction": args.min_kernel_fraction, "keys": keys,
                           "seeds": {v.name: list(range(v.seeds)) for v in variants}},
            "environment": environment, "complete": complete,
            "finished": time.strftime("%Y-%m-%d %H:%M") + ("" if complete else " (in progress)"),
            "elapsed_s": time.perf_counter() - start, "cells_run": len(fresh), "cells_cached": len(cached),
            "variants": [{**asdict(v), "synth_config": asdict(v.synth_config(DATA_PROFILE[args.profile]))}
                         for v in variants],
            "cells": cells, "summary": summary,
            "checks": {v.name: check_targets(v, summary[v.name]) for v in variants if v.name in summary},
            "failures": [{k: f.get(k) for k in ("variant", "seed", "error", "traceback")} for f in failures],
        }
        runs.write_json(out / "robustness.json", result)
        runs.write_text(out / "robustness.md", markdown(result))
        return result

    from tqdm.auto import tqdm

    n_todo = sum(len(t) for t in todo.values())
    with tqdm(total=n_todo, desc="robustness cells", unit="cell", disable=args.quiet or not n_todo) as bar:
        def on_done(rec: dict[str, Any]) -> None:
            (failures if rec.get("error") else fresh).append(rec)
            bar.set_postfix_str(f"{rec['variant']} seed {rec['seed']}" + (" FAILED" if rec.get("error") else ""))
            bar.update(1)
            write(complete=False)

        execute(variants, todo, synth, jobs, threads, on_done)
    result = write(complete=True)
    if not args.quiet:
        print(markdown(result))
        print(f"written: {out / 'robustness.json'}, {out / 'robustness.md'}")
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--variants", default=None, help="comma-separated subset of " + ",".join(VARIANTS))
    parser.add_argument("--seeds", type=int, default=None,
                        help="training seeds 0..N-1 for every variant (default: 5 for ucf and xd, 3 for the others)")
    parser.add_argument("--profile", choices=tuple(DATA_PROFILE), default="quick")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--jobs", type=int, default=1, help="cells trained at once, each in its own process")
    parser.add_argument("--threads", type=int, default=0, help="torch threads per job (0: CPU count // jobs)")
    parser.add_argument("--references", default=None,
                        help="reference stages to train too (default: all the pipeline has, i.e. sultani; '' for none)")
    parser.add_argument("--config", default=None, help="JSON file of nested PipelineConfig overrides (as gsmoe train)")
    parser.add_argument("--work", default="runs/robustness", help="cached data, run folders and cell records")
    parser.add_argument("--out", default=None,
                        help="folder for robustness.json / .md (default: benchmarks/results-<machine>)")
    parser.add_argument("--min-kernel-fraction", type=float, default=MIN_KERNEL_FRACTION,
                        help="a stage whose pseudo-labels have a kernel on fewer abnormal samples is collapsed")
    parser.add_argument("--rerun", action="store_true", help="delete the requested cells' records and runs first")
    parser.add_argument("--list", action="store_true", help="print the variants and what is cached, run nothing")
    parser.add_argument("--quiet", action="store_true", help="no progress bar, no table on stdout")


def run(args: argparse.Namespace) -> int:
    result = benchmark(args)
    return 1 if result and result["failures"] else 0  # a failed cell is reported in the files and the status
