"""The wheel installs and works outside the repository: `python -m build`, then `pip install dist/*.whl`.

Builds the sdist and the wheel of the working tree, installs the wheel into a fresh virtual environment and
runs the installed console script from a folder outside the repository: `gsmoe --version`, `gsmoe --help`,
`gsmoe data synth` (the generator and the packaged official lists) and `gsmoe score` on a finished run.

Kept fast:
- the build is what a user runs, `python -m build` (an isolated build environment with setuptools from the
  configured package index), on a copy of the tracked tree so nothing is written into the working tree;
- the fresh venv gets the project's dependencies without installing them: a `.pth` file adds this
  environment's site-packages to its sys.path after its own, and the wheel is installed with `--no-deps`.
  A plain path in a `.pth` file is not scanned for `.pth` files itself, so the editable install of the
  working tree (its `__editable__` finder) stays out and `gsmoe_lib` comes from the wheel, which the test
  checks;
- the run to score is a copy of the session's tiny finished run (tests/conftest.py): nothing is trained.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

from gsmoe_lib import __version__
from gsmoe_lib.paths import PROJECT_ROOT

pytestmark = pytest.mark.slow


def _run(cmd: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(Path.home()), "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1",
           **{k: v for k, v in os.environ.items() if k.startswith("PIP_")}, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert res.returncode == 0, f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res


def _packaged_files() -> set[str]:
    """Every file the installed package needs at run time: the tracked files under gsmoe_lib/ (not tests)."""
    out = subprocess.run(["git", "-C", str(PROJECT_ROOT), "ls-files", "gsmoe_lib"], capture_output=True,
                         text=True, check=True).stdout.split()
    return {p for p in out if not p.endswith((".pyc",))}


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    # A copy of the tracked tree, so the build writes nothing (egg-info, build/) into the working tree.
    src = out / "src"
    files = subprocess.run(["git", "-C", str(PROJECT_ROOT), "ls-files", "--cached", "--others",
                            "--exclude-standard"], capture_output=True, text=True, check=True).stdout.split("\n")
    for rel in filter(None, files):
        if (PROJECT_ROOT / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(PROJECT_ROOT / rel, src / rel)
    _run([sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(out / "dist"), str(src)], cwd=out)
    return out / "dist"


def test_build_gives_a_wheel_and_an_sdist_with_every_runtime_file(dist):
    wheels, sdists = list(dist.glob("gsmoe-*.whl")), list(dist.glob("gsmoe-*.tar.gz"))
    assert [w.name for w in wheels] == [f"gsmoe-{__version__}-py3-none-any.whl"]
    assert [s.name for s in sdists] == [f"gsmoe-{__version__}.tar.gz"]
    in_wheel = set(zipfile.ZipFile(wheels[0]).namelist())
    missing = sorted(_packaged_files() - in_wheel)
    assert not missing, f"files under gsmoe_lib/ left out of the wheel (pyproject package-data): {missing}"
    with tarfile.open(sdists[0]) as tar:
        in_sdist = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    assert not sorted(_packaged_files() - in_sdist)
    assert {"README.md", "pyproject.toml"} <= in_sdist


@pytest.fixture(scope="module")
def venv(dist, tmp_path_factory) -> Path:
    env = tmp_path_factory.mktemp("venv") / "venv"
    _run([sys.executable, "-m", "venv", str(env)], cwd=env.parent)
    py = env / "bin" / "python"
    site = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     cwd=env.parent).stdout.strip())
    (site / "project-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    wheel = next(dist.glob("gsmoe-*.whl"))
    _run([str(py), "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)], cwd=env.parent)
    return env


def test_installed_wheel_runs_its_commands_outside_the_repository(venv, tiny_run, tiny_data, tmp_path):
    gsmoe, py = venv / "bin" / "gsmoe", venv / "bin" / "python"
    where = _run([str(py), "-c", "import gsmoe_lib; print(gsmoe_lib.__file__)"], cwd=tmp_path).stdout.strip()
    assert Path(where).is_relative_to(venv), f"gsmoe_lib imported from {where}, not from the installed wheel"
    assert _run([str(gsmoe), "--version"], cwd=tmp_path).stdout.strip() == f"gsmoe {__version__}"
    helptext = _run([str(gsmoe), "--help"], cwd=tmp_path).stdout
    assert all(cmd in helptext for cmd in ("data", "train", "score", "reproduce", "bench"))

    # the generator and its packaged resources: the same tiny dataset as the one the test session built
    _run([str(gsmoe), "data", "synth", "--out", str(tmp_path / "data"), "--profile", "tiny"], cwd=tmp_path)
    manifest = json.loads((tmp_path / "data" / "gsmoe_dataset.json").read_text())
    assert manifest == json.loads((tiny_data / "gsmoe_dataset.json").read_text())
    _run([str(gsmoe), "data", "check", "--data-root", str(tmp_path / "data")], cwd=tmp_path)

    # scoring a feature file the installed generator wrote, with a finished run
    run = tmp_path / "run"
    shutil.copytree(tiny_run / "seed-0", run / "seed-0", ignore=shutil.ignore_patterns("*.partial.pt"))
    feature = sorted((tmp_path / "data").rglob("*.npy"))[0]
    _run([str(gsmoe), "score", "--run", str(run), str(feature), "--out", str(tmp_path / "scores")], cwd=tmp_path)
    csv = tmp_path / "scores" / f"{feature.stem}_scores.csv"
    # the notebooks are not in the wheel: gsmoe reproduce says so in one line
    res = subprocess.run([str(gsmoe), "reproduce"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "runs from a source checkout" in res.stderr
    rows = csv.read_text().splitlines()
    assert "score" in rows[0].split(",") and len(rows) > 2, f"{csv}: no per-snippet scores"
