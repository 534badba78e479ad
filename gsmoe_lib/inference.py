"""Inference with a finished run: the `GSMoE` detector object and the `gsmoe score` command.

`GSMoE.from_run(RUN)` rebuilds the trained detector from a run folder written by `gsmoe_lib.training`, read
only through `runs.Run` (RUN, or RUN/seed-<s>): the TGS-fine-tuned encoder (stage tgs), the experts and the
gate (each model rebuilt by its class's `from_checkpoint`, from the constructor arguments its checkpoint
carries).

Which experts belong to a gate is not guessed from folder names: `runs.Run.upstream` follows the config
hashes the stages record, so an ablation gate (`gate-<name>`) finds the experts it was trained with, and a
gate trained on other experts or another encoder is a clear error rather than a silently mismatched model.

`GSMoE.score(features)` returns the final score of every snippet **and every expert's score**, so a user
sees which anomaly class drove a detection (the explainability the paper's conclusion asks for): the
strongest expert of a snippet is the expert with the highest score there.

`gsmoe score --run RUN FEATURES.npy ...` writes one CSV per features file (`<stem>_scores.csv`) with the
columns snippet, start_frame, end_frame (frames 16t .. 16t+15 of snippet t), score, strongest_expert, one
column per expert (its name), and `alarm` (0 / 1: score >= threshold) when `--operating-point` names the
JSON file written by the alarm-threshold explorer (notebook 51, `widgets.AlarmExplorer`).

How the shape of a features file is read (D, the feature width, is the run's; each file is one video):
    [T, D]              one crop (a UCF-Crime per-crop file, an XD-Violence crop file)
    [C, T, D]           crops first
    [T, C, D]           crops second (the RTFM per-video layout)
For a 3-axis file `--layout auto` (default) takes the axis of at most MAX_AUTO_CROPS entries as the crops
when exactly one of the two leading axes is that small; otherwise the file is ambiguous and the error asks
for `--layout ctd` or `--layout tcd`. Crops are scored one by one and their scores averaged (REFERENCE §4);
`--crops mean` runs the experts and the gate once on crop-averaged features instead (faster, `models.gsmoe`).

Outputs go to RUN/scores/ by default (`--out` to change it), never beside the features: users' feature
folders are often read-only mounts. `--plot` also writes `<stem>_scores.png` per video
(`figures.plot_video_scores`: the score over time, the alarm threshold of `--operating-point`, the
strongest expert as a coloured band, and the ground-truth windows of `--annotations`, an annotation
file in any format `gsmoe data check` reads, matched by video name).

Videos (`gsmoe score --run RUN VIDEO.mp4 --i3d WEIGHTS`): a file with a video suffix is first turned into
features by `gsmoe extract` (`extract.scoring`: the backbone from the run's feature width, the recipe from
its dataset; `--backbone` / `--recipe` override), kept in OUT/features/ beside the scores, then scored like
a features file. With `--plot` its picture is the score over time with thumbnails of the frames at the
highest peaks (`extract.picture`).

`--encoder CHECKPOINT` instead of `--run`: a released UR-DMU checkpoint scores alone (`EncoderDetector`), so
the two public files (the I3D weights and UR-DMU's UCF checkpoint) give an anomaly curve for a video with no
training at all.

A features file is checked before it is scored (`load_features`, `first_non_finite`): a file that is not
a NumPy .npy array, holds Python objects or no numbers, or has a NaN / Inf is an error naming the file
(and the first bad snippet), which `gsmoe score` reports in one line.
"""

from __future__ import annotations

import argparse
import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gsmoe_lib import runs
# Not from metrics (the same 16): importing scikit-learn would double `gsmoe score`'s start-up time.
from gsmoe_lib.data.ground_truth import SNIPPET_FRAMES as FRAMES_PER_SNIPPET
from gsmoe_lib.host_memory import release_freed_memory
from gsmoe_lib.models.experts import Experts
from gsmoe_lib.models.gate import Gate
from gsmoe_lib.models.gsmoe import CROP_MODES, GSMoEModel
from gsmoe_lib.models.urdmu import URDMU

MAX_AUTO_CROPS = 10  # UCF-Crime has 10 crops, XD-Violence 5: a longer axis is time
LAYOUTS = ("auto", "ctd", "tcd")


@dataclass
class ScoreResult:
    """The scores of one video. T snippets, E experts."""

    scores: np.ndarray  # [T] final (gate) anomaly score, in [0, 1]
    expert_scores: np.ndarray  # [T, E] each expert's score
    expert_names: list[str]  # [E]
    strongest_expert: np.ndarray  # [T] the name of the highest-scoring expert at each snippet
    encoder_scores: np.ndarray  # [T] the task encoder's own score


def resolve_run(run_dir: str | Path, seed: int = 0) -> Path:
    """The training folder holding the stage folders: RUN itself, or RUN/seed-<seed>."""
    return runs.Run(run_dir).training(seed).path


class GSMoE:
    """A trained GS-MoE detector: `GSMoE.from_run(RUN).score(features)`."""

    def __init__(self, model: GSMoEModel, expert_names: list[str], run_dir: Path, device: str = "cpu") -> None:
        if len(expert_names) != model.experts.n_experts:
            raise ValueError(f"{len(expert_names)} expert names for {model.experts.n_experts} experts")
        self.model = model.to(device).eval()
        self.expert_names = list(expert_names)
        self.run_dir = run_dir
        self.device = device

    @property
    def input_dim(self) -> int:
        """D, the feature width the run was trained on."""
        return self.model.encoder.input_dim

    @classmethod
    def from_run(cls, run_dir: str | Path, stage_gate: str = "gate", device: str = "cpu", seed: int = 0,
                 crops: str = "each") -> "GSMoE":
        """Load the encoder (tgs stage), the experts the gate was trained on, and the gate `stage_gate`.

        run_dir: RUN or RUN/seed-<s> (RUN holding seed folders: `seed` picks one). crops: "each" (every crop
        through the experts and the gate, the default) or "mean" (crop-averaged features, faster; see
        `models.gsmoe`).
        """
        run = runs.Run(run_dir).training(seed)
        # The gate's config names the hash of its experts stage, whose config names its encoder stage.
        experts_dir = run.upstream(stage_gate, "experts")
        tgs_dir = run.upstream(experts_dir.stage, "tgs")
        encoder = URDMU.from_checkpoint(tgs_dir.load_checkpoint("urdmu"))
        ex_ck = experts_dir.load_checkpoint("experts")
        experts = Experts.from_checkpoint(ex_ck)
        gate = Gate.from_checkpoint(run.stage(stage_gate).load_checkpoint("gate"))
        if gate.n_experts != experts.n_experts:
            raise ValueError(f"{run.path / stage_gate}: gate expects {gate.n_experts} experts, {experts_dir.path} "
                             f"has {experts.n_experts}")
        return cls(GSMoEModel(encoder, experts, gate, crops=crops), list(ex_ck["names"]), run.path, device)

    @torch.inference_mode()
    def score(self, features: np.ndarray, name: str = "features") -> ScoreResult:
        """Score one video: features [T, D] (one crop) or [C, T, D] (crops, averaged). `name` for errors."""
        x = np.asarray(features)
        if x.ndim == 2:
            x = x[None]  # [1, T, D]
        if x.ndim != 3 or x.shape[-1] != self.input_dim or x.shape[1] == 0:
            raise ValueError(f"{name}: expected features [T, D] or [C, T, D] with D={self.input_dim} "
                             f"(the run's feature width), got shape {np.asarray(features).shape}")
        t = torch.from_numpy(np.require(x, np.float32, ["C", "W"])).to(self.device)[None]  # [1, C, T, D]
        out = self.model(t)
        expert_scores = out.expert_scores[0].float().cpu().numpy()  # [T, E]
        names = np.asarray(self.expert_names)
        result = ScoreResult(
            scores=out.scores[0].float().cpu().numpy(),
            expert_scores=expert_scores,
            expert_names=list(self.expert_names),
            strongest_expert=names[expert_scores.argmax(axis=1)],
            encoder_scores=out.encoder_scores[0].float().cpu().numpy(),
        )
        del t, out
        release_freed_memory()  # a loop over many videos holds one video's memory at a time (host_memory)
        return result


class EncoderDetector:
    """UR-DMU alone as the detector: a released checkpoint (`models.urdmu.load_released`), no run needed.

    `gsmoe score --encoder urdmu_ucf.pkl VIDEO.mp4 --i3d rgb_imagenet.pt` gives an anomaly curve from the two
    public files only. Its score is the encoder's own snippet score, averaged over crops; there are no experts,
    so the CSV has one "expert" column, UR-DMU, equal to the score.
    """

    NAME = "UR-DMU"

    def __init__(self, model: URDMU, device: str = "cpu") -> None:
        self.model = model.to(device).eval()
        self.device = device
        self.expert_names = [self.NAME]

    @property
    def input_dim(self) -> int:
        return self.model.input_dim

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu") -> "EncoderDetector":
        from gsmoe_lib.models.urdmu import load_released

        return cls(load_released(path), device)

    @torch.inference_mode()
    def score(self, features: np.ndarray, name: str = "features") -> ScoreResult:
        x = np.asarray(features)
        x = x[None] if x.ndim == 2 else x  # [C, T, D]
        if x.ndim != 3 or x.shape[-1] != self.input_dim or x.shape[1] == 0:
            raise ValueError(f"{name}: expected features [T, D] or [C, T, D] with D={self.input_dim} "
                             f"(the checkpoint's feature width), got shape {np.asarray(features).shape}")
        t = torch.from_numpy(np.require(x, np.float32, ["C", "W"])).to(self.device)[None]  # [1, C, T, D]
        scores = self.model(t, training_extras=False).scores[0].float().cpu().numpy()  # [T], averaged over crops
        return ScoreResult(scores=scores, expert_scores=scores[:, None], expert_names=[self.NAME],
                           strongest_expert=np.asarray([self.NAME] * scores.size), encoder_scores=scores)


# ---------------------------------------------------------------------------------------------------
# Feature files and the CSV
# ---------------------------------------------------------------------------------------------------


NPY_MAGIC = b"\x93NUMPY"


def load_features(path: str | Path) -> np.ndarray:
    """A features file as a (memory-mapped) numeric array; a clear ValueError when it is not one.

    Not .npy (an .npz archive, text, an empty file), an object array, a non-numeric dtype and a truncated
    file each get their own message naming the file.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a folder; give the features files (.npy) themselves")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: features file not found")
    with open(path, "rb") as fh:
        head = fh.read(len(NPY_MAGIC))
    if not head:
        raise ValueError(f"{path}: empty file (0 bytes), not a NumPy .npy array")
    if head.startswith(b"PK"):
        raise ValueError(f"{path}: a zip / .npz archive, not one .npy array; save one array per video with numpy.save")
    if head != NPY_MAGIC:
        raise ValueError(f"{path}: not a NumPy .npy file (it does not start with the .npy magic bytes); "
                         "gsmoe score reads arrays written by numpy.save, one video per file")
    try:
        x = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc) or "object" in str(exc):
            raise ValueError(f"{path}: holds Python objects (dtype=object), not numbers; save a float array") from None
        raise ValueError(f"{path}: cannot read the .npy array ({exc}); the file is truncated or corrupt") from None
    except (EOFError, OSError) as exc:
        raise ValueError(f"{path}: cannot read the .npy array ({exc}); the file is truncated or corrupt") from None
    if x.dtype.kind not in "fiub":
        raise ValueError(f"{path}: dtype {x.dtype} is not real numbers; features are float arrays")
    return x


def first_non_finite(x: np.ndarray, chunk: int = 4096) -> tuple[int, int] | None:
    """(crop, snippet) of the first NaN / Inf of x [C, T, D] in time order, or None; reads `chunk` snippets at a time."""
    for start in range(0, x.shape[1], chunk):
        bad = ~np.isfinite(np.asarray(x[:, start:start + chunk])).all(axis=-1)  # [C, chunk]
        if bad.any():
            crops, snippets = np.nonzero(bad)
            i = int(np.argmin(snippets))  # the earliest snippet, over all crops
            return int(crops[i]), start + int(snippets[i])
    return None


def to_crops_first(x: np.ndarray, input_dim: int, layout: str = "auto", name: str = "features") -> np.ndarray:
    """A features file's array as [C, T, D] (see the module docstring for the rules); errors name `name`."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; expected one of {LAYOUTS}")
    if x.ndim not in (2, 3) or x.shape[-1] != input_dim:
        raise ValueError(f"{name}: shape {x.shape}: expected [T, D], [C, T, D] or [T, C, D] with D={input_dim} "
                         "(the run's feature width)")
    if x.ndim == 2:
        return x[None]
    if layout == "ctd":
        return x
    if layout == "tcd":
        return x.transpose(1, 0, 2)
    small = [a for a in (0, 1) if x.shape[a] <= MAX_AUTO_CROPS]
    if len(small) != 1:
        raise ValueError(f"{name}: shape {x.shape} is ambiguous: cannot tell the crop axis from the time axis; "
                         "pass --layout ctd ([C, T, D]) or --layout tcd ([T, C, D])")
    return x if small[0] == 0 else x.transpose(1, 0, 2)


def read_operating_point(path: str | Path) -> dict[str, Any]:
    """The operating point JSON of the alarm-threshold explorer; needs a numeric "threshold"."""
    op = runs.read_json(path)
    if not isinstance(op, dict) or not isinstance(op.get("threshold"), (int, float)):
        raise ValueError(f"{path}: an operating point file needs a numeric 'threshold' "
                         "(written by notebook 51 / widgets.AlarmExplorer)")
    return op


def write_scores_csv(path: str | Path, result: ScoreResult, threshold: float | None = None) -> Path:
    """One row per snippet: snippet, start_frame, end_frame, score, strongest_expert, <experts>, [alarm]."""
    header = ["snippet", "start_frame", "end_frame", "score", "strongest_expert", *result.expert_names]
    clash = set(result.expert_names) & {"snippet", "start_frame", "end_frame", "score", "strongest_expert", "alarm"}
    if clash:
        raise ValueError(f"expert names {sorted(clash)} clash with the CSV's fixed columns")
    if threshold is not None:
        header.append("alarm")
    with runs.atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(header)
            for t, s in enumerate(result.scores.tolist()):
                row = [t, t * FRAMES_PER_SNIPPET, (t + 1) * FRAMES_PER_SNIPPET - 1, f"{s:.6f}",
                       result.strongest_expert[t], *(f"{e:.6f}" for e in result.expert_scores[t].tolist())]
                if threshold is not None:
                    row.append(int(s >= threshold))
                w.writerow(row)
    return Path(path)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("features", nargs="+", metavar="FILE",
                        help="feature files (.npy), one video each: [T, D], [C, T, D] or [T, C, D]; or video files "
                             "(.mp4, .avi, ...: extracted first, needs --i3d)")
    parser.add_argument("--run", default=None, help="finished run folder (RUN or RUN/seed-<s>)")
    parser.add_argument("--encoder", default=None, metavar="CHECKPOINT",
                        help="instead of --run: a released UR-DMU checkpoint scores alone (its own snippet scores)")
    parser.add_argument("--seed", type=int, default=0, help="which RUN/seed-<s> when RUN holds several seeds")
    parser.add_argument("--gate", default="gate", help="gate stage folder to use (e.g. gate-<variant>)")
    parser.add_argument("--out", default=None,
                        help="folder for the CSVs and plots (default: RUN/scores/, with --encoder "
                             "runs/<checkpoint>-scores/; never beside the features)")
    parser.add_argument("--plot", action="store_true",
                        help="also write <stem>_scores.png per video: score over time, threshold, strongest "
                             "expert, ground truth (with --annotations)")
    parser.add_argument("--annotations", default=None, metavar="FILE",
                        help="annotation file (any format `gsmoe data check` reads): ground-truth windows in the plot")
    parser.add_argument("--operating-point", default=None,
                        help="operating point JSON (notebook 51): adds an 'alarm' column, score >= threshold")
    parser.add_argument("--layout", choices=LAYOUTS, default="auto", help="how to read a 3-axis features file")
    parser.add_argument("--crops", choices=CROP_MODES, default="each",
                        help="each: every crop through experts and gate (default); "
                             "mean: crop-averaged features, faster")
    parser.add_argument("--device", default="cpu")
    video = parser.add_argument_group("videos (features extracted first, see gsmoe extract)")
    video.add_argument("--i3d", metavar="WEIGHTS", default=None,
                       help="backbone weights file for video inputs (e.g. rgb_imagenet.pt); nothing is downloaded")
    video.add_argument("--backbone", default=None,
                       help="i3d-inception or i3d-r50 (default: from the run's feature width, 1024 / 2048)")
    video.add_argument("--recipe", default=None,
                       help="crop recipe (default: from the run's dataset: UCF-Crime 10 crops, XD-Violence 5)")
    video.add_argument("--snippets", choices=("floor", "ceil"), default=None,
                       help="snippet count rule (default: the recipe's)")


def _ground_truth(annotations: dict[str, Any] | None, path: Path, n_snippets: int) -> tuple[np.ndarray | None, str]:
    """Frame labels [T*16] of the video of features file `path` from `annotations`, and a note for the title."""
    if annotations is None:
        return None, ""
    from gsmoe_lib.data.ground_truth import frame_labels
    from gsmoe_lib.data.lists import parse_feature_name

    parsed = parse_feature_name(path.name)
    name = parsed[0] if parsed else path.stem
    if name not in annotations:
        return None, f"{name}: not in the annotations"
    return frame_labels(annotations[name], n_snippets, video=name), ""


def _is_video(path: Path) -> bool:
    from gsmoe_lib.extract.decode import is_video_path

    return is_video_path(path)


def run(args: argparse.Namespace) -> int:
    if bool(args.run) == bool(args.encoder):
        raise ValueError("give either --run RUN (a finished GS-MoE run) or --encoder CHECKPOINT (UR-DMU alone)")
    files = [Path(f) for f in args.features]
    videos = [f for f in files if _is_video(f)]
    if videos and not args.i3d:
        raise ValueError(f"{videos[0]}: a video; pass --i3d WEIGHTS (the backbone's weights file, e.g. "
                         "rgb_imagenet.pt) to extract its features first")
    for f in files:  # every file's kind, dtype and header before the model loads (fail fast, name the file)
        if f not in videos:
            load_features(f)
    # Default: inside the run (the feature folder may be a read-only mount).
    default_out = Path(args.run) / "scores" if args.run else Path("runs") / f"{Path(args.encoder).stem}-scores"
    out_dir = Path(args.out) if args.out else default_out
    outs = [out_dir / f"{f.stem}_scores.csv" for f in files]
    dup = {str(o) for o in outs if outs.count(o) > 1}
    if dup:
        raise ValueError(f"several features files would write the same CSV {sorted(dup)}; rename them")
    threshold = float(read_operating_point(args.operating_point)["threshold"]) if args.operating_point else None
    if args.run:
        detector = GSMoE.from_run(args.run, stage_gate=args.gate, device=args.device, seed=args.seed, crops=args.crops)
    else:
        detector = EncoderDetector.from_checkpoint(args.encoder, device=args.device)
    extracted: dict[Path, dict[str, Any]] = {}
    if videos:
        from gsmoe_lib.extract.scoring import run_dataset, video_features_for_run

        dataset = run_dataset(args.run, args.seed) if args.run else "ucf-crime"  # UR-DMU's UCF checkpoint
        extracted = video_features_for_run(videos, args.i3d, detector.input_dim, dataset,
                                           out_dir / "features", args.backbone, args.recipe, args.snippets,
                                           args.device)
    annotations = None
    if args.annotations:
        from gsmoe_lib.data.lists import read_annotations

        annotations = read_annotations(args.annotations)
    for f, out in zip(files, outs):
        if f in extracted:
            x = extracted[f]["features"]  # [C, T, D]
        else:
            x = to_crops_first(load_features(f), detector.input_dim, args.layout, str(f))
        bad = first_non_finite(x)
        if bad is not None:
            raise ValueError(f"{f}: NaN or Inf at snippet {bad[1]} (crop {bad[0]}, frames {bad[1] * FRAMES_PER_SNIPPET}"
                             f"-{(bad[1] + 1) * FRAMES_PER_SNIPPET - 1}); features must be finite")
        result = detector.score(x, name=str(f))
        write_scores_csv(out, result, threshold)
        top = result.strongest_expert[int(result.scores.argmax())]
        summary = {"file": str(f), "csv": str(out), "snippets": int(result.scores.size),
                   "max_score": round(float(result.scores.max()), 4), "strongest_expert_at_max": str(top)}
        if f in extracted:
            summary.update(features=str(out_dir / "features"), backbone=extracted[f]["backbone"],
                           recipe=extracted[f]["recipe"])
        if args.plot and f in extracted:
            import matplotlib.pyplot as plt

            from gsmoe_lib import figures
            from gsmoe_lib.extract.picture import plot_scores_with_thumbnails

            fig = plot_scores_with_thumbnails(result.scores, f, extracted[f]["fps"],
                                              extracted[f]["record"]["frames_decoded"], title=f.name)
            summary["plot"] = str(figures.save_figure(fig, out.with_name(f"{f.stem}_scores"), formats=("png",))[0])
            plt.close(fig)
        elif args.plot:
            import matplotlib.pyplot as plt

            from gsmoe_lib import figures

            gt, note = _ground_truth(annotations, f, int(result.scores.size))
            fig = figures.plot_video_scores(result.scores, result.strongest_expert, result.expert_names,
                                            threshold=threshold, frame_labels=gt, title=f.stem, note=note)
            summary["plot"] = str(figures.save_figure(fig, out.with_name(f"{f.stem}_scores"), formats=("png",))[0])
            plt.close(fig)
        if threshold is not None:
            summary["alarm_snippets"] = int((result.scores >= threshold).sum())
        print(json.dumps(summary))
    return 0
