"""Fixtures of the fault-injection suite (`fault_harness`): a small dataset, its config, an uninterrupted run.

`fault_run` is the reference: `gsmoe train` of every stage, uninterrupted, on `fault_data` with
`fault_harness.FAULT_OVERRIDES`, in a child forked like every faulted run. Tests copy what they change.
The number of kills and where they landed is printed at the end of the session (`KILLS`). Under xdist the
workers share the dataset and the reference run (`shared_folders`) and hand their lines to the controller.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # fault_harness, fault_child (the fork server imports them too)

import fault_harness as fh  # noqa: E402
from shared_folders import shared_folder  # noqa: E402


@pytest.fixture(scope="session")
def fault_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from gsmoe_lib.data.synthetic import synthesize

    def build(folder: Path) -> None:
        synthesize(folder / "data", **fh.FAULT_DATA)
        (folder / "overrides.json").write_text(json.dumps(fh.FAULT_OVERRIDES))

    return shared_folder(tmp_path_factory, "faults", build) / "data"


@pytest.fixture(scope="session")
def fault_config(fault_data: Path) -> Path:
    return fault_data.parent / "overrides.json"


@pytest.fixture(scope="session")
def fault_run(fault_data: Path, fault_config: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted run, in <folder>/reference; <folder>/reference.seconds: how long its child took."""
    import time

    def build(folder: Path) -> None:
        start = time.monotonic()
        code = fh.run_child(fh.train_args(fault_data, folder / "reference", fault_config),
                            log=folder / "reference.log")
        assert code == 0, (folder / "reference.log").read_text()[-3000:]
        (folder / "reference.seconds").write_text(f"{time.monotonic() - start:.2f}\n")

    return shared_folder(tmp_path_factory, "fault-reference", build) / "reference"


@pytest.fixture
def copy_run(fault_run: Path, tmp_path: Path):
    """A copy of the reference run, to damage."""
    def make(name: str = "run") -> Path:
        return Path(shutil.copytree(fault_run, tmp_path / name))
    return make


def pytest_terminal_summary(terminalreporter):
    fh.write_summary(terminalreporter, fh.KILLS, fh.CASES)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Under xdist: hand this worker's lines to the controller, which prints them (tests/conftest.py)."""
    output = getattr(session.config, "workeroutput", None)
    if output is not None:
        output["fault_kills"], output["fault_cases"] = list(fh.KILLS), list(fh.CASES)
