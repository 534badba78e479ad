"""I3D ResNet-50: the 2048-d features the paper names ("The I3D implementation chosen is the ResNet50") and
RTFM's UCF-Crime release. Written from the architecture facts of the Caffe2 I3D baseline
(`i3d_baseline_32x2_IN_pretrain_400k`, converted to `i3d_r50_kinetics.pth`), with the parameter names of
Tushar-N/pytorch-resnet3d's `I3Res50` so its files load strictly:

    conv1 (5x7x7, stride 2, pad 2,3,3) -> bn1 -> ReLU -> max pool (2x3x3, stride 2)
    -> layer1 (3 bottlenecks, 64) -> max pool (2x1x1, stride 2,1,1)
    -> layer2 (4, 128, spatial stride 2) -> layer3 (6, 256, stride 2) -> layer4 (3, 512, stride 2)
    -> AdaptiveAvgPool3d(1): the 2048-d feature; `fc` (the Kinetics head) is kept for strict loading only.

A bottleneck's first convolution is temporal (3x1x1) or not (1x1x1) by the pattern of the baseline
(TEMPORAL below); BatchNorm has PyTorch's default eps 1e-5. Non-local blocks (`use_nl`: after blocks 1 and 3
of layer2 and blocks 1, 3, 5 of layer3; keys `layerX.i.nl.{theta,phi,g,out,bn}.*`) are optional and are
switched on when the weights file holds them.

On a 16 x 224 x 224 clip layer4 is [2048, 2, 7, 7] and the average pool gives one 2048-d feature.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

FEATURE_DIM = 2048
BLOCKS = (3, 4, 6, 3)
WIDTHS = (64, 128, 256, 512)
# 1 = a 3x1x1 temporal kernel in the block's first convolution, 0 = 1x1x1 (the I3D baseline's pattern)
TEMPORAL = ((1, 1, 1), (1, 0, 1, 0), (1, 0, 1, 0, 1, 0), (0, 1, 0))
NON_LOCAL_LAYERS = (2, 3)  # with use_nl, odd-numbered blocks of these layers carry a non-local block


class NonLocal(nn.Module):
    """Embedded-Gaussian non-local block (Wang et al. 2018), with a 1x2x2 max pool on phi and g."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        inner = channels // 2
        self.theta = nn.Conv3d(channels, inner, 1)
        self.phi = nn.Conv3d(channels, inner, 1)
        self.g = nn.Conv3d(channels, inner, 1)
        self.out = nn.Conv3d(inner, channels, 1)
        self.bn = nn.BatchNorm3d(channels)
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        pooled = F.max_pool3d(x, (1, 2, 2), (1, 2, 2))
        theta = self.theta(x).flatten(2)  # [B, inner, N]
        phi = self.phi(pooled).flatten(2)  # [B, inner, M]
        g = self.g(pooled).flatten(2)  # [B, inner, M]
        attn = torch.softmax(theta.transpose(1, 2) @ phi * self.inner ** -0.5, dim=-1)  # [B, N, M]
        y = (g @ attn.transpose(1, 2)).view(b, self.inner, *x.shape[2:])  # [B, inner, T, H, W]
        return x + self.bn(self.out(y))


class Bottleneck(nn.Module):
    def __init__(self, in_ch: int, width: int, stride: int, temporal: int, downsample: bool, nl: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(in_ch, width, (1 + 2 * temporal, 1, 1), padding=(temporal, 0, 0), bias=False)
        self.bn1 = nn.BatchNorm3d(width)
        self.conv2 = nn.Conv3d(width, width, (1, 3, 3), (1, stride, stride), (0, 1, 1), bias=False)
        self.bn2 = nn.BatchNorm3d(width)
        self.conv3 = nn.Conv3d(width, width * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm3d(width * 4)
        self.downsample = (nn.Sequential(nn.Conv3d(in_ch, width * 4, 1, (1, stride, stride), bias=False),
                                         nn.BatchNorm3d(width * 4)) if downsample else None)
        self.nl = NonLocal(width * 4) if nl else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out = F.relu(out + (x if self.downsample is None else self.downsample(x)))
        return out if self.nl is None else self.nl(out)


class I3DResNet50(nn.Module):
    """`features(clips)`: [B, 3, 16, 224, 224] -> [B, 2048]. n_classes: the head's width (400 for Kinetics)."""

    feature_dim = FEATURE_DIM

    def __init__(self, n_classes: int = 400, use_nl: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(3, 64, (5, 7, 7), (2, 2, 2), (2, 3, 3), bias=False)
        self.bn1 = nn.BatchNorm3d(64)
        in_ch = 64
        for i, (n, width, temporal) in enumerate(zip(BLOCKS, WIDTHS, TEMPORAL), start=1):
            stride = 1 if i == 1 else 2
            blocks = []
            for j in range(n):
                nl = use_nl and i in NON_LOCAL_LAYERS and j % 2 == 1
                blocks.append(Bottleneck(in_ch, width, stride if j == 0 else 1, temporal[j], j == 0, nl))
                in_ch = width * 4
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
        self.fc = nn.Linear(FEATURE_DIM, n_classes)

    def features(self, clips: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(clips)))  # [B, 64, 8, 112, 112]
        x = F.max_pool3d(x, (2, 3, 3), (2, 2, 2))  # [B, 64, 4, 55, 55]
        x = self.layer1(x)
        x = F.max_pool3d(x, (2, 1, 1), (2, 1, 1))  # [B, 256, 2, 55, 55]
        x = self.layer4(self.layer3(self.layer2(x)))  # [B, 2048, 2, 7, 7]
        return F.adaptive_avg_pool3d(x, 1).flatten(1)  # [B, 2048]
