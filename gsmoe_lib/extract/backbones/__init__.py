"""Backbones: a registry of feature extractors, each a model with `features(clips) -> [B, D]`.

A backbone is described by a `Backbone` record: its name, its feature width D, how to build the model from a
weights file's state_dict (head width, optional blocks), and the key sets its public weights files use
(`weights.KeySet`). Decoding, crops and writing never look inside a backbone, so a third one (for example
CLIP ViT-B/16 for VadCLIP's 512-d features: a `build` that wraps the image encoder and averages its 16
per-frame embeddings, and the key set of the public file) is one more entry in BACKBONES.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn


@dataclass(frozen=True)
class Backbone:
    name: str
    feature_dim: int
    description: str
    build: Callable[[dict[str, torch.Tensor], float], nn.Module]  # (state_dict in model names, bn_eps) -> model
    default_recipe: str  # for the UCF-Crime features of this width


def _build_inception(state: dict[str, torch.Tensor], bn_eps: float) -> nn.Module:
    from gsmoe_lib.extract.backbones.inception import InceptionI3d

    head = state.get("logits.conv3d.weight")
    return InceptionI3d(n_classes=int(head.shape[0]) if head is not None else 400, bn_eps=bn_eps)


def _build_r50(state: dict[str, torch.Tensor], bn_eps: float) -> nn.Module:
    from gsmoe_lib.extract.backbones.resnet50 import I3DResNet50

    head = state.get("fc.weight")
    use_nl = any(".nl." in k for k in state)
    return I3DResNet50(n_classes=int(head.shape[0]) if head is not None else 400, use_nl=use_nl)


BACKBONES: dict[str, Backbone] = {
    "i3d-inception": Backbone("i3d-inception", 1024, "Inception-I3D RGB (Carreira & Zisserman 2017)",
                              _build_inception, "urdmu-10crop"),
    "i3d-r50": Backbone("i3d-r50", 2048, "I3D ResNet-50 (the paper's backbone; RTFM's UCF-Crime features)",
                        _build_r50, "rtfm-10crop"),
}


def get_backbone(name: str) -> Backbone:
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; expected one of {', '.join(BACKBONES)}")
    return BACKBONES[name]


def backbone_for_width(width: int) -> str:
    """The backbone whose features are `width` wide (a run's D): 1024 Inception-I3D, 2048 ResNet-50."""
    for b in BACKBONES.values():
        if b.feature_dim == width:
            return b.name
    raise ValueError(f"no backbone gives {width}-d features (known: "
                     + ", ".join(f"{b.name} {b.feature_dim}" for b in BACKBONES.values()) + "); pass --backbone")
