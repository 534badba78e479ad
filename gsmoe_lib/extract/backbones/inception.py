"""Inception-I3D, RGB (Carreira & Zisserman 2017): the 1024-d features of the UCF-Crime and XD-Violence releases.

Written from the architecture facts (the paper's Inception-v1 inflated to 3D, the TensorFlow release's
layer names and widths), not from any port's code:

    Conv3d_1a_7x7 (64, stride 2) -> MaxPool3d_2a_3x3 (1x3x3, stride 1,2,2) -> Conv3d_2b_1x1 (64)
    -> Conv3d_2c_3x3 (192) -> MaxPool3d_3a_3x3 (1x3x3, stride 1,2,2) -> Mixed_3b, Mixed_3c
    -> MaxPool3d_4a_3x3 (3x3x3, stride 2) -> Mixed_4b .. Mixed_4f -> MaxPool3d_5a_2x2 (2x2x2, stride 2)
    -> Mixed_5b, Mixed_5c (1024 channels) -> AvgPool3d([2, 7, 7], stride 1) -> the feature

Every convolution has TensorFlow "same" padding (asymmetric when needed, computed from the input size) and
BatchNorm with eps 1e-3, no bias; the head `logits` (a 1x1x1 convolution with bias) is kept only so that the
published files load strictly. On a 16 x 224 x 224 clip Mixed_5c is [1024, 2, 7, 7], and the average pool
gives [1024, 1, 1, 1]: one 1024-d feature per snippet.

Module names follow piergiaj/pytorch-i3d (`Conv3d_1a_7x7.conv3d.weight`, `Mixed_5c.b3b.bn.*`,
`logits.conv3d.*`); `weights.KEY_SETS` translates the hassony2 port's names (`conv3d_1a_7x7.batch3d.*`,
`mixed_5c.branch_3.1.*`, `conv3d_0c_1x1.*`). For a 16 x 224 x 224 input both ports pad identically (every
size is divisible by its stride), so one model serves both.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

FEATURE_DIM = 1024

# (in channels, [b0, b1a, b1b, b2a, b2b, b3b]) of each Inception block, from the TensorFlow release
MIXED: dict[str, tuple[int, tuple[int, int, int, int, int, int]]] = {
    "Mixed_3b": (192, (64, 96, 128, 16, 32, 32)),
    "Mixed_3c": (256, (128, 128, 192, 32, 96, 64)),
    "Mixed_4b": (480, (192, 96, 208, 16, 48, 64)),
    "Mixed_4c": (512, (160, 112, 224, 24, 64, 64)),
    "Mixed_4d": (512, (128, 128, 256, 24, 64, 64)),
    "Mixed_4e": (512, (112, 144, 288, 32, 64, 64)),
    "Mixed_4f": (528, (256, 160, 320, 32, 128, 128)),
    "Mixed_5b": (832, (256, 160, 320, 32, 128, 128)),
    "Mixed_5c": (832, (384, 192, 384, 48, 128, 128)),
}


def same_padding(x: torch.Tensor, kernel: tuple[int, ...], stride: tuple[int, ...]) -> torch.Tensor:
    """TensorFlow "same" padding of x [B, C, T, H, W] for a kernel / stride: the output is ceil(size / stride)
    and the extra pixel of an odd total goes after (zeros; a max pool here follows a ReLU, so 0 is neutral)."""
    pads: list[int] = []
    for size, k, s in zip(x.shape[2:], kernel, stride):
        total = max(k - s, 0) if size % s == 0 else max(k - size % s, 0)
        pads.append(total // 2)
        pads.append(total - total // 2)
    # F.pad takes the last axis first: (W before, W after, H before, H after, T before, T after)
    return F.pad(x, [pads[4], pads[5], pads[2], pads[3], pads[0], pads[1]])


class Unit3D(nn.Module):
    """Conv3d ("same" padding, no bias) -> BatchNorm3d (eps 1e-3) -> ReLU; or, for the head, a conv with bias."""

    def __init__(self, in_ch: int, out_ch: int, kernel=(1, 1, 1), stride=(1, 1, 1), head: bool = False,
                 bn_eps: float = 1e-3) -> None:
        super().__init__()
        self.kernel, self.stride, self.head = tuple(kernel), tuple(stride), head
        self.conv3d = nn.Conv3d(in_ch, out_ch, self.kernel, self.stride, bias=head)
        if not head:
            self.bn = nn.BatchNorm3d(out_ch, eps=bn_eps, momentum=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(same_padding(x, self.kernel, self.stride))
        return x if self.head else F.relu(self.bn(x))


class MaxPoolSame(nn.Module):
    def __init__(self, kernel, stride) -> None:
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool3d(same_padding(x, self.kernel, self.stride), self.kernel, self.stride)


class Mixed(nn.Module):
    """An Inception block: four branches (1x1; 1x1 -> 3x3; 1x1 -> 3x3; 3x3 max pool -> 1x1), concatenated."""

    def __init__(self, in_ch: int, widths: tuple[int, ...], bn_eps: float = 1e-3) -> None:
        super().__init__()
        w0, w1a, w1b, w2a, w2b, w3b = widths
        self.b0 = Unit3D(in_ch, w0, bn_eps=bn_eps)
        self.b1a = Unit3D(in_ch, w1a, bn_eps=bn_eps)
        self.b1b = Unit3D(w1a, w1b, (3, 3, 3), bn_eps=bn_eps)
        self.b2a = Unit3D(in_ch, w2a, bn_eps=bn_eps)
        self.b2b = Unit3D(w2a, w2b, (3, 3, 3), bn_eps=bn_eps)
        self.b3a = MaxPoolSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(in_ch, w3b, bn_eps=bn_eps)
        self.out_channels = w0 + w1b + w2b + w3b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], dim=1)


class InceptionI3d(nn.Module):
    """Inception-I3D, RGB. `features(clips)`: [B, 3, 16, 224, 224] -> [B, 1024]. n_classes: the head's width
    (400 Kinetics, 157 Charades), read from the weights file; the head is not used for features."""

    feature_dim = FEATURE_DIM

    def __init__(self, n_classes: int = 400, bn_eps: float = 1e-3) -> None:
        super().__init__()
        self.Conv3d_1a_7x7 = Unit3D(3, 64, (7, 7, 7), (2, 2, 2), bn_eps=bn_eps)
        self.MaxPool3d_2a_3x3 = MaxPoolSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64, bn_eps=bn_eps)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3), bn_eps=bn_eps)
        self.MaxPool3d_3a_3x3 = MaxPoolSame((1, 3, 3), (1, 2, 2))
        self.Mixed_3b = Mixed(*MIXED["Mixed_3b"], bn_eps=bn_eps)
        self.Mixed_3c = Mixed(*MIXED["Mixed_3c"], bn_eps=bn_eps)
        self.MaxPool3d_4a_3x3 = MaxPoolSame((3, 3, 3), (2, 2, 2))
        for name in ("Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f"):
            setattr(self, name, Mixed(*MIXED[name], bn_eps=bn_eps))
        self.MaxPool3d_5a_2x2 = MaxPoolSame((2, 2, 2), (2, 2, 2))
        self.Mixed_5b = Mixed(*MIXED["Mixed_5b"], bn_eps=bn_eps)
        self.Mixed_5c = Mixed(*MIXED["Mixed_5c"], bn_eps=bn_eps)
        self.logits = Unit3D(FEATURE_DIM, n_classes, head=True)
        self.order = ["Conv3d_1a_7x7", "MaxPool3d_2a_3x3", "Conv3d_2b_1x1", "Conv3d_2c_3x3", "MaxPool3d_3a_3x3",
                      "Mixed_3b", "Mixed_3c", "MaxPool3d_4a_3x3", "Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e",
                      "Mixed_4f", "MaxPool3d_5a_2x2", "Mixed_5b", "Mixed_5c"]

    def features(self, clips: torch.Tensor) -> torch.Tensor:
        """clips [B, 3, 16, 224, 224] -> [B, 1024]: AvgPool3d([2, 7, 7], stride 1) after Mixed_5c."""
        x = clips
        for name in self.order:
            x = getattr(self, name)(x)  # Mixed_5c: [B, 1024, 2, 7, 7]
        x = F.avg_pool3d(x, (2, 7, 7), stride=1)  # [B, 1024, T', H', W'] ([B, 1024, 1, 1, 1] for 16 x 224 x 224)
        # A larger input leaves several positions; their mean keeps one vector per clip (the release's 224 gives 1).
        return x.flatten(2).mean(-1)
