"""`gsmoe data check`: validate a feature dataset before training on it.

Incomplete or corrupt downloads are a common reason why published numbers do not reproduce
(REFERENCE §7). The check resolves the lists and annotations exactly as training does
(`layouts.open_dataset`), reads every feature file once, memory-mapped and in chunks (the dataset is
never held in memory), and reports every problem as one line naming the file or video:

- a listed video without (complete) feature files, a basename found at several places;
- crops of one video with different T, T = 0, a file that is not [T, D] / [T, C, D] or not float;
- NaN or Inf values; a feature dimension D that differs from the majority;
- an unknown class, a video listed twice, a video in both splits;
- an annotation for a video not in the test list, an abnormal test video without annotation, a normal
  one with windows, a window past the end of the video, a frame count that matches no snippet
  convention (`ground_truth`); malformed list or annotation lines (with the line number).

On a dataset without problems it then prints the untrained L2-norm score (`data.magnitude`: the test AUC of
scoring every snippet by the norm of its crop-averaged feature; near 50 on real I3D features), unless
`--no-magnitude`.

A folder written by `gsmoe extract` (it holds extract.json and extract.list, and no list of a dataset) is
checked as what it is, features of videos without labels (`check_extracted`): every file extract.list names
is read as above (shape, dtype, T, NaN / Inf, one D), and T must be the one extract.json records.
"""

from __future__ import annotations

import argparse
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from gsmoe_lib.data import ground_truth
from gsmoe_lib.data.layouts import (
    KNOWN_NAMES,
    FileIndex,
    ListChoice,
    detect_dataset_name,
    npy_header,
    resolve_files,
    resolve_lists,
)
from gsmoe_lib.data.lists import DATASETS, VideoEntry, parse_feature_name, read_annotations, read_list

CHUNK_BYTES = 64 * 2**20  # NaN / Inf scan reads at most this much of a file at a time


@dataclass
class SplitSummary:
    """What one split holds. per_class counts "Normal" too; an XD video counts for each of its classes."""

    list_file: ListChoice
    videos: int = 0
    per_class: dict[str, int] = field(default_factory=dict)
    snippets: int = 0
    crops: int = 0
    layout: str = ""


@dataclass
class CheckReport:
    dataset: str
    data_root: Path
    splits: dict[str, SplitSummary]
    annotations: ListChoice
    feature_dim: int | None
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        lines = [f"dataset {self.dataset} under {self.data_root}"]
        for split, s in self.splits.items():
            lines.append(f"{split}: {s.list_file.path} ({s.list_file.source})")
            lines.append(f"  {s.videos} videos, {s.snippets} snippets, layout {s.layout or '?'}, C={s.crops}")
            lines.append("  " + ", ".join(f"{k} {n}" for k, n in sorted(s.per_class.items())))
        lines.append(f"annotations: {self.annotations.path} ({self.annotations.source})")
        lines.append(f"feature dimension D={self.feature_dim}")
        lines.append(f"{len(self.problems)} problem(s)" if self.problems else "no problems found")
        return "\n".join(lines)


def _scan_finite(arr: np.ndarray) -> int | None:
    """First snippet index holding NaN or Inf in a memory-mapped [T, ...] array, reading it in chunks."""
    row_bytes = max(arr[:1].nbytes, 1)
    step = max(CHUNK_BYTES // row_bytes, 1)
    for start in range(0, arr.shape[0], step):
        chunk = np.asarray(arr[start:start + step])
        if not np.isfinite(chunk).all():
            bad = ~np.isfinite(chunk.reshape(chunk.shape[0], -1)).all(axis=1)
            return start + int(np.argmax(bad))
    return None


def _check_video(v: VideoEntry, layout: str, n_crops: int, dims: dict[Path, int], problems: list[str]) -> int | None:
    """Read every file of one video; append problems; return T (None when unreadable or inconsistent)."""
    lengths = {}
    for path in v.files:
        try:
            shape, dtype = npy_header(path)
        except ValueError as err:
            problems.append(f"video {v.name}: {err}")
            return None
        ndim = 2 if layout == "per-crop" else 3
        if len(shape) != ndim:
            want = "[T, D]" if ndim == 2 else "[T, C, D]"
            problems.append(f"video {v.name}: {path} has shape {shape}, expected {want}")
            return None
        if layout == "per-video" and shape[1] != n_crops:
            problems.append(f"video {v.name}: {path} has {shape[1]} crops, most videos have {n_crops}")
        if not np.issubdtype(dtype, np.floating):
            problems.append(f"video {v.name}: {path} holds {dtype}, expected floating-point features")
        if shape[0] == 0:
            problems.append(f"video {v.name}: {path} has T = 0 snippets")
            return None
        dims[path] = shape[-1]
        lengths[path] = shape[0]
        try:
            bad = _scan_finite(np.load(path, mmap_mode="r"))
        except (ValueError, OSError) as err:
            problems.append(f"video {v.name}: cannot read {path} ({err})")
            return None
        if bad is not None:
            problems.append(f"video {v.name}: {path} contains NaN or Inf (first at snippet {bad})")
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{p.name} T={t}" for p, t in lengths.items())
        problems.append(f"video {v.name}: crops have different T ({detail})")
        return None
    return next(iter(lengths.values()), None)


def check_dataset(
    data_root: str | os.PathLike,
    dataset: str = "ucf-crime",
    train_list: str | os.PathLike | None = None,
    test_list: str | os.PathLike | None = None,
    annotations: str | os.PathLike | None = None,
    tolerance: int = ground_truth.SNIPPET_FRAMES,
    progress: bool = False,
) -> CheckReport:
    """Check both splits and the annotations of a dataset; see the module docstring for what is checked.

    Raises only when the data root or an explicitly given file does not exist; everything else is
    collected in `CheckReport.problems`.
    """
    root = Path(data_root)
    lists = resolve_lists(root, dataset, train_list, test_list, annotations)
    index = FileIndex.build(root)
    problems: list[str] = []
    dims: dict[Path, int] = {}  # file -> D
    splits: dict[str, SplitSummary] = {}
    members: dict[str, dict[str, VideoEntry]] = {}
    test_lengths: dict[str, int] = {}  # test video -> T
    for split in ("train", "test"):
        summary = splits[split] = SplitSummary(lists[split])
        members[split] = {}
        try:
            listed = read_list(lists[split].path, dataset)
        except ValueError as err:
            problems.append(str(err))
            continue
        problems.extend(listed.problems)
        res = resolve_files(listed.videos, index, listed.path)
        problems.extend(res.problems)
        summary.videos, summary.crops, summary.layout = len(res.videos), res.n_crops, res.layout
        counts: Counter[str] = Counter()
        for v in tqdm(res.videos, desc=f"checking {split}", unit="video", disable=not progress):
            members[split][v.name] = v
            counts.update(v.classes or ("Normal",))
            if not v.files:
                continue
            n = _check_video(v, res.layout, res.n_crops, dims, problems)
            if n is not None:
                summary.snippets += n
                if split == "test":
                    test_lengths[v.name] = n
        summary.per_class = dict(counts)
    for name in members["train"].keys() & members["test"].keys():
        problems.append(f"video {name} is in both the train list and the test list")

    feature_dim = None
    if dims:
        feature_dim = Counter(dims.values()).most_common(1)[0][0]
        for path, d in dims.items():
            if d != feature_dim:
                problems.append(f"{path}: feature dimension D={d}, most files have D={feature_dim}")

    ann_path = lists["annotations"].path
    try:
        ann = read_annotations(ann_path)
    except ValueError as err:
        problems.append(str(err))
        ann = {}
    test = members["test"]
    for name, a in ann.items():
        if name not in test:
            problems.append(f"{a.source}:{a.line}: annotation for video {name}, which is not in the test list")
    for name, v in test.items():
        a = ann.get(name)
        if v.label == 1 and a is None and ann:  # (an unreadable annotation file is already one problem)
            problems.append(f"video {name}: abnormal test video without annotation in {ann_path}")
        elif v.label == 0 and a is not None and a.windows:
            problems.append(f"{a.source}:{a.line}: normal test video {name} has anomalous windows")
        elif a is not None and name in test_lengths:
            try:
                ground_truth.frame_labels(a, test_lengths[name], tolerance, video=name)
            except ValueError as err:
                problems.append(str(err))
    return CheckReport(dataset, root, splits, lists["annotations"], feature_dim, problems)


EXTRACT_MANIFEST, EXTRACT_LIST = "extract.json", "extract.list"  # written by gsmoe_lib.extract.writing


def is_extracted_folder(data_root: str | os.PathLike) -> bool:
    """A `gsmoe extract` output folder: extract.json and extract.list, and no dataset list file."""
    root = Path(data_root)
    known = {n for kinds in KNOWN_NAMES.values() for names in kinds.values() for n in names}
    return ((root / EXTRACT_MANIFEST).is_file() and (root / EXTRACT_LIST).is_file()
            and not any((root / n).is_file() for n in known))


def check_extracted(data_root: str | os.PathLike) -> CheckReport:
    """Check a `gsmoe extract` folder: the files of extract.list, and each video's T against extract.json."""
    import json

    root = Path(data_root)
    listed = root / EXTRACT_LIST
    try:
        records = json.loads((root / EXTRACT_MANIFEST).read_text())["videos"]
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{root / EXTRACT_MANIFEST}: not a gsmoe extract manifest ({err})") from None
    names: dict[str, None] = {}
    for number, line in enumerate(listed.read_text().splitlines(), start=1):
        if line.strip():
            parsed = parse_feature_name(line.strip())
            if parsed is None:
                raise ValueError(f"{listed}:{number}: cannot read a video from {line.strip()!r}")
            names[parsed[0]] = None
    problems: list[str] = []
    res = resolve_files([VideoEntry(n, 0, ()) for n in names], FileIndex.build(root), listed)
    problems.extend(res.problems)
    summary = SplitSummary(ListChoice(listed, "data root"), len(res.videos), {"unlabelled": len(res.videos)},
                           0, res.n_crops, res.layout)
    dims: dict[Path, int] = {}
    for v in res.videos:
        if not v.files:
            continue
        n = _check_video(v, res.layout, res.n_crops, dims, problems)
        if n is not None:
            summary.snippets += n
            want = (records.get(v.name) or {}).get("snippets")
            if want != n:
                problems.append(f"video {v.name}: T = {n} in its files, {want} in {root / EXTRACT_MANIFEST}")
    feature_dim = Counter(dims.values()).most_common(1)[0][0] if dims else None
    for path, d in dims.items():
        if d != feature_dim:
            problems.append(f"{path}: feature dimension D={d}, most files have D={feature_dim}")
    none = ListChoice(root / EXTRACT_MANIFEST, "none: extracted videos have no labels")
    return CheckReport("extracted videos", root, {"extracted": summary}, none, feature_dim, problems)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-root", required=True, metavar="DIR",
                        help="folder holding the feature files (searched recursively)")
    parser.add_argument("--dataset", choices=DATASETS, default=None,
                        help="default: the \"dataset\" key of DIR/gsmoe_dataset.json when present, else ucf-crime")
    parser.add_argument("--train-list", metavar="FILE",
                        help="train list (default: a known list name in DIR, else the official list)")
    parser.add_argument("--test-list", metavar="FILE",
                        help="test list (default: a known list name in DIR, else the official list)")
    parser.add_argument("--annotations", metavar="FILE",
                        help="test annotations (default: a known name in DIR, else the official file)")
    parser.add_argument("--no-magnitude", action="store_true",
                        help="skip the untrained L2-norm score (reads the test features a second time)")


def run(args: argparse.Namespace) -> int:
    # A missing data root or list file raises: cli.main reports it in one line (exit 2).
    given = (args.dataset, args.train_list, args.test_list, args.annotations)
    if not any(given) and is_extracted_folder(args.data_root):
        report = check_extracted(args.data_root)
        print(report.summary())
        for problem in report.problems:
            print(f"PROBLEM: {problem}")
        return 0 if report.ok else 1
    dataset = args.dataset or detect_dataset_name(args.data_root) or "ucf-crime"
    report = check_dataset(args.data_root, dataset, args.train_list, args.test_list, args.annotations, progress=True)
    print(report.summary())
    for problem in report.problems:
        print(f"PROBLEM: {problem}")
    if report.ok and not args.no_magnitude:
        # how far the feature norm alone separates the test anomalies (data.magnitude): near chance on real I3D
        from gsmoe_lib.data.magnitude import describe, magnitude_metrics

        print(describe(magnitude_metrics(args.data_root, dataset, args.test_list, args.annotations)))
    return 0 if report.ok else 1
