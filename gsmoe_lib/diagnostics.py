"""Diagnostics of the mixture: do the experts specialise, does the gate use them, did a stage collapse?

- **Expert x class AUC** (`expert_class_auc`): each expert's snippet AUC on each class's abnormal test
  videos plus all normal ones; the **own-expert advantage** (`own_expert_advantage`) is a class's own
  expert's AUC minus the other experts' mean on the same snippets, in AUC points. Class experts that
  specialise (the paper's Figure 5) have a positive advantage.
- **Expert masking** (Table 4, `expert_masking`): a class's AUC with all experts and with its own expert's
  gate input masked, by zero or by the other experts' mean; `masking_drop` is the mean loss in points.
  Masking can only cost a class AUC if the gate uses what that expert alone knows.
- **Collapse** (`stage_collapse`): a stage whose test scores are (nearly) constant (`metrics.collapse_report`).
- Summaries over seeds (`advantage_over_seeds`, `collapse_over_seeds`) use `reporting.mean_std`, and
  `options_table` is the table of the MoE options benchmark (`gsmoe bench moe-options`, notebook 11).

Scoring itself (a model over a split, one video at a time) is `evaluate.py`'s.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from gsmoe_lib.data.ground_truth import SNIPPET_FRAMES
from gsmoe_lib.evaluate import ScoreFn, SplitLike, Subset, class_videos, score_dataset, snippet_labels
from gsmoe_lib.metrics import COLLAPSE_STD, classwise_auc, collapse_report, roc_auc
from gsmoe_lib.reporting import mean_std, points

# ---------------------------------------------------------------------------------------------------
# Do the experts specialise? Expert x class AUC and the own-expert advantage
# ---------------------------------------------------------------------------------------------------


def expert_class_auc(
    expert_scores: Mapping[str, np.ndarray],
    frame_labels: Mapping[str, np.ndarray],
    video_classes: Mapping[str, Sequence[str]],
    expert_names: Sequence[str],
    classes: Sequence[str],
    factor: int = SNIPPET_FRAMES,
) -> pd.DataFrame:
    """Expert x class snippet AUC matrix [E, K] (fractions): how well each expert ranks each class.

    expert_scores: video name -> each expert's scores [T, E] (crops averaged; e.g. a gate stage's
    ``test_expert_scores.npz`` or `expert_test_scores`), experts in `expert_names` order.
    frame_labels: name -> [T*factor]; snippet labels are their majority (`snippet_labels`).
    video_classes: name -> the video's anomaly classes (``()`` for a normal video; a multi-label XD video
    counts for each of its classes).
    Cell (e, c) is expert e's ROC AUC over the snippets of class c's abnormal test videos plus those of
    ALL normal test videos, so every expert of a column is measured on the same snippets. Snippet-level
    (not x16 frames): the frame repeat changes nothing but ties at the window edges. A class without test
    videos gives a NaN column. Returns a DataFrame, index = experts ("expert"), columns = classes ("class").
    """
    names, classes = list(expert_names), list(classes)
    E = len(names)
    per_video: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # name -> (scores [T, E], labels [T])
    for name, s in expert_scores.items():
        s = np.asarray(s, dtype=np.float64)
        if s.ndim != 2 or s.shape[1] != E:
            raise ValueError(f"video {name!r}: expert scores must be [T, E={E}] ({', '.join(names)}), "
                             f"got shape {s.shape}")
        if name not in frame_labels or name not in video_classes:
            raise ValueError(f"video {name!r} has expert scores but no frame labels / classes")
        y = snippet_labels(frame_labels[name], factor)
        if y.size != s.shape[0]:
            raise ValueError(f"video {name!r}: {s.shape[0]} snippets of expert scores but {y.size} of labels")
        per_video[name] = (s, y)
    normal = [n for n in per_video if not tuple(video_classes[n])]
    if not normal:
        raise ValueError("expert_class_auc: no normal test video among the scored videos; each class's "
                         "snippets are pooled with the normal videos'")
    matrix = np.full((E, len(classes)), np.nan)
    for k, cls in enumerate(classes):
        members = [n for n in per_video if cls in tuple(video_classes[n])]
        if not members:
            continue  # no test video of this class: a NaN column
        s = np.concatenate([per_video[n][0] for n in members + normal])  # [N, E]
        y = np.concatenate([per_video[n][1] for n in members + normal])  # [N]
        for e in range(E):
            matrix[e, k] = roc_auc(y, s[:, e], what=f"snippet AUC of expert {names[e]!r} on class {cls!r}")
    return pd.DataFrame(matrix, index=pd.Index(names, name="expert"), columns=pd.Index(classes, name="class"))


def own_expert_advantage(
    matrix: pd.DataFrame | np.ndarray,
    expert_names: Sequence[str] | None = None,
    classes: Sequence[str] | None = None,
) -> dict[str, Any] | None:
    """How much better each class's own expert ranks that class than the other experts, in AUC points.

    matrix [E, K] from `expert_class_auc` (a DataFrame gives the names; an array needs `expert_names` and
    `classes`). For class c with an expert named c: advantage_c = 100 * (AUC(c, c) - mean over the other
    experts e of AUC(e, c)), all on the same snippets. Returns {"per_class": class -> points (classes
    with test videos and an own expert, class order), "mean": mean over those classes, "n_positive":
    classes with advantage > 0, "n_classes": how many were measured}; "mean" is NaN when none is.
    None when the experts are not class experts (some name is not a class, e.g. k-means clusters) or there
    is a single expert (no other expert to compare with).
    """
    if isinstance(matrix, pd.DataFrame):
        expert_names = list(matrix.index) if expert_names is None else list(expert_names)
        classes = list(matrix.columns) if classes is None else list(classes)
        values = matrix.to_numpy(dtype=np.float64)
    else:
        if expert_names is None or classes is None:
            raise ValueError("own_expert_advantage: an array matrix needs expert_names and classes")
        values = np.asarray(matrix, dtype=np.float64)
    names, classes = list(expert_names), list(classes)
    if values.shape != (len(names), len(classes)):
        raise ValueError(f"matrix shape {values.shape} does not match {len(names)} experts x {len(classes)} classes")
    if len(names) < 2 or any(n not in classes for n in names):
        return None
    per_class: dict[str, float] = {}
    for k, cls in enumerate(classes):
        if cls not in names or not np.isfinite(values[:, k]).any():
            continue
        e = names.index(cls)
        others = np.delete(values[:, k], e)
        if not np.isfinite(values[e, k]) or not np.isfinite(others).any():
            continue
        per_class[cls] = float(100.0 * (values[e, k] - np.nanmean(others)))
    adv = list(per_class.values())
    return {"per_class": per_class, "mean": float(np.mean(adv)) if adv else float("nan"),
            "n_positive": int(sum(a > 0 for a in adv)), "n_classes": len(adv)}


# ---------------------------------------------------------------------------------------------------
# Does the gate use them? Masking a class's expert (Table 4)
# ---------------------------------------------------------------------------------------------------


def expert_test_scores(
    model: torch.nn.Module, dataset: SplitLike, device: str | torch.device = "cpu", progress: bool = False
) -> dict[str, np.ndarray]:
    """Each expert's scores on every test video: name -> float32 [T, E] (crops averaged).

    model: a `models.gsmoe.GSMoEModel` (with or without a gate: only `expert_scores` is read).
    """
    _, extra = score_dataset(lambda x: _scores_and_experts(model, x), dataset, device=device, progress=progress,
                             return_extra=True)
    return extra  # type: ignore[return-value]


def _scores_and_experts(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    out = model(x)
    return out.scores, out.expert_scores  # [1, T], [1, T, E]


MASK_FILLS = ("zero", "mean")  # as models.gate.MASK_FILLS: what the gate reads for a masked expert


def _masked_scores(model: torch.nn.Module, x: torch.Tensor, mask: torch.Tensor | None, fill: str) -> torch.Tensor:
    """model(x) scores [1, T] with `mask` [E] applied to the gate's expert input, filled by `fill`.

    The masking itself is the model's (`GSMoEModel.forward(expert_mask=, mask_fill=)`, `gate.mask_experts`):
    "zero" sets the masked expert's gate input to 0, "mean" to the mean of the other experts' inputs at the
    same snippet. A model whose forward has no `mask_fill` can only be masked by zero.
    """
    if mask is None:
        return model(x).scores
    if "mask_fill" in inspect.signature(model.forward).parameters:
        return model(x, expert_mask=mask, mask_fill=fill).scores
    if fill != "zero":
        raise ValueError(f"mask fill {fill!r} needs a model whose forward takes mask_fill "
                         f"({type(model).__name__} only zeroes a masked expert)")
    return model(x, expert_mask=mask).scores


def expert_masking(
    model: torch.nn.Module,
    dataset: SplitLike,
    expert_names: Sequence[str],
    device: str | torch.device = "cpu",
    classes: Sequence[str] | None = None,
    fills: Sequence[str] = MASK_FILLS,
    progress: bool = False,
) -> dict[str, dict[str, float]]:
    """Table 4: each class's class-wise AUC with all experts, and with that class's expert masked each way of
    `fills`: class -> {"unmasked": auc, "zero": auc, "mean": auc} (fractions).

    model: a `models.gsmoe.GSMoEModel` (anything whose forward takes `expert_mask` [E], and `mask_fill` for
    "mean", and returns an output with `.scores` [1, T]). expert_names: the experts' names, in the model's
    expert order; only class experts have a class to re-measure, so every name must be a class of the split
    (cluster experts are an error). The masked expert's gate input is set to 0 ("zero") or to the mean of
    the other experts' inputs ("mean"; see `_masked_scores`); the other experts' inputs reach the gate
    unchanged. Cost: one unmasked pass over the abnormal videos of the reported classes, then one pass per
    class and fill over that class's videos only. AUC: `metrics.classwise_auc` with normal_videos="none"
    (the class's abnormal videos only, the reading under which masking can reach 50). `classes`: default
    every expert whose class has test videos, in expert order.
    """
    names = list(expert_names)
    fills = list(fills)
    bad = [f for f in fills if f not in MASK_FILLS]
    if bad:
        raise ValueError(f"unknown mask fills {bad}; expected a subset of {MASK_FILLS}")
    not_classes = [n for n in names if n not in dataset.classes]
    if not_classes:
        raise ValueError(f"expert masking needs class experts; experts {not_classes} are not classes of the "
                         f"split ({', '.join(dataset.classes)})")
    if classes is None:
        classes = [c for c in names if class_videos(dataset, c)]
    missing = [c for c in classes if c not in names]
    if missing:
        raise ValueError(f"no expert for classes {missing}; experts: {names}")
    empty = [c for c in classes if not class_videos(dataset, c)]
    if empty:
        raise ValueError(f"classes {empty} have no test videos to measure")
    device = torch.device(device)

    def scorer(mask: torch.Tensor | None, fill: str) -> ScoreFn:
        return lambda x: _masked_scores(model, x, mask, fill)

    def class_auc(video_scores: dict[str, np.ndarray], sub: Subset, cls: str) -> float:
        labels = {v.name: sub.frame_labels(i) for i, v in enumerate(sub.videos)}
        vcls = {v.name: tuple(v.classes) for v in sub.videos}
        return classwise_auc(video_scores, labels, vcls, classes=[cls])[cls]

    reported = sorted({i for c in classes for i in class_videos(dataset, c)})
    unmasked = score_dataset(scorer(None, "zero"), Subset(dataset, reported), device=device, progress=progress)
    result: dict[str, dict[str, float]] = {}
    for cls in classes:
        sub = Subset(dataset, class_videos(dataset, cls))
        row = {"unmasked": class_auc({v.name: unmasked[v.name] for v in sub.videos}, sub, cls)}
        mask = torch.ones(len(names), device=device)
        mask[names.index(cls)] = 0.0
        for fill in fills:
            row[fill] = class_auc(score_dataset(scorer(mask, fill), sub, device=device, progress=progress), sub, cls)
        result[cls] = row
    return result


def masking_drop(table: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Mean over classes of (unmasked - masked) AUC, in points, per fill of an `expert_masking` table.

    A positive drop means masking the class's own expert hurt that class (the paper's Table 4 on UCF-Crime:
    14.0 points on average, every class from 54-86 to ≈ 50). Classes whose AUC is NaN are left out.
    """
    fills = sorted({k for row in table.values() for k in row if k != "unmasked"})
    out = {}
    for fill in fills:
        d = [row["unmasked"] - row[fill] for row in table.values()
             if fill in row and np.isfinite(row["unmasked"]) and np.isfinite(row[fill])]
        out[fill] = float(100.0 * np.mean(d)) if d else float("nan")
    return out


# ---------------------------------------------------------------------------------------------------
# Did a stage collapse? And summaries over seeds
# ---------------------------------------------------------------------------------------------------


def stage_collapse(stages: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Collapse status of each stage: stage -> {"score_std", "collapsed"} (`metrics.collapse_report`).

    stages: stage name -> a `train.StageResult` (or anything with `.metrics` and `.path`). A stage whose
    metrics predate the score_std key is measured from its ``test_scores.npz``.
    """
    out: dict[str, dict[str, Any]] = {}
    for name, r in stages.items():
        m = r.metrics
        if "score_std" in m and "collapsed" in m:
            out[name] = {"score_std": float(m["score_std"]), "collapsed": bool(m["collapsed"])}
            continue
        path = Path(r.path) / "test_scores.npz"
        if not path.is_file():
            raise FileNotFoundError(f"stage {name!r}: no score_std in its metrics and no {path}")
        with np.load(path) as z:
            out[name] = collapse_report({k: z[k] for k in z.files})
    return out


def advantage_over_seeds(per_seed: Sequence[Mapping[str, Any] | None]) -> dict[str, Any] | None:
    """Own-expert advantages of several seeds (`own_expert_advantage`) summarised in one entry.

    Returns {"per_class": class -> mean points over the seeds that measured it, "mean": mean over seeds of
    each seed's mean, "std": sample std of those means (NaN with one seed), "n_positive": classes whose
    mean advantage > 0, "n_classes", "per_seed": the inputs}; None when the experts are not class experts.
    """
    if not per_seed or any(a is None for a in per_seed):
        return None
    classes = list(dict.fromkeys(c for a in per_seed for c in a["per_class"]))
    per_class = {c: mean_std(a["per_class"].get(c) for a in per_seed)["mean"] for c in classes}
    means = mean_std(a["mean"] for a in per_seed)
    return {"per_class": per_class, "mean": means["mean"], "std": means["std"],
            "n_positive": int(sum(v > 0 for v in per_class.values())), "n_classes": len(per_class),
            "per_seed": list(per_seed)}


def collapse_over_seeds(per_seed: Sequence[Mapping[str, Mapping[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Stage collapse of several seeds (`stage_collapse` each) in one entry per stage.

    Returns stage -> {"score_std": mean over seeds, "collapsed_seeds": how many seeds collapsed, "n_seeds",
    "per_seed_std": [std of each seed]}, stages in the order first seen.
    """
    stages = list(dict.fromkeys(s for seed in per_seed for s in seed))
    out = {}
    for s in stages:
        rows = [seed[s] for seed in per_seed if s in seed]
        stds = [float(r["score_std"]) for r in rows]
        out[s] = {"score_std": mean_std(stds)["mean"],
                  "collapsed_seeds": int(sum(bool(r["collapsed"]) for r in rows)),
                  "n_seeds": len(rows), "per_seed_std": stds}
    return out


OPTION_LABELS = {  # `gsmoe bench moe-options`' groups and variants (bench/moe_options.py)
    "D0": "defaults (frozen-teacher pseudo-labels)",
    "neg": "extension: other classes as experts' negatives",
    "fd": "extension: gate feature dropout",
    "R": "pseudo-labels refreshed from each stage's own scores",
    "TR": "teacher first, then refreshed (experts, gate)",
    "A": "refresh (collapse fixes, encoder lr 1e-4)",
    "B": "frozen teacher (collapse fixes, encoder lr 1e-4)",
    "O": "the earlier recipe (before the collapse fixes, encoder lr 1e-4)",
    "C": "refresh + other-class negatives (lr 1e-4)",
    "D": "refresh + gate feature dropout (lr 1e-4)",
}


def options_table(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Mean ± std over seeds of `gsmoe bench moe-options` records: one row per (dataset, option, stage).

    records: the list in its gpu_exp.json, each {"ds", "seed", "group", <option>: {stage: metrics, "diag": ...}}.
    Columns (percent, or AUC points for the diagnostics): AUC, AUC_A, AP, AP_A, the test-score std, and for the
    gate row the own-expert advantage, the classes where it is positive, and Table 4's masking drop by zero /
    by mean. A stage whose test-score std is below `metrics.COLLAPSE_STD` on some seed is marked collapsed.
    """
    acc: dict[tuple[str, str, str], dict[str, list[float]]] = {}
    for rec in records:
        if "error" in rec:
            continue
        for option, block in rec.items():
            if not isinstance(block, Mapping) or "diag" not in block:
                continue
            for stage in ("encoder", "tgs", "experts", "gate"):
                m = block.get(stage)
                if not m:
                    continue
                row = acc.setdefault((rec["ds"], option, stage), {})
                for key in ("auc", "auc_abnormal", "ap", "ap_abnormal"):
                    row.setdefault(key, []).append(100.0 * m[key])
                row.setdefault("score_std", []).append(m["score_std"])
                if stage == "gate":
                    adv = block["diag"].get("advantage")
                    if adv:
                        row.setdefault("advantage", []).append(adv["mean"])
                        row.setdefault("positive", []).append(adv["n_positive"])
                        row.setdefault("classes", []).append(adv["n_classes"])
                    for fill, drop in (block["diag"].get("masking_drop") or {}).items():
                        row.setdefault(f"mask_{fill}", []).append(drop)

    def cell(values: list[float]) -> str:  # "mean ± std", or the value alone for one seed
        ms = mean_std(values)
        return points(ms["mean"], ms["std"], signed=False)

    rows = []
    for (ds, option, stage), v in sorted(acc.items(), key=lambda kv: (kv[0][0], list(OPTION_LABELS).index(kv[0][1])
                                                                     if kv[0][1] in OPTION_LABELS else 99,
                                                                     ("encoder", "tgs", "experts", "gate").index(kv[0][2]))):
        row = {"dataset": ds, "option": OPTION_LABELS.get(option, option), "stage": stage, "seeds": len(v["auc"]),
               **{k: cell(v[k]) for k in ("auc", "auc_abnormal", "ap", "ap_abnormal")},
               "status": "collapsed" if min(v["score_std"]) < COLLAPSE_STD else "ok"}
        if "advantage" in v:
            row["own-expert advantage"] = cell(v["advantage"])
            row["classes positive"] = f"{np.mean(v['positive']):.1f} / {v['classes'][0]}"
        for fill in ("zero", "mean"):
            if f"mask_{fill}" in v:
                row[f"masking drop ({fill})"] = cell(v[f"mask_{fill}"])
        rows.append(row)
    return pd.DataFrame(rows).fillna("")
