"""`gsmoe train`: run training stages into a run folder (see `training.pipeline`).

The options map onto `config.config_for`, the one resolver the notebooks use too, so that a run asked for
from the command line and from a notebook with the same values is the same run (same stage hashes).
Without --data-root the profile's synthetic data of --dataset is read (`config.default_data_root`; `gsmoe
reproduce` builds it).
"""

from __future__ import annotations

import argparse
from contextlib import nullcontext
from typing import Any
from pathlib import Path

from gsmoe_lib import runs
from gsmoe_lib.training.config import DATASETS, PROFILES, config_for, synthetic_profile
from gsmoe_lib.training.pipeline import run_pipeline
from gsmoe_lib.training.stages import REFERENCE_STAGES, STAGES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-root", default=None,
                        help="dataset folder (default: the profile's synthetic data of --dataset)")
    parser.add_argument("--dataset", choices=DATASETS, default=None)
    parser.add_argument("--train-list", default=None)
    parser.add_argument("--test-list", default=None)
    parser.add_argument("--annotations", default=None)
    parser.add_argument("--profile", choices=tuple(PROFILES), default="quick")
    parser.add_argument("--stages", default=",".join(STAGES + REFERENCE_STAGES),
                        help="comma-separated subset of " + ",".join(STAGES + REFERENCE_STAGES))
    parser.add_argument("--run", required=True, help="run folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", choices=("none", "bf16"), default="none")
    parser.add_argument("--init-encoder", default=None, help="released UR-DMU checkpoint to start from")
    parser.add_argument("--tgs-config", default=None, help="JSON file of TGSConfig (from the TGS tuner)")
    parser.add_argument("--config", default=None, help="JSON file of nested PipelineConfig overrides")
    parser.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                        help="when another process is writing RUN (its writer.lock is held), wait up to SECONDS for "
                             "it to finish instead of stopping with a message naming it (default 0)")
    parser.add_argument("--replace", action="store_true",
                        help="a stage of RUN that finished with another config is moved to RUN/replaced/ and "
                             "trained again (without it, that is an error naming the differing keys)")


def _data_is_built(root: str) -> bool:
    return Path(root).is_dir()


def run(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = runs.read_json(args.config) if args.config else {}
    cfg = config_for(args.profile, args.data_root or "", args.dataset or "", args.seed, args.device, overrides,
                     tgs_config=args.tgs_config or "", train_list=args.train_list or "",
                     test_list=args.test_list or "", annotations=args.annotations or "", amp=args.amp,
                     init_encoder=args.init_encoder or "")
    if not args.data_root and not _data_is_built(cfg.data.data_root):
        # a new user's first `gsmoe train`: say how to build the default data, not only that it is missing
        xd = " --dataset xd-violence" if args.dataset == "xd-violence" else ""
        raise FileNotFoundError(
            f"the {args.profile} profile's synthetic data {cfg.data.data_root} is not built yet: run `gsmoe data "
            f"synth --out {cfg.data.data_root} --profile {synthetic_profile(args.profile)}{xd}` (or `gsmoe "
            f"reproduce`, which builds it), or give --data-root")
    with runs.replace_finished_stages() if args.replace else nullcontext(), runs.wait_for_writer(args.wait):
        results = run_pipeline(cfg, args.run, tuple(s for s in args.stages.split(",") if s))
    for name, res in results.items():
        m = res.metrics
        print(f"{name:8s} AUC {m['auc']:.4f}  AUC_A {m['auc_abnormal']:.4f}  AP {m['ap']:.4f}  "
              f"AP_A {m['ap_abnormal']:.4f}{'  (loaded)' if res.skipped else ''}")
    return 0
