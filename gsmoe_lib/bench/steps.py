"""The training steps `gsmoe bench speed` times: one step of each stage, on synthetic batches.

    encoder   one UR-DMU MIL step: forward with the training extras, `urdmu_loss`, backward, Adam
              (paper batch 64 normal + 64 abnormal samples x 200 segments x D = 1024)
    tgs       one TGS fine-tuning step of the encoder: forward, pseudo-labels from its own detached scores
              (on the host, scipy), `tgs_loss`, backward, AdamW; the pseudo-label call is also timed on its own
    experts   one step of all E = 13 experts at once, each on its own batch [E, 64 + 64, 200, F = 1024]
              gathered from cached task-aware features, pseudo-labels precomputed (source "encoder")
    gate      one gate step on cached expert scores [128, 200, E] and features [128, 200, F]

Every step calls `training.loop.urdmu_update` or `training.loop.tgs_update`, the update steps of the stages
(the only reason the benchmark imports training), on batches drawn from a pool of samples already on the
device, as `training.data.load_data` stages them.
Decision: the pool holds 512 samples (not the 16,100 crops of UCF-Crime, 13 GB at D = 1024): a step
gathers its batch from the pool exactly as training does, so its cost does not depend on the pool's size.
"""

from __future__ import annotations

import statistics
from typing import Any

import torch

from gsmoe_lib.bench.meters import StepTimes, device_peak_mb, host_peak_mb, reset_device_peak, time_steps
from gsmoe_lib.bench.sizes import BenchSizes
from gsmoe_lib.device import autocast
from gsmoe_lib.models.urdmu import k_for_length
from gsmoe_lib.tgs import TGSConfig, pseudo_labels
from gsmoe_lib.training.config import TGSTrainingConfig
from gsmoe_lib.training.loop import tgs_update, urdmu_update


def step_record(t: StepTimes, samples_per_step: int, device: torch.device, **extra: Any) -> dict[str, Any]:
    """The JSON record of a timed training step: mean, median and min seconds, CPU seconds, throughput, peaks."""
    times = t.wall
    mean = statistics.fmean(times)
    return {
        "step_s": mean, "step_cpu_s": t.cpu, "step_s_median": statistics.median(times), "step_s_min": min(times), "steps": len(times),
        "samples_per_step": samples_per_step, "videos_per_s": samples_per_step / mean,
        "host_peak_mb": host_peak_mb(), "device_peak_mb": device_peak_mb(device), **extra,
    }


class _Pool:
    """Synthetic training samples on the device and a batch sampler: normal half first, as UR-DMU."""

    def __init__(self, n: int, segments: int, dim: int, device: torch.device, generator: torch.Generator) -> None:
        self.features = torch.randn(n, segments, dim, generator=generator).to(device)  # [N, S, D]
        self.labels = (torch.arange(n) >= n // 2).long().to(device)  # [N], first half normal
        self.n = n
        self.generator = generator

    def batch(self, normal: int, abnormal: int, rows: int | None = None) -> torch.Tensor:
        """Indices [normal + abnormal] (or [rows, normal + abnormal]) into the pool, on its device."""
        shape = (rows,) if rows is not None else ()
        half = self.n // 2
        n = torch.randint(0, half, (*shape, normal), generator=self.generator)
        a = torch.randint(half, self.n, (*shape, abnormal), generator=self.generator)
        return torch.cat([n, a], dim=-1).to(self.features.device)


def _smooth_scores(n: int, t: int, generator: torch.Generator) -> torch.Tensor:
    """Score curves [n, t] in (0, 1) with a few bumps each: what a trained encoder's scores look like to TGS."""
    walk = torch.randn(n, t, generator=generator).cumsum(-1) / 3  # [n, t]
    return torch.sigmoid(walk - walk.mean(-1, keepdim=True))


def bench_encoder(sizes: BenchSizes, device: torch.device, amp: str, steps: int, warmup: int,
                  gen: torch.Generator) -> dict[str, Any]:
    pool = _Pool(sizes.pool, sizes.segments, sizes.input_dim, device, gen)
    model = sizes.encoder().to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, weight_decay=5e-5)
    k = k_for_length(sizes.segments)

    def step() -> None:
        idx = pool.batch(sizes.batch_normal, sizes.batch_abnormal)
        urdmu_update(model, pool.features[idx], pool.labels[idx], k, optimizer, amp)  # [B, S, D], [B]

    reset_device_peak(device)
    times = time_steps(step, steps, warmup, device)
    return step_record(times, sizes.batch_normal + sizes.batch_abnormal, device)


def bench_tgs(sizes: BenchSizes, device: torch.device, amp: str, steps: int, warmup: int,
              gen: torch.Generator) -> tuple[dict[str, Any], dict[str, Any]]:
    """The TGS fine-tuning step, and the pseudo-label call on its own (scores of the same shape)."""
    pool = _Pool(sizes.pool, sizes.segments, sizes.input_dim, device, gen)
    model = sizes.encoder().to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-4)
    k = k_for_length(sizes.segments)
    cfg = TGSConfig()

    def step() -> None:
        idx = pool.batch(sizes.batch_normal, sizes.batch_abnormal)
        x, labels = pool.features[idx], pool.labels[idx]
        with autocast(device, amp):
            scores = model(x, training_extras=False).scores.float()  # [B, S]
        # teacher None: pseudo-labels from these scores every step (source "self", the costlier variant)
        tgs_update(scores, labels, None, False, TGSTrainingConfig(tgs=cfg), k, optimizer)

    reset_device_peak(device)
    times = time_steps(step, steps, warmup, device)
    record = step_record(times, sizes.batch_normal + sizes.batch_abnormal, device)

    # Pseudo-labels alone, on curves with a few bumps each (a fresh model's scores are nearly flat and would
    # understate the peak detection's work), for the TGS batch and for the experts' batch with source "self".
    pseudo = {}
    for name, rows in (("tgs_batch", sizes.batch_normal + sizes.batch_abnormal),
                       ("experts_batch_self", sizes.n_experts * (sizes.expert_batch_normal + sizes.expert_batch_abnormal))):
        curves = _smooth_scores(rows, sizes.segments, gen).to(device)
        t = time_steps(lambda: pseudo_labels(curves, cfg), steps, min(warmup, 1), device).wall
        pseudo[name] = {"call_s": statistics.fmean(t), "call_s_min": min(t), "curves": rows}
    pseudo["fraction_of_tgs_step"] = pseudo["tgs_batch"]["call_s"] / record["step_s"]
    return record, pseudo


def bench_experts(sizes: BenchSizes, device: torch.device, amp: str, steps: int, warmup: int,
                  gen: torch.Generator) -> dict[str, Any]:
    pool = _Pool(sizes.pool, sizes.segments, sizes.feature_dim, device, gen)  # cached task-aware features
    pseudo_all = pseudo_labels(_smooth_scores(sizes.pool, sizes.segments, gen), TGSConfig()).to(device)  # [N, S]
    experts = sizes.experts().to(device).train()
    optimizer = torch.optim.AdamW(experts.parameters(), lr=1e-4, weight_decay=1e-4)
    k = k_for_length(sizes.segments)
    E = sizes.n_experts

    def step() -> None:
        idx = pool.batch(sizes.expert_batch_normal, sizes.expert_batch_abnormal, rows=E)  # [E, B]
        x = pool.features[idx]  # [E, B, S, F]: expert e's own batch
        with autocast(device, amp):
            scores = experts(x).float()  # [B, S, E]
        flat = scores.permute(2, 0, 1).reshape(E * idx.shape[1], -1)  # [E·B, S]
        y = pool.labels[idx].reshape(-1)  # [E·B]
        tgs_update(flat, y, pseudo_all[idx].reshape(flat.shape), False, TGSTrainingConfig(), k, optimizer)

    reset_device_peak(device)
    times = time_steps(step, steps, warmup, device)
    per_expert = sizes.expert_batch_normal + sizes.expert_batch_abnormal
    return step_record(times, E * per_expert, device, per_expert_batch=per_expert, n_experts=E)


def bench_gate(sizes: BenchSizes, device: torch.device, amp: str, steps: int, warmup: int,
               gen: torch.Generator) -> dict[str, Any]:
    pool = _Pool(sizes.pool, sizes.segments, sizes.feature_dim, device, gen)
    expert_scores = torch.rand(sizes.pool, sizes.segments, sizes.n_experts, generator=gen).to(device)  # [N, S, E]
    pseudo_all = pseudo_labels(_smooth_scores(sizes.pool, sizes.segments, gen), TGSConfig()).to(device)
    gate = sizes.gate().to(device).train()
    optimizer = torch.optim.AdamW(gate.parameters(), lr=1e-4, weight_decay=1e-4)
    k = k_for_length(sizes.segments)

    def step() -> None:
        idx = pool.batch(sizes.batch_normal, sizes.batch_abnormal)
        with autocast(device, amp):
            scores = gate(expert_scores[idx], pool.features[idx]).scores.float()  # [B, S]
        tgs_update(scores, pool.labels[idx], pseudo_all[idx], False, TGSTrainingConfig(), k, optimizer)

    reset_device_peak(device)
    times = time_steps(step, steps, warmup, device)
    return step_record(times, sizes.batch_normal + sizes.batch_abnormal, device)

