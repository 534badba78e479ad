"""The Sultani et al. (2018) MIL detector as a reference stage: RUN/sultani, the floor of Table 2.

The paper's Table 1 lists it (MIL, I3D: 77.42 AUC on UCF-Crime; UR-DMU: 86.97). Here it answers two
questions about every run: does each GS-MoE stage beat the simplest detector of the field on the same
features, and does our UR-DMU training at a given budget learn at least what a 3-layer MLP learns in
seconds (if not, the training, not the method, is at fault).

The stage, as Sultani et al. train it:
- every training video is cut into 32 segments, each the mean of its snippets' features
  (`data.batching.pool_segments`, UR-DMU's boundaries; Sultani's Save_C3DFeatures_32Segments.m also
  averages the snippets between linspace boundaries);
- the model is `models.sultani.SultaniMLP` (FC 512 + ReLU, dropout 0.6, FC 32, dropout 0.6, FC 1 + sigmoid)
  on the raw features, trained with `losses.sultani_ranking_loss` (hinge on the bags' top segments,
  smoothness and sparsity with λ1 = λ2 = 8e-5);
- batches of 30 abnormal + 30 normal bags, Adagrad.
- test: every snippet of every test video is scored (no pooling, as every other stage here; Sultani's
  evaluation scores 32 segments and repeats each over its frames), crops as below.

What the public sources say, and what we take (every value is a `SultaniConfig` field):

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
l2(0.001) on weights (0.001·ΣW²), whose loss was, in addition, 30× ours (see the loss's docstring).

Crops (Sultani's C3D features had none; the paper's I3D row does not say): `crops="mean"` (default) trains
on the crop-averaged features, one bag per video (the plain MIL reference of issue 12 did the same), and
scores the crop-averaged test features; `crops="independent"` makes each crop a bag of its own, as UR-DMU
trains, and averages the C crops' scores at test time. Measured at 400 steps (CPU, seeds 0 / 1, AUC / AP):
UCF quick 81.75 / 51.58 and 81.93 / 51.13 (mean) against 81.91 / 50.81 and 82.06 / 52.34 (independent);
XD quick 93.77 / 82.11 and 94.06 / 82.61 against 93.82 / 82.37 and 93.84 / 82.62. The same detector
either way; "mean" scores the test set C× cheaper and is what the original, crop-free model saw.

What it found on the synthetic quick data (benchmarks/sultani-floor.md): at UR-DMU's lr 1e-4 the quick
encoder stage (100 steps) stayed below this floor on UCF and XD; the quick profile's encoder lr 1e-3 fixed it.

Training runs through `train.fit` (resumable from RUN/sultani/checkpoint.partial.pt) and finishes with
`train._finish` (checkpoint.pt, history.json, test_scores.npz, metrics.json, DONE). A finished stage with
the same config is loaded. The stage's config covers its own settings, the data (without the other
stages' `n_segments` and `crops`, which it does not use), the seed and `amp`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from gsmoe_lib import runs
from gsmoe_lib.data.batching import TrainSet, pool_segments
from gsmoe_lib.device import autocast
from gsmoe_lib.losses import sultani_ranking_loss
from gsmoe_lib.models.sultani import SultaniMLP

if TYPE_CHECKING:  # train imports this module (for SultaniConfig): import it lazily at run time
    from gsmoe_lib.data.layouts import FeatureDataset
    from gsmoe_lib.train import Data, PipelineConfig, StageResult

STAGE = "sultani"
CROP_MODES = ("mean", "independent")


@dataclass
class SultaniConfig:
    """Sultani et al.'s training (module docstring gives the source of each default)."""

    iterations: int = 20000  # their Keras script's num_iters
    batch_normal: int = 30
    batch_abnormal: int = 30
    n_segments: int = 32  # segments per training video (mean of the snippets in each)
    crops: str = "mean"  # "mean": one bag per video of crop-averaged features; "independent": a bag per crop
    lr: float = 1e-3  # Adagrad (the paper's value; their Keras script uses 0.01)
    weight_decay: float = 1e-3
    smooth_weight: float = 8e-5  # λ1
    sparse_weight: float = 8e-5  # λ2
    hidden: int = 512
    bottleneck: int = 32
    dropout: float = 0.6
    checkpoint_every: int = 2000


def _check(sc: SultaniConfig) -> None:
    if sc.crops not in CROP_MODES:
        raise ValueError(f"sultani.crops must be one of {', '.join(CROP_MODES)}, got {sc.crops!r}")
    if sc.n_segments < 1 or sc.iterations < 0:
        raise ValueError(f"sultani: n_segments must be >= 1 and iterations >= 0, got {sc.n_segments}, "
                         f"{sc.iterations}")


def stage_config(cfg: PipelineConfig) -> dict[str, Any]:
    """What makes two Sultani stages the same: its settings, the data (not the other stages' pooling), seed, amp."""
    from gsmoe_lib.train import data_identity

    data = {k: v for k, v in data_identity(cfg.data).items() if k not in ("n_segments", "crops")}
    return {"stage": STAGE, "settings": asdict(cfg.sultani), "data": data, "seed": cfg.seed, "amp": cfg.amp,
            "upstream": None}


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


def score_fn(model: SultaniMLP, crops: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """x [1, C, T, D] -> scores [1, T]: crop-averaged features ("mean") or crop-averaged scores ("independent")."""
    if crops == "mean":
        return lambda x: model(x.mean(dim=1))
    return lambda x: model(x).mean(dim=1)


def _open_splits(cfg: PipelineConfig, dataset: str, splits: tuple[str, ...]) -> list[FeatureDataset]:
    """The named splits of `cfg.data` (one directory walk for all of them)."""
    from gsmoe_lib.data.layouts import FileIndex, open_dataset

    d = cfg.data
    index = FileIndex.build(d.data_root)
    return [open_dataset(d.data_root, dataset, split, train_list=d.train_list, test_list=d.test_list,
                         annotations=d.annotations, file_index=index) for split in splits]


def train_sultani(cfg: PipelineConfig, data: Data | None, run_dir: str | Path, progress: bool = True,
                  on_step: Callable[[int], None] | None = None, stage_name: str = STAGE) -> StageResult:
    """Train (or load, when finished with the same config) Sultani's MIL detector into RUN/<stage_name>.

    `data`: the pipeline's data (its test split is scored); None opens the data of `cfg.data`. The training
    bags are pooled here from the raw training split (the pipeline's pooled training set has another
    number of segments). Returns `train.StageResult(model, metrics, path, skipped)`.
    """
    from gsmoe_lib import train

    sc, device = cfg.sultani, cfg.device
    _check(sc)
    stage = runs.StageDir(run_dir, stage_name)
    config = stage_config(cfg)
    if stage.is_done(config):
        ck = runs.load_checkpoint(stage.checkpoint, STAGE)
        model = SultaniMLP(ck["input_dim"], ck["hidden"], ck["bottleneck"], ck["dropout"])
        model.load_state_dict(ck["state_dict"])
        return train.StageResult(model.to(device).eval(), stage.metrics(), stage.path, True)

    dataset = data.dataset if data is not None else train.dataset_name(cfg.data)
    if data is not None:
        train_ds, test = _open_splits(cfg, dataset, ("train",))[0], data.test
    else:
        train_ds, test = _open_splits(cfg, dataset, ("train", "test"))
    bags = pool_bags(train_ds, sc.n_segments, sc.crops, progress)
    features = bags.features.to(device)  # [N, S, D]
    labels = bags.labels.to(device)  # [N]

    stage.start(config, cfg.seed, device)
    runs.seed_everything(cfg.seed)
    model = SultaniMLP(features.shape[-1], sc.hidden, sc.bottleneck, sc.dropout).to(device).train()
    optimizer = torch.optim.Adagrad(model.parameters(), lr=sc.lr, weight_decay=sc.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed + 4)  # the other stages use seed + 0..3
    batches = bags.sampler(sc.batch_normal, sc.batch_abnormal, generator=gen)

    def step(i: int, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        idx = idx.to(device)
        with autocast(device, cfg.amp):
            scores = model(features[idx]).float()  # [B, S]
        loss, parts = sultani_ranking_loss(scores, labels[idx], sc.smooth_weight, sc.sparse_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return parts

    history = train.fit(stage, config, {"model": model}, optimizer, sc.iterations, batches, step,
                        sc.checkpoint_every, progress, on_step=on_step)
    model.eval()
    metrics, scores = train._evaluate(score_fn(model, sc.crops), test, device, cfg.amp, progress)
    metrics["test_score_std"] = float(np.concatenate(list(scores.values())).std()) if scores else float("nan")
    payload = {"state_dict": model.state_dict(), "input_dim": model.input_dim, "hidden": sc.hidden,
               "bottleneck": sc.bottleneck, "dropout": sc.dropout, "crops": sc.crops}
    train._finish(stage, config, payload, STAGE, metrics, history, scores)
    return train.StageResult(model, metrics, stage.path, False)
