"""Where the numbers are computed: the one autocast context and the TF32 switch.

Every forward pass of training, scoring and the benchmarks enters `autocast(device, amp)`; nothing else in
the library calls `torch.autocast` (the losses switch it off locally to compute in float32).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

AMP_MODES = ("none", "bf16")


def autocast(device: str | torch.device, amp: str) -> torch.autocast:
    """bf16 autocast on `device` when amp == "bf16", a disabled (no-op) one when "none"; other values are an error."""
    if amp not in AMP_MODES:
        raise ValueError(f"unknown amp mode {amp!r}; expected one of {AMP_MODES}")
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=amp == "bf16")


@contextlib.contextmanager
def tf32_matmuls(enabled: bool) -> Iterator[None]:
    """TF32 matrix products and convolutions on CUDA inside the block; the previous flags are restored."""
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before
