"""Scoring a UCF-Crime-sized test set, the `score` stage of `gsmoe bench speed`.

The 290 UCF-Crime test videos with their real lengths (T = floor(frames / 16), 69,364 snippets), 10 crops,
features [C, T, D] read per video from memory-mapped files (`TestSet`, default on the CPU) or held in
(pinned) host memory (default on CUDA), scored four ways (`SCORE_MODES`, `scoring_functions`):

    urdmu_per_crop   UR-DMU, one crop per forward pass (what the official test script does)
    urdmu_all_crops  UR-DMU, the 10 crops of a video in one pass
    gsmoe            encoder + 13 experts + gate (`models.gsmoe.GSMoEModel`), all crops in one pass,
                     every crop through the experts and the gate (crops="each", the default)
    gsmoe_mean       the same with crops="mean": experts and gate once on crop-averaged features

Videos are never batched together (attention spans the whole video, so padding would change the scores);
the test order is kept; each video is copied to the device once, results stay on the device until the end
(no host synchronisation per video) and are read back once (`score_test_set`). On the CPU the modes are
interleaved video by video (`score_interleaved`), so that a machine whose speed drifts compares them on the
same minutes; their ratio is given in wall and CPU time.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from gsmoe_lib.bench.meters import device_peak_mb, host_peak_mb, reset_device_peak
from gsmoe_lib.bench.sizes import BenchSizes
from gsmoe_lib.device import autocast
from gsmoe_lib.host_memory import release_freed_memory
from gsmoe_lib.models.gsmoe import GSMoEModel

SCORE_MODES = ("urdmu_per_crop", "urdmu_all_crops", "gsmoe", "gsmoe_mean")
FEATURE_SOURCES = ("auto", "mmap", "memory")


class TestSet:
    """The synthetic test set, one float32 array [C, T, D] per video (2.8 GB at paper size), read one at a time.

    source "mmap": one .npy file per video in a folder, memory-mapped, read once and unmapped when its video is
    scored, as `data.layouts.FeatureDataset.load` reads real features: the process never holds more than one
    video's features. "memory": every video in host memory (pinned on CUDA, so that the copies to the device
    run asynchronously; the setting of the first H100 measurement). `load(i)` gives video i as a host tensor [C, T, D].
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
                   device: torch.device, release_memory: bool = True) -> tuple[list[np.ndarray], float]:
    """Score every video in order: (scores [T] per video on the host, seconds from host features to host scores).

    score_video(x [C, T, D] on the device) -> [T]. Results stay on the device until every video is done.
    release_memory: give the host memory a video freed back to the system before the next one, as
    `evaluate.score_dataset` does (`host_memory`); its cost is part of the seconds.
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = []
        for i in range(len(videos)):
            out.append(score_video(_video(videos, i).to(device, non_blocking=True)))
            if release_memory:
                release_freed_memory()  # as evaluate.score_dataset does between videos
        lengths = [len(s) for s in out]
        flat = torch.cat(out).float().cpu().numpy()  # one read-back (synchronises)
    seconds = time.perf_counter() - t0
    return list(np.split(flat, np.cumsum(lengths)[:-1])), seconds


def score_interleaved(functions: dict[str, Callable[[torch.Tensor], torch.Tensor]],
                      videos: Sequence[torch.Tensor] | TestSet, release_memory: bool = True) -> dict[str, dict[str, Any]]:
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
                if release_memory:
                    release_freed_memory()  # as evaluate.score_dataset does; timed with the mode that freed it
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
                  interleave: bool | None = None, release_memory: bool = True) -> dict[str, Any]:
    """Score the test set with each mode. interleave (default: on the CPU): `score_interleaved`; on CUDA each
    mode scores the whole set in turn, with no host synchronisation per video. release_memory: freed host
    memory goes back to the system after every video (`host_memory`), as in `evaluate.score_dataset`."""
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
            timed = score_interleaved(functions, videos, release_memory)
        else:
            for mode, fn in functions.items():
                reset_device_peak(device)
                cpu0 = time.process_time()
                scores, seconds = score_test_set(fn, videos, device, release_memory)
                # all threads: on a shared machine wall time overstates the work
                timed[mode] = {"scores": scores, "total_s": seconds, "cpu_s": time.process_time() - cpu0,
                               "device_peak_mb": device_peak_mb(device)}
        results: dict[str, Any] = {}
        for mode, t in timed.items():
            if [len(s) for s in t["scores"]] != list(videos.lengths):
                raise RuntimeError(f"scoring mode {mode}: got {len(t['scores'])} videos of the wrong lengths")
            results[f"score_{mode}"] = {
                "total_s": t["total_s"], "cpu_s": t["cpu_s"], "snippets_per_s": snippets / t["total_s"],
                "videos": len(videos), "snippets": snippets, "crops": sizes.crops, "features": videos.source,
                "interleaved": interleave, "host_peak_mb": host_peak_mb(),
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

