"""Parameter validation of the notebooks (gsmoe_lib.notebook) and the hygiene of every committed notebook."""

from __future__ import annotations

import ast
import re
import types
from pathlib import Path

import nbformat
import pytest
from papermill.translators import PythonTranslator

from gsmoe_lib.notebook import ParameterError, check_parameters, declared_parameters, setup, validate_parameters
from gsmoe_lib.paths import PROJECT_ROOT
from gsmoe_lib.reproduce import COMMON_PARAMETERS, NOTEBOOKS

NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"
COMMITTED = sorted(NOTEBOOK_DIR.glob("*.ipynb"))

PARAMS = 'run_dir: str = "runs/x"  # run folder\nseeds: int = 1  # seeds\nrate: float = 0.5  # a rate\nks: list = [5, 6]  # k'


def _namespace(injected: str | None, **values) -> dict:
    """What a kernel's globals look like after the parameters cell (and papermill's injected cell) ran."""
    history = ["", PARAMS] + ([injected] if injected else []) + ["P = validate_parameters(globals())"]
    ns = {"In": history, "run_dir": "runs/x", "seeds": 1, "rate": 0.5, "ks": [5, 6]}
    ns.update(values)
    return ns


def test_validate_parameters_returns_the_declared_values():
    P = validate_parameters(_namespace('# Parameters\nseeds = 3\nrate = 1\n', seeds=3, rate=1))
    # run_dir is a path parameter: made absolute against the project root (test_notebook_paths.py)
    assert (P.run_dir, P.seeds, P.rate, P.ks) == (str(PROJECT_ROOT / "runs/x"), 3, 1, [5, 6])  # int is a float
    assert not hasattr(P, "In")


def test_validate_parameters_rejects_an_unknown_injected_name():
    with pytest.raises(ParameterError, match="unknown parameter 'seed'"):
        validate_parameters(_namespace("# Parameters\nseed = 3\n", seed=3))


@pytest.mark.parametrize("name, value", [("seeds", "3"), ("seeds", True), ("rate", "fast"), ("ks", 5)])
def test_validate_parameters_rejects_a_wrong_type(name, value):
    with pytest.raises(ParameterError, match=f"parameter '{name}'"):
        validate_parameters(_namespace(f"# Parameters\n{name} = {value!r}\n", **{name: value}))


def test_validate_parameters_needs_a_parameters_cell():
    with pytest.raises(ParameterError, match="no parameters cell"):
        validate_parameters({"In": ["", "x = 1"], "x": 1})


def _write_notebook(path: Path, params: str) -> Path:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(params, metadata={"tags": ["parameters"]})])
    nbformat.write(nb, str(path))
    return path


def test_check_parameters(tmp_path):
    path = _write_notebook(tmp_path / "t.ipynb", PARAMS)
    assert declared_parameters(path)["seeds"] == ("int", 1)
    check_parameters(path, {"seeds": 2, "rate": 3, "ks": [7]})
    with pytest.raises(ParameterError, match=r"t\.ipynb: unknown parameter 'sedes'"):
        check_parameters(path, {"sedes": 2})
    with pytest.raises(ParameterError, match="'seeds' = 2.5 is not of the declared type int"):
        check_parameters(path, {"seeds": 2.5})


def test_check_parameters_needs_a_tagged_cell(tmp_path):
    path = tmp_path / "u.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x: int = 1")]), str(path))
    with pytest.raises(ParameterError, match="no cell tagged 'parameters'"):
        check_parameters(path, {})


# ---------------------------------------------------------------------------------------------------
# Hygiene of the committed notebooks
# ---------------------------------------------------------------------------------------------------


def test_the_collection_has_notebooks():
    assert COMMITTED, f"no notebooks in {NOTEBOOK_DIR}"
    assert {p.stem for p in COMMITTED} <= set(NOTEBOOKS), "a notebook missing from reproduce.NOTEBOOKS never runs"


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: p.name)
def test_committed_notebook_hygiene(path):
    nb = nbformat.read(str(path), as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# "), "first cell: a title"
    code = [c for c in nb.cells if c.cell_type == "code"]
    for cell in code:
        assert cell.outputs == [], f"{path.name}: a cell has outputs"
        assert cell.execution_count is None, f"{path.name}: a cell has an execution count"
    first, second = code[0], code[1]
    assert "parameters" in first.metadata.get("tags", [])
    for line in first.source.splitlines():
        node = ast.parse(line).body[0]
        assert isinstance(node, ast.AnnAssign) and node.value is not None, f"{path.name}: {line!r}"
        ast.literal_eval(node.value)  # literals only
        assert "  # " in line, f"{path.name}: parameter without a help comment: {line!r}"
    declared = declared_parameters(path)
    # papermill reads the cell too (to warn about unknown parameters); a line it cannot parse (e.g. a
    # second "=" in the help comment) makes it warn about every injected value of that name.
    assert {p.name for p in PythonTranslator.inspect(first)} == set(declared), f"{path.name}: papermill cannot parse"
    missing = [p for p in COMMON_PARAMETERS if p not in declared]
    assert not missing, f"{path.name}: common parameters not declared: {missing}"
    assert "validate_parameters(globals())" in second.source


def test_no_notebook_repeats_what_the_library_holds():
    """The setup, the per-seed table and the frames per snippet each have one home."""
    for path in COMMITTED:
        nb = nbformat.read(str(path), as_version=4)
        code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
        assert "train.load_data(" not in code, f"{path.name}: load the data with notebook.setup(P)"
        assert "def per_seed_table" not in code, f"{path.name}: use reporting.per_seed_table"
        for line in code.splitlines():
            statement = line.split("#", 1)[0]  # "[T*16]" in a comment is the notation of docs/design.md
            assert not re.search(r"\b16\b", statement), f"{path.name}: a bare 16, use SNIPPET_FRAMES: {line!r}"


def test_setup_gives_one_config_per_seed_and_the_data_once(tiny_data, capsys):
    P = types.SimpleNamespace(profile="tiny", data_root=str(tiny_data), dataset="", device="cpu", seeds=2,
                              first_seed=3, tgs_config="", train_list="", test_list="", annotations="")
    cfgs, data = setup(P, progress=False)
    assert [c.seed for c in cfgs] == [3, 4]
    assert cfgs[0].data == cfgs[1].data  # only the seed differs: one dataset serves both
    assert data.dataset == "ucf-crime" and len(data.test.videos) > 0
    assert f"{len(data.test.videos)} test videos" in capsys.readouterr().out
    del P.first_seed  # a notebook without first_seed starts at seed 0
    assert [c.seed for c in setup(P, progress=False).cfgs] == [0, 1]
