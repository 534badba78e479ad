"""`gsmoe extract` and `gsmoe score VIDEO` through the console script, as a user runs them.

Inputs are made here (videos written with PyAV, random weights saved under the public key names); the
centre recipe keeps each forward pass to one clip per snippet, so the file stays fast on a CPU.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gsmoe_lib.extract.weights import random_weights
from videos import truncate, write_video

pytest.importorskip("av")
GSMOE = Path(sys.executable).with_name("gsmoe")


def _gsmoe(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(GSMOE), *map(str, args)], capture_output=True, text=True, timeout=600,
                          env={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PATH": "/usr/bin:/bin",
                               "MPLBACKEND": "Agg", "HOME": str(Path.home())})


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("extract")
    weights = root / "rgb_imagenet_random.pt"
    torch.save(random_weights("i3d-inception", "piergiaj"), weights)
    return {"root": root, "weights": weights,
            "small": write_video(root / "small.mp4", 17, 320, 240),
            "large": write_video(root / "large.mp4", 16, 1280, 720),
            "short": write_video(root / "short.mp4", 15, 320, 240)}


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.slow
def test_extract_writes_features_manifest_and_a_folder_data_check_accepts(inputs):
    out = inputs["root"] / "features"
    res = _gsmoe("extract", inputs["small"], inputs["large"], "--weights", inputs["weights"], "--recipe", "centre",
                 "--out", out)
    assert res.returncode == 0, res.stderr
    small, large = np.load(out / "small__0.npy"), np.load(out / "large__0.npy")
    assert small.shape == (2, 1024) and large.shape == (1, 1024)  # ceil(17/16) = 2, ceil(16/16) = 1
    assert small.dtype == np.float32 and np.isfinite(small).all()
    m = json.loads((out / "extract.json").read_text())
    s = m["settings"]
    assert (s["recipe"], s["crop_order"], s["snippet_rule"], s["backbone"], s["feature_dim"], s["precision"]) == (
        "centre", ["centre"], "ceil", "i3d-inception", 1024, "float32")
    assert s["weights_sha256"] == hashlib.sha256(inputs["weights"].read_bytes()).hexdigest()
    assert s["weights_key_set"] == "piergiaj"
    assert {k: (v["frames_decoded"], v["snippets"], v["fps"], v["width"]) for k, v in m["videos"].items()} == {
        "small": (17, 2, 25.0, 320), "large": (16, 1, 25.0, 1280)}
    assert m["environment"]["av"] and m["environment"]["device"] == "cpu"
    check = _gsmoe("data", "check", "--data-root", out)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "no problems found" in check.stdout and "2 videos, 3 snippets" in check.stdout

    # The same command again: every video is done, nothing is rewritten.
    before = _snapshot(out)
    again = _gsmoe("extract", inputs["small"], inputs["large"], "--weights", inputs["weights"], "--recipe", "centre",
                   "--out", out)
    assert again.returncode == 0, again.stderr
    assert {k: v for k, v in _snapshot(out).items() if k != "extract.json"} == {
        k: v for k, v in before.items() if k != "extract.json"}
    # Other settings on the same folder: one line, exit 2, nothing touched.
    other = _gsmoe("extract", inputs["small"], "--weights", inputs["weights"], "--recipe", "centre",
                   "--snippets", "floor", "--out", out)
    assert other.returncode == 2 and "snippet_rule: 'ceil' -> 'floor'" in other.stderr
    assert len(other.stderr.strip().splitlines()) == 1
    assert _snapshot(out) == _snapshot(out) and (out / "small__0.npy").read_bytes() == before["small__0.npy"]


def test_floor_rule_and_rtfm_layout(inputs):
    out = inputs["root"] / "rtfm"
    res = _gsmoe("extract", inputs["small"], "--weights", inputs["weights"], "--recipe", "centre", "--snippets",
                 "floor", "--layout", "rtfm", "--out", out)
    assert res.returncode == 0, res.stderr
    assert np.load(out / "small_i3d.npy").shape == (1, 1, 1024)  # floor(17/16) = 1, [T, C, D]
    assert _gsmoe("data", "check", "--data-root", out).returncode == 0


@pytest.mark.parametrize("case", ["not a video", "truncated", "too short", "bad weights", "foreign file"])
def test_bad_input_is_one_line_exit_2_and_nothing_half_written(inputs, case, tmp_path):
    out = tmp_path / "out"
    video, weights, expect = inputs["small"], inputs["weights"], ""
    if case == "not a video":
        video = tmp_path / "notes.mp4"
        video.write_text("hello\n")
        expect = "notes.mp4: not a video"
    elif case == "truncated":
        video = truncate(write_video(tmp_path / "long.mp4", 48), tmp_path / "cut.mp4")
        expect = "cut.mp4: "
    elif case == "too short":
        video, expect = inputs["short"], "short.mp4: 15 frames decoded, fewer than the 16 frames"
    elif case == "bad weights":
        weights = tmp_path / "rgb_charades.pt"
        torch.save({"logits.conv3d.weight": torch.zeros(157, 1024, 1, 1, 1)}, weights)
        expect = "rgb_charades.pt: not i3d-inception weights"
    else:
        out.mkdir()
        (out / "small__0.npy").write_bytes(b"someone else's")
        expect = "small__0.npy: exists but"
    res = _gsmoe("extract", video, "--weights", weights, "--recipe", "centre", "--out", out)
    assert res.returncode == 2, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and expect in res.stderr, res.stderr
    if case == "truncated":
        assert "frame" in res.stderr
    if case == "foreign file":
        assert (out / "small__0.npy").read_bytes() == b"someone else's"
    else:
        assert not out.exists() or not any(p.suffix == ".npy" for p in out.iterdir())


def test_score_a_video_through_the_console_script(inputs, tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run / "seed-0", run / "seed-0", ignore=shutil.ignore_patterns("*.partial.pt"))
    res = _gsmoe("score", "--run", run, inputs["small"], "--i3d", inputs["weights"], "--recipe", "centre", "--plot")
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["snippets"] == 2 and summary["backbone"] == "i3d-inception" and summary["recipe"] == "centre"
    scores = run / "scores"
    rows = list(csv.DictReader(open(scores / "small_scores.csv")))
    assert [int(r["snippet"]) for r in rows] == [0, 1] and all(0 <= float(r["score"]) <= 1 for r in rows)
    assert (scores / "features" / "small__0.npy").is_file() and (scores / "features" / "extract.json").is_file()
    assert (scores / "small_scores.png").stat().st_size > 10_000
    # Without --i3d a video is one clear error.
    res = _gsmoe("score", "--run", run, inputs["small"])
    assert res.returncode == 2 and "pass --i3d WEIGHTS" in res.stderr


def test_score_a_video_with_a_released_urdmu_checkpoint_alone(inputs, tmp_path):
    """The two public files only: I3D weights and a UR-DMU checkpoint (here random, in the released keys)."""
    from gsmoe_lib.models.urdmu import URDMU

    torch.manual_seed(0)
    checkpoint = tmp_path / "urdmu_ucf.pkl"
    torch.save(URDMU(input_dim=1024).state_dict(), checkpoint)
    out = tmp_path / "scores"
    res = _gsmoe("score", "--encoder", checkpoint, inputs["small"], "--i3d", inputs["weights"], "--recipe", "centre",
                 "--out", out, "--plot")
    assert res.returncode == 0, res.stderr
    rows = list(csv.DictReader(open(out / "small_scores.csv")))
    assert len(rows) == 2 and rows[0]["strongest_expert"] == "UR-DMU" and rows[0]["UR-DMU"] == rows[0]["score"]
    assert (out / "small_scores.png").is_file() and (out / "features" / "small__0.npy").is_file()
    both = _gsmoe("score", "--encoder", checkpoint, "--run", tmp_path, inputs["small"], "--i3d", inputs["weights"])
    assert both.returncode == 2 and "either --run RUN" in both.stderr
