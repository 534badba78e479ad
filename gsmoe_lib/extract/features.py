"""One video -> its features [T, C, D]: snippets from the decode thread, crops, normalisation, the backbone.

`extract_video` is the one function that runs a backbone over a video; `gsmoe extract`, `gsmoe score VIDEO`,
the notebook and the benchmark all call it. It knows the recipe (crops, normalisation) and a model with
`features(clips [B, 3, 16, 224, 224]) -> [B, D]`, nothing of which backbone that is.

`batch` is the number of clips (snippet x crop) in one forward pass; `amp` is "none" (float32, default) or "bf16"
(autocast on the device; the manifest records it, because the features then differ in the 3rd digit).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from gsmoe_lib.device import AMP_MODES, autocast
from gsmoe_lib.extract.decode import Snippets
from gsmoe_lib.extract.recipes import Recipe, crop_clip, normalise
from gsmoe_lib.host_memory import release_freed_memory

PRECISIONS = AMP_MODES  # "none" (float32) or "bf16": the project's one autocast (gsmoe_lib.device)


@dataclass
class VideoFeatures:
    features: np.ndarray  # float32 [T, C, D]
    frames_decoded: int  # N
    header_frames: int  # what the container's header claims (0: unknown); recorded, never used for T
    fps: float | None
    size: tuple[int, int]  # (W, H) of the source frames
    resized: tuple[int, int]  # (W', H') after the recipe's resize
    crop_names: list[str]  # [C]


def crop_batches(snippets: Iterable[np.ndarray], recipe: Recipe) -> Iterable[tuple[np.ndarray, list[str]]]:
    """Each snippet's crops uint8 [C, 16, 224, 224, 3] and the window names, for uint8 [16, H', W', 3] snippets."""
    windows = None
    for clip in snippets:
        if windows is None:
            windows = recipe.crop_windows(clip.shape[2], clip.shape[1])
        yield crop_clip(clip, windows), [w.name for w in windows]


@torch.inference_mode()
def clip_features(model: nn.Module, crops: np.ndarray, recipe: Recipe, device: str = "cpu", amp: str = "none",
                  batch: int = 10) -> np.ndarray:
    """crops uint8 [S, C, 16, 224, 224, 3] -> float32 [S, C, D], `batch` clips per forward pass."""
    s, c = crops.shape[:2]
    flat = torch.from_numpy(crops.reshape(s * c, *crops.shape[2:]))  # [S*C, 16, 224, 224, 3]
    out = []
    for start in range(0, s * c, batch):
        x = normalise(flat[start:start + batch].to(device), recipe)  # [b, 3, 16, 224, 224]
        with autocast(device, amp):
            out.append(model.features(x).float().cpu())  # [b, D]
    return torch.cat(out).reshape(s, c, -1).numpy()


def extract_video(path: str | Path, model: nn.Module, recipe: Recipe, rule: str, device: str = "cpu",
                  amp: str = "none", batch: int = 10, progress: bool = False) -> VideoFeatures:
    """The features [T, C, D] of one video (see the module docstring); VideoError for bad input."""
    if amp not in PRECISIONS:
        raise ValueError(f"unknown precision {amp!r}; expected one of {', '.join(PRECISIONS)}")
    snippets = Snippets(path, recipe, rule)
    per_snippet: list[np.ndarray] = []  # [C, D] each (copies: a view would keep its whole batch alive)
    names: list[str] = []
    group: list[np.ndarray] = []
    n_crops = recipe.n_crops
    per_pass = max(1, batch // n_crops)  # snippets gathered before a forward pass
    bar = tqdm(desc=Path(path).name, unit="snippet", disable=not progress, leave=False)
    for crops, names in crop_batches(snippets, recipe):
        group.append(crops)
        if len(group) == per_pass:
            per_snippet.extend(f.copy() for f in clip_features(model, np.stack(group), recipe, device, amp, batch))
            bar.update(len(group))
            group = []
            # Frames are allocated on the decode thread and freed on this one: glibc keeps such blocks in the
            # thread arenas, and a long video grew the process by GBs (30 minutes, 10 crops: 24 GB). Handing
            # them back once the process has grown by RELEASE_ABOVE_MB keeps it bounded (host_memory).
            release_freed_memory()
    if group:
        per_snippet.extend(clip_features(model, np.stack(group), recipe, device, amp, batch))
        bar.update(len(group))
    bar.close()
    width, height = snippets.size
    return VideoFeatures(np.stack(per_snippet).astype(np.float32), snippets.frames_decoded, snippets.header_frames,
                         snippets.fps,
                         (width, height), recipe.resized_size(width, height), names)
