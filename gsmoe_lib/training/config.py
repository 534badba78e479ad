"""What a training run is asked to do: the config dataclasses, the profiles, and the one resolver.

`PipelineConfig` nests one dataclass per stage (`encoder`, `tgs`, `experts`, `gate`, the `sultani`
reference) plus the data, the seed, the device and autocast. Every open choice of the paper is a field with
a documented default; a profile ("paper", "quick", "tiny") is a dict of overrides over those defaults.

Decisions where the paper is silent (each is a field here; the measurements behind them are in README.md,
"Results", and benchmarks/):
- Iterations, learning rates and weight decays of the TGS, expert and gate stages are not published. The
  "paper" profile keeps UR-DMU's schedule for the encoder (3000 iterations, Adam 1e-4 / 5e-5) and AdamW (the
  paper's optimiser) at 1e-4 for the others; "quick" and "tiny" shrink batches, segments and iterations so
  the whole pipeline fits a 2-core CPU.
- Smoothness and sparsity are Sultani et al. 2018's (the paper cites them): sums over each abnormal video,
  λ1 = λ2 = 8e-5 (`smooth_weight`, `sparse_weight`).
- "The first epoch" with L_topk-norm only is counted on each stage's OWN abnormal pool (`warmup_pool`), capped
  at `warmup_max_fraction` of the stage (`training.pseudo_labels.warmup_per_pool`).
- Pseudo-labels (`TGSConfig.source`, default "refresh"): see `training.pseudo_labels`.
- The gate reads the experts' logits (`GateConfig.expert_input`), as the paper says.
- Extensions beyond the paper, off by default: `EncoderConfig.context_window`,
  `ExpertsConfig.other_class_negatives`, `ExpertsConfig.validation_score="own"`, `ExpertsConfig.inputs="task+i3d"`,
  `GateConfig.feature_dropout` (docs/decisions.md lists each with its measurement).
- How long each stage trains (`ValidationConfig`, `training.validation`): by default a stratified 15% of
  the TRAINING videos is held out (every class and the normal videos represented, from `split_seed`; only
  their video-level labels are used), every stage validates every `validate_every` steps (video-level ROC
  AUC of the held-out videos' top-k scores), keeps its best validated checkpoint and stops after `patience`
  validations without improvement; its `iterations` is then the profile's maximum. This DEPARTS from
  UR-DMU's practice of keeping the checkpoint with the best TEST AUC (UCF-Crime) / AP (XD-Violence): here
  no test label chooses anything. The held-out share shrinks the training set by that share.
  `selection="fixed"` (with `share=0.0`: exactly the earlier behaviour) trains every stage its
  `iterations`. docs/decisions.md ("Weakly-supervised validation").

One resolver builds a config from what a user gives: `config_for` (the notebooks' parameters and
`gsmoe train`'s options both go through it). The default data folder of a profile and dataset is
`default_data_root`, the only place that knows the synthetic data's folder names (`gsmoe reproduce` builds
the data there, `gsmoe train` and the notebooks read it from there).

A stage's identity is `stage_config`: its settings, the data (`data_identity`: by content, so that equal
runs hash equal whoever asks and wherever the data lies), the seed, autocast and the config hash of its
upstream stage.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

from gsmoe_lib import runs
from gsmoe_lib.data.layouts import detect_dataset_name
from gsmoe_lib.tgs import TGSConfig

DATASETS = ("ucf-crime", "xd-violence")


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
    validate_every: int = 100  # steps between validations (ValidationConfig); `iterations` is the maximum
    patience: int = 5  # validations without improvement before the stage stops (selection "validation")
    # UR-DMU's auxiliary terms (`losses.urdmu_loss`), its own weights: the memory BCEs, the triplet on the
    # L2-normalised top-k means, the KL, and the magnitude term relu(100 - ||A_aug|| + ||N_aug||).
    memory_weight: float = 0.1
    triplet_weight: float = 0.1
    kl_weight: float = 0.001
    distance_weight: float = 0.0001
    # Extension (not in UR-DMU or the paper): run the embedding and GL-MHSA over independent windows of this
    # many steps instead of the whole sequence (`URDMU.temporal`). 0 = UR-DMU (the default).
    context_window: int = 0


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
    validate_every: int = 100  # steps between validations; validations in the first epoch are not selected
    patience: int = 5  # validations without improvement before the stage stops (selection "validation")


@dataclass
class TGSStageConfig(TGSTrainingConfig):
    """Stage 1b: the encoder fine-tuned with L_TGS."""


@dataclass
class ClassTeacherConfig:
    """The per-class teachers of the extension `teacher="per-class"` (`training.class_teachers`): one top-k MIL
    MLP per expert pool, with the top-k MIL reference's loss and optimiser, its hidden layer narrower (all E
    teachers train at once; 128 keeps the step cheap on a CPU), on crop-averaged videos pooled to `n_segments`.
    Length: each teacher keeps its best own-class validation AUC; all stop when none improved for `patience`
    validations."""

    hidden: int = 128
    dropout: float = 0.6
    lr: float = 1e-3  # Adam, as the top-k MIL reference
    weight_decay: float = 5e-4
    batch_normal: int = 8  # per teacher and step
    batch_abnormal: int = 8
    n_segments: int = 32
    iterations: int = 400  # the most steps
    validate_every: int = 25
    patience: int = 4
    # A snippet MLP has no temporal context, so its scores are jagged: with `smooth` = w > 1 they are averaged over
    # w snippets (centred, odd) before TGS splats them. 1 = as scored (the default: w = 5 cost the gate 5 AUC points
    # on the ucf-reseed variant and gained nothing on the XD-shaped world, docs/studies/recipe.md §6).
    smooth: int = 1


@dataclass
class ExpertsConfig(TGSTrainingConfig):
    kind: str = "class"  # "class": one expert per anomaly class; "cluster": k-means on task-aware features
    n_clusters: int = 7  # Table 5: 5, 6, 7
    d_model: int = 192
    dropout: float = 0.1
    # Extension (not in the paper): this share of each expert's negative half is drawn from the OTHER
    # experts' abnormal samples (target: their top-k -> 0, like a normal video). 0 = the paper (normals only).
    other_class_negatives: float = 0.0
    # What the validation rule maximises: "combined" (the experts combined by `expert_combine`: the held-out
    # videos' AUC) | "own" (an extension: the mean of each expert's own-class validation AUC)
    validation_score: str = "combined"
    # What each expert reads: "task" (the paper: the task encoder's task-aware features [.., F]) | "task+i3d"
    # (an extension: the task-aware features and the snippet's input features side by side [.., F + D], so an
    # expert can find its class in directions the encoder's whole-video context washed out; the gate still
    # reads the task-aware features only). docs/decisions.md.
    inputs: str = "task"
    # Whose scores make the experts' pseudo-labels: "encoder" (the paper: the TGS encoder's, one teacher for every
    # expert) | "per-class" (an extension: expert e's from a top-k MIL MLP trained on its own pool against the
    # normal videos, `class_teacher`; training.class_teachers). docs/decisions.md.
    teacher: str = "encoder"
    class_teacher: ClassTeacherConfig = field(default_factory=ClassTeacherConfig)


@dataclass
class GateConfig(TGSTrainingConfig):
    use_features: bool = True  # Table 3: the gate with / without the task-aware features
    d_model: int = 256
    dropout: float = 0.1
    expert_input: str = "logits"  # what the gate reads of the experts: "logits" (the paper) | "probs"
    # Extension (not in the paper): probability of zeroing a training sample's feature stream, so that
    # the gate cannot fit the target from the features alone. 0 = the paper.
    feature_dropout: float = 0.0
    # Whose scores make the gate's pseudo-labels: "encoder" (the paper) | "per-class" (an extension: an abnormal
    # sample's from the per-class teachers of its own pools, `experts.class_teacher`, the largest where a video
    # has several classes).
    teacher: str = "encoder"


@dataclass
class SultaniConfig:
    """Sultani et al.'s training; `training.sultani`'s docstring gives the source of each default."""

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
    validate_every: int = 500
    patience: int = 5


@dataclass
class TopKMILConfig:
    """The top-k MIL MLP, the second reference (`training.topk_mil`): the plainest member of the family
    RTFM and UR-DMU come from (a one-hidden-layer MLP trained with BCE on the mean of the top-k segments)."""

    iterations: int = 3000  # the maximum; the validation rule chooses the length
    batch_normal: int = 16
    batch_abnormal: int = 16
    n_segments: int = 32  # segments per training video (mean of the snippets in each), crops averaged
    lr: float = 1e-3  # Adam
    weight_decay: float = 5e-4
    hidden: int = 512
    dropout: float = 0.6
    checkpoint_every: int = 500
    validate_every: int = 50
    patience: int = 5


@dataclass
class ValidationConfig:
    """The held-out share of the training videos and how it chooses each stage's length (module docstring)."""

    selection: str = "validation"  # "validation": best validated checkpoint, early stop | "fixed": `iterations`
    share: float = 0.15  # of the training videos, stratified by class (normals too); 0: no hold-out
    split_seed: int = 0  # the split depends on this and the list of videos only (not on the run seed)
    # A validation better by less than this does not reset the patience (it is still kept when best): on the
    # quick data's ~45 held-out videos one swapped (abnormal, normal) pair moves the AUC by ~0.002.
    min_delta: float = 0.01


@dataclass
class PipelineConfig:
    data: DataConfig = field(default_factory=DataConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    tgs: TGSStageConfig = field(default_factory=TGSStageConfig)
    experts: ExpertsConfig = field(default_factory=ExpertsConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    sultani: SultaniConfig = field(default_factory=SultaniConfig)  # the reference MIL detector (Table 2's floor)
    topk_mil: TopKMILConfig = field(default_factory=TopKMILConfig)  # the top-k MIL MLP reference
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    seed: int = 0
    device: str = "cpu"
    amp: str = "none"  # "none" | "bf16" (autocast); see README's performance section
    expert_combine: str = "max"  # Table 2 "+experts" row without the gate


# Profile overrides, as nested dicts over PipelineConfig. "paper" is the paper / UR-DMU scale.
PROFILES: dict[str, dict[str, Any]] = {
    "paper": {},
    "quick": {  # sized so that `make reproduce` (every notebook, 1 seed) fits 15 minutes on a 2-core CPU
        # Every stage stops by the validation rule (ValidationConfig); `iterations` is its maximum, and
        # `patience` x `validate_every` the steps it may go on without a held-out AUC better by min_delta. The
        # maxima are what `make reproduce` affords (an encoder or TGS step costs ~0.8-1.2 s on the 2-core CPU,
        # an expert or gate step ~0.4 s); the held-out curves of docs/studies/recipe.md peak within them.
        "data": {"n_segments": 64},
        # lr 1e-3: at UR-DMU's 1e-4, 100 steps leave the encoder below Sultani's MIL MLP on both datasets
        # (`gsmoe bench encoder-schedule`, benchmarks/sultani-floor.md).
        "encoder": {"iterations": 200, "lr": 1e-3, "batch_normal": 16, "batch_abnormal": 16, "checkpoint_every": 50,
                    "validate_every": 25, "patience": 3},
        "tgs": {"iterations": 100, "batch_normal": 16, "batch_abnormal": 16, "checkpoint_every": 25,
                "validate_every": 25, "patience": 2},
        # The experts and the gate train on cached task-aware features (no encoder pass per step).
        "experts": {"iterations": 300, "batch_normal": 8, "batch_abnormal": 8, "checkpoint_every": 100,
                    "validate_every": 50, "patience": 2},
        "gate": {"iterations": 300, "lr": 3e-4, "batch_normal": 8, "batch_abnormal": 8, "checkpoint_every": 100,
                 "validate_every": 50, "patience": 2},
        # Sultani's steps cost ~75 ms here, the top-k MLP's ~25 ms. Sultani's hinge learns slowly (its held-out AUC
        # still gains ~0.5 points per 500 steps after 1,000): min_delta stops it once the gains are that small.
        "sultani": {"iterations": 1500, "checkpoint_every": 500, "validate_every": 100, "patience": 3},
        "topk_mil": {"iterations": 600, "checkpoint_every": 200, "validate_every": 25, "patience": 6},
    },
    "tiny": {
        # The test profile: its 40 training videos (20 abnormal in 13 classes) are too few to hold out 15% of
        # them stratified (a third of the abnormal videos would leave training), so its stages train fixed
        # schedules on every video; the tests that exercise the validation rule ask for it.
        "validation": {"selection": "fixed", "share": 0.0},
        "data": {"n_segments": 32},
        "encoder": {"iterations": 12, "batch_normal": 4, "batch_abnormal": 4, "checkpoint_every": 5},
        # Every stage must learn something even here (tests/integration/test_learning.py): the experts and the
        # gate are cheap at these sizes, so they get enough steps to leave their initialisation. TGS: its first
        # epoch (L_topk-norm only, 10 steps here) disorders the MIL ranking, so the steps after it must be many.
        "tgs": {"iterations": 48, "batch_normal": 4, "batch_abnormal": 4, "checkpoint_every": 24},
        "experts": {"iterations": 60, "batch_normal": 4, "batch_abnormal": 4, "d_model": 64, "checkpoint_every": 30},
        "gate": {"iterations": 60, "lr": 3e-4, "batch_normal": 4, "batch_abnormal": 4, "d_model": 64,
                 "checkpoint_every": 30},
        "sultani": {"iterations": 30, "checkpoint_every": 10},
        "topk_mil": {"iterations": 60, "checkpoint_every": 20, "validate_every": 10, "patience": 3},
    },
}


def merge(obj: Any, overrides: dict[str, Any], where: str = "config") -> Any:
    """A copy of dataclass `obj` with nested `overrides` applied; an unknown key is an error naming it."""
    known = {f.name: f for f in fields(obj)}
    changes = {}
    for key, value in overrides.items():
        if key not in known:
            raise ValueError(f"unknown {where} key {key!r}; known: {', '.join(sorted(known))}")
        current = getattr(obj, key)
        if is_dataclass(current) and isinstance(value, dict):
            changes[key] = merge(current, value, f"{where}.{key}")
        else:
            changes[key] = value
    return replace(obj, **changes)


def make_config(profile: str = "quick", overrides: dict[str, Any] | None = None) -> PipelineConfig:
    """PipelineConfig for a profile ("tiny", "quick", "paper") with nested overrides applied on top."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; expected one of {', '.join(PROFILES)}")
    cfg = merge(PipelineConfig(), PROFILES[profile])
    return merge(cfg, overrides or {})


def config_from_dict(d: dict[str, Any]) -> PipelineConfig:
    """Inverse of dataclasses.asdict for PipelineConfig (TGS configs included)."""
    d = {k: dict(v) if isinstance(v, dict) else v for k, v in d.items()}
    for stage in ("tgs", "experts", "gate"):
        if stage in d and isinstance(d[stage].get("tgs"), dict):
            d[stage]["tgs"] = TGSConfig.from_dict(d[stage]["tgs"])
    return merge(PipelineConfig(), d)


def synthetic_profile(profile: str) -> str:
    """The synthetic generator's profile that a training profile reads: "tiny" for tiny, else "quick"."""
    return "tiny" if profile == "tiny" else "quick"


def default_data_root(profile: str, dataset: str | None = None) -> str:
    """The synthetic dataset of a profile and dataset: PROJECT_ROOT/data/synthetic-<p>[-xd].

    The only place that knows these folder names: `gsmoe reproduce` builds the data here
    (`pipeline.default_data`), `gsmoe train` and the notebooks read it from here. Absolute, so that the CLI,
    the notebooks (whose kernel runs in notebooks/) and `gsmoe reproduce` name the same folder wherever they run.
    """
    from gsmoe_lib.paths import PROJECT_ROOT

    if dataset not in (None, "", *DATASETS):
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")
    suffix = "-xd" if dataset == "xd-violence" else ""
    return str(PROJECT_ROOT / "data" / f"synthetic-{synthetic_profile(profile)}{suffix}")


def config_for(profile: str, data_root: str = "", dataset: str = "", seed: int = 0, device: str = "cpu",
               overrides: dict[str, Any] | None = None, tgs_config: str = "", train_list: str = "",
               test_list: str = "", annotations: str = "", amp: str | None = None,
               init_encoder: str = "") -> PipelineConfig:
    """THE resolver: a PipelineConfig from a profile and what a user gives ("" / None means: the default).

    `data_root`: "" is the profile's synthetic data of `dataset` (`default_data_root`). `tgs_config`: a
    TGSConfig JSON file (the TGS tuner's output) for the TGS fine-tuning stage. `train_list`, `test_list`,
    `annotations`: list / annotation files (as `gsmoe data check`); "" means the ones inside the data root,
    else the packaged official ones. `amp`: None keeps the profile's (or the overrides'). `init_encoder`: a
    released UR-DMU checkpoint the encoder stage starts from.
    """
    cfg = make_config(profile, overrides)
    if tgs_config:
        cfg = replace(cfg, tgs=replace(cfg.tgs, tgs=TGSConfig.from_json(Path(tgs_config).read_text())))
    if init_encoder:
        cfg = replace(cfg, encoder=replace(cfg.encoder, init_checkpoint=init_encoder))
    if amp is not None:
        cfg = replace(cfg, amp=amp)
    return replace(cfg, seed=seed, device=device,
                   data=replace(cfg.data, data_root=data_root or default_data_root(profile, dataset or None),
                                dataset=dataset or None, train_list=train_list or None,
                                test_list=test_list or None, annotations=annotations or None))


def dataset_name(cfg: DataConfig) -> str:
    """The dataset a DataConfig names: its `dataset`, else DATA_ROOT/gsmoe_dataset.json's, else ucf-crime."""
    return cfg.dataset or detect_dataset_name(cfg.data_root) or "ucf-crime"


# Settings added after runs were first keyed, with the value that reproduces what those runs did: at that
# value a setting is left out of every identity (stage_config, pipeline_identity), so runs and benchmark
# cells keyed before it existed keep their keys. (EncoderConfig.context_window is handled in stage_config
# alone: the benchmark cells were first keyed with it present.)
LATER_SETTINGS = {("experts", "inputs"): "task", ("experts", "teacher"): "encoder",
                  ("experts", "class_teacher"): asdict(ClassTeacherConfig()), ("gate", "teacher"): "encoder"}


def pipeline_identity(cfg: PipelineConfig) -> dict[str, Any]:
    """The whole config as a dict for hashing (benchmark cell keys), without `LATER_SETTINGS` at their old value."""
    ident = asdict(cfg)
    for (section, key), old in LATER_SETTINGS.items():
        if ident.get(section, {}).get(key) == old:
            del ident[section][key]
    return ident


def data_identity(cfg: DataConfig) -> dict[str, Any]:
    """What identifies the data a stage was trained on (goes into every stage's config hash).

    By content, not by path (`data.fingerprint.dataset_fingerprint`: the list and annotation files' bytes,
    each feature file's relative path, size and .npy header), so that equal runs hash equal whoever asks (the
    CLI, `gsmoe reproduce`, a notebook, from any working directory), a dataset copied or moved elsewhere
    keeps its finished stages, and a changed feature file or list makes every stage another run. With the
    dataset resolved (None -> the name `load_data` uses) and the pooling (`n_segments`, `crops`).
    """
    from gsmoe_lib.data.fingerprint import dataset_fingerprint

    dataset = dataset_name(cfg)
    return {"dataset": dataset, "n_segments": cfg.n_segments, "crops": cfg.crops,
            **dataset_fingerprint(cfg.data_root, dataset, cfg.train_list or None, cfg.test_list or None,
                                  cfg.annotations or None)}


def stage_config(cfg: PipelineConfig, stage: str, upstream: str | None) -> dict[str, Any]:
    """A stage's identity (its config hash is what DONE records): settings, data, seed, amp, upstream hash.

    The references (Sultani, top-k MIL) read the raw features, so the other stages' pooling (`n_segments`, `crops`) is
    not part of its data.
    """
    settings = asdict(getattr(cfg, stage))
    settings["validation"] = asdict(cfg.validation)  # the held-out share changes the training set
    if stage == "encoder" and not settings.get("context_window"):  # the extension off: the identity of before
        settings.pop("context_window", None)
    if stage == "gate" and settings.get("teacher") == "per-class":  # the gate's targets come from these teachers
        settings["class_teacher"] = asdict(cfg.experts.class_teacher)
    for (section, key), old in LATER_SETTINGS.items():  # at their old value: the identity of before
        if stage == section and settings.get(key) == old:
            settings.pop(key)
    if settings.get("init_checkpoint"):  # a path: absolute, like the data's (runs.py: equal runs hash equal)
        settings["init_checkpoint"] = str(Path(settings["init_checkpoint"]).resolve())
    data = data_identity(cfg.data)
    if stage in ("sultani", "topk_mil"):
        data = {k: v for k, v in data.items() if k not in ("n_segments", "crops")}
    return {"stage": stage, "settings": settings, "data": data, "seed": cfg.seed, "amp": cfg.amp,
            "upstream": upstream}
