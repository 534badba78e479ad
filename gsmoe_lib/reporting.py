"""What we report and how: the paper's numbers, the metric names, one number format, mean ± std over seeds,
and the markdown tables that put our numbers beside the paper's.

Everything that turns metrics into text or tables lives here, so that `gsmoe reproduce` (results.md),
`gsmoe sweep` (sweep.md), the precision / robustness benchmarks and the notebooks say the same thing the
same way. Conventions, one each:

- **Metrics** are the keys of `metrics.evaluate_scores` (fractions in [0, 1]). `METRICS` lists all six in
  reading order; `REPORTED_METRICS` the paper's four (AUC, AUC_A, AP, AP_A), which the tables show.
- **Text.** `percent(fraction, std)` and `points(value, std)` are the one number format: two decimals,
  "–" where there is no number (None), "nan" where the metric is undefined (NaN), " ± std" only when the
  std is a number (one seed has none).
- **Over seeds.** `mean_std(values)` is the one mean ± std: the mean and the *sample* standard deviation
  (ddof = 1; NaN with fewer than two values: one seed says nothing about the spread). None is a missing
  value and is left out; a NaN value makes the mean NaN (reported, not hidden).

This module imports no training code (only `metrics` for the collapse threshold), so any module may use it.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from gsmoe_lib.metrics import COLLAPSE_STD

# ----------------------------------------------------------------------------------------------------
# Metric names

# Every metric of `metrics.evaluate_scores`, in reading order (both AP conventions; see metrics.py).
METRICS: tuple[str, ...] = ("auc", "auc_abnormal", "ap", "ap_trapz", "ap_abnormal", "ap_abnormal_trapz")
# The paper's four, shown in the comparison tables (the trapezoid APs face the same paper numbers).
REPORTED_METRICS: tuple[str, ...] = ("auc", "auc_abnormal", "ap", "ap_abnormal")

METRIC_NAMES: dict[str, str] = {
    "auc": "AUC",
    "auc_abnormal": "AUC_A",
    "ap": "AP",
    "ap_trapz": "AP (trapz)",
    "ap_abnormal": "AP_A",
    "ap_abnormal_trapz": "AP_A (trapz)",
}

# Which paper metric each of ours faces (both AP conventions face the paper's AP).
PAPER_METRIC: dict[str, str] = {"ap_trapz": "ap", "ap_abnormal_trapz": "ap_abnormal"}

# ----------------------------------------------------------------------------------------------------
# The paper's numbers

# Percent, as printed. Keys: (dataset, row, metric). Rows: "ur-dmu" and "gs-moe" from Table 1 (state of
# the art); "baseline", "tgs", "experts", "gate" from Table 2 (the ablation, one row per training stage);
# "gate-no-features" from Table 3; "clusters-5/6/7" from Table 5. The paper disagrees with itself on
# UR-DMU's XD-Violence AP_A (Table 1: 83.94, Table 2 baseline: 82.91); both are kept under their rows.
# The paper does not say which AP convention it uses, so its AP is shown beside both of ours.
# "sultani": Table 1's MIL (Sultani et al. 2018) with I3D features, UCF-Crime AUC only (its XD-Violence
# numbers, AP 75.68 / AP_A 78.61, are C3D's and are not shown beside our I3D-shaped features).
PAPER_NUMBERS: dict[tuple[str, str, str], float] = {
    ("ucf-crime", "sultani", "auc"): 77.42,
    ("ucf-crime", "ur-dmu", "auc"): 86.97,
    ("ucf-crime", "ur-dmu", "auc_abnormal"): 70.81,
    ("xd-violence", "ur-dmu", "ap"): 81.66,
    ("xd-violence", "ur-dmu", "ap_abnormal"): 83.94,
    ("ucf-crime", "gs-moe", "auc"): 91.58,
    ("ucf-crime", "gs-moe", "auc_abnormal"): 83.86,
    ("xd-violence", "gs-moe", "ap"): 82.89,
    ("xd-violence", "gs-moe", "ap_abnormal"): 85.74,
    ("ucf-crime", "baseline", "auc"): 86.97,
    ("xd-violence", "baseline", "auc"): 94.07,
    ("ucf-crime", "baseline", "ap_abnormal"): 45.65,
    ("xd-violence", "baseline", "ap_abnormal"): 82.91,
    ("ucf-crime", "tgs", "auc"): 88.74,
    ("xd-violence", "tgs", "auc"): 94.13,
    ("ucf-crime", "tgs", "ap_abnormal"): 46.01,
    ("xd-violence", "tgs", "ap_abnormal"): 83.39,
    ("ucf-crime", "experts", "auc"): 89.53,
    ("xd-violence", "experts", "auc"): 94.29,
    ("ucf-crime", "experts", "ap_abnormal"): 47.17,
    ("xd-violence", "experts", "ap_abnormal"): 84.16,
    ("ucf-crime", "gate", "auc"): 91.58,
    ("xd-violence", "gate", "auc"): 94.52,
    ("ucf-crime", "gate", "ap_abnormal"): 51.63,
    ("xd-violence", "gate", "ap_abnormal"): 85.74,
    ("ucf-crime", "gate-no-features", "auc"): 90.98,
    ("xd-violence", "gate-no-features", "ap_abnormal"): 81.45,
    ("ucf-crime", "clusters-5", "auc"): 87.35,
    ("ucf-crime", "clusters-6", "auc"): 88.03,
    ("ucf-crime", "clusters-7", "auc"): 88.58,
}

# Table 4 (UCF-Crime, percent): class-wise AUC of the full GS-MoE ("unmasked") and with that class's
# expert's scores zeroed before the gate ("masked").
PAPER_CLASSWISE_AUC: dict[str, dict[str, float]] = {
    "unmasked": {
        "Abuse": 86.37, "Arrest": 55.48, "Arson": 61.73, "Assault": 63.12, "Burglary": 53.65,
        "Explosion": 57.04, "Fighting": 65.14, "RoadAccidents": 65.22, "Robbery": 72.37,
        "Shooting": 60.89, "Shoplifting": 54.73, "Stealing": 77.62, "Vandalism": 57.43,
    },
    "masked": {
        "Abuse": 50.02, "Arrest": 50.51, "Arson": 49.27, "Assault": 50.72, "Burglary": 49.49,
        "Explosion": 49.92, "Fighting": 49.95, "RoadAccidents": 49.91, "Robbery": 50.04,
        "Shooting": 49.20, "Shoplifting": 49.39, "Stealing": 50.52, "Vandalism": 49.87,
    },
}


def paper_number(dataset: str, row: str, metric: str) -> float | None:
    """The paper's number (percent) for one of our metrics, or None where the paper has none."""
    return PAPER_NUMBERS.get((dataset, row, PAPER_METRIC.get(metric, metric)))


def paper_rows(dataset: str, rows: Mapping[str, str], metrics: Sequence[str] = REPORTED_METRICS
               ) -> dict[str, dict[str, float]]:
    """label -> {metric: the paper's number (percent)} for rows given as label -> paper row key (figures)."""
    return {label: {m: p for m in metrics if (p := paper_number(dataset, key, m)) is not None}
            for label, key in rows.items()}


# ----------------------------------------------------------------------------------------------------
# Numbers as text


def _text(value: Any, std: Any, scale: float, signed: bool) -> str:
    if value is None:
        return "–"
    v = float(value)
    if math.isnan(v):
        return "nan"
    text = f"{scale * v:+.2f}" if signed else f"{scale * v:.2f}"
    if std is not None and not math.isnan(float(std)):
        text += f" ± {scale * float(std):.2f}"
    return text


def percent(fraction: Any, std: Any = None) -> str:
    """A fraction as percent text with two decimals ("91.58", "91.58 ± 0.41"); "–" for None, "nan" for NaN."""
    return _text(fraction, std, 100.0, False)


def points(value: Any, std: Any = None, signed: bool = True) -> str:
    """A number already in percent / AUC points as text ("+3.20 ± 1.10"); "–" for None, "nan" for NaN."""
    return _text(value, std, 1.0, signed)


# ----------------------------------------------------------------------------------------------------
# Mean ± std over seeds


def mean_std(values: Iterable[float | None]) -> dict[str, float]:
    """{"mean", "std", "n"} of `values` (one per seed): the module's one mean ± std.

    None entries are missing and left out (n counts the rest); a NaN value makes mean and std NaN; std is
    the sample standard deviation (ddof = 1), NaN for fewer than two values; no value at all gives a NaN
    mean. Computed with `statistics` (exactly rounded sums), so the result does not depend on the order.
    """
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return {"mean": math.nan, "std": math.nan, "n": 0}
    if any(math.isnan(v) for v in vals):
        return {"mean": math.nan, "std": math.nan, "n": len(vals)}
    return {"mean": statistics.fmean(vals), "std": statistics.stdev(vals) if len(vals) > 1 else math.nan,
            "n": len(vals)}


def mean_over_seeds(per_seed: Sequence[Mapping[str, Any]], metrics: Sequence[str] = METRICS) -> dict[str, float]:
    """One stage's metrics over seeds: `<metric>` = mean (fractions) and, with 2+ seeds, `<metric>_std`.

    per_seed: each seed's metrics dict (`metrics.evaluate_scores` plus the stage's extras). A metric absent
    from every seed is left out. Stage metrics that carry the collapse report (`metrics.collapse_report`)
    add "score_std" (mean over seeds), "collapsed_seeds" and "n_seeds", which `comparison_table` uses to
    show a collapsed stage as collapsed, not as a metric.
    """
    if not per_seed:
        raise ValueError("mean_over_seeds: no seeds")
    out: dict[str, float] = {}
    for m in metrics:
        values = [float(s[m]) for s in per_seed if m in s]
        if not values:
            continue
        ms = mean_std(values)
        out[m] = ms["mean"]
        if len(per_seed) > 1:
            out[f"{m}_std"] = ms["std"]
    reports = [s for s in per_seed if "collapsed" in s and "score_std" in s]
    if reports:
        out["score_std"] = mean_std(float(s["score_std"]) for s in reports)["mean"]
        out["collapsed_seeds"] = sum(bool(s["collapsed"]) for s in reports)
        out["n_seeds"] = len(reports)
    return out


def mean_std_per_key(per_seed: Sequence[Mapping[str, float]]) -> tuple[dict[str, float], dict[str, float]]:
    """key -> mean over seeds and key -> std over seeds (`mean_std`), for per-seed dicts such as class -> AUC.

    Keys in the order first seen; a key missing from a seed is left out of that key's numbers.
    """
    keys = list(dict.fromkeys(k for d in per_seed for k in d))
    stats = {k: mean_std(d.get(k) for d in per_seed) for k in keys}
    return {k: s["mean"] for k, s in stats.items()}, {k: s["std"] for k, s in stats.items()}


def per_seed_table(per_seed: Sequence[Mapping[str, Any]], metrics: Sequence[str] = REPORTED_METRICS,
                   seeds: Sequence[int] | None = None):
    """One row per seed (percent, two decimals) and a "mean" row: a quick look at the spread of one stage.

    per_seed: each seed's metrics (fractions); seeds: the row labels' seed numbers (default 0, 1, ...).
    The mean row is `mean_std`'s mean of each column.
    """
    import pandas as pd

    seeds = list(range(len(per_seed))) if seeds is None else list(seeds)
    df = pd.DataFrame([{m: 100 * float(r[m]) for m in metrics} for r in per_seed],
                      index=[f"seed {s}" for s in seeds])
    df.loc["mean"] = [mean_std(df[m])["mean"] for m in metrics]
    return df.round(2)


# ----------------------------------------------------------------------------------------------------
# Markdown tables beside the paper's


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A markdown table of text cells (header, separator, one line per row), ending in a newline."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines) + "\n"


def comparison_table(rows: Sequence[tuple[str, str, Mapping[str, Any]]], dataset: str,
                     metrics: Sequence[str] = REPORTED_METRICS) -> str:
    """Markdown table: one row per (label, paper row key, our metrics), ours (mean ± std) beside the paper's.

    Our metrics are fractions (shown in percent); the paper's come from `PAPER_NUMBERS[(dataset, key,
    metric)]` ("–" where the paper has no number). A row collapsed on every seed ("collapsed_seeds" ==
    "n_seeds", see `mean_over_seeds`) shows "collapsed (std …)" instead of its metrics; one collapsed on
    some seeds says so in its label.
    """
    header = ["row"]
    for m in metrics:
        name = METRIC_NAMES.get(m, m)
        header += [f"{name} ours (%)", f"{name} paper (%)"]
    lines = []
    for label, key, values in rows:
        n_collapsed, n_seeds = int(values.get("collapsed_seeds", 0)), int(values.get("n_seeds", 0))
        all_collapsed = n_seeds > 0 and n_collapsed >= n_seeds
        if n_collapsed and not all_collapsed:
            label = f"{label} (collapsed on {n_collapsed} of {n_seeds} seeds)"
        cells = [label]
        for m in metrics:
            ours = f"collapsed (std {values['score_std']:.1e})" if all_collapsed else \
                percent(values.get(m), values.get(f"{m}_std"))
            cells += [ours, points(paper_number(dataset, key, m), signed=False)]
        lines.append(cells)
    return markdown_table(header, lines)


def classwise_table(ours: Mapping[str, Mapping[str, Any]], paper: Mapping[str, Mapping[str, float]]) -> str:
    """Class-wise AUC (percent): columns are the keys of `ours` (e.g. unmasked / masked), paper beside.

    ours: column -> class -> AUC (fraction); paper: column -> class -> percent (e.g. `PAPER_CLASSWISE_AUC`).
    """
    columns = sorted(ours, key=lambda c: (c != "unmasked", c))  # the full model first
    classes = sorted({c for col in ours.values() for c in col})
    header = ["class"]
    for col in columns:
        header += [f"{col} ours (%)", f"{col} paper (%)"]
    lines = []
    for cls in classes:
        cells = [cls]
        for col in columns:
            value = ours[col].get(cls)
            cells += [percent(value if isinstance(value, (int, float)) else None),
                      points(paper.get(col, {}).get(cls), signed=False)]
        lines.append(cells)
    return markdown_table(header, lines)


def timing_table(timings: Mapping[str, float], status: Mapping[str, str] | None = None) -> str:
    """Seconds per notebook (and its status: ran / up to date), with the total."""
    lines = ["| notebook | time (s) |" + (" status |" if status else ""),
             "|---|---|" + ("---|" if status else "")]
    for name, seconds in timings.items():
        lines.append(f"| {name} | {seconds:.1f} |" + (f" {status.get(name, '')} |" if status else ""))
    lines.append(f"| total | {sum(timings.values()):.1f} |" + (" |" if status else ""))
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------------
# results.md of `gsmoe reproduce`: every table the notebooks wrote, beside the paper's

# Table 2's rows (results.json "ablation"), in the paper's order, with their label and paper row key.
ABLATION_ROWS: tuple[str, ...] = ("baseline", "tgs", "experts", "gsmoe")
_ABLATION_LABELS = {"baseline": ("UR-DMU baseline (encoder, MIL)", "baseline"), "tgs": ("+ TGS", "tgs"),
                    "experts": ("+ class experts (max)", "experts"), "gsmoe": ("+ gate = GS-MoE", "gate")}


def _flat_classwise(obj: Any) -> dict[str, dict[str, float]] | None:
    """{column: {class: auc}} from a results entry that is either {class: auc} or {column: {class: auc}}."""
    if not isinstance(obj, Mapping) or not obj:
        return None
    if all(isinstance(v, (int, float)) for v in obj.values()):
        return {"ours": dict(obj)}
    cols = {k: v for k, v in obj.items() if isinstance(v, Mapping) and v
            and all(isinstance(x, (int, float)) for x in v.values())}
    return cols or None


def results_markdown(results: Mapping[str, Any]) -> str:
    """results.md from results.json: every table we have beside the paper's, in percent."""
    ds = results.get("dataset", "ucf-crime")
    seeds = results.get("seeds", 1)
    out = [
        "# Results of `gsmoe reproduce`\n",
        f"Dataset **{ds}**, profile **{results.get('profile')}**, {seeds} seed(s), data root "
        f"`{results.get('data_root')}`. All numbers are frame-level metrics in percent"
        + (" (mean ± sample std over seeds)" if seeds > 1 else "") + "; the paper's numbers are those of the "
        "real features and the paper's schedule, so on the synthetic data only the *ordering* of rows is "
        "comparable. AP is scikit-learn's average precision; the paper's AP is shown beside it.\n",
    ]
    l2 = results.get("l2_norm")
    if isinstance(l2, Mapping):  # data.magnitude: how far the feature norm alone separates the anomalies
        out.append(f"Untrained L2-norm score of the test features (chance 50): AUC {l2['auc']:.2f}, AUC_A "
                   f"{l2['auc_abnormal']:.2f}, AP {l2['ap']:.2f}. A dataset far from chance rewards a "
                   "magnitude bias.\n")
    ablation = results.get("ablation")
    if isinstance(ablation, Mapping):
        rows = [(*_ABLATION_LABELS[k], ablation[k]) for k in ABLATION_ROWS if k in ablation]
        if isinstance(results.get("sultani"), Mapping):  # the floor every stage must clear (gsmoe_lib/training/sultani.py)
            rows.insert(0, ("Sultani MIL (reference, raw features)", "sultani", results["sultani"]))
        out += ["## Table 2: component ablation\n", comparison_table(rows, ds)]
    table3 = results.get("table3")
    if isinstance(table3, Mapping):
        rows = [(label, key, table3[name]) for name, label, key in
                (("with_features", "gate with task-aware features", "gate"),
                 ("without_features", "gate without task-aware features", "gate-no-features"))
                if name in table3]
        out += ["## Table 3: the gate with / without task-aware features\n", comparison_table(rows, ds)]
    table4 = _flat_classwise(results.get("table4"))
    if table4:
        out += ["## Table 4: class-wise AUC with the class's expert masked\n",
                classwise_table(table4, PAPER_CLASSWISE_AUC if ds == "ucf-crime" else {})]
    table5 = results.get("table5")
    if isinstance(table5, Mapping):
        rows = [(f"{k.split('-')[1]} cluster experts", k, v) for k, v in sorted(table5.items())
                if k.startswith("clusters-") and isinstance(v, Mapping)]
        if isinstance(table5.get("class"), Mapping):
            rows.append(("class experts (GS-MoE)", "gate", table5["class"]))
        out += ["## Table 5: cluster experts against class experts\n", comparison_table(rows, ds)]
        if table5.get("note"):
            out.append(f"Note: {table5['note']}\n")
    classwise = _flat_classwise(results.get("classwise"))
    if classwise:
        # The paper's class-wise AUC of the full model is Table 4's "unmasked" column.
        unmasked = PAPER_CLASSWISE_AUC["unmasked"]
        paper = {"unmasked": unmasked, "gsmoe": unmasked, "gs-moe": unmasked} if ds == "ucf-crime" else {}
        out += ["## Class-wise AUC (Figure 4)\n", classwise_table(classwise, paper)]
    out += _diagnostics_markdown(results)
    timings = results.get("timings")
    if isinstance(timings, Mapping) and timings:
        out += ["## Time per notebook\n", timing_table(timings)]
    return "\n".join(out)


def _diagnostics_markdown(results: Mapping[str, Any]) -> list[str]:
    """The mixture's diagnostics: do the experts specialise, does the gate use them, did a stage collapse."""
    rows = []
    spec = results.get("specialisation")
    adv = spec.get("own_expert_advantage") if isinstance(spec, Mapping) else None
    if isinstance(adv, Mapping):
        rows.append(("own-expert advantage (AUC points, mean over classes; notebook 12)",
                     f"{points(adv.get('mean'), adv.get('std'))} ({adv.get('n_positive')} of "
                     f"{adv.get('n_classes')} classes positive)",
                     "experts specialise (Fig. 5, Table 4); target ≥ +3 points, positive for ≥ 10 of 13 classes"))
    masking = results.get("masking")
    drop = masking.get("mean_drop") if isinstance(masking, Mapping) else None
    if isinstance(drop, Mapping):
        paper = masking.get("paper_mean_drop")
        for fill, how in (("zero", "by zero"), ("mean", "by the other experts' mean")):
            if fill in drop:
                rows.append((f"Table 4: mean drop of a class's AUC, own expert masked {how} (points; notebook 30)",
                             points(drop[fill], masking.get("mean_drop_std", {}).get(fill)),
                             (f"{paper:.2f} (masked ≈ 50)" if fill == "zero" and paper is not None else "–")
                             + ("; target ≥ 2 points" if fill == "zero" else "")))
    tsne = results.get("tsne")
    sil = tsne.get("silhouette") if isinstance(tsne, Mapping) else None
    if isinstance(sil, Mapping) and sil:
        rows.append(("t-SNE panels: silhouette of the classes (notebook 40)",
                     " / ".join(f"{k} {float(v):.3f}" for k, v in sil.items()),
                     "the classes separate after the experts (Fig. 5): experts > baseline"))
    out = []
    if rows:
        out += ["## Diagnostics of the mixture\n",
                "| what | ours | paper / target |\n|---|---|---|\n"
                + "".join(f"| {a} | {b} | {c} |\n" for a, b, c in rows)]
    collapse = results.get("collapse")
    if isinstance(collapse, Mapping) and collapse:
        lines = ["| stage | test-score std (mean over seeds) | collapsed seeds |", "|---|---|---|"]
        for stage, c in collapse.items():
            if isinstance(c, Mapping):
                lines.append(f"| {stage} | {float(c.get('score_std', math.nan)):.2e} | "
                             f"{c.get('collapsed_seeds')} of {c.get('n_seeds')} |")
        out += ["## Stage collapse (notebook 13)\n",
                f"A stage whose test scores have a pooled std below {COLLAPSE_STD:g} is collapsed: its metrics "
                "are not reported.\n", "\n".join(lines) + "\n"]
    return out
