"""How every benchmark reads time and peak memory (the readers the step, scoring and memory stages share).

Time: `time_steps` runs `warmup` untimed calls, then `steps` timed ones. On CUDA each call is bracketed by
CUDA events and the device is synchronised once after the timed region; on the CPU each call is timed with
perf_counter. The host CPU time (all threads) is given beside the wall time: on a shared machine the wall
time overstates the work.
Memory: the peak resident host memory of the process so far (getrusage; cumulative over a run's stages) and
the peak device memory since the last `reset_device_peak` (torch.cuda.max_memory_allocated).
"""

from __future__ import annotations

import resource
import time
from typing import Any, Callable, NamedTuple

import torch


def host_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def reset_device_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def device_peak_mb(device: torch.device) -> float | None:
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

