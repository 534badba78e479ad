"""The untrained feature-magnitude score: how far a dataset is separable by the L2 norm of its features alone.

Every snippet is scored by the L2 norm of its crop-averaged feature, with no training at all:

    score[t] = || mean_c x[c, t, :] ||_2          x: one video's features [C, T, D]

and the scores go through the project's pooled frame-level metrics (`metrics.evaluate_scores`: AUC over
all test frames, AUC_A over the abnormal videos' frames, AP). Chance is 0.5.

Why it matters. The GS-MoE paper holds against UR-DMU its "feature-magnitude based optimization which
overlooks the subtle cues and enhances the sharp cues" (REFERENCE §6: subtle anomalies barely move real I3D
features). A dataset on which the norm alone scores far above chance rewards exactly that bias: a detector
can look good on it by learning "large feature = anomaly" and nothing about the anomalies' directions. A
held-out, independently generated UCF-shaped set scores 48.9 AUC this way; the project's synthetic worlds
are built to stay near chance too (`gsmoe_lib.data.synthetic`), and this score is reported for every world
and variant (`gsmoe data check`, `gsmoe data synth`, `gsmoe bench generalise`).

Reads the test split through `layouts.open_dataset`, exactly as training does, one video at a time.
"""

from __future__ import annotations

import os

import numpy as np

from gsmoe_lib.data import ground_truth
from gsmoe_lib.data.layouts import FeatureDataset, detect_dataset_name, open_dataset

# |AUC - 0.5| at most this: "near chance" (the synthetic worlds' own tests use a band of this width)
NEAR_CHANCE = 0.05


def magnitude_scores(dataset: FeatureDataset) -> dict[str, np.ndarray]:
    """name -> L2 norm of each snippet's crop-averaged feature [T] (float64), in the split's list order."""
    out: dict[str, np.ndarray] = {}
    for i, v in enumerate(dataset.videos):
        x = dataset.load(i).astype(np.float64)             # [C, T, D]
        out[v.name] = np.linalg.norm(x.mean(axis=0), axis=1)  # [T]
    return out


def magnitude_metrics(data_root: str | os.PathLike, dataset: str | None = None,
                      test_list: str | os.PathLike | None = None,
                      annotations: str | os.PathLike | None = None,
                      tolerance: int = ground_truth.SNIPPET_FRAMES) -> dict[str, float | int]:
    """The pooled frame-level metrics (fractions) of the untrained L2-norm score on the test split of
    `data_root`: auc, auc_abnormal, ap, ap_trapz, ap_abnormal, ap_abnormal_trapz, n_videos, n_frames.

    `dataset`: None reads DATA_ROOT/gsmoe_dataset.json, else ucf-crime.
    """
    from gsmoe_lib.metrics import evaluate_scores

    dataset = dataset or detect_dataset_name(data_root) or "ucf-crime"
    test = open_dataset(data_root, dataset, "test", test_list=test_list, annotations=annotations,
                        tolerance=tolerance)
    scores = magnitude_scores(test)
    labels = {v.name: test.frame_labels(i) for i, v in enumerate(test.videos)}
    abnormal = {v.name: v.label == 1 for v in test.videos}
    return evaluate_scores(scores, labels, abnormal)


def describe(metrics: dict[str, float | int]) -> str:
    """One line for users: the L2-norm AUC / AUC_A / AP in percent, and whether it is near chance."""
    auc = float(metrics["auc"])
    verdict = ("near chance: not separable by magnitude" if abs(auc - 0.5) <= NEAR_CHANCE
               else "far from chance: the feature norm alone separates anomalies; a detector can score "
                    "by magnitude here")
    return (f"untrained L2-norm score (no training): AUC {100 * auc:.1f}, "
            f"AUC_A {100 * float(metrics['auc_abnormal']):.1f}, AP {100 * float(metrics['ap']):.1f} "
            f"({verdict})")
