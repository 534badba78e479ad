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
