"""The top-k MIL MLP as a reference stage: RUN/topk_mil, beside Sultani's (`training.sultani`).

A one-hidden-layer MLP (`models.topk_mil.TopKMLP`) on the crop-averaged raw features, every training video
pooled to 32 segments (`sultani.reference_bags`), trained with BCE of the mean of the top max(S // 16, 1)
segment scores against the video label (`losses.mil_bce`); Adam at lr 1e-3, weight decay 5e-4, batches of
16 normal + 16 abnormal videos. Its length is the validation rule of every stage (`training.validation`):
the held-out training videos ranked by the same top-k mean, best checkpoint kept, early stop.

Why it is here: on small data it is the plainest member of the MIL family RTFM and UR-DMU come from, and a
GS-MoE stage below it on the same features shows a fault in the stage's training or design, not in the
features (results.md says so, row by row). At test time every snippet of every test video is scored (crops
averaged first), as every other stage.

The stage plugs into `stages.load_or_train` like every stage; its config covers its own settings, the data
without the other stages' `n_segments` and `crops`, the validation split, the seed and `amp`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from gsmoe_lib.device import autocast
from gsmoe_lib.losses import mil_bce
from gsmoe_lib.models.topk_mil import TopKMLP
from gsmoe_lib.training.config import PipelineConfig, TopKMILConfig, stage_config
from gsmoe_lib.training.data import Data
from gsmoe_lib.training.loop import optimizer_step
from gsmoe_lib.training.stages import (StageResult, Trained, Training, eval_scores, evaluate, held_out_validation,
                                       load_or_train, stage_generator)
from gsmoe_lib.training.sultani import reference_bags, score_fn
from gsmoe_lib.training.validation import hold_out_set

STAGE = "topk_mil"


def topk_k(n_segments: int) -> int:
    """The number of top segments whose mean is a video's score: max(S // 16, 1) (2 for S = 32)."""
    return max(n_segments // 16, 1)


def check_config(tc: TopKMILConfig) -> None:
    if tc.n_segments < 1 or tc.iterations < 0:
        raise ValueError(f"topk_mil: n_segments must be >= 1 and iterations >= 0, got {tc.n_segments}, "
                         f"{tc.iterations}")


def train_topk_mil(cfg: PipelineConfig, data: Data | None, run_dir: str | Path, progress: bool = True,
                   on_step: Callable[[int], None] | None = None) -> StageResult:
    """Train (or load, when finished with the same config) the top-k MIL MLP into RUN/topk_mil.

    `data`: the pipeline's data (its test split is scored); None opens the data of `cfg.data`.
    """
    tc, device = cfg.topk_mil, cfg.device
    check_config(tc)

    def build() -> Training:
        bags, test = reference_bags(cfg, data, tc.n_segments, "mean", progress)
        features, labels = bags.features.to(device), bags.labels.to(device)  # [V, S, D], [V]
        model = TopKMLP(features.shape[-1], tc.hidden, tc.dropout).to(device).train()
        optimizer = torch.optim.Adam(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
        k = topk_k(tc.n_segments)

        def step(i: int, idx: torch.Tensor) -> dict[str, torch.Tensor]:
            idx = idx.to(device)
            with autocast(device, cfg.amp):
                scores = model(features[idx]).float()  # [B, S]
            loss = mil_bce(scores, labels[idx], k)
            optimizer_step(loss, optimizer)
            return {"total": loss.detach()}

        def finish(history: list[dict[str, float]]) -> Trained:
            model.eval()
            metrics, scores = evaluate(score_fn(model, "mean"), test, cfg, progress)
            return Trained(model, metrics, scores, model.checkpoint_payload())

        val = hold_out_set(bags, cfg.validation)
        batches = bags.sampler(tc.batch_normal, tc.batch_abnormal, generator=stage_generator(cfg.seed, STAGE),
                               among=val.train_mask)
        validation = held_out_validation(cfg, tc, val, eval_scores(model, model, features, cfg), k)
        return Training({"model": model}, optimizer, tc.iterations, tc.checkpoint_every, batches, step, finish,
                        validation)

    return load_or_train(cfg, run_dir, STAGE, stage_config(cfg, STAGE, None), STAGE, TopKMLP.from_checkpoint,
                         build, progress, on_step)
