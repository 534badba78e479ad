"""Writing extracted features: the file layouts the loaders read, the `extract.json` manifest, resuming.

Layouts (`data.layouts` reads both):

    crops   OUT/<stem>__<c>.npy   float32 [T, D], one file per crop c = 0..C-1 (UR-DMU / DeepMIL / XD)
    rtfm    OUT/<stem>_i3d.npy    float32 [T, C, D], one file per video (RTFM)

OUT/extract.json records what made the files:

    {"format": "gsmoe-extract-v1",
     "settings": {backbone, weights_sha256, weights_key_set, recipe, reproduces, crop_order, resize, pixels,
                  snippet_rule, padding, layout, precision, feature_dim},
     "videos": {<stem>: {source, frames_decoded, fps, width, height, snippets (T), files}},
     "environment": {versions, device, ...}}

`settings` decides what the numbers are: a folder whose manifest has the same settings is resumed (a video
already listed, its files present, is skipped); a folder whose manifest has other settings is an error
(`OutputConflict`, exit 2) and nothing in it is touched; a feature file present but not listed in the
manifest (written by something else) is an error too, never overwritten. Each file is written under a
temporary name and renamed (`runs.atomic_path`), then the manifest (also atomically), so an interrupted
extraction leaves complete files only. OUT/extract.list lists the files, one line each (a list file
`gsmoe data check` and the loaders read; the names carry no class, so it is not a training list).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from gsmoe_lib import runs

MANIFEST = "extract.json"
LIST_FILE = "extract.list"
FORMAT = "gsmoe-extract-v1"
LAYOUTS = ("crops", "rtfm")


class OutputConflict(ValueError):
    """An output folder holding features made otherwise (a user error)."""


def output_files(out_dir: Path, stem: str, n_crops: int, layout: str) -> list[Path]:
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
    if layout == "rtfm":
        return [out_dir / f"{stem}_i3d.npy"]
    return [out_dir / f"{stem}__{c}.npy" for c in range(n_crops)]


def video_stem(path: str | Path) -> str:
    return Path(path).stem


class Manifest:
    """OUT/extract.json: read, checked against the settings asked for, updated per video."""

    def __init__(self, out_dir: str | Path, settings: dict[str, Any], environment: dict[str, Any]) -> None:
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / MANIFEST
        self.settings = runs._to_jsonable(settings)
        self.videos: dict[str, dict[str, Any]] = {}
        self.environment = environment
        if self.path.is_file():
            try:
                old = runs.read_json(self.path)
                old_settings, videos = old["settings"], old["videos"]
            except (ValueError, KeyError, TypeError) as exc:
                raise OutputConflict(f"{self.path}: not an extract manifest ({exc}); choose another --out") from None
            if old_settings != self.settings:
                diff = runs.config_differences(old_settings, self.settings)
                raise OutputConflict(f"{self.out_dir}: holds features extracted with other settings "
                                     f"({'; '.join(diff)}); nothing was overwritten: choose another --out")
            self.videos = dict(videos)

    def done(self, stem: str) -> bool:
        """True when `stem` is listed and all its files exist (skip it)."""
        rec = self.videos.get(stem)
        return bool(rec) and all((self.out_dir / f).is_file() for f in rec["files"])

    def check_free(self, stem: str, files: list[Path]) -> None:
        """A video not done whose output files exist anyway: written by something else: an error."""
        if stem in self.videos:
            return  # listed but incomplete: ours, rewritten
        present = [f for f in files if f.exists()]
        if present:
            raise OutputConflict(f"{present[0]}: exists but {self.path} does not list video {stem}; "
                                 "not overwritten: remove it or choose another --out")

    def add(self, stem: str, record: dict[str, Any]) -> None:
        self.videos[stem] = runs._to_jsonable(record)
        self.write()

    def write(self) -> None:
        runs.write_json(self.path, {"format": FORMAT, "settings": self.settings, "videos": self.videos,
                                    "environment": self.environment})
        lines = [f for stem in sorted(self.videos) for f in self.videos[stem]["files"]]
        runs.write_text(self.out_dir / LIST_FILE, "\n".join(lines) + "\n")


def write_features(out_dir: Path, stem: str, features: np.ndarray, layout: str) -> list[Path]:
    """features float32 [T, C, D] -> the layout's files (each temp-name-then-rename); returns their paths."""
    files = output_files(out_dir, stem, features.shape[1], layout)
    arrays = [features] if layout == "rtfm" else [features[:, c] for c in range(features.shape[1])]
    for path, arr in zip(files, arrays):
        with runs.atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:  # an open file: np.save would add ".npy" to the temporary name
                np.save(fh, np.ascontiguousarray(arr, dtype=np.float32))
    return files
