"""`pseudo_labels`: the TGS targets ŷ [B, T] of a batch of score curves (no gradient, host-side numpy).

Peaks are detected one video at a time (scipy is 1-D), then the kernels of all peaks of all videos are
computed and rendered together as [K, T] arrays (`kernels._kernels`, `kernels.splat`).
"""

from __future__ import annotations

from dataclasses import fields
from typing import Sequence, TypeVar

import numpy as np
import torch

from gsmoe_lib.tgs.config import TGSConfig
from gsmoe_lib.tgs.kernels import Peaks, _check_finite, _detect, _kernels, _normalise, detection_curve, splat

ArrayOrTensor = TypeVar("ArrayOrTensor", np.ndarray, torch.Tensor)


def pseudo_labels(
    scores: ArrayOrTensor,
    cfg: TGSConfig,
    lengths: Sequence[int] | np.ndarray | torch.Tensor | None = None,
    names: Sequence[str] | None = None,
) -> ArrayOrTensor:
    """TGS pseudo-labels ŷ [B, T] in [0, 1] for a batch of score curves [B, T].

    A torch tensor gives a detached tensor of the same dtype on the same device; numpy gives numpy.
    `lengths[b]` is the number of real snippets of video b (the rest is padding, which gets ŷ = 0 and is
    not looked at). `names` only serve error messages (a non-finite score names the video).
    """
    is_torch = isinstance(scores, torch.Tensor)
    x = scores.detach().to("cpu", torch.float64).numpy() if is_torch else np.asarray(scores, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"pseudo_labels expects scores [B, T], got shape {tuple(x.shape)}")
    B, T = x.shape
    if lengths is None:
        lens = np.full(B, T, dtype=np.int64)
    else:
        lens = np.asarray(lengths.cpu() if isinstance(lengths, torch.Tensor) else lengths, dtype=np.int64)
        if lens.shape != (B,) or (lens < 0).any() or (lens > T).any():
            raise ValueError(f"pseudo_labels: lengths must be {B} integers in [0, {T}], got {lens.tolist()}")
    if names is not None and len(names) != B:
        raise ValueError(f"pseudo_labels: {len(names)} names for {B} videos")

    # Detection, one video at a time on the host (scipy is 1-D).
    found: list[Peaks] = []
    x = x.copy()
    for i in range(B):
        s = x[i, : lens[i]]
        _check_finite(s, f"video {names[i]!r}" if names is not None else f"video {i} of the batch")
        x[i, : lens[i]] = detection_curve(s, cfg)[0]  # kernels below are computed on the same curve
        found.append(_detect(x[i, : lens[i]], cfg))
    peaks = Peaks(*(np.concatenate([getattr(p, k.name) for p in found]) for k in fields(Peaks)))
    video = np.repeat(np.arange(B), [len(p) for p in found])  # [K] which video each peak belongs to

    # Kernels of all peaks of all videos together. Windows end inside each video's real length; padded
    # values are zeroed first so they cannot reach any statistic or mask.
    x = np.where(np.arange(T)[None, :] < lens[:, None], x, 0.0)  # [B, T]
    k = _kernels(x, video, peaks, cfg)
    f = splat(k.G, peaks, k.sigmas, T)  # [K, T]
    owner = (np.arange(B)[:, None] == video[None, :]).astype(np.float64)  # [B, K] one-hot
    y = _normalise(owner @ f, cfg)  # [B, T], normalised Σ_i f_i per video

    if is_torch:
        return torch.from_numpy(y).to(device=scores.device, dtype=scores.dtype)
    in_dtype = np.asarray(scores).dtype
    return y.astype(in_dtype if in_dtype.kind == "f" else np.float64)
