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
