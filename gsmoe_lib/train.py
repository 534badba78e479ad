"""The GS-MoE training stages, each a function from (config, data, run folder) to a model + test metrics.

    encoder  UR-DMU trained with its MIL objective (the paper's baseline; or loaded from a released checkpoint)
    tgs      the encoder fine-tuned with L_TGS (Eq. 6); first `warmup_iterations` with L_topk-norm only
    experts  one expert per class (or per k-means cluster) on the frozen encoder's task-aware features, L_TGS
    gate     the gate on all training videos, encoder and experts frozen, L_TGS

Every stage writes RUN/<stage>/{config.json, env.json, checkpoint.pt, metrics.json, test_scores.npz, DONE}
(see `runs.py`). A stage whose DONE file matches its config (which includes the seed, the data and the
upstream stage's config) is loaded instead of trained again; an interrupted stage resumes from
RUN/<stage>/checkpoint.partial.pt, with the optimiser, the batch sampler and the RNG restored, so the
resumed run gives the same numbers as an uninterrupted one.

Decisions where the paper is silent (all are config fields; measurements in README.md, "Results"):
- Iterations, learning rates and weight decays of the TGS, expert and gate stages are not published. The
  `paper` profile uses the UR-DMU schedule for the encoder (3000 iterations, Adam 1e-4 / 5e-5) and AdamW
  (the paper's optimiser) at 1e-4 for the others; `quick` and `tiny` shrink batches, segments and
  iterations so the whole pipeline fits a 2-core CPU. The experts and the gate read the frozen encoder's
  task-aware features, cached once per run, so their steps are cheap and they are trained to a flat loss.
- Smoothness and sparsity: Sultani et al. 2018's (the paper cites them), sums over each abnormal video,
  λ1 = λ2 = 8e-5 (`smooth_weight`, `sparse_weight`; RTFM's 8e-4 / 8e-3 are selectable, not the default).
- "The first epoch" with L_topk-norm only is counted in iterations on each stage's OWN abnormal pool
  (`warmup_pool="stage"`): for expert e, one pass over its class's samples; for TGS and the gate, over all
  abnormal samples. Capped at `warmup_max_fraction` (2/3) of a stage, with a warning.
- Pseudo-labels (`TGSConfig.source`): "refresh" (default) splats the stage's own eval-mode scores of its
  training pool at the end of its first epoch and once per epoch after that (the paper: "the Gaussian
  kernels are extracted from the abnormal scores produced by the model"); each expert therefore refines what
  it itself finds in its class. "encoder" splats a frozen teacher's scores once (the MIL encoder's for TGS,
  the TGS encoder's for experts and gate); "self" splats each training step's own scores. TGS finds peaks
  on each curve rescaled to its own range (`TGSConfig.scale="video"`), so a low-scoring teacher still gives
  every abnormal video a kernel.
- The gate reads the experts' logits (`GateConfig.expert_input`), as the paper says.
- Extensions beyond the paper, off by default: `ExpertsConfig.other_class_negatives` (other classes'
  abnormal samples as an expert's negatives), `GateConfig.feature_dropout` (the gate trained with its
  feature stream dropped at random). README's decision table gives their measured effect.
- Experts train all at once: each step draws, for every expert, its own batch (normal videos + abnormal
  videos of its class or cluster), and the stacked experts run each expert on its own batch.
"""

from __future__ import annotations

import argparse
import math
import warnings
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple

import numpy as np
import torch
from tqdm.auto import tqdm

from gsmoe_lib import runs
from gsmoe_lib.device import autocast
from gsmoe_lib.data.batching import TrainSet
from gsmoe_lib.data.layouts import FeatureDataset, FileIndex, detect_dataset_name, open_dataset
from gsmoe_lib.evaluate import evaluate_dataset, score_dataset
from gsmoe_lib.losses import k_for_length, urdmu_loss
from gsmoe_lib.models.experts import Experts
from gsmoe_lib.models.gate import Gate
from gsmoe_lib.models.gsmoe import GSMoEModel, combine_experts
from gsmoe_lib.models.urdmu import URDMU, load_released
from gsmoe_lib.sultani import SultaniConfig, train_sultani
from gsmoe_lib.tgs import TGSConfig, pseudo_labels, tgs_loss

STAGES = ("encoder", "tgs", "experts", "gate")
# Each stage draws its batches from its own generator, seeded with the run seed plus its offset.
SEED_OFFSETS = {"encoder": 0, "tgs": 1, "experts": 2, "gate": 3}
# Reference detectors beside GS-MoE's stages, trained when named in `stages` (gsmoe_lib/sultani.py).
REFERENCE_STAGES = ("sultani",)


# ---------------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------------


@dataclass
class DataConfig:
    data_root: str = "data/synthetic-quick"  # features, lists and annotations (see `gsmoe data check`)
    dataset: str | None = None  # "ucf-crime" | "xd-violence"; None: from DATA_ROOT/gsmoe_dataset.json, else ucf-crime
    train_list: str | None = None
    test_list: str | None = None
    annotations: str | None = None
    n_segments: int = 200  # UR-DMU pools every training video to 200 segments
    crops: str = "independent"  # "independent": each crop file is a sample (UR-DMU); "axis": [N, C, S, D]


@dataclass
class EncoderConfig:
    iterations: int = 3000
    batch_normal: int = 64
    batch_abnormal: int = 64
    lr: float = 1e-4  # Adam, as UR-DMU
    weight_decay: float = 5e-5
    init_checkpoint: str | None = None  # a released UR-DMU state_dict: start from it (iterations=0: use as is)
    checkpoint_every: int = 200


@dataclass
class TGSTrainingConfig:
    """What every stage trained with L_TGS (TGS fine-tuning, experts, gate) shares."""

    iterations: int = 1000
    # "The first epoch" (L_topk-norm only): None = one pass over the stage's OWN abnormal pool (each expert's
    # class for the experts), at most `warmup_max_fraction` of the stage; an int fixes it for every pool.
    warmup_iterations: int | None = None
    warmup_max_fraction: float = 2 / 3
    warmup_pool: str = "stage"  # "stage": each stage's (expert's) own pool | "all": every abnormal sample (old)
    batch_normal: int = 64
    batch_abnormal: int = 64
    lr: float = 1e-4  # AdamW (the paper's optimiser)
    weight_decay: float = 1e-4
    smooth_weight: float = 8e-5  # Sultani et al. 2018's λ1, on per-video sums (RTFM's 8e-4 / 8e-3 selectable)
    sparse_weight: float = 8e-5  # Sultani et al. 2018's λ2
    # Pseudo-labels (tgs.source): "refresh" splats the stage's own eval-mode scores of its training pool,
    # recomputed every `refresh_every` iterations after the warm-up; "encoder" a frozen teacher's, once.
    tgs: TGSConfig = field(default_factory=TGSConfig)
    refresh_every: int | None = None  # None: one epoch of the stage's abnormal pool (mean pool for experts)
    checkpoint_every: int = 200


@dataclass
class TGSStageConfig(TGSTrainingConfig):
    """Stage 1b: the encoder fine-tuned with L_TGS."""


@dataclass
class ExpertsConfig(TGSTrainingConfig):
    kind: str = "class"  # "class": one expert per anomaly class; "cluster": k-means on task-aware features
    n_clusters: int = 7  # Table 5: 5, 6, 7
    d_model: int = 192
    dropout: float = 0.1
    # Extension (not in the paper): this share of each expert's negative half is drawn from the OTHER
    # experts' abnormal samples (target: their top-k -> 0, like a normal video). 0 = the paper (normals only).
    other_class_negatives: float = 0.0


@dataclass
class GateConfig(TGSTrainingConfig):
    use_features: bool = True  # Table 3: the gate with / without the task-aware features
    d_model: int = 256
    dropout: float = 0.1
    expert_input: str = "logits"  # what the gate reads of the experts: "logits" (the paper) | "probs"
    # Extension (not in the paper): probability of zeroing a training sample's feature stream, so that
    # the gate cannot fit the target from the features alone. 0 = the paper.
    feature_dropout: float = 0.0


@dataclass
class PipelineConfig:
    data: DataConfig = field(default_factory=DataConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    tgs: TGSStageConfig = field(default_factory=TGSStageConfig)
    experts: ExpertsConfig = field(default_factory=ExpertsConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    sultani: SultaniConfig = field(default_factory=SultaniConfig)  # the reference MIL detector (Table 2's floor)
    seed: int = 0
    device: str = "cpu"
    amp: str = "none"  # "none" | "bf16" (autocast); see README's performance section
    expert_combine: str = "max"  # Table 2 "+experts" row without the gate


# Profile overrides, as nested dicts over PipelineConfig. "paper" is the paper / UR-DMU scale.
PROFILES: dict[str, dict[str, Any]] = {
    "paper": {},
    "quick": {  # sized so that `make reproduce` (every notebook, 1 seed) fits 15 minutes on a 2-core CPU
        "data": {"n_segments": 64},
        # lr 1e-3: at UR-DMU's 1e-4, 100 steps leave the encoder below Sultani's MIL MLP (UCF quick 76.5 against
        # 82; XD 86.0 against 93.8). With 1e-3: 84.6 / 94.9 (H100, 3 seeds, benchmarks/encoder_schedule.py).
        "encoder": {"iterations": 100, "lr": 1e-3, "batch_normal": 16, "batch_abnormal": 16, "checkpoint_every": 50},
        "tgs": {"iterations": 50, "batch_normal": 16, "batch_abnormal": 16, "checkpoint_every": 25},
        # The experts and the gate train on cached task-aware features (no encoder pass per step); at these
        # sizes a step still costs ~0.3 s on the 2-core CPU, so the schedule is what `make reproduce` affords.
        "experts": {"iterations": 200, "batch_normal": 8, "batch_abnormal": 8, "checkpoint_every": 100},
        "gate": {"iterations": 200, "lr": 3e-4, "batch_normal": 8, "batch_abnormal": 8, "checkpoint_every": 100},
        # Sultani's batches and segments; 400 of its 20,000 steps: UCF quick test AUC 81.7 / 81.9 (seeds 0 / 1)
        # against 82.2 after 1,000-2,000 (gsmoe_lib/sultani.py)
        "sultani": {"iterations": 400, "checkpoint_every": 200},
    },
    "tiny": {
        "data": {"n_segments": 32},
        "encoder": {"iterations": 12, "batch_normal": 4, "batch_abnormal": 4, "checkpoint_every": 5},
        # Every stage must learn something even here (tests/integration/test_learning.py): the experts and the
        # gate are cheap at these sizes, so they get enough steps to leave their initialisation.
        # TGS: its first epoch (L_topk-norm only, 10 steps here) disorders the MIL ranking; 6 steps of pseudo-labels
        # after it left the tiny encoder at 0.28 AUC (from 0.78), 38 steps give 0.85.
        "tgs": {"iterations": 48, "batch_normal": 4, "batch_abnormal": 4, "checkpoint_every": 24},
        "experts": {"iterations": 60, "batch_normal": 4, "batch_abnormal": 4, "d_model": 64, "checkpoint_every": 30},
        "gate": {"iterations": 60, "lr": 3e-4, "batch_normal": 4, "batch_abnormal": 4, "d_model": 64,
                 "checkpoint_every": 30},
        "sultani": {"iterations": 30, "checkpoint_every": 10},
    },
}


def _merge(obj: Any, overrides: dict[str, Any], where: str = "config") -> Any:
    """A copy of dataclass `obj` with nested `overrides` applied; an unknown key is an error naming it."""
    known = {f.name: f for f in fields(obj)}
    changes = {}
    for key, value in overrides.items():
        if key not in known:
            raise ValueError(f"unknown {where} key {key!r}; known: {', '.join(sorted(known))}")
        current = getattr(obj, key)
        if is_dataclass(current) and isinstance(value, dict):
            changes[key] = _merge(current, value, f"{where}.{key}")
        else:
            changes[key] = value
    return replace(obj, **changes)


def make_config(profile: str = "quick", overrides: dict[str, Any] | None = None) -> PipelineConfig:
    """PipelineConfig for a profile ("tiny", "quick", "paper") with nested overrides applied on top."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; expected one of {', '.join(PROFILES)}")
    cfg = _merge(PipelineConfig(), PROFILES[profile])
    return _merge(cfg, overrides or {})


def config_from_dict(d: dict[str, Any]) -> PipelineConfig:
    """Inverse of dataclasses.asdict for PipelineConfig (TGS configs included)."""
    d = {k: dict(v) if isinstance(v, dict) else v for k, v in d.items()}
    for stage in ("tgs", "experts", "gate"):
        if stage in d and isinstance(d[stage].get("tgs"), dict):
            d[stage]["tgs"] = TGSConfig.from_dict(d[stage]["tgs"])
    return _merge(PipelineConfig(), d)


# ---------------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------------


class Data(NamedTuple):
    train: TrainSet  # pooled training samples, on the training device
    test: FeatureDataset  # the test split, read one video at a time
    dataset: str


def dataset_name(cfg: DataConfig) -> str:
    """The dataset a DataConfig names: its `dataset`, else DATA_ROOT/gsmoe_dataset.json's, else ucf-crime."""
    return cfg.dataset or detect_dataset_name(cfg.data_root) or "ucf-crime"


def load_data(cfg: DataConfig, device: str = "cpu", progress: bool = True) -> Data:
    """Open both splits (one directory walk) and pool the training videos once, staged on `device`."""
    dataset = dataset_name(cfg)
    index = FileIndex.build(cfg.data_root)
    kw = dict(train_list=cfg.train_list, test_list=cfg.test_list, annotations=cfg.annotations, file_index=index)
    train_ds = open_dataset(cfg.data_root, dataset, "train", **kw)
    test_ds = open_dataset(cfg.data_root, dataset, "test", **kw)
    train = TrainSet.from_dataset(train_ds, n_segments=cfg.n_segments, crops=cfg.crops, progress=progress)
    # Features are staged on the device once; labels and indices stay on the host, where the sampler draws.
    train = replace(train, features=train.features.to(device))
    return Data(train, test_ds, dataset)


def data_identity(cfg: DataConfig) -> dict[str, Any]:
    """What identifies the data a stage was trained on (goes into every stage's config hash).

    Normalised, so that equal runs hash equal whoever asks (the CLI, `gsmoe reproduce`, a notebook): the
    dataset resolved (None -> the name `load_data` uses), the data root and the list files absolute.
    """
    root = Path(cfg.data_root)
    ident: dict[str, Any] = {**asdict(cfg), "data_root": str(root.resolve()), "dataset": dataset_name(cfg)}
    for key in ("train_list", "test_list", "annotations"):  # "" and None both mean: not given
        ident[key] = str(Path(ident[key]).resolve()) if ident[key] else None
    manifest = root / "gsmoe_dataset.json"
    if manifest.is_file():  # a synthetic dataset: its generator config and seed identify it
        ident["manifest_sha"] = runs.config_hash(runs.read_json(manifest))
    return ident


# ---------------------------------------------------------------------------------------------------
# The training loop shared by all stages
# ---------------------------------------------------------------------------------------------------


class StageResult(NamedTuple):
    model: torch.nn.Module
    metrics: dict[str, Any]
    path: Path
    skipped: bool  # loaded from a finished stage instead of trained


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def fit(
    stage: runs.StageDir,
    config: dict[str, Any],
    modules: dict[str, torch.nn.Module],
    optimizer: torch.optim.Optimizer,
    iterations: int,
    batches: Iterator[Any],
    step: Callable[[int, Any], dict[str, torch.Tensor]],
    checkpoint_every: int,
    progress: bool = True,
    log_every: int = 10,
    on_step: Callable[[int], None] | None = None,
) -> list[dict[str, float]]:
    """Run `step(iteration, batch)` for `iterations` steps with resume, and return the loss history.

    `step` does forward, backward and optimizer.step(), and returns detached loss parts; they are read
    back to the host (a synchronisation) only every `log_every` steps. A partial checkpoint (modules,
    optimiser, RNG, iteration, history) is written every `checkpoint_every` steps and when the loop is
    interrupted by any exception (KeyboardInterrupt in Jupyter included); the next call with the same
    config resumes from it, fast-forwarding `batches` so the sampler continues where it stopped.
    `on_step(i)` is called after step i (a hook for tests and notebooks).
    """
    start, history = 0, []
    chash = runs.config_hash(config)
    if stage.partial_checkpoint.exists():
        ck = runs.load_checkpoint(stage.partial_checkpoint, kind=f"partial-{stage.stage}")
        if ck["config_hash"] == chash:
            for name, module in modules.items():
                module.load_state_dict(ck["modules"][name])
            optimizer.load_state_dict(ck["optimizer"])
            _set_rng_state(ck["rng"])
            start, history = int(ck["iteration"]), list(ck["history"])
        # a partial checkpoint of another config is ignored and overwritten

    for _ in range(start):  # the sampler's state is its position in the stream
        next(batches)

    def save_partial(done: int) -> None:
        runs.save_checkpoint(stage.partial_checkpoint, {
            "modules": {n: m.state_dict() for n, m in modules.items()},
            "optimizer": optimizer.state_dict(), "rng": _rng_state(), "iteration": done,
            "history": history, "config_hash": chash,
        }, kind=f"partial-{stage.stage}")

    bar = tqdm(range(start, iterations), desc=stage.stage, unit="it", disable=not progress,
               initial=start, total=iterations)
    done = start
    try:
        for i in bar:
            parts = step(i, next(batches))
            done = i + 1
            if done % log_every == 0 or done == iterations:
                values = {k: float(v) for k, v in parts.items()}  # one host sync per log_every steps
                history.append({"iteration": done, **values})
                bar.set_postfix(loss=f"{values.get('total', float('nan')):.4f}")
            if checkpoint_every and done % checkpoint_every == 0 and done < iterations:
                save_partial(done)
            if on_step is not None:
                on_step(i)
    except BaseException:
        if done > start:
            save_partial(done)
        raise
    return history


def tgs_update(scores: torch.Tensor, labels: torch.Tensor, teacher: torch.Tensor | None,
               first_epoch: bool | torch.Tensor, settings: TGSTrainingConfig, k: int,
               optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """One L_TGS step of any TGS-trained stage (encoder fine-tuning, experts, gate); returns the loss parts.

    scores [B, S] (float32, with gradient); labels [B]; teacher [B, S]: these samples' current pseudo-labels
    (a `PseudoLabels` store's), or None to splat the scores themselves (source "self"). `first_epoch`: True
    while the stage is in its first epoch (L_topk-norm only), or a bool tensor [B] per sample (experts whose
    own first epoch is not over).
    """
    if teacher is not None:
        pseudo = teacher
    elif isinstance(first_epoch, bool) and first_epoch:
        pseudo = torch.zeros_like(scores)
    else:
        pseudo = pseudo_labels(scores, settings.tgs)  # detached
    loss, parts = tgs_loss(scores, labels, pseudo, k, smooth_weight=settings.smooth_weight,
                           sparse_weight=settings.sparse_weight, topk_only=first_epoch)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return parts


def urdmu_update(model: URDMU, x: torch.Tensor, labels: torch.Tensor, k: int, optimizer: torch.optim.Optimizer,
                 amp: str = "none") -> dict[str, torch.Tensor]:
    """One UR-DMU MIL step (the encoder stage, and `gsmoe bench`'s encoder step); returns the loss parts.

    x [B, (C,) S, D] with the normal half of the batch first, labels [B]. Forward and loss under `amp`'s
    autocast, backward and the optimiser step outside it.
    """
    with autocast(x.device.type, amp):
        out = model(x, training_extras=True)
        loss, parts = urdmu_loss(out, labels, k)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return {**parts, "total": loss.detach()}


def _warmup(cfg: TGSTrainingConfig, train: TrainSet, stage: str) -> int:
    """Iterations of "the first epoch" (L_topk-norm only) of a stage whose pool is every abnormal sample."""
    return int(warmup_per_pool(cfg, torch.tensor([int((train.labels == 1).sum())]), stage)[0])


def warmup_per_pool(cfg: TGSTrainingConfig, pool_sizes: torch.Tensor, stage: str) -> torch.Tensor:
    """Iterations of "the first epoch" for each training pool [P] (one pool per expert, or one for a stage).

    `cfg.warmup_iterations` when set, else one pass over the pool's abnormal samples at `batch_abnormal` per
    step (`warmup_pool="stage"`: the pool's own size; "all": the largest pool, the earlier behaviour, where an
    expert of a rare class waited for an epoch of every abnormal sample), capped at `warmup_max_fraction`
    of the stage, with a warning when the cap applies.
    """
    if not 0.0 < cfg.warmup_max_fraction <= 1.0:
        raise ValueError(f"{stage}.warmup_max_fraction must be in (0, 1], got {cfg.warmup_max_fraction}")
    if cfg.warmup_pool not in ("stage", "all"):
        raise ValueError(f"{stage}.warmup_pool must be 'stage' or 'all', got {cfg.warmup_pool!r}")
    sizes = pool_sizes.to(torch.long).cpu()
    if cfg.warmup_iterations is not None:
        if cfg.warmup_iterations >= cfg.iterations:
            warnings.warn(f"{stage}: warmup_iterations={cfg.warmup_iterations} covers all {cfg.iterations} "
                          "iterations: no step will see a pseudo-label", stacklevel=3)
        return torch.full_like(sizes, cfg.warmup_iterations)
    if cfg.warmup_pool == "all":
        sizes = torch.full_like(sizes, int(sizes.sum()) if len(sizes) > 1 else int(sizes.max()))
    epoch = ((sizes + max(1, cfg.batch_abnormal) - 1) // max(1, cfg.batch_abnormal)).clamp(min=1)
    cap = max(1, int(cfg.warmup_max_fraction * cfg.iterations))
    if bool((epoch > cap).any()):
        warnings.warn(
            f"{stage}: one epoch of abnormal samples is {int(epoch.max())} iterations, more than "
            f"{cfg.warmup_max_fraction:.2f} of the stage's {cfg.iterations}; the first epoch (L_topk-norm only) is "
            f"cut to {cap} so that the pseudo-labels train the rest. Raise {stage}.iterations for the paper's "
            "schedule.", stacklevel=3)
    return epoch.clamp(max=cap)


def refresh_period(cfg: TGSTrainingConfig, pool_sizes: torch.Tensor) -> int:
    """Iterations between two refreshes of the pseudo-labels (source "refresh"): `cfg.refresh_every`, else one
    epoch of the mean pool (each step draws `batch_abnormal` samples of every pool)."""
    if cfg.refresh_every is not None:
        if cfg.refresh_every < 1:
            raise ValueError(f"refresh_every must be >= 1, got {cfg.refresh_every}")
        return int(cfg.refresh_every)
    return max(1, math.ceil(float(pool_sizes.float().mean()) / max(1, cfg.batch_abnormal)))


class PseudoLabels(torch.nn.Module):
    """The pseudo-labels ŷ of a TGS-trained stage's training pool, and when they are recomputed.

    targets: [N, S, P] buffer (P pools: one per expert, or 1), saved with the stage's partial checkpoints so a
    resumed run continues with the labels it had. `source` (TGSConfig.source):
      "encoder": set once from a frozen teacher's scores (`set_all`), never refreshed;
      "refresh": recomputed from the stage's own eval-mode scores (`score_fn`) at the end of each pool's first
                 epoch, then every `period` iterations (the paper: "Gaussian kernels extracted from the abnormal
                 scores produced by the model");
      "teacher-refresh": set from the teacher, then refreshed from the stage's own scores after one period of
                 training on them, and every period after that;
      "self":    not stored; the trainer splats each step's own training-mode scores.
    """

    def __init__(self, n: int, s: int, member: torch.Tensor, warmup: torch.Tensor, period: int, tgs_cfg: TGSConfig,
                 device: torch.device | str) -> None:
        super().__init__()
        self.member = member.cpu()  # [N, P] bool: which abnormal samples each pool's labels cover
        # First refresh: at the end of each pool's first epoch ("refresh"), or one period later when the labels
        # start from a teacher ("teacher-refresh": the stage first trains one epoch on the teacher's labels).
        self.warmup = warmup.cpu() + (period if tgs_cfg.source == "teacher-refresh" else 0)  # [P]
        self.period = period
        self.tgs_cfg = tgs_cfg
        self.register_buffer("targets", torch.zeros(n, s, member.shape[1], device=device))
        self.register_buffer("refreshes", torch.zeros((), dtype=torch.long))

    def set_all(self, pseudo: torch.Tensor) -> None:
        """Every pool gets the same labels pseudo [N, S] (a frozen teacher's)."""
        self.targets.copy_(pseudo.to(self.targets)[:, :, None].expand_as(self.targets))

    def due(self, i: int) -> torch.Tensor:
        """[P] bool: pools whose labels are recomputed before step i."""
        since = i - self.warmup  # [P]
        return (since >= 0) & (since % self.period == 0)

    @torch.no_grad()
    def refresh(self, i: int, score_fn: Callable[[torch.Tensor], torch.Tensor], chunk: int = 256) -> bool:
        """Recompute the due pools' labels from score_fn(sample indices [n]) -> scores [n, S, P]; True if any."""
        due = self.due(i)
        if not bool(due.any()):
            return False
        rows = torch.nonzero(self.member[:, due].any(1)).flatten()  # samples of any due pool
        scores = torch.cat([score_fn(rows[a:a + chunk]).float() for a in range(0, len(rows), chunk)])  # [n, S, P]
        for p in torch.nonzero(due).flatten().tolist():
            mine = self.member[rows, p]  # [n]
            if bool(mine.any()):
                self.targets[rows[mine].to(self.targets.device), :, p] = pseudo_labels(scores[mine, :, p], self.tgs_cfg)
        self.refreshes += 1
        return True

    def labels_of(self, idx: torch.Tensor, pool: torch.Tensor | int = 0) -> torch.Tensor:
        """ŷ [.., S] of samples idx [..] in pools `pool` (broadcast with idx)."""
        if isinstance(pool, int):
            return self.targets[idx, :, pool]
        return self.targets[idx, :, pool]

    def coverage(self) -> float:
        """Share of (abnormal sample, pool) pairs whose current labels hold at least one kernel."""
        has = self.targets.amax(1).cpu() > 0  # [N, P]
        m = self.member
        return float((has & m).sum()) / max(1, int(m.sum()))


def check_coverage(store: PseudoLabels, stage: str, min_share: float = 0.5) -> dict[str, Any]:
    """Warn (and say so in the metrics) when most abnormal training samples got no TGS kernel: the stage then
    learns to score 0 on them. Returns {"pseudo_label_coverage": share, "pseudo_labels_degenerate": bool}."""
    share = store.coverage()
    bad = share < min_share
    if bad:
        warnings.warn(f"{stage}: only {100 * share:.1f}% of the abnormal training samples have a TGS kernel in "
                      f"their pseudo-labels (source {store.tgs_cfg.source!r}); this stage is reported as degenerate.",
                      stacklevel=3)
    return {"pseudo_label_coverage": share, "pseudo_labels_degenerate": bool(bad)}


def loss_trend(history: list[dict[str, float]], key: str = "total") -> float | None:
    """How much the loss still moved in the last fifth of training: (mean of the last fifth of the logged values
    - mean of the fifth before it) / mean of the last fifth. Negative = still falling. None with fewer than 10
    logged values. Batch-to-batch noise makes single values useless; fifths average it out. |trend| < 0.1 reads
    as flat (trained long enough); the quick profile's iterations were chosen so that the experts and the gate
    reach it (README, "Results")."""
    values = np.asarray([h[key] for h in history if key in h], dtype=np.float64)
    n = len(values) // 5
    if n < 2:
        return None
    last, before = values[-n:].mean(), values[-2 * n:-n].mean()
    return float((last - before) / last) if last > 0 else 0.0


def _finish(stage: runs.StageDir, config: dict[str, Any], payload: dict[str, Any], kind: str,
            metrics: dict[str, Any], history: list[dict[str, float]], video_scores: dict[str, np.ndarray],
            extra_scores: dict[str, dict[str, np.ndarray]] | None = None) -> None:
    runs.save_checkpoint(stage.checkpoint, payload, kind=kind)
    runs.write_json(stage.path / "history.json", history)
    _save_scores(stage.path / "test_scores.npz", video_scores)
    for name, scores in (extra_scores or {}).items():
        _save_scores(stage.path / f"test_{name}.npz", scores)
    stage.finish(config, metrics)


def _save_scores(path: Path, scores: dict[str, np.ndarray]) -> None:
    with runs.atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **scores)


def load_scores(path: str | Path) -> dict[str, np.ndarray]:
    """Per-video test scores written by a stage (name -> [T] or [T, E]), in the test list's order."""
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def _evaluate(score_fn: Callable, test: FeatureDataset, device: str, amp: str, progress: bool,
              ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    from gsmoe_lib.metrics import collapse_report

    def fn(x: torch.Tensor):
        with autocast(device, amp):
            out = score_fn(x)
        return out.float() if isinstance(out, torch.Tensor) else out

    metrics, scores = evaluate_dataset(fn, test, device=device, progress=progress)
    metrics.update(collapse_report(scores))  # score_std, collapsed: a constant stage has no metric to quote
    return metrics, scores


# ---------------------------------------------------------------------------------------------------
# Stage 1: the task encoder (UR-DMU, MIL)
# ---------------------------------------------------------------------------------------------------


def _stage_config(cfg: PipelineConfig, stage: str, upstream: str | None) -> dict[str, Any]:
    settings = asdict(getattr(cfg, stage))
    if settings.get("init_checkpoint"):  # a path: absolute, like the data's (runs.py: equal runs hash equal)
        settings["init_checkpoint"] = str(Path(settings["init_checkpoint"]).resolve())
    return {"stage": stage, "settings": settings, "data": data_identity(cfg.data),
            "seed": cfg.seed, "amp": cfg.amp, "upstream": upstream}


def new_encoder(input_dim: int) -> URDMU:
    return URDMU(input_dim=input_dim)


def train_encoder(cfg: PipelineConfig, data: Data, run_dir: str | Path, progress: bool = True,
                  on_step: Callable[[int], None] | None = None) -> StageResult:
    """UR-DMU with its MIL objective (REFERENCE §2). The paper's baseline row."""
    ec, device = cfg.encoder, cfg.device
    stage = runs.StageDir(run_dir, "encoder")
    config = _stage_config(cfg, "encoder", None)
    input_dim = data.train.features.shape[-1]
    if stage.is_done(config):
        model = new_encoder(input_dim)
        model.load_state_dict(runs.load_checkpoint(stage.checkpoint, "urdmu")["state_dict"])
        return StageResult(model.to(device), stage.metrics(), stage.path, True)

    stage.start(config, cfg.seed, device)
    runs.seed_everything(cfg.seed)
    model = load_released(ec.init_checkpoint) if ec.init_checkpoint else new_encoder(input_dim)
    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=ec.lr, weight_decay=ec.weight_decay)
    train = data.train
    k = k_for_length(train.features.shape[-2])
    gen = torch.Generator().manual_seed(cfg.seed + SEED_OFFSETS["encoder"])
    batches = train.sampler(ec.batch_normal, ec.batch_abnormal, generator=gen)
    labels_dev = train.labels.to(train.features.device)

    def step(i: int, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        idx = idx.to(train.features.device)
        x, labels = train.features[idx].float(), labels_dev[idx]  # [B, (C,) S, D], [B] normal half first
        return urdmu_update(model, x, labels, k, optimizer, cfg.amp)

    history = fit(stage, config, {"model": model}, optimizer, ec.iterations, batches, step,
                  ec.checkpoint_every, progress, on_step=on_step)
    model.eval()
    metrics, scores = _evaluate(lambda x: model(x).scores, data.test, device, cfg.amp, progress)
    _finish(stage, config, {"state_dict": model.state_dict(), "input_dim": input_dim}, "urdmu",
            metrics, history, scores)
    return StageResult(model, metrics, stage.path, False)


# ---------------------------------------------------------------------------------------------------
# Stage 1b: TGS fine-tuning of the encoder
# ---------------------------------------------------------------------------------------------------


def finetune_tgs(cfg: PipelineConfig, data: Data, encoder: URDMU, run_dir: str | Path, upstream: str,
                 progress: bool = True, on_step: Callable[[int], None] | None = None) -> StageResult:
    """Fine-tune a copy of the MIL-trained encoder with L_TGS (Eq. 6).

    Pseudo-labels (`cfg.tgs.tgs.source`): "refresh" (default) splats the fine-tuned model's own eval-mode
    scores of every abnormal training sample at the end of the first epoch (L_topk-norm only) and once per
    epoch after it; "encoder" splats the MIL encoder's scores once, before the first step; "self" splats the
    scores of each training step's own (dropout-on) forward pass.
    """
    tc, device = cfg.tgs, cfg.device
    stage = runs.StageDir(run_dir, "tgs")
    config = _stage_config(cfg, "tgs", upstream)
    model = new_encoder(encoder.input_dim)
    if stage.is_done(config):
        model.load_state_dict(runs.load_checkpoint(stage.checkpoint, "urdmu")["state_dict"])
        return StageResult(model.to(device), stage.metrics(), stage.path, True)

    stage.start(config, cfg.seed, device)
    runs.seed_everything(cfg.seed)
    model.load_state_dict(encoder.state_dict())
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    train = data.train
    k = k_for_length(train.features.shape[-2])
    member = (train.labels == 1)[:, None]  # [N, 1]: one pool, every abnormal sample
    warmup = warmup_per_pool(tc, member.sum(0), "tgs")
    store = PseudoLabels(len(train), train.features.shape[-2], member, warmup, refresh_period(tc, member.sum(0)),
                         tc.tgs, train.features.device)
    source = tc.tgs.source
    if source in ("encoder", "teacher-refresh"):  # the copy still holds the MIL weights here: its eval-mode scores are the teacher's
        store.set_all(_teacher_pseudo_labels(model, train, tc.tgs, device, cfg.amp))
    gen = torch.Generator().manual_seed(cfg.seed + SEED_OFFSETS["tgs"])
    batches = train.sampler(tc.batch_normal, tc.batch_abnormal, generator=gen)
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
        if source in ("refresh", "teacher-refresh"):
            store.refresh(i, own_scores)
        idx = idx.to(train.features.device)
        x, labels = train.features[idx].float(), labels_dev[idx]
        with autocast(device, cfg.amp):
            scores = model(x, training_extras=False).scores.float()  # [B, S]
        teacher = None if source == "self" else store.labels_of(idx).to(scores.device)
        return tgs_update(scores, labels, teacher, i < int(warmup[0]), tc, k, optimizer)

    history = fit(stage, config, {"model": model, "pseudo": store}, optimizer, tc.iterations, batches, step,
                  tc.checkpoint_every, progress, on_step=on_step)
    model.eval()
    metrics, scores = _evaluate(lambda x: model(x).scores, data.test, device, cfg.amp, progress)
    metrics.update(_training_health(store, source, history, "tgs"))
    _finish(stage, config, {"state_dict": model.state_dict(), "input_dim": model.input_dim}, "urdmu",
            metrics, history, scores)
    return StageResult(model, metrics, stage.path, False)


def _training_health(store: PseudoLabels, source: str, history: list[dict[str, float]], stage: str) -> dict[str, Any]:
    """What a stage's metrics say about its training: pseudo-label coverage, refreshes, loss trend."""
    out: dict[str, Any] = {"pseudo_label_source": source, "loss_trend_last_fifth": loss_trend(history)}
    if source != "self":
        out.update(check_coverage(store, stage))
        out["pseudo_label_refreshes"] = int(store.refreshes)
    return out


@torch.inference_mode()
def _teacher_pseudo_labels(encoder: URDMU, train: TrainSet, tgs_cfg: TGSConfig, device: str, amp: str,
                           chunk: int = 64) -> torch.Tensor:
    """ŷ [N, S] of every training sample from `encoder`'s eval-mode scores (crops averaged on an axis)."""
    encoder.eval()
    scores = []
    for start in range(0, train.features.shape[0], chunk):
        with autocast(device, amp):
            out = encoder(train.features[start:start + chunk].to(device).float(), training_extras=False)
        scores.append(out.scores.float())  # [chunk, S]
    scores = torch.cat(scores)
    pseudo = pseudo_labels(scores, tgs_cfg)
    check_pseudo_labels(pseudo, scores, train.labels, tgs_cfg, "tgs")
    return pseudo.to(train.features.device)


def check_pseudo_labels(pseudo: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, tgs_cfg: TGSConfig,
                        stage: str) -> None:
    """Warn when no abnormal training sample got a TGS kernel: the stage would then learn to score 0.

    pseudo, scores [N, S] (the teacher's pseudo-labels and the scores they were splatted from), labels [N].
    Happens when the teacher's scores never make a peak of `min_height` and `prominence` (seen on the XD quick
    run, whose TGS encoder peaked at 0.19 on the training set): every target ŷ is 0, and BCE + sparsity pull
    the stage to 0.
    """
    abnormal = (labels == 1).to(pseudo.device)
    if not bool(abnormal.any()) or float(pseudo[abnormal].amax()) > 0.0:
        return
    top = float(scores[abnormal.to(scores.device)].amax())
    warnings.warn(
        f"{stage}: no TGS kernel on any of the {int(abnormal.sum())} abnormal training samples (the teacher's "
        f"scores reach {top:.3f}; a kernel needs a peak of height >= min_height={tgs_cfg.min_height} and "
        f"prominence >= {tgs_cfg.prominence}), so every pseudo-label is 0 and this stage learns to score 0 "
        f"everywhere. Lower {stage}.tgs.min_height or .prominence, or train the encoder stages longer.",
        stacklevel=2,
    )


# ---------------------------------------------------------------------------------------------------
# Task-aware features of the training set (shared by the expert and gate stages)
# ---------------------------------------------------------------------------------------------------


@torch.inference_mode()
def encode_train_set(encoder: URDMU, train: TrainSet, device: str, amp: str = "none", chunk: int = 64,
                     progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """The frozen encoder over every pooled training sample: (features [N, S, F], scores [N, S]).

    With crops on an axis ([N, C, S, D]) the crops are folded into the sample axis, so every crop is a
    sample for the experts and the gate, as in the independent-crop mode.
    """
    encoder.eval()
    x_all = train.features
    if x_all.dim() == 4:
        x_all = x_all.flatten(0, 1)
    feats, scores = [], []
    for start in tqdm(range(0, x_all.shape[0], chunk), desc="task-aware features", unit="chunk",
                      disable=not progress):
        with autocast(device, amp):
            out = encoder(x_all[start:start + chunk].to(device).float(), training_extras=False)
        feats.append(out.features.float())
        scores.append(out.scores.float())
    return torch.cat(feats), torch.cat(scores)


def _flat_labels(train: TrainSet) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """labels [N], class_index [N, K], video_index [N] per sample of `encode_train_set`'s output."""
    labels, classes, videos = train.labels, train.class_index, train.video_index
    if train.features.dim() == 4:  # crops on an axis: repeat per crop
        c = train.features.shape[1]
        labels, classes, videos = (t.repeat_interleave(c, dim=0) for t in (labels, classes, videos))
    return labels, classes, videos


FeatureCache = Any  # (features [N, S, F], scores [N, S]) or a zero-argument callable returning them


def _resolve_cache(cache: FeatureCache | None, encoder: URDMU, data: Data, cfg: PipelineConfig, progress: bool,
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    if cache is None:
        return encode_train_set(encoder, data.train, cfg.device, cfg.amp, progress=progress)
    return cache() if callable(cache) else cache


def lazy_train_cache(encoder: URDMU, data: Data, cfg: PipelineConfig, progress: bool = True) -> Callable[[], Any]:
    """encode_train_set, computed on the first call and remembered (stages that are done never call it)."""
    memo: list[tuple[torch.Tensor, torch.Tensor]] = []

    def get() -> tuple[torch.Tensor, torch.Tensor]:
        if not memo:
            memo.append(encode_train_set(encoder, data.train, cfg.device, cfg.amp, progress=progress))
        return memo[0]

    return get


def expert_membership(cfg: ExpertsConfig, train: TrainSet, features: torch.Tensor, seed: int
                      ) -> tuple[torch.Tensor, list[str]]:
    """Which abnormal samples train which expert: [N, E] bool, and the experts' names.

    "class": expert e takes the abnormal videos of class e (a multi-label XD video trains every expert of
    its labels). "cluster" (Table 5): k-means (scikit-learn) on the mean task-aware feature of each
    anomalous training video; all crops of a video follow their video's cluster.
    """
    labels, class_index, video_index = _flat_labels(train)
    abnormal = (labels.cpu() == 1)
    if cfg.kind == "class":
        member = (class_index.cpu() > 0) & abnormal[:, None]
        return member, list(train.classes)
    if cfg.kind != "cluster":
        raise ValueError(f"unknown expert kind {cfg.kind!r}; expected 'class' or 'cluster'")
    from sklearn.cluster import KMeans

    videos = torch.unique(video_index[abnormal])  # abnormal video ids
    mean_feat = torch.stack([features[(video_index == v).to(features.device)].mean(dim=(0, 1)).cpu()
                             for v in videos]).numpy()  # [V_a, F]
    if cfg.n_clusters > len(videos):
        raise ValueError(f"{cfg.n_clusters} clusters requested but only {len(videos)} abnormal training videos")
    km = KMeans(n_clusters=cfg.n_clusters, n_init=10, random_state=seed).fit(mean_feat)
    cluster_of = {int(v): int(c) for v, c in zip(videos, km.labels_)}
    member = torch.zeros(len(labels), cfg.n_clusters, dtype=torch.bool)
    for i, v in enumerate(video_index.tolist()):
        if v in cluster_of:
            member[i, cluster_of[v]] = True
    return member, [f"cluster {c}" for c in range(cfg.n_clusters)]


def _per_expert_batches(member: torch.Tensor, normal: torch.Tensor, batch_normal: int, batch_abnormal: int,
                        generator: torch.Generator, other_class_negatives: float = 0.0) -> Iterator[torch.Tensor]:
    """Endless index batches [E, batch_normal + batch_abnormal], negative half first, one row per expert.

    Drawn with replacement for all experts at once (one vectorised draw, no loop over experts): row e takes
    normal samples and abnormal samples of expert e's membership. With `other_class_negatives` = r > 0 (an
    extension), round(r · batch_normal) of the negatives are abnormal samples of OTHER experts instead.
    """
    E = member.shape[1]
    pools = [torch.nonzero(member[:, e]).flatten() for e in range(E)]
    empty = [e for e, p in enumerate(pools) if len(p) == 0]
    if empty:
        raise ValueError(f"experts {empty} have no abnormal training samples")
    sizes = torch.tensor([len(p) for p in pools])  # [E]
    padded = torch.nn.utils.rnn.pad_sequence(pools, batch_first=True)  # [E, max pool]
    n_other = int(round(other_class_negatives * batch_normal)) if E > 1 else 0
    if n_other:
        others = [torch.nonzero(member.any(1) & ~member[:, e]).flatten() for e in range(E)]
        o_sizes = torch.tensor([max(1, len(o)) for o in others])
        o_padded = torch.nn.utils.rnn.pad_sequence(others, batch_first=True)
    while True:
        n = normal[torch.randint(len(normal), (E, batch_normal - n_other), generator=generator)]  # [E, Bn - Bo]
        pick = (torch.rand(E, batch_abnormal, generator=generator) * sizes[:, None]).long()  # [E, Ba]
        parts = [n]
        if n_other:
            o_pick = (torch.rand(E, n_other, generator=generator) * o_sizes[:, None]).long()
            parts.append(torch.gather(o_padded, 1, o_pick))  # [E, Bo]
        parts.append(torch.gather(padded, 1, pick))
        yield torch.cat(parts, dim=1)


# ---------------------------------------------------------------------------------------------------
# Stage 2: experts
# ---------------------------------------------------------------------------------------------------


def new_experts(n_experts: int, feature_dim: int, xc: ExpertsConfig) -> Experts:
    return Experts(n_experts, feature_dim, d_model=xc.d_model, dropout=xc.dropout)


def train_experts(cfg: PipelineConfig, data: Data, encoder: URDMU, run_dir: str | Path, upstream: str,
                  progress: bool = True, on_step: Callable[[int], None] | None = None,
                  cache: FeatureCache | None = None, stage_name: str = "experts",
                  ) -> StageResult:
    """All experts at once on the frozen encoder's task-aware features (cached: the encoder is not run per
    step) with L_TGS.

    Expert e trains on normal samples and the abnormal samples of its class (or cluster), with its OWN first
    epoch (one pass over its class's samples) and, with source "refresh", pseudo-labels splatted from its OWN
    scores: each expert refines what it finds in its class, not one shared target. A sample's label for expert
    e is 1 only if it is in e's pool (so other classes' samples drawn as negatives by the
    `other_class_negatives` extension count as normal). Metrics: the experts combined by `cfg.expert_combine`
    without a gate (Table 2's "+experts" row).
    """
    xc, device = cfg.experts, cfg.device
    stage = runs.StageDir(run_dir, stage_name)
    config = _stage_config(cfg, "experts", upstream)
    if stage.is_done(config):  # loaded without touching the training set
        ck = runs.load_checkpoint(stage.checkpoint, "experts")
        experts = Experts(ck["n_experts"], ck["feature_dim"], d_model=ck["d_model"], dropout=ck["dropout"])
        experts.load_state_dict(ck["state_dict"])
        return StageResult(experts.to(device), stage.metrics(), stage.path, True)
    features, enc_scores = _resolve_cache(cache, encoder, data, cfg, progress)  # [N, S, F], [N, S]
    labels, _, _ = _flat_labels(data.train)
    member, names = expert_membership(xc, data.train, features, cfg.seed)  # [N, E] bool
    E = len(names)
    experts = new_experts(E, features.shape[-1], xc)

    stage.start(config, cfg.seed, device)
    runs.seed_everything(cfg.seed)
    experts.reset_parameters()
    experts.to(device).train()
    optimizer = torch.optim.AdamW(experts.parameters(), lr=xc.lr, weight_decay=xc.weight_decay)
    k = k_for_length(features.shape[1])
    pool_sizes = member.sum(0)  # [E]
    warmup = warmup_per_pool(xc, pool_sizes, "experts")  # [E]
    source = xc.tgs.source
    store = PseudoLabels(len(labels), features.shape[1], member, warmup, refresh_period(xc, pool_sizes), xc.tgs,
                         features.device)
    if source in ("encoder", "teacher-refresh"):
        pseudo_all = pseudo_labels(enc_scores, xc.tgs)  # [N, S]
        check_pseudo_labels(pseudo_all, enc_scores, labels, xc.tgs, "experts")
        store.set_all(pseudo_all)
    normal = torch.nonzero(labels.cpu() == 0).flatten()
    gen = torch.Generator().manual_seed(cfg.seed + SEED_OFFSETS["experts"])
    batches = _per_expert_batches(member, normal, xc.batch_normal, xc.batch_abnormal, gen, xc.other_class_negatives)
    member_dev = member.to(features.device)
    warmup_dev = warmup.to(features.device)

    @torch.no_grad()
    def own_scores(rows: torch.Tensor) -> torch.Tensor:  # [n] -> [n, S, E], eval mode
        experts.eval()
        with autocast(device, cfg.amp):
            out = experts(features[rows.to(features.device)]).float()
        experts.train()
        return out

    def step(i: int, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        if source in ("refresh", "teacher-refresh"):
            store.refresh(i, own_scores)
        idx = idx.to(features.device)  # [E, B]
        x = features[idx]  # [E, B, S, F]: expert e's own batch
        with autocast(device, cfg.amp):
            scores = experts(x).float()  # [B, S, E]
        flat = scores.permute(2, 0, 1).reshape(E * idx.shape[1], -1)  # [E·B, S]
        rows = torch.arange(E, device=idx.device)[:, None].expand_as(idx)  # [E, B] expert of each sample
        y = member_dev[idx, rows].to(flat.dtype).reshape(-1)  # [E·B]: 1 only in the expert's own pool
        first = (i < warmup_dev)[rows].reshape(-1)  # [E·B]: the expert's own first epoch
        teacher = None if source == "self" else store.labels_of(idx, rows).reshape(flat.shape)
        return tgs_update(flat, y, teacher, first, xc, k, optimizer)

    history = fit(stage, config, {"experts": experts, "pseudo": store}, optimizer, xc.iterations, batches, step,
                  xc.checkpoint_every, progress, on_step=on_step)
    experts.eval()
    model = GSMoEModel(encoder, experts, None).eval()

    def score_fn(x: torch.Tensor):
        out = model(x, combine=cfg.expert_combine)
        return out.scores, out.expert_scores

    video_scores, expert_video_scores = _score_with_extra(score_fn, data.test, device, cfg.amp, progress)
    metrics = _metrics_of(video_scores, data.test)
    metrics.update(_training_health(store, source, history, "experts"))
    metrics["expert_names"] = names
    metrics["expert_combine"] = cfg.expert_combine
    metrics["warmup_iterations"] = warmup.tolist()
    payload = {"state_dict": experts.state_dict(), "names": names, "n_experts": E,
               "feature_dim": int(features.shape[-1]), "d_model": xc.d_model, "dropout": xc.dropout}
    _finish(stage, config, payload, "experts", metrics, history, video_scores, {"expert_scores": expert_video_scores})
    return StageResult(experts, metrics, stage.path, False)


# ---------------------------------------------------------------------------------------------------
# Stage 3: gate
# ---------------------------------------------------------------------------------------------------


@torch.inference_mode()
def _expert_logits(experts: Experts, features: torch.Tensor, device: str, amp: str, chunk: int = 64
                   ) -> torch.Tensor:
    """The frozen experts' logits [N, S, E] over cached task-aware features [N, S, F] (what the gate reads)."""
    experts.eval()
    out = []
    for start in range(0, features.shape[0], chunk):
        with autocast(device, amp):
            out.append(experts.logits(features[start:start + chunk]).float())
    return torch.cat(out)  # [N, S, E]


def new_gate(n_experts: int, feature_dim: int, gc: GateConfig) -> Gate:
    return Gate(n_experts, feature_dim, d_model=gc.d_model, use_features=gc.use_features, dropout=gc.dropout,
                expert_input=gc.expert_input)


def train_gate(cfg: PipelineConfig, data: Data, encoder: URDMU, experts: Experts, run_dir: str | Path,
               upstream: str, progress: bool = True, on_step: Callable[[int], None] | None = None,
               cache: FeatureCache | None = None, stage_name: str = "gate",
               ) -> StageResult:
    """The gate on all training samples with L_TGS; encoder and experts frozen (their outputs are cached).

    Pseudo-labels as the other stages (source "refresh": the gate's own scores, after its first epoch).
    `feature_dropout` (an extension) zeroes a sample's feature stream with that probability during training.
    """
    gc, device = cfg.gate, cfg.device
    stage = runs.StageDir(run_dir, stage_name)
    config = _stage_config(cfg, "gate", upstream)
    E = experts.n_experts
    gate = new_gate(E, encoder.feature_dim, gc)
    full = GSMoEModel(encoder, experts, gate)
    if stage.is_done(config):
        gate.load_state_dict(runs.load_checkpoint(stage.checkpoint, "gate")["state_dict"])
        return StageResult(full.to(device).eval(), stage.metrics(), stage.path, True)

    stage.start(config, cfg.seed, device)
    features, enc_scores = _resolve_cache(cache, encoder, data, cfg, progress)
    expert_logits = _expert_logits(experts, features, device, cfg.amp)  # [N, S, E]
    runs.seed_everything(cfg.seed)
    gate = new_gate(E, encoder.feature_dim, gc)
    full = GSMoEModel(encoder, experts, gate)
    gate.to(device).train()
    optimizer = torch.optim.AdamW(gate.parameters(), lr=gc.lr, weight_decay=gc.weight_decay)
    labels, _, _ = _flat_labels(data.train)
    labels = labels.to(device)
    k = k_for_length(features.shape[1])
    member = (labels.cpu() == 1)[:, None]  # [N, 1]
    warmup = warmup_per_pool(gc, member.sum(0), "gate")
    source = gc.tgs.source
    store = PseudoLabels(len(labels), features.shape[1], member, warmup, refresh_period(gc, member.sum(0)), gc.tgs,
                         features.device)
    if source in ("encoder", "teacher-refresh"):
        pseudo_all = pseudo_labels(enc_scores, gc.tgs)
        check_pseudo_labels(pseudo_all, enc_scores, labels, gc.tgs, "gate")
        store.set_all(pseudo_all)
    flat_train = replace(data.train, features=features, labels=labels.cpu()) if data.train.features.dim() == 4 \
        else data.train
    gen = torch.Generator().manual_seed(cfg.seed + SEED_OFFSETS["gate"])
    batches = flat_train.sampler(gc.batch_normal, gc.batch_abnormal, generator=gen)
    drop_gen = torch.Generator().manual_seed(cfg.seed + SEED_OFFSETS["gate"] + 1000)

    @torch.no_grad()
    def own_scores(rows: torch.Tensor) -> torch.Tensor:  # [n] -> [n, S, 1], eval mode
        gate.eval()
        rows = rows.to(features.device)
        with autocast(device, cfg.amp):
            out = gate(expert_logits[rows], features[rows] if gc.use_features else None).scores.float()
        gate.train()
        return out[:, :, None]

    def step(i: int, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        if source in ("refresh", "teacher-refresh"):
            store.refresh(i, own_scores)
        idx = idx.to(features.device)
        f = features[idx] if gc.use_features else None  # [B, S, F]
        if f is not None and gc.feature_dropout > 0:
            keep = (torch.rand(len(idx), generator=drop_gen) >= gc.feature_dropout).to(f.dtype)  # [B]
            f = f * keep.to(f.device)[:, None, None]
        with autocast(device, cfg.amp):
            scores = gate(expert_logits[idx], f).scores.float()
        teacher = None if source == "self" else store.labels_of(idx).to(scores.device)
        return tgs_update(scores, labels[idx], teacher, i < int(warmup[0]), gc, k, optimizer)

    history = fit(stage, config, {"gate": gate, "pseudo": store}, optimizer, gc.iterations, batches, step,
                  gc.checkpoint_every, progress, on_step=on_step)
    full.eval()

    def score_fn(x: torch.Tensor):
        out = full(x)
        return out.scores, out.expert_scores

    video_scores, expert_video_scores = _score_with_extra(score_fn, data.test, device, cfg.amp, progress)
    metrics = _metrics_of(video_scores, data.test)
    metrics.update(_training_health(store, source, history, "gate"))
    payload = {"state_dict": gate.state_dict(), "n_experts": E, "feature_dim": encoder.feature_dim,
               "d_model": gc.d_model, "use_features": gc.use_features, "dropout": gc.dropout,
               "expert_input": gc.expert_input}
    _finish(stage, config, payload, "gate", metrics, history, video_scores,
            {"expert_scores": expert_video_scores})
    return StageResult(full, metrics, stage.path, False)


def _score_with_extra(score_fn: Callable, test: FeatureDataset, device: str, amp: str, progress: bool):
    def fn(x: torch.Tensor):
        with autocast(device, amp):
            s, e = score_fn(x)
        return s.float(), e.float()

    return score_dataset(fn, test, device=device, progress=progress, return_extra=True)


def _metrics_of(video_scores: dict[str, np.ndarray], test: FeatureDataset) -> dict[str, Any]:
    from gsmoe_lib.metrics import classwise_auc, collapse_report, evaluate_scores

    frame_labels = {v.name: test.frame_labels(i) for i, v in enumerate(test.videos)}
    abnormal = {v.name: bool(v.label) for v in test.videos}
    metrics = evaluate_scores(video_scores, frame_labels, abnormal)
    metrics["classwise"] = classwise_auc(video_scores, frame_labels, {v.name: tuple(v.classes) for v in test.videos},
                                         classes=list(test.classes))
    metrics.update(collapse_report(video_scores))  # score_std, collapsed
    return metrics


# ---------------------------------------------------------------------------------------------------
# The whole pipeline
# ---------------------------------------------------------------------------------------------------


def run_pipeline(cfg: PipelineConfig, run_dir: str | Path, stages: tuple[str, ...] = STAGES,
                 progress: bool = True, data: Data | None = None) -> dict[str, StageResult]:
    """Run (or load, when finished with the same config) the stages in order; returns stage -> result.

    `stages` may also name the REFERENCE_STAGES ("sultani"): trained first, on the raw features, and
    independent of the others (`stages=("sultani",)` trains nothing else).
    """
    unknown = [s for s in stages if s not in STAGES + REFERENCE_STAGES]
    if unknown:
        raise ValueError(f"unknown stages {unknown}; expected a subset of {STAGES + REFERENCE_STAGES}")
    run_dir = Path(run_dir)
    runs.write_json(run_dir / "pipeline_config.json", cfg)
    results: dict[str, StageResult] = {}
    if "sultani" in stages:
        results["sultani"] = train_sultani(cfg, data, run_dir, progress)
    if not any(s in STAGES for s in stages):
        return results
    data = data or load_data(cfg.data, cfg.device, progress)
    results["encoder"] = train_encoder(cfg, data, run_dir, progress)
    encoder = results["encoder"].model
    upstream = runs.config_hash(_stage_config(cfg, "encoder", None))
    if "tgs" in stages or "experts" in stages or "gate" in stages:
        results["tgs"] = finetune_tgs(cfg, data, encoder, run_dir, upstream, progress)
        encoder = results["tgs"].model.eval()
        upstream = runs.config_hash(_stage_config(cfg, "tgs", upstream))
    if "experts" in stages or "gate" in stages:
        cache = lazy_train_cache(encoder, data, cfg, progress)
        results["experts"] = train_experts(cfg, data, encoder, run_dir, upstream, progress, cache=cache)
        upstream = runs.config_hash(_stage_config(cfg, "experts", upstream))
        if "gate" in stages:
            results["gate"] = train_gate(cfg, data, encoder, results["experts"].model.eval(), run_dir, upstream,
                                         progress, cache=cache)
    return results


# ---------------------------------------------------------------------------------------------------
# CLI: gsmoe train
# ---------------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-root", default=None, help="dataset folder (default: the profile's synthetic data)")
    parser.add_argument("--dataset", choices=("ucf-crime", "xd-violence"), default=None)
    parser.add_argument("--train-list", default=None)
    parser.add_argument("--test-list", default=None)
    parser.add_argument("--annotations", default=None)
    parser.add_argument("--profile", choices=tuple(PROFILES), default="quick")
    parser.add_argument("--stages", default=",".join(STAGES + REFERENCE_STAGES),
                        help="comma-separated subset of " + ",".join(STAGES + REFERENCE_STAGES))
    parser.add_argument("--run", required=True, help="run folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", choices=("none", "bf16"), default="none")
    parser.add_argument("--init-encoder", default=None, help="released UR-DMU checkpoint to start from")
    parser.add_argument("--tgs-config", default=None, help="JSON file of TGSConfig (from the TGS tuner)")
    parser.add_argument("--config", default=None, help="JSON file of nested PipelineConfig overrides")
    parser.add_argument("--replace", action="store_true",
                        help="a stage of RUN that finished with another config is moved to RUN/replaced/ and "
                             "trained again (without it, that is an error naming the differing keys)")


def run(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = runs.read_json(args.config) if args.config else {}
    cfg = make_config(args.profile, overrides)
    data_root = args.data_root or default_data_root(args.profile)
    cfg = replace(cfg, seed=args.seed, device=args.device, amp=args.amp,
                  data=replace(cfg.data, data_root=data_root, dataset=args.dataset, train_list=args.train_list,
                               test_list=args.test_list, annotations=args.annotations))
    if args.init_encoder:
        cfg = replace(cfg, encoder=replace(cfg.encoder, init_checkpoint=args.init_encoder))
    if args.tgs_config:
        tgs_cfg = TGSConfig.from_json(Path(args.tgs_config).read_text())
        cfg = replace(cfg, tgs=replace(cfg.tgs, tgs=tgs_cfg))
    with runs.replace_finished_stages() if args.replace else nullcontext():
        results = run_pipeline(cfg, args.run, tuple(s for s in args.stages.split(",") if s))
    for name, res in results.items():
        m = res.metrics
        print(f"{name:8s} AUC {m['auc']:.4f}  AUC_A {m['auc_abnormal']:.4f}  AP {m['ap']:.4f}  "
              f"AP_A {m['ap_abnormal']:.4f}{'  (loaded)' if res.skipped else ''}")
    return 0


# ---------------------------------------------------------------------------------------------------
# Conveniences for the notebooks and the sweep
# ---------------------------------------------------------------------------------------------------


def default_data_root(profile: str) -> str:
    """Where `gsmoe reproduce` builds the synthetic default for a profile: PROJECT_ROOT/data/synthetic-<p>.

    Absolute, so that the CLI, the notebooks (whose kernel runs in notebooks/) and `gsmoe reproduce` name
    the same folder wherever they run.
    """
    from gsmoe_lib.paths import PROJECT_ROOT

    return str(PROJECT_ROOT / "data" / f"synthetic-{'tiny' if profile == 'tiny' else 'quick'}")


def seed_run_dir(run_dir: str | Path, seed: int) -> Path:
    """RUN/seed-<s>: the training run folder of one seed."""
    return Path(run_dir) / f"seed-{seed}"


def config_for(profile: str, data_root: str = "", dataset: str = "", seed: int = 0, device: str = "cpu",
               overrides: dict[str, Any] | None = None, tgs_config: str = "", train_list: str = "",
               test_list: str = "", annotations: str = "") -> PipelineConfig:
    """PipelineConfig from the notebooks' common parameters ("" means: the default).

    `tgs_config`: a TGSConfig JSON file (the TGS tuner's output) used by the TGS fine-tuning stage.
    `train_list`, `test_list`, `annotations`: list / annotation files (as `gsmoe data check`); "" means the
    ones inside the data root, else the packaged official ones.
    """
    cfg = make_config(profile, overrides)
    if tgs_config:
        cfg = replace(cfg, tgs=replace(cfg.tgs, tgs=TGSConfig.from_json(Path(tgs_config).read_text())))
    return replace(cfg, seed=seed, device=device,
                   data=replace(cfg.data, data_root=data_root or default_data_root(profile), dataset=dataset or None,
                                train_list=train_list or None, test_list=test_list or None,
                                annotations=annotations or None))


def run_variant(cfg: PipelineConfig, run_dir: str | Path, name: str, experts: dict[str, Any] | None = None,
                gate: dict[str, Any] | None = None, data: Data | None = None, progress: bool = True,
                ) -> dict[str, StageResult]:
    """An ablation on top of the main pipeline: experts and / or gate with other settings, in their own stages.

    `experts` overrides (e.g. {"kind": "cluster", "n_clusters": 5}) train a new set of experts in stage
    `experts-<name>`; without them the main `experts` stage is reused. `gate` overrides (e.g.
    {"use_features": False}) train the gate in stage `gate-<name>`. The encoder and TGS stages are the
    main pipeline's (trained first if missing). Returns {"experts": ..., "gate": ...}.
    """
    run_dir = Path(run_dir)
    data = data or load_data(cfg.data, cfg.device, progress)
    main = run_pipeline(cfg, run_dir, ("encoder", "tgs") if experts else STAGES[:3], progress, data)
    encoder = main["tgs"].model.eval()
    upstream = runs.config_hash(_stage_config(cfg, "tgs", runs.config_hash(_stage_config(cfg, "encoder", None))))
    cache = lazy_train_cache(encoder, data, cfg, progress)
    out: dict[str, StageResult] = {}
    if experts:
        vcfg = replace(cfg, experts=_merge(cfg.experts, experts, "experts"))
        out["experts"] = train_experts(vcfg, data, encoder, run_dir, upstream, progress, cache=cache,
                                       stage_name=f"experts-{name}")
    else:
        vcfg = cfg
        out["experts"] = main["experts"]
    upstream = runs.config_hash(_stage_config(vcfg, "experts", upstream))
    vcfg = replace(vcfg, gate=_merge(vcfg.gate, gate or {}, "gate"))
    out["gate"] = train_gate(vcfg, data, encoder, out["experts"].model.eval(), run_dir, upstream, progress,
                             cache=cache, stage_name=f"gate-{name}")
    return out
