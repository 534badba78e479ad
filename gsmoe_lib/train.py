"""TEMPORARY shim: training moved to the `gsmoe_lib.training` package (issue 14). Import from there.

Re-exports the names code and notebooks imported from `gsmoe_lib.train` while the move lands; it will be
removed. Where each lives now: `training/__init__.py` lists the modules.
"""

from __future__ import annotations

from pathlib import Path

from gsmoe_lib import runs
from gsmoe_lib.runs import load_scores  # noqa: F401
from gsmoe_lib.tgs import TGSConfig  # noqa: F401
from gsmoe_lib.training.command import add_arguments, run  # noqa: F401
from gsmoe_lib.training.config import (DataConfig, EncoderConfig, ExpertsConfig, GateConfig,  # noqa: F401
                                       PipelineConfig, PROFILES, SultaniConfig, TGSStageConfig,
                                       TGSTrainingConfig, config_for, config_from_dict, data_identity,
                                       dataset_name, default_data_root, make_config)
from gsmoe_lib.training.config import merge as _merge  # noqa: F401
from gsmoe_lib.training.config import stage_config as _stage_config  # noqa: F401
from gsmoe_lib.training.data import Data, load_data  # noqa: F401
from gsmoe_lib.training.loop import fit, frozen_forward, tgs_update, urdmu_update  # noqa: F401
from gsmoe_lib.training.moe_stages import (FeatureCache, encode_train_set, expert_membership,  # noqa: F401
                                           lazy_train_cache, train_experts, train_gate)
from gsmoe_lib.training.pipeline import run_pipeline, run_variant, upstream_hashes  # noqa: F401
from gsmoe_lib.training.pseudo_labels import (PseudoLabels, check_coverage, check_pseudo_labels,  # noqa: F401
                                              loss_trend, refresh_period, training_health, warmup_per_pool)
from gsmoe_lib.training.pseudo_labels import warmup_of_all_abnormal
from gsmoe_lib.training.stages import (REFERENCE_STAGES, SEED_OFFSETS, STAGES, StageResult,  # noqa: F401
                                       finetune_tgs, teacher_pseudo_labels, train_encoder)
from gsmoe_lib.training.sultani import train_sultani  # noqa: F401

_teacher_pseudo_labels = teacher_pseudo_labels


def _warmup(cfg: TGSTrainingConfig, train, stage: str) -> int:
    return warmup_of_all_abnormal(cfg, train.labels, stage)


def new_encoder(input_dim: int):
    from gsmoe_lib.models.urdmu import URDMU

    return URDMU(input_dim=input_dim)


def seed_run_dir(run_dir: str | Path, seed: int) -> Path:
    """RUN/seed-<s> (now `runs.Run(RUN).seed(s).path`)."""
    return runs.Run(run_dir).seed(seed).path
