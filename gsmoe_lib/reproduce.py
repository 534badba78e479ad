"""`gsmoe reproduce`: run the notebook collection with papermill and collect its tables and figures.

(Named for the command; the *training* pipeline, the four stages one after the other, is
`training.pipeline.run_pipeline`.)

The notebooks in `notebooks/` are the paper's experiments; this module only runs them, in dependency
order (`NOTEBOOKS`), with the same common parameters, into one run folder::

    RUN/
      seed-<s>/<stage>/           training stages (shared by all notebooks; see training/)
      notebooks/<nb>.ipynb        the executed copies (outputs included)
      notebooks/<nb>.done         the up-to-date stamp of each notebook (below)
      results/<key>.json          what each notebook contributes (notebook.write_result)
      figures/<name>.png / .pdf   every figure (figures.save_figure)
      results.json, results.md    the merged results, our numbers beside the paper's
      timings.json                seconds per notebook (its last execution)

Decisions (none of them is in the paper):
- **Up to date.** A notebook is skipped when RUN/notebooks/<nb>.done holds the same hash as now and its
  executed copy exists. The hash covers the notebook file's bytes, the parameters passed to it, the
  manifest of a synthetic data root (`gsmoe_dataset.json`, so a regenerated dataset reruns everything)
  and the stamps of every notebook before it in the order (so re-running 10 re-runs what follows it).
  The library's own code is not part of the hash: after changing `gsmoe_lib`, pass `--force`. Training
  stages have their own config hashes (training/config.py), so a re-executed notebook reloads finished stages.
- **Parameters.** Every notebook receives the six common parameters (`COMMON_PARAMETERS`); a notebook
  that does not declare one of them is an error naming it (`notebook.check_parameters`), so the
  convention cannot drift. The list files (`LIST_PARAMETERS`: `--train-list`, `--test-list`,
  `--annotations`) are declared by every notebook too and passed only when given, so a run without them
  keeps its up-to-date stamps. Paths are passed absolute; a notebook makes a relative path absolute
  against the project root itself (`notebook.validate_parameters`), whatever its working directory.
- **One run folder for batch and interactive use.** The notebooks' default `run_dir` is `DEFAULT_OUT`
  (runs/reproduce) and their default data root the profile's synthetic data, both under the project root:
  after `make reproduce`, `make lab` and Run All loads the run's finished stages instead of retraining.
  A notebook asked for another config there stops with an error naming the differing keys (runs.py).
- **Timeout.** `cell_timeout` (`--cell-timeout`) is papermill's execution timeout, which applies per cell;
  by default it scales with the profile (`notebook.CELL_TIMEOUTS`: tiny 30 min, quick 2 h, paper none), and
  0 means no limit. Independently, a kernel that sits idle while papermill waits for it (a lost message)
  stops the run within `kernel_watchdog.IDLE_GRACE` seconds with an error naming the cell.
- **Results.** results.json is the merge of RUN/results/*.json (one key per file) plus the run's
  dataset, profile, seeds, data root, versions and timings; results.md renders the known keys as
  markdown tables beside `reporting.PAPER_NUMBERS`, in percent (`reporting.results_markdown`).
- **Figures in the repository.** Only the default run (synthetic data, quick profile, one seed, all
  notebooks) copies its PNG figures into the repository's `figures/`, so the README always shows the
  default run and never a tiny or a real-data run. With them it writes figures/results.json (the
  headline numbers, the machine, the commit), figures/README.md and README.md's headline table
  (`headline.write_figures_record`), so the README's numbers come from the run that drew the figures.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from gsmoe_lib import headline, runs
from gsmoe_lib.reporting import results_markdown, timing_table
from gsmoe_lib.paths import PROJECT_ROOT


# Dependency order: data, the four stages, the tables, the figures, the tools.
NOTEBOOKS: tuple[str, ...] = (
    "00_data",
    "10_task_encoder",
    "11_tgs_finetuning",
    "12_experts",
    "13_gate",
    "20_ablation_components",
    "21_gate_features",
    "22_cluster_experts",
    "30_categories",
    "40_tsne",
    "41_kernel_heatmaps",
    "50_tgs_tuner",
    "51_alarm_threshold",
    "60_your_video",
)

COMMON_PARAMETERS = ("run_dir", "data_root", "dataset", "profile", "seeds", "device")
LIST_PARAMETERS = ("train_list", "test_list", "annotations")  # declared by every notebook; passed when given
DEFAULT_OUT = "runs/reproduce"


# ---------------------------------------------------------------------------------------------------
# results.json and results.md (the tables themselves: reporting.results_markdown)
# ---------------------------------------------------------------------------------------------------


def collect_results(run_dir: str | Path, header: Mapping[str, Any], timings: Mapping[str, float]) -> dict[str, Any]:
    """Merge RUN/results/*.json (one key per file) under the run's header; write results.json and .md."""
    run_dir = Path(run_dir)
    results: dict[str, Any] = dict(header)
    for path in sorted((run_dir / "results").glob("*.json")):
        results[path.stem] = runs.read_json(path)
    results["timings"] = dict(timings)
    results["versions"] = {k: v for k, v in runs.environment_record(device=header.get("device")).items()
                           if k != "time"}
    runs.write_json(run_dir / "results.json", results)
    runs.write_text(run_dir / "results.md", results_markdown(results))
    return results


# ---------------------------------------------------------------------------------------------------
# Running the notebooks
# ---------------------------------------------------------------------------------------------------


def notebook_hash(path: Path, params: Mapping[str, Any], data_root: Path, earlier: Iterable[str]) -> str:
    """The up-to-date hash of one notebook (see the module docstring for what it covers)."""
    h = hashlib.sha256()
    h.update(path.read_bytes())
    h.update(json.dumps(dict(params), sort_keys=True).encode())
    manifest = data_root / "gsmoe_dataset.json"
    h.update(manifest.read_bytes() if manifest.is_file() else b"-")
    for stamp in earlier:
        h.update(stamp.encode())
    return h.hexdigest()[:16]


def _read_stamp(path: Path) -> dict[str, Any]:
    try:
        return runs.read_json(path)
    except (FileNotFoundError, ValueError):
        return {}


def select_notebooks(notebooks: Sequence[str] | None, folder: Path) -> list[str]:
    """The notebooks to consider, in NOTEBOOKS order; `notebooks` may name them by prefix ("10") or stem."""
    if notebooks is None:
        return list(NOTEBOOKS)
    chosen = []
    for want in notebooks:
        want = want.strip().removesuffix(".ipynb")
        match = [nb for nb in NOTEBOOKS if nb == want or nb.split("_", 1)[0] == want]
        if not match:
            raise ValueError(f"unknown notebook {want!r}; expected a number or a name of {', '.join(NOTEBOOKS)}")
        chosen += match
    return [nb for nb in NOTEBOOKS if nb in chosen]


def _l2_norm(root: Path, dataset: str, params: Mapping[str, Any]) -> dict[str, float] | None:
    """The untrained L2-norm score of the test split (`data.magnitude`) in percent, for results.md; None (with
    the reason printed) when the test split cannot be read that way."""
    from gsmoe_lib.data.magnitude import magnitude_metrics

    try:
        m = magnitude_metrics(root, dataset, params.get("test_list") or None, params.get("annotations") or None)
    except (OSError, ValueError) as err:
        print(f"untrained L2-norm score not measured: {err}", flush=True)
        return None
    return {k: 100.0 * float(m[k]) for k in ("auc", "auc_abnormal", "ap")}


def default_data(profile: str, dataset: str | None) -> Path:
    """The profile's synthetic dataset under the project root, built if missing, rebuilt when an older
    generator wrote it (its gsmoe_dataset.json differs: the folder is the project's own default data)."""
    import json

    from gsmoe_lib.data.synthetic import GENERATOR_VERSION, synthesize
    from gsmoe_lib.training.config import default_data_root, synthetic_profile

    root = Path(default_data_root(profile, dataset))  # the one place that names the synthetic data folders
    meta_file = root / "gsmoe_dataset.json"
    if not meta_file.is_file():
        print(f"building the synthetic dataset {root} (once)", flush=True)
    else:
        try:
            version = json.loads(meta_file.read_text()).get("generator_version")
        except (json.JSONDecodeError, AttributeError):
            version = None
        if version != GENERATOR_VERSION:
            print(f"rebuilding the synthetic dataset {root}: written by generator version {version}, "
                  f"the current one is {GENERATOR_VERSION}", flush=True)
    synthesize(root, profile=synthetic_profile(profile), seed=0, dataset=dataset or "ucf-crime", verbose=False,
               force=True)  # replaces only a gsmoe synthetic dataset (a foreign folder is never touched)
    return root


def reproduce(out: str | Path = DEFAULT_OUT, data_root: str | Path | None = None, dataset: str | None = None,
              profile: str = "quick", seeds: int = 1, device: str = "cpu", notebooks: Sequence[str] | None = None,
              cell_timeout: int | None = None, progress: bool = True, force: bool = False,
              notebook_dir: str | Path | None = None, copy_figures: bool | None = None,
              params: Mapping[str, Any] | None = None, train_list: str | Path | None = None,
              test_list: str | Path | None = None, annotations: str | Path | None = None,
              timeout: int | None = None) -> Path:
    """Execute the notebooks in order into the run folder `out`; return it. See the module docstring.

    `cell_timeout`: seconds per notebook cell (None: the profile's default, `notebook.CELL_TIMEOUTS`; 0: no
    limit); `timeout` is its older name.
    `notebooks`: a subset by number or name (default: all). A notebook file that does not exist is skipped
    with a warning. `force`: execute even up-to-date notebooks. `notebook_dir`: where the notebooks are
    (default PROJECT_ROOT/notebooks); they run with that folder as working directory, as JupyterLab runs
    them, so the batch run proves the interactive one resolves its paths. `copy_figures`:
    copy the PNG figures into PROJECT_ROOT/figures (default: only for the default run). `params`: extra
    notebook parameters (e.g. {"tgs_config": "tgs.json"}, used by `gsmoe sweep`), each passed only to the
    notebooks that declare it; a name that no notebook of the run declares is a ParameterError.
    `train_list`, `test_list`, `annotations`: list / annotation files (as `gsmoe data check`), passed to
    every notebook as absolute paths; a missing file is an error before anything runs.
    Raises notebook.NotebookFailed (naming the notebook and cell) at the first failing notebook.
    """
    from gsmoe_lib.data.layouts import detect_dataset_name
    from gsmoe_lib.notebook import ParameterError, cell_timeout_for, declared_parameters, execute_notebook
    from gsmoe_lib.training.config import PROFILES

    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; expected one of {', '.join(PROFILES)}")
    cell_seconds = cell_timeout_for(profile, cell_timeout if cell_timeout is not None else timeout)
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    nb_dir = Path(notebook_dir) if notebook_dir is not None else PROJECT_ROOT / "notebooks"
    if not nb_dir.is_dir():
        raise FileNotFoundError(f"{nb_dir}: notebook folder not found (gsmoe reproduce runs from a source checkout)")
    cwd = nb_dir.resolve()  # the kernel's folder in JupyterLab too: paths must not depend on it
    default_run = (data_root is None and dataset is None and profile == "quick" and seeds == 1 and notebooks is None
                   and not params)
    commit = headline.git_commit()  # the code the figures come from: before any notebook runs
    selected = select_notebooks(notebooks, nb_dir)
    root = default_data(profile, dataset) if data_root is None else Path(data_root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: data root not found")
    root = root.resolve()
    run_dir = Path(out).resolve()
    ds = dataset or detect_dataset_name(root) or "ucf-crime"
    extra = dict(params or {})  # the caller's extra notebook parameters; `params` below are the common ones
    params = {"run_dir": str(run_dir), "data_root": str(root), "dataset": ds, "profile": profile,
              "seeds": int(seeds), "device": device}
    for name, value in zip(LIST_PARAMETERS, (train_list, test_list, annotations)):
        if value:  # only when given: a run without lists keeps the notebook hashes it had
            path = Path(value).expanduser().resolve()
            if not path.is_file():
                raise FileNotFoundError(f"--{name.replace('_', '-')} {value}: file not found")
            params[name] = str(path)

    present = [nb for nb in selected if (nb_dir / f"{nb}.ipynb").is_file()]
    declared_by = {nb: declared_parameters(nb_dir / f"{nb}.ipynb") for nb in present}
    unknown = sorted(k for k in extra if not any(k in d for d in declared_by.values()))
    if unknown:  # checked before anything runs: a typo must not cost a whole run
        raise ParameterError(f"unknown parameter(s) {', '.join(map(repr, unknown))}: declared by none of the "
                             f"notebooks {', '.join(present)}")

    executed = run_dir / "notebooks"
    timings_path = run_dir / "timings.json"
    timings: dict[str, float] = runs.read_json(timings_path) if timings_path.is_file() else {}
    status: dict[str, str] = {}
    stamps: list[str] = []  # stamps of the notebooks before the current one, in order
    for nb in NOTEBOOKS:
        path = nb_dir / f"{nb}.ipynb"
        stamp_path = executed / f"{nb}.done"
        if nb not in selected:
            stamps.append(_read_stamp(stamp_path).get("hash", ""))
            continue
        if not path.is_file():
            print(f"warning: {path} does not exist; skipped", flush=True)
            stamps.append("")
            continue
        nb_params = {**params, **{k: v for k, v in extra.items() if k in declared_by[nb]}}
        digest = notebook_hash(path, nb_params, root, stamps)
        copy = executed / f"{nb}.ipynb"
        position = f"[{selected.index(nb) + 1}/{len(selected)}]"
        if not force and _read_stamp(stamp_path).get("hash") == digest and copy.is_file():
            status[nb] = "up to date"
            print(f"{position} {nb}: up to date, skipped", flush=True)
        else:
            print(f"{position} {nb} ...", flush=True)
            stamp_path.unlink(missing_ok=True)  # a failed run leaves no stale stamp behind
            start = time.perf_counter()
            execute_notebook(path, copy, nb_params, cwd=cwd, timeout=cell_seconds, progress=progress)
            timings[nb] = round(time.perf_counter() - start, 2)
            runs.write_json(stamp_path, {"hash": digest, "seconds": timings[nb]})
            runs.write_json(timings_path, timings)
            status[nb] = "ran"
            print(f"{position} {nb}: done in {timings[nb]:.1f} s", flush=True)
        stamps.append(digest)

    ordered = {nb: timings[nb] for nb in NOTEBOOKS if nb in timings}
    runs.write_json(timings_path, ordered)
    header = {"dataset": ds, "profile": profile, "seeds": int(seeds), "device": device, "data_root": str(root),
              **{k: params[k] for k in LIST_PARAMETERS if k in params},
              "l2_norm": _l2_norm(root, ds, params)}
    results = collect_results(run_dir, header, ordered)
    print("\n" + timing_table({nb: ordered[nb] for nb in status if nb in ordered}, status), flush=True)
    if copy_figures if copy_figures is not None else default_run:
        target = PROJECT_ROOT / "figures"
        target.mkdir(exist_ok=True)
        for png in sorted((run_dir / "figures").glob("*.png")):
            shutil.copyfile(png, target / png.name)
        headline.write_figures_record(results, target, commit=commit)  # figures/README.md, README's table
        print(f"figures copied to {target}", flush=True)
    print(f"results: {run_dir / 'results.md'}", flush=True)
    return run_dir


# ---------------------------------------------------------------------------------------------------
# CLI: gsmoe reproduce
# ---------------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-root", default=None, metavar="DIR",
                        help="feature dataset (real layout, lists inside DIR or the official ones); "
                             "default: the profile's synthetic dataset under data/, built if missing")
    parser.add_argument("--dataset", choices=("ucf-crime", "xd-violence"), default=None,
                        help="default: detected from DIR/gsmoe_dataset.json, else ucf-crime")
    parser.add_argument("--profile", choices=("tiny", "quick", "paper"), default="quick",
                        help="training profile (gsmoe_lib.training.config.PROFILES)")
    parser.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1; tables show mean ± std")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--out", default=DEFAULT_OUT, metavar="RUN", help=f"run folder (default {DEFAULT_OUT})")
    parser.add_argument("--only", default=None, metavar="10,11",
                        help="comma-separated subset of notebooks, by number or name")
    parser.add_argument("--cell-timeout", "--timeout", dest="cell_timeout", type=int, default=None, metavar="SECONDS",
                        help="papermill's execution timeout per notebook cell; default: by profile (tiny 1800, "
                             "quick 7200, paper no limit); 0: no limit")
    parser.add_argument("--force", action="store_true", help="execute notebooks even when up to date")
    parser.add_argument("--train-list", default=None, metavar="FILE",
                        help="training list (default: the one in DIR, else the packaged official list)")
    parser.add_argument("--test-list", default=None, metavar="FILE",
                        help="test list (default: the one in DIR, else the packaged official list)")
    parser.add_argument("--annotations", default=None, metavar="FILE",
                        help="test annotations (default: the one in DIR, else the packaged official file)")


def run(args: argparse.Namespace) -> int:
    # Errors (a failed notebook, a missing file, a stage conflict) are reported by cli.main in one line.
    only = [s for s in args.only.split(",") if s.strip()] if args.only else None
    reproduce(out=args.out, data_root=args.data_root, dataset=args.dataset, profile=args.profile,
              seeds=args.seeds, device=args.device, notebooks=only, cell_timeout=args.cell_timeout, force=args.force,
              train_list=args.train_list, test_list=args.test_list, annotations=args.annotations)
    return 0
