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

from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from gsmoe_lib.data.ground_truth import SNIPPET_FRAMES
from gsmoe_lib.host_memory import release_freed_memory
from gsmoe_lib.metrics import classwise_auc, evaluate_scores


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
    release_memory: bool = True,
) -> dict[str, np.ndarray] | tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Score every video of `dataset`, one at a time: name -> float32 scores [T], in the dataset's order.

    score_fn receives x [1, C, T, D] on `device` and returns scores [1, T] (crops already averaged) or a
    tuple starting with them. If score_fn is an `nn.Module` it is put in eval mode for the loop and its
    previous mode is restored afterwards.
    return_extra: also collect each video's second output of score_fn, a tensor [1, T, ...] (for
    instance each expert's scores [1, T, E]); returns (scores, extras) with extras name -> float32 [T, ...].
    release_memory: hand the host memory a video freed back to the system before the next one
    (`host_memory.release_freed_memory`): without it the allocator's kept blocks grow over a test set of
    mixed lengths (GS-MoE on the UCF-sized set, experts in one call: 2,256 MB beyond the model without, 1,362 MB
    with; docs/studies/memory.md).
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
                del video_scores, extra
                if release_memory:
                    release_freed_memory()
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
# Class-wise analysis: subsets of a split, snippet representations (Figure 5), kernels against top-k
# (Figures 2 and 6). Expert masking (Table 4) and the other diagnostics of the mixture: diagnostics.py
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


def snippet_labels(frame_labels: np.ndarray, factor: int = SNIPPET_FRAMES) -> np.ndarray:
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
            del x, base, out
            release_freed_memory()  # one video's memory at a time (host_memory)
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
