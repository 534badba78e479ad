"""`gsmoe score` through the console script: one-line errors (exit 2), --debug, and --plot into RUN/scores/.

Runs on a copy of the session's tiny finished run (tests/conftest.py), since the default output folder is
inside the run.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gsmoe_lib.data.layouts import open_dataset
from gsmoe_lib.inference import first_non_finite, load_features

GSMOE = Path(sys.executable).with_name("gsmoe")  # the console script of this environment


def _gsmoe(*args: str) -> subprocess.CompletedProcess:
    assert GSMOE.is_file(), f"{GSMOE}: the console script is not installed (pip install -e .)"
    return subprocess.run([str(GSMOE), *args], capture_output=True, text=True, timeout=300,
                          env={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PATH": "/usr/bin:/bin",
                               "MPLBACKEND": "Agg", "HOME": str(Path.home())})


@pytest.fixture(scope="module")
def run(tiny_run, tmp_path_factory) -> Path:
    copy = tmp_path_factory.mktemp("score") / "run"
    shutil.copytree(tiny_run / "seed-0", copy / "seed-0", ignore=shutil.ignore_patterns("*.partial.pt"))
    return copy


@pytest.fixture(scope="module")
def video(tiny_data) -> tuple[str, np.ndarray]:
    test = open_dataset(tiny_data, "ucf-crime", "test")
    i = next(i for i, v in enumerate(test.videos) if v.label)  # an abnormal video: it has ground truth
    return test.videos[i].name, test.load(i)  # [C, T, D]


def _bad_files(folder: Path, x: np.ndarray) -> dict[str, tuple[Path, str]]:
    """name -> (file, what the one-line error must say)."""
    folder.mkdir(exist_ok=True)
    cases = {}
    np.save(folder / "wide.npy", np.zeros((*x.shape[:2], x.shape[2] + 1), np.float32))
    cases["wrong width"] = (folder / "wide.npy", f"D={x.shape[2]}")
    (folder / "empty.npy").write_bytes(b"")
    cases["empty"] = (folder / "empty.npy", "empty file")
    np.save(folder / "four.npy", x[None])
    cases["4 axes"] = (folder / "four.npy", "expected [T, D], [C, T, D] or [T, C, D]")
    cases["missing"] = (folder / "missing.npy", "not found")
    (folder / "text.npy").write_text("1 2 3\n")
    cases["not numpy"] = (folder / "text.npy", "not a NumPy .npy file")
    nan = x.copy()
    nan[1, 5, 3] = np.nan
    np.save(folder / "nan.npy", nan)
    cases["NaN"] = (folder / "nan.npy", "NaN or Inf at snippet 5 (crop 1")
    return cases


def test_user_errors_are_one_line_with_exit_status_2(run, video, tmp_path):
    for case, (path, expected) in _bad_files(tmp_path, video[1]).items():
        out = _gsmoe("score", "--run", str(run), str(path))
        err = out.stderr.strip()
        assert out.returncode == 2, (case, out.returncode, err)
        assert len(err.splitlines()) == 1 and "Traceback" not in err, (case, err)
        assert err.startswith("gsmoe score: error: ") and str(path) in err and expected in err, (case, err)
        assert not (run / "scores").exists()  # nothing written for a refused file


def test_debug_shows_the_traceback(run, tmp_path):
    (tmp_path / "text.npy").write_text("not numpy")
    out = _gsmoe("score", "--run", str(run), str(tmp_path / "text.npy"), "--debug")
    assert out.returncode != 0 and "Traceback (most recent call last)" in out.stderr
    assert "not a NumPy .npy file" in out.stderr


def test_load_features_names_what_is_wrong(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match=r"obj\.npy: holds Python objects"):
        load_features(tmp_path / "obj.npy")
    np.savez(tmp_path / "two.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match=r"two\.npz: a zip / \.npz archive"):
        load_features(tmp_path / "two.npz")
    np.save(tmp_path / "words.npy", np.array(["a", "b"]))
    with pytest.raises(ValueError, match="not real numbers"):
        load_features(tmp_path / "words.npy")
    good = np.zeros((2, 9, 3), np.float32)
    assert first_non_finite(good) is None
    good[0, 7, 2], good[1, 4, 0] = np.inf, np.nan
    assert first_non_finite(good, chunk=2) == (1, 4)  # the earliest snippet over all crops


def test_plot_writes_a_png_per_video_inside_the_run(run, video, tiny_data, tmp_path):
    name, x = video
    features = tmp_path / "features"  # stands for a read-only feature folder: nothing is written here
    features.mkdir()
    np.save(features / f"{name}__0.npy", x[0])  # one crop, UR-DMU's per-crop file name
    op = tmp_path / "op.json"
    op.write_text(json.dumps({"threshold": 0.5}))
    annotations = next(tiny_data.glob("*Annotation*"))
    out = _gsmoe("score", "--run", str(run), str(features / f"{name}__0.npy"), "--plot",
                 "--operating-point", str(op), "--annotations", str(annotations))
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    png = run / "scores" / f"{name}__0_scores.png"
    assert summary["plot"] == str(png) and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (run / "scores" / f"{name}__0_scores.csv").is_file()
    assert [p.name for p in features.iterdir()] == [f"{name}__0.npy"]
