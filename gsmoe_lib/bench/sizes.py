"""The sizes every benchmark measurement uses: the paper's (UCF-Crime, I3D features) and a tiny set for tests.

`BenchSizes.paper()` is the default of `gsmoe bench speed`: the paper's batches (64 + 64 samples x 200
segments x D = 1024), the 13 UCF-Crime experts, and the 290 UCF-Crime test videos with their real lengths
(`ucf_test_lengths`). `BenchSizes.small()` shrinks every size so that a whole benchmark runs in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gsmoe_lib.data.ground_truth import SNIPPET_FRAMES
from gsmoe_lib.models.experts import Experts
from gsmoe_lib.models.gate import Gate
from gsmoe_lib.models.urdmu import URDMU

ANNOTATIONS = (Path(__file__).resolve().parent.parent / "data" / "resources" / "ucf_crime"
               / "UCF_Annotation_urdmu_with_framecounts.txt")


def ucf_test_lengths() -> tuple[int, ...]:
    """Snippets per UCF-Crime test video, T = floor(frames / 16), in the annotation file's order (290 videos)."""
    lengths = []
    for number, line in enumerate(ANNOTATIONS.read_text().splitlines(), 1):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) < 2 or not tokens[1].isdigit():
            raise ValueError(f"{ANNOTATIONS}:{number}: expected 'video frames class ...', got {line!r}")
        lengths.append(int(tokens[1]) // SNIPPET_FRAMES)
    return tuple(lengths)


@dataclass(frozen=True)
class BenchSizes:
    """Every size the benchmark uses; `paper()` is the default, `small()` runs in seconds."""

    input_dim: int = 1024  # D (I3D)
    urdmu_dim: int = 512
    urdmu_heads: int = 4
    urdmu_dim_head: int = 128
    urdmu_mlp_dim: int = 512
    batch_normal: int = 64  # encoder, TGS and gate steps
    batch_abnormal: int = 64
    segments: int = 200  # S
    pool: int = 512  # training samples staged on the device, batches are gathered from them
    n_experts: int = 13  # E (UCF-Crime classes)
    expert_batch_normal: int = 64  # per expert
    expert_batch_abnormal: int = 64
    expert_d_model: int = 192
    gate_d_model: int = 256
    gate_ffn_hidden: int = 1024
    crops: int = 10  # C of the test set
    test_lengths: tuple[int, ...] = ()  # T per test video; () = the UCF-Crime test set

    @classmethod
    def paper(cls) -> "BenchSizes":
        return cls(test_lengths=ucf_test_lengths())

    @classmethod
    def small(cls) -> "BenchSizes":
        return cls(input_dim=32, urdmu_dim=32, urdmu_heads=2, urdmu_dim_head=16, urdmu_mlp_dim=32,
                   batch_normal=4, batch_abnormal=4, segments=32, pool=16, n_experts=3, expert_batch_normal=2,
                   expert_batch_abnormal=2, expert_d_model=16, gate_d_model=16, gate_ffn_hidden=32, crops=2,
                   test_lengths=(37, 9, 64, 20))

    @property
    def feature_dim(self) -> int:  # F = 2 * dim, the encoder's task-aware features
        return 2 * self.urdmu_dim

    def encoder(self) -> URDMU:
        return URDMU(self.input_dim, dim=self.urdmu_dim, heads=self.urdmu_heads, dim_head=self.urdmu_dim_head,
                     mlp_dim=self.urdmu_mlp_dim)

    def experts(self) -> Experts:
        return Experts(self.n_experts, self.feature_dim, d_model=self.expert_d_model)

    def gate(self) -> Gate:
        return Gate(self.n_experts, self.feature_dim, d_model=self.gate_d_model, ffn_hidden=self.gate_ffn_hidden)

