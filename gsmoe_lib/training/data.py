"""The data a pipeline trains on: both splits opened (one directory walk), the training set pooled once.

`load_data(cfg.data, device)` -> `Data(train, test, dataset)`: `train` is a `data.batching.TrainSet` whose
features [N, S, D] (or [N, C, S, D] with crops on an axis) sit on the training device, so a step indexes
them without a host copy; `test` is the test split's `FeatureDataset`, read one video at a time when a
stage is evaluated. Load it once and pass it to every stage (`run_pipeline(..., data=data)`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import NamedTuple

from gsmoe_lib.data.batching import TrainSet
from gsmoe_lib.data.layouts import FeatureDataset, FileIndex, open_dataset
from gsmoe_lib.training.config import DataConfig, dataset_name


class Data(NamedTuple):
    train: TrainSet  # pooled training samples, on the training device
    test: FeatureDataset  # the test split, read one video at a time
    dataset: str


def open_splits(cfg: DataConfig, splits: tuple[str, ...] = ("train", "test"), dataset: str | None = None,
                ) -> list[FeatureDataset]:
    """The named splits of `cfg` (one directory walk for all of them)."""
    dataset = dataset or dataset_name(cfg)
    index = FileIndex.build(cfg.data_root)
    return [open_dataset(cfg.data_root, dataset, split, train_list=cfg.train_list, test_list=cfg.test_list,
                         annotations=cfg.annotations, file_index=index) for split in splits]


def load_data(cfg: DataConfig, device: str = "cpu", progress: bool = True) -> Data:
    """Open both splits and pool the training videos once, staged on `device`."""
    dataset = dataset_name(cfg)
    train_ds, test_ds = open_splits(cfg, ("train", "test"), dataset)
    train = TrainSet.from_dataset(train_ds, n_segments=cfg.n_segments, crops=cfg.crops, progress=progress)
    # Features are staged on the device once; labels and indices stay on the host, where the sampler draws.
    train = replace(train, features=train.features.to(device))
    return Data(train, test_ds, dataset)
