"""`gsmoe extract`: videos -> the field's I3D features, with the convention named (see `gsmoe_lib.extract`).

    gsmoe extract VIDEO... | --list FILE  --weights FILE --out DIR
                  [--backbone i3d-inception|i3d-r50] [--recipe NAME] [--snippets floor|ceil]
                  [--layout crops|rtfm] [--device cpu] [--batch 10] [--amp none|bf16]
                  [--executor local|dask] [--address ADDR]

`--list FILE` names one video per line (blank lines and `#` comments skipped; a relative path is read from
the list's folder). With `--executor dask` the videos are shared across the workers of a Dask cluster
(`--address`, or a local cluster), as `gsmoe sweep` does: each worker extracts whole videos and writes their
files; this process alone writes the manifest, as results come back, so a rerun resumes per video.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gsmoe_lib.extract.recipes import RECIPES, SNIPPET_RULES, get_recipe
from gsmoe_lib.extract.writing import LAYOUTS

EXECUTORS = ("local", "dask")


@dataclass(frozen=True)
class ExtractSettings:
    """Everything that decides the numbers in the files (the manifest's "settings")."""

    backbone: str
    weights: Path
    recipe: str
    snippets: str | None = None  # None: the recipe's default rule
    layout: str = "crops"
    device: str = "cpu"
    batch: int = 10
    amp: str = "none"

    @property
    def rule(self) -> str:
        return self.snippets or get_recipe(self.recipe).snippets


def manifest_settings(s: ExtractSettings, weights_sha256: str, key_set: str, feature_dim: int) -> dict[str, Any]:
    r = get_recipe(s.recipe)
    windows = r.crop_windows(*r.resized_size(320, 240))
    resize = (f"exact {r.resize_to[0]}x{r.resize_to[1]}" if r.resize_mode == "exact"
              else f"short side {r.resize_to[1]}") + f", Pillow {r.resample}"
    return {
        "backbone": s.backbone, "feature_dim": feature_dim, "weights_sha256": weights_sha256,
        "weights_key_set": key_set, "recipe": r.name, "reproduces": r.reproduces,
        "crop_order": [w.name for w in windows], "crop_size": 224, "resize": resize,
        "pixels": f"p * {r.scale!r} + {r.shift!r} (p in 0..255)", "snippet_frames": 16,
        "snippet_rule": s.rule, "padding": r.padding, "layout": s.layout,
        "precision": "float32" if s.amp == "none" else s.amp,
    }


def read_video_list(path: str | Path) -> list[Path]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: video list not found")
    videos = []
    for line in path.read_text().splitlines():
        text = line.strip()
        if text and not text.startswith("#"):
            p = Path(text)
            videos.append(p if p.is_absolute() else path.parent / p)
    if not videos:
        raise ValueError(f"{path}: the list names no videos")
    return videos


_LOADED: dict[tuple, Any] = {}  # one loaded backbone per process (this one, or a Dask worker)


def _loaded_backbone(s: ExtractSettings):
    from gsmoe_lib.extract.weights import load_backbone

    stat = Path(s.weights).stat() if Path(s.weights).is_file() else None  # a rewritten file is loaded again
    key = (str(Path(s.weights).resolve()), stat and (stat.st_mtime_ns, stat.st_size), s.backbone, s.device)
    if key not in _LOADED:
        _LOADED.clear()
        loaded = load_backbone(s.weights, s.backbone)
        loaded.model.to(s.device)
        _LOADED[key] = loaded
    return _LOADED[key]


def extract_one(video: str | Path, s: ExtractSettings, out_dir: str | Path, progress: bool = False) -> dict[str, Any]:
    """Extract one video into out_dir (files only, no manifest); returns its manifest record."""
    from gsmoe_lib.extract.features import extract_video
    from gsmoe_lib.extract.writing import video_stem, write_features

    loaded = _loaded_backbone(s)
    vf = extract_video(video, loaded.model, get_recipe(s.recipe), s.rule, s.device, s.amp, s.batch, progress)
    files = write_features(Path(out_dir), video_stem(video), vf.features, s.layout)
    return {"source": str(Path(video).resolve()), "frames_decoded": vf.frames_decoded,
            "header_frames": vf.header_frames, "fps": vf.fps,
            "width": vf.size[0], "height": vf.size[1], "resized": list(vf.resized),
            "snippets": int(vf.features.shape[0]), "files": [f.name for f in files]}


def extract(videos: list[Path], s: ExtractSettings, out_dir: str | Path, executor: str = "local",
            address: str | None = None, progress: bool = True, workers: int = 2) -> dict[str, dict[str, Any]]:
    """Extract `videos` into out_dir with the manifest; returns {stem: record} of every video asked for."""
    from gsmoe_lib import runs
    from gsmoe_lib.extract.backbones import get_backbone
    from gsmoe_lib.extract.decode import open_video
    from gsmoe_lib.extract.writing import Manifest, output_files, video_stem

    recipe = get_recipe(s.recipe)
    if s.layout not in LAYOUTS:
        raise ValueError(f"unknown layout {s.layout!r}; expected one of {', '.join(LAYOUTS)}")
    stems = [video_stem(v) for v in videos]
    dup = sorted({x for x in stems if stems.count(x) > 1})
    if dup:
        raise ValueError(f"several videos share the name {dup[0]!r}: their features would overwrite each other")
    for v in videos:  # every file opens as a video before any work (fail fast, name the file)
        container, _ = open_video(v)
        container.close()
    loaded = _loaded_backbone(s)  # checks the weights before any output is touched
    out_dir = Path(out_dir)
    env = runs.environment_record(device=s.device)
    import av

    env["av"] = av.__version__
    manifest = Manifest(out_dir, manifest_settings(s, loaded.sha256, loaded.key_set,
                                                   get_backbone(s.backbone).feature_dim), env)
    todo = []
    for v, stem in zip(videos, stems):
        if manifest.done(stem):
            continue
        manifest.check_free(stem, output_files(out_dir, stem, recipe.n_crops, s.layout))
        todo.append(v)
    out_dir.mkdir(parents=True, exist_ok=True)
    if executor == "local":
        from tqdm.auto import tqdm

        for v in tqdm(todo, desc="extract", unit="video", disable=not progress or len(todo) < 2):
            manifest.add(video_stem(v), extract_one(v, s, out_dir, progress=progress))
    elif executor == "dask":
        from distributed import as_completed

        from gsmoe_lib.sweep import dask_client

        owned = dask_client(address, workers)  # [client, (cluster)], as `gsmoe sweep` starts them
        client = owned[0]
        try:
            futures = {client.submit(extract_one, v, s, out_dir, pure=False): v for v in todo}
            for fut in as_completed(futures):
                manifest.add(video_stem(futures[fut]), fut.result())  # a failed video raises here, named
        finally:
            for thing in owned:
                thing.close()
    else:
        raise ValueError(f"unknown executor {executor!r}; expected one of {', '.join(EXECUTORS)}")
    if not manifest.path.exists():
        manifest.write()
    return {stem: manifest.videos[stem] for stem in stems}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from gsmoe_lib.extract.backbones import BACKBONES

    parser.add_argument("videos", nargs="*", help="video files (any format FFmpeg reads)")
    parser.add_argument("--list", metavar="FILE", help="a file naming one video per line (instead of VIDEO...)")
    parser.add_argument("--weights", required=True, metavar="FILE",
                        help="the backbone's weights file (e.g. rgb_imagenet.pt, i3d_r50_kinetics.pth); "
                             "nothing is downloaded")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for the features and extract.json")
    parser.add_argument("--backbone", choices=tuple(BACKBONES), default="i3d-inception",
                        help="i3d-inception (1024-d) or i3d-r50 (2048-d, the paper's)")
    parser.add_argument("--recipe", choices=tuple(RECIPES), default=None,
                        help="crops and preprocessing of a release (default: urdmu-10crop for i3d-inception, "
                             "rtfm-10crop for i3d-r50); see docs/extract.md")
    parser.add_argument("--snippets", choices=SNIPPET_RULES, default=None,
                        help="snippet count T = floor(N/16) or ceil(N/16) (default: the recipe's)")
    parser.add_argument("--layout", choices=LAYOUTS, default="crops",
                        help="crops: <stem>__<c>.npy [T, D] per crop; rtfm: <stem>_i3d.npy [T, C, D]")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=10, help="clips (snippet x crop) per forward pass")
    parser.add_argument("--amp", choices=("none", "bf16"), default="none", help="bf16 autocast (recorded)")
    parser.add_argument("--executor", choices=EXECUTORS, default="local",
                        help="local: this process; dask: share the videos across a Dask cluster's workers")
    parser.add_argument("--address", default=None, help="Dask scheduler address (default: a local cluster)")
    parser.add_argument("--workers", type=int, default=2, help="workers of the local Dask cluster (no --address)")


def settings_from_args(args: argparse.Namespace) -> ExtractSettings:
    from gsmoe_lib.extract.backbones import get_backbone

    recipe = args.recipe or get_backbone(args.backbone).default_recipe
    if args.batch < 1:
        raise ValueError(f"--batch must be at least 1, got {args.batch}")
    return ExtractSettings(args.backbone, Path(args.weights), recipe, args.snippets, args.layout, args.device,
                           args.batch, args.amp)


def run(args: argparse.Namespace) -> int:
    if bool(args.videos) == bool(args.list):
        raise ValueError("give the videos either as arguments or with --list FILE (one of the two)")
    videos = [Path(v) for v in args.videos] if args.videos else read_video_list(args.list)
    records = extract(videos, settings_from_args(args), args.out, args.executor, args.address,
                      progress=sys.stderr.isatty(), workers=args.workers)
    for stem, rec in records.items():
        print(json.dumps({"video": stem, "snippets": rec["snippets"], "frames_decoded": rec["frames_decoded"],
                          "files": rec["files"]}))
    return 0
