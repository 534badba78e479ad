"""Where GS-MoE's scoring time goes, measured: the `breakdown` stage of `gsmoe bench speed`.

The arithmetic (docs/studies/speed.md, "Where the time goes") says the whole GS-MoE with crops "each" costs
about 3.15x UR-DMU in floating-point operations over the UCF-Crime test set. This stage measures what each
part costs: for a few video lengths T, one scoring pass (as many crops as `MemoryLimits.pass_snippets` sends
through together, at most C) goes through the encoder, then the experts on its features, then the gate on
both, each timed on its own (best of `repeats` calls, wall and CPU seconds) and each one's operations counted
(torch's FlopCounterMode: the matrix products and, with `_ATTENTION_FLOPS`, the CPU's fused attention kernel,
which torch does not count). Operations per second then show which part runs slower per operation than the
arithmetic assumes. Crops go through the encoder, experts and gate exactly as in `GSMoEModel` with crops
"each"; the averaging over crops is left out (negligible).
"""

from __future__ import annotations

import time
from typing import Any, Callable

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from gsmoe_lib.bench.sizes import BenchSizes
from gsmoe_lib.models.blocks import current_limits

PARTS = ("encoder", "experts", "gate")
LENGTHS = (150, 1000, 6749)  # a typical, a long and the longest UCF-Crime test video (snippets)
SMALL_LENGTHS = (9, 64)

# torch's counter knows the CUDA attention kernels; the CPU's flash kernel: 4 x dh operations per score.
_ATTENTION_FLOPS = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu:
        lambda q, k, v, *args, out_shape=None, **kwargs: sdpa_flop_count(q, k, v),
}


def _best_seconds(fn: Callable[[], Any], repeats: int, device: torch.device) -> tuple[float, float]:
    """(wall, CPU) seconds of the fastest of `repeats` calls, after one untimed call."""
    fn()
    best = (float("inf"), float("inf"))
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        wall0, cpu0 = time.perf_counter(), time.process_time()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, (time.perf_counter() - wall0, time.process_time() - cpu0))
    return best


def bench_breakdown(sizes: BenchSizes, device: torch.device, gen: torch.Generator,
                    lengths: tuple[int, ...] = LENGTHS, repeats: int = 3) -> dict[str, Any]:
    """For each T: crops per pass, and per part its GFLOP, wall and CPU seconds, GFLOP per wall second; then the
    whole GS-MoE against the encoder alone in operations and in time ("gsmoe_vs_encoder_flop" / "_time")."""
    encoder, experts, gate = (m.to(device).eval() for m in (sizes.encoder(), sizes.experts(), sizes.gate()))
    out: dict[str, Any] = {}
    with torch.inference_mode():
        for T in lengths:
            crops = min(sizes.crops, max(1, current_limits().snippets_per_pass(device) // T))
            x = torch.randn(crops, T, sizes.input_dim, generator=gen).to(device)  # [crops, T, D]: one pass
            features = encoder(x, training_extras=False).features  # [crops, T, F]
            logits = experts.logits(features, in_groups=True)  # [crops, T, E], as GSMoEModel scores
            calls = {"encoder": lambda: encoder(x, training_extras=False),
                     "experts": lambda: experts.logits(features, in_groups=True),
                     "gate": lambda: gate(logits, features)}
            row: dict[str, Any] = {"crops": crops}
            for part, call in calls.items():
                with FlopCounterMode(display=False, custom_mapping=_ATTENTION_FLOPS) as counter:
                    call()
                wall, cpu = _best_seconds(call, repeats, device)
                gflop = counter.get_total_flops() / 1e9
                row[part] = {"gflop": gflop, "wall_s": wall, "cpu_s": cpu, "gflop_per_s": gflop / wall}
            row["gsmoe_vs_encoder_flop"] = sum(row[p]["gflop"] for p in PARTS) / row["encoder"]["gflop"]
            row["gsmoe_vs_encoder_time"] = sum(row[p]["wall_s"] for p in PARTS) / row["encoder"]["wall_s"]
            out[f"T{T}"] = row
    return {"breakdown": out}


def format_breakdown(result: dict[str, Any]) -> list[str]:
    """One line per length and part: GFLOP, milliseconds, GFLOP/s; then GS-MoE / encoder in operations and time."""
    lines = []
    for name, row in result.items():
        parts = "  ".join(f"{p} {row[p]['gflop']:.1f} GFLOP {row[p]['wall_s'] * 1000:.0f} ms "
                          f"({row[p]['gflop_per_s']:.0f} GFLOP/s)" for p in PARTS)
        lines.append(f"breakdown {name} x{row['crops']} crops  {parts}  GS-MoE/encoder: "
                     f"{row['gsmoe_vs_encoder_flop']:.2f}x operations, {row['gsmoe_vs_encoder_time']:.2f}x time")
    return lines
