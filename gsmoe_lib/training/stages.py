"""The stages of GS-MoE, each a function (config, data, run folder) -> `StageResult`, on one skeleton.

    encoder  UR-DMU trained with its MIL objective (the paper's baseline; or loaded from a released checkpoint)
    tgs      the encoder fine-tuned with L_TGS (Eq. 6); its first epoch with L_topk-norm only
    experts  one expert per class (or per k-means cluster) on the frozen encoder's task-aware features
             (`training.moe_stages`)
    gate     the gate on all training videos, encoder and experts frozen (`training.moe_stages`)
    sultani  the reference detector beside them (`training.sultani`)

The skeleton, `load_or_train`, is what every stage means by "a stage": its identity is its config
(`config.stage_config`: settings, data, seed, autocast, upstream stage's hash); a stage whose RUN/<stage>/DONE
holds that hash is loaded (`Model.from_checkpoint`), one that finished with another config is refused
(`runs.StageConflict`), one interrupted resumes (`loop.fit`). Otherwise it seeds every RNG with the run's
seed, lets the stage `build` its model, optimiser, batches and step, trains, evaluates on the test split and
writes checkpoint.pt, history.json, test_scores.npz, metrics.json and DONE (`runs.StageDir`).

Each stage draws its batches from its own generator, seeded with the run seed plus the stage's
`SEED_OFFSETS` entry, so adding draws to one stage never shifts another's batches.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple

import numpy as np
import torch

from gsmoe_lib import runs
from gsmoe_lib.device import autocast
from gsmoe_lib.data.batching import TrainSet
from gsmoe_lib.data.layouts import FeatureDataset
from gsmoe_lib.models.urdmu import URDMU, k_for_length, load_released
from gsmoe_lib.training.config import PipelineConfig, stage_config
from gsmoe_lib.training.data import Data
from gsmoe_lib.training.loop import fit, frozen_forward, tgs_update, urdmu_update
from gsmoe_lib.tgs import TGSConfig
from gsmoe_lib.training.pseudo_labels import (FROM_TEACHER, REFRESHING, PseudoLabels, splat_teacher,
                                              training_health, warmup_per_pool)
from gsmoe_lib.training.validation import (HeldOut, Validation, hold_out_set, selection_summary, stage_validation,
                                           video_auc)

STAGES = ("encoder", "tgs", "experts", "gate")
# Reference detectors beside GS-MoE's stages, trained when named in `stages` (training/sultani.py).
REFERENCE_STAGES = ("sultani", "topk_mil")
# Added to the run seed for each stage's batch generator (and the gate's feature-dropout draws).
SEED_OFFSETS = {"encoder": 0, "tgs": 1, "experts": 2, "gate": 3, "sultani": 4, "topk_mil": 5,
                "class-teachers": 6, "gate-feature-dropout": 1003}


def stage_generator(seed: int, name: str) -> torch.Generator:
    """A CPU generator of its own for stage `name`'s random draws: seed + SEED_OFFSETS[name]."""
    return torch.Generator().manual_seed(seed + SEED_OFFSETS[name])


class RandomStream(torch.nn.Module):
    """A stage's own generator (beyond its batch sampler's) as a module: put it in `Training.modules`, and a
    partial checkpoint saves its state and a resumed stage continues its stream (`loop.fit`)."""

    def __init__(self, generator: torch.Generator) -> None:
        super().__init__()
        self.generator = generator

    def get_extra_state(self) -> torch.Tensor:
        return self.generator.get_state()

    def set_extra_state(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)


class StageResult(NamedTuple):
    model: torch.nn.Module  # in eval mode; the gate's is the whole GSMoEModel
    metrics: dict[str, Any]
    path: Path
    skipped: bool  # loaded from a finished stage instead of trained


class Trained(NamedTuple):
    """What a stage hands back after training: the model it returns, its metrics, test scores and checkpoint."""

    model: torch.nn.Module
    metrics: dict[str, Any]
    scores: dict[str, dict[str, np.ndarray]]  # "scores" -> name -> [T] (+ "expert_scores" -> [T, E])
    payload: dict[str, Any]  # checkpoint.pt: the model's `checkpoint_payload()` and the stage's own keys


@dataclass
class Training:
    """What a stage plugs into `load_or_train` (built after the seed is set)."""

    modules: dict[str, torch.nn.Module]  # what a partial checkpoint saves: the trained modules, a label store
    optimizer: torch.optim.Optimizer
    iterations: int
    checkpoint_every: int
    batches: Iterator[Any]  # endless, from the stage's own generator (`stage_generator`)
    step: Callable[[int, Any], dict[str, torch.Tensor]]  # (iteration, batch) -> detached loss parts
    finish: Callable[[list[dict[str, float]]], Trained]  # (loss history) -> evaluated model
    validation: Validation | None = None  # how the stage chooses its length (training.validation)


def load_or_train(cfg: PipelineConfig, run_dir: str | Path, name: str, config: dict[str, Any], kind: str,
                  load: Callable[[dict[str, Any]], torch.nn.Module], build: Callable[[], Training],
                  progress: bool = True, on_step: Callable[[int], None] | None = None) -> StageResult:
    """The one skeleton of every stage (module docstring): load RUN/<name> if finished with `config`, else
    start it, seed everything with `cfg.seed`, `build()` the training, `fit`, evaluate and write the results.

    load(checkpoint payload of `kind`) -> the stage's model; build() runs after the seed is set, so the
    model's initialisation is the first draw of the seed's stream.
    """
    stage = runs.Run(run_dir).stage(name)
    if stage.is_done(config):  # a reader: no lock
        stage.verify()
        model = load(stage.load_checkpoint(kind))
        return StageResult(model.to(cfg.device).eval(), stage.metrics(), stage.path, True)
    with runs.writer_lock(run_dir):  # one writer per run folder (runs.writer_lock)
        if stage.is_done(config):  # finished by the writer this one waited for
            return load_or_train(cfg, run_dir, name, config, kind, load, build, progress, on_step)
        stage.start(config, cfg.seed, cfg.device)
        runs.seed_everything(cfg.seed)
        t = build()
        history = fit(stage, config, t.modules, t.optimizer, t.iterations, t.batches, t.step, t.checkpoint_every,
                      progress, on_step=on_step, validation=t.validation)
        out = t.finish(history)
        out.metrics.update(selection_summary(history))
        stage.write_results(out.payload, kind, history, out.scores)
        stage.finish(config, out.metrics)
    return StageResult(out.model, out.metrics, stage.path, False)


def evaluate(score_fn: Callable[[torch.Tensor], Any], test: FeatureDataset, cfg: PipelineConfig, progress: bool,
             experts: bool = False) -> tuple[dict[str, Any], dict[str, dict[str, np.ndarray]]]:
    """Score the test split under `cfg.amp` and compute the stage's metrics: (metrics, scores).

    score_fn(x [1, C, T, D]) -> scores [1, T], or with `experts` (scores [1, T], expert scores [1, T, E]).
    scores: {"scores": name -> [T]} (+ "expert_scores": name -> [T, E]), as the stage folder stores them.
    metrics: `metrics.evaluate_scores`' keys, "classwise" AUC per class, and `collapse_report` (score_std,
    collapsed: a constant stage has no metric to quote).
    """
    from gsmoe_lib.evaluate import score_dataset
    from gsmoe_lib.metrics import classwise_auc, collapse_report, evaluate_scores

    def fn(x: torch.Tensor):
        with autocast(cfg.device, cfg.amp):
            out = score_fn(x)
        return tuple(o.float() for o in out) if experts else out.float()

    scored = score_dataset(fn, test, device=cfg.device, progress=progress, return_extra=experts)
    scores = {"scores": scored[0], "expert_scores": scored[1]} if experts else {"scores": scored}
    video_scores = scores["scores"]
    frame_labels = {v.name: test.frame_labels(i) for i, v in enumerate(test.videos)}
    metrics: dict[str, Any] = evaluate_scores(video_scores, frame_labels, {v.name: bool(v.label) for v in test.videos})
    metrics["classwise"] = classwise_auc(video_scores, frame_labels, {v.name: tuple(v.classes) for v in test.videos},
                                         classes=list(test.classes))
    metrics.update(collapse_report(video_scores))
    return metrics, scores


def held_out_validation(cfg: PipelineConfig, settings: Any, val: HeldOut,
                        scores_of: Callable[[torch.Tensor], torch.Tensor], k: int, start: int = 0,
                        keep: tuple[str, ...] | None = None) -> Validation | None:
    """A stage's `Validation`: the video-level AUC of the held-out samples' top-k scores.

    scores_of(rows [N']) -> scores [N', S] of those training samples, in eval mode (and back to training
    mode after). `start`, `keep`: see `validation.Validation`.
    """
    return stage_validation(cfg.validation, settings, val, lambda: {"score": video_auc(val, scores_of(val.rows), k)},
                            start, keep)


def eval_scores(model: torch.nn.Module, fn: Callable[[torch.Tensor], torch.Tensor], features: torch.Tensor,
                cfg: PipelineConfig) -> Callable[[torch.Tensor], torch.Tensor]:
    """rows -> fn(features[rows]) with `model` in eval mode for the pass (training mode after)."""
    def scores_of(rows: torch.Tensor) -> torch.Tensor:
        model.eval()
        out = frozen_forward(fn, features, cfg.device, cfg.amp, rows=rows)
        model.train()
        return out

    return scores_of


# ---------------------------------------------------------------------------------------------------
# Stage 1: the task encoder (UR-DMU, MIL)
# ---------------------------------------------------------------------------------------------------


def train_encoder(cfg: PipelineConfig, data: Data, run_dir: str | Path, progress: bool = True,
                  on_step: Callable[[int], None] | None = None) -> StageResult:
    """UR-DMU with its MIL objective (REFERENCE §2), from scratch or from `encoder.init_checkpoint`."""
    ec, train = cfg.encoder, data.train

    def build() -> Training:
        input_dim = train.features.shape[-1]
        model = load_released(ec.init_checkpoint) if ec.init_checkpoint else URDMU(input_dim=input_dim)
        model.context_window = ec.context_window  # an extension; 0 (the default) is UR-DMU
        if ec.context_window:
            model.model_args["context_window"] = ec.context_window
        model.to(cfg.device).train()
        optimizer = torch.optim.Adam(model.parameters(), lr=ec.lr, weight_decay=ec.weight_decay)
        k = k_for_length(train.features.shape[-2])
        labels_dev = train.labels.to(train.features.device)

        def step(i: int, idx: torch.Tensor) -> dict[str, torch.Tensor]:
            idx = idx.to(train.features.device)
            x, labels = train.features[idx].float(), labels_dev[idx]  # [B, (C,) S, D], [B] normal half first
            return urdmu_update(model, x, labels, k, optimizer, cfg.amp, memory_weight=ec.memory_weight,
                                triplet_weight=ec.triplet_weight, kl_weight=ec.kl_weight,
                                distance_weight=ec.distance_weight)

        def finish(history: list[dict[str, float]]) -> Trained:
            model.eval()
            metrics, scores = evaluate(lambda x: model(x).scores, data.test, cfg, progress)
            return Trained(model, metrics, scores, model.checkpoint_payload())

        val = hold_out_set(train, cfg.validation)
        batches = train.sampler(ec.batch_normal, ec.batch_abnormal, generator=stage_generator(cfg.seed, "encoder"),
                                among=val.train_mask)
        validation = held_out_validation(
            cfg, ec, val, eval_scores(model, lambda x: model(x, training_extras=False).scores, train.features, cfg), k)
        return Training({"model": model}, optimizer, ec.iterations, ec.checkpoint_every, batches, step, finish,
                        validation)

    return load_or_train(cfg, run_dir, "encoder", stage_config(cfg, "encoder", None), "urdmu",
                         URDMU.from_checkpoint, build, progress, on_step)


# ---------------------------------------------------------------------------------------------------
# Stage 1b: TGS fine-tuning of the encoder
# ---------------------------------------------------------------------------------------------------


def teacher_pseudo_labels(encoder: URDMU, train: TrainSet, tgs_cfg: TGSConfig, device: str, amp: str,
                          chunk: int = 64) -> torch.Tensor:
    """ŷ [N, S] of every training sample from `encoder`'s eval-mode scores (crops averaged on an axis), on the
    training set's device; warns when no abnormal sample got a kernel (`pseudo_labels.check_pseudo_labels`)."""
    encoder.eval()
    scores = frozen_forward(lambda x: encoder(x, training_extras=False).scores, train.features, device, amp, chunk)
    return splat_teacher(scores, train.labels, tgs_cfg, "tgs").to(train.features.device)


def finetune_tgs(cfg: PipelineConfig, data: Data, encoder: URDMU, run_dir: str | Path, upstream: str,
                 progress: bool = True, on_step: Callable[[int], None] | None = None) -> StageResult:
    """Fine-tune a copy of the MIL-trained encoder with L_TGS (Eq. 6).

    Pseudo-labels (`cfg.tgs.tgs.source`, see `training.pseudo_labels`): "refresh" (default) splats the
    fine-tuned model's own eval-mode scores of every abnormal training sample at the end of the first epoch
    and once per epoch after it; "encoder" splats the MIL encoder's scores once, before the first step;
    "self" splats the scores of each training step's own (dropout-on) forward pass.
    """
    tc, train, device = cfg.tgs, data.train, cfg.device
    source = tc.tgs.source

    def build() -> Training:
        # A copy of the MIL encoder: no random numbers drawn here, the seed's stream starts at the first step.
        model = copy.deepcopy(encoder)
        model.zero_grad(set_to_none=True)
        model.to(device).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
        k = k_for_length(train.features.shape[-2])
        val = hold_out_set(train, cfg.validation)
        member = ((train.labels == 1) & val.train_mask)[:, None]  # [N, 1]: one pool, every abnormal training sample
        warmup = warmup_per_pool(tc, member.sum(0), "tgs")
        store = PseudoLabels.for_stage(tc, member, train.features.shape[-2], warmup, train.features.device)
        if source in FROM_TEACHER:  # the copy still holds the MIL weights: its eval-mode scores are the teacher's
            store.set_all(teacher_pseudo_labels(model, train, tc.tgs, device, cfg.amp))
        labels_dev = train.labels.to(train.features.device)
        model.train()

        @torch.no_grad()
        def own_scores(rows: torch.Tensor) -> torch.Tensor:  # [n] -> [n, S, 1], eval mode
            model.eval()
            with autocast(device, cfg.amp):
                out = model(train.features[rows.to(train.features.device)].to(device).float(), training_extras=False)
            model.train()
            return out.scores.float()[:, :, None]

        def step(i: int, idx: torch.Tensor) -> dict[str, torch.Tensor]:
            if source in REFRESHING:
                store.refresh(i, own_scores)
            idx = idx.to(train.features.device)
            x, labels = train.features[idx].float(), labels_dev[idx]
            with autocast(device, cfg.amp):
                scores = model(x, training_extras=False).scores.float()  # [B, S]
            teacher = None if source == "self" else store.labels_of(idx).to(scores.device)
            return tgs_update(scores, labels, teacher, i < int(warmup[0]), tc, k, optimizer)

        def finish(history: list[dict[str, float]]) -> Trained:
            model.eval()
            metrics, scores = evaluate(lambda x: model(x).scores, data.test, cfg, progress)
            metrics.update(training_health(store, source, history, "tgs"))
            return Trained(model, metrics, scores, model.checkpoint_payload())

        batches = train.sampler(tc.batch_normal, tc.batch_abnormal, generator=stage_generator(cfg.seed, "tgs"),
                                among=val.train_mask)
        validation = held_out_validation(
            cfg, tc, val, eval_scores(model, lambda x: model(x, training_extras=False).scores, train.features, cfg), k,
            start=int(warmup[0]), keep=("model",))
        return Training({"model": model, "pseudo": store}, optimizer, tc.iterations, tc.checkpoint_every, batches,
                        step, finish, validation)

    return load_or_train(cfg, run_dir, "tgs", stage_config(cfg, "tgs", upstream), "urdmu", URDMU.from_checkpoint,
                         build, progress, on_step)
