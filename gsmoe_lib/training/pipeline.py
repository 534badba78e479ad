"""The whole training pipeline: the stages in order, each on the one it was trained from.

`run_pipeline(cfg, RUN)` runs (or loads, when finished with the same config) encoder -> tgs -> experts ->
gate, and the Sultani reference when asked; `run_variant` trains ablations (other experts and / or another
gate) beside the main stages of the same run folder.

A stage's config records the hash of its upstream stage's config ("upstream"), so a change anywhere upstream
makes every later stage another run. That chain is built in one place, `upstream_hashes`: the pipeline and
the variants ask it, and `gsmoe score` follows the same hashes back through the stage folders
(`runs.Run.upstream`).
"""

from __future__ import annotations

import functools
import inspect
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from gsmoe_lib import runs
from gsmoe_lib.training.config import PipelineConfig, merge, stage_config
from gsmoe_lib.training.data import Data, load_data
from gsmoe_lib.training.moe_stages import lazy_train_cache, train_experts, train_gate
from gsmoe_lib.training.stages import REFERENCE_STAGES, STAGES, StageResult, finetune_tgs, train_encoder
from gsmoe_lib.training.sultani import train_sultani


def upstream_hashes(cfg: PipelineConfig) -> dict[str, str | None]:
    """stage -> the config hash of the stage it trains on (None for the encoder): the chain of `STAGES`."""
    chain: dict[str, str | None] = {}
    upstream = None
    for stage in STAGES:
        chain[stage] = upstream
        upstream = runs.config_hash(stage_config(cfg, stage, upstream))
    return chain


def check_stages(cfg: PipelineConfig, run_dir: Path, stages: tuple[str, ...]) -> list[str]:
    """Refuse, before anything is written, a run whose stages `run_pipeline` would refuse: a stage finished with
    another config (`runs.StageConflict`) or with a truncated record (`runs.BadRecord`), each naming the file.
    Returns the stages that will train (not finished with their config)."""
    up = upstream_hashes(cfg)
    asked = [s for s in stages if s in STAGES]
    last = max((STAGES.index(s) for s in asked), default=-1)
    unfinished = []
    for stage in [*(s for s in REFERENCE_STAGES if s in stages), *STAGES[:last + 1]]:
        config = stage_config(cfg, stage, up.get(stage))
        stage_dir = runs.Run(run_dir).stage(stage)
        stage_dir.check(config)
        if not stage_dir.is_done(config):
            unfinished.append(stage)
    return unfinished


def _checked_and_locked(run: Callable[..., dict[str, StageResult]]) -> Callable[..., dict[str, StageResult]]:
    """`run_pipeline` checks every stage before anything is written (`check_stages`) and, when one will train,
    holds the run folder's writer lock for the whole pipeline (`runs.writer_lock`): a second writer waits or
    refuses before it trains anything, never between two stages. A run whose stages are all finished is read
    without a lock."""

    @functools.wraps(run)
    def checked(*args: Any, **kwargs: Any) -> dict[str, StageResult]:
        bound = inspect.signature(run).bind(*args, **kwargs)
        bound.apply_defaults()
        run_dir, stages = Path(bound.arguments["run_dir"]), bound.arguments["stages"]
        unknown = [s for s in stages if s not in STAGES + REFERENCE_STAGES]
        if unknown:
            raise ValueError(f"unknown stages {unknown}; expected a subset of {STAGES + REFERENCE_STAGES}")
        writes = check_stages(bound.arguments["cfg"], run_dir, stages)
        with runs.writer_lock(run_dir) if writes else nullcontext():
            return run(*bound.args, **bound.kwargs)

    return checked


@_checked_and_locked
def run_pipeline(cfg: PipelineConfig, run_dir: str | Path, stages: tuple[str, ...] = STAGES,
                 progress: bool = True, data: Data | None = None) -> dict[str, StageResult]:
    """Run (or load, when finished with the same config) the stages in order; returns stage -> result.

    The stages a named stage trains on run first (asking for "gate" runs all four). `stages` may also name
    the REFERENCE_STAGES ("sultani"): trained first, on the raw features, and independent of the others
    (`stages=("sultani",)` trains nothing else).
    """
    unknown = [s for s in stages if s not in STAGES + REFERENCE_STAGES]
    if unknown:
        raise ValueError(f"unknown stages {unknown}; expected a subset of {STAGES + REFERENCE_STAGES}")
    run_dir = Path(run_dir)  # its stages were checked before this line (`_checked_and_locked`)
    record = run_dir / "pipeline_config.json"
    if not record.is_file() or record.read_text() != runs.json_text(cfg):  # a reader of a finished run writes nothing
        with runs.writer_lock(run_dir):
            runs.write_json(record, cfg)
    results: dict[str, StageResult] = {}
    if "sultani" in stages:
        results["sultani"] = train_sultani(cfg, data, run_dir, progress)
    if not any(s in STAGES for s in stages):
        return results
    last = max(STAGES.index(s) for s in stages if s in STAGES)  # every stage up to the last one asked for
    data = data or load_data(cfg.data, cfg.device, progress)
    up = upstream_hashes(cfg)
    results["encoder"] = train_encoder(cfg, data, run_dir, progress)
    encoder = results["encoder"].model
    if last >= STAGES.index("tgs"):
        results["tgs"] = finetune_tgs(cfg, data, encoder, run_dir, up["tgs"], progress)
        encoder = results["tgs"].model.eval()
    if last >= STAGES.index("experts"):
        cache = lazy_train_cache(encoder, data, cfg, progress)
        results["experts"] = train_experts(cfg, data, encoder, run_dir, up["experts"], progress, cache=cache)
        if last >= STAGES.index("gate"):
            results["gate"] = train_gate(cfg, data, encoder, results["experts"].model.eval(), run_dir, up["gate"],
                                         progress, cache=cache)
    return results


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
    vcfg = replace(cfg, experts=merge(cfg.experts, experts or {}, "experts"))
    vcfg = replace(vcfg, gate=merge(vcfg.gate, gate or {}, "gate"))
    up = upstream_hashes(vcfg)  # the variant's experts hash into its gate's upstream
    cache = lazy_train_cache(encoder, data, cfg, progress)
    out: dict[str, StageResult] = {}
    if experts:
        out["experts"] = train_experts(vcfg, data, encoder, run_dir, up["experts"], progress, cache=cache,
                                       stage_name=f"experts-{name}")
    else:
        out["experts"] = main["experts"]
    out["gate"] = train_gate(vcfg, data, encoder, out["experts"].model.eval(), run_dir, up["gate"], progress,
                             cache=cache, stage_name=f"gate-{name}")
    return out
