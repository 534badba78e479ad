"""What every notebook of the collection shares: parameter validation, execution, result files.

Conventions (see notebooks/README.md):
- The first code cell is tagged `parameters` and holds literals only, one per line, `name: type = value  # help`.
- The second code cell calls `P = validate_parameters(globals())`: papermill only *warns* about a parameter
  the notebook does not declare, so this is where a typo (`seed=3` for `seeds=3`) or a wrong type becomes an
  error. It reads the parameters cell and papermill's injected cell from IPython's input history (`In`).
- The first step of every notebook that trains or loads stages is `cfgs, data = setup(P)`: one config per
  seed (`config(P, seed)`) and the data loaded once, instead of the same lines copied into each notebook.
- Results leave a notebook as files: `write_result(run_dir, name, obj)` writes RUN/results/<name>.json, which
  `gsmoe reproduce` merges into results.json / results.md; figures go through `figures.save_figure`.
- Paths are the project's, not the kernel's: JupyterLab starts a kernel in notebooks/, papermill in the
  folder it is given, a user anywhere. `validate_parameters` makes every path parameter (`PATH_PARAMETERS`)
  that is relative absolute against `project_root()`, so `run_dir="runs/reproduce"` (the default: the run
  `gsmoe reproduce` / `make reproduce` writes) and `data_root=""` (the profile's synthetic data,
  `training.config.default_data_root`) name the same folders from every working directory. One default run
  folder for batch and interactive use: a notebook opened after `make reproduce` loads its finished stages.
"""

from __future__ import annotations

import ast
import types
import typing
from pathlib import Path
from typing import Any

from gsmoe_lib import runs

INJECTED_HEADER = "# Parameters"  # the first line of the cell papermill injects

# Parameters that name files or folders: a relative one is relative to the project root (see the docstring).
PATH_PARAMETERS = ("run_dir", "data_root", "train_list", "test_list", "annotations", "tgs_config",
                   "tgs_config_out", "operating_point_out")


class ParameterError(ValueError):
    pass


def _annotated_assignments(source: str) -> dict[str, tuple[str, Any]]:
    """name -> (annotation source, literal value) for `name: type = literal` lines of a cell."""
    out: dict[str, tuple[str, Any]] = {}
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return out
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            out[node.target.id] = (ast.unparse(node.annotation), ast.literal_eval(node.value))
    return out


def _assigned_names(source: str) -> list[str]:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    names = []
    for node in tree.body:
        if isinstance(node, ast.Assign):
            names += [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.append(node.target.id)
    return names


def _type_ok(value: Any, annotation: str) -> bool:
    env = {"Optional": typing.Optional, "List": list, "Dict": dict, "Any": Any}
    try:
        tp = eval(annotation, {"__builtins__": __builtins__}, env)  # noqa: S307 - our own notebooks' annotations
    except Exception:
        return True  # an annotation we cannot evaluate is documentation only
    return _isinstance(value, tp)


def _isinstance(value: Any, tp: Any) -> bool:
    if tp is Any:
        return True
    if tp is None or tp is type(None):
        return value is None
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_isinstance(value, a) for a in typing.get_args(tp))
    if origin is not None:
        return isinstance(value, origin)
    return isinstance(value, tp) if isinstance(tp, type) else True


def validate_parameters(namespace: dict[str, Any]) -> types.SimpleNamespace:
    """Check the injected parameters against the declared ones; return them as a namespace.

    Declared: the first executed cell with `name: type = literal` lines (the `parameters` cell).
    Injected: papermill's cell (first line "# Parameters"). An injected name that is not declared, or a
    value whose type does not match the declaration, raises ParameterError naming it.
    """
    history = [src for src in namespace.get("In", []) if src]
    declared: dict[str, tuple[str, Any]] = {}
    for src in history:
        declared = _annotated_assignments(src)
        if declared:
            break
    if not declared:
        raise ParameterError("no parameters cell found: the first code cell must hold `name: type = value` lines")
    problems = []
    for src in history:
        if src.lstrip().startswith(INJECTED_HEADER):
            for name in _assigned_names(src):
                if name not in declared:
                    problems.append(f"unknown parameter {name!r} (declared: {', '.join(sorted(declared))})")
    for name, (annotation, _) in declared.items():
        value = namespace.get(name)
        if not _type_ok(value, annotation):
            problems.append(f"parameter {name!r} = {value!r} is not of the declared type {annotation}")
    if problems:
        raise ParameterError("; ".join(problems))
    values = {name: namespace[name] for name in declared}
    for name in PATH_PARAMETERS:
        if isinstance(values.get(name), str) and values[name]:  # "" keeps meaning "the default"
            values[name] = str(resolve_path(values[name]))
    return types.SimpleNamespace(**values)


def project_root() -> Path:
    """The source checkout holding notebooks/ (an editable install); else the current folder."""
    from gsmoe_lib.paths import PROJECT_ROOT

    return PROJECT_ROOT if (PROJECT_ROOT / "notebooks").is_dir() else Path.cwd()


def resolve_path(path: str | Path) -> Path:
    """`path` made absolute against the project root (not the kernel's working directory); `~` expanded."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else project_root() / path


def config(P: types.SimpleNamespace, seed: int, overrides: dict[str, Any] | None = None):
    """The PipelineConfig of a notebook's parameters for one seed (`training.config.config_for` with every data option).

    Reads `profile`, `data_root`, `dataset`, `device` and, when the notebook declares them, `tgs_config`,
    `train_list`, `test_list`, `annotations`.
    """
    from gsmoe_lib.training.config import config_for

    opt = {k: getattr(P, k, "") for k in ("tgs_config", "train_list", "test_list", "annotations")}
    return config_for(P.profile, P.data_root, P.dataset, seed, P.device, overrides=overrides, **opt)


class Setup(typing.NamedTuple):
    cfgs: list  # one train.PipelineConfig per seed: first_seed .. first_seed + seeds - 1
    data: Any  # train.Data: both splits, loaded once and shared by every seed


def setup(P: types.SimpleNamespace, progress: bool = True) -> Setup:
    """What every notebook that trains or loads stages does first: one config per seed, and the data.

    Seeds are `first_seed .. first_seed + seeds - 1` (`first_seed` 0 when the notebook does not declare it);
    the configs differ only in their seed, so the data (`training.data.load_data`, the training set pooled once)
    is loaded for the first and shared by all. Prints one line naming the dataset and its size.
    """
    from gsmoe_lib.training.data import load_data

    first = getattr(P, "first_seed", 0)
    cfgs = [config(P, s) for s in range(first, first + P.seeds)]
    data = load_data(cfgs[0].data, P.device, progress=progress)
    print(f"dataset {data.dataset}: {len(data.train.labels)} training samples, {len(data.test.videos)} test videos")
    return Setup(cfgs, data)


def declared_parameters(notebook_path: str | Path) -> dict[str, tuple[str, Any]]:
    """The parameters a notebook declares: name -> (annotation, default), from its `parameters` cell."""
    import nbformat

    nb = nbformat.read(str(notebook_path), as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code" and "parameters" in cell.metadata.get("tags", []):
            return _annotated_assignments(cell.source)
    raise ParameterError(f"{notebook_path}: no cell tagged 'parameters'")


def check_parameters(notebook_path: str | Path, params: dict[str, Any]) -> None:
    """Validate `params` before running a notebook (the same rules as `validate_parameters`)."""
    declared = declared_parameters(notebook_path)
    problems = [f"unknown parameter {n!r}" for n in params if n not in declared]
    problems += [f"parameter {n!r} = {v!r} is not of the declared type {declared[n][0]}"
                 for n, v in params.items() if n in declared and not _type_ok(v, declared[n][0])]
    if problems:
        raise ParameterError(f"{Path(notebook_path).name}: " + "; ".join(problems))


class NotebookFailed(RuntimeError):
    pass


# papermill's per-cell execution timeout (s) by training profile. Decision: a cell of the quick profile
# trained past 1,800 s on a loaded 2-core CPU (notebook 22), so the quick budget is four times that; a paper
# profile cell trains for hours, so it has no limit. A lost message (kernel idle while papermill waits) is
# caught within minutes by the idle-kernel watchdog (`kernel_watchdog`) whatever the cell timeout.
CELL_TIMEOUTS: dict[str, int | None] = {"tiny": 1800, "quick": 7200, "paper": None}


def default_cell_timeout(profile: str) -> int | None:
    """The cell timeout of a profile (`CELL_TIMEOUTS`, seconds; None: no limit)."""
    return CELL_TIMEOUTS.get(profile, CELL_TIMEOUTS["quick"])


def cell_timeout_for(profile: str, cell_timeout: int | None) -> int | None:
    """`cell_timeout` as given (0: no limit), or the profile's default when None."""
    if cell_timeout is None:
        return default_cell_timeout(profile)
    if cell_timeout < 0:
        raise ValueError(f"cell timeout must be >= 0 seconds (0: no limit), got {cell_timeout}")
    return cell_timeout or None


def execute_notebook(path: str | Path, output_path: str | Path, params: dict[str, Any], cwd: str | Path,
                     timeout: int | None = 1800, progress: bool = False, idle_grace: float | None = None) -> Path:
    """Run one notebook with papermill (kernel python3, explicit cwd, cell timeout); fail loudly.

    The executed copy is written to a temporary name and renamed, so a failed run never replaces the last
    good executed notebook. A failure raises NotebookFailed naming the notebook and the failing cell.
    `timeout`: papermill's per-cell execution timeout in seconds (None: no limit). `idle_grace`: how long
    the kernel may sit idle while papermill waits for it before the run stops (`kernel_watchdog`; default
    `kernel_watchdog.IDLE_GRACE`).
    """
    import papermill as pm

    from gsmoe_lib import kernel_watchdog

    path, output_path = Path(path), Path(output_path)
    check_parameters(path, params)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    failed_copy = output_path.with_name(output_path.stem + ".failed.ipynb")
    with runs.atomic_path(output_path) as tmp:
        tmp_nb = tmp.with_suffix(".ipynb")
        try:
            pm.execute_notebook(str(path), str(tmp_nb), parameters=params, kernel_name="python3", cwd=str(cwd),
                                execution_timeout=timeout, progress_bar=progress, log_output=False,
                                engine_name=kernel_watchdog.ENGINE,
                                idle_grace=kernel_watchdog.IDLE_GRACE if idle_grace is None else idle_grace)
        except kernel_watchdog.KernelIdle as exc:
            tmp_nb.unlink(missing_ok=True)
            raise kernel_watchdog.KernelIdle(f"{path.name}: {exc}") from None
        except pm.PapermillExecutionError as exc:
            if tmp_nb.exists():
                tmp_nb.replace(failed_copy)
            raise NotebookFailed(f"{path.name}: cell {exc.exec_count} failed with {exc.ename}: {exc.evalue} "
                                 f"(executed copy: {failed_copy})") from None
        except BaseException:
            tmp_nb.unlink(missing_ok=True)
            raise
        tmp_nb.replace(tmp)
    failed_copy.unlink(missing_ok=True)
    return output_path


def results_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "results"


def write_result(run_dir: str | Path, name: str, obj: Any) -> Path:
    """RUN/results/<name>.json: what a notebook contributes to results.json."""
    return runs.write_json(results_dir(run_dir) / f"{name}.json", obj)


def read_result(run_dir: str | Path, name: str) -> Any:
    return runs.read_json(results_dir(run_dir) / f"{name}.json")


def figure_path(run_dir: str | Path, name: str) -> Path:
    """RUN/figures/<name> (no suffix: figures.save_figure adds .png and .pdf)."""
    return Path(run_dir) / "figures" / name


def running_in_batch(namespace: dict[str, Any]) -> bool:
    """True when papermill executes the notebook (its injected-parameters cell is in the input history).

    Batch runs show a widget's current figure instead of the live widget: nbclient, which papermill drives,
    emulates the widgets' Output areas and was seen to stall on a displayed widget until the cell timeout.
    """
    return any(src.lstrip().startswith(INJECTED_HEADER) for src in namespace.get("In", []) if src)
