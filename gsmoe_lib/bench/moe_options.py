"""The MoE options of issue 12 over seeds, on the UCF- and XD-shaped quick data: pseudo-label sources and extensions.

    python benchmarks/moe_options.py --device cuda --jobs 10 --threads 1 --seeds 0,1,2,3,4 --groups D0,R
    python benchmarks/moe_options.py --summarise benchmarks/results-h100/moe_options.json   # the markdown table

Groups (each a set of PipelineConfig overrides on the quick profile; one process per dataset x seed x group):
  D0  the defaults (frozen-teacher pseudo-labels), then on the same encoder / TGS / experts two extensions:
      "neg" (ExpertsConfig.other_class_negatives = 0.5) and "fd" (GateConfig.feature_dropout = 0.5);
  R   pseudo-labels refreshed from each stage's own scores once per epoch (TGSConfig.source = "refresh");
  TR  experts and gate: the teacher's labels first, then their own ("teacher-refresh").
Per cell: every stage's metrics (score std, pseudo-label coverage, loss trend), the own-expert advantage
(evaluate.own_expert_advantage) and Table 4's masking drop by zero and by the other experts' mean
(evaluate.masking_drop). Results: OUT/gpu_exp.json, rewritten after every cell. Notebook 23 shows them.
"""
import argparse, json, os, sys, time, traceback, warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

REFRESH = {k: {"tgs": {"source": "refresh"}} for k in ("tgs", "experts", "gate")}
GROUPS = {
    # the defaults, then two extensions on top of the same encoder / TGS / experts
    "D0": ({}, {"neg": {"experts": {"other_class_negatives": 0.5}}, "fd": {"gate": {"feature_dropout": 0.5}}}),
    # pseudo-labels refreshed from each stage's own scores (the other reading of the paper)
    "R": (REFRESH, {}),
    # teacher first, then refreshed from the stage's own scores (experts and gate)
    "TR": ({k: {"tgs": {"source": "teacher-refresh"}} for k in ("experts", "gate")}, {}),
}


def diag(res_exp, res_gate, data, device):
    import numpy as np, torch
    from gsmoe_lib import evaluate
    from gsmoe_lib.train import load_scores
    test = data.test
    out = {}
    names = res_exp.metrics["expert_names"]
    p = Path(res_exp.path) / "test_expert_scores.npz"
    es = load_scores(p)
    fl = {v.name: test.frame_labels(i) for i, v in enumerate(test.videos)}
    vc = {v.name: tuple(v.classes) for v in test.videos}
    m = evaluate.expert_class_auc(es, fl, vc, names, list(test.classes))
    adv = evaluate.own_expert_advantage(m)
    out["advantage"] = adv
    if res_gate is not None:
        tab = evaluate.expert_masking_fills(res_gate.model.to(device), test, names, device)
        out["masking"] = tab
        out["masking_drop"] = evaluate.masking_drop(tab)
    return out


def metrics_row(m):
    keys = ("auc", "auc_abnormal", "ap", "ap_abnormal", "score_std", "pseudo_label_coverage",
            "loss_trend_last_fifth", "pseudo_label_refreshes")
    return {k: m.get(k) for k in keys}


def cell(task):
    import torch
    torch.set_num_threads(task["threads"])
    warnings.simplefilter("ignore")
    sys.path.insert(0, task["repo"])
    from gsmoe_lib import train
    ds, seed, group, device = task["ds"], task["seed"], task["group"], task["device"]
    over, variants = GROUPS[group]
    t0 = time.time()
    rec = {"ds": ds, "seed": seed, "group": group}
    try:
        cfg = train.config_for(task["profile"], task["root"], "", seed, device, overrides=over)
        data = train.load_data(cfg.data, device, progress=False)
        run = Path(task["work"]) / ds / group / f"seed-{seed}"
        res = train.run_pipeline(cfg, run, progress=False, data=data)
        rec[group] = {s: metrics_row(r.metrics) for s, r in res.items()}
        rec[group]["diag"] = diag(res["experts"], res["gate"], data, device)
        rec[group]["time"] = time.time() - t0
        for name, ov in variants.items():
            t1 = time.time()
            v = train.run_variant(cfg, run, name, experts=ov.get("experts"), gate=ov.get("gate"), data=data,
                                  progress=False)
            rec[name] = {s: metrics_row(r.metrics) for s, r in v.items()}
            rec[name]["diag"] = diag(v["experts"], v["gate"], data, device)
            rec[name]["time"] = time.time() - t1
    except Exception:
        rec["error"] = traceback.format_exc()
    return rec


def summarise(path: str) -> str:
    """Markdown: mean ± std over seeds of every stage's metrics and the diagnostics, per dataset and option."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from gsmoe_lib.evaluate import options_table
    df = options_table(json.loads(Path(path).read_text()))
    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--summarise":
        print(summarise(sys.argv[2]))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.environ.get("OUT", "/tmp/gpu_exp"))
    ap.add_argument("--work", default="/tmp/gpu_exp_work")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--jobs", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--datasets", default="ucf,xd")
    ap.add_argument("--groups", default="A,B,O")
    ap.add_argument("--profile", default="quick")
    a = ap.parse_args()
    repo = str(Path(__file__).resolve().parents[1])  # the project root (benchmarks/..)
    sys.path.insert(0, repo)
    from gsmoe_lib.data.synthetic import synthesize
    roots = {}
    for ds in a.datasets.split(","):
        root = Path(a.work) / "data" / ds
        if not root.exists():
            synthesize(root, profile=a.profile, seed=0, dataset={"ucf": "ucf-crime", "xd": "xd-violence"}[ds])
        roots[ds] = str(root)
    print("data ready", flush=True)
    tasks = [dict(ds=ds, seed=int(s), group=g, device=a.device, threads=a.threads, repo=repo, root=roots[ds],
                  work=a.work, profile=a.profile) for g in a.groups.split(",") for s in a.seeds.split(",") for ds in a.datasets.split(",")]
    Path(a.out).mkdir(parents=True, exist_ok=True)
    results = []
    import multiprocessing as mp
    with ProcessPoolExecutor(a.jobs, mp_context=mp.get_context("spawn")) as pool:
        futs = [pool.submit(cell, t) for t in tasks]
        for f in as_completed(futs):
            r = f.result()
            results.append(r)
            (Path(a.out) / "gpu_exp.json").write_text(json.dumps(results, indent=1, default=str))
            short = {k: (round(100 * v["gate"]["auc"], 2), round(100 * v["experts"]["auc"], 2),
                         None if not v["diag"]["advantage"] else round(v["diag"]["advantage"]["mean"], 2))
                     for k, v in r.items() if isinstance(v, dict) and "gate" in v}
            print(r["ds"], r["seed"], r["group"], short, r.get("error", "")[-800:], flush=True)


if __name__ == "__main__":
    main()
