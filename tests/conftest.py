"""Shared fixtures, and how the suite runs on several CPU cores.

`tiny_run`: a finished run of every training stage (encoder, tgs, experts, gate) on the `tiny` synthetic
dataset, trained once per test session (about 20 s on one core). It yields RUN, the folder that holds
`seed-0/` (the notebooks' `run_dir`); the dataset it was trained on is `tiny_data`.
A notebook run with profile="tiny", data_root=str(tiny_data), seeds=1 and run_dir=str(tiny_run) finds its
stages finished (same config) and loads them instead of training. Tests must not modify these folders:
copy what they need to change.

Parallel runs. `make test` runs the suite in pytest-xdist workers (pyproject.toml's addopts: `-n auto
--dist loadfile --no-loadscope-reorder`, at most `MAX_WORKERS`); `-n 0` runs it in one process as before.
Decisions:
- **One torch thread per worker.** Two workers with two threads each on a 2-core machine only contend; every
  process a test starts (kernels, `gsmoe` commands) inherits OMP_NUM_THREADS=1 too, so the numbers a test
  compares between its own process and a child are computed alike.
- **Session fixtures are built once per run, not once per worker** (`shared_folder`): the first worker that
  needs one builds it under the run's common temporary folder while holding a file lock; the others wait for
  it and reuse it. Such a folder is read-only for the tests, as above.
- **A test file runs in one worker** (loadfile): its module-scoped fixtures (a trained run, a built wheel)
  are built once. (loadgroup with a mark per such file would split the rest finer, but pytest-xdist 3.8
  does not group by xdist_group under pytest 9: it renames `item._nodeid`, which pytest 9 no longer reads.)
  xdist hands out the files in the order of `pytest_collection_modifyitems` below: the long ones first.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from shared_folders import XDIST_WORKER, shared_folder

MAX_WORKERS = 4  # beyond this the suite is bound by its longest module (the smoke run), and each worker costs memory
FAULT_REPORT: dict[str, list[str]] = {"kills": [], "cases": []}  # the fault suite's lines, gathered from workers


def pytest_configure(config: pytest.Config) -> None:
    if XDIST_WORKER is not None:
        # before any test module imports torch; children (kernels, gsmoe commands) inherit the environment
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = "1"
        import torch

        torch.set_num_threads(1)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto`: the CPU cores this process may use (its affinity, not the machine's count), at most MAX_WORKERS."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return int(os.environ["PYTEST_XDIST_AUTO_NUM_WORKERS"])
    return max(1, min(MAX_WORKERS, len(os.sched_getaffinity(0))))


# The order in which xdist hands out the test files: the longest runs first, the many short unit tests last,
# where they fill whichever worker ends first. The fault suite second: it does not wait for the tiny run,
# which the smoke file's worker is training then.
FOLDER_ORDER = ("smoke", "faults", "browser", "integration", "unit")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if XDIST_WORKER is None:
        return  # one process: collection order, as before

    def rank(item: pytest.Item) -> tuple[int, int]:
        parts = item.nodeid.split("/")
        folder = FOLDER_ORDER.index(parts[1]) if len(parts) > 2 and parts[1] in FOLDER_ORDER else len(FOLDER_ORDER)
        slow_file = any(i.get_closest_marker("slow") for i in by_file[item.nodeid.split("::")[0]])
        return folder, 0 if slow_file else 1

    by_file: dict[str, list[pytest.Item]] = {}
    for item in items:
        by_file.setdefault(item.nodeid.split("::")[0], []).append(item)
    items.sort(key=rank)  # stable: the tests of a file keep their order


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from gsmoe_lib.data.synthetic import synthesize

    def build(folder: Path) -> None:
        synthesize(folder / "data", profile="tiny", seed=0)

    return shared_folder(tmp_path_factory, "tiny-data", build) / "data"


@pytest.fixture(scope="session")
def tiny_run(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from gsmoe_lib.runs import Run
    from gsmoe_lib.training.config import config_for
    from gsmoe_lib.training.pipeline import run_pipeline

    def build(folder: Path) -> None:
        cfg = config_for("tiny", str(tiny_data), "", 0, "cpu")
        run_pipeline(cfg, Run(folder / "run").seed(0).path, progress=False)

    return shared_folder(tmp_path_factory, "tiny-run", build) / "run"


# The fault suite's summary (tests/faults/conftest.py prints it in a one-process run). Under xdist each worker
# hands its lines over at its end (`workeroutput`) and this controller prints them.
@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:
    output = getattr(node, "workeroutput", {})
    FAULT_REPORT["kills"].extend(output.get("fault_kills", []))
    FAULT_REPORT["cases"].extend(output.get("fault_cases", []))


def pytest_terminal_summary(terminalreporter) -> None:
    if FAULT_REPORT["kills"] or FAULT_REPORT["cases"]:
        sys.path.insert(0, str(Path(__file__).parent / "faults"))
        import fault_harness

        fault_harness.write_summary(terminalreporter, FAULT_REPORT["kills"], FAULT_REPORT["cases"])
