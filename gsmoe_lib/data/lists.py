"""List and annotation files of UCF-Crime and XD-Violence, as the public code releases publish them.

A *list file* names the videos of one split. The published ones differ in every detail that matters
to a parser, and all of them must be read unchanged:

    dataset/Abuse/Abuse001_x264__0.npy                       UR-DMU / DeepMIL: one line per crop
    G:\\UCF_Train_ten_crop_i3d\\Abuse001_x264_i3d.npy          RTFM: one line per video, Windows path, CRLF
    /media/.../RGBTest/<Video>__0.npy                          XD-Violence: one line per crop
    /media/.../train/<Video>__vggish.npy                       XD-Violence audio list (we reuse its names)
    Abuse/Abuse001_x264.mp4                                    the original UCF-Crime split files

Only the *video name* is taken from a line (the basename without its crop / feature suffix); the path
written in the list is never used to open anything: `layouts` finds files by basename under the data
root. Labels and classes come from the names as well:

- UCF-Crime: the class is the name's prefix before the number (`Abuse028_x264` -> Abuse), and
  `Normal_Videos...` is normal. A list folder that names a class must agree with the prefix.
- XD-Violence: the part after `label_` holds up to three codes joined by `-` (`label_B1-B2-0`):
  B1 Fighting, B2 Shooting, B4 Riot, B5 Abuse, B6 Car accident, G Explosion, A normal, 0 = none.
  A video can carry several classes (multi-label).

An *annotation file* gives the anomalous frame windows of the test videos. Three formats exist and are
recognised line by line:

    Arson/Arson022_x264.mp4 8640 Arson 3500 4000 -1 -1       UR-DMU: with the video's frame count
    Abuse028_x264.mp4  Abuse  165  240  -1  -1               Sultani et al.: -1 = no window
    v=S-7rRLrxnVQ__#1_label_B4-0-0 0 1517 1970 3038          XD-Violence: any number of windows

A line that cannot be read is an error naming the file and the line number. Problems that concern the
*content* (an unknown class, a video listed twice) do not stop parsing: they are collected in
`VideoList.problems`, so that `gsmoe data check` can report all of them at once; `layouts.open_dataset`
refuses a list with problems.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

DATASETS = ("ucf-crime", "xd-violence")

# The 13 anomaly classes of UCF-Crime, as spelled in the video names.
UCF_CLASSES = (
    "Abuse", "Arrest", "Arson", "Assault", "Burglary", "Explosion", "Fighting",
    "RoadAccidents", "Robbery", "Shooting", "Shoplifting", "Stealing", "Vandalism",
)
# Real UCF-Crime train videos per class (the official Anomaly_Train.txt; REFERENCE §6): 810 in all. The
# synthetic train split follows these proportions.
UCF_TRAIN_COUNTS = {
    "Abuse": 48, "Arrest": 45, "Arson": 41, "Assault": 47, "Burglary": 87, "Explosion": 29, "Fighting": 45,
    "RoadAccidents": 127, "Robbery": 145, "Shooting": 27, "Shoplifting": 29, "Stealing": 95, "Vandalism": 45,
}
UCF_NORMAL_PREFIX = "Normal_Videos"
# Folders of the UR-DMU lists that hold normal videos.
UCF_NORMAL_FOLDERS = ("Training_Normal_Videos_Anomaly", "Testing_Normal_Videos_Anomaly", "Normal")

# XD-Violence label codes; "A" is normal and "0" fills unused slots.
XD_CODES = {
    "B1": "Fighting", "B2": "Shooting", "B4": "Riot", "B5": "Abuse", "B6": "Car accident", "G": "Explosion",
}
XD_CLASSES = tuple(sorted(XD_CODES.values()))

# Basename suffixes, most specific first. Each maps a file name to (video name, crop index or None).
_CROP = re.compile(r"^(?P<video>.+)__(?P<crop>\d+)\.npy$")  # <Video>__<c>.npy (UR-DMU, DeepMIL, XD)
_RTFM = re.compile(r"^(?P<video>.+)_i3d\.npy$")  # <Video>_i3d.npy (RTFM: [T, C, D])
_AUDIO = re.compile(r"^(?P<video>.+)__vggish\.npy$")  # XD audio list; only the name is reused
_VIDEO = re.compile(r"^(?P<video>.+)\.(?:mp4|avi)$")  # the original split files name the videos
_UCF_NAME = re.compile(r"^(?P<prefix>[A-Za-z_]+?)_?\d+(?:_\d+)*_x264$")


@dataclass(frozen=True)
class VideoEntry:
    """One video of a split.

    name: the video id without crop / feature suffix (`Abuse028_x264`, `v=...__#1_label_B4-0-0`).
    label: 0 normal, 1 abnormal. classes: anomaly class names, `()` for normal videos.
    files: the resolved feature files, one per crop or one per video (RTFM); empty until `layouts`
    resolves them.
    """

    name: str
    label: int
    classes: tuple[str, ...]
    files: tuple[Path, ...] = ()


@dataclass
class VideoList:
    """The parsed content of one list file: videos in file order, and content problems found."""

    path: Path
    videos: list[VideoEntry]
    problems: list[str] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [v.name for v in self.videos]


@dataclass(frozen=True)
class Annotation:
    """Anomalous windows of one test video, in frames as written in the file.

    windows: (start, end) pairs; `ground_truth` decides how an end is read. n_frames: the video's
    frame count when the file gives it (UR-DMU format), else None. line: where it was read.
    """

    name: str
    windows: tuple[tuple[int, int], ...]
    n_frames: int | None
    source: Path
    line: int


def check_dataset_name(dataset: str) -> str:
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")
    return dataset


def _basename(path_text: str) -> str:
    # Lists hold POSIX and Windows paths; both separators are separators here.
    return re.split(r"[\\/]", path_text)[-1]


def _strip_video_suffix(name: str) -> str:
    # XD names contain dots ("Bad.Boys.1995__#..."), so only a known video extension is removed.
    return re.sub(r"\.(?:mp4|avi)$", "", name)


def parse_feature_name(basename: str) -> tuple[str, int | None] | None:
    """`Abuse001_x264__3.npy` -> ("Abuse001_x264", 3); `X_i3d.npy`, `X__vggish.npy`, `X.mp4` -> (X, None).

    Returns None for a name that is none of the published forms.
    """
    m = _CROP.match(basename)
    if m:
        return m["video"], int(m["crop"])
    for pattern in (_AUDIO, _RTFM, _VIDEO):
        m = pattern.match(basename)
        if m:
            return m["video"], None
    return None


def ucf_class(name: str) -> str | None:
    """The class of a UCF-Crime video from its name: "Normal" for normal videos, None if unknown."""
    m = _UCF_NAME.match(name)
    if not m:
        return None
    prefix = m["prefix"].rstrip("_")
    if prefix == UCF_NORMAL_PREFIX:
        return "Normal"
    return prefix if prefix in UCF_CLASSES else None


def xd_classes(name: str) -> tuple[str, ...] | None:
    """The classes of an XD-Violence video from the `label_...` part of its name; `()` for normal
    (`label_A`), None if there is no label or a code is unknown."""
    m = re.search(r"_label_([A-Za-z0-9-]+)$", name)
    if not m:
        return None
    codes = [c for c in m[1].split("-") if c != "0"]
    if codes == ["A"]:
        return ()
    if not codes or any(c not in XD_CODES for c in codes):
        return None
    return tuple(sorted({XD_CODES[c] for c in codes}))


def video_entry(name: str, dataset: str, folder: str | None = None) -> tuple[VideoEntry, str | None]:
    """A VideoEntry from a video name (and the list folder, UCF only); the second value is a problem
    description when the class cannot be read from the name."""
    if dataset == "ucf-crime":
        cls = ucf_class(name)
        if cls is None:
            expected = "expected a name like Abuse001_x264 or Normal_Videos_001_x264"
            return VideoEntry(name, 0, ()), f"unknown class for video {name} ({expected})"
        if folder is not None and folder in UCF_CLASSES + ("Normal",) and folder != cls:
            return VideoEntry(name, 0, ()), f"video {name} is in folder {folder} but its name says {cls}"
        if folder is not None and folder in UCF_NORMAL_FOLDERS and cls != "Normal":
            return VideoEntry(name, 0, ()), f"video {name} is in normal folder {folder} but its name says {cls}"
        if cls == "Normal":
            return VideoEntry(name, 0, ()), None
        return VideoEntry(name, 1, (cls,)), None
    check_dataset_name(dataset)
    classes = xd_classes(name)
    if classes is None:
        known = ", ".join(sorted(XD_CODES)) + ", A"
        return VideoEntry(name, 0, ()), f"unknown class for video {name} (expected _label_<codes> with codes {known})"
    return VideoEntry(name, int(bool(classes)), classes), None


def _read_lines(path: Path) -> list[str]:
    # newline=None: CRLF and LF both end a line; utf-8-sig drops a byte-order mark if an editor wrote one.
    with open(path, encoding="utf-8-sig", newline=None) as f:
        return [line.rstrip("\r\n") for line in f]


def read_list(path: str | os.PathLike, dataset: str) -> VideoList:
    """Parse a list file into its videos, in order of first appearance.

    Per-crop lists name each video once per crop; the video appears once in the result. A crop listed
    twice, or a video whose lines are not consecutive, is reported as a duplicate in `problems`.
    Raises ValueError (file and line number) on a line that names no feature or video file.
    """
    path = Path(path)
    check_dataset_name(dataset)
    videos: list[VideoEntry] = []
    problems: list[str] = []
    first_line: dict[str, int] = {}  # video -> line number of its first line
    seen_crops: dict[str, set[int | None]] = {}
    previous: str | None = None
    for number, raw in enumerate(_read_lines(path), start=1):
        text = raw.strip()
        if not text:
            continue
        parsed = parse_feature_name(_basename(text))
        if parsed is None:
            raise ValueError(
                f"{path}:{number}: cannot read a video from {text!r} "
                "(expected <Video>__<crop>.npy, <Video>_i3d.npy, <Video>__vggish.npy or <Video>.mp4)"
            )
        name, crop = parsed
        if name in first_line:
            if crop in seen_crops[name] or previous != name:
                what = f"crop {crop}" if crop is not None else "it"
                problems.append(
                    f"{path}:{number}: duplicate video {name} (first listed on line {first_line[name]}, {what} again)"
                )
            seen_crops[name].add(crop)
            previous = name
            continue
        parts = re.split(r"[\\/]", text)
        folder = parts[-2] if len(parts) >= 2 else None
        entry, problem = video_entry(name, dataset, folder)
        if problem:
            problems.append(f"{path}:{number}: {problem}")
        first_line[name] = number
        seen_crops[name] = {crop}
        videos.append(entry)
        previous = name
    if not videos:
        raise ValueError(f"{path}: the list names no videos")
    return VideoList(path, videos, problems)


def _int(token: str, path: Path, number: int) -> int:
    try:
        return int(token)
    except ValueError:
        raise ValueError(f"{path}:{number}: expected an integer frame index, got {token!r}") from None


def _windows(tokens: list[str], path: Path, number: int) -> tuple[tuple[int, int], ...]:
    if len(tokens) % 2:
        raise ValueError(f"{path}:{number}: window starts and ends must come in pairs, got {len(tokens)} numbers")
    values = [_int(t, path, number) for t in tokens]
    windows = []
    for start, end in zip(values[0::2], values[1::2]):
        if start == -1 and end == -1:
            continue  # Sultani / UR-DMU: no (further) window
        if start < 0 or end < start:
            raise ValueError(f"{path}:{number}: invalid window ({start}, {end})")
        windows.append((start, end))
    return tuple(windows)


def parse_annotation_line(text: str, path: Path, number: int) -> Annotation:
    """One annotation line in any of the three formats (see the module docstring)."""
    tokens = text.split()
    name = _strip_video_suffix(_basename(tokens[0]))
    rest = tokens[1:]
    is_class = [bool(re.fullmatch(r"[A-Za-z][A-Za-z_]*", t)) for t in rest[:2]]
    if len(rest) >= 4 and is_class == [False, True]:
        # UR-DMU: NFRAMES Class s1 e1 ...
        n_frames = _int(rest[0], path, number)
        if n_frames <= 0:
            raise ValueError(f"{path}:{number}: frame count must be positive, got {n_frames}")
        return Annotation(name, _windows(rest[2:], path, number), n_frames, path, number)
    if rest and is_class[0]:
        # Sultani: Class s1 e1 s2 e2
        return Annotation(name, _windows(rest[1:], path, number), None, path, number)
    # XD-Violence: s1 e1 [s2 e2 ...]
    return Annotation(name, _windows(rest, path, number), None, path, number)


def read_annotations(path: str | os.PathLike) -> dict[str, Annotation]:
    """Parse an annotation file into {video name: Annotation}, in file order.

    Raises ValueError (file and line number) on a malformed line or a video annotated twice.
    """
    path = Path(path)
    out: dict[str, Annotation] = {}
    for number, raw in enumerate(_read_lines(path), start=1):
        text = raw.strip()
        if not text:
            continue
        ann = parse_annotation_line(text, path, number)
        if ann.name in out:
            first = out[ann.name].line
            raise ValueError(f"{path}:{number}: video {ann.name} is annotated twice (first on line {first})")
        out[ann.name] = ann
    return out
