"""Sultani et al.'s (CVPR 2018) MIL anomaly detector: a 3-layer MLP scoring each segment on its own.

The field's reference detector (the paper's Table 1: 77.42 AUC on UCF-Crime with I3D features, 75.41 with
C3D). Here it is the floor every GS-MoE stage must clear, and a check of our training code: a network this
small, trained in seconds, shows what the raw features alone give.

    x [..., T, D] -> Linear(D, 512) -> ReLU -> Dropout(0.6)
                  -> Linear(512, 32)        -> Dropout(0.6)      (no activation, as the original)
                  -> Linear(32, 1) -> sigmoid                    -> scores [..., T] in [0, 1]

Each segment (snippet) is scored independently: there is no temporal context in the model; the ranking
loss's smoothness term (`losses.sultani_ranking_loss`) is the only thing tying neighbours together.

Sources, checked against the public code (WaqasSultani/AnomalyDetectionCVPR2018,
TrainingAnomalyDetector_public.py, Keras): Dense(512, relu) -> Dropout(0.6) -> Dense(32) -> Dropout(0.6)
-> Dense(1, sigmoid), every weight initialised `glorot_normal` (here `xavier_normal_`, biases 0) and
L2-regularised with 0.001 (here the optimiser's weight decay, see `gsmoe_lib.training.sultani`). The PyTorch ports
(ekosman/AnomalyDetectionCVPR2018-Pytorch, seominseok0429/Real-world-Anomaly-Detection-in-Surveillance-
Videos-pytorch) compute the same forward pass.

Parameters: D·512 + 512 + 512·32 + 32 + 32 + 1 = 541,249 for I3D (D = 1024), 2,114,113 for C3D (D = 4096);
see `SultaniMLP.n_parameters`.

Dimension letters: B videos, C crops, T snippets (or S pooled segments), D input feature width.
"""

from __future__ import annotations

from torch import Tensor, nn

from gsmoe_lib.models.dropout import Dropout
from gsmoe_lib.models.model_args import SavesArgs


class SultaniMLP(SavesArgs, nn.Module):
    """Per-segment anomaly scores of Sultani et al. 2018: `forward(x [..., T, D]) -> scores [..., T]`.

    input_dim: D, read from the features. hidden / bottleneck / dropout: the paper's 512 / 32 / 0.6.
    """

    LEGACY_ARGS = {"input_dim": None, "hidden": None, "bottleneck": None, "dropout": None}

    def __init__(self, input_dim: int = 1024, hidden: int = 512, bottleneck: int = 32, dropout: float = 0.6):
        super().__init__()
        self.model_args = dict(input_dim=input_dim, hidden=hidden, bottleneck=bottleneck, dropout=dropout)
        self.input_dim, self.hidden, self.bottleneck, self.dropout_p = input_dim, hidden, bottleneck, dropout
        self.fc1 = nn.Linear(input_dim, hidden)
        self.fc2 = nn.Linear(hidden, bottleneck)
        self.fc3 = nn.Linear(bottleneck, 1)
        self.drop1 = Dropout(dropout)  # the project's cheap-mask dropout (same distribution as nn.Dropout)
        self.drop2 = Dropout(dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Keras' glorot_normal on every weight, as the original code (biases start at 0, Keras' default)."""
        for fc in (self.fc1, self.fc2, self.fc3):
            nn.init.xavier_normal_(fc.weight)
            nn.init.zeros_(fc.bias)

    @staticmethod
    def n_parameters(input_dim: int = 1024, hidden: int = 512, bottleneck: int = 32) -> int:
        """Parameter count without building the model: 541,249 for D = 1024."""
        return input_dim * hidden + hidden + hidden * bottleneck + bottleneck + bottleneck + 1

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.input_dim:
            raise ValueError(f"SultaniMLP: features of width {x.shape[-1]}, expected D={self.input_dim}")
        h = self.drop1(self.fc1(x).relu())  # [..., T, 512]
        h = self.drop2(self.fc2(h))  # [..., T, 32]
        return self.fc3(h).squeeze(-1).sigmoid()  # [..., T]
