"""`gsmoe bench context`: how much of a trained encoder's localisation its temporal context costs.

UR-DMU's embedding and GL-MHSA read the whole video. Trained with MIL on video labels only, nothing stops the
global attention from learning a video-level cue that raises every snippet of an abnormal video: that ranks
videos, but spreads (or, on the drift world, inverts) the ranking of snippets inside them, which is what the
frame-level AUC and AUC_A measure. This benchmark takes a finished run's encoder (or TGS-tuned encoder) as it
is, no retraining, and scores the test split again with its embedding and attention run over independent
windows of w snippets (`URDMU.context_window`; w = 0 is the whole video, UR-DMU's and the run's own
scoring). If the small windows score much better, the per-snippet pathway had learnt the anomaly and the
context was hiding it.

    gsmoe bench context [--run runs/reproduce] [--seed 0] [--stage encoder] [--windows 0,1,4,16,64] [--json OUT]

Per window: AUC, AUC_A and AP (%, pooled frames as `metrics.evaluate_scores`) and the mean over abnormal test
videos of the AUC inside each video ("within": the localisation a per-video threshold would see; the pooled
AUC_A also needs the videos' scores to be comparable).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from gsmoe_lib import runs
from gsmoe_lib.data.layouts import open_dataset
from gsmoe_lib.evaluate import evaluate_dataset
from gsmoe_lib.inference import resolve_run
from gsmoe_lib.models.urdmu import URDMU
from gsmoe_lib.training.config import config_from_dict, dataset_name

STAGES = ("encoder", "tgs")  # the stages whose checkpoint is a UR-DMU
WINDOWS = (0, 1, 4, 16, 64)


def within_video_auc(video_scores: dict[str, np.ndarray], frame_labels: dict[str, np.ndarray]) -> float:
    """Mean over the videos with both normal and abnormal snippets of the ROC AUC inside the video.

    video_scores: name -> snippet scores [T]; frame_labels: name -> frame labels [T * 16] (a snippet is abnormal
    when any of its frames is). NaN when no video has both.
    """
    aucs = []
    for name, s in video_scores.items():
        y = np.asarray(frame_labels[name]).reshape(len(s), -1).max(1)  # [T]
        if 0 < y.mean() < 1:
            aucs.append(roc_auc_score(y, s))
    return float(np.mean(aucs)) if aucs else float("nan")


def load_stage_encoder(run: str | Path, seed: int, stage: str) -> tuple[URDMU, Any]:
    """(the stage's UR-DMU in eval mode, the run's PipelineConfig) from a finished run folder."""
    if stage not in STAGES:
        raise ValueError(f"--stage must be one of {', '.join(STAGES)}, got {stage!r}")
    if not Path(run).exists():
        raise FileNotFoundError(f"{run}: no such run folder (run `make reproduce` or `gsmoe train` first)")
    root = resolve_run(run, seed)
    checkpoint = root / stage / "checkpoint.pt"
    if not (root / stage / "DONE").exists() or not checkpoint.exists():
        raise FileNotFoundError(f"{root / stage}: the {stage} stage is not finished in this run")
    cfg = config_from_dict(runs.read_json(root / "pipeline_config.json"))
    model = URDMU.from_checkpoint(torch.load(checkpoint, map_location="cpu", weights_only=True))
    return model.eval(), cfg


def measure(run: str, seed: int = 0, stage: str = "encoder", windows: tuple[int, ...] = WINDOWS,
            device: str = "cpu", progress: bool = False) -> dict[str, Any]:
    """The JSON-ready record: one row per window w (0: whole video) with AUC, AUC_A, AP, within (%) and seconds."""
    model, cfg = load_stage_encoder(run, seed, stage)
    d = cfg.data
    test = open_dataset(d.data_root, dataset_name(d), "test", train_list=d.train_list,
                        test_list=d.test_list, annotations=d.annotations)
    frame_labels = {v.name: test.frame_labels(i) for i, v in enumerate(test.videos)}
    abnormal_labels = {v.name: frame_labels[v.name] for v in test.videos if v.label == 1}
    trained_window = model.context_window
    model.to(device)
    record: dict[str, Any] = {"run": str(resolve_run(run, seed)), "stage": stage,
                              "trained_context_window": trained_window,
                              "environment": runs.environment_record(seed, device), "results": []}
    for w in windows:
        if w < 0:
            raise ValueError(f"--windows: a window is >= 0 snippets (0: the whole video), got {w}")
        model.context_window = w

        @torch.inference_mode()
        def score(x: torch.Tensor) -> torch.Tensor:
            return model(x, training_extras=False).scores

        t0 = time.perf_counter()
        metrics, video_scores = evaluate_dataset(score, test, device=device, progress=progress)
        row = {"window": w, "seconds": time.perf_counter() - t0,
               "auc": 100 * float(metrics["auc"]), "auc_abnormal": 100 * float(metrics["auc_abnormal"]),
               "ap": 100 * float(metrics["ap"]),
               "within": 100 * within_video_auc({n: video_scores[n] for n in abnormal_labels}, abnormal_labels)}
        record["results"].append(row)
        where = "whole video" if w == 0 else f"{w} snippets"
        print(f"{stage} window {where:>13}: AUC {row['auc']:6.2f}  AUC_A {row['auc_abnormal']:6.2f}  "
              f"AP {row['ap']:6.2f}  within-video AUC {row['within']:6.2f}", flush=True)
    model.context_window = trained_window
    return record


def _windows(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(w) for w in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 0,1,4,16, got {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", default="runs/reproduce", help="a finished run folder")
    parser.add_argument("--seed", type=int, default=0, help="which seed of the run")
    parser.add_argument("--stage", default="encoder", choices=STAGES, help="whose UR-DMU to score")
    parser.add_argument("--windows", type=_windows, default=WINDOWS,
                        help="context windows in snippets, 0 = the whole video (default 0,1,4,16,64)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default=None, help="write the record here")


def run(args: argparse.Namespace) -> int:
    record = measure(args.run, args.seed, args.stage, args.windows, args.device)
    if args.json:
        runs.write_json(args.json, record)
    return 0
