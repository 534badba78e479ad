"""`gsmoe bench generalise`: the references and every stage on each synthetic world x training seeds, one table.

Defaults (schedules, options) are chosen on the default generator and its variants (`bench.robustness`). This
benchmark asks whether what was chosen there holds on data built on other assumptions: the drift world
(`data.synthetic.drift`: anomalies as a gradual mixing toward class prototypes, scene cuts and camera drift,
a class hierarchy), written apart from the default generator and **used only to report, never to choose a
default**. Every world is also scored by the untrained L2-norm score (`data.magnitude`): a world whose
feature norm alone separates anomalies rewards a magnitude bias, not a detector.

    gsmoe bench generalise                                   # default, drift, xd x 3 seeds, quick profile
    gsmoe bench generalise --worlds drift --seeds 1 --profile tiny --out /tmp/g
    gsmoe bench generalise --worlds variants                 # the default generator's variants x 3 seeds

Worlds (`WORLDS`; each has one dataset with its own data seed, synthesised once under WORK/data/<data profile>/<world>):

| world | generator | shape |
|---|---|---|
| default | the default world (features.py; `make reproduce`'s data) | UCF-Crime (2 crops on quick, 13 classes) |
| drift | the drift world (drift.py), reporting only | UCF-Crime |
| xd | the default world | XD-Violence (5 crops, 6 classes, multi-label) |
| drift-xd | the drift world, reporting only | XD-Violence |
| ucf-reseed, ucf-half-saliency, ucf-distractors-2x, ucf-10-crops, ucf-lengths | the default generator's variants (`bench.robustness.VARIANTS`, each with its own data seed): the place where defaults are chosen | UCF-Crime |

`--worlds variants` runs every generator variant, `--worlds all` every world.

Each (world, training seed) cell trains the reference stages (`training.stages.REFERENCE_STAGES` that are
not pipeline stages: Sultani's MIL detector and the top-k MIL MLP) and every stage of `training.stages.STAGES` with the
profile's settings (`bench.precision.measure_one`, fp32), and records each stage's test metrics, whether it
collapsed (`bench.robustness_report.stage_record`) and, for the experts, the own-expert advantage
(`diagnostics.own_expert_advantage`: the own expert's class AUC minus the other experts' mean, in points).
A finished cell (its record exists under WORK/cells/<world>/<key>/) is not rerun; `<key>` hashes the
pipeline config, the dataset's metadata and the stages, so a changed config gets fresh folders.

Outputs: OUT/generalise.json (parameters, environment, the worlds with their L2-norm metrics, every cell,
the summary, and `records`: one flat record per world x stage x seed, each with the date, machine, commit
and command of the call that trained it) and OUT/generalise.md (the table: mean ± std over the seeds of AUC, AUC_A, AP per world and stage,
beside the world's untrained L2-norm AUC). OUT defaults to benchmarks/results-<machine>.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gsmoe_lib import runs
from gsmoe_lib.bench.robustness import DATA_PROFILE, default_out, pipeline_stages

TABLE_METRICS = ("auc", "auc_abnormal", "ap")


@dataclass(frozen=True)
class World:
    """One synthetic world of the benchmark: which generator, which dataset shape, which data seed."""

    name: str
    description: str
    world: str = "default"        # data.synthetic.WORLDS
    dataset: str = "ucf-crime"
    data_seed: int = 0
    variant: str | None = None    # a generator variant of bench.robustness.VARIANTS (its SynthConfig changes)

    def synth_overrides(self, data_profile: str) -> dict[str, Any]:
        """The SynthConfig changes of this world's generator variant ({} for a world that is not one)."""
        from gsmoe_lib.bench.robustness import VARIANTS

        return VARIANTS[self.variant].synth_overrides(data_profile) if self.variant else {}


def _variant_worlds() -> tuple[World, ...]:
    """The default generator's variants (bench.robustness.VARIANTS, less the two defaults, which are the
    worlds "default" and "xd"): the place where defaults are chosen, measured here with the references."""
    from gsmoe_lib.bench.robustness import VARIANTS

    return tuple(World(v.name, f"generator variant: {v.description}", dataset=v.dataset, data_seed=v.data_seed,
                       variant=v.name) for v in VARIANTS.values() if not v.default)


WORLDS: dict[str, World] = {w.name: w for w in (
    World("default", "the default generator (make reproduce's data), UCF-shaped"),
    World("drift", "the drift world (reporting only), UCF-shaped", world="drift"),
    World("xd", "the default generator, XD-shaped (5 crops, multi-label)", dataset="xd-violence"),
    World("drift-xd", "the drift world (reporting only), XD-shaped", world="drift", dataset="xd-violence"),
    *_variant_worlds(),
)}
DEFAULT_WORLDS = ("default", "drift", "xd")
# --worlds shorthands: "variants" stands for every generator variant, "all" for every world.
WORLD_GROUPS = {"variants": tuple(w.name for w in WORLDS.values() if w.variant), "all": tuple(WORLDS)}


def git_commit() -> str:
    """The project's commit ("<sha>" or "<sha>-dirty"), "unknown" outside a git checkout."""
    from gsmoe_lib.paths import PROJECT_ROOT

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(PROJECT_ROOT), *args], capture_output=True, text=True,
                              check=True, timeout=30).stdout.strip()
    try:
        sha = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return sha + ("-dirty" if dirty else "")


def world_data(world: World, work: Path, profile: str) -> Path:
    """Write (or find, when already written) the world's dataset: WORK/data/<data profile>/<world>."""
    from gsmoe_lib.data.synthetic import synthesize

    return synthesize(Path(work) / "data" / DATA_PROFILE[profile] / world.name, profile=DATA_PROFILE[profile],
                      seed=world.data_seed, dataset=world.dataset, world=world.world, force=True,
                      **world.synth_overrides(DATA_PROFILE[profile]))


def cell_key(cfg: Any, data_root: Path, stages: tuple[str, ...]) -> str:
    """A short hash of what decides a world's cells' numbers except the training seed."""
    from dataclasses import replace

    from gsmoe_lib.training.config import pipeline_identity

    ident = {"pipeline": pipeline_identity(replace(cfg, seed=0)), "data": runs.read_json(data_root / "gsmoe_dataset.json"),
             "stages": list(stages)}
    return runs.config_hash(ident)[:10]


def expert_advantage(run_dir: Path, data: Any) -> dict[str, Any] | None:
    """The own-expert advantage of a finished experts stage (`diagnostics.own_expert_advantage`)."""
    from gsmoe_lib.diagnostics import expert_class_auc, own_expert_advantage

    sdir = runs.StageDir(run_dir, "experts")
    scores_file = sdir.path / "test_expert_scores.npz"
    if not scores_file.is_file():
        return None
    test = data.test
    matrix = expert_class_auc(runs.load_scores(scores_file), {v.name: test.frame_labels(i) for i, v in
                                                              enumerate(test.videos)},
                              {v.name: tuple(v.classes) for v in test.videos}, sdir.metrics()["expert_names"],
                              list(test.classes))
    return own_expert_advantage(matrix)


def run_cell(world: World, seed: int, work: Path, profile: str, device: str, stages: tuple[str, ...],
             key: str, data_root: Path, stamp: dict[str, Any], overrides: dict[str, Any] | None = None
             ) -> dict[str, Any]:
    """Train (or load) one cell's stages and write its record (an error is returned as {"error": ...}).
    `stamp` (date, machine, commit, command of the call that trains it) stays with the cell's record;
    `overrides`: nested PipelineConfig overrides on top of the profile (part of the cell's key)."""
    from gsmoe_lib.bench.precision import measure_one
    from gsmoe_lib.bench.robustness_report import MIN_KERNEL_FRACTION, stage_record
    from gsmoe_lib.training.config import config_for
    from gsmoe_lib.training.data import load_data
    from gsmoe_lib.training.stages import STAGES

    run_dir = work / "runs" / world.name / key / f"seed-{seed}"
    record_path = work / "cells" / world.name / key / f"seed-{seed}.json"
    start = time.perf_counter()
    try:
        cfg = config_for(profile, str(data_root), world.dataset, seed, device, overrides)
        data = load_data(cfg.data, cfg.device, progress=False)
        references = tuple(s for s in stages if s not in STAGES)
        measured = measure_one(cfg, run_dir, "none", data, references=references)
        record = {"variant": world.name, "world": world.name, "seed": seed, "key": key,
                  "stages": {s: stage_record(run_dir, s, measured[s], MIN_KERNEL_FRACTION) for s in stages},
                  "own_expert_advantage": expert_advantage(run_dir, data) if "experts" in stages else None,
                  "seconds": time.perf_counter() - start, "run_dir": str(run_dir), "stamp": stamp}
        runs.write_json(record_path, record)
        return record
    except Exception as exc:  # noqa: BLE001 - one failed cell must not stop the others; it is reported
        return {"variant": world.name, "world": world.name, "seed": seed, "key": key,
                "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}


def _stage_label(stage: str) -> str:
    from gsmoe_lib.bench.robustness_report import STAGE_LABELS

    return STAGE_LABELS.get(stage, stage)


def flat_records(cells: list[dict[str, Any]], worlds: dict[str, dict[str, Any]], stamp: dict[str, Any]
                 ) -> list[dict[str, Any]]:
    """One record per (world, stage, seed): the metrics in percent, the world's L2-norm AUC (percent), and the
    date, machine, commit and command of the call that trained the cell (`stamp` for a cell that has none)."""
    out = []
    for c in cells:
        for stage, rec in c["stages"].items():
            out.append({**c.get("stamp", stamp), "world": c["world"], "dataset": worlds[c["world"]]["dataset"],
                        "generator": worlds[c["world"]]["world"], "stage": stage, "seed": c["seed"],
                        **{k: rec[k] for k in ("auc", "auc_abnormal", "ap", "ap_abnormal")},
                        "collapsed": rec["collapsed"], "seconds": rec["seconds"],
                        "l2_norm_auc": 100.0 * worlds[c["world"]]["l2_norm"]["auc"],
                        **({"own_expert_advantage": (c.get("own_expert_advantage") or {}).get("mean")}
                           if stage == "experts" else {})})
    return out


def table_rows(summary: dict[str, Any], worlds: dict[str, dict[str, Any]], cells: list[dict[str, Any]],
               stages: tuple[str, ...]) -> list[dict[str, Any]]:
    """The table as data: one row per (world, stage), "mean ± std" cells in percent."""
    from gsmoe_lib.reporting import METRIC_NAMES, mean_std, points

    rows = []
    for name, wsum in summary.items():
        l2 = 100 * worlds[name]["l2_norm"]["auc"]
        advantage = mean_std((c.get("own_expert_advantage") or {}).get("mean") for c in cells
                             if c["world"] == name)
        for stage in stages:
            if stage not in wsum["stages"]:
                continue
            s = wsum["stages"][stage]
            values = {METRIC_NAMES[k]: points(s[k]["mean"], s[k]["std"], signed=False) for k in TABLE_METRICS}
            if s["collapsed"]:
                values = {k: f"({v})" for k, v in values.items()}
            rows.append({"world": name, "stage": _stage_label(stage), "seeds": s["auc"]["n"], **values,
                         "L2-norm AUC (untrained)": f"{l2:.2f}",
                         "own-expert advantage": (points(advantage["mean"], advantage["std"])
                                                  if stage == "experts" and advantage["n"] else "–"),
                         "status": "collapsed on seeds " + ", ".join(map(str, s["collapsed_seeds"]))
                         if s["collapsed"] else "ok"})
    return rows


def markdown(result: dict[str, Any]) -> str:
    from gsmoe_lib.bench.robustness_report import _md_table

    p, env = result["parameters"], result["environment"]
    lines = ["# Generalisation across synthetic worlds", "",
             f"`{p['command']}` at commit {p['commit']}; profile **{p['profile']}**, device {p['device']} "
             f"({env.get('gpu') or env.get('cpu')}, {env.get('cpu_count')} CPUs), torch {env.get('torch')}, "
             f"{result['finished']}; {result['elapsed_s']:.0f} s for the cells run in this call.", "",
             "The drift world is used only to report, never to choose a default. The L2-norm AUC scores every "
             "snippet by the norm of its crop-averaged feature, with no training (chance: 50).", ""]
    if p.get("overrides"):
        lines += [f"Config overrides on top of the profile: `{json.dumps(p['overrides'], sort_keys=True)}`.", ""]
    lines += ["## Worlds", ""]
    lines += _md_table([{"world": w["name"], "generator": w["world"], "dataset": w["dataset"],
                         "data seed": w["data_seed"], "L2-norm AUC": f"{100 * w['l2_norm']['auc']:.2f}",
                         "L2-norm AUC_A": f"{100 * w['l2_norm']['auc_abnormal']:.2f}",
                         "L2-norm AP": f"{100 * w['l2_norm']['ap']:.2f}", "what": w["description"]}
                        for w in result["worlds"].values()])
    lines += ["", "## Results (percent, mean ± std over the training seeds)", "",
              "A stage collapsed on any seed shows its numbers in parentheses (diagnostics, not results).", ""]
    lines += _md_table(result["table"])
    if result["failures"]:
        lines += ["", "## Failed cells (rerun next time)", ""]
        lines += [f"- {f['world']} seed {f['seed']}: {f['error']}" for f in result["failures"]]
    return "\n".join(lines) + "\n"


def _worlds_from(arg: str | None) -> list[World]:
    asked = [n for n in (arg or "").split(",") if n] or list(DEFAULT_WORLDS)
    names = list(dict.fromkeys(m for n in asked for m in WORLD_GROUPS.get(n, (n,))))  # groups expanded, in order
    unknown = [n for n in names if n not in WORLDS]
    if unknown:
        raise ValueError(f"unknown world(s) {', '.join(unknown)}; known: {', '.join(WORLDS)} "
                         f"(or {', '.join(WORLD_GROUPS)})")
    return [WORLDS[n] for n in names]


def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Run (or load) the cells `args` asks for; write and return the result of generalise.json."""
    from gsmoe_lib.bench.robustness_report import summarise
    from gsmoe_lib.data.magnitude import magnitude_metrics
    from gsmoe_lib.training.config import config_for

    worlds = _worlds_from(args.worlds)
    if args.seeds < 1:
        raise ValueError(f"--seeds must be at least 1 (got {args.seeds})")
    from gsmoe_lib.training.stages import STAGES

    stages = pipeline_stages(None)  # STAGES and the reference stages the pipeline has
    order = tuple(s for s in stages if s not in STAGES) + tuple(STAGES)  # the references first, as in Table 2
    work = Path(args.work).resolve()
    out = Path(args.out) if args.out else default_out(args.device)
    overrides = runs.read_json(args.config) if args.config else None
    command = shlex.join(["gsmoe", "bench", "generalise", "--worlds", ",".join(w.name for w in worlds),
                          "--seeds", str(args.seeds), "--profile", args.profile, "--device", args.device,
                          "--work", str(args.work), "--out", str(out),
                          *(["--config", str(args.config)] if args.config else [])])
    environment = runs.environment_record(None, args.device)
    stamp = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": f"{environment['cpu']} "
             f"({environment['cpu_count']} CPUs{', ' + environment['gpu'] if environment.get('gpu') else ''})",
             "commit": git_commit(), "command": command}
    start = time.perf_counter()
    info: dict[str, dict[str, Any]] = {}
    cells: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []

    def write() -> dict[str, Any]:
        done = sorted(cells, key=lambda c: ([w.name for w in worlds].index(c["world"]), c["seed"]))
        summary = summarise(done, order)
        result = {"parameters": {"profile": args.profile, "device": args.device, "seeds": args.seeds,
                                 "overrides": overrides,
                                 "worlds": [w.name for w in worlds], "work": str(work), "stages": list(order),
                                 "commit": stamp["commit"], "command": stamp["command"]},
                  "environment": environment, "finished": time.strftime("%Y-%m-%d %H:%M"),
                  "elapsed_s": time.perf_counter() - start, "worlds": info, "cells": done, "summary": summary,
                  "table": table_rows(summary, info, done, order), "records": flat_records(done, info, stamp),
                  "failures": [{k: f.get(k) for k in ("world", "seed", "error", "traceback")} for f in failures]}
        runs.write_json(out / "generalise.json", result)
        runs.write_text(out / "generalise.md", markdown(result))
        return result

    from tqdm.auto import tqdm

    with tqdm(total=len(worlds) * args.seeds, desc="generalise cells", unit="cell", disable=args.quiet) as bar:
        for world in worlds:
            data_root = world_data(world, work, args.profile)
            info[world.name] = {**asdict(world), "data_root": str(data_root),
                                "synth_overrides": world.synth_overrides(DATA_PROFILE[args.profile]),
                                "l2_norm": magnitude_metrics(data_root, world.dataset)}
            key = cell_key(config_for(args.profile, str(data_root), world.dataset, 0, args.device, overrides),
                           data_root, order)
            for seed in range(args.seeds):
                record_path = work / "cells" / world.name / key / f"seed-{seed}.json"
                if args.rerun:
                    record_path.unlink(missing_ok=True)
                    shutil.rmtree(work / "runs" / world.name / key / f"seed-{seed}", ignore_errors=True)
                rec = (runs.read_json(record_path) if record_path.is_file() else
                       run_cell(world, seed, work, args.profile, args.device, order, key, data_root, stamp,
                                overrides))
                (failures if rec.get("error") else cells).append(rec)
                bar.set_postfix_str(f"{world.name} seed {seed}" + (" FAILED" if rec.get("error") else ""))
                bar.update(1)
                write()
    result = write()
    if not args.quiet:
        print(markdown(result))
        print(f"written: {out / 'generalise.json'}, {out / 'generalise.md'}")
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--worlds", default=None,
                        help=f"comma-separated subset of {','.join(WORLDS)}, or 'variants' (every generator "
                             f"variant) or 'all' (default: {','.join(DEFAULT_WORLDS)})")
    parser.add_argument("--seeds", type=int, default=3, help="training seeds 0..N-1 per world (default 3)")
    parser.add_argument("--profile", choices=tuple(DATA_PROFILE), default="quick")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--config", default=None,
                        help="JSON file of nested PipelineConfig overrides (as gsmoe train), e.g. an extension to "
                             "measure on every world; part of each cell's key")
    parser.add_argument("--work", default="runs/generalise", help="cached data, run folders and cell records")
    parser.add_argument("--out", default=None,
                        help="folder for generalise.json / .md (default: benchmarks/results-<machine>)")
    parser.add_argument("--rerun", action="store_true", help="retrain the requested cells (records deleted first)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar, no table on stdout")


def run(args: argparse.Namespace) -> int:
    result = benchmark(args)
    return 1 if result["failures"] else 0
