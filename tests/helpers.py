"""Builders of small fake feature trees in the real on-disk layouts, shared by the data tests.

`write_ucf` (UR-DMU per-crop, as `gsmoe data synth` writes it), `write_xd` (XD-Violence per-crop) and
`write_rtfm` (RTFM per-video [T, C, D] files, Windows-path CRLF lists) each fill a folder from the video
tables below and return it; `features` gives reproducible random [T, (*tail,) D] float32 arrays.
Importable from any test module as `helpers` (pyproject: [tool.pytest.ini_options] pythonpath = ["tests"]).
"""

import json
from pathlib import Path

import numpy as np

# (class folder, video name, T snippets); "Normal" videos go to the split's normal folder
UCF_TRAIN = [("Abuse", "Abuse001_x264", 5), ("Arson", "Arson002_x264", 3), ("Normal", "Normal_Videos_001_x264", 4),
             ("Normal", "Normal_Videos_002_x264", 2)]
UCF_TEST = [("Abuse", "Abuse028_x264", 6), ("Normal", "Normal_Videos_003_x264", 3)]
# (video name with its XD label, T snippets)
XD_TRAIN = [("Movie.A__#1_label_B1-B2-0", 4), ("Movie.B__#2_label_G-0-0", 3), ("Movie.C__#3_label_A", 5)]
XD_TEST = [("Movie.D__#4_label_B6-0-0", 4), ("Movie.E__#5_label_A", 2)]


def features(t: int, dim: int, seed: int, shape_tail: tuple[int, ...] = ()) -> np.ndarray:
    """Random features [T, *shape_tail, D] in [0, 1), the same for the same seed."""
    return np.random.default_rng(seed).random((t, *shape_tail, dim), dtype=np.float32)


def write_ucf(root: Path, train=UCF_TRAIN, test=UCF_TEST, n_crops: int = 3, dim: int = 8) -> Path:
    """A per-crop UCF tree as `gsmoe data synth` writes it; test annotations in UR-DMU format (floor T)."""
    (root / "gsmoe_dataset.json").write_text(json.dumps({"dataset": "ucf-crime"}))
    ann = []
    for split, videos in (("Train", train), ("Test", test)):
        lines = []
        for k, (cls, video, t) in enumerate(videos):
            folder = f"{split}ing_Normal_Videos_Anomaly" if cls == "Normal" else cls
            for c in range(n_crops):
                lines.append(f"dataset/{folder}/{video}__{c}.npy")
                path = root / "features" / folder / f"{video}__{c}.npy"
                path.parent.mkdir(parents=True, exist_ok=True)
                np.save(path, features(t, dim, seed=100 * k + c))
            if split == "Test":
                window = "16 40 -1 -1" if cls != "Normal" else "-1 -1 -1 -1"
                ann.append(f"{folder}/{video}.mp4 {t * 16 + 5} {cls} {window}")
        (root / f"UCF_{split}.list").write_text("\n".join(lines) + "\n")
    (root / "UCF_Annotation.txt").write_text("\n".join(ann) + "\n")
    return root


def write_xd(root: Path, train=XD_TRAIN, test=XD_TEST, n_crops: int = 2, dim: int = 6) -> Path:
    """A per-crop XD-Violence tree (features/train, features/test); each abnormal test video is annotated
    `<name> 0 20 40 50` (frames 0-19 and 40-49 abnormal)."""
    (root / "gsmoe_dataset.json").write_text(json.dumps({"dataset": "xd-violence"}))
    ann = []
    for split, videos in (("Train", train), ("Test", test)):
        lines = []
        for k, (video, t) in enumerate(videos):
            for c in range(n_crops):
                lines.append(f"{video}__{c}.npy")
                path = root / "features" / split.lower() / f"{video}__{c}.npy"
                path.parent.mkdir(parents=True, exist_ok=True)
                np.save(path, features(t, dim, seed=100 * k + c))
            if split == "Test" and not video.endswith("label_A"):
                ann.append(f"{video} 0 20 40 50")
        (root / f"XD_{split}.list").write_text("\n".join(lines) + "\n")
    (root / "annotations.txt").write_text("\n".join(ann) + "\n")
    return root


def write_rtfm(root: Path, train=UCF_TRAIN, test=UCF_TEST, n_crops: int = 4, dim: int = 5) -> Path:
    """RTFM layout: one [T, C, D] file per video, Windows-path CRLF lists, Sultani annotations."""
    for name, split, videos in (("ucf-i3d.list", "Train", train), ("ucf-i3d-test.list", "Test", test)):
        lines = []
        for k, (_, video, t) in enumerate(videos):
            lines.append(f"G:\\UCF_{split}_ten_crop_i3d\\{video}_i3d.npy")
            path = root / f"rtfm_{split}" / f"{video}_i3d.npy"
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, features(t, dim, seed=k, shape_tail=(n_crops,)))
        (root / name).write_bytes(("\r\n".join(lines) + "\r\n").encode())
    ann = [f"{video}.mp4  {cls}  {'16  40' if cls != 'Normal' else '-1  -1'}  -1  -1" for cls, video, _ in test]
    (root / "Temporal_Anomaly_Annotation.txt").write_text("\n".join(ann) + "\n")
    return root
