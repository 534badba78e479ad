"""papermill's per-cell timeout: a parameter of `gsmoe reproduce` and `gsmoe sweep`, by profile by default."""

from __future__ import annotations

import argparse

import pytest

from gsmoe_lib import notebook, reproduce, sweep


def test_the_default_cell_timeout_scales_with_the_profile():
    assert notebook.cell_timeout_for("tiny", None) < notebook.cell_timeout_for("quick", None)
    assert notebook.cell_timeout_for("quick", None) > 1800  # 1,800 s failed a loaded 2-core machine
    assert notebook.cell_timeout_for("paper", None) is None  # hours of training per cell: no limit
    assert notebook.cell_timeout_for("quick", 0) is None and notebook.cell_timeout_for("paper", 90) == 90
    with pytest.raises(ValueError, match="cell timeout"):
        notebook.cell_timeout_for("quick", -1)


def test_reproduce_passes_the_cell_timeout_to_every_notebook(monkeypatch, tmp_path):
    seen = []
    monkeypatch.setattr(notebook, "execute_notebook",
                        lambda path, copy, params, cwd, timeout, progress: seen.append(timeout))
    monkeypatch.setattr(reproduce, "collect_results", lambda *a, **k: {})
    data = tmp_path / "data"
    data.mkdir()
    for cell_timeout, expected in ((None, notebook.CELL_TIMEOUTS["tiny"]), (77, 77), (0, None)):
        seen.clear()
        reproduce.reproduce(out=tmp_path / f"run-{cell_timeout}", data_root=data, profile="tiny", notebooks=["50"],
                            cell_timeout=cell_timeout, progress=False, copy_figures=False)
        assert seen == [expected]


def test_the_command_lines_take_cell_timeout():
    parser = argparse.ArgumentParser()
    reproduce.add_arguments(parser)
    assert parser.parse_args(["--cell-timeout", "600"]).cell_timeout == 600
    assert parser.parse_args(["--timeout", "60"]).cell_timeout == 60  # the older name
    assert parser.parse_args([]).cell_timeout is None
    parser = argparse.ArgumentParser()
    sweep.add_arguments(parser)
    assert parser.parse_args(["spec.yaml", "--cell-timeout", "900"]).cell_timeout == 900
    spec = sweep.parse_spec({"profile": "tiny", "seeds": 1, "cell_timeout": 120})
    assert spec.timeout == 120 and sweep.parse_spec({"profile": "tiny", "seeds": 1}).timeout is None
    with pytest.raises(sweep.SpecError, match="cell_timeout"):
        sweep.parse_spec({"profile": "tiny", "seeds": 1, "cell_timeout": -5})
