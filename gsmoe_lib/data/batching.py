"""The training set in memory: every training video pooled once to S segments, and the batch sampler.

Pooling is UR-DMU's `process_feat`: the T snippets are cut at `np.linspace(0, T, S+1).astype(int)`
and segment i is the mean of snippets [b_i, b_{i+1}); when that window is empty (T < S, or rounding)
the segment is the single snippet x[b_i]. Short videos are therefore repeated, long ones averaged.

Crops, two ways (`crops=`):
- "independent": each crop is a training sample of its own, as UR-DMU trains (N = videos x C,
  features [N, S, D]); `video_index` maps a sample back to its video.
- "axis": crops stay together, features [N, C, S, D] with N = videos, for models that average scores
  over crops during training.

Batches follow UR-DMU: `batch_normal` normal samples first, then `batch_abnormal` abnormal ones.
Each side is drawn without replacement from a fresh permutation, and a new permutation starts when
fewer than a batch remain (UR-DMU's DataLoaders with drop_last); only a side with fewer samples than
its batch half is drawn with replacement.

The test split is never pooled: it is scored video by video at full length (`layouts.FeatureDataset.load`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from gsmoe_lib.data.layouts import FeatureDataset

CROP_MODES = ("independent", "axis")


def segment_bounds(n_snippets: int, n_segments: int) -> np.ndarray:
    """UR-DMU's boundaries [S+1]: linspace(0, T, S+1) truncated to int."""
    return np.linspace(0, n_snippets, n_segments + 1).astype(int)


def pool_segments(x: np.ndarray | torch.Tensor, n_segments: int) -> np.ndarray | torch.Tensor:
    """Mean-pool [..., T, D] to [..., S, D] as UR-DMU's process_feat (see the module docstring).

    numpy in (memory-mapped is fine), numpy out; torch in, torch out on the input's device. The output
    keeps a float64 input's dtype and is float32 otherwise (also the precision of the sums).
    """
    n = x.shape[-2]
    if n == 0:
        raise ValueError("cannot pool a video with T = 0 snippets")
    bounds = segment_bounds(n, n_segments)  # [S+1]
    starts = bounds[:-1]  # [S]
    counts = np.diff(bounds)  # [S]; 0 where the window is empty
    # One pass over the snippets: each snippet t is added to the segment i with b_i <= t < b_{i+1}.
    segment_of = np.searchsorted(bounds, np.arange(n), side="right") - 1  # [T]
    is_numpy = not isinstance(x, torch.Tensor)
    if is_numpy:
        dtype = np.float64 if x.dtype == np.float64 else np.float32
        xt = torch.from_numpy(np.array(x, dtype=dtype))  # a copy: reads a memory map once
    else:
        xt = x if x.dtype == torch.float64 else x.to(torch.float32)
    sums = torch.zeros((*xt.shape[:-2], n_segments, xt.shape[-1]), dtype=xt.dtype, device=xt.device)
    sums.index_add_(-2, torch.as_tensor(segment_of, device=xt.device), xt)  # [..., S, D]
    out = sums / torch.as_tensor(np.maximum(counts, 1), dtype=xt.dtype, device=xt.device)[:, None]
    empty = np.flatnonzero(counts == 0)
    if len(empty):  # an empty window takes the one snippet at its start
        out[..., empty, :] = xt[..., starts[empty], :]
    return out.numpy() if is_numpy else out


@dataclass
class TrainSet:
    """All training samples pooled to S segments, with their labels.

    features: [N, S, D] ("independent") or [N, C, S, D] ("axis"); labels: [N] float32 (0 / 1);
    class_index: [N, K] float32 multi-hot over `classes`; video_index: [N] int64 into `video_names`.
    """

    features: torch.Tensor
    labels: torch.Tensor
    class_index: torch.Tensor
    video_index: torch.Tensor
    classes: tuple[str, ...]
    video_names: list[str]
    crops: str

    @classmethod
    def from_dataset(
        cls,
        ds: FeatureDataset,
        n_segments: int = 200,
        crops: str = "independent",
        dtype: torch.dtype = torch.float32,
        progress: bool = True,
    ) -> TrainSet:
        """Pool every video of `ds` once (one progress bar over videos)."""
        if crops not in CROP_MODES:
            raise ValueError(f"unknown crops mode {crops!r}; expected one of {', '.join(CROP_MODES)}")
        n_videos, n_crops = len(ds), ds.n_crops
        shape = (n_videos * n_crops, n_segments, ds.feature_dim) if crops == "independent" else (
            n_videos, n_crops, n_segments, ds.feature_dim)
        features = torch.empty(shape, dtype=dtype)
        for i in tqdm(range(n_videos), desc=f"pooling {ds.dataset} {ds.split}", unit="video", disable=not progress):
            for c, arr in enumerate(ds.crop_arrays(i)):  # arr: [T, D], memory-mapped
                if arr.shape[-1] != ds.feature_dim:
                    raise ValueError(
                        f"video {ds.videos[i].name}: crop {c} has D={arr.shape[-1]}, expected {ds.feature_dim}"
                    )
                pooled = torch.from_numpy(pool_segments(arr, n_segments))  # [S, D]
                if crops == "independent":
                    features[i * n_crops + c] = pooled
                else:
                    features[i, c] = pooled
        labels = torch.tensor([v.label for v in ds.videos], dtype=torch.float32)  # [V]
        class_index = torch.zeros(n_videos, len(ds.classes), dtype=torch.float32)  # [V, K]
        column = {name: k for k, name in enumerate(ds.classes)}
        for i, v in enumerate(ds.videos):
            for name in v.classes:
                class_index[i, column[name]] = 1.0
        video_index = torch.arange(n_videos)
        if crops == "independent":  # sample i * C + c is crop c of video i
            video_index = video_index.repeat_interleave(n_crops)
            labels, class_index = labels[video_index], class_index[video_index]
        return cls(features, labels, class_index, video_index, tuple(ds.classes), [v.name for v in ds.videos], crops)

    def __len__(self) -> int:
        return self.features.shape[0]

    def sampler(
        self,
        batch_normal: int = 64,
        batch_abnormal: int = 64,
        generator: torch.Generator | None = None,
        among: torch.Tensor | None = None,
    ) -> Iterator[torch.Tensor]:
        """Endless batches of sample indices [batch_normal + batch_abnormal], normal half first.

        `among` (indices or a boolean mask over samples) restricts drawing to a subset, e.g. one class's
        videos plus the normal ones for a class expert.
        """
        allowed = torch.ones(len(self), dtype=torch.bool)
        if among is not None:
            allowed = torch.zeros(len(self), dtype=torch.bool)
            allowed[among] = True
        normal = torch.nonzero(allowed & (self.labels == 0)).flatten()
        abnormal = torch.nonzero(allowed & (self.labels == 1)).flatten()
        sides = [_side_stream(normal, batch_normal, generator, "normal"),
                 _side_stream(abnormal, batch_abnormal, generator, "abnormal")]
        while True:
            yield torch.cat([next(s) for s in sides])


def _side_stream(
    pool: torch.Tensor, batch: int, generator: torch.Generator | None, what: str
) -> Iterator[torch.Tensor]:
    """Batches of `batch` indices from `pool`: permutations without replacement, or with replacement
    when the pool is smaller than the batch."""
    if batch == 0:
        while True:
            yield pool[:0]
    if len(pool) == 0:
        raise ValueError(f"no {what} samples to draw a batch of {batch} from")
    if len(pool) < batch:
        while True:
            yield pool[torch.randint(len(pool), (batch,), generator=generator)]
    while True:
        order = pool[torch.randperm(len(pool), generator=generator)]
        for start in range(0, len(order) - batch + 1, batch):
            yield order[start:start + batch]
