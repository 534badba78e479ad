"""Shared fixtures.

`tiny_run`: a finished run of every training stage (encoder, tgs, experts, gate) on the `tiny` synthetic
dataset, trained once per test session (about a minute on a loaded 2-core machine). It yields RUN, the
folder that holds `seed-0/` (the notebooks' `run_dir`); the dataset it was trained on is `tiny_data`.
A notebook run with profile="tiny", data_root=str(tiny_data), seeds=1 and run_dir=str(tiny_run) finds its
stages finished (same config) and loads them instead of training. Tests must not modify these folders:
copy what they need to change.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from gsmoe_lib.data.synthetic import synthesize

    return Path(synthesize(tmp_path_factory.mktemp("tiny") / "data", profile="tiny", seed=0))


@pytest.fixture(scope="session")
def tiny_run(tiny_data: Path) -> Path:
    from gsmoe_lib.runs import Run
    from gsmoe_lib.training.config import config_for
    from gsmoe_lib.training.pipeline import run_pipeline

    run_dir = tiny_data.parent / "run"
    cfg = config_for("tiny", str(tiny_data), "", 0, "cpu")
    run_pipeline(cfg, Run(run_dir).seed(0).path, progress=False)
    yield run_dir
