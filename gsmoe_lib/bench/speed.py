"""`gsmoe bench`: how fast each training stage steps and how fast a UCF-Crime-sized test set is scored.

What is measured (synthetic values throughout: speed does not depend on what the numbers mean):

    encoder   one UR-DMU MIL step: forward with the training extras, `urdmu_loss`, backward, Adam
              (paper batch 64 normal + 64 abnormal samples x 200 segments x D = 1024)
    tgs       one TGS fine-tuning step of the encoder: forward, pseudo-labels from its own detached scores
              (on the host, scipy), `tgs_loss`, backward, AdamW; the pseudo-label call is also timed on its own
    experts   one step of all E = 13 experts at once, each on its own batch [E, 64 + 64, 200, F = 1024]
              gathered from cached task-aware features, pseudo-labels precomputed (source "encoder")
    gate      one gate step on cached expert scores [128, 200, E] and features [128, 200, F]
    score     the 290 UCF-Crime test videos with their real lengths (T = floor(frames / 16), 69,364
              snippets), 10 crops, features [C, T, D] read per video from memory-mapped files (`TestSet`,
              default on the CPU) or held in (pinned) host memory (default on CUDA), scored four ways:
                urdmu_per_crop   UR-DMU, one crop per forward pass (what the official test script does)
                urdmu_all_crops  UR-DMU, the 10 crops of a video in one pass
                gsmoe            encoder + 13 experts + gate (`models.gsmoe.GSMoEModel`), all crops in one pass,
                                 every crop through the experts and the gate (crops="each", the default)
                gsmoe_mean       the same with crops="mean": experts and gate once on crop-averaged features
              Videos are never batched together (attention spans the whole video, so padding would change
              the scores); the test order is kept; each video is copied to the device once, results stay on
              the device until the end (no host synchronisation per video) and are read back once. On the
              CPU the modes are interleaved video by video (`score_interleaved`), so that a machine whose
              speed drifts compares them on the same minutes; their ratio is given in wall and CPU time.
    memory    peak host memory of scoring (urdmu_all_crops and gsmoe by default) on the memory-mapped test set
              and on its longest video (6,749 snippets), each in a fresh python process (`memory_probe`):
              resident memory once the model is built, the peak (getrusage), and the difference, "beyond";
              on CUDA also torch.cuda.max_memory_allocated.

The encoder and TGS steps call `train.urdmu_update` and `train.tgs_update`, the update steps of the stages,
on batches drawn from a pool of samples already on the device, as `train.load_data` stages them.
Decision: the pool holds 512 samples (not the 16,100 crops of UCF-Crime, 13 GB at D = 1024): a step
gathers its batch from the pool exactly as training does, so its cost does not depend on the pool's size.

Timing: `--warmup` untimed steps, then `--steps` timed ones. On CUDA each step is bracketed by CUDA events
and the device is synchronised once after the timed region; on the CPU each step is timed with
perf_counter. Memory: peak resident host memory of the process so far (getrusage, cumulative over the
stages of a run: only the memory stage's fresh processes give one measurement's own peak) and the peak device
memory of each stage (torch.cuda.max_memory_allocated, reset per stage). Long videos go through the models
within `models.blocks.MemoryLimits` (recorded in the settings).

`--small` shrinks every size so that the whole benchmark runs in seconds on a CPU (the test suite runs it).
Options: `--amp none|bf16` (autocast), `--tf32` (TF32 matmuls and convolutions on CUDA), `--device`,
`--score-modes` (which of the scoring modes above to time), `--features auto|mmap|memory`, `--memory-modes`,
`--no-interleave`.
The JSON holds the machine and versions (`runs.environment_record`), the settings, the load average
before and after (timings on a shared machine are only as good as its load) and one record per measurement.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np
import torch

from gsmoe_lib import runs
from gsmoe_lib.data.ground_truth import SNIPPET_FRAMES
from gsmoe_lib.device import autocast, tf32_matmuls
from gsmoe_lib.losses import k_for_length
from gsmoe_lib.models.blocks import current_limits
from gsmoe_lib.models.experts import Experts
from gsmoe_lib.models.gate import Gate
from gsmoe_lib.models.gsmoe import GSMoEModel
from gsmoe_lib.models.urdmu import URDMU
from gsmoe_lib.tgs import TGSConfig, pseudo_labels
from gsmoe_lib.train import TGSTrainingConfig, tgs_update, urdmu_update

STAGES = ("encoder", "tgs", "experts", "gate", "score", "memory")
SCORE_MODES = ("urdmu_per_crop", "urdmu_all_crops", "gsmoe", "gsmoe_mean")
ANNOTATIONS = Path(__file__).parent / "data" / "resources" / "ucf_crime" / "UCF_Annotation_urdmu_with_framecounts.txt"

# The bar to clear (issue 5, REFERENCE §9): the official UR-DMU code, fp32, on the machines we use.
OFFICIAL_URDMU = {
    "one_h100": {"encoder_step_s": 0.034, "score_per_crop_s": 7.1, "score_all_crops_s": 1.6},
    "two_core_cpu": {"encoder_step_s": 7.2, "score_per_crop_s": 81.0, "score_per_crop_snippets_per_s": 855.0},
    "paper_gsmoe_rtx_a4500": {"score_s": 55.0, "training_hours": 3.0},
}


def ucf_test_lengths() -> tuple[int, ...]:
    """Snippets per UCF-Crime test video, T = floor(frames / 16), in the annotation file's order (290 videos)."""
    lengths = []
    for number, line in enumerate(ANNOTATIONS.read_text().splitlines(), 1):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) < 2 or not tokens[1].isdigit():
            raise ValueError(f"{ANNOTATIONS}:{number}: expected 'video frames class ...', got {line!r}")
        lengths.append(int(tokens[1]) // SNIPPET_FRAMES)
    return tuple(lengths)


@dataclass(frozen=True)
class BenchSizes:
    """Every size the benchmark uses; `paper()` is the default, `small()` runs in seconds."""

    input_dim: int = 1024  # D (I3D)
    urdmu_dim: int = 512
    urdmu_heads: int = 4
    urdmu_dim_head: int = 128
    urdmu_mlp_dim: int = 512
    batch_normal: int = 64  # encoder, TGS and gate steps
    batch_abnormal: int = 64
    segments: int = 200  # S
    pool: int = 512  # training samples staged on the device, batches are gathered from them
    n_experts: int = 13  # E (UCF-Crime classes)
    expert_batch_normal: int = 64  # per expert
    expert_batch_abnormal: int = 64
    expert_d_model: int = 192
    gate_d_model: int = 256
    gate_ffn_hidden: int = 1024
    crops: int = 10  # C of the test set
    test_lengths: tuple[int, ...] = ()  # T per test video; () = the UCF-Crime test set

    @classmethod
    def paper(cls) -> "BenchSizes":
        return cls(test_lengths=ucf_test_lengths())

    @classmethod
    def small(cls) -> "BenchSizes":
        return cls(input_dim=32, urdmu_dim=32, urdmu_heads=2, urdmu_dim_head=16, urdmu_mlp_dim=32,
                   batch_normal=4, batch_abnormal=4, segments=32, pool=16, n_experts=3, expert_batch_normal=2,
                   expert_batch_abnormal=2, expert_d_model=16, gate_d_model=16, gate_ffn_hidden=32, crops=2,
                   test_lengths=(37, 9, 64, 20))

    @property
    def feature_dim(self) -> int:  # F = 2 * dim, the encoder's task-aware features
        return 2 * self.urdmu_dim

    def encoder(self) -> URDMU:
        return URDMU(self.input_dim, dim=self.urdmu_dim, heads=self.urdmu_heads, dim_head=self.urdmu_dim_head,
                     mlp_dim=self.urdmu_mlp_dim)

    def experts(self) -> Experts:
        return Experts(self.n_experts, self.feature_dim, d_model=self.expert_d_model)

    def gate(self) -> Gate:
        return Gate(self.n_experts, self.feature_dim, d_model=self.gate_d_model, ffn_hidden=self.gate_ffn_hidden)


# ---------------------------------------------------------------------------------------------------
# Timing and memory
# ---------------------------------------------------------------------------------------------------


def _host_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _reset_device_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def _device_peak_mb(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


class StepTimes(NamedTuple):
    wall: list[float]  # seconds of each timed step
    cpu: float  # host CPU seconds per step, all threads (on a shared machine wall time overstates the work)


def time_steps(step: Callable[[], Any], steps: int, warmup: int, device: torch.device) -> StepTimes:
    """Seconds of each of `steps` timed calls of `step`, after `warmup` untimed ones."""
    for _ in range(warmup):
        step()
    cpu0 = time.process_time()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(steps)]
        for start, end in events:
            start.record()
            step()
            end.record()
        torch.cuda.synchronize(device)
        wall = [start.elapsed_time(end) / 1000 for start, end in events]
        return StepTimes(wall, (time.process_time() - cpu0) / steps)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return StepTimes(times, (time.process_time() - cpu0) / steps)


def _step_record(t: StepTimes, samples_per_step: int, device: torch.device, **extra: Any) -> dict[str, Any]:
    times = t.wall
    mean = statistics.fmean(times)
    return {
        "step_s": mean, "step_cpu_s": t.cpu, "step_s_median": statistics.median(times), "step_s_min": min(times), "steps": len(times),
        "samples_per_step": samples_per_step, "videos_per_s": samples_per_step / mean,
        "host_peak_mb": _host_peak_mb(), "device_peak_mb": _device_peak_mb(device), **extra,
    }


# ---------------------------------------------------------------------------------------------------
# Training steps (the bodies of train.py's steps)
# ---------------------------------------------------------------------------------------------------


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

    _reset_device_peak(device)
    times = time_steps(step, steps, warmup, device)
    return _step_record(times, sizes.batch_normal + sizes.batch_abnormal, device)


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

    _reset_device_peak(device)
    times = time_steps(step, steps, warmup, device)
    record = _step_record(times, sizes.batch_normal + sizes.batch_abnormal, device)

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

    _reset_device_peak(device)
    times = time_steps(step, steps, warmup, device)
    per_expert = sizes.expert_batch_normal + sizes.expert_batch_abnormal
    return _step_record(times, E * per_expert, device, per_expert_batch=per_expert, n_experts=E)


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

    _reset_device_peak(device)
    times = time_steps(step, steps, warmup, device)
    return _step_record(times, sizes.batch_normal + sizes.batch_abnormal, device)


# ---------------------------------------------------------------------------------------------------
# Test-set scoring
# ---------------------------------------------------------------------------------------------------

FEATURE_SOURCES = ("auto", "mmap", "memory")


class TestSet:
    """The synthetic test set, one float32 array [C, T, D] per video (2.8 GB at paper size), read one at a time.

    source "mmap": one .npy file per video in a folder, memory-mapped, read once and unmapped when its video is
    scored, as `data.layouts.FeatureDataset.load` reads real features: the process never holds more than one
    video's features. "memory": every video in host memory (pinned on CUDA, so that the copies to the device
    run asynchronously; session 1's setting). `load(i)` gives video i as a host tensor [C, T, D].
    """

    def __init__(self, source: str, lengths: tuple[int, ...], videos: list[torch.Tensor] | None = None,
                 folder: Path | None = None, owns_folder: bool = False) -> None:
        self.source, self.lengths, self.videos, self.folder = source, lengths, videos, folder
        self._owns_folder = owns_folder

    @classmethod
    def synthetic(cls, sizes: BenchSizes, device: torch.device, gen: torch.Generator, source: str,
                  folder: str | Path | None = None) -> "TestSet":
        """Random features of the lengths `sizes.test_lengths` (on CUDA drawn on the GPU, much faster)."""
        lengths = tuple(sizes.test_lengths)
        if source == "memory":
            if device.type != "cuda":
                return cls(source, lengths, [torch.randn(sizes.crops, T, sizes.input_dim, generator=gen)
                                             for T in lengths])
            cuda_gen = torch.Generator(device).manual_seed(int(torch.randint(2**31, (1,), generator=gen)))
            videos = []
            for T in lengths:
                x = torch.empty(sizes.crops, T, sizes.input_dim, pin_memory=True)
                videos.append(x.copy_(torch.randn(x.shape, device=device, generator=cuda_gen)))
            return cls(source, lengths, videos)
        if source != "mmap":
            raise ValueError(f"unknown feature source {source!r}; expected one of {', '.join(FEATURE_SOURCES)}")
        owns = folder is None
        path = Path(folder) if folder is not None else Path(tempfile.mkdtemp(prefix="gsmoe-bench-test-set-"))
        path.mkdir(parents=True, exist_ok=True)
        for i, T in enumerate(lengths):
            np.save(path / f"{i:04d}.npy", torch.randn(sizes.crops, T, sizes.input_dim, generator=gen).numpy())
        return cls(source, lengths, folder=path, owns_folder=owns)

    @classmethod
    def open(cls, folder: str | Path, videos: list[int] | None = None) -> "TestSet":
        """The memory-mapped test set a `synthetic(..., "mmap")` call wrote (`videos`: a subset, by index)."""
        files = sorted(Path(folder).glob("*.npy"))
        if not files:
            raise FileNotFoundError(f"{folder}: no test-set .npy files (written by TestSet.synthetic)")
        if videos is not None:
            files = [files[i] for i in videos]
        lengths = tuple(int(np.load(f, mmap_mode="r").shape[1]) for f in files)
        ts = cls("mmap", lengths, folder=Path(folder))
        ts._files = files
        return ts

    def __len__(self) -> int:
        return len(self.lengths)

    def load(self, i: int) -> torch.Tensor:
        if self.videos is not None:
            return self.videos[i]
        files = getattr(self, "_files", None) or sorted(self.folder.glob("*.npy"))
        self._files = files
        mapped = np.load(files[i], mmap_mode="r")  # [C, T, D], nothing read yet
        x = torch.from_numpy(np.array(mapped))  # read once; the map is closed when `mapped` goes
        del mapped
        return x

    def close(self) -> None:
        """Remove the folder of a memory-mapped test set this object created."""
        if self._owns_folder and self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self._owns_folder = False


def _video(videos: Sequence[torch.Tensor] | TestSet, i: int) -> torch.Tensor:
    return videos.load(i) if isinstance(videos, TestSet) else videos[i]


def score_test_set(score_video: Callable[[torch.Tensor], torch.Tensor], videos: Sequence[torch.Tensor] | TestSet,
                   device: torch.device) -> tuple[list[np.ndarray], float]:
    """Score every video in order: (scores [T] per video on the host, seconds from host features to host scores).

    score_video(x [C, T, D] on the device) -> [T]. Results stay on the device until every video is done.
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = [score_video(_video(videos, i).to(device, non_blocking=True)) for i in range(len(videos))]
        lengths = [len(s) for s in out]
        flat = torch.cat(out).float().cpu().numpy()  # one read-back (synchronises)
    seconds = time.perf_counter() - t0
    return list(np.split(flat, np.cumsum(lengths)[:-1])), seconds


def score_interleaved(functions: dict[str, Callable[[torch.Tensor], torch.Tensor]],
                      videos: Sequence[torch.Tensor] | TestSet) -> dict[str, dict[str, Any]]:
    """CPU only: every video scored by each function in turn, each timed on its own (wall and CPU seconds).

    On a machine whose speed drifts from minute to minute, this compares the functions on the same minutes;
    each function's time includes reading its copy of the video. mode -> {"scores", "total_s", "cpu_s"}.
    """
    out = {mode: {"scores": [], "total_s": 0.0, "cpu_s": 0.0} for mode in functions}
    with torch.inference_mode():
        for i in range(len(videos)):
            for mode, fn in functions.items():
                wall0, cpu0 = time.perf_counter(), time.process_time()
                out[mode]["scores"].append(fn(_video(videos, i)).float().numpy())
                out[mode]["cpu_s"] += time.process_time() - cpu0
                out[mode]["total_s"] += time.perf_counter() - wall0
    return out


def scoring_functions(sizes: BenchSizes, device: torch.device, amp: str) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """mode -> score_video(x [C, T, D] on the device) -> [T], for every mode of SCORE_MODES (fresh random weights)."""
    encoder = sizes.encoder().to(device).eval()
    full = GSMoEModel(encoder, sizes.experts(), sizes.gate()).to(device).eval()
    full_mean = GSMoEModel(full.encoder, full.experts, full.gate, crops="mean").eval()  # same weights

    def per_crop(x: torch.Tensor) -> torch.Tensor:  # x [C, T, D]
        with autocast(device, amp):
            return torch.stack([encoder(x[c : c + 1]).scores[0] for c in range(x.shape[0])]).float().mean(0)

    def all_crops(x: torch.Tensor) -> torch.Tensor:
        with autocast(device, amp):
            return encoder(x[None]).scores[0].float()

    def gsmoe(x: torch.Tensor) -> torch.Tensor:
        with autocast(device, amp):
            return full(x[None]).scores[0].float()

    def gsmoe_mean(x: torch.Tensor) -> torch.Tensor:
        with autocast(device, amp):
            return full_mean(x[None]).scores[0].float()

    return {"urdmu_per_crop": per_crop, "urdmu_all_crops": all_crops, "gsmoe": gsmoe, "gsmoe_mean": gsmoe_mean}


def bench_scoring(sizes: BenchSizes, device: torch.device, amp: str, warmup: int, gen: torch.Generator,
                  modes: tuple[str, ...] = SCORE_MODES, test_set: TestSet | None = None,
                  interleave: bool | None = None) -> dict[str, Any]:
    """Score the test set with each mode. interleave (default: on the CPU): `score_interleaved`; on CUDA each
    mode scores the whole set in turn, with no host synchronisation per video."""
    own = test_set is None
    videos = test_set or TestSet.synthetic(sizes, device, gen, "memory" if device.type == "cuda" else "mmap")
    interleave = device.type == "cpu" if interleave is None else interleave
    if interleave and device.type != "cpu":
        raise ValueError("interleaved scoring times each video on the host: CPU only")
    try:
        functions = {mode: fn for mode, fn in scoring_functions(sizes, device, amp).items() if mode in modes}
        snippets = sum(videos.lengths)
        by_length = sorted(range(len(videos)), key=lambda i: videos.lengths[i])
        warm = [videos.load(i) for i in by_length[len(videos) // 2 : len(videos) // 2 + warmup]]  # mid-length
        for fn in functions.values():
            if warm:
                score_test_set(fn, warm, device)
        timed: dict[str, dict[str, Any]] = {}
        if interleave:
            timed = score_interleaved(functions, videos)
        else:
            for mode, fn in functions.items():
                _reset_device_peak(device)
                cpu0 = time.process_time()
                scores, seconds = score_test_set(fn, videos, device)
                # all threads: on a shared machine wall time overstates the work
                timed[mode] = {"scores": scores, "total_s": seconds, "cpu_s": time.process_time() - cpu0,
                               "device_peak_mb": _device_peak_mb(device)}
        results: dict[str, Any] = {}
        for mode, t in timed.items():
            if [len(s) for s in t["scores"]] != list(videos.lengths):
                raise RuntimeError(f"scoring mode {mode}: got {len(t['scores'])} videos of the wrong lengths")
            results[f"score_{mode}"] = {
                "total_s": t["total_s"], "cpu_s": t["cpu_s"], "snippets_per_s": snippets / t["total_s"],
                "videos": len(videos), "snippets": snippets, "crops": sizes.crops, "features": videos.source,
                "interleaved": interleave, "host_peak_mb": _host_peak_mb(),
                "device_peak_mb": t.get("device_peak_mb"),
            }
        for mode in ("gsmoe", "gsmoe_mean"):
            if "urdmu_all_crops" in modes and mode in modes:
                r, base = results[f"score_{mode}"], results["score_urdmu_all_crops"]
                r["vs_urdmu_all_crops"] = r["total_s"] / base["total_s"]
                r["vs_urdmu_all_crops_cpu"] = r["cpu_s"] / base["cpu_s"]
        return results
    finally:
        if own:
            videos.close()


# ---------------------------------------------------------------------------------------------------
# Peak memory of scoring, one fresh process per measurement
# ---------------------------------------------------------------------------------------------------

MEMORY_MODES = ("urdmu_all_crops", "gsmoe")  # measured by default (any of SCORE_MODES can be asked for)
MEMORY_SETS = ("test_set", "longest_video")


def _proc_status_mb(field: str) -> float | None:
    """A memory field of /proc/self/status (VmRSS, VmHWM, RssAnon, RssFile) in MB; None off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    return None


def _rss_mb() -> float:
    """Resident memory of this process now (Linux /proc; elsewhere the peak so far, an upper bound)."""
    now = _proc_status_mb("VmRSS")
    return _host_peak_mb() if now is None else now


def _reset_peak_rss() -> bool:
    """Start a new peak (VmHWM) from the current resident memory (Linux >= 4.0); False where impossible.

    Why not getrusage alone: after fork + exec a child's ru_maxrss starts at its parent's resident memory,
    so a probe started by a large process would report the parent's size.
    """
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _proc_status_mb("VmHWM") is not None
    except OSError:
        return False


def memory_probe(spec: dict[str, Any]) -> dict[str, Any]:
    """Score a memory-mapped test set with one mode in THIS process and report its memory (run it in a fresh one).

    spec: mode, folder (a `TestSet.synthetic(..., "mmap")` folder), videos (indices or None), small, device,
    amp, seed, threads. Host: the resident memory once the model is built (`baseline_mb`), the peak while
    scoring (`peak_mb`: VmHWM reset at the baseline, Linux; elsewhere getrusage's, which includes everything
    before), and `beyond_mb` = peak - baseline, the memory scoring needs beyond the process and the model. The
    features are read one video at a time, so the video in hand (its copy, and its file pages while they are
    mapped) is part of beyond_mb.
    Device: torch.cuda.max_memory_allocated during scoring, and its baseline (the weights).
    """
    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    device = torch.device(spec["device"])
    runs.seed_everything(int(spec.get("seed", 0)))
    sizes = BenchSizes.small() if spec.get("small") else BenchSizes()
    fn = scoring_functions(sizes, device, spec.get("amp", "none"))[spec["mode"]]
    videos = TestSet.open(spec["folder"], spec.get("videos"))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        device_base = torch.cuda.memory_allocated(device) / 2**20
        torch.cuda.reset_peak_memory_stats(device)
    baseline, peak_before = _rss_mb(), _host_peak_mb()
    fresh_peak = _reset_peak_rss()
    _, seconds = score_test_set(fn, videos, device)
    peak = _proc_status_mb("VmHWM") if fresh_peak else _host_peak_mb()
    return {"mode": spec["mode"], "videos": len(videos), "snippets": sum(videos.lengths), "max_T": max(videos.lengths),
            "baseline_mb": baseline, "peak_mb": peak, "beyond_mb": max(0.0, peak - baseline),
            "peak_source": "VmHWM" if fresh_peak else "getrusage (includes the start-up)",
            "peak_before_scoring_mb": peak_before, "file_pages_after_mb": _proc_status_mb("RssFile"),
            "seconds": seconds,
            "device_peak_mb": _device_peak_mb(device),
            "device_baseline_mb": device_base if device.type == "cuda" else None}


def bench_memory(sizes: BenchSizes, device: torch.device, amp: str, gen: torch.Generator, seed: int,
                 modes: tuple[str, ...] = MEMORY_MODES, test_set: TestSet | None = None,
                 small: bool = False) -> dict[str, Any]:
    """Peak memory of scoring the test set and its longest video, per mode, each in a fresh python process."""
    own = test_set is None
    videos = test_set or TestSet.synthetic(sizes, device, gen, "mmap")
    if videos.source != "mmap":
        raise ValueError("the memory stage reads a memory-mapped test set (features 'mmap')")
    longest = max(range(len(videos)), key=lambda i: videos.lengths[i])
    results: dict[str, Any] = {}
    try:
        for mode in modes:
            for which, indices in (("test_set", None), ("longest_video", [longest])):
                spec = {"mode": mode, "folder": str(videos.folder), "videos": indices, "small": small,
                        "device": str(device), "amp": amp, "seed": seed, "threads": torch.get_num_threads()}
                cmd = [sys.executable, "-m", "gsmoe_lib.bench", "--memory-probe", json.dumps(spec)]
                proc = subprocess.run(cmd, capture_output=True, text=True, env=_child_env())
                lines = proc.stdout.strip().splitlines()
                if proc.returncode != 0 or not lines:
                    raise RuntimeError(f"memory probe {mode} on the {which.replace('_', ' ')} failed "
                                       f"(exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
                results[f"memory_{mode}_{which}"] = json.loads(lines[-1]) | {
                    "features_mb": sum(videos.lengths) * sizes.crops * sizes.input_dim * 4 / 2**20
                    if which == "test_set" else videos.lengths[longest] * sizes.crops * sizes.input_dim * 4 / 2**20}
    finally:
        if own:
            videos.close()
    return results


def _child_env() -> dict[str, str]:
    """The environment of a probe: this one, with the project importable whatever the working directory."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


# ---------------------------------------------------------------------------------------------------
# The whole benchmark
# ---------------------------------------------------------------------------------------------------


def run_benchmark(device: str = "cpu", amp: str = "none", tf32: bool = False, steps: int = 5, warmup: int = 2,
                  stages: tuple[str, ...] = STAGES, small: bool = False, seed: int = 0,
                  sizes: BenchSizes | None = None, score_modes: tuple[str, ...] = SCORE_MODES,
                  features: str = "auto", memory_modes: tuple[str, ...] = MEMORY_MODES,
                  interleave: bool | None = None) -> dict[str, Any]:
    """Run the chosen stages and return the JSON-ready record (environment, settings, results).

    features: where the scoring stage reads the test set ("auto": "mmap" on the CPU, pinned "memory" on CUDA;
    the memory stage always reads it memory-mapped). interleave: time the scoring modes video by video
    (default on the CPU; `score_interleaved`).
    """
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise ValueError(f"unknown benchmark stages {unknown}; expected a subset of {', '.join(STAGES)}")
    if amp not in ("none", "bf16"):
        raise ValueError(f"unknown amp mode {amp!r}; expected 'none' or 'bf16'")
    bad_modes = [m for m in score_modes if m not in SCORE_MODES]
    if bad_modes or not score_modes:
        raise ValueError(f"unknown scoring modes {bad_modes or '(none)'}; "
                         f"expected a subset of {', '.join(SCORE_MODES)}")
    bad_memory = [m for m in memory_modes if m not in SCORE_MODES]
    if bad_memory or not memory_modes:
        raise ValueError(f"unknown memory modes {bad_memory or '(none)'}; expected a subset of {', '.join(SCORE_MODES)}")
    if features not in FEATURE_SOURCES:
        raise ValueError(f"unknown feature source {features!r}; expected one of {', '.join(FEATURE_SOURCES)}")
    if steps < 1 or warmup < 0:
        raise ValueError(f"need steps >= 1 and warmup >= 0, got steps={steps}, warmup={warmup}")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: CUDA is not available on this machine")
    sizes = sizes or (BenchSizes.small() if small else BenchSizes.paper())
    runs.seed_everything(seed)
    gen = torch.Generator().manual_seed(seed)
    record: dict[str, Any] = {
        "environment": runs.environment_record(seed, device),
        "settings": {"device": device, "amp": amp, "tf32": tf32, "steps": steps, "warmup": warmup,
                     "stages": list(stages), "score_modes": list(score_modes), "small": small,
                     "features": features, "memory_modes": list(memory_modes), "interleave": interleave,
                     "memory_limits": asdict(current_limits())
                     | {"snippets_per_pass": current_limits().snippets_per_pass(dev)},
                     "sizes": asdict(replace(sizes, test_lengths=()))
                     | {"test_videos": len(sizes.test_lengths), "test_snippets": sum(sizes.test_lengths)}},
        "load_average_before": list(os.getloadavg()),
        "official_urdmu": OFFICIAL_URDMU,
        "results": {},
    }
    results = record["results"]
    source = ("memory" if dev.type == "cuda" else "mmap") if features == "auto" else features
    test_sets: dict[str, TestSet] = {}  # by source, written once for the scoring and memory stages

    def test_set(kind: str) -> TestSet:
        if kind not in test_sets:
            test_sets[kind] = TestSet.synthetic(sizes, dev, gen, kind)
        return test_sets[kind]

    try:
        with tf32_matmuls(tf32):
            for stage in stages:
                if stage == "encoder":
                    results["encoder"] = bench_encoder(sizes, dev, amp, steps, warmup, gen)
                elif stage == "tgs":
                    results["tgs"], results["tgs_pseudo_labels"] = bench_tgs(sizes, dev, amp, steps, warmup, gen)
                elif stage == "experts":
                    results["experts"] = bench_experts(sizes, dev, amp, steps, warmup, gen)
                elif stage == "gate":
                    results["gate"] = bench_gate(sizes, dev, amp, steps, warmup, gen)
                elif stage == "score":
                    results.update(bench_scoring(sizes, dev, amp, warmup, gen, score_modes, test_set(source),
                                                 interleave))
                else:
                    results.update(bench_memory(sizes, dev, amp, gen, seed, memory_modes, test_set("mmap"), small))
    finally:
        for ts in test_sets.values():
            ts.close()
    record["load_average_after"] = list(os.getloadavg())
    return record


def format_table(record: dict[str, Any]) -> str:
    """The results as a readable table (times in seconds or milliseconds, throughput, peak memory)."""
    s, env = record["settings"], record["environment"]
    lines = [
        f"gsmoe bench  device={s['device']} ({env.get('gpu') or env.get('cpu')}, {env.get('cpu_count')} cores)  "
        f"amp={s['amp']} tf32={s['tf32']} small={s['small']}  torch {env.get('torch')}",
        f"load average before {record['load_average_before'][0]:.2f}, after {record['load_average_after'][0]:.2f}",
        f"{'measurement':28s} {'time':>12s} {'throughput':>22s} {'host peak':>11s} {'device peak':>12s}",
    ]

    def mem(r: dict[str, Any]) -> str:
        dev = r.get("device_peak_mb")
        return f"{r['host_peak_mb']:9.0f}MB {'' if dev is None else f'{dev:10.0f}MB'}"

    for name, r in record["results"].items():
        if "step_s" in r:
            lines.append(f"{name + ' step':28s} {r['step_s'] * 1000:10.1f}ms {r['videos_per_s']:14.1f} videos/s "
                         f"{mem(r)}")
        elif "total_s" in r:
            extra = (f"  ({r['vs_urdmu_all_crops']:.2f}x UR-DMU all crops, {r['vs_urdmu_all_crops_cpu']:.2f}x "
                     "in CPU time)" if "vs_urdmu_all_crops" in r else "")
            lines.append(f"{name:28s} {r['total_s']:11.2f}s {r['snippets_per_s']:12.0f} snippets/s "
                         f"{mem(r)}{extra}")
        elif name.startswith("memory_"):
            dev = r.get("device_peak_mb")
            lines.append(f"{name:42s} beyond {r['beyond_mb']:7.0f}MB (peak {r['peak_mb']:.0f}, baseline "
                         f"{r['baseline_mb']:.0f}, features {r['features_mb']:.0f})"
                         + ("" if dev is None else f"  device peak {dev:.0f}MB") + f"  {r['seconds']:.1f}s")
        elif name == "tgs_pseudo_labels":
            for key in ("tgs_batch", "experts_batch_self"):
                p = r[key]
                lines.append(f"{'pseudo-labels ' + key:28s} {p['call_s'] * 1000:10.1f}ms {p['curves']:14d} curves")
            lines.append(f"{'  share of a TGS step':28s} {r['fraction_of_tgs_step'] * 100:10.1f}%")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--amp", choices=("none", "bf16"), default="none", help="autocast precision")
    parser.add_argument("--tf32", action="store_true", help="allow TF32 matmuls and convolutions (CUDA)")
    parser.add_argument("--steps", type=int, default=5, help="timed training steps per stage")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps (and warm-up videos) first")
    parser.add_argument("--stages", default=",".join(STAGES), help="comma-separated subset of " + ",".join(STAGES))
    parser.add_argument("--score-modes", default=",".join(SCORE_MODES),
                        help="comma-separated subset of " + ",".join(SCORE_MODES) + " (the score stage)")
    parser.add_argument("--features", choices=FEATURE_SOURCES, default="auto",
                        help="scoring reads the test set memory-mapped per video or from host memory "
                             "(auto: mmap on the CPU, pinned memory on CUDA)")
    parser.add_argument("--memory-modes", default=",".join(MEMORY_MODES),
                        help="scoring modes whose peak memory the memory stage measures (one process each)")
    parser.add_argument("--no-interleave", action="store_true",
                        help="on the CPU, score the whole set with one mode after the other (not video by video)")
    parser.add_argument("--memory-probe", default=None, help=argparse.SUPPRESS)  # internal: one memory measurement
    parser.add_argument("--small", action="store_true", help="tiny sizes that run in seconds (the tests use it)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--json", default=None, help="write the record to this JSON file")


def run(args: argparse.Namespace) -> int:
    stages = tuple(s for s in args.stages.split(",") if s)
    if args.threads is not None:
        torch.set_num_threads(args.threads)  # before the environment record, which reports it
    if args.memory_probe:  # a child of the memory stage: one JSON line on stdout
        print(json.dumps(memory_probe(json.loads(args.memory_probe))))
        return 0
    modes = tuple(m for m in args.score_modes.split(",") if m)  # a bad value raises: cli.main reports it
    memory_modes = tuple(m for m in args.memory_modes.split(",") if m)
    record = run_benchmark(args.device, args.amp, args.tf32, args.steps, args.warmup, stages, args.small, args.seed,
                           score_modes=modes, features=args.features, memory_modes=memory_modes,
                           interleave=False if args.no_interleave else None)
    print(format_table(record))
    if args.json:
        runs.write_json(args.json, record)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":  # `python -m gsmoe_lib.bench`: without the CLI's other subcommands' imports
    _parser = argparse.ArgumentParser(prog="gsmoe bench", description=__doc__.splitlines()[0])
    add_arguments(_parser)
    sys.exit(run(_parser.parse_args()))
