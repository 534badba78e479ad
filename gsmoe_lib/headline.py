"""The README's headline table and figures/README.md, both generated from one committed file.

The default `gsmoe reproduce` run (`make reproduce`: synthetic UCF-shaped data, quick profile, one seed) copies
its figures into the repository's `figures/`. With them it writes, through `write_figures_record`:

    figures/results.json   the headline numbers of that run (Table 2's rows, the reference rows, the
                           mixture's diagnostics, the notebooks' seconds), the machine and the commit
    figures/README.md      which commit and command produced the figures, and the headline table
    README.md              the block between HEADLINE_START and HEADLINE_END, regenerated

so the figures, the README's headline numbers and the statements about what holds come from the same run.
`python -m gsmoe_lib.headline` rewrites README.md's block from figures/results.json; `--check` only compares
(exit status 1 when they differ). tests/unit/test_headline.py fails when README.md and figures/results.json
disagree.

Decisions:
- **What the headline shows.** Table 2's four stages and the MIL reference row, AUC / AUC_A / AP / AP_A in
  percent, with the paper's AUC beside them. The paper's numbers come from real I3D features, ours from the
  synthetic default, so only the ordering compares; the statements under the table say which of the paper's
  orderings and of the mixture's targets hold on this run, each computed from the numbers, never written by
  hand.
- **The commit.** `git rev-parse --short HEAD` of the project when the run starts, plus "with local changes"
  when the code that draws the figures (`CODE_PATHS`) differs from it: the figures then come from code that
  no commit holds. Outside a git checkout (an installed wheel) it is "unknown".
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gsmoe_lib import runs
from gsmoe_lib.paths import PROJECT_ROOT
from gsmoe_lib.reporting import METRIC_NAMES, REPORTED_METRICS, markdown_table, paper_number, percent, points

HEADLINE_START = "<!-- headline: generated from figures/results.json by `python -m gsmoe_lib.headline` -->"
HEADLINE_END = "<!-- end of headline -->"
COMMAND = "make reproduce"
CODE_PATHS = ("gsmoe_lib", "notebooks", "pyproject.toml", "requirements.lock")  # what the figures depend on

# results.json key -> (row label, the paper's row key); references first, then Table 2's stages in order.
REFERENCE_ROWS: tuple[tuple[str, str, str], ...] = (
    ("sultani", "Sultani MIL (reference, raw features)", "sultani"),
)
STAGE_ROWS: tuple[tuple[str, str, str], ...] = (
    ("baseline", "UR-DMU baseline (MIL)", "baseline"),
    ("tgs", "+ TGS fine-tuning", "tgs"),
    ("experts", "+ class experts (max)", "experts"),
    ("gsmoe", "+ gate = GS-MoE", "gate"),
)
# The mixture's targets (the same as results.md's diagnostics table): own-expert advantage in AUC points and
# classes positive; the class AUC drop when its own expert is masked by zero.
ADVANTAGE_TARGET, CLASSES_POSITIVE_TARGET, MASKING_DROP_TARGET = 3.0, 10, 2.0


def git_commit(root: Path = PROJECT_ROOT) -> str:
    """Short commit of `root`'s checkout, "<sha> with local changes" when code differs from it, else "unknown"."""
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "--",
                                *CODE_PATHS], capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{sha} with local changes" if dirty else sha


def headline_source(results: Mapping[str, Any], commit: str, command: str = COMMAND) -> dict[str, Any]:
    """The small copy of a run's results.json that the headline is made of (figures/results.json)."""
    keep = [key for key, _, _ in REFERENCE_ROWS if isinstance(results.get(key), Mapping)]
    versions = results.get("versions") or {}
    timings = results.get("timings") or {}
    return {
        "commit": commit,
        "command": command,
        "written": time.strftime("%Y-%m-%d"),
        "machine": {k: versions.get(k) for k in ("cpu", "cpu_count", "gpu", "torch", "gsmoe")},
        "dataset": results.get("dataset"), "profile": results.get("profile"), "seeds": results.get("seeds"),
        "device": results.get("device"),
        "ablation": results.get("ablation") or {},
        "references": {k: results[k] for k in keep},
        "own_expert_advantage": (results.get("specialisation") or {}).get("own_expert_advantage"),
        "masking_mean_drop": (results.get("masking") or {}).get("mean_drop"),
        "tsne_silhouette": (results.get("tsne") or {}).get("silhouette"),
        "notebook_seconds": float(sum(float(v) for v in timings.values())) if timings else None,
    }


def _rows(source: Mapping[str, Any]) -> list[tuple[str, str, Mapping[str, Any]]]:
    refs, stages = source.get("references") or {}, source.get("ablation") or {}
    return ([(label, paper, refs[k]) for k, label, paper in REFERENCE_ROWS if k in refs]
            + [(label, paper, stages[k]) for k, label, paper in STAGE_ROWS if k in stages])


def _holds(ok: bool) -> str:
    return "holds" if ok else "**does not hold**"


def statements(source: Mapping[str, Any]) -> list[str]:
    """What holds and what does not on this run, each computed from the numbers."""
    stages, refs, out = source.get("ablation") or {}, source.get("references") or {}, []
    auc = {k: stages[k].get("auc") for k, _, _ in STAGE_ROWS if isinstance(stages.get(k), Mapping)}
    names = {"baseline": "baseline", "tgs": "TGS", "experts": "experts", "gsmoe": "gate"}
    chain = [k for k in ("gsmoe", "tgs", "baseline") if auc.get(k) is not None]
    if len(chain) == 3:
        ok = auc["gsmoe"] >= auc["tgs"] >= auc["baseline"]
        out.append(f"Gate ≥ TGS ≥ baseline on AUC (the paper's order) {_holds(ok)}: "
                   + " / ".join(f"{names[k]} {percent(auc[k])}" for k in chain) + ".")
    for key, label, _ in REFERENCE_ROWS:
        ref = (refs.get(key) or {}).get("auc")
        if ref is not None and auc.get("baseline") is not None:
            out.append(f"Baseline above the {label.split(' (')[0]} reference on AUC {_holds(auc['baseline'] > ref)}: "
                       f"{percent(auc['baseline'])} against {percent(ref)}.")
    adv = source.get("own_expert_advantage")
    if isinstance(adv, Mapping) and adv.get("mean") is not None:
        ok = adv["mean"] >= ADVANTAGE_TARGET and (adv.get("n_positive") or 0) >= CLASSES_POSITIVE_TARGET
        out.append(f"Experts specialise (target: own-expert advantage ≥ +{ADVANTAGE_TARGET:g} AUC points, "
                   f"≥ {CLASSES_POSITIVE_TARGET} of 13 classes positive) {_holds(ok)}: "
                   f"{points(adv['mean'])}, {adv.get('n_positive')} of {adv.get('n_classes')}.")
    drop = source.get("masking_mean_drop")
    if isinstance(drop, Mapping) and drop.get("zero") is not None:
        ok = drop["zero"] >= MASKING_DROP_TARGET
        out.append(f"Masking a class's own expert lowers its AUC by ≥ {MASKING_DROP_TARGET:g} points (the paper: "
                   f"14.0) {_holds(ok)}: {points(drop['zero'])}.")
    sil = source.get("tsne_silhouette")
    if isinstance(sil, Mapping) and sil.get("experts") is not None and sil.get("baseline") is not None:
        out.append(f"Classes separate more after the experts (Fig. 5: t-SNE silhouette above the baseline's) "
                   f"{_holds(sil['experts'] > sil['baseline'])}: {sil['experts']:.2f} against {sil['baseline']:.2f}.")
    return out


def headline_markdown(source: Mapping[str, Any]) -> str:
    """The headline table (percent) with the paper's AUC, the run it comes from, and what holds."""
    header = ["row"] + [f"{METRIC_NAMES[m]} (%)" for m in REPORTED_METRICS] + ["paper AUC (%)"]
    lines = []
    for label, paper, values in _rows(source):
        if values.get("collapsed_seeds") and values.get("collapsed_seeds") >= values.get("n_seeds", 1):
            cells = [f"collapsed (std {values.get('score_std', float('nan')):.1e})"] * len(REPORTED_METRICS)
        else:
            cells = [percent(values.get(m), values.get(f"{m}_std")) for m in REPORTED_METRICS]
        lines.append([label, *cells, points(paper_number("ucf-crime", paper, "auc"), signed=False)])
    machine = source.get("machine") or {}
    where = machine.get("gpu") or f"{machine.get('cpu')}, {machine.get('cpu_count')} cores"
    seconds = source.get("notebook_seconds")
    text = [markdown_table(header, lines),
            f"Source: `{source.get('command')}` at commit {source.get('commit')} ({source.get('written')}; "
            f"{source.get('dataset')}-shaped synthetic data, profile {source.get('profile')}, "
            f"{source.get('seeds')} seed{'' if source.get('seeds') == 1 else 's'}, device {source.get('device')}, {where}"
            + (f"; the notebooks ran {seconds / 60:.1f} min" if seconds else "") + ").", ""]
    text += [f"- {s}" for s in statements(source)]
    return "\n".join(text) + "\n"


def figures_readme(source: Mapping[str, Any]) -> str:
    """figures/README.md: where the figures come from and the headline table of the same run."""
    return "\n".join([
        "# Figures of the default run",
        "",
        f"Every PNG here was written by `{source.get('command')}` (the default `gsmoe reproduce` run: synthetic",
        f"UCF-shaped data, quick profile, one seed) at commit **{source.get('commit')}** on {source.get('written')}.",
        "The same run's headline numbers are in `results.json` beside them, and README.md's headline table is",
        "generated from that file (`python -m gsmoe_lib.headline`). The PDF versions and every other table stay",
        "in the run folder (`runs/reproduce/`).",
        "",
        headline_markdown(source),
    ])


def replace_block(text: str, block: str) -> str:
    """`text` with the part between HEADLINE_START and HEADLINE_END replaced by `block`."""
    start, end = text.find(HEADLINE_START), text.find(HEADLINE_END)
    if start < 0 or end < start:
        raise ValueError(f"no headline block: the file needs the lines {HEADLINE_START!r} and {HEADLINE_END!r}")
    return text[:start + len(HEADLINE_START)] + "\n" + block + text[end:]


def update_readme(readme: Path, source: Mapping[str, Any]) -> bool:
    """Rewrite README's headline block from `source`; True when it changed."""
    old = readme.read_text()
    new = replace_block(old, headline_markdown(source))
    if new != old:
        runs.write_text(readme, new)
    return new != old


def write_figures_record(results: Mapping[str, Any], figures_dir: Path = PROJECT_ROOT / "figures",
                         readme: Path | None = PROJECT_ROOT / "README.md", command: str = COMMAND,
                         commit: str | None = None) -> dict[str, Any]:
    """figures/results.json and figures/README.md from a run's results, and README.md's headline block.

    `commit`: the project's commit when the run started (`git_commit()`; default: now).
    """
    source = headline_source(results, commit or git_commit(Path(figures_dir).parent), command)
    runs.write_json(Path(figures_dir) / "results.json", source)
    runs.write_text(Path(figures_dir) / "README.md", figures_readme(source))
    if readme is not None and readme.exists() and HEADLINE_START in readme.read_text():
        update_readme(readme, source)
    return source


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gsmoe_lib.headline", description=__doc__.split("\n")[0])
    parser.add_argument("--source", type=Path, default=PROJECT_ROOT / "figures" / "results.json")
    parser.add_argument("--readme", type=Path, default=PROJECT_ROOT / "README.md")
    parser.add_argument("--check", action="store_true", help="compare only; exit status 1 when they differ")
    args = parser.parse_args(argv)
    source = runs.read_json(args.source)
    text = args.readme.read_text()
    if args.check:
        same = replace_block(text, headline_markdown(source)) == text
        print(f"{args.readme}: headline {'matches' if same else 'differs from'} {args.source}")
        return 0 if same else 1
    changed = update_readme(args.readme, source)
    print(f"{args.readme}: headline {'rewritten' if changed else 'already up to date'} from {args.source}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
