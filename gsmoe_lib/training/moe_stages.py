"""The mixture-of-experts stages: the experts and the gate, trained on the frozen encoder's outputs.

Both read the TGS encoder's task-aware features of every training sample, computed once per run
(`encode_train_set`, shared through `lazy_train_cache`), so a step costs no encoder pass and these stages are
trained to a flat loss. Both plug into `stages.load_or_train` like every stage.

Experts train all at once: each step draws, for every expert, its own batch (normal samples + abnormal
samples of its class or cluster: `expert_membership`, `per_expert_batches`), and the stacked experts run each
expert on its own batch [E, B, S, F]. Each expert has its OWN first epoch and, with source "refresh", its own
pseudo-labels, so each refines what it finds in its class rather than one shared target. With the extension
`ExpertsConfig.teacher="per-class"` (and `GateConfig.teacher="per-class"` for the gate) the pseudo-labels come
from a teacher per class instead of the TGS encoder (`training.class_teachers`).

The gate trains on all training samples, reading the frozen experts' logits (`GateConfig.expert_input`) and,
unless `use_features=False` (Table 3), the task-aware features.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from gsmoe_lib.data.batching import TrainSet
from gsmoe_lib.device import autocast
from gsmoe_lib.models.experts import Experts
from gsmoe_lib.models.gate import Gate
from gsmoe_lib.models.gsmoe import GSMoEModel, combine_experts, expert_inputs
from gsmoe_lib.models.urdmu import URDMU, k_for_length
from gsmoe_lib.training.class_teachers import check_teacher, class_teacher_scores, pool_targets
from gsmoe_lib.training.config import ExpertsConfig, PipelineConfig, stage_config
from gsmoe_lib.training.data import Data
from gsmoe_lib.training.loop import frozen_forward, tgs_update
from gsmoe_lib.training.pseudo_labels import (FROM_TEACHER, REFRESHING, PseudoLabels, check_pseudo_labels,
                                              training_health, warmup_per_pool)
from gsmoe_lib.training.stages import (RandomStream, StageResult, Trained, Training, evaluate,
                                       held_out_validation, load_or_train, stage_generator)
from gsmoe_lib.training.validation import hold_out, own_class_auc, stage_validation, video_auc

FeatureCache = Any  # (features [N, S, F], scores [N, S]) or a zero-argument callable returning them


def encode_train_set(encoder: URDMU, train: TrainSet, device: str, amp: str = "none", chunk: int = 64,
                     progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """The frozen encoder over every pooled training sample: (features [N, S, F], scores [N, S]).

    With crops on an axis ([N, C, S, D]) the crops are folded into the sample axis, so every crop is a
    sample for the experts and the gate, as in the independent-crop mode.
    """
    encoder.eval()
    x_all = train.features
    if x_all.dim() == 4:
        x_all = x_all.flatten(0, 1)

    def forward(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = encoder(x, training_extras=False)
        return out.features, out.scores

    return frozen_forward(forward, x_all, device, amp, chunk, progress, desc="task-aware features")


def flat_labels(train: TrainSet) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """labels [N], class_index [N, K], video_index [N] per sample of `encode_train_set`'s output."""
    labels, classes, videos = train.labels, train.class_index, train.video_index
    if train.features.dim() == 4:  # crops on an axis: repeat per crop
        c = train.features.shape[1]
        labels, classes, videos = (t.repeat_interleave(c, dim=0) for t in (labels, classes, videos))
    return labels, classes, videos


def train_inputs(train: TrainSet) -> torch.Tensor:
    """The pooled training samples' input features in `encode_train_set`'s sample order: [N, S, D] (crops on an
    axis folded into the sample axis). What experts with the extension ExpertsConfig.inputs="task+i3d" read
    beside the task-aware features."""
    x = train.features
    return x.flatten(0, 1) if x.dim() == 4 else x


EXPERT_INPUTS = ("task", "task+i3d")


def lazy_train_cache(encoder: URDMU, data: Data, cfg: PipelineConfig, progress: bool = True) -> Callable[[], Any]:
    """encode_train_set, computed on the first call and remembered (stages that are done never call it)."""
    memo: list[tuple[torch.Tensor, torch.Tensor]] = []

    def get() -> tuple[torch.Tensor, torch.Tensor]:
        if not memo:
            memo.append(encode_train_set(encoder, data.train, cfg.device, cfg.amp, progress=progress))
        return memo[0]

    return get


def _resolve_cache(cache: FeatureCache | None, encoder: URDMU, data: Data, cfg: PipelineConfig, progress: bool,
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    if cache is None:
        cache = lazy_train_cache(encoder, data, cfg, progress)
    return cache() if callable(cache) else cache


def expert_membership(cfg: ExpertsConfig, train: TrainSet, features: torch.Tensor, seed: int
                      ) -> tuple[torch.Tensor, list[str]]:
    """Which abnormal samples train which expert: [N, E] bool, and the experts' names.

    "class": expert e takes the abnormal videos of class e (a multi-label XD video trains every expert of
    its labels). "cluster" (Table 5): k-means (scikit-learn) on the mean task-aware feature of each
    anomalous training video; all crops of a video follow their video's cluster.
    """
    labels, class_index, video_index = flat_labels(train)
    abnormal = (labels.cpu() == 1)
    if cfg.kind == "class":
        member = (class_index.cpu() > 0) & abnormal[:, None]
        return member, list(train.classes)
    if cfg.kind != "cluster":
        raise ValueError(f"unknown expert kind {cfg.kind!r}; expected 'class' or 'cluster'")
    from sklearn.cluster import KMeans

    videos = torch.unique(video_index[abnormal])  # abnormal video ids
    mean_feat = torch.stack([features[(video_index == v).to(features.device)].mean(dim=(0, 1)).cpu()
                             for v in videos]).numpy()  # [V_a, F]
    if cfg.n_clusters > len(videos):
        raise ValueError(f"{cfg.n_clusters} clusters requested but only {len(videos)} abnormal training videos")
    km = KMeans(n_clusters=cfg.n_clusters, n_init=10, random_state=seed).fit(mean_feat)
    cluster_of = {int(v): int(c) for v, c in zip(videos, km.labels_)}
    member = torch.zeros(len(labels), cfg.n_clusters, dtype=torch.bool)
    for i, v in enumerate(video_index.tolist()):
        if v in cluster_of:
            member[i, cluster_of[v]] = True
    return member, [f"cluster {c}" for c in range(cfg.n_clusters)]


def per_expert_batches(member: torch.Tensor, normal: torch.Tensor, batch_normal: int, batch_abnormal: int,
                       generator: torch.Generator, other_class_negatives: float = 0.0) -> Iterator[torch.Tensor]:
    """Endless index batches [E, batch_normal + batch_abnormal], negative half first, one row per expert.

    Drawn with replacement for all experts at once (one vectorised draw, no loop over experts): row e takes
    normal samples and abnormal samples of expert e's membership. With `other_class_negatives` = r > 0 (an
    extension), round(r · batch_normal) of the negatives are abnormal samples of OTHER experts instead.
    """
    E = member.shape[1]
    pools = [torch.nonzero(member[:, e]).flatten() for e in range(E)]
    empty = [e for e, p in enumerate(pools) if len(p) == 0]
    if empty:
        raise ValueError(f"experts {empty} have no abnormal training samples")
    sizes = torch.tensor([len(p) for p in pools])  # [E]
    padded = torch.nn.utils.rnn.pad_sequence(pools, batch_first=True)  # [E, max pool]
    n_other = int(round(other_class_negatives * batch_normal)) if E > 1 else 0
    if n_other:
        others = [torch.nonzero(member.any(1) & ~member[:, e]).flatten() for e in range(E)]
        o_sizes = torch.tensor([max(1, len(o)) for o in others])
        o_padded = torch.nn.utils.rnn.pad_sequence(others, batch_first=True)
    while True:
        n = normal[torch.randint(len(normal), (E, batch_normal - n_other), generator=generator)]  # [E, Bn - Bo]
        pick = (torch.rand(E, batch_abnormal, generator=generator) * sizes[:, None]).long()  # [E, Ba]
        parts = [n]
        if n_other:
            o_pick = (torch.rand(E, n_other, generator=generator) * o_sizes[:, None]).long()
            parts.append(torch.gather(o_padded, 1, o_pick))  # [E, Bo]
        parts.append(torch.gather(padded, 1, pick))
        yield torch.cat(parts, dim=1)


def train_experts(cfg: PipelineConfig, data: Data, encoder: URDMU, run_dir: str | Path, upstream: str,
                  progress: bool = True, on_step: Callable[[int], None] | None = None,
                  cache: FeatureCache | None = None, stage_name: str = "experts") -> StageResult:
    """All experts at once on the frozen encoder's task-aware features with L_TGS (module docstring).

    A sample's label for expert e is 1 only if it is in e's pool (so other classes' samples drawn as
    negatives by the `other_class_negatives` extension count as normal). Metrics: the experts combined by
    `cfg.expert_combine` without a gate (Table 2's "+experts" row).
    """
    xc, device = cfg.experts, cfg.device
    source = xc.tgs.source

    def build() -> Training:
        features, enc_scores = _resolve_cache(cache, encoder, data, cfg, progress)  # [N, S, F], [N, S]
        if xc.inputs not in EXPERT_INPUTS:
            raise ValueError(f"experts.inputs must be one of {EXPERT_INPUTS}, got {xc.inputs!r}")
        check_teacher(xc.teacher, "experts")
        labels, class_index, video_index = flat_labels(data.train)
        val = hold_out(labels, class_index, video_index, data.train.classes, cfg.validation)
        pools, names = expert_membership(xc, data.train, features, cfg.seed)  # [N, E] bool, held-out included
        member = pools & val.train_mask[:, None]  # [N, E]: what trains each expert
        E = len(names)
        raw_dim = data.train.features.shape[-1] if xc.inputs == "task+i3d" else 0
        experts = Experts(E, features.shape[-1] + raw_dim, d_model=xc.d_model, dropout=xc.dropout,
                          input_dim=raw_dim).to(device).train()
        # What the experts read, [N, S, F] (the paper) or [N, S, F + D] (the extension); membership, the
        # teacher and the gate keep the task-aware features.
        x_in = expert_inputs(experts, features, train_inputs(data.train).to(features.device))
        optimizer = torch.optim.AdamW(experts.parameters(), lr=xc.lr, weight_decay=xc.weight_decay)
        k = k_for_length(features.shape[1])
        warmup = warmup_per_pool(xc, member.sum(0), "experts")  # [E]
        store = PseudoLabels.for_stage(xc, member, features.shape[1], warmup, features.device)
        teacher_summary: dict[str, Any] = {}
        if source in FROM_TEACHER and xc.teacher == "per-class":  # the extension: each expert's own teacher
            t_scores, teacher_summary = class_teacher_scores(cfg, train_inputs(data.train), labels, class_index,
                                                             video_index, data.train.classes, pools, run_dir,
                                                             per_expert_batches, progress)  # [N, S, E]
            targets = pool_targets(t_scores, member, xc.tgs)  # [N, S, E]
            check_pseudo_labels(targets.amax(-1), t_scores.amax(-1), labels, xc.tgs, "experts")
            store.set_per_pool(targets)
        elif source in FROM_TEACHER:
            store.set_from_teacher(enc_scores, labels, "experts")
        normal = torch.nonzero((labels.cpu() == 0) & val.train_mask).flatten()
        batches = per_expert_batches(member, normal, xc.batch_normal, xc.batch_abnormal,
                                     stage_generator(cfg.seed, "experts"), xc.other_class_negatives)
        member_dev, warmup_dev = member.to(features.device), warmup.to(features.device)

        @torch.no_grad()
        def own_scores(rows: torch.Tensor) -> torch.Tensor:  # [n] -> [n, S, E], eval mode
            experts.eval()
            with autocast(device, cfg.amp):
                out = experts(x_in[rows.to(features.device)]).float()
            experts.train()
            return out

        def step(i: int, idx: torch.Tensor) -> dict[str, torch.Tensor]:
            if source in REFRESHING:
                store.refresh(i, own_scores)
            idx = idx.to(features.device)  # [E, B]
            x = x_in[idx]  # [E, B, S, F]: expert e's own batch
            with autocast(device, cfg.amp):
                scores = experts(x).float()  # [B, S, E]
            flat = scores.permute(2, 0, 1).reshape(E * idx.shape[1], -1)  # [E·B, S]
            rows = torch.arange(E, device=idx.device)[:, None].expand_as(idx)  # [E, B] expert of each sample
            y = member_dev[idx, rows].to(flat.dtype).reshape(-1)  # [E·B]: 1 only in the expert's own pool
            first = (i < warmup_dev)[rows].reshape(-1)  # [E·B]: the expert's own first epoch
            teacher = None if source == "self" else store.labels_of(idx, rows).reshape(flat.shape)
            return tgs_update(flat, y, teacher, first, xc, k, optimizer)

        def finish(history: list[dict[str, float]]) -> Trained:
            experts.eval()
            model = GSMoEModel(encoder, experts, None).eval()

            def score_fn(x: torch.Tensor):
                out = model(x, combine=cfg.expert_combine)
                return out.scores, out.expert_scores

            metrics, scores = evaluate(score_fn, data.test, cfg, progress, experts=True)
            metrics.update(training_health(store, source, history, "experts"))
            metrics.update(expert_names=names, expert_combine=cfg.expert_combine, warmup_iterations=warmup.tolist(),
                           **teacher_summary)
            return Trained(experts, metrics, scores, {**experts.checkpoint_payload(), "names": names})

        own = pools[val.rows]  # [N', E]: which held-out samples are each expert's own

        def val_score() -> dict[str, Any]:
            s = torch.cat([own_scores(r) for r in val.rows.split(256)])  # [N', S, E]
            own_auc = own_class_auc(val, s, k, own)
            combined = video_auc(val, combine_experts(s, cfg.expert_combine), k)
            finite = [a for a in own_auc if a == a]
            mean_own = sum(finite) / len(finite) if finite else float("nan")
            score = mean_own if xc.validation_score == "own" else combined
            return {"score": score, "combined": combined, "own_class_mean": mean_own, "own_class": own_auc}

        if xc.validation_score not in ("combined", "own"):
            raise ValueError(f"experts.validation_score must be 'combined' or 'own', got {xc.validation_score!r}")
        validation = stage_validation(cfg.validation, xc, val, val_score, start=int(warmup.max()),
                                      keep=("experts",))
        return Training({"experts": experts, "pseudo": store}, optimizer, xc.iterations, xc.checkpoint_every,
                        batches, step, finish, validation)

    return load_or_train(cfg, run_dir, stage_name, stage_config(cfg, "experts", upstream), "experts",
                         Experts.from_checkpoint, build, progress, on_step)


def train_gate(cfg: PipelineConfig, data: Data, encoder: URDMU, experts: Experts, run_dir: str | Path,
               upstream: str, progress: bool = True, on_step: Callable[[int], None] | None = None,
               cache: FeatureCache | None = None, stage_name: str = "gate") -> StageResult:
    """The gate on all training samples with L_TGS; encoder and experts frozen (their outputs are cached).

    Pseudo-labels as the other stages (source "refresh": the gate's own scores, after its first epoch).
    `feature_dropout` (an extension) zeroes a sample's feature stream with that probability during training.
    The result's model is the whole detector, `GSMoEModel(encoder, experts, gate)`.
    """
    gc, device = cfg.gate, cfg.device
    source = gc.tgs.source

    def load(checkpoint: dict[str, Any]) -> GSMoEModel:
        return GSMoEModel(encoder, experts, Gate.from_checkpoint(checkpoint))

    def build() -> Training:
        features, enc_scores = _resolve_cache(cache, encoder, data, cfg, progress)  # [N, S, F], [N, S]
        experts.eval()
        x_in = expert_inputs(experts, features, train_inputs(data.train).to(features.device))  # [N, S, F(+D)]
        expert_logits = frozen_forward(experts.logits, x_in, device, cfg.amp)  # [N, S, E]
        del x_in
        gate = Gate(experts.n_experts, encoder.feature_dim, d_model=gc.d_model, use_features=gc.use_features,
                    dropout=gc.dropout, expert_input=gc.expert_input)
        full = GSMoEModel(encoder, experts, gate)
        gate.to(device).train()
        optimizer = torch.optim.AdamW(gate.parameters(), lr=gc.lr, weight_decay=gc.weight_decay)
        flat = flat_labels(data.train)
        val = hold_out(*flat, data.train.classes, cfg.validation)
        labels = flat[0].to(device)
        k = k_for_length(features.shape[1])
        member = ((labels.cpu() == 1) & val.train_mask)[:, None]  # [N, 1]
        warmup = warmup_per_pool(gc, member.sum(0), "gate")
        store = PseudoLabels.for_stage(gc, member, features.shape[1], warmup, features.device)
        check_teacher(gc.teacher, "gate")
        if source in FROM_TEACHER and gc.teacher == "per-class":  # the extension: the sample's own classes' teachers
            pools, _ = expert_membership(cfg.experts, data.train, features, cfg.seed)  # [N, E]
            t_scores, _ = class_teacher_scores(cfg, train_inputs(data.train), flat[0], flat[1], flat[2],
                                               data.train.classes, pools, run_dir, per_expert_batches,
                                               progress)  # [N, S, E]
            pseudo = pool_targets(t_scores, pools & val.train_mask[:, None], gc.tgs).amax(-1)  # [N, S]
            check_pseudo_labels(pseudo, t_scores.amax(-1), labels, gc.tgs, "gate")
            store.set_all(pseudo)
        elif source in FROM_TEACHER:
            store.set_from_teacher(enc_scores, labels, "gate")
        # crops on an axis were folded into samples by encode_train_set: sample from the flat set
        flat_train = replace(data.train, features=features, labels=labels.cpu()) if data.train.features.dim() == 4 \
            else data.train
        batches = flat_train.sampler(gc.batch_normal, gc.batch_abnormal, generator=stage_generator(cfg.seed, "gate"),
                                     among=val.train_mask)
        drop_gen = stage_generator(cfg.seed, "gate-feature-dropout")

        @torch.no_grad()
        def own_scores(rows: torch.Tensor) -> torch.Tensor:  # [n] -> [n, S, 1], eval mode
            gate.eval()
            rows = rows.to(features.device)
            with autocast(device, cfg.amp):
                out = gate(expert_logits[rows], features[rows] if gc.use_features else None).scores.float()
            gate.train()
            return out[:, :, None]

        def step(i: int, idx: torch.Tensor) -> dict[str, torch.Tensor]:
            if source in REFRESHING:
                store.refresh(i, own_scores)
            idx = idx.to(features.device)
            f = features[idx] if gc.use_features else None  # [B, S, F]
            if f is not None and gc.feature_dropout > 0:
                keep = (torch.rand(len(idx), generator=drop_gen) >= gc.feature_dropout).to(f.dtype)  # [B]
                f = f * keep.to(f.device)[:, None, None]
            with autocast(device, cfg.amp):
                scores = gate(expert_logits[idx], f).scores.float()
            teacher = None if source == "self" else store.labels_of(idx).to(scores.device)
            return tgs_update(scores, labels[idx], teacher, i < int(warmup[0]), gc, k, optimizer)

        def finish(history: list[dict[str, float]]) -> Trained:
            full.eval()

            def score_fn(x: torch.Tensor):
                out = full(x)
                return out.scores, out.expert_scores

            metrics, scores = evaluate(score_fn, data.test, cfg, progress, experts=True)
            metrics.update(training_health(store, source, history, "gate"))
            return Trained(full, metrics, scores, gate.checkpoint_payload())

        def val_scores(rows: torch.Tensor) -> torch.Tensor:  # [N'] -> [N', S], eval mode
            return torch.cat([own_scores(r) for r in rows.split(256)])[..., 0]

        validation = held_out_validation(cfg, gc, val, val_scores, k, start=int(warmup[0]), keep=("gate",))
        saved = {"gate": gate, "pseudo": store}
        if gc.feature_dropout > 0:  # its draws continue where they stopped after a resume
            saved["feature_dropout"] = RandomStream(drop_gen)
        return Training(saved, optimizer, gc.iterations, gc.checkpoint_every, batches, step, finish, validation)

    return load_or_train(cfg, run_dir, stage_name, stage_config(cfg, "gate", upstream), "gate", load, build,
                         progress, on_step)
