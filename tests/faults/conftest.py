"""Fixtures of the fault-injection suite (`fault_harness`): a small dataset, its config, an uninterrupted run.

`fault_run` is the reference: `gsmoe train` of every stage, uninterrupted, on `fault_data` with
`fault_harness.FAULT_OVERRIDES`, in a child forked like every faulted run. Tests copy what they change.
The number of kills and where they landed is printed at the end of the session (`KILLS`).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # fault_harness, fault_child (the fork server imports them too)

import fault_harness as fh  # noqa: E402


@pytest.fixture(scope="session")
def fault_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from gsmoe_lib.data.synthetic import synthesize

    return Path(synthesize(tmp_path_factory.mktemp("faults") / "data", **fh.FAULT_DATA))


@pytest.fixture(scope="session")
def fault_config(fault_data: Path) -> Path:
    path = fault_data.parent / "overrides.json"
    path.write_text(json.dumps(fh.FAULT_OVERRIDES))
    return path


@pytest.fixture(scope="session")
def fault_run(fault_data: Path, fault_config: Path) -> Path:
    import time

    run = fault_data.parent / "reference"
    start = time.monotonic()
    code = fh.run_child(fh.train_args(fault_data, run, fault_config), log=fault_data.parent / "reference.log")
    assert code == 0, (fault_data.parent / "reference.log").read_text()[-3000:]
    (fault_data.parent / "reference.seconds").write_text(f"{time.monotonic() - start:.2f}\n")
    return run


@pytest.fixture
def copy_run(fault_run: Path, tmp_path: Path):
    """A copy of the reference run, to damage."""
    def make(name: str = "run") -> Path:
        return Path(shutil.copytree(fault_run, tmp_path / name))
    return make


def pytest_terminal_summary(terminalreporter):
    if fh.KILLS:
        terminalreporter.write_sep("-", f"fault suite: {len(fh.KILLS)} kills survived (SIGKILL), each rerun "
                                        "equal to the uninterrupted run")
        for where, count in sorted(fh.kill_table().items()):
            terminalreporter.write_line(f"  {count:3d}  {where}")
    for line in fh.CASES:
        terminalreporter.write_line(f"  {line}")
