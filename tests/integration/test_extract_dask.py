"""`gsmoe extract --list FILE --executor dask`: videos shared across a local two-worker Dask cluster, one
manifest, and a rerun that resumes per video (the done ones untouched)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gsmoe_lib.extract.weights import random_weights
from videos import write_video

pytestmark = pytest.mark.slow

pytest.importorskip("av")
pytest.importorskip("distributed")
GSMOE = Path(sys.executable).with_name("gsmoe")


def _extract(*args) -> subprocess.CompletedProcess:
    return subprocess.run([str(GSMOE), "extract", *map(str, args)], capture_output=True, text=True, timeout=600,
                          env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HOME": str(Path.home())})


def test_dask_executor_shares_videos_and_resumes(tmp_path):
    weights = tmp_path / "i3d_rgb.pt"
    torch.save(random_weights("i3d-inception", "hassony2"), weights)
    clips = [write_video(tmp_path / f"clip{i}.mp4", 16 + 16 * (i == 1)) for i in range(3)]
    listing = tmp_path / "videos.txt"
    listing.write_text("# two clips first\nclip0.mp4\n\nclip1.mp4\n")  # relative to the list's folder
    out = tmp_path / "features"
    args = ("--list", listing, "--weights", weights, "--recipe", "centre", "--out", out, "--executor", "dask",
            "--workers", "2")
    first = _extract(*args)
    assert first.returncode == 0, first.stderr
    manifest = json.loads((out / "extract.json").read_text())
    assert {k: v["snippets"] for k, v in manifest["videos"].items()} == {"clip0": 1, "clip1": 2}
    assert manifest["settings"]["weights_key_set"] == "hassony2"
    stamps = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.glob("*.npy")}

    listing.write_text("clip0.mp4\nclip1.mp4\nclip2.mp4\n")
    second = _extract(*args)
    assert second.returncode == 0, second.stderr
    manifest = json.loads((out / "extract.json").read_text())
    assert sorted(manifest["videos"]) == ["clip0", "clip1", "clip2"]
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.glob("clip[01]__0.npy")} == stamps
    assert np.load(out / "clip2__0.npy").shape == (1, 1024)
    assert (out / "extract.list").read_text().split() == ["clip0__0.npy", "clip1__0.npy", "clip2__0.npy"]
    # the same clip extracted locally gives the same numbers as on a worker
    local = tmp_path / "local"
    res = _extract(clips[2], "--weights", weights, "--recipe", "centre", "--out", local)
    assert res.returncode == 0, res.stderr
    np.testing.assert_allclose(np.load(local / "clip2__0.npy"), np.load(out / "clip2__0.npy"), rtol=1e-5, atol=1e-6)
