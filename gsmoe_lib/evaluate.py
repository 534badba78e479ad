"""Scoring a test split with any model, and the metrics of those scores.

Any stage's model is evaluated the same way: a *score function* maps one video's features to one anomaly
score per snippet, averaged over crops, and the pooled frame-level metrics of `metrics.py` are computed
over the whole split.

    score_fn(x [1, C, T, D] float32 tensor on `device`) -> scores [1, T]
                                                       or a tuple / named tuple whose first element is that

so `URDMU` itself (its `URDMUOutput` starts with ``scores``) or a small lambda around experts and gate can
be passed. The test split is scored one video at a time: UCF-Crime test videos reach 6,749 snippets x
10 crops, and the whole split does not need to sit in memory (nor does it, with memory-mapped layouts).
Test videos are never padded or pooled to a fixed length: every snippet is scored.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from gsmoe_lib.metrics import classwise_auc, collapse_report, evaluate_scores, roc_auc


class _Video(Protocol):
    name: str
    label: int
    classes: tuple[str, ...]


class SplitLike(Protocol):
    """What evaluation needs of a `data.layouts.FeatureDataset` (see docs/design.md)."""

    videos: Sequence[_Video]
    classes: Sequence[str]

    def load(self, i: int) -> np.ndarray: ...  # [C, T, D]

    def frame_labels(self, i: int) -> np.ndarray: ...  # [T*16]


ScoreFn = Callable[[torch.Tensor], Any]


def _split_output(out: Any, name: str, want_extra: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(scores, extra) from a score function's output: a tensor, or a tuple whose first element is scores."""
    if isinstance(out, torch.Tensor):
        if want_extra:
            raise ValueError(
                f"video {name!r}: return_extra=True needs score_fn to return (scores, extra), got one tensor"
            )
        return out, None
    if isinstance(out, tuple) and len(out) >= 1 and isinstance(out[0], torch.Tensor):
        if want_extra and (len(out) < 2 or not isinstance(out[1], torch.Tensor)):
            raise ValueError(f"video {name!r}: return_extra=True needs a tensor as score_fn's second output")
        return out[0], (out[1] if want_extra else None)
    raise TypeError(
        f"video {name!r}: score_fn must return a tensor [1, T] or a tuple starting with one, "
        f"got {type(out).__name__}"
    )


def score_dataset(
    score_fn: ScoreFn,
    dataset: SplitLike,
    device: str | torch.device = "cpu",
    progress: bool = True,
    return_extra: bool = False,
) -> dict[str, np.ndarray] | tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Score every video of `dataset`, one at a time: name -> float32 scores [T], in the dataset's order.

    score_fn receives x [1, C, T, D] on `device` and returns scores [1, T] (crops already averaged) or a
    tuple starting with them. If score_fn is an `nn.Module` it is put in eval mode for the loop and its
    previous mode is restored afterwards.
    return_extra: also collect each video's second output of score_fn, a tensor [1, T, ...] (for
    instance each expert's scores [1, T, E]); returns (scores, extras) with extras name -> float32 [T, ...].
    """
    module = score_fn if isinstance(score_fn, torch.nn.Module) else None
    was_training = module.training if module is not None else False
    if module is not None:
        module.eval()
    scores: dict[str, np.ndarray] = {}
    extras: dict[str, np.ndarray] = {}
    try:
        with torch.inference_mode():
            for i in tqdm(range(len(dataset.videos)), desc="scoring", unit="video", disable=not progress):
                name = dataset.videos[i].name
                features = dataset.load(i)  # [C, T, D], possibly memory-mapped
                if features.ndim != 3:
                    raise ValueError(
                        f"video {name!r}: load() must give features [C, T, D], got shape {features.shape}"
                    )
                n_snippets = features.shape[1]
                # Copied only if needed: a read-only memory map would make torch warn, while an array
                # the dataset already stacked (float32, contiguous, writable) is used as it is.
                features = np.require(features, dtype=np.float32, requirements=["C", "W"])
                x = torch.from_numpy(features).to(device)[None]  # [1, C, T, D]
                del features  # hold at most one video's features at a time
                video_scores, extra = _split_output(score_fn(x), name, return_extra)
                del x
                if tuple(video_scores.shape) != (1, n_snippets):
                    raise ValueError(
                        f"video {name!r}: score_fn returned shape {tuple(video_scores.shape)}, "
                        f"expected [1, {n_snippets}] (one score per snippet, crops averaged)"
                    )
                scores[name] = video_scores[0].float().cpu().numpy()
                if extra is not None:
                    extras[name] = extra[0].float().cpu().numpy()
    finally:
        if module is not None:
            module.train(was_training)
    return (scores, extras) if return_extra else scores


def evaluate_dataset(
    score_fn: ScoreFn,
    dataset: SplitLike,
    device: str | torch.device = "cpu",
    progress: bool = True,
    normal_videos: Literal["none", "all"] = "none",
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Score `dataset` and compute its metrics: (metrics, video_scores).

    metrics: the keys of `metrics.evaluate_scores` (fractions) plus ``"classwise"``: class -> AUC per
    anomaly class of ``dataset.classes`` (`metrics.classwise_auc` with `normal_videos`).
    video_scores: name -> float32 snippet scores [T], as `score_dataset` returns them.
    """
    video_scores: dict[str, np.ndarray] = score_dataset(  # type: ignore[assignment]
        score_fn, dataset, device=device, progress=progress
    )
    frame_labels = {v.name: dataset.frame_labels(i) for i, v in enumerate(dataset.videos)}
    abnormal = {v.name: bool(v.label) for v in dataset.videos}
    video_classes = {v.name: tuple(v.classes) for v in dataset.videos}
    metrics: dict[str, Any] = evaluate_scores(video_scores, frame_labels, abnormal)
    metrics["classwise"] = classwise_auc(
        video_scores, frame_labels, video_classes, normal_videos=normal_videos, classes=list(dataset.classes)
    )
    return metrics, video_scores


# ---------------------------------------------------------------------------------------------------
# Class-wise analysis: subsets of a split, expert masking (Table 4), snippet representations (Figure 5),
# kernels against top-k (Figures 2 and 6)
# ---------------------------------------------------------------------------------------------------


class Subset:
    """A view of some videos of a split (indices into `dataset.videos`), usable wherever a split is."""

    def __init__(self, dataset: SplitLike, indices: Sequence[int]) -> None:
        self.dataset = dataset
        self.indices = list(indices)
        self.videos = [dataset.videos[i] for i in self.indices]
        self.classes = dataset.classes

    def load(self, i: int) -> np.ndarray:
        return self.dataset.load(self.indices[i])  # [C, T, D]

    def frame_labels(self, i: int) -> np.ndarray:
        return self.dataset.frame_labels(self.indices[i])  # [T*16]


def class_videos(dataset: SplitLike, cls: str) -> list[int]:
    """Indices of the videos of anomaly class `cls` (a multi-label XD video counts for each of its classes)."""
    return [i for i, v in enumerate(dataset.videos) if cls in v.classes]


def expert_masking(
    model: torch.nn.Module,
    dataset: SplitLike,
    expert_names: Sequence[str],
    device: str | torch.device = "cpu",
    classes: Sequence[str] | None = None,
    progress: bool = False,
) -> dict[str, dict[str, float]]:
    """Table 4: each class's class-wise AUC with all experts, and with that class's expert zeroed.

    model: a `models.gsmoe.GSMoEModel` (anything whose forward takes `expert_mask` [E] and returns an
    output with `.scores` [1, T]). expert_names: the experts' names, in the model's expert order; only
    class experts have a class to re-measure, so every name must be a class of the split (cluster experts
    are an error). The mask zeroes expert e's input to the gate (`Gate.expert_mask`), the other experts'
    inputs reach the gate unchanged; `expert_masking_fills` also masks by the other experts' mean.
    Cost: one unmasked pass over the abnormal videos of the reported classes, then one masked pass per
    class over that class's videos only. AUCs as `metrics.classwise_auc` with normal_videos="none".
    Returns class -> {"unmasked": auc, "masked": auc} (fractions), for `classes` (default: every expert
    whose class has test videos), in expert order.
    """
    table = expert_masking_fills(model, dataset, expert_names, device, classes, fills=("zero",), progress=progress)
    return {cls: {"unmasked": row["unmasked"], "masked": row["zero"]} for cls, row in table.items()}


def snippet_labels(frame_labels: np.ndarray, factor: int = 16) -> np.ndarray:
    """Snippet-level ground truth [T] bool from frame labels [T*factor]: the majority of the snippet's frames."""
    fl = np.asarray(frame_labels).ravel()
    if fl.size % factor:
        raise ValueError(f"{fl.size} frame labels are not a whole number of {factor}-frame snippets")
    return fl.reshape(-1, factor).mean(axis=1) >= 0.5


def snippet_representations(
    model: torch.nn.Module,
    baseline: torch.nn.Module,
    dataset: SplitLike,
    device: str | torch.device = "cpu",
    anomalous_only: bool = True,
    progress: bool = False,
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Per-snippet representations of the abnormal test videos for the t-SNE of Figure 5.

    Three panels, each [N, *] over the same N snippets (crop-averaged):
      "baseline": the baseline encoder's task-aware features [N, F] (`URDMU.features` of the MIL encoder);
      "experts":  the E experts' score vectors [N, E]: what the experts hand to the gate (the experts have
                  no shared embedding space: each has its own d_model space, so the scores are their common
                  output);
      "gate":     the gate's fused embedding [N, d] (`GateOutput.embedding`).
    model: a GSMoEModel with a gate; baseline: a URDMU. anomalous_only: keep the snippets inside the
    ground-truth windows (`snippet_labels`) only; else every snippet of the abnormal videos.
    Returns (panels, classes [N] (a multi-label video's first class), video names [N]).
    """
    device = torch.device(device)
    panels: dict[str, list[np.ndarray]] = {"baseline": [], "experts": [], "gate": []}
    classes, videos = [], []
    model.eval()
    baseline.eval()
    indices = [i for i, v in enumerate(dataset.videos) if v.label and v.classes]
    with torch.inference_mode():
        for i in tqdm(indices, desc="representations", unit="video", disable=not progress):
            v = dataset.videos[i]
            x = torch.from_numpy(np.require(dataset.load(i), np.float32, ["C", "W"])).to(device)  # [C, T, D]
            base = baseline(x, training_extras=False).features.mean(0)  # [T, F]: crops averaged
            out = model(x[None])  # GSMoEOutput, [1, T, ...]
            keep = snippet_labels(dataset.frame_labels(i)) if anomalous_only else np.ones(x.shape[1], bool)
            panels["baseline"].append(base.float().cpu().numpy()[keep])
            panels["experts"].append(out.expert_scores[0].float().cpu().numpy()[keep])
            panels["gate"].append(out.embedding[0].float().cpu().numpy()[keep])
            classes += [v.classes[0]] * int(keep.sum())
            videos += [v.name] * int(keep.sum())
    if not classes:
        raise ValueError("no anomalous snippets in the split's abnormal videos: nothing to embed")
    return {k: np.concatenate(p) for k, p in panels.items()}, np.asarray(classes), np.asarray(videos)


def tsne_panels(
    panels: dict[str, np.ndarray], labels: np.ndarray, seed: int = 0, max_points: int = 2000,
    perplexity: float = 30.0,
) -> tuple[dict[str, np.ndarray], dict[str, float], np.ndarray]:
    """2-D t-SNE of each panel over the same seeded subsample of at most `max_points` snippets.

    Returns (name -> xy [M, 2], name -> silhouette score of the classes in the *original* space (cosine),
    index [M] of the kept snippets). The silhouette is NaN with fewer than two classes. Perplexity is
    lowered to (M - 1) / 3 on small sets, as t-SNE requires perplexity < M.
    """
    from sklearn.manifold import TSNE
    from sklearn.metrics import silhouette_score

    n = len(labels)
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(n, size=min(n, max_points), replace=False))
    y = labels[keep]
    perp = max(1.0, min(perplexity, (len(keep) - 1) / 3.0))
    xy, sil = {}, {}
    for name, X in panels.items():
        Xk = np.asarray(X, dtype=np.float64)[keep]
        xy[name] = TSNE(n_components=2, perplexity=perp, init="pca", random_state=seed).fit_transform(Xk)
        ok = 2 <= len(set(y.tolist())) < len(y)
        sil[name] = float(silhouette_score(Xk, y, metric="cosine")) if ok else float("nan")
    return xy, sil, keep


def kernel_topk_coverage(
    video_scores: dict[str, np.ndarray], frame_labels: dict[str, np.ndarray], cfg: Any, cover: float = 0.5
) -> dict[str, float]:
    """How much of the ground truth TGS kernels reach compared with MIL's top-k snippets (Figures 2 and 6).

    For each video: top-k = the k = T // 16 + 1 highest-scoring snippets (UR-DMU's k, `losses.k_for_length`); kernels = the
    snippets whose TGS pseudo-label ŷ (from the same scores, `tgs.TGSConfig` `cfg`) is >= `cover`.
    Pooled over the videos: recall = covered ground-truth snippets / ground-truth snippets (`snippet_labels`),
    precision = covered ground-truth snippets / covered snippets. Returns
    topk_recall, kernel_recall, topk_precision, kernel_precision, n_gt_snippets.
    """
    from gsmoe_lib.losses import k_for_length
    from gsmoe_lib.tgs import explain

    hits = {"topk": [0, 0], "kernel": [0, 0]}  # [covered gt, covered]
    n_gt = 0
    for name, s in video_scores.items():
        s = np.asarray(s, dtype=np.float64)
        gt = snippet_labels(frame_labels[name])
        if gt.size != s.size:
            raise ValueError(f"video {name!r}: {s.size} scores but {gt.size} snippets of labels")
        k = min(s.size, k_for_length(s.size))
        topk = np.zeros(s.size, bool)
        topk[np.argsort(-s, kind="stable")[:k]] = True
        kernel = explain(s, cfg)["y"] >= cover
        n_gt += int(gt.sum())
        for key, sel in (("topk", topk), ("kernel", kernel)):
            hits[key][0] += int((sel & gt).sum())
            hits[key][1] += int(sel.sum())

    def ratio(a: int, b: int) -> float:
        return a / b if b else float("nan")

    return {
        "topk_recall": ratio(hits["topk"][0], n_gt),
        "kernel_recall": ratio(hits["kernel"][0], n_gt),
        "topk_precision": ratio(*hits["topk"]),
        "kernel_precision": ratio(*hits["kernel"]),
        "n_gt_snippets": n_gt,
    }


# ---------------------------------------------------------------------------------------------------
# Diagnostics of the mixture (issue 12): do the experts specialise, does the gate use them, did a stage
# collapse? Expert x class AUC matrix, own-expert advantage, masking by zero and by the others' mean.
# ---------------------------------------------------------------------------------------------------


def expert_class_auc(
    expert_scores: Mapping[str, np.ndarray],
    frame_labels: Mapping[str, np.ndarray],
    video_classes: Mapping[str, Sequence[str]],
    expert_names: Sequence[str],
    classes: Sequence[str],
    factor: int = 16,
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


def expert_masking_fills(
    model: torch.nn.Module,
    dataset: SplitLike,
    expert_names: Sequence[str],
    device: str | torch.device = "cpu",
    classes: Sequence[str] | None = None,
    fills: Sequence[str] = MASK_FILLS,
    progress: bool = False,
) -> dict[str, dict[str, float]]:
    """Table 4 with the class's expert masked each way of `fills`: class -> {"unmasked": auc, fill: auc}.

    As `expert_masking` (class experts only; one unmasked pass over the reported classes' videos, then one
    pass per class and fill over that class's videos), with the masked expert's gate input set to 0
    ("zero") or to the mean of the other experts' inputs ("mean"; see `_masked_scores`). AUC:
    `metrics.classwise_auc` with normal_videos="none" (the class's abnormal videos only, the reading under
    which masking can reach 50, as in `expert_masking`).
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
    """Mean over classes of (unmasked - masked) AUC, in points, per fill of an `expert_masking_fills` table.

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
    per_class = {c: float(np.mean([a["per_class"][c] for a in per_seed if c in a["per_class"]])) for c in classes}
    means = np.asarray([a["mean"] for a in per_seed], dtype=np.float64)
    return {"per_class": per_class, "mean": float(means.mean()),
            "std": float(means.std(ddof=1)) if means.size > 1 else float("nan"),
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
        out[s] = {"score_std": float(np.mean(stds)),
                  "collapsed_seeds": int(sum(bool(r["collapsed"]) for r in rows)),
                  "n_seeds": len(rows), "per_seed_std": stds}
    return out


OPTION_LABELS = {  # benchmarks/moe_options.py's groups and variants
    "D0": "defaults (frozen-teacher pseudo-labels)",
    "neg": "extension: other classes as experts' negatives",
    "fd": "extension: gate feature dropout",
    "R": "pseudo-labels refreshed from each stage's own scores",
    "TR": "teacher first, then refreshed (experts, gate)",
    "A": "refresh (session 4, encoder lr 1e-4)",
    "B": "frozen teacher (session 4, encoder lr 1e-4)",
    "O": "the earlier recipe (session 3)",
    "C": "refresh + other-class negatives (lr 1e-4)",
    "D": "refresh + gate feature dropout (lr 1e-4)",
}


def options_table(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Mean ± std over seeds of `benchmarks/moe_options.py` records: one row per (dataset, option, stage).

    records: the list in its gpu_exp.json, each {"ds", "seed", "group", <option>: {stage: metrics, "diag": ...}}.
    Columns (percent, or AUC points for the diagnostics): AUC, AUC_A, AP, AP_A, the test-score std, and for the
    gate row the own-expert advantage, the classes where it is positive, and Table 4's masking drop by zero /
    by mean. A stage whose test-score std is below `metrics.COLLAPSE_STD` on some seed is marked collapsed.
    """
    from gsmoe_lib.metrics import COLLAPSE_STD

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

    def cell(values: list[float]) -> str:
        return f"{np.mean(values):.2f} ± {np.std(values, ddof=1):.2f}" if len(values) > 1 else f"{values[0]:.2f}"

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
