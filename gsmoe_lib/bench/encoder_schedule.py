"""Test metrics along training of the quick-profile UR-DMU encoder stage or the Sultani MIL stage (issue 12).

The bug-detector question of issue 12: does our UR-DMU encoder, at the quick budget, learn at least what
Sultani et al.'s 3-layer MLP learns on the same raw features? This script trains one of them exactly as its
stage does (`train.train_encoder`: same seeding, sampler and step; `gsmoe_lib.sultani.train_sultani`:
same bags, optimiser and loss), with overrides of the profile's settings, and scores the test split at the
iterations listed in `--eval-at`. One JSON line per run on stdout (metrics in percent, the std of the test
scores, the loss, the training seconds so far); `benchmarks/sultani-floor.md` reads such lines.

    python benchmarks/encoder_schedule.py DATA_ROOT --model urdmu --seed 0 --set '{"lr": 1e-3}' --eval-at 50,100,200
    python benchmarks/encoder_schedule.py DATA_ROOT --model sultani --seed 0 --eval-at 100,400,1000

`--set` keys: for urdmu `lr`, `weight_decay`, `batch_normal`, `batch_abnormal` (EncoderConfig) and
`n_segments`, `crops` (DataConfig); for sultani any SultaniConfig field.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace

import numpy as np
import torch

from gsmoe_lib import runs, train
from gsmoe_lib.evaluate import evaluate_dataset
from gsmoe_lib.losses import k_for_length, sultani_ranking_loss

ENCODER_KEYS = ("lr", "weight_decay", "batch_normal", "batch_abnormal")
DATA_KEYS = ("n_segments", "crops")


def urdmu_run(cfg: train.PipelineConfig, over: dict):
    """(step, score_fn, model, test split) of the encoder stage with `over` applied."""
    ec = replace(cfg.encoder, **{k: v for k, v in over.items() if k in ENCODER_KEYS})
    dc = replace(cfg.data, **{k: v for k, v in over.items() if k in DATA_KEYS})
    unknown = set(over) - set(ENCODER_KEYS) - set(DATA_KEYS)
    if unknown:
        raise SystemExit(f"--set: unknown keys for urdmu: {sorted(unknown)}")
    data = train.load_data(dc, cfg.device, progress=False)
    tr = data.train
    runs.seed_everything(cfg.seed)  # as train_encoder
    model = train.new_encoder(tr.features.shape[-1]).to(cfg.device).train()
    opt = torch.optim.Adam(model.parameters(), lr=ec.lr, weight_decay=ec.weight_decay)
    k = k_for_length(tr.features.shape[-2])
    batches = tr.sampler(ec.batch_normal, ec.batch_abnormal, generator=torch.Generator().manual_seed(cfg.seed))
    labels = tr.labels.to(tr.features.device)

    def step() -> torch.Tensor:
        idx = next(batches).to(tr.features.device)
        return train.urdmu_update(model, tr.features[idx].float(), labels[idx], k, opt)["total"]

    return step, (lambda x: model(x).scores), model, data.test


def sultani_run(cfg: train.PipelineConfig, over: dict):
    """(step, score_fn, model, test split) of the Sultani stage with `over` applied."""
    from gsmoe_lib.models.sultani import SultaniMLP
    from gsmoe_lib.sultani import _open_splits, pool_bags, score_fn

    sc = replace(cfg.sultani, **over)
    tr, test = _open_splits(cfg, train.dataset_name(cfg.data), ("train", "test"))
    bags = pool_bags(tr, sc.n_segments, sc.crops, progress=False)
    feats, labels = bags.features.to(cfg.device), bags.labels.to(cfg.device)
    runs.seed_everything(cfg.seed)  # as train_sultani
    model = SultaniMLP(feats.shape[-1], sc.hidden, sc.bottleneck, sc.dropout).to(cfg.device).train()
    opt = torch.optim.Adagrad(model.parameters(), lr=sc.lr, weight_decay=sc.weight_decay)
    batches = bags.sampler(sc.batch_normal, sc.batch_abnormal, generator=torch.Generator().manual_seed(cfg.seed + 4))

    def step() -> torch.Tensor:
        idx = next(batches).to(cfg.device)
        loss, parts = sultani_ranking_loss(model(feats[idx]), labels[idx], sc.smooth_weight, sc.sparse_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return parts["total"]

    return step, score_fn(model, sc.crops), model, test


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("data_root")
    p.add_argument("--model", choices=("urdmu", "sultani"), default="urdmu")
    p.add_argument("--profile", default="quick")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", default="{}", help="JSON overrides (module docstring)")
    p.add_argument("--eval-at", default="100", help="comma-separated iterations at which the test split is scored")
    p.add_argument("--device", default="cpu")
    p.add_argument("--name", default="", help="a label copied into the record")
    a = p.parse_args(argv)
    over, eval_at = json.loads(a.set), sorted(int(x) for x in a.eval_at.split(","))
    cfg = train.config_for(a.profile, a.data_root, seed=a.seed, device=a.device)
    t0 = time.perf_counter()
    step, score, model, test = (urdmu_run if a.model == "urdmu" else sultani_run)(cfg, over)
    out = {"name": a.name, "model": a.model, "seed": a.seed, "data": a.data_root, "over": over, "device": a.device,
           "profile": a.profile, "setup_s": round(time.perf_counter() - t0, 2), "curve": {}}
    seconds = 0.0
    for i in range(1, eval_at[-1] + 1):
        t = time.perf_counter()
        model.train()
        loss = step()
        if a.device != "cpu":
            torch.cuda.synchronize()
        seconds += time.perf_counter() - t
        if i in eval_at:
            model.eval()
            m, s = evaluate_dataset(score, test, device=a.device, progress=False)
            out["curve"][i] = {k: round(100 * m[k], 2) for k in ("auc", "auc_abnormal", "ap", "ap_abnormal")}
            out["curve"][i].update(std=round(float(np.concatenate(list(s.values())).std()), 5),
                                   loss=round(float(loss), 4), train_s=round(seconds, 1))
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
