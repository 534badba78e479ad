"""UR-DMU, the task encoder of GS-MoE (Zhou et al., AAAI 2023; public code henrryzh1/UR-DMU).

Dimension letters: B videos, C crops, T snippets, D input feature size (I3D 1024, RTFM 2048),
dim the model width (512), F = 2 * dim the task-aware feature size (1024).

Architecture (the module attribute names reproduce the released checkpoints' state_dict keys exactly,
so `load_state_dict(released, strict=True)` accepts them unchanged; 6,492,929 parameters with D = 1024):

    x [N, T, D]  (N = B * C: crops are folded into the batch)
    embedding    Conv1d(D -> dim, kernel 3, padding 1) over time + ReLU              -> [N, T, dim]
    selfatt      GL-MHSA: 2 pre-norm layers (LayerNorm -> block -> + residual), each
                   attention: a bias-free Linear(dim -> 4 * heads * dim_head) gives q, k, v, t per head;
                     global branch  softmax(q k^T / sqrt(dim_head)) v
                     local branch   A t with the fixed kernel A of `local_kernel`
                     per head [global, local] concatenated, Linear(2 * heads * dim_head -> dim), dropout
                   feed-forward: Linear(dim, mlp_dim), GELU, dropout, Linear(mlp_dim, dim), dropout
                 no positional embedding                                              -> x [N, T, dim]
    Amemory, Nmemory   memory M [60, dim] each (abnormal / normal):
                   att[n, t, m] = sigmoid(x[n, t] . M[m] / sqrt(dim))
                   temporal_att[n, t] = mean of the 60 // 16 + 1 = 4 largest att[n, t, :]
                   augment[n, t] = sum_m att[n, t, m] M[m]                            -> [N, T, dim]
    encoder_mu, encoder_var   Linear(dim, dim) each, applied to the memory augmentations
    cls_head     Linear(2 * dim -> 128), ReLU, Linear(128 -> 1), Sigmoid on h = cat[x, aug]

Speed (equal up to float rounding, same parameters): the local branch and its share of `to_out` are one
[dim, dim] product applied to A x (`GLAttention`), and the memory augmentations are only formed through
encoder_mu / encoder_var as att (M W^T) + b (`MemoryUnit.read_through`). Dropout draws its mask with the
cheap CPU generator of `models.dropout`.

Evaluation (`model.eval()`) computes, for every crop independently,

    aug    = encoder_mu(Amemory augment of x) + encoder_mu(Nmemory augment of x)     [N, T, dim]
    h      = cat[x, aug]                                                              [N, T, 2 * dim]
    scores = cls_head(h)                                                              [N, T]

then averages `scores` and `h` over the crops of each video. Dropout is off, nothing is random.

Training (`model.train()`) follows UR-DMU's batch convention: the first half of the batch is normal, the
second half abnormal. With k = T // 16 + 1:
  * the memory attentions A_att (abnormal videos, abnormal memory), N_Aatt (abnormal videos, normal memory),
    N_att (normal videos, normal memory), A_Natt (normal videos, abnormal memory);
  * the triplet vectors: anchor = mean of the normal videos' x at their top-k N_att snippets, positive = the
    abnormal videos' x at their top-k N_Aatt snippets, negative = their x at their top-k A_att snippets;
  * the normal videos' normal-memory augmentation is reparameterised: mu = encoder_mu(aug),
    logvar = encoder_var(aug), sample = mu + eps * exp(logvar / 2) (mu and logvar are returned for the KL);
  * aug = sample + encoder_mu(abnormal-memory augment) on normal videos, and the sum of both encoder_mu
    augmentations on abnormal videos; scores = cls_head(cat[x, aug]);
  * the distance term's norms: |top-k (by A_att) mean of encoder_mu(abnormal-memory augment)| on abnormal
    videos, |top-k (by N_att) mean of the sample| on normal videos.
  The top-k selections are made per crop, the selected vectors and the attentions then averaged over crops,
  as UR-DMU does. `gsmoe_lib.losses.urdmu_loss` turns these into the loss.

Decision (not in the paper): the "task-aware features" handed to the experts and the gate are the head's
input h = cat[x, aug] (F = 2 * dim = 1024): the representation the anomaly head scores, the most
task-specific tensor of the encoder. `URDMU.feature_dim` gives F.

Decision (where REFERENCE.md says "row-normalised"): the local kernel is normalised exactly as UR-DMU's code
does it, `K / K.sum(-1)` with broadcasting, i.e. A[i, j] = K[i, j] / sum_m K[j, m]. K is symmetric, so every
column of A sums to 1 and rows sum to 1 only away from the two ends of the video. The released checkpoints
were trained with this kernel, so it is what reproduces their scores.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gsmoe_lib.models.blocks import MemoryLimits, attention, current_limits, mean_over_crops_in_passes
from gsmoe_lib.models.dropout import Dropout
from gsmoe_lib.models.model_args import SavesArgs


def k_for_length(T: int) -> int:
    """UR-DMU's top-k size for a video of T snippets: T // 16 + 1 (13 for T = 200).

    Defined here, with the model whose memory attention selects the top k (`forward`); `losses` imports it
    for the MIL objective (so losses -> models.urdmu, never back).
    """
    return T // 16 + 1


class URDMUOutput(NamedTuple):
    """What `URDMU.forward` returns; the fields after `features` are None in evaluation."""

    scores: Tensor  # [B, T] in [0, 1], averaged over crops
    features: Tensor  # [B, T, F] task-aware features h = cat[x, aug], averaged over crops
    A_att: Tensor | None = None  # [B/2, T] abnormal videos vs abnormal memory
    N_att: Tensor | None = None  # [B/2, T] normal videos vs normal memory
    A_Natt: Tensor | None = None  # [B/2, T] normal videos vs abnormal memory
    N_Aatt: Tensor | None = None  # [B/2, T] abnormal videos vs normal memory
    triplet_anchor: Tensor | None = None  # [B/2, dim] normal x, top-k by N_att
    triplet_positive: Tensor | None = None  # [B/2, dim] abnormal x, top-k by N_Aatt
    triplet_negative: Tensor | None = None  # [B/2, dim] abnormal x, top-k by A_att
    kl_mu: Tensor | None = None  # [B/2 * C, T, dim] normal videos, normal-memory augment
    kl_logvar: Tensor | None = None  # [B/2 * C, T, dim]
    abnormal_aug_norm: Tensor | None = None  # [B/2]
    normal_aug_norm: Tensor | None = None  # [B/2]


class TemporalEmbedding(nn.Module):
    """Conv1d over time (kernel 3, zero padding 1) + ReLU: [N, T, D] -> [N, T, dim].

    Kept a convolution: one matrix product x [W_0; W_1; W_2]^T plus two shifted additions computes the same
    and was tried, but on the 2-core CPU it was slower (training step forward + backward 1.28-1.45 s against
    1.05-1.16 s for the Conv1d, fp32).
    """

    def __init__(self, input_dim: int, dim: int) -> None:
        super().__init__()
        self.conv_1 = nn.Sequential(nn.Conv1d(input_dim, dim, kernel_size=3, padding=1), nn.ReLU())

    def forward(self, x: Tensor) -> Tensor:
        return self.conv_1(x.transpose(1, 2)).transpose(1, 2)


@lru_cache(maxsize=8)
def _cached_local_kernel(T: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    # Built outside inference mode so that a kernel first made while scoring can later be saved for
    # backward in training. Small cache: test videos come in many lengths and a kernel is T x T.
    # Built on the device itself (float64, then cast): a host-to-device copy would synchronise the host with
    # the GPU once per test video of a new length.
    with torch.inference_mode(False):
        pos = torch.arange(T, dtype=torch.float64, device=_float64_device(device))
        kernel = torch.exp(-(pos[None, :] - pos[:, None]).abs() / math.e)  # [T, T], symmetric
        kernel = kernel / kernel.sum(-1)  # broadcast over the last axis: A[i, j] = K[i, j] / sum_m K[j, m]
        return kernel.to(device=device, dtype=dtype)


def _float64_device(device: torch.device) -> torch.device:
    """Where the float64 kernels are built: the device itself, except Apple's MPS, which has no float64."""
    return torch.device("cpu") if device.type == "mps" else device


def local_kernel(T: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> Tensor:
    """UR-DMU's fixed local attention [T, T]: K[i, j] = exp(-|i - j| / e), A[i, j] = K[i, j] / sum_m K[j, m].

    Cached per (T, device, dtype); the returned tensor is shared, do not modify it in place.
    """
    return _cached_local_kernel(T, torch.device(device), dtype)


# Long videos: beyond |i - j| = LOCAL_BAND the kernel exp(-|i - j| / e) is below exp(-64 / e) = 6e-11 of its
# diagonal, under float32 resolution, so the local branch is computed as a banded product (cost O(T), not
# O(T^2), and no [T, T] matrix: a 6,749-snippet test video would need 182 MB for it). Up to
# `MemoryLimits.local_dense_max_t` snippets (default DENSE_MAX_T; training's 200 segments included) the exact
# dense kernel is used.
LOCAL_BAND = 64
DENSE_MAX_T = MemoryLimits().local_dense_max_t  # 4 * LOCAL_BAND


@lru_cache(maxsize=8)
def _cached_band_blocks(band: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    # K between an output block and its previous / own / next input block of `band` snippets: [3, band, band].
    with torch.inference_mode(False):
        p = torch.arange(band, dtype=torch.float64, device=_float64_device(device))
        d = p[:, None] - p[None, :]  # i - j within the same block
        blocks = torch.stack([torch.exp(-(d + shift).abs() / math.e) for shift in (band, 0, -band)])
        return blocks.to(device=device, dtype=dtype)


def local_mix(t: Tensor) -> Tensor:
    """The local branch A t for t [N, T, H] (A = `local_kernel(T)`) -> [N, T, H].

    A = K diag(1 / c) with c[j] = sum_m K[j, m]: for T > `MemoryLimits.local_dense_max_t` (default DENSE_MAX_T)
    the columns are scaled first and K is applied block by block (blocks of LOCAL_BAND snippets, each output
    block reading its neighbours only).
    """
    N, T, H = t.shape
    if T <= current_limits().local_dense_max_t:
        return torch.matmul(local_kernel(T, t.device, t.dtype), t)
    r = math.exp(-1 / math.e)
    # made on the device: no host synchronisation per video
    j = torch.arange(T, dtype=torch.float64, device=_float64_device(t.device))
    c = ((1 - r ** (j + 1)) + r * (1 - r ** (T - 1 - j))) / (1 - r)  # [T] closed form of sum_m r^|j - m|
    u = t / c.to(device=t.device, dtype=t.dtype)[:, None]  # [N, T, H]
    B = LOCAL_BAND
    nb = -(-T // B)  # blocks
    u = F.pad(u, (0, 0, B, nb * B - T + B)).view(N, nb + 2, B, H)  # a zero block on each side
    K = _cached_band_blocks(B, t.device, t.dtype)  # [3, B, B]
    out = K[0] @ u[:, :-2] + K[1] @ u[:, 1:-1] + K[2] @ u[:, 2:]  # [N, nb, B, H]
    return out.reshape(N, nb * B, H)[:, :T]


class GLAttention(nn.Module):
    """Global-local multi-head attention: [N, T, dim] -> [N, T, dim].

    Parameters as UR-DMU (`to_qkv` gives q, k, v, t; `to_out` maps per head [global, local] back to dim), but
    the local branch is computed in a cheaper, equal order. to_out splits into the columns W_og that read the
    global outputs and W_ol that read the local ones, and the local output is A t = A x W_t^T, so

        to_out([glob, A t]) = glob W_og^T + (A x) (W_ol W_t)^T + b

    W_ol W_t is one [dim, dim] matrix made per forward (dim^2 * inner multiply-adds, once), which removes the
    t projection (dim x inner per snippet, 12 % of the layer's products) and the concatenation of the two
    branches. Equal to the literal order up to float rounding (tests compare both).
    """

    def __init__(self, dim: int, heads: int, dim_head: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dim_head = heads, dim_head
        inner = heads * dim_head
        self.to_qkv = nn.Linear(dim, 4 * inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(2 * inner, dim), Dropout(dropout))

    def forward(self, x: Tensor) -> Tensor:
        N, T, _ = x.shape
        inner = self.heads * self.dim_head
        w_qkvt = self.to_qkv.weight  # [4 * inner, dim]: rows q, k, v, t, each head-major
        q, k, v = F.linear(x, w_qkvt[: 3 * inner]).chunk(3, dim=-1)  # each [N, T, heads * dim_head]
        q, k, v = (z.view(N, T, self.heads, self.dim_head).transpose(1, 2) for z in (q, k, v))
        glob = attention(q, k, v)  # SDPA in query chunks: [N, heads, T, dim_head], scale 1/sqrt(dim_head)
        glob = glob.transpose(1, 2).reshape(N, T, inner)  # [N, T, heads * dim_head]

        out_linear = self.to_out[0]
        w_out = out_linear.weight.view(-1, self.heads, 2, self.dim_head)  # [dim, heads, (global, local), dim_head]
        w_glob = w_out[:, :, 0].reshape(-1, inner)  # W_og [dim, inner]
        w_local = w_out[:, :, 1].reshape(-1, inner) @ w_qkvt[3 * inner :]  # W_ol W_t [dim, dim]
        # The local kernel mixes time only, so it commutes with the projection: A (x W_t^T) = (A x) W_t^T.
        loc = local_mix(x)  # [N, T, dim]
        out = F.linear(glob, w_glob, out_linear.bias) + F.linear(loc.to(glob.dtype), w_local)
        return self.to_out[1](out)


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden_dim: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, hidden_dim), nn.GELU(), Dropout(dropout), nn.Linear(hidden_dim, dim), Dropout(dropout)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class PreNorm(nn.Module):
    def __init__(self, dim: int, fn: nn.Module) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fn = fn

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(self.norm(x))


class GLTransformer(nn.Module):
    """`depth` layers of x + attn(norm(x)) then x + ff(norm(x))."""

    def __init__(self, dim: int, depth: int, heads: int, dim_head: int, mlp_dim: int, dropout: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.ModuleList(
                [
                    PreNorm(dim, GLAttention(dim, heads, dim_head, dropout)),
                    PreNorm(dim, FeedForward(dim, mlp_dim, dropout)),
                ]
            )
            for _ in range(depth)
        )

    def forward(self, x: Tensor) -> Tensor:
        for attn, ff in self.layers:
            x = attn(x) + x
            x = ff(x) + x
        return x


class MemoryUnit(nn.Module):
    """A learnt memory [slots, dim]: x [N, T, dim] -> (temporal_att [N, T], augment [N, T, dim])."""

    def __init__(self, slots: int, dim: int) -> None:
        super().__init__()
        self.memory_block = nn.Parameter(torch.empty(slots, dim))
        bound = 1.0 / math.sqrt(dim)
        nn.init.uniform_(self.memory_block, -bound, bound)

    def attend(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x [N, T, dim] -> (att [N, T, slots] = sigmoid(x M^T / sqrt(dim)), temporal_att [N, T])."""
        slots, dim = self.memory_block.shape
        att = torch.sigmoid(F.linear(x, self.memory_block) / math.sqrt(dim))  # [N, T, slots]
        temporal_att = att.topk(slots // 16 + 1, dim=-1).values.mean(-1)  # [N, T]
        return att, temporal_att

    def read_through(self, att: Tensor, linear: nn.Linear) -> Tensor:
        """linear(augment) for augment = att M, computed as att (M W^T) + b: att [N, T, slots] -> [N, T, out].

        Why: UR-DMU only ever uses the augmentation through `encoder_mu` / `encoder_var`, and multiplying the
        [slots, dim] memory by W first costs 60 x 512 x 512 once instead of 512 x 512 per snippet (about 13 %
        of a training step's matrix products). Equal to linear(att @ M) up to float rounding.
        """
        return F.linear(att, linear.weight @ self.memory_block.T, linear.bias)  # weight [out, slots]

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        att, temporal_att = self.attend(x)
        return temporal_att, torch.matmul(att, self.memory_block)  # [N, T], [N, T, dim]


class ScoreHead(nn.Module):
    def __init__(self, in_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, 1), nn.Sigmoid())

    def forward(self, h: Tensor) -> Tensor:
        return self.mlp(h).squeeze(-1)


class URDMU(SavesArgs, nn.Module):
    """The UR-DMU task encoder (module docstring). Defaults are UR-DMU's; only `input_dim` varies in practice."""

    LEGACY_ARGS = {"input_dim": None}  # checkpoints before model_args recorded only D

    def __init__(
        self,
        input_dim: int = 1024,
        dim: int = 512,
        depth: int = 2,
        heads: int = 4,
        dim_head: int = 128,
        mlp_dim: int = 512,
        dropout: float = 0.5,
        memory_slots: int = 60,
        head_hidden: int = 128,
        context_window: int = 0,
    ) -> None:
        super().__init__()
        if context_window < 0:
            raise ValueError(f"context_window must be >= 0 (0: the whole sequence, UR-DMU), got {context_window}")
        self.model_args = dict(input_dim=input_dim, dim=dim, depth=depth, heads=heads, dim_head=dim_head,
                               mlp_dim=mlp_dim, dropout=dropout, memory_slots=memory_slots, head_hidden=head_hidden)
        if context_window:  # recorded only when set, so UR-DMU's checkpoints keep their exact model_args
            self.model_args["context_window"] = context_window
        self.context_window = context_window
        self.input_dim = input_dim
        self.dim = dim
        self.feature_dim = 2 * dim  # F: h = cat[x, aug]
        self.embedding = TemporalEmbedding(input_dim, dim)
        self.selfatt = GLTransformer(dim, depth, heads, dim_head, mlp_dim, dropout)
        self.Amemory = MemoryUnit(memory_slots, dim)
        self.Nmemory = MemoryUnit(memory_slots, dim)
        self.encoder_mu = nn.Sequential(nn.Linear(dim, dim))
        self.encoder_var = nn.Sequential(nn.Linear(dim, dim))
        self.cls_head = ScoreHead(self.feature_dim, head_hidden)

    def temporal(self, rows: Tensor) -> Tensor:
        """The temporal part, embedding then GL-MHSA: rows [N, T, D] -> [N, T, dim].

        UR-DMU (`context_window` 0) runs it over the whole sequence. The extension `context_window` = w > 0 runs it
        over independent windows of w consecutive steps (snippets at test time, pooled segments in training), so
        a snippet's features see at most w - 1 neighbours and nothing else of its video; the memories, the head
        and the top-k selections still read the whole sequence. Why: trained with MIL on whole videos, the
        global attention learns a video-level cue that raises every snippet of an abnormal video, which ranks
        videos but spreads or even inverts the localisation inside them (docs/studies/recipe.md §5; `gsmoe bench
        context` measures it).
        """
        w = self.context_window
        N, T, D = rows.shape
        if not w or T <= w:
            return self.selfatt(self.embedding(rows))
        full = (T // w) * w
        # [N, T//w, w, D] -> [N * T//w, w, D]: every full window is a row of one batched pass
        out = self.selfatt(self.embedding(rows[:, :full].reshape(-1, w, D))).reshape(N, full, -1)
        if full < T:  # the last, shorter window on its own
            out = torch.cat([out, self.selfatt(self.embedding(rows[:, full:]))], dim=1)
        return out  # [N, T, dim]

    def _evaluate_rows(self, rows: Tensor) -> tuple[Tensor, Tensor]:
        """Evaluation of single crops: rows [N, T, D] -> (scores [N, T], task-aware features h [N, T, F])."""
        x = self.temporal(rows)  # [N, T, dim]
        a_slots, _ = self.Amemory.attend(x)  # [N, T, slots]
        n_slots, _ = self.Nmemory.attend(x)
        # encoder_mu of both memories' augmentations, read through the memories (`read_through`)
        mu_linear = self.encoder_mu[0]  # the Sequential wrapper only reproduces the released keys
        aug = self.Amemory.read_through(a_slots, mu_linear) + self.Nmemory.read_through(n_slots, mu_linear)
        h = torch.cat([x, aug], dim=-1)  # [N, T, F]
        return self.cls_head(h), h

    def forward(self, x: Tensor, training_extras: bool | None = None) -> URDMUOutput:
        """x [B, T, D] or [B, C, T, D] -> URDMUOutput (scores [B, T], features [B, T, F], extras).

        training_extras: compute the UR-DMU training outputs (half normal / half abnormal batch,
        reparameterised normal augmentation); None follows `self.training`.
        """
        if x.dim() == 3:
            x = x.unsqueeze(1)
        if x.dim() != 4 or x.shape[-1] != self.input_dim:
            D = self.input_dim
            raise ValueError(f"URDMU expects [B, T, {D}] or [B, C, T, {D}], got {list(x.shape)}")
        B, C, T, D = x.shape
        if not (self.training if training_extras is None else training_extras):
            rows = x.reshape(B * C, T, D)
            if self.training:  # scores to train on (TGS fine-tuning): one pass, the batch was sized to fit
                scores, h = (z.view(B, C, *z.shape[1:]).mean(1) for z in self._evaluate_rows(rows))
            else:  # evaluation: a long video's crops go through a few at a time (bounded memory)
                scores, h = mean_over_crops_in_passes(lambda r, _: self._evaluate_rows(r), rows, C)
            return URDMUOutput(scores, h)  # [B, T], [B, T, F]

        x = self.temporal(x.reshape(B * C, T, D))  # [N, T, dim], N = B * C
        a_slots, a_att = self.Amemory.attend(x)  # [N, T, slots], [N, T]
        n_slots, n_att = self.Nmemory.attend(x)
        # encoder_mu of each memory's augmentation [N, T, dim], read through the memory (`read_through`).
        mu_linear = self.encoder_mu[0]  # the Sequential wrapper only reproduces the released keys
        a_mu, n_mu = self.Amemory.read_through(a_slots, mu_linear), self.Nmemory.read_through(n_slots, mu_linear)

        def crop_mean(z: Tensor) -> Tensor:  # [M * C, ...] -> [M, ...] (M = B or B/2); z itself when C = 1
            return z.view(-1, C, *z.shape[1:]).mean(1) if C > 1 else z

        if B % 2:
            raise ValueError(f"URDMU training needs an even batch (first half normal, second abnormal), got B={B}")
        half = B * C // 2  # rows [:half] are the normal videos' crops, [half:] the abnormal ones'
        k = k_for_length(T)

        def topk_rows_mean(att: Tensor, z: Tensor) -> Tensor:  # att [M, T], z [M, T, dim] -> [M, dim]
            index = att.topk(k, dim=-1).indices  # [M, k], no gradient through the selection
            return torch.gather(z, 1, index.unsqueeze(-1).expand(-1, -1, z.shape[-1])).mean(1)

        x_n, x_a = x[:half], x[half:]
        A_att, N_Aatt = a_att[half:], n_att[half:]  # abnormal videos vs abnormal / normal memory
        N_att, A_Natt = n_att[:half], a_att[:half]  # normal videos vs normal / abnormal memory

        mu = n_mu[:half]
        logvar = self.Nmemory.read_through(n_slots[:half], self.encoder_var[0])
        sample = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)  # [B/2 * C, T, dim]
        aug = torch.cat([sample + a_mu[:half], a_mu[half:] + n_mu[half:]], dim=0)  # [N, T, dim]
        h = torch.cat([x, aug], dim=-1)  # [N, T, F]
        scores = self.cls_head(h)

        return URDMUOutput(
            scores=crop_mean(scores),
            features=crop_mean(h),
            A_att=crop_mean(A_att),
            N_att=crop_mean(N_att),
            A_Natt=crop_mean(A_Natt),
            N_Aatt=crop_mean(N_Aatt),
            triplet_anchor=crop_mean(topk_rows_mean(N_att, x_n)),
            triplet_positive=crop_mean(topk_rows_mean(N_Aatt, x_a)),
            triplet_negative=crop_mean(topk_rows_mean(A_att, x_a)),
            kl_mu=mu,
            kl_logvar=logvar,
            abnormal_aug_norm=crop_mean(topk_rows_mean(A_att, a_mu[half:])).norm(dim=-1),
            normal_aug_norm=crop_mean(topk_rows_mean(N_att, sample)).norm(dim=-1),
        )


def load_released(path: str | Path, input_dim: int | None = None) -> URDMU:
    """Load a released UR-DMU checkpoint (a plain state_dict) into a `URDMU`, strictly, in eval mode.

    input_dim is read from `embedding.conv_1.0.weight` ([512, D, 3]); when given it must agree.
    """
    path = Path(path)
    try:
        # weights_only: a file carrying anything but tensors and plain values (a pickled function: code that
        # would run on load) is refused, never executed
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        raise ValueError(f"{path}: cannot read a UR-DMU checkpoint ({type(exc).__name__}: {first}); the file is "
                         "truncated, corrupt, or holds more than tensors (a pickled function, say), which is refused "
                         "and never executed") from exc
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{path}: not a UR-DMU checkpoint (expected a plain state_dict of tensors)")
    conv = state.get("embedding.conv_1.0.weight")
    if conv is None or conv.dim() != 3:
        raise ValueError(f"{path}: no 'embedding.conv_1.0.weight' [512, D, 3]; keys: {sorted(state)[:8]}...")
    if input_dim is not None and input_dim != conv.shape[1]:
        raise ValueError(f"{path}: checkpoint has input_dim {conv.shape[1]}, but input_dim={input_dim} was asked for")
    model = URDMU(input_dim=conv.shape[1])
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = [
        f"{key} {tuple(state[key].shape)} (expected {tuple(value.shape)})"
        for key, value in expected.items()
        if key in state and state[key].shape != value.shape
    ]
    if missing or unexpected or wrong_shape:
        raise ValueError(
            f"{path}: not a UR-DMU state_dict; missing keys {missing}, unexpected keys {unexpected}, "
            f"wrong shapes {wrong_shape}"
        )
    model.load_state_dict(state, strict=True)
    return model.eval()
