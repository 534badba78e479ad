"""Folders that the xdist workers of one test run share: built once per run, not once per worker.

`shared_folder(tmp_path_factory, name, build)` serves the session fixtures that train or write something
expensive (tests/conftest.py's tiny run, tests/faults/conftest.py's reference run). Importable from any test
module or conftest as `shared_folders` (pyproject: [tool.pytest.ini_options] pythonpath = ["tests"]).
"""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path
from typing import Callable

import pytest

XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER")  # "gw0", "gw1", ... inside an xdist worker, else None


def shared_folder(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], None]) -> Path:
    """The folder `name`, filled by `build(folder)` once per test run, shared by the xdist workers.

    In one process: a fresh temporary folder. Under xdist: <the run's temporary folder>/<name>, built by the
    first worker that asks while it holds <name>.lock; a build that failed is redone by the next asker.
    """
    if XDIST_WORKER is None:
        folder = tmp_path_factory.mktemp(name)
        build(folder)
        return folder
    root = tmp_path_factory.getbasetemp().parent  # the folder of this run, common to its workers
    folder, done = root / name, root / f"{name}.built"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if this worker dies
        if not done.is_file():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            build(folder)
            done.touch()
    return folder
