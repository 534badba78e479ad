"""`gsmoe bench moe-options`: the MoE options over seeds on the UCF- and XD-shaped quick data.

    gsmoe bench moe-options --device cuda --jobs 10 --threads 1 --seeds 0,1,2,3,4 --groups D0,R
    gsmoe bench moe-options --summarise benchmarks/results-h100/moe_options.json   # the markdown table

Groups (`GROUPS`: each a set of PipelineConfig overrides on the quick profile; one process per dataset x seed
x group):
  D0  the defaults (frozen-teacher pseudo-labels), then on the same encoder / TGS / experts two extensions:
      "neg" (ExpertsConfig.other_class_negatives = 0.5) and "fd" (GateConfig.feature_dropout = 0.5);
  R   pseudo-labels refreshed from each stage's own scores once per epoch (TGSConfig.source = "refresh");
  TR  experts and gate: the teacher's labels first, then their own ("teacher-refresh").
Per cell: every stage's metrics (score std, pseudo-label coverage, loss trend), the own-expert advantage
(diagnostics.own_expert_advantage) and Table 4's masking drop by zero and by the other experts' mean
(diagnostics.masking_drop). Results: OUT/gpu_exp.json, rewritten after every cell; its table (mean ± std over
the seeds): `diagnostics.options_table`. Notebook 11 shows the committed H100 measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import traceback
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

REFRESH = {k: {"tgs": {"source": "refresh"}} for k in ("tgs", "experts", "gate")}
# group -> (PipelineConfig overrides of the main pipeline, {extension name: experts / gate overrides on top of it})
GROUPS: dict[str, tuple[dict[str, Any], dict[str, dict[str, Any]]]] = {
    # the defaults, then two extensions on top of the same encoder / TGS / experts
    "D0": ({}, {"neg": {"experts": {"other_class_negatives": 0.5}}, "fd": {"gate": {"feature_dropout": 0.5}}}),
    # pseudo-labels refreshed from each stage's own scores (the other reading of the paper)
    "R": (REFRESH, {}),
    # teacher first, then refreshed from the stage's own scores (experts and gate)
    "TR": ({k: {"tgs": {"source": "teacher-refresh"}} for k in ("experts", "gate")}, {}),
}
DATASETS = {"ucf": "ucf-crime", "xd": "xd-violence"}
ROW_METRICS = ("auc", "auc_abnormal", "ap", "ap_abnormal", "score_std", "pseudo_label_coverage",
               "loss_trend_last_fifth", "pseudo_label_refreshes")


def diagnostics(res_experts, res_gate, data, device: str) -> dict[str, Any]:
    """The own-expert advantage (from the experts' test scores) and the gate's masking table and drop."""
    from gsmoe_lib.diagnostics import expert_class_auc, expert_masking, masking_drop, own_expert_advantage
    from gsmoe_lib.runs import load_scores

    test = data.test
    names = res_experts.metrics["expert_names"]
    expert_scores = load_scores(Path(res_experts.path) / "test_expert_scores.npz")
    frame_labels = {v.name: test.frame_labels(i) for i, v in enumerate(test.videos)}
    classes = {v.name: tuple(v.classes) for v in test.videos}
    auc = expert_class_auc(expert_scores, frame_labels, classes, names, list(test.classes))
    out: dict[str, Any] = {"advantage": own_expert_advantage(auc)}
    if res_gate is not None:
        table = expert_masking(res_gate.model.to(device), test, names, device)
        out["masking"] = table
        out["masking_drop"] = masking_drop(table)
    return out


def metrics_row(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: metrics.get(k) for k in ROW_METRICS}


def cell(task: dict[str, Any]) -> dict[str, Any]:
    """One (dataset, seed, group) in a worker process: the group's pipeline, then its extensions."""
    import torch

    from gsmoe_lib.training.config import config_for
    from gsmoe_lib.training.data import load_data
    from gsmoe_lib.training.pipeline import run_pipeline, run_variant

    torch.set_num_threads(task["threads"])
    warnings.simplefilter("ignore")
    ds, seed, group, device = task["ds"], task["seed"], task["group"], task["device"]
    overrides, extensions = GROUPS[group]
    t0 = time.time()
    rec: dict[str, Any] = {"ds": ds, "seed": seed, "group": group}
    try:
        cfg = config_for(task["profile"], task["root"], "", seed, device, overrides=overrides)
        data = load_data(cfg.data, device, progress=False)
        run = Path(task["work"]) / ds / group / f"seed-{seed}"
        res = run_pipeline(cfg, run, progress=False, data=data)
        rec[group] = {s: metrics_row(r.metrics) for s, r in res.items()}
        rec[group]["diag"] = diagnostics(res["experts"], res["gate"], data, device)
        rec[group]["time"] = time.time() - t0
        for name, ov in extensions.items():
            t1 = time.time()
            v = run_variant(cfg, run, name, experts=ov.get("experts"), gate=ov.get("gate"), data=data,
                                  progress=False)
            rec[name] = {s: metrics_row(r.metrics) for s, r in v.items()}
            rec[name]["diag"] = diagnostics(v["experts"], v["gate"], data, device)
            rec[name]["time"] = time.time() - t1
    except Exception:  # noqa: BLE001 - one failed cell must not stop the others; its record says why
        rec["error"] = traceback.format_exc()
    return rec


def summarise(path: str | Path) -> str:
    """Markdown: mean ± std over seeds of every stage's metrics and the diagnostics, per dataset and option."""
    from gsmoe_lib.diagnostics import options_table

    df = options_table(json.loads(Path(path).read_text()))
    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def _names(arg: str, known: Any, what: str) -> list[str]:
    names = [n for n in arg.split(",") if n]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise ValueError(f"unknown {what} {unknown or '(none)'}; expected some of {', '.join(known)}")
    return names


def run_cells(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Write each dataset once, then every (group, seed, dataset) cell in a pool; OUT/gpu_exp.json after each."""
    import multiprocessing

    from gsmoe_lib.data.synthetic import synthesize

    groups, datasets = _names(args.groups, GROUPS, "groups"), _names(args.datasets, DATASETS, "datasets")
    seeds = [int(s) for s in args.seeds.split(",") if s]
    roots = {}
    for ds in datasets:
        root = Path(args.work) / "data" / ds
        if not root.exists():
            synthesize(root, profile=args.profile, seed=0, dataset=DATASETS[ds])
        roots[ds] = str(root)
    print("data ready", flush=True)
    tasks = [dict(ds=ds, seed=s, group=g, device=args.device, threads=args.threads, root=roots[ds],
                  work=args.work, profile=args.profile) for g in groups for s in seeds for ds in datasets]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []
    # spawned workers: CUDA cannot be used in forked ones
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        for f in as_completed([pool.submit(cell, t) for t in tasks]):
            r = f.result()
            results.append(r)
            (out / "gpu_exp.json").write_text(json.dumps(results, indent=1, default=str))
            short = {k: (round(100 * v["gate"]["auc"], 2), round(100 * v["experts"]["auc"], 2),
                         None if not v["diag"]["advantage"] else round(v["diag"]["advantage"]["mean"], 2))
                     for k, v in r.items() if isinstance(v, dict) and "gate" in v}
            print(r["ds"], r["seed"], r["group"], short, r.get("error", "")[-800:], flush=True)
    return results


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--summarise", default=None, metavar="FILE",
                        help="print the markdown table of a gpu_exp.json and run nothing")
    parser.add_argument("--out", default=os.environ.get("OUT", "/tmp/gpu_exp"), help="folder of gpu_exp.json")
    parser.add_argument("--work", default="/tmp/gpu_exp_work", help="data and run folders")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--jobs", type=int, default=8, help="cells at once, each in its own process")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per job")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated training seeds")
    parser.add_argument("--datasets", default="ucf,xd", help="comma-separated subset of " + ",".join(DATASETS))
    parser.add_argument("--groups", default=",".join(GROUPS), help="comma-separated subset of " + ",".join(GROUPS))
    parser.add_argument("--profile", default="quick")


def run(args: argparse.Namespace) -> int:
    if args.summarise:
        print(summarise(args.summarise))
        return 0
    results = run_cells(args)
    return 1 if any("error" in r for r in results) else 0
