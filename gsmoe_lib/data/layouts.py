"""Feature datasets on disk: which files hold which video, in which layout, and how to read one video.

Three layouts are in use (REFERENCE §3); the layout is detected from the files that exist for the
listed videos, and C (crops) and D (feature dimension) are read from the files, never assumed:

    "per-crop"   one file per crop `<Video>__<c>.npy`, each [T, D], c = 0..C-1
                 (UCF-Crime UR-DMU / DeepMIL: C = 10, D = 1024; XD-Violence: C = 5, D = 1024)
    "per-video"  one file per video `<Video>_i3d.npy`, [T, C, D] (UCF-Crime RTFM: C = 10, D = 2048)

Files are found by **basename** anywhere under the data root (one directory walk), never by the path
written in a list, so a dataset can be unpacked in any folder structure.

Which list and annotation files are used (`resolve_lists`): an explicit argument, else a file with a
known name at the top of the data root (what `gsmoe data synth` writes, or a published file the user
put there), else the official file packaged in `resources/`.

`FeatureDataset.classes` are the anomaly classes of the *training* list, for both splits, so that
train and test index classes identically and a synthetic dataset with fewer classes gets fewer experts.

The test split is never loaded as a whole: `load(i)` reads one video, through memory maps.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from gsmoe_lib.data import ground_truth
from gsmoe_lib.data.lists import (
    Annotation,
    VideoEntry,
    VideoList,
    check_dataset_name,
    parse_feature_name,
    read_annotations,
    read_list,
)

RESOURCES = Path(__file__).parent / "resources"
DATASET_FILE = "gsmoe_dataset.json"  # written by `gsmoe data synth`: {"dataset": "ucf-crime", ...}

# Known list / annotation names inside a data root, in order of preference.
KNOWN_NAMES: dict[str, dict[str, tuple[str, ...]]] = {
    "ucf-crime": {
        "train": ("UCF_Train.list", "ucf-i3d.list"),
        "test": ("UCF_Test.list", "ucf-i3d-test.list"),
        "annotations": ("UCF_Annotation.txt", "Temporal_Anomaly_Annotation.txt"),
    },
    "xd-violence": {
        "train": ("XD_Train.list", "rgb.list"),
        "test": ("XD_Test.list", "rgb_test.list"),
        "annotations": ("annotations.txt",),
    },
}
PACKAGED: dict[str, dict[str, Path]] = {
    "ucf-crime": {
        "train": RESOURCES / "ucf_crime" / "UCF_Train_urdmu_percrop.list",
        "test": RESOURCES / "ucf_crime" / "UCF_Test_urdmu_percrop.list",
        "annotations": RESOURCES / "ucf_crime" / "UCF_Annotation_urdmu_with_framecounts.txt",
    },
    "xd-violence": {
        "train": RESOURCES / "xd_violence" / "train_videos_audio.list",
        "test": RESOURCES / "xd_violence" / "rgb_test.list",
        "annotations": RESOURCES / "xd_violence" / "annotations.txt",
    },
}
LAYOUTS = ("per-crop", "per-video")


def detect_dataset_name(data_root: str | os.PathLike) -> str | None:
    """The "dataset" key of DATA_ROOT/gsmoe_dataset.json, or None when there is no such file."""
    path = Path(data_root) / DATASET_FILE
    if not path.is_file():
        return None
    try:
        name = json.loads(path.read_text())["dataset"]
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: expected a JSON object with a \"dataset\" key ({err})") from None
    return check_dataset_name(name)


@dataclass(frozen=True)
class ListChoice:
    """A resolved list or annotation file and where the choice came from."""

    path: Path
    source: str  # "argument", "data root" or "packaged"


def resolve_lists(
    data_root: str | os.PathLike,
    dataset: str = "ucf-crime",
    train_list: str | os.PathLike | None = None,
    test_list: str | os.PathLike | None = None,
    annotations: str | os.PathLike | None = None,
) -> dict[str, ListChoice]:
    """{"train", "test", "annotations"} -> the file to use (argument > known name in data root > packaged)."""
    check_dataset_name(dataset)
    root = Path(data_root)
    given = {"train": train_list, "test": test_list, "annotations": annotations}
    out = {}
    for kind, explicit in given.items():
        if explicit is not None:
            path = Path(explicit)
            if not path.is_file():
                raise FileNotFoundError(f"{kind} file {path} does not exist")
            out[kind] = ListChoice(path, "argument")
            continue
        found = [root / name for name in KNOWN_NAMES[dataset][kind] if (root / name).is_file()]
        out[kind] = ListChoice(found[0], "data root") if found else ListChoice(PACKAGED[dataset][kind], "packaged")
    return out


def npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of an .npy file, reading only its header."""
    with open(path, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f"unsupported .npy format version {version}")
        except (ValueError, EOFError) as err:
            raise ValueError(f"{path}: not a readable .npy file ({err})") from None
    return tuple(shape), dtype


@dataclass
class FileIndex:
    """Every .npy file under a data root, by basename (one os.walk).

    crops: video -> {crop index: path} for `<Video>__<c>.npy`; per_video: video -> path for
    `<Video>_i3d.npy`; ambiguous: basenames found at more than one place.
    """

    root: Path
    crops: dict[str, dict[int, Path]] = field(default_factory=dict)
    per_video: dict[str, Path] = field(default_factory=dict)
    ambiguous: dict[str, list[Path]] = field(default_factory=dict)

    @classmethod
    def build(cls, data_root: str | os.PathLike) -> FileIndex:
        root = Path(data_root)
        if not root.is_dir():
            raise FileNotFoundError(f"data root {root} is not a folder")
        index = cls(root)
        seen: dict[str, Path] = {}
        for folder, dirs, files in os.walk(root, followlinks=True):
            dirs.sort()  # a deterministic walk: the same file wins every time
            for name in sorted(files):
                if not name.endswith(".npy"):
                    continue
                path = Path(folder) / name
                if name in seen:
                    index.ambiguous.setdefault(name, [seen[name]]).append(path)
                    continue
                seen[name] = path
                parsed = parse_feature_name(name)
                if parsed is None:
                    continue
                video, crop = parsed
                if crop is not None:
                    index.crops.setdefault(video, {})[crop] = path
                elif name.endswith("_i3d.npy"):
                    index.per_video[video] = path
        return index


@dataclass
class Resolution:
    """Listed videos with their files, the detected layout and C, and what could not be resolved."""

    videos: list[VideoEntry]
    layout: str
    n_crops: int
    problems: list[str]


def resolve_files(videos: list[VideoEntry], index: FileIndex, list_path: Path | None = None) -> Resolution:
    """Attach feature files to listed videos; detect the layout from the files that exist.

    The layout is the one covering more of the listed videos (per-crop on a tie); C is the most common
    number of crop files (per-crop) or the second axis of the first file (per-video). Every listed video
    without complete files gives one problem line; such videos keep `files == ()`.
    """
    n_crop = sum(v.name in index.crops for v in videos)
    n_video = sum(v.name in index.per_video for v in videos)
    layout = "per-crop" if n_crop >= n_video else "per-video"
    listed = f" (listed in {list_path})" if list_path else ""
    problems: list[str] = []
    if layout == "per-crop":
        counts = Counter(len(index.crops[v.name]) for v in videos if v.name in index.crops)
        n_crops = counts.most_common(1)[0][0] if counts else 0
    else:
        first = next(index.per_video[v.name] for v in videos if v.name in index.per_video)
        shape, _ = npy_header(first)
        if len(shape) != 3:
            raise ValueError(f"{first}: expected a per-video array [T, C, D], got shape {shape}")
        n_crops = shape[1]
    out = []
    for v in videos:
        if layout == "per-crop":
            found = index.crops.get(v.name, {})
            missing = [c for c in range(n_crops) if c not in found]
            extra = sorted(c for c in found if c >= n_crops)
            if not found:
                problems.append(f"video {v.name}{listed}: no feature files {v.name}__<c>.npy under {index.root}")
            elif missing:
                names = ", ".join(f"{v.name}__{c}.npy" for c in missing)
                problems.append(f"video {v.name}{listed}: missing crop file(s) {names} under {index.root}")
            elif extra:
                problems.append(f"video {v.name}: {len(found)} crop files, but most videos have {n_crops}")
            files = tuple(found[c] for c in range(n_crops)) if found and not missing else ()
        else:
            path = index.per_video.get(v.name)
            if path is None:
                problems.append(f"video {v.name}{listed}: no feature file {v.name}_i3d.npy under {index.root}")
            files = (path,) if path is not None else ()
        for path in files:
            if path.name in index.ambiguous:
                places = ", ".join(str(p) for p in index.ambiguous[path.name])
                problems.append(f"video {v.name}: file {path.name} found at several places: {places}")
        out.append(replace(v, files=files))
    return Resolution(out, layout, n_crops, problems)


def _summarise(problems: list[str], limit: int = 10) -> str:
    more = f"\n  ... and {len(problems) - limit} more" if len(problems) > limit else ""
    return "\n  " + "\n  ".join(problems[:limit]) + more + "\n(run `gsmoe data check` for a full report)"


class FeatureDataset:
    """One split of a feature dataset: the listed videos, their files, and per-video access.

    Attributes: dataset, split, data_root, videos (list[VideoEntry]), layout, n_crops (C),
    feature_dim (D), classes (sorted anomaly classes of the training list), annotations
    ({name: Annotation}, test split; empty for train), lists ({kind: ListChoice}).
    """

    def __init__(
        self,
        dataset: str,
        split: str,
        data_root: Path,
        resolution: Resolution,
        classes: tuple[str, ...],
        annotations: dict[str, Annotation],
        lists: dict[str, ListChoice],
        tolerance: int = ground_truth.SNIPPET_FRAMES,
        end_inclusive: bool = False,
    ) -> None:
        self.dataset = dataset
        self.split = split
        self.data_root = data_root
        self.videos = resolution.videos
        self.layout = resolution.layout
        self.n_crops = resolution.n_crops
        self.classes = classes
        self.annotations = annotations
        self.lists = lists
        self.tolerance = tolerance
        self.end_inclusive = end_inclusive
        shape, _ = npy_header(self.videos[0].files[0])
        self.feature_dim = int(shape[-1])

    def __len__(self) -> int:
        return len(self.videos)

    def __repr__(self) -> str:
        return (
            f"FeatureDataset({self.dataset} {self.split}: {len(self)} videos, layout {self.layout}, "
            f"C={self.n_crops}, D={self.feature_dim}, root {self.data_root})"
        )

    def crop_arrays(self, i: int) -> list[np.ndarray]:
        """The C crops of video i as memory-mapped [T, D] arrays (no data read yet)."""
        v = self.videos[i]
        if self.layout == "per-video":
            arr = np.load(v.files[0], mmap_mode="r")  # [T, C, D]
            if arr.ndim != 3:
                raise ValueError(f"video {v.name}: {v.files[0]} has shape {arr.shape}, expected [T, C, D]")
            return [arr[:, c, :] for c in range(arr.shape[1])]
        crops = [np.load(path, mmap_mode="r") for path in v.files]  # C x [T, D]
        for path, arr in zip(v.files, crops):
            if arr.ndim != 2:
                raise ValueError(f"video {v.name}: {path} has shape {arr.shape}, expected [T, D]")
        lengths = {arr.shape[0] for arr in crops}
        if len(lengths) > 1:
            detail = ", ".join(f"{p.name}: T={a.shape[0]}" for p, a in zip(v.files, crops))
            raise ValueError(f"video {v.name}: crops have different numbers of snippets ({detail})")
        return crops

    def load(self, i: int) -> np.ndarray:
        """Video i as [C, T, D] float32."""
        return np.stack([np.asarray(a, dtype=np.float32) for a in self.crop_arrays(i)])  # [C, T, D]

    def n_snippets(self, i: int) -> int:
        """T of video i, from the file header (no data read)."""
        shape, _ = npy_header(self.videos[i].files[0])
        return int(shape[0])

    def frame_labels(self, i: int) -> np.ndarray:
        """Frame labels [T*16] uint8 of video i (see `ground_truth`); zeros for a normal video."""
        v = self.videos[i]
        annotation = self.annotations.get(v.name)
        if v.label == 1 and annotation is None:
            where = self.lists["annotations"].path if self.split == "test" else "the training split (video labels only)"
            raise ValueError(f"video {v.name}: abnormal video without frame annotation in {where}")
        return ground_truth.frame_labels(annotation, self.n_snippets(i), self.tolerance, self.end_inclusive, v.name)


def open_dataset(
    data_root: str | os.PathLike,
    dataset: str = "ucf-crime",
    split: str = "train",
    train_list: str | os.PathLike | None = None,
    test_list: str | os.PathLike | None = None,
    annotations: str | os.PathLike | None = None,
    *,
    file_index: FileIndex | None = None,
    tolerance: int = ground_truth.SNIPPET_FRAMES,
    end_inclusive: bool = False,
) -> FeatureDataset:
    """Open one split of a feature dataset under `data_root`.

    `file_index` reuses one directory walk for several splits. `tolerance` and `end_inclusive` are the
    ground-truth choices (see `ground_truth`). Raises ValueError listing the problems (missing files,
    unknown classes, duplicates) when the split cannot be used as is.
    """
    check_dataset_name(dataset)
    if split not in ("train", "test"):
        raise ValueError(f"unknown split {split!r}; expected 'train' or 'test'")
    root = Path(data_root)
    lists = resolve_lists(root, dataset, train_list, test_list, annotations)
    index = file_index if file_index is not None else FileIndex.build(root)
    train: VideoList = read_list(lists["train"].path, dataset)
    listed = train if split == "train" else read_list(lists["test"].path, dataset)
    resolution = resolve_files(listed.videos, index, listed.path)
    problems = listed.problems + resolution.problems
    if problems:
        raise ValueError(f"{dataset} {split} split under {root} cannot be used:" + _summarise(problems))
    classes = tuple(sorted({c for v in train.videos for c in v.classes}))
    ann = read_annotations(lists["annotations"].path) if split == "test" else {}
    return FeatureDataset(dataset, split, root, resolution, classes, ann, lists, tolerance, end_inclusive)
