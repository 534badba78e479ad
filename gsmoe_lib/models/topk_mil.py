"""The top-k MIL MLP: a one-hidden-layer network scoring each segment, the second reference detector.

The plainest member of the family that RTFM and UR-DMU come from: no temporal context, no memory, no
auxiliary terms; trained with BCE of the mean of each video's top-k segment scores against the video label
(`losses.mil_bce`, the same MIL term UR-DMU's objective starts with). If a GS-MoE stage falls below it on the
same features, the stage, not the features, is at fault (`training.topk_mil`).

    x [..., T, D] -> Linear(D, 512) -> ReLU -> Dropout(0.6) -> Linear(512, 1) -> sigmoid -> scores [..., T]

Parameters: D·512 + 512 + 512 + 1 = 525,313 for D = 1024 (`TopKMLP.n_parameters`).
Dimension letters: T snippets (or S pooled segments), D input feature width.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from gsmoe_lib.models.dropout import Dropout
from gsmoe_lib.models.model_args import SavesArgs


class TopKMLP(SavesArgs, nn.Module):
    """Per-segment anomaly scores: `forward(x [..., T, D]) -> scores [..., T]` (PyTorch's default init)."""

    def __init__(self, input_dim: int = 1024, hidden: int = 512, dropout: float = 0.6):
        super().__init__()
        self.model_args = dict(input_dim=input_dim, hidden=hidden, dropout=dropout)
        self.input_dim = input_dim
        self.fc1 = nn.Linear(input_dim, hidden)
        self.drop = Dropout(dropout)
        self.fc2 = nn.Linear(hidden, 1)

    @staticmethod
    def n_parameters(input_dim: int = 1024, hidden: int = 512) -> int:
        """Parameter count without building the model: 525,313 for D = 1024."""
        return input_dim * hidden + hidden + hidden + 1

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.input_dim:
            raise ValueError(f"TopKMLP: features of width {x.shape[-1]}, expected D={self.input_dim}")
        h = self.drop(self.fc1(x).relu())  # [..., T, 512]
        return self.fc2(h).squeeze(-1).sigmoid()  # [..., T]


class StackedTopKMLP(nn.Module):
    """E independent top-k MIL MLPs in one module (the per-class teachers, `training.class_teachers`).

    Each is `TopKMLP`'s network (Linear(D, H) -> ReLU -> Dropout -> Linear(H, 1) -> sigmoid) with its own
    weights, held stacked ([E, D, H], ...) so that all train in one pass, each on its own batch:

        per_batch(x [E, B, T, D]) -> scores [E, B, T]    (teacher e scores its own batch x[e])
        forward(x [..., T, D])    -> scores [..., T, E]  (every teacher scores every snippet)

    Initialised as nn.Linear (uniform in ±1/sqrt(fan_in)), from the caller's generator.
    """

    def __init__(self, n: int, input_dim: int, hidden: int = 128, dropout: float = 0.6,
                 generator: torch.Generator | None = None):
        super().__init__()
        self.model_args = dict(n=n, input_dim=input_dim, hidden=hidden, dropout=dropout)

        def uniform(*shape: int, fan_in: int) -> nn.Parameter:
            bound = 1.0 / math.sqrt(fan_in)
            return nn.Parameter((torch.rand(*shape, generator=generator) * 2 - 1) * bound)

        self.w1 = uniform(n, input_dim, hidden, fan_in=input_dim)  # [E, D, H]
        self.b1 = uniform(n, hidden, fan_in=input_dim)  # [E, H]
        self.w2 = uniform(n, hidden, fan_in=hidden)  # [E, H]
        self.b2 = uniform(n, fan_in=hidden)  # [E]
        self.drop = Dropout(dropout)

    def per_batch(self, x: Tensor) -> Tensor:
        h = torch.einsum("ebtd,edh->ebth", x, self.w1) + self.b1[:, None, None]  # [E, B, T, H]
        h = self.drop(h.relu())
        return (torch.einsum("ebth,eh->ebt", h, self.w2) + self.b2[:, None, None]).sigmoid()  # [E, B, T]

    def forward(self, x: Tensor) -> Tensor:
        h = torch.einsum("...td,edh->...teh", x, self.w1) + self.b1  # [..., T, E, H]
        h = self.drop(h.relu())
        return (torch.einsum("...teh,eh->...te", h, self.w2) + self.b2).sigmoid()  # [..., T, E]
