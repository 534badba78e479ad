"""`gsmoe sweep`: the spec, the cells, failure containment and rerun, the table, and Dask workers.

The engine tests inject `fake_runner`, a deterministic stand-in for the notebook pipeline whose metrics are
known in advance, so the table's mean ± std can be checked by hand. One test runs the real pipeline
(notebook 10, tiny profile) through a two-worker LocalCluster.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from gsmoe_lib import runs
from gsmoe_lib.sweep_report import table_metrics
from gsmoe_lib.sweep import (
    SpecError,
    check_against_notebooks,
    load_spec,
    make_cells,
    parse_spec,
    run_sweep,
)

GRID = {"x": [1, 2]}


def fake_metrics(x: int, seed: int) -> dict[str, float]:
    """The injected runner's known numbers: auc = 0.5 + 0.1 x + 0.01 seed, ap = 0.2 x."""
    return {"auc": 0.5 + 0.1 * x + 0.01 * seed, "ap": 0.2 * x}


def fake_runner(run_dir: Path, arguments: dict[str, Any]) -> Path:
    """Writes a results.json like the pipeline's; fails when FAIL_FLAG names this run folder."""
    params = arguments["params"]
    flag = Path(run_dir).parent / "FAIL"
    if flag.is_file() and flag.read_text() == Path(run_dir).name:
        raise RuntimeError("20_ablation_components.ipynb: cell 5 failed with ValueError: planted failure")
    seed, x = params.get("first_seed", 0), params["x"]  # seed 0 is the notebooks' default
    runs.write_json(Path(run_dir) / "results.json",
                    {"ablation": {"gsmoe": {**fake_metrics(x, seed), "note_std": 1.0}},
                     "table5": {"note": "ignored text"}})
    # Count executions, to show that a rerun executes only the failed cell.
    with open(Path(run_dir).parent / "executions.log", "a") as log:
        log.write(Path(run_dir).name + "\n")
    return Path(run_dir)


# ---------------------------------------------------------------------------------------------------
# The spec and the cells
# ---------------------------------------------------------------------------------------------------


def test_spec_errors_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="'grid.x'.*non-empty list"):
        parse_spec({"grid": {"x": []}})
    with pytest.raises(SpecError, match="unknown key.*'seed'"):
        parse_spec({"seed": 2})
    with pytest.raises(SpecError, match="'profile'.*'huge'"):
        parse_spec({"profile": "huge"})
    with pytest.raises(SpecError, match="'seeds'.*repeated"):
        parse_spec({"seeds": [0, 0]})
    with pytest.raises(SpecError, match="'grid.run_dir'.*set by the sweep"):
        parse_spec({"grid": {"run_dir": ["a"]}})
    with pytest.raises(SpecError, match="'grid.profile'"):
        parse_spec({"grid": {"profile": ["tiny", "bigger"]}})
    bad = tmp_path / "bad.yaml"
    bad.write_text("grid: [1, 2\n")
    with pytest.raises(SpecError, match="bad.yaml: not valid YAML"):
        load_spec(bad)


def test_spec_reads_yaml_and_cells_are_product_times_seeds(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("profile: tiny\nseeds: 2\nnotebooks: [00, 10]\n"
                    "grid:\n  tgs_config: ['', cfg/wide.json]\n  cluster_counts: [[5, 6], [7]]\n")
    spec = load_spec(path)
    assert spec.seeds == (0, 1) and spec.notebooks == ("00", "10") and spec.profile == "tiny"
    cells = make_cells(spec)
    assert len(cells) == 2 * 2 * 2
    assert cells[0].id == "seed-0__tgs_config-default__cluster_counts-5-6"
    assert cells[1].id == "seed-1__tgs_config-default__cluster_counts-5-6"
    assert cells[-1].id == "seed-1__tgs_config-wide__cluster_counts-7"
    assert len({c.id for c in cells}) == len(cells)
    # Two settings that shorten to the same id get a hash each.
    clash = make_cells(parse_spec({"grid": {"tgs_config": ["a/t.json", "b/t.json"]}}))
    assert len({c.id for c in clash}) == 2 and all(c.id.startswith("seed-0__tgs_config-t__") for c in clash)


def test_grid_is_checked_against_the_notebooks() -> None:
    check_against_notebooks(parse_spec({"notebooks": ["11"], "grid": {"tgs_config": ["", "t.json"]}}))
    with pytest.raises(SpecError, match="grid.tgs_confg: no selected notebook declares"):
        check_against_notebooks(parse_spec({"notebooks": ["11"], "grid": {"tgs_confg": ["t.json"]}}))
    with pytest.raises(SpecError, match="grid.cluster_counts"):  # declared by 22, which is not selected
        check_against_notebooks(parse_spec({"notebooks": ["10"], "grid": {"cluster_counts": [[5]]}}))


def test_table_metrics_flattens_rows_and_skips_the_rest() -> None:
    """Rows' and metric tables' test metrics only: no notes, std companions, per-seed lists or configs."""
    results = {"ablation": {"tgs": {"auc": 0.7, "auc_std": 0.1, "per_seed": [1]}, "note": "x"}, "other": 3,
               "encoder": {"dataset": "ucf-crime", "ap": 0.25, "seconds": 4.0, "config": {"auc": 0.1},
                           "settings": {"lr": 1e-4, "ap": 0.3}}}
    assert table_metrics(results, ["ablation", "other", "missing", "encoder"]) == {
        "ablation.tgs.auc": 0.7, "encoder.ap": 0.25}


# ---------------------------------------------------------------------------------------------------
# The engine (injected runner)
# ---------------------------------------------------------------------------------------------------


def _check_table(table: pd.DataFrame, failed_cell: tuple[int, int] | None) -> None:
    """mean ± std over seeds of the fake numbers, per setting x (one seed missing where a cell failed)."""
    assert list(table["x"]) == [1, 2]
    for _, row in table.iterrows():
        x = int(row["x"])
        seeds = [s for s in (0, 1) if (x, s) != failed_cell]
        aucs = [fake_metrics(x, s)["auc"] for s in seeds]
        assert row["done"] == len(seeds) and row["failed"] == 2 - len(seeds)
        assert row["ablation.gsmoe.auc_mean"] == pytest.approx(sum(aucs) / len(aucs))
        if len(seeds) == 2:
            assert row["ablation.gsmoe.auc_std"] == pytest.approx(0.01 / math.sqrt(2))  # |a - b| / sqrt(2)
            assert row["ablation.gsmoe.ap_std"] == pytest.approx(0.0, abs=1e-12)
        else:
            assert math.isnan(row["ablation.gsmoe.auc_std"])
        assert row["ablation.gsmoe.ap_mean"] == pytest.approx(0.2 * x)
    assert not any("note" in c for c in table.columns)


def test_local_sweep_contains_a_failure_and_reruns_only_it(tmp_path: Path) -> None:
    spec = parse_spec({"profile": "tiny", "seeds": 2, "grid": GRID})
    out = tmp_path / "sweep"
    out.mkdir()
    (out / "FAIL").write_text("seed-1__x-2")
    first = run_sweep(spec, out, executor="local", runner=fake_runner)
    status = {r["id"]: r["status"] for r in first.records}
    assert status == {"seed-0__x-1": "done", "seed-1__x-1": "done", "seed-0__x-2": "done", "seed-1__x-2": "failed"}
    failed = runs.read_json(out / "seed-1__x-2" / "cell.json")
    assert failed["status"] == "failed" and "20_ablation_components.ipynb: cell 5" in failed["error"]
    assert failed["worker"] == "local" and failed["seed"] == 1 and failed["setting"] == {"x": 2}
    _check_table(pd.read_csv(out / "sweep.csv"), failed_cell=(2, 1))
    md = (out / "sweep.md").read_text()
    assert "## Failed cells" in md and "seed-1__x-2" in md and "planted failure" in md
    assert (out / "sweep_spread.png").is_file() and (out / "sweep_spread.pdf").is_file()

    (out / "FAIL").unlink()
    (out / "executions.log").unlink()
    second = run_sweep(spec, out, executor="local", runner=fake_runner)
    assert second.ran == ["seed-1__x-2"]
    assert (out / "executions.log").read_text().split() == ["seed-1__x-2"]
    assert all(r["status"] == "done" for r in second.records)
    _check_table(pd.read_csv(out / "sweep.csv"), failed_cell=None)
    assert "Failed cells" not in (out / "sweep.md").read_text()
    assert "| x-1 | 1 | 2 | 60.50 ± 0.71 | 20.00 ± 0.00 |" in (out / "sweep.md").read_text()

    # Changing the spec (a different timeout goes into every cell's arguments) reruns every cell.
    third = run_sweep(parse_spec({"profile": "tiny", "seeds": 2, "grid": GRID, "timeout": 60}), out,
                      runner=fake_runner)
    assert len(third.ran) == 4


@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def test_dask_sweep_on_two_workers(tmp_path: Path, dask_client) -> None:
    spec = parse_spec({"profile": "tiny", "seeds": 2, "grid": GRID})
    out = tmp_path / "sweep"
    out.mkdir()
    (out / "FAIL").write_text("seed-0__x-1")
    result = run_sweep(spec, out, executor="dask", client=dask_client, runner=fake_runner)
    workers = set(dask_client.scheduler_info()["workers"])
    assert len(workers) == 2
    for r in result.records:
        assert r["worker"] in workers  # each task records the Dask worker that ran it
        assert runs.read_json(out / r["id"] / "cell.json")["worker"] == r["worker"]
    assert [r["status"] for r in result.records] == ["failed", "done", "done", "done"]
    _check_table(pd.read_csv(out / "sweep.csv"), failed_cell=(1, 0))

    (out / "FAIL").unlink()
    again = run_sweep(spec, out, executor="dask", client=dask_client, runner=fake_runner)
    assert again.ran == ["seed-0__x-1"]
    _check_table(pd.read_csv(out / "sweep.csv"), failed_cell=None)


# ---------------------------------------------------------------------------------------------------
# The real pipeline through Dask
# ---------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_real_pipeline_cell_on_dask(tmp_path: Path, tiny_data: Path, dask_client) -> None:
    """Notebook 10 (the task encoder, tiny profile) as one cell on a Dask worker; a rerun skips it."""
    spec = parse_spec({"profile": "tiny", "data_root": str(tiny_data), "seeds": [0], "notebooks": ["10"],
                       "tables": ["encoder"], "grid": {"device": ["cpu"]}})
    out = tmp_path / "sweep"
    result = run_sweep(spec, out, executor="dask", client=dask_client)
    (record,) = result.records
    assert record["status"] == "done", record["error"]
    assert record["worker"] in set(dask_client.scheduler_info()["workers"])
    cell_dir = out / "seed-0__device-cpu"
    assert (cell_dir / "notebooks" / "10_task_encoder.ipynb").is_file()
    results = runs.read_json(cell_dir / "results.json")
    assert results["profile"] == "tiny" and results["seeds"] == 1
    table = pd.read_csv(out / "sweep.csv")
    assert table.loc[0, "done"] == 1
    assert table.loc[0, "encoder.auc_mean"] == pytest.approx(results["encoder"]["auc"])
    assert "## encoder" in (out / "sweep.md").read_text()
    again = run_sweep(spec, out, executor="local")
    assert again.ran == []


def test_example_spec_parses_and_cli_reports_spec_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from gsmoe_lib.cli import main

    example = load_spec(Path(__file__).resolve().parents[2] / "sweeps" / "example.yaml")
    assert example.profile == "tiny" and example.seeds == (0, 1) and len(make_cells(example)) == 4
    bad = tmp_path / "bad.yaml"
    bad.write_text("profile: tiny\ngrid:\n  tgs_config: t.json\n")
    assert main(["sweep", str(bad), "--out", str(tmp_path / "out")]) == 2  # a user error: one line, exit status 2 (cli.main)
    assert "'grid.tgs_config': expected a non-empty list" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
