"""The Sultani et al. (2018) MIL detector as a reference stage: RUN/sultani, the floor of Table 2.

The paper's Table 1 lists it (MIL, I3D: 77.42 AUC on UCF-Crime; UR-DMU: 86.97). Here it answers two
questions about every run: does each GS-MoE stage beat the simplest detector of the field on the same
features, and does our UR-DMU training at a given budget learn at least what a 3-layer MLP learns in
seconds (if not, the training, not the method, is at fault; benchmarks/sultani-floor.md).

The stage, as Sultani et al. train it:
- every training video is cut into 32 segments, each the mean of its snippets' features
  (`data.batching.pool_segments`, UR-DMU's boundaries; Sultani's Save_C3DFeatures_32Segments.m also
  averages the snippets between linspace boundaries);
- the model is `models.sultani.SultaniMLP` (FC 512 + ReLU, dropout 0.6, FC 32, dropout 0.6, FC 1 + sigmoid)
  on the raw features, trained with `losses.sultani_ranking_loss` (hinge on the bags' top segments,
  smoothness and sparsity with λ1 = λ2 = 8e-5);
- batches of 30 abnormal + 30 normal bags, Adagrad.
- length: the validation rule of every stage (`training.validation`): the held-out training videos ranked
  by their top segment's score (the score the ranking loss trains), best checkpoint kept, early stop;
- test: every snippet of every test video is scored (no pooling, as every other stage here; Sultani's
  evaluation scores 32 segments and repeats each over its frames), crops as below.

What the public sources say, and what we take (every value is a `config.SultaniConfig` field):

| setting | Sultani et al. paper | their Keras code | PyTorch ports | default here |
|---|---|---|---|---|
| optimiser, lr | Adagrad, 0.001 | Adagrad, lr 0.01, eps 1e-8 | seominseok0429: Adagrad 0.001; ekosman: Adadelta 0.01 | Adagrad 0.001 |
| weight penalty | 0.001 | l2(0.001) on every weight (loss + 0.001·ΣW²) | seominseok0429: weight_decay 0.001; ekosman: 0.001·‖W‖ | weight_decay 1e-3 |
| λ1 = λ2 | 8e-5 | 8e-5 (sums over the batch's abnormal videos) | 8e-5 | 8e-5 |
| hinge pairs | every (abnormal, normal) | every pair | i-th with i-th | every pair (the same loss, see `losses`) |
| iterations | – | 20,000 of 60 videos | seominseok0429: 75 epochs (≈ 2,000), lr ÷10 at 25, 50 | 20,000 |

(Sources read: WaqasSultani/AnomalyDetectionCVPR2018 TrainingAnomalyDetector_public.py;
ekosman/AnomalyDetectionCVPR2018-Pytorch network/anomaly_detector_model.py and
TrainingAnomalyDetector_public.py; seominseok0429/Real-world-Anomaly-Detection-in-Surveillance-Videos-pytorch
main.py, learner.py, loss.py.) The paper's lr 0.001 is the default because the paper states it and a port
uses it; `lr=0.01` reproduces the Keras script. Torch's Adagrad `weight_decay` adds 1e-3·W to the
gradient of every parameter, i.e. a loss term 5e-4·ΣW² on weights and biases: the same order as Keras'
l2(0.001) on weights (0.001·ΣW²).

Crops (Sultani's C3D features had none; the paper's I3D row does not say): `crops="mean"` (default) trains
on the crop-averaged features, one bag per video, and scores the crop-averaged test features;
`crops="independent"` makes each crop a bag of its own, as UR-DMU trains, and averages the C crops' scores
at test time. Both give the same detector within seed noise on the quick data; "mean" scores the test set
C× cheaper and is what the original, crop-free model saw.

The stage plugs into `stages.load_or_train` like every stage (resumable, loaded when finished with the same
config). Its config covers its own settings, the data without the other stages' `n_segments` and `crops`
(which it does not use), the seed and `amp`; it has no upstream stage.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from gsmoe_lib.data.batching import TrainSet, pool_segments
from gsmoe_lib.data.layouts import FeatureDataset
from gsmoe_lib.device import autocast
from gsmoe_lib.losses import sultani_ranking_loss
from gsmoe_lib.models.sultani import SultaniMLP
from gsmoe_lib.training.config import PipelineConfig, SultaniConfig, dataset_name, stage_config
from gsmoe_lib.training.data import Data, open_splits
from gsmoe_lib.training.loop import optimizer_step
from gsmoe_lib.training.stages import (StageResult, Trained, Training, eval_scores, evaluate, held_out_validation,
                                       load_or_train, stage_generator)
from gsmoe_lib.training.validation import hold_out_set

STAGE = "sultani"
CROP_MODES = ("mean", "independent")


def check_config(sc: SultaniConfig) -> None:
    if sc.crops not in CROP_MODES:
        raise ValueError(f"sultani.crops must be one of {', '.join(CROP_MODES)}, got {sc.crops!r}")
    if sc.n_segments < 1 or sc.iterations < 0:
        raise ValueError(f"sultani: n_segments must be >= 1 and iterations >= 0, got {sc.n_segments}, "
                         f"{sc.iterations}")


def pool_bags(ds: FeatureDataset, n_segments: int = 32, crops: str = "mean", progress: bool = True) -> TrainSet:
    """Sultani's bags: every training video pooled to `n_segments` segments.

    crops "mean": features [V, S, D], the crops averaged (one video's crops at a time, so a 10-crop
    UCF-Crime training set never sits in memory with its crop axis); "independent": [V·C, S, D], each crop
    a bag (`TrainSet.from_dataset`).
    """
    if crops not in CROP_MODES:
        raise ValueError(f"unknown crops mode {crops!r}; expected one of {', '.join(CROP_MODES)}")
    if crops == "independent":
        return TrainSet.from_dataset(ds, n_segments=n_segments, crops="independent", progress=progress)
    features = torch.empty(len(ds), n_segments, ds.feature_dim)
    for i in tqdm(range(len(ds)), desc=f"pooling {ds.dataset} {ds.split} to {n_segments}", unit="video",
                  disable=not progress):
        crops_i = ds.crop_arrays(i)  # C x [T, D], memory-mapped
        pooled = [pool_segments(arr, n_segments) for arr in crops_i]  # C x [S, D]
        features[i] = torch.from_numpy(np.mean(pooled, axis=0, dtype=np.float32))
    labels = torch.tensor([v.label for v in ds.videos], dtype=torch.float32)  # [V]
    column = {name: k for k, name in enumerate(ds.classes)}
    class_index = torch.zeros(len(ds), len(ds.classes))  # [V, K] multi-hot
    for i, v in enumerate(ds.videos):
        for name in v.classes:
            class_index[i, column[name]] = 1.0
    return TrainSet(features, labels, class_index, torch.arange(len(ds)), tuple(ds.classes),
                    [v.name for v in ds.videos], "mean")


def reference_bags(cfg: PipelineConfig, data: Data | None, n_segments: int, crops: str, progress: bool
                   ) -> tuple[TrainSet, FeatureDataset]:
    """A reference stage's inputs: the raw training split pooled to `n_segments` bags (`pool_bags`) and the
    test split (the pipeline's, when `data` is given; else opened from `cfg.data`)."""
    dataset = data.dataset if data is not None else dataset_name(cfg.data)
    if data is not None:
        train_ds, test = open_splits(cfg.data, ("train",), dataset)[0], data.test
    else:
        train_ds, test = open_splits(cfg.data, ("train", "test"), dataset)
    return pool_bags(train_ds, n_segments, crops, progress), test


def score_fn(model: SultaniMLP, crops: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """x [1, C, T, D] -> scores [1, T]: crop-averaged features ("mean") or crop-averaged scores ("independent")."""
    if crops == "mean":
        return lambda x: model(x.mean(dim=1))
    return lambda x: model(x).mean(dim=1)


def train_sultani(cfg: PipelineConfig, data: Data | None, run_dir: str | Path, progress: bool = True,
                  on_step: Callable[[int], None] | None = None, stage_name: str = STAGE) -> StageResult:
    """Train (or load, when finished with the same config) Sultani's MIL detector into RUN/<stage_name>.

    `data`: the pipeline's data (its test split is scored); None opens the data of `cfg.data`. The training
    bags are pooled here from the raw training split (the pipeline's pooled training set has another
    number of segments).
    """
    sc, device = cfg.sultani, cfg.device
    check_config(sc)

    def build() -> Training:
        bags, test = reference_bags(cfg, data, sc.n_segments, sc.crops, progress)
        features = bags.features.to(device)  # [N, S, D]
        labels = bags.labels.to(device)  # [N]
        model = SultaniMLP(features.shape[-1], sc.hidden, sc.bottleneck, sc.dropout).to(device).train()
        optimizer = torch.optim.Adagrad(model.parameters(), lr=sc.lr, weight_decay=sc.weight_decay)

        def step(i: int, idx: torch.Tensor) -> dict[str, torch.Tensor]:
            idx = idx.to(device)
            with autocast(device, cfg.amp):
                scores = model(features[idx]).float()  # [B, S]
            loss, parts = sultani_ranking_loss(scores, labels[idx], sc.smooth_weight, sc.sparse_weight)
            optimizer_step(loss, optimizer)
            return parts

        def finish(history: list[dict[str, float]]) -> Trained:
            model.eval()
            metrics, scores = evaluate(score_fn(model, sc.crops), test, cfg, progress)
            all_scores = list(scores["scores"].values())
            metrics["test_score_std"] = float(np.concatenate(all_scores).std()) if all_scores else float("nan")
            return Trained(model, metrics, scores, {**model.checkpoint_payload(), "crops": sc.crops})

        val = hold_out_set(bags, cfg.validation)
        batches = bags.sampler(sc.batch_normal, sc.batch_abnormal, generator=stage_generator(cfg.seed, STAGE),
                               among=val.train_mask)
        # Sultani's loss reads each bag's top segment: validation ranks videos by their top-1 segment score
        validation = held_out_validation(cfg, sc, val, eval_scores(model, model, features, cfg), k=1)
        return Training({"model": model}, optimizer, sc.iterations, sc.checkpoint_every, batches, step, finish,
                        validation)

    return load_or_train(cfg, run_dir, stage_name, stage_config(cfg, STAGE, None), STAGE, SultaniMLP.from_checkpoint,
                         build, progress, on_step)
