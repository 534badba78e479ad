"""Notebooks resolve their paths against the project, not the kernel's folder, and default to the reproduce run."""

from __future__ import annotations

import types
from pathlib import Path

import pytest

from gsmoe_lib import notebook
from gsmoe_lib.notebook import PATH_PARAMETERS, declared_parameters, validate_parameters
from gsmoe_lib.paths import PROJECT_ROOT
from gsmoe_lib.reproduce import DEFAULT_OUT, LIST_PARAMETERS
from gsmoe_lib.training.config import make_config

COMMITTED = sorted((PROJECT_ROOT / "notebooks").glob("*.ipynb"))
CELL = ('run_dir: str = "runs/reproduce"  # run\ndata_root: str = ""  # data\ntgs_config: str = ""  # tgs\n'
        'annotations: str = "/abs/a.txt"  # ann\nprofile: str = "tiny"  # profile\ndataset: str = ""  # ds\n'
        'device: str = "cpu"  # device')


def _validated(cwd: Path, monkeypatch, **values) -> types.SimpleNamespace:
    monkeypatch.chdir(cwd)
    ns = {"In": ["", CELL], "run_dir": "runs/reproduce", "data_root": "", "tgs_config": "", "annotations": "/abs/a.txt",
          "profile": "tiny", "dataset": "", "device": "cpu"}
    ns.update(values)
    return validate_parameters(ns)


@pytest.mark.parametrize("cwd", ["notebooks", "tmp"])
def test_relative_paths_are_the_projects_whatever_the_working_directory(cwd, tmp_path, monkeypatch):
    folder = PROJECT_ROOT / "notebooks" if cwd == "notebooks" else tmp_path
    P = _validated(folder, monkeypatch, tgs_config="runs/reproduce/tgs_config.json")
    assert P.run_dir == str(PROJECT_ROOT / "runs" / "reproduce")
    assert P.tgs_config == str(PROJECT_ROOT / "runs" / "reproduce" / "tgs_config.json")
    assert P.annotations == "/abs/a.txt"  # absolute: kept
    assert P.data_root == ""  # "" keeps meaning "the profile's default", which is absolute itself
    cfg = notebook.config(types.SimpleNamespace(**{**vars(P), "tgs_config": ""}), 0)  # no such TGS file here
    assert Path(cfg.data.data_root) == PROJECT_ROOT / "data" / "synthetic-tiny"
    assert cfg.data.annotations == "/abs/a.txt" and cfg.encoder.iterations == make_config("tiny").encoder.iterations


def test_every_path_parameter_a_notebook_declares_is_resolved():
    declared = {name for path in COMMITTED for name in declared_parameters(path)}
    looks_like_a_path = {n for n in declared if n.endswith(("_dir", "_root", "_list", "_out", "_config"))
                         or n == "annotations"}
    assert looks_like_a_path <= set(PATH_PARAMETERS), looks_like_a_path - set(PATH_PARAMETERS)


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: p.name)
def test_notebooks_default_to_the_reproduce_run_and_take_list_files(path):
    declared = declared_parameters(path)
    assert declared["run_dir"] == ("str", DEFAULT_OUT), "one default run folder for batch and interactive use"
    assert declared["data_root"] == ("str", "")
    for name in LIST_PARAMETERS:
        assert declared.get(name) == ("str", ""), f"{path.name}: {name} not declared"
    source = path.read_text()
    assert "train.config_for(" not in source, f"{path.name}: use notebook.config(P, seed), which passes every option"
