"""`gsmoe sweep`: many runs of the notebook pipeline (seeds × settings), on one machine or a Dask cluster.

The paper reports single runs. A sweep runs the same notebook collection (`reproduce.reproduce`) once per
*cell*, a cell being one grid point (a setting of notebook parameters) and one seed, each into its own run
folder, so a cell reuses everything a single run does: skip-if-done notebooks, resumed training stages,
results.json. A small YAML spec describes the sweep::

    dataset: ucf-crime          # optional ("" / missing: detected from the data root)
    profile: tiny               # training profile (gsmoe_lib.training.config.PROFILES)
    data_root: null             # optional; default: the profile's synthetic dataset, built once
    device: cpu
    seeds: 2                    # an int N (seeds 0..N-1) or a list of seeds
    notebooks: ["10", "11", "12", "13", "20"]   # optional subset (default: all)
    tables: [ablation]          # optional: which results.json tables to aggregate (default: ablation)
    cell_timeout: 7200          # optional: papermill's per-cell execution timeout (s); default: by profile
                                #   (notebook.CELL_TIMEOUTS), 0: no limit; `timeout` is its older name
    grid:                       # every combination is one setting
      cluster_counts: [[5], [7]]
      profile: [tiny, quick]    # profile / dataset / data_root / device may vary too

Output folder::

    OUT/<cell-id>/              one pipeline run folder per cell (seed-<s>/, notebooks/, results.json, ...)
    OUT/<cell-id>/cell.json     setting, seed, status ("done" | "failed"), error, worker, host, seconds, metrics
    OUT/sweep.csv, sweep.md     one row per setting: mean ± std over its seeds of every table metric
    OUT/sweep_spread.png / .pdf the per-seed values of each metric, per setting

Decisions (where there was a choice):
- **Engine.** Dask distributed, not Ray: it is a pure-Python install (a few MB, no separate object store or
  raylet), and a papermill job is an ordinary Python call that starts its own kernel process, which a
  Dask worker process runs like any other function. `--executor local` runs the cells one after the
  other in this process (no cluster); `--executor dask` starts a `LocalCluster` (processes, N workers, one
  thread each) or, with `--address`, connects to the user's scheduler. On a remote cluster OUT must be
  on a file system the workers share; the summary (cell.json, sweep.csv) is written by this process from
  what each task returns.
- **Seeds.** The notebooks train seeds `first_seed .. first_seed + seeds - 1`; a cell runs one seed with
  `seeds=1, first_seed=s` (nothing for s = 0, the default). A seed other than 0 needs every selected
  notebook to declare `first_seed`.
- **Grid parameters** go only to the notebooks that declare them (`reproduce.reproduce(params=...)`); a
  grid key that no selected notebook declares is an error before anything runs (a typo would otherwise
  silently sweep nothing). `run_dir`, `seeds` and `first_seed` are the sweep's own and cannot be gridded.
- **Cell ids** are readable: `seed-0__profile-tiny__cluster_counts-5`. Values are shortened to their file
  stem (paths) or joined with "-" (lists); if two settings would share an id, every id gets a short hash.
- **Failures are contained.** A cell whose pipeline raises is recorded with status "failed" and the error
  (a `NotebookFailed` names the notebook and cell) and the sweep goes on. A rerun skips cells whose
  cell.json says "done" with the same parameters and runs the missing and failed ones (the pipeline then
  re-executes only the notebooks that did not finish). `gsmoe sweep` exits 1 when a cell failed.
- **Statistics** (`sweep_report.py`). Mean and sample standard deviation (ddof=1) over the seeds that
  finished; with one finished seed the std is NaN (empty in the CSV, not shown in the markdown). Fractions
  in the CSV, percent in the markdown.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import re
import socket
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import pandas as pd

from gsmoe_lib import runs
from gsmoe_lib.sweep_report import sweep_markdown, sweep_table, table_metrics

RUN_KEYS = ("profile", "dataset", "data_root", "device")  # reproduce() arguments that a grid may vary
RESERVED = ("run_dir", "seeds", "first_seed")  # set by the sweep for every cell
SEEDLESS = ("00_data",)  # notebooks that do not depend on the seed
SPEC_KEYS = ("dataset", "profile", "data_root", "device", "seeds", "notebooks", "tables", "cell_timeout", "timeout",
             "grid")
DATASETS = ("ucf-crime", "xd-violence")
DEVICES = ("cpu", "cuda")
CELL_FILE = "cell.json"


class SpecError(ValueError):
    pass


# ---------------------------------------------------------------------------------------------------
# The spec
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepSpec:
    profile: str = "quick"
    dataset: str | None = None
    data_root: str | None = None
    device: str = "cpu"
    seeds: tuple[int, ...] = (0,)
    notebooks: tuple[str, ...] | None = None
    tables: tuple[str, ...] = ("ablation",)
    timeout: int | None = None  # the cell timeout (s); None: the profile's default; 0: no limit
    grid: dict[str, list[Any]] = field(default_factory=dict)


def _fail(where: str, key: str, message: str) -> SpecError:
    return SpecError(f"{where}: {key!r}: {message}")


def parse_spec(raw: Any, where: str = "sweep spec") -> SweepSpec:
    """Validate a spec mapping (the YAML's content); every problem names the key."""
    from gsmoe_lib.training.config import PROFILES

    if not isinstance(raw, Mapping):
        raise SpecError(f"{where}: expected a mapping of {', '.join(SPEC_KEYS)}, got {type(raw).__name__}")
    unknown = [k for k in raw if k not in SPEC_KEYS]
    if unknown:
        raise SpecError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; known: {', '.join(SPEC_KEYS)}")

    def choice(key: str, value: Any, options: Sequence[str]) -> Any:
        if value not in options:
            raise _fail(where, key, f"{value!r} is not one of {', '.join(options)}")
        return value

    profile = choice("profile", raw.get("profile", "quick"), tuple(PROFILES))
    dataset = raw.get("dataset") or None
    if dataset is not None:
        choice("dataset", dataset, DATASETS)
    data_root = raw.get("data_root") or None
    if data_root is not None and not isinstance(data_root, str):
        raise _fail(where, "data_root", f"expected a folder path, got {data_root!r}")
    device = choice("device", raw.get("device", "cpu"), DEVICES)

    seeds_raw = raw.get("seeds", 1)
    if isinstance(seeds_raw, int) and not isinstance(seeds_raw, bool):
        if seeds_raw < 1:
            raise _fail(where, "seeds", f"an int means seeds 0..N-1 and must be >= 1, got {seeds_raw}")
        seeds = tuple(range(seeds_raw))
    elif isinstance(seeds_raw, list) and seeds_raw and all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds_raw):
        if len(set(seeds_raw)) != len(seeds_raw):
            raise _fail(where, "seeds", f"repeated seed in {seeds_raw}")
        seeds = tuple(seeds_raw)
    else:
        raise _fail(where, "seeds", f"expected an int >= 1 or a non-empty list of ints >= 0, got {seeds_raw!r}")

    notebooks = raw.get("notebooks")
    if notebooks is not None:
        if not isinstance(notebooks, list) or not notebooks:
            raise _fail(where, "notebooks", f"expected a non-empty list such as [\"10\", \"11\"], got {notebooks!r}")
        # YAML reads an unquoted 10 as an int and 00 as 0: numbers are the notebooks' two-digit prefixes.
        notebooks = tuple(f"{n:02d}" if isinstance(n, int) else str(n) for n in notebooks)

    tables = raw.get("tables", ["ablation"])
    if not isinstance(tables, list) or not tables or not all(isinstance(t, str) for t in tables):
        raise _fail(where, "tables", f"expected a non-empty list of results.json keys, got {tables!r}")

    key = "cell_timeout" if "cell_timeout" in raw else "timeout"
    timeout = raw.get(key)
    if timeout is not None and (not isinstance(timeout, int) or isinstance(timeout, bool) or timeout < 0):
        raise _fail(where, key, f"expected seconds (an int >= 0; 0: no limit), got {timeout!r}")

    grid_raw = raw.get("grid") or {}
    if not isinstance(grid_raw, Mapping):
        raise _fail(where, "grid", f"expected a mapping parameter -> list of values, got {grid_raw!r}")
    grid: dict[str, list[Any]] = {}
    for key, values in grid_raw.items():
        if not isinstance(key, str) or not key.isidentifier():
            raise _fail(where, f"grid.{key}", "a grid key must be a parameter name")
        if key in RESERVED:
            raise _fail(where, f"grid.{key}", f"set by the sweep for every cell; {', '.join(RESERVED)} cannot vary")
        if not isinstance(values, list) or not values:
            raise _fail(where, f"grid.{key}", f"expected a non-empty list of values, got {values!r}")
        options = {"profile": tuple(PROFILES), "dataset": DATASETS, "device": DEVICES}.get(key)
        for v in values if options else ():  # the run keys with a fixed set of values
            choice(f"grid.{key}", v, options)
        grid[key] = list(values)
    return SweepSpec(profile=profile, dataset=dataset, data_root=data_root, device=device, seeds=seeds,
                     notebooks=notebooks, tables=tuple(tables), timeout=timeout, grid=grid)


def load_spec(path: str | Path) -> SweepSpec:
    """Read and validate a YAML sweep spec; errors name the file and the key."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: sweep spec not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {exc}") from None
    return parse_spec(raw, str(path))


# ---------------------------------------------------------------------------------------------------
# Cells
# ---------------------------------------------------------------------------------------------------


class Cell(NamedTuple):
    id: str  # the run folder's name under OUT
    setting_id: str  # the id without the seed: the cells of one setting share it
    setting: dict[str, Any]  # grid key -> value
    seed: int


def _short(value: Any) -> str:
    """A value as it appears in a cell id: file stem for paths, "-"-joined lists, only [A-Za-z0-9._-]."""
    if isinstance(value, (list, tuple)):
        text = "-".join(_short(v) for v in value)
    elif isinstance(value, str) and ("/" in value or value.endswith((".json", ".yaml", ".yml"))):
        text = Path(value).stem
    elif value == "" or value is None:
        text = "default"
    else:
        text = str(value)
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text) or "default"


def make_cells(spec: SweepSpec) -> list[Cell]:
    """product(grid) × seeds, settings in grid order, seeds innermost."""
    keys = list(spec.grid)
    settings = [dict(zip(keys, combo)) for combo in itertools.product(*(spec.grid[k] for k in keys))]
    ids = ["__".join(f"{k}-{_short(v)}" for k, v in s.items()) or "default" for s in settings]
    if len(set(ids)) != len(ids):  # e.g. two config files with the same stem in different folders
        ids = [f"{i}__{hashlib.sha256(json.dumps(s, sort_keys=True).encode()).hexdigest()[:6]}"
               for i, s in zip(ids, settings)]
    return [Cell(f"seed-{seed}__{sid}", sid, s, seed) for sid, s in zip(ids, settings) for seed in spec.seeds]


def cell_arguments(spec: SweepSpec, cell: Cell) -> dict[str, Any]:
    """The keyword arguments of `reproduce.reproduce` for one cell (the cell's identity for skip-if-done)."""
    args: dict[str, Any] = {"data_root": spec.data_root, "dataset": spec.dataset, "profile": spec.profile,
                            "device": spec.device}
    # Seed 0 is the notebooks' default: passing nothing keeps seed-0 sweeps running on notebooks that
    # do not declare `first_seed` (reproduce rejects a parameter that no notebook declares).
    params: dict[str, Any] = {"first_seed": cell.seed} if cell.seed != 0 else {}
    for key, value in cell.setting.items():
        (args if key in RUN_KEYS else params)[key] = value
    return {**args, "seeds": 1, "notebooks": list(spec.notebooks) if spec.notebooks else None,
            "cell_timeout": spec.timeout, "params": params}


# A cell runner: (run folder, reproduce() keyword arguments) -> the run folder holding results.json.
CellRunner = Callable[[Path, dict[str, Any]], Path]


def pipeline_runner(run_dir: Path, arguments: dict[str, Any]) -> Path:
    """The default cell runner: the notebook collection into `run_dir`."""
    from gsmoe_lib.reproduce import reproduce

    return reproduce(out=run_dir, progress=False, copy_figures=False, **arguments)


def check_against_notebooks(spec: SweepSpec, notebook_dir: str | Path | None = None) -> None:
    """Before running the pipeline: every grid key is declared by a selected notebook, and seeds other than 0
    can reach the notebooks (each declares `first_seed`)."""
    from gsmoe_lib.notebook import declared_parameters
    from gsmoe_lib.paths import PROJECT_ROOT
    from gsmoe_lib.reproduce import select_notebooks

    nb_dir = Path(notebook_dir) if notebook_dir is not None else PROJECT_ROOT / "notebooks"
    declared = {nb: declared_parameters(nb_dir / f"{nb}.ipynb")
                for nb in select_notebooks(list(spec.notebooks) if spec.notebooks else None, nb_dir)
                if (nb_dir / f"{nb}.ipynb").is_file()}
    if not declared:
        raise SpecError(f"no notebook of the spec's selection exists in {nb_dir}")
    for key in spec.grid:
        if key not in RUN_KEYS and not any(key in params for params in declared.values()):
            raise SpecError(f"grid.{key}: no selected notebook declares a parameter {key!r} "
                            f"(notebooks: {', '.join(declared)})")
    # 00_data trains nothing and has no seed; every notebook that trains or reads a seed's run declares it.
    lacking = [nb for nb, params in declared.items() if "first_seed" not in params and nb not in SEEDLESS]
    if any(s != 0 for s in spec.seeds) and lacking:
        raise SpecError(f"seeds: {list(spec.seeds)} needs every notebook to declare `first_seed` (the first seed it "
                        f"trains); missing in {', '.join(lacking)}. Use seeds: [0], or add the parameter.")


def _worker_identity() -> tuple[str, str]:
    """(worker, host) of the process running a task: the Dask worker's address, or "local"."""
    try:
        from distributed import get_worker

        return get_worker().address, socket.gethostname()
    except (ImportError, ValueError):  # ValueError: not inside a Dask task
        return "local", socket.gethostname()


def run_cell(cell: Cell, run_dir: str, arguments: dict[str, Any], tables: Sequence[str],
             runner: CellRunner) -> dict[str, Any]:
    """One cell, wherever it runs: the pipeline into `run_dir`; returns its record (never raises on failure)."""
    worker, host = _worker_identity()
    start = time.time()
    record: dict[str, Any] = {"id": cell.id, "setting_id": cell.setting_id, "setting": cell.setting,
                              "seed": cell.seed, "arguments": arguments, "worker": worker, "host": host,
                              "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(start))}
    try:
        folder = Path(runner(Path(run_dir), arguments))
        results = runs.read_json(folder / "results.json")
        record.update(status="done", error=None, metrics=table_metrics(results, tables))
    except Exception as exc:  # contained: recorded in cell.json, the sweep goes on
        record.update(status="failed", error=f"{type(exc).__name__}: {exc}", metrics={})
    record["seconds"] = round(time.time() - start, 2)
    return record


def _finished(path: Path, arguments: dict[str, Any]) -> dict[str, Any] | None:
    """The cell's record when cell.json says done with the same arguments, else None."""
    try:
        record = runs.read_json(path)
    except (FileNotFoundError, ValueError):
        return None
    same = json.dumps(record.get("arguments"), sort_keys=True) == json.dumps(arguments, sort_keys=True)
    return record if record.get("status") == "done" and same else None


# ---------------------------------------------------------------------------------------------------
# Running a sweep
# ---------------------------------------------------------------------------------------------------


class SweepResult(NamedTuple):
    records: list[dict[str, Any]]  # one per cell, in cell order (skipped cells: their stored record)
    table: pd.DataFrame  # sweep.csv
    ran: list[str]  # ids of the cells executed this time
    out: Path


def run_sweep(spec: SweepSpec, out: str | Path, executor: str = "local", address: str | None = None,
              workers: int = 2, client: Any = None, runner: CellRunner | None = None,
              notebook_dir: str | Path | None = None) -> SweepResult:
    """Run the cells of `spec` that are missing or failed in `out`, then write sweep.csv / .md / figure.

    `executor`: "local" (sequential, in this process) or "dask" (`client` if given, else a Client of
    `address`, else a LocalCluster of `workers` processes with one thread each). `runner`: what runs one
    cell (default: the notebook pipeline, after `check_against_notebooks`); tests inject a cheap one.
    """
    if executor not in ("local", "dask"):
        raise ValueError(f"unknown executor {executor!r}; expected local or dask")
    out = Path(out).resolve()
    if runner is None:
        check_against_notebooks(spec, notebook_dir)
        runner = pipeline_runner
        spec = _with_data_root(spec)
    cells = make_cells(spec)
    arguments = {c.id: cell_arguments(spec, c) for c in cells}
    records: dict[str, dict[str, Any]] = {}
    todo = []
    for c in cells:
        done = _finished(out / c.id / CELL_FILE, arguments[c.id])
        if done is not None:
            records[c.id] = done
        else:
            todo.append(c)
    print(f"sweep: {len(cells)} cells, {len(cells) - len(todo)} done, {len(todo)} to run ({executor})", flush=True)

    def finish(record: dict[str, Any]) -> None:
        records[record["id"]] = record
        runs.write_json(out / record["id"] / CELL_FILE, record)
        where = "" if record["worker"] == "local" else f" on {record['worker']}"
        tail = f": {record['error']}" if record["status"] == "failed" else ""
        print(f"[{len(records)}/{len(cells)}] {record['id']} {record['status']}{where} "
              f"({record['seconds']:.1f} s){tail}", flush=True)

    if executor == "local" or not todo:
        for c in todo:
            finish(run_cell(c, str(out / c.id), arguments[c.id], spec.tables, runner))
    else:
        _run_dask(todo, out, arguments, spec.tables, runner, finish, client, address, workers)

    ordered = [records[c.id] for c in cells]
    table = summarize(ordered, spec)
    write_summary(table, ordered, spec, out)
    return SweepResult(ordered, table, [c.id for c in todo], out)


def _with_data_root(spec: SweepSpec) -> SweepSpec:
    """Build the default synthetic dataset once, here, so that parallel cells never write it concurrently."""
    from gsmoe_lib.reproduce import default_data

    if spec.data_root is not None or "data_root" in spec.grid:
        return spec
    profiles = spec.grid.get("profile", [spec.profile])
    datasets = spec.grid.get("dataset", [spec.dataset])
    roots = {str(default_data(p, d)) for p in profiles for d in datasets}
    if len(roots) == 1:  # otherwise each cell resolves its own (already built) default
        return replace(spec, data_root=roots.pop())
    return spec


def dask_client(address: str | None, workers: int) -> list[Any]:
    """[client, (cluster)]: a client of the scheduler at `address`, else of a new local cluster of `workers`
    one-thread worker processes. The caller closes every item (client first) when done."""
    from distributed import Client, LocalCluster

    if address:
        return [Client(address)]
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
    return [Client(cluster), cluster]


def _run_dask(todo: list[Cell], out: Path, arguments: dict[str, dict[str, Any]], tables: Sequence[str],
              runner: CellRunner, finish: Callable[[dict[str, Any]], None], client: Any, address: str | None,
              workers: int) -> None:
    from distributed import as_completed

    owned = []  # what this call started and must close
    if client is None:
        owned = dask_client(address, workers)
        client = owned[0]
    try:
        futures = {client.submit(run_cell, c, str(out / c.id), arguments[c.id], tables, runner,
                                 key=f"gsmoe-cell-{c.id}-{time.time_ns()}", pure=False): c for c in todo}
        for future in as_completed(futures):
            c = futures[future]
            try:
                finish(future.result())
            except Exception as exc:  # the task itself was lost (a worker died, the cluster went away)
                finish({"id": c.id, "setting_id": c.setting_id, "setting": c.setting, "seed": c.seed,
                        "arguments": arguments[c.id], "worker": "unknown", "host": "unknown",
                        "status": "failed", "error": f"{type(exc).__name__}: {exc}", "metrics": {}, "seconds": 0.0})
    finally:
        for thing in owned:
            thing.close()


# ---------------------------------------------------------------------------------------------------
# Results: sweep.csv, sweep.md, sweep_spread.png
# ---------------------------------------------------------------------------------------------------


def summarize(records: Sequence[Mapping[str, Any]], spec: SweepSpec) -> pd.DataFrame:
    """sweep.csv: one row per setting, `<metric>_mean` / `<metric>_std` over its seeds (`sweep_report`)."""
    return sweep_table(records, list(spec.grid), spec.tables)


def write_summary(table: pd.DataFrame, records: Sequence[Mapping[str, Any]], spec: SweepSpec, out: Path) -> None:
    """OUT/sweep.csv, OUT/sweep.md (`sweep_report.sweep_markdown`) and OUT/sweep_spread.png / .pdf."""
    import matplotlib.pyplot as plt

    from gsmoe_lib.figures import plot_sweep_spread, save_figure

    runs.write_text(out / "sweep.csv", table.to_csv(index=False, float_format="%.6g"))
    title = f"Sweep: {spec.profile} profile, seeds {', '.join(map(str, spec.seeds))}"
    runs.write_text(out / "sweep.md", sweep_markdown(table, records, title, list(spec.grid), spec.tables))
    fig = plot_sweep_spread(records, spec.tables)
    save_figure(fig, out / "sweep_spread")
    plt.close(fig)


# ---------------------------------------------------------------------------------------------------
# CLI: gsmoe sweep
# ---------------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", metavar="SPEC.yaml", help="sweep spec (see sweeps/example.yaml)")
    parser.add_argument("--executor", choices=("local", "dask"), default="local",
                        help="local: cells one after the other in this process; dask: a Dask cluster")
    parser.add_argument("--address", default=None, metavar="ADDR",
                        help="scheduler of an existing Dask cluster (tcp://host:8786); default: a LocalCluster")
    parser.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes (dask, no --address)")
    parser.add_argument("--out", default=None, metavar="DIR", help="sweep folder (default runs/sweeps/<spec name>)")
    parser.add_argument("--cell-timeout", type=int, default=None, metavar="SECONDS",
                        help="papermill's execution timeout per notebook cell (overrides the spec's cell_timeout); "
                             "default: by profile (tiny 1800, quick 7200, paper no limit); 0: no limit")


def run(args: argparse.Namespace) -> int:
    # Errors raise (SpecError and ParameterError are ValueErrors): cli.main reports them in one line (exit 2).
    if args.address and args.executor != "dask":
        raise ValueError("--address needs --executor dask")
    spec = load_spec(args.spec)
    if args.cell_timeout is not None:
        if args.cell_timeout < 0:
            raise ValueError(f"--cell-timeout must be >= 0 seconds (0: no limit), got {args.cell_timeout}")
        spec = replace(spec, timeout=args.cell_timeout)
    out = args.out or Path("runs/sweeps") / Path(args.spec).stem
    result = run_sweep(spec, out, executor=args.executor, address=args.address, workers=args.workers)
    failed = [r["id"] for r in result.records if r["status"] == "failed"]
    print(f"results: {result.out / 'sweep.md'}", flush=True)
    if failed:
        print(f"gsmoe sweep: {len(failed)} cell(s) failed ({', '.join(failed)}); rerun to retry them",
              file=sys.stderr)
        return 1
    return 0
