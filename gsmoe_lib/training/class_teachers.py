"""Per-class teachers, an extension (not in the paper): each expert's TGS pseudo-labels from a detector of its
own class.

The paper splats one teacher's scores, the TGS encoder's, into the targets of every expert and of the gate.
Measured on our worlds (docs/studies/recipe.md §6), the experts then copy that one teacher whatever they read,
and the gate, trained to the same targets, adds nothing over them. With `ExpertsConfig.teacher = "per-class"`,
expert e's teacher is a top-k MIL MLP of its own: trained on expert e's pool (the abnormal training videos of
class e, or of cluster e) against the normal training videos, on the snippets' input features, with the top-k
MIL reference's loss (`losses.mil_bce`, k = max(S // 16, 1)) and optimiser (Adam). Its scores of the pool's
samples are splatted by TGS (the experts' `TGSConfig`) into expert e's pseudo-labels (`pool_targets`). With
`GateConfig.teacher = "per-class"` the gate's pseudo-label of an abnormal sample is the largest of its own
pools' targets (an XD video of several classes has several).

Settings: `ExpertsConfig.class_teacher` (`config.ClassTeacherConfig`). Training data: each training video's
crops averaged, pooled to `n_segments` (as the top-k MIL reference); the scores that become targets are of the
stage's own samples (each crop, the stage's segments). All E teachers train at once (`StackedTopKMLP`), each on
its own batch (`moe_stages.per_expert_batches`), from their own generator and RNG stream, so the teachers do not
depend on what ran before them.

Length: the validation rule of every stage, per teacher. Every `validate_every` steps each teacher's own-class
AUC on the held-out training videos (`validation.own_class_auc`); each teacher keeps its best state (a teacher
with no held-out video of its own keeps its last); all stop when none improved by `validation.min_delta` for
`patience` validations, or after `iterations`. With nothing held out (selection "fixed"), `iterations` steps.

The trained teachers are saved in RUN/class_teachers/<key>.pt (the key hashes the settings, the data, the
split, the seed and the pools), so the gate and a resumed stage reuse the experts' teachers.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from gsmoe_lib import runs
from gsmoe_lib.losses import mil_bce
from gsmoe_lib.models.topk_mil import StackedTopKMLP
from gsmoe_lib.tgs import TGSConfig, pseudo_labels
from gsmoe_lib.training.config import ClassTeacherConfig, PipelineConfig, data_identity
from gsmoe_lib.training.stages import SEED_OFFSETS
from gsmoe_lib.training.validation import HeldOut, hold_out, own_class_auc

TEACHERS = ("encoder", "per-class")
BatchesFor = Callable[[torch.Tensor, torch.Tensor, int, int, torch.Generator], Iterator[torch.Tensor]]


def check_teacher(name: str, where: str) -> None:
    if name not in TEACHERS:
        raise ValueError(f"{where}.teacher must be one of {TEACHERS}, got {name!r}")


def video_inputs(x: torch.Tensor, video_index: torch.Tensor, n_segments: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each video's crops averaged and pooled to n_segments: x [N, S, D] of samples -> ([V, n_segments, D],
    first [V]: the first sample of each video, in sorted video order)."""
    videos, inverse = torch.unique(video_index.cpu(), return_inverse=True)
    sums = torch.zeros(len(videos), *x.shape[1:], dtype=x.dtype).index_add_(0, inverse, x.cpu())
    mean = sums / torch.bincount(inverse, minlength=len(videos)).to(x.dtype)[:, None, None]  # [V, S, D]
    pooled = F.adaptive_avg_pool1d(mean.transpose(1, 2), n_segments).transpose(1, 2)  # [V, n_segments, D]
    first = torch.full((len(videos),), len(inverse), dtype=torch.long).scatter_reduce_(
        0, inverse, torch.arange(len(inverse)), "amin")
    return pooled.contiguous(), first


def train_teachers(x: torch.Tensor, labels: torch.Tensor, member: torch.Tensor, val: HeldOut | None,
                   ct: ClassTeacherConfig, seed: int, batches_for: BatchesFor, min_delta: float = 0.0,
                   progress: bool = False) -> tuple[StackedTopKMLP, list[dict[str, Any]]]:
    """E teachers trained on videos x [V, S, D] (labels [V]; member [V, E]: video in expert e's pool), each
    keeping its best held-out own-class AUC (`val`: video-level HeldOut, or None). Returns the model (eval mode)
    and the validation history."""
    E, D = member.shape[1], x.shape[-1]
    gen = torch.Generator().manual_seed(seed + SEED_OFFSETS["class-teachers"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + SEED_OFFSETS["class-teachers"])  # dropout masks: the same whatever ran before
        model = StackedTopKMLP(E, D, ct.hidden, ct.dropout, generator=gen).train()
        optimizer = torch.optim.Adam(model.parameters(), lr=ct.lr, weight_decay=ct.weight_decay)
        k = max(ct.n_segments // 16, 1)
        train_mask = val.train_mask if val is not None else torch.ones(len(labels), dtype=torch.bool)
        normal = torch.nonzero((labels.cpu() == 0) & train_mask).flatten()
        batches = batches_for(member & train_mask[:, None], normal, ct.batch_normal, ct.batch_abnormal, gen)
        y = torch.cat([torch.zeros(ct.batch_normal), torch.ones(ct.batch_abnormal)]).repeat(E)  # [E·B]
        own = member[val.rows] if val is not None and len(val.rows) else None  # [V', E]
        best = torch.full((E,), -1.0)
        kept = [p.detach().clone() for p in model.parameters()]
        history: list[dict[str, Any]] = []
        since = 0
        for i in tqdm(range(1, ct.iterations + 1), desc="class teachers", unit="it", disable=not progress,
                      leave=False):
            idx = next(batches)  # [E, B]
            loss = mil_bce(model.per_batch(x[idx]).flatten(0, 1), y, k)  # x[idx] [E, B, S, D] -> [E·B, S]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if own is None or (i % ct.validate_every and i != ct.iterations):
                continue
            model.eval()
            with torch.no_grad():
                auc = torch.tensor(own_class_auc(val, model(x[val.rows]), k, own))  # [E], NaN: no own video
            model.train()
            better = auc > best + min_delta  # [E] resets the patience (NaN compares False)
            improved = auc > best  # [E] kept as the teacher's best state
            take = improved | auc.isnan()  # no held-out video of its own: its last state is kept
            with torch.no_grad():
                for saved, p in zip(kept, model.parameters()):
                    saved[take] = p.detach()[take]
            best = torch.where(improved, auc, best)
            history.append({"iteration": i, "loss": float(loss.detach()), "own_class_auc": auc.tolist(),
                            "improved": int(better.sum())})
            since = 0 if bool(better.any()) else since + 1
            if since >= ct.patience:
                break
        if own is not None:
            with torch.no_grad():
                for saved, p in zip(kept, model.parameters()):
                    p.copy_(saved)
    return model.eval(), history


def teacher_key(cfg: PipelineConfig, pools: torch.Tensor) -> str:
    """What identifies a run's teachers: their settings, the data, the split, the seed and the pools [N, E]."""
    pools_hash = hashlib.sha256(pools.cpu().numpy().tobytes() + str(tuple(pools.shape)).encode()).hexdigest()[:16]
    return runs.config_hash({"class_teacher": asdict(cfg.experts.class_teacher), "data": data_identity(cfg.data),
                             "validation": asdict(cfg.validation), "seed": cfg.seed, "pools": pools_hash})


def class_teacher_scores(cfg: PipelineConfig, x: torch.Tensor, labels: torch.Tensor, class_index: torch.Tensor,
                         video_index: torch.Tensor, classes: tuple[str, ...], pools: torch.Tensor,
                         run_dir: str | Path, batches_for: BatchesFor, progress: bool = False
                         ) -> tuple[torch.Tensor, dict[str, Any]]:
    """Each pool's teacher's scores of its own samples: [N, S, E] (0 outside the pools) and a summary for the
    stage's metrics. x [N, S, D]: the stage's samples' input features; labels, class_index, video_index: theirs
    (`moe_stages.flat_labels`); pools [N, E] bool: every sample (held-out included) of each expert's pool."""
    ct = cfg.experts.class_teacher
    xv, first = video_inputs(x, video_index, ct.n_segments)  # [V, S', D], [V]
    labels_v, member_v = labels.cpu()[first], pools.cpu()[first]  # [V], [V, E]
    path = Path(run_dir) / "class_teachers" / f"{teacher_key(cfg, pools)}.pt"
    if path.exists():
        saved = runs.load_checkpoint(path, "class_teachers")
        model = StackedTopKMLP(**saved["model_args"])
        model.load_state_dict(saved["state_dict"])
        model.eval()
        history = saved["history"]
    else:
        val = hold_out(labels_v, class_index.cpu()[first], video_index.cpu()[first], classes, cfg.validation)
        model, history = train_teachers(xv, labels_v, member_v, val if len(val.rows) else None, ct, cfg.seed,
                                        batches_for, cfg.validation.min_delta, progress)
        runs.save_checkpoint(path, {"model_args": model.model_args, "state_dict": model.state_dict(),
                                    "history": history}, "class_teachers")
    rows = torch.nonzero(pools.any(1)).flatten()
    scores = torch.zeros(*x.shape[:2], pools.shape[1])  # [N, S, E]
    with torch.no_grad():
        for part in rows.split(64):
            scores[part] = model(x[part.to(x.device)].cpu().float())
    scores = smooth_scores(scores, ct.smooth) * pools.cpu()[:, None, :]
    best = [max((h["own_class_auc"][e] for h in history), default=float("nan")) for e in range(pools.shape[1])]
    summary = {"class_teacher_steps": history[-1]["iteration"] if history else ct.iterations,
               "class_teacher_own_class_auc": best}
    return scores, summary


def smooth_scores(scores: torch.Tensor, window: int) -> torch.Tensor:
    """Centred moving average over `window` snippets (odd; the ends repeat the edge score): [N, S, E] -> same."""
    if window < 1 or window % 2 == 0:
        raise ValueError(f"class_teacher.smooth must be an odd number of snippets >= 1, got {window}")
    if window == 1:
        return scores
    x = scores.permute(0, 2, 1).flatten(0, 1)[:, None]  # [N·E, 1, S]
    x = F.avg_pool1d(F.pad(x, (window // 2, window // 2), mode="replicate"), window, stride=1)
    return x[:, 0].unflatten(0, (scores.shape[0], scores.shape[2])).permute(0, 2, 1)


def pool_targets(scores: torch.Tensor, member: torch.Tensor, tgs_cfg: TGSConfig) -> torch.Tensor:
    """TGS pseudo-labels of each pool from its teacher's scores: scores [N, S, E], member [N, E] bool ->
    targets [N, S, E] (0 outside each pool)."""
    out = torch.zeros_like(scores)
    for e in range(scores.shape[-1]):
        mine = torch.nonzero(member[:, e].cpu()).flatten()
        if len(mine):
            out[mine, :, e] = pseudo_labels(scores[mine, :, e], tgs_cfg).to(out)
    return out
