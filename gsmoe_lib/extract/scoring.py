"""Videos into `gsmoe score`: extract a video's features with the settings a run expects, then score them.

The backbone and the recipe default from the run (`defaults_for_run`):
- the backbone from the run's feature width D: 1024 -> i3d-inception, 2048 -> i3d-r50;
- the recipe from the run's dataset and backbone: XD-Violence -> xd-5crop; UCF-Crime (and the synthetic
  data, UCF-shaped) -> urdmu-10crop with Inception, rtfm-10crop with ResNet-50.
`--backbone` and `--recipe` override them. The features are kept beside the scores, in OUT/features/ with
their extract.json, and a rerun with the same settings reuses them (`command.extract` resumes per video).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from gsmoe_lib import runs
from gsmoe_lib.extract.backbones import backbone_for_width, get_backbone


def run_dataset(run_dir: str | Path, seed: int = 0) -> str:
    """The dataset a run was trained on, from its tgs stage config ("ucf-crime" when it does not say)."""
    try:
        cfg = runs.Run(run_dir).training(seed).config("tgs")
    except (OSError, ValueError, KeyError):
        return "ucf-crime"
    return str((cfg.get("data") or {}).get("dataset") or "ucf-crime")


def defaults_for_run(input_dim: int, dataset: str, backbone: str | None = None,
                     recipe: str | None = None) -> tuple[str, str]:
    """(backbone, recipe) for a run of feature width `input_dim` on `dataset`; given values win."""
    backbone = backbone or backbone_for_width(input_dim)
    spec = get_backbone(backbone)
    if spec.feature_dim != input_dim:
        raise ValueError(f"--backbone {backbone} gives {spec.feature_dim}-d features; the run was trained on "
                         f"{input_dim}-d features")
    if recipe is None:
        recipe = "xd-5crop" if dataset == "xd-violence" else spec.default_recipe
    return backbone, recipe


def video_features_for_run(videos: list[Path], weights: str | Path, input_dim: int, dataset: str, out_dir: Path,
                           backbone: str | None = None, recipe: str | None = None, snippets: str | None = None,
                           device: str = "cpu", progress: bool = False) -> dict[Path, dict[str, Any]]:
    """{video: {"features": [C, T, D], "fps", "record"}} for each video, extracted into out_dir (resumed)."""
    from gsmoe_lib.extract.command import ExtractSettings, extract
    from gsmoe_lib.extract.writing import video_stem

    backbone, recipe = defaults_for_run(input_dim, dataset, backbone, recipe)
    settings = ExtractSettings(backbone, Path(weights), recipe, snippets)
    records = extract(videos, settings, out_dir, progress=progress)
    out = {}
    for v in videos:
        rec = records[video_stem(v)]
        crops = [np.load(out_dir / f) for f in rec["files"]]  # each [T, D]
        out[v] = {"features": np.stack(crops), "fps": rec["fps"], "record": rec,
                  "backbone": backbone, "recipe": recipe}
    return out
