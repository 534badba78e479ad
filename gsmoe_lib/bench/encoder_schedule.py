"""`gsmoe bench encoder-schedule`: test metrics along training of the UR-DMU encoder or the Sultani MIL stage.

The bug-detector question: does our UR-DMU encoder, at the quick budget, learn at least what
Sultani et al.'s 3-layer MLP learns on the same raw features? This command trains one of them exactly as its
stage does (`training.stages.train_encoder`: same seeding, sampler and step; `training.sultani.train_sultani`:
same bags, optimiser and loss), with overrides of the profile's settings, and scores the test split at the
iterations listed in `--eval-at`. One JSON line per run on stdout (metrics in percent, the std of the test
scores, the loss, the training seconds so far); `benchmarks/sultani-floor.md` reads such lines.

    gsmoe bench encoder-schedule DATA_ROOT --model urdmu --seed 0 --set '{"lr": 1e-3}' --eval-at 50,100,200
    gsmoe bench encoder-schedule DATA_ROOT --model sultani --seed 0 --eval-at 100,400,1000

`--set` keys: for urdmu `lr`, `weight_decay`, `batch_normal`, `batch_abnormal` (EncoderConfig) and
`n_segments`, `crops` (DataConfig); for sultani any SultaniConfig field.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import numpy as np
import torch

from gsmoe_lib import runs
from gsmoe_lib.evaluate import evaluate_dataset
from gsmoe_lib.losses import sultani_ranking_loss
from gsmoe_lib.models.urdmu import URDMU, k_for_length
from gsmoe_lib.reporting import REPORTED_METRICS
from gsmoe_lib.training.config import PipelineConfig, config_for
from gsmoe_lib.training.data import load_data, open_splits
from gsmoe_lib.training.loop import urdmu_update
from gsmoe_lib.training.stages import stage_generator

ENCODER_KEYS = ("lr", "weight_decay", "batch_normal", "batch_abnormal")
DATA_KEYS = ("n_segments", "crops")


def urdmu_run(cfg: PipelineConfig, over: dict):
    """(step, score_fn, model, test split) of the encoder stage with `over` applied."""
    ec = replace(cfg.encoder, **{k: v for k, v in over.items() if k in ENCODER_KEYS})
    dc = replace(cfg.data, **{k: v for k, v in over.items() if k in DATA_KEYS})
    unknown = set(over) - set(ENCODER_KEYS) - set(DATA_KEYS)
    if unknown:
        raise ValueError(f"--set: unknown keys for urdmu: {sorted(unknown)}")
    data = load_data(dc, cfg.device, progress=False)
    tr = data.train
    runs.seed_everything(cfg.seed)  # as train_encoder
    model = URDMU(input_dim=tr.features.shape[-1]).to(cfg.device).train()
    opt = torch.optim.Adam(model.parameters(), lr=ec.lr, weight_decay=ec.weight_decay)
    k = k_for_length(tr.features.shape[-2])
    batches = tr.sampler(ec.batch_normal, ec.batch_abnormal, generator=stage_generator(cfg.seed, "encoder"))
    labels = tr.labels.to(tr.features.device)

    def step() -> torch.Tensor:
        idx = next(batches).to(tr.features.device)
        return urdmu_update(model, tr.features[idx].float(), labels[idx], k, opt)["total"]

    return step, (lambda x: model(x).scores), model, data.test


def sultani_run(cfg: PipelineConfig, over: dict):
    """(step, score_fn, model, test split) of the Sultani stage with `over` applied."""
    from gsmoe_lib.models.sultani import SultaniMLP
    from gsmoe_lib.training.sultani import STAGE, pool_bags, score_fn

    sc = replace(cfg.sultani, **over)
    tr, test = open_splits(cfg.data, ("train", "test"))
    bags = pool_bags(tr, sc.n_segments, sc.crops, progress=False)
    feats, labels = bags.features.to(cfg.device), bags.labels.to(cfg.device)
    runs.seed_everything(cfg.seed)  # as train_sultani
    model = SultaniMLP(feats.shape[-1], sc.hidden, sc.bottleneck, sc.dropout).to(cfg.device).train()
    opt = torch.optim.Adagrad(model.parameters(), lr=sc.lr, weight_decay=sc.weight_decay)
    batches = bags.sampler(sc.batch_normal, sc.batch_abnormal, generator=stage_generator(cfg.seed, STAGE))

    def step() -> torch.Tensor:
        idx = next(batches).to(cfg.device)
        loss, parts = sultani_ranking_loss(model(feats[idx]), labels[idx], sc.smooth_weight, sc.sparse_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return parts["total"]

    return step, score_fn(model, sc.crops), model, test


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data_root", help="a feature dataset folder (e.g. written by gsmoe data synth)")
    parser.add_argument("--model", choices=("urdmu", "sultani"), default="urdmu")
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", default="{}", help="JSON overrides (module docstring)")
    parser.add_argument("--eval-at", default="100",
                        help="comma-separated iterations at which the test split is scored")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--name", default="", help="a label copied into the record")


def run(args: argparse.Namespace) -> int:
    over, eval_at = json.loads(args.set), sorted(int(x) for x in args.eval_at.split(","))
    cfg = config_for(args.profile, args.data_root, seed=args.seed, device=args.device)
    t0 = time.perf_counter()
    step, score, model, test = (urdmu_run if args.model == "urdmu" else sultani_run)(cfg, over)
    out = {"name": args.name, "model": args.model, "seed": args.seed, "data": args.data_root, "over": over,
           "device": args.device, "profile": args.profile, "setup_s": round(time.perf_counter() - t0, 2), "curve": {}}
    seconds = 0.0
    for i in range(1, eval_at[-1] + 1):
        t = time.perf_counter()
        model.train()
        loss = step()
        if args.device != "cpu":
            torch.cuda.synchronize()
        seconds += time.perf_counter() - t
        if i in eval_at:
            model.eval()
            m, s = evaluate_dataset(score, test, device=args.device, progress=False)
            out["curve"][i] = {k: round(100 * m[k], 2) for k in REPORTED_METRICS}
            out["curve"][i].update(std=round(float(np.concatenate(list(s.values())).std()), 5),
                                   loss=round(float(loss), 4), train_s=round(seconds, 1))
    print(json.dumps(out), flush=True)
    return 0

