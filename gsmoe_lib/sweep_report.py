"""The summary of a `gsmoe sweep`: sweep.csv (one row per setting) and sweep.md, mean ± std over seeds.

Each finished cell (one setting, one seed) contributes the test metrics of the results.json tables the spec
names, flattened to "<table>.<row>.<metric>" (`table_metrics`); a setting's row holds `<name>_mean` and
`<name>_std` over its finished seeds (`reporting.mean_std`: sample std, NaN with one seed, empty in the
CSV and not shown in the markdown). Fractions in the CSV, percent in the markdown. The spread figure is
`figures.plot_sweep_spread`; running the cells is `sweep.py`'s.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from gsmoe_lib.reporting import ABLATION_ROWS, METRIC_NAMES, METRICS, markdown_table, mean_std, percent


def table_metrics(results: Mapping[str, Any], tables: Sequence[str]) -> dict[str, float]:
    """Flatten tables of results.json: {"<table>.<row>.<metric>": value} or {"<table>.<metric>": value}.

    A table is a mapping row -> {metric: number} (ablation, table3, table5) or metric -> number (encoder,
    tgs). Only the test metrics (`METRICS`: fractions) are taken; notes, per-seed lists, configs and the
    `<metric>_std` companions (a sweep cell has one seed) are left out. A table that holds metrics itself is
    a metric table: its nested mappings (a config, settings) are not rows and are not read.
    """
    def numbers(prefix: str, mapping: Mapping[str, Any]) -> dict[str, float]:
        return {f"{prefix}.{m}": float(v) for m, v in mapping.items()
                if m in METRICS and isinstance(v, (int, float)) and not isinstance(v, bool)}

    out: dict[str, float] = {}
    for table in tables:
        rows = results.get(table)
        if not isinstance(rows, Mapping):
            continue
        own = numbers(table, rows)
        out.update(own)
        if own:
            continue  # metric -> number: a nested config's "auc" is not a result
        for row, metrics in rows.items():
            if isinstance(metrics, Mapping):
                out.update(numbers(f"{table}.{row}", metrics))
    return out


def ordered_names(names: Iterable[str], tables: Sequence[str]) -> list[str]:
    """"<table>.<row>.<metric>" names in reading order: tables as given, Table 2's rows in the paper's order,
    then the metrics in `METRICS` order (cell.json stores them with sorted keys)."""
    def rank(value: str, order: Sequence[str]) -> tuple[int, str]:
        return (list(order).index(value), value) if value in order else (len(order), value)

    def key(name: str) -> tuple:
        series, metric = name.rsplit(".", 1)
        table, _, row = series.partition(".")
        return rank(table, tables), rank(row, ABLATION_ROWS), rank(metric, METRICS)

    return sorted(set(names), key=key)


def sweep_table(records: Sequence[Mapping[str, Any]], grid_keys: Sequence[str], tables: Sequence[str]):
    """One row per setting: its grid values, cell counts, and `<metric>_mean` / `<metric>_std` over seeds.

    records: the sweep's cell records (cell.json), each with "setting_id", "setting", "status", "metrics".
    Only cells with status "done" count; a metric no finished seed has is NaN.
    """
    import pandas as pd

    by_setting: dict[str, list[Mapping[str, Any]]] = {}
    for r in records:
        by_setting.setdefault(r["setting_id"], []).append(r)
    metric_names = ordered_names((m for r in records for m in r.get("metrics", {})), tables)
    rows = []
    for sid, group in by_setting.items():
        row: dict[str, Any] = {"setting": sid}
        for key in grid_keys:
            value = group[0]["setting"][key]
            row[key] = json.dumps(value) if isinstance(value, (list, dict)) else value
        done = [r for r in group if r["status"] == "done"]
        row.update(seeds=len(group), done=len(done), failed=len(group) - len(done))
        for m in metric_names:
            ms = mean_std(r["metrics"].get(m) for r in done)
            row[f"{m}_mean"], row[f"{m}_std"] = ms["mean"], ms["std"]
        rows.append(row)
    return pd.DataFrame(rows)


def sweep_markdown(table: Any, records: Sequence[Mapping[str, Any]], title: str, grid_keys: Sequence[str],
                   tables: Sequence[str]) -> str:
    """sweep.md: one markdown table per results-table row (e.g. per ablation row); rows are settings, percent.

    table: `sweep_table`'s DataFrame; a mean that is NaN (no finished seed has the metric) shows "–".
    """
    means = [c[:-5] for c in table.columns if c.endswith("_mean")]
    groups: dict[str, list[str]] = {}
    for m in means:
        series, metric = m.rsplit(".", 1)
        groups.setdefault(series, []).append(metric)
    lines = [f"# {title}\n", "Mean ± sample std over seeds (percent); `done` counts the finished seeds.\n"]
    settings = ["setting", *grid_keys, "done"]
    for series, metrics in groups.items():
        lines.append(f"## {series}\n")
        header = [*settings, *(f"{METRIC_NAMES.get(m, m)} (%)" for m in metrics)]
        body = []
        for _, row in table.iterrows():
            cells = [str(row[s]) for s in settings]
            for m in metrics:
                mean = row[f"{series}.{m}_mean"]
                cells.append(percent(None if math.isnan(mean) else mean, row[f"{series}.{m}_std"]))
            body.append(cells)
        lines.append(markdown_table(header, body))
    if not groups:
        lines.append(f"No metrics yet: no finished cell has the tables {', '.join(tables)} in its "
                     "results.json (the notebooks that write them may be outside the selection).\n")
    failed = [r for r in records if r["status"] == "failed"]
    if failed:
        lines.append("## Failed cells\n")
        lines += [f"- `{r['id']}` on {r['worker']}: {r['error']}" for r in failed]
        lines.append("")
    return "\n".join(lines)
