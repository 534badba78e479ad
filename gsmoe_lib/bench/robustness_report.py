"""What `gsmoe bench robustness` makes of its cells: collapse, the summary, the targets, the tables.

A cell (one variant x one training seed, `bench.robustness`) trains its stages; `stage_record` reads each
finished stage's metrics (in percent) and decides whether it collapsed on that seed; `summarise` gives the
per-variant mean ± std over the seeds (`reporting.mean_std`), `check_targets` the targets and
`markdown` robustness.md. Nothing here trains: the checks are tested on planted summaries
(tests/unit/test_robustness_checks.py).

Collapse (a degenerate stage is reported as collapsed, not as a metric). A stage is collapsed on
a seed when
- its test scores' pooled std is below `metrics.COLLAPSE_STD` (1e-3): the stage's own `score_std` /
  `collapsed` metrics, else computed from RUN/<stage>/test_scores.npz (`metrics.score_spread`); or
- its pseudo-labels had a TGS kernel on fewer than `--min-kernel-fraction` (0.5, "most") of the abnormal
  training samples, or the stage itself says they were degenerate (the stage metrics
  `pseudo_label_coverage` and `pseudo_labels_degenerate`, `training.pseudo_labels.check_coverage`).
A stage collapsed on any seed of a variant is marked collapsed for the variant; its numbers stay in the
JSON and appear in parentheses in the table, as diagnostics, not results.

Targets checked per variant (means over the variant's seeds):
- no stage collapsed;
- gate ≥ TGS ≥ baseline ≥ Sultani MIL on AUC_A (Sultani left out of the chain when the pipeline has no
  such stage, and the check says so);
- XD-shaped variants: gate AP_A ≥ TGS AP_A ≥ baseline AP_A;
- the UCF default: also gate ≥ TGS ≥ baseline ≥ Sultani MIL on AUC, and gate AUC std ≤ 1.5 points.
A check over fewer seeds than the variant asks for is reported as incomplete (passed: null).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from gsmoe_lib import runs
from gsmoe_lib.reporting import METRIC_NAMES, REPORTED_METRICS, mean_std, points

METRICS = REPORTED_METRICS  # the paper's four, in percent in the cells
STAGE_LABELS = {"sultani": "Sultani MIL (reference)", "encoder": "UR-DMU baseline", "tgs": "+ TGS",
                "experts": "+ experts", "gate": "+ gate (GS-MoE)"}
SHORT_NAMES = {"sultani": "Sultani MIL", "encoder": "baseline", "tgs": "TGS", "experts": "experts", "gate": "gate"}
TABLE_ORDER = ("sultani", "encoder", "tgs", "experts", "gate")
GATE_AUC_STD_MAX = 1.5     # the UCF target: gate AUC std ≤ 1.5 points
MIN_KERNEL_FRACTION = 0.5  # "no kernel on most abnormal training samples": a collapsed stage


class TargetsOf(Protocol):
    """What the targets read of a variant (`robustness.Variant`): its seeds, its dataset, whether a default."""

    seeds: int
    dataset: str
    default: bool


def stage_record(run_dir: Path, stage: str, measured: dict[str, Any],
                 min_kernel_fraction: float = MIN_KERNEL_FRACTION) -> dict[str, Any]:
    """One stage of one cell: metrics in percent, seconds, score std, kernel fraction, collapse reasons."""
    from gsmoe_lib.metrics import COLLAPSE_STD, score_spread

    sdir = runs.StageDir(run_dir, stage)
    metrics = sdir.metrics()
    rec: dict[str, Any] = {k: 100.0 * float(metrics[k]) for k in METRICS}
    rec["seconds"] = float(measured.get("seconds", float("nan")))
    rec["loaded"] = bool(measured.get("loaded", False))
    reasons = []
    if "score_std" in metrics:
        rec["score_std"], rec["score_std_source"] = float(metrics["score_std"]), "metrics"
    else:
        rec["score_std"] = score_spread(runs.load_scores(sdir.path / "test_scores.npz"))
        rec["score_std_source"] = "test_scores.npz"
    if metrics.get("collapsed") or rec["score_std"] < COLLAPSE_STD:
        reasons.append(f"test-score std {rec['score_std']:.1e} < {COLLAPSE_STD:g}")
    # the share of abnormal training samples whose pseudo-labels have a TGS kernel (training.pseudo_labels.check_coverage);
    # None for stages without pseudo-labels (encoder, sultani)
    frac = metrics.get("pseudo_label_coverage")
    rec["kernel_fraction"] = None if frac is None else float(frac)
    if metrics.get("pseudo_labels_degenerate") or (frac is not None and frac < min_kernel_fraction):
        reasons.append(f"pseudo-label kernel on {100 * rec['kernel_fraction']:.0f}% of the abnormal training "
                       f"samples (< {100 * min_kernel_fraction:.0f}%)")
    rec["collapsed"], rec["collapse_reasons"] = bool(reasons), reasons
    return rec


def summarise(cells: list[dict[str, Any]], stages: tuple[str, ...]) -> dict[str, Any]:
    """variant -> stage -> {metric: {mean, std, n}, seconds, collapsed, collapsed_seeds, reasons}."""
    out: dict[str, Any] = {}
    for name in dict.fromkeys(c["variant"] for c in cells):
        rows = sorted((c for c in cells if c["variant"] == name), key=lambda c: c["seed"])
        out[name] = {"seeds": [c["seed"] for c in rows], "stages": {}}
        for stage in stages:
            recs = [(c["seed"], c["stages"][stage]) for c in rows if stage in c["stages"]]
            if not recs:
                continue
            cell: dict[str, Any] = {k: mean_std(r[k] for _, r in recs) for k in (*METRICS, "seconds")}
            cell["score_std_min"] = min(r["score_std"] for _, r in recs)
            fracs = [r["kernel_fraction"] for _, r in recs if r.get("kernel_fraction") is not None]
            cell["kernel_fraction_min"] = min(fracs) if fracs else None
            cell["collapsed_seeds"] = [s for s, r in recs if r["collapsed"]]
            cell["collapsed"] = bool(cell["collapsed_seeds"])
            cell["reasons"] = [f"seed {s}: {why}" for s, r in recs for why in r["collapse_reasons"]]
            out[name]["stages"][stage] = cell
    return out


def _chain(vsum: dict[str, Any], chain: tuple[str, ...], metric: str) -> tuple[bool | None, str, list[str]]:
    """Is mean(metric) non-increasing along `chain`? Stages absent from the summary are left out."""
    present = [s for s in chain if s in vsum["stages"]]
    missing = [s for s in chain if s not in vsum["stages"]]
    values = [vsum["stages"][s][metric]["mean"] for s in present]
    ok = all(a >= b for a, b in zip(values, values[1:])) if len(values) > 1 else None
    text = " ≥ ".join(f"{SHORT_NAMES[s]} {v:.2f}" for s, v in zip(present, values))
    return ok, text, missing


def check_targets(variant: TargetsOf, vsum: dict[str, Any]) -> list[dict[str, Any]]:
    """The targets on one variant's summary: [{target, passed (True/False/None), detail}].

    passed is None when the variant has fewer seeds than it asks for (incomplete) or a stage is missing.
    """
    complete = len(vsum["seeds"]) >= variant.seeds
    incomplete = "" if complete else f" (incomplete: {len(vsum['seeds'])} of {variant.seeds} seeds)"
    checks = []

    def add(target: str, ok: bool | None, detail: str) -> None:
        checks.append({"target": target, "passed": ok if complete else None, "detail": detail + incomplete})

    collapsed = {s: c for s, c in vsum["stages"].items() if c["collapsed"]}
    add("no stage collapsed", not collapsed,
        "; ".join(f"{STAGE_LABELS[s]}: {'; '.join(c['reasons'])}" for s, c in collapsed.items()) or "none")
    chains = [("auc_abnormal", ("gate", "tgs", "encoder", "sultani"))]
    if variant.dataset == "xd-violence":
        chains.append(("ap_abnormal", ("gate", "tgs", "encoder")))
    if variant.default and variant.dataset == "ucf-crime":
        chains.append(("auc", ("gate", "tgs", "encoder", "sultani")))
    for metric, chain in chains:
        ok, text, missing = _chain(vsum, chain, metric)
        note = f" ({', '.join(STAGE_LABELS[s] for s in missing)} not run)" if missing else ""
        names = " ≥ ".join(SHORT_NAMES[s] for s in chain)
        add(f"{names} on {METRIC_NAMES[metric]}", ok, text + note)
    if variant.default and variant.dataset == "ucf-crime" and "gate" in vsum["stages"]:
        std, n = vsum["stages"]["gate"]["auc"]["std"], vsum["stages"]["gate"]["auc"]["n"]
        add(f"gate AUC std ≤ {GATE_AUC_STD_MAX}", std <= GATE_AUC_STD_MAX if n > 1 else None,
            f"{std:.2f}" if n > 1 else "needs 2 seeds or more")
    return checks


def table_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The results table as data: one row per (variant, stage), the cells as the markdown shows them."""
    rows = []
    for name, vsum in summary.items():
        for stage in TABLE_ORDER:
            if stage not in vsum["stages"]:
                continue
            c = vsum["stages"][stage]
            values = {METRIC_NAMES[k]: points(c[k]["mean"], c[k]["std"], signed=False) for k in METRICS}
            if c["collapsed"]:
                values = {k: f"({v})" for k, v in values.items()}
            status = (f"collapsed on seed{'s' if len(c['collapsed_seeds']) > 1 else ''} "
                      f"{', '.join(map(str, c['collapsed_seeds']))}") if c["collapsed"] else "ok"
            rows.append({"variant": name, "stage": STAGE_LABELS[stage], "seeds": c["auc"]["n"], **values,
                         "s / seed": f"{c['seconds']['mean']:.1f}", "status": status})
    return rows


def _md_table(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return ["(no finished cell)"]
    keys = list(rows[0])
    return (["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
            + ["| " + " | ".join(str(r[k]) for k in keys) + " |" for r in rows])


def markdown(result: dict[str, Any]) -> str:
    """robustness.md: parameters, the variants, the results table, the targets, failures."""
    p, env = result["parameters"], result["environment"]
    lines = [
        "# Robustness benchmark", "",
        f"`gsmoe bench robustness` — profile **{p['profile']}**, device {p['device']} "
        f"({env.get('gpu') or env.get('cpu')}, {env.get('cpu_count')} CPUs), {p['jobs']} job(s) × "
        f"{p['threads']} thread(s), torch {env.get('torch')}, {result['finished']}; "
        f"{result['elapsed_s']:.0f} s for the cells run in this call ({result['cells_run']} run, "
        f"{result['cells_cached']} cached).", "",
        "## Variants", "",
    ]
    vrows = [{"variant": v["name"], "dataset": v["dataset"], "data seed": v["data_seed"],
              "change": ", ".join([f"{k} × {f:g}" for k, f in v["scale"].items()]
                                  + [f"{k} = {x}" for k, x in v["set"].items()]) or "none",
              "seeds": len(result["summary"].get(v["name"], {}).get("seeds", [])),
              "what": v["description"]} for v in result["variants"]]
    lines += _md_table(vrows)
    lines += ["", "## Results (percent, mean ± std over the training seeds)", "",
              "A stage collapsed on any seed (test-score std < 1e-3, or pseudo-label kernels on fewer than "
              f"{100 * p['min_kernel_fraction']:.0f}% of the abnormal training samples) shows its numbers in "
              "parentheses: they are diagnostics, not results. Seconds per seed share the machine with the "
              "other jobs.", ""]
    lines += _md_table(table_rows(result["summary"]))
    lines += ["", "## Targets", ""]
    trows = [{"variant": name, "target": c["target"],
              "result": {True: "met", False: "**missed**", None: "incomplete"}[c["passed"]], "figures": c["detail"]}
             for name, checks in result["checks"].items() for c in checks]
    lines += _md_table(trows)
    reasons = [(name, STAGE_LABELS[s], why) for name, vsum in result["summary"].items()
               for s, c in vsum["stages"].items() for why in c["reasons"]]
    if reasons:
        lines += ["", "## Collapse reasons", ""] + [f"- {n}, {s}: {why}" for n, s, why in reasons]
    if result["failures"]:
        lines += ["", "## Failed cells (rerun next time)", ""]
        lines += [f"- {f['variant']} seed {f['seed']}: {f['error']}" for f in result["failures"]]
    return "\n".join(lines) + "\n"

