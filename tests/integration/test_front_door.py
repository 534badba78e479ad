"""A finished run survives a notebook asked for something else: nothing is overwritten.

Notebook 11 is rerun on a copy of the session's finished tiny run with one parameter changed (a TGS
configuration file, as the tuner of notebook 50 writes one), from notebooks/ as the working directory as
JupyterLab runs it. It must stop with an error naming the differing key, and every file of every finished
stage must be byte-identical afterwards.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from gsmoe_lib.notebook import NotebookFailed, execute_notebook
from gsmoe_lib.paths import PROJECT_ROOT
from gsmoe_lib.tgs import TGSConfig

pytestmark = pytest.mark.slow
NOTEBOOKS = PROJECT_ROOT / "notebooks"


def _stage_files(seed_dir: Path) -> dict[str, bytes]:
    """Every file of every finished stage (a folder with DONE), by relative path."""
    return {str(p.relative_to(seed_dir)): p.read_bytes()
            for done in sorted(seed_dir.glob("*/DONE")) for p in sorted(done.parent.rglob("*")) if p.is_file()}


def test_a_changed_parameter_leaves_the_finished_stages_byte_identical(tiny_run, tiny_data, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run / "seed-0", run / "seed-0", ignore=shutil.ignore_patterns("*.partial.pt"))
    before = _stage_files(run / "seed-0")
    assert {"encoder/DONE", "tgs/DONE", "experts/DONE", "gate/DONE"} <= set(before)
    tuned = tmp_path / "tuned.json"
    tuned.write_text(replace(TGSConfig(), sigma_floor=TGSConfig().sigma_floor + 1.0).to_json())
    params = {"run_dir": str(run), "data_root": str(tiny_data), "profile": "tiny", "tgs_config": str(tuned)}
    with pytest.raises(NotebookFailed) as err:
        execute_notebook(NOTEBOOKS / "11_tgs_finetuning.ipynb", tmp_path / "out" / "11.ipynb", params, cwd=NOTEBOOKS,
                         timeout=300)
    message = str(err.value)
    assert "StageConflict" in message and "settings.tgs.sigma_floor" in message, message
    assert _stage_files(run / "seed-0") == before
    assert not (run / "seed-0" / "replaced").exists()
