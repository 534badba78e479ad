"""The `gsmoe` command (also `python -m gsmoe_lib`).

Each subcommand lives in the module named after its concept. A module that provides a subcommand
defines two functions:

    add_arguments(parser: argparse.ArgumentParser) -> None
    run(args: argparse.Namespace) -> int        # exit status

and is listed in COMMANDS below. Modules are imported only when their subcommand (or --help) is used,
so `gsmoe data check` does not pay for importing the models.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

# (command words, module, one-line help)
COMMANDS: list[tuple[tuple[str, ...], str, str]] = [
    (("data", "check"), "gsmoe_lib.data.check", "validate a feature dataset (lists, annotations, files) without training"),
    (("data", "synth"), "gsmoe_lib.data.synthetic", "write the UCF-Crime-shaped (or XD-shaped) synthetic dataset"),
    (("train",), "gsmoe_lib.train", "run training stages (encoder, tgs, experts, gate) into a run folder"),
    (("score",), "gsmoe_lib.inference", "score feature files with a finished run and write per-snippet CSV"),
    (("reproduce",), "gsmoe_lib.pipeline", "execute the notebook collection with papermill"),
    (("bench",), "gsmoe_lib.bench", "benchmark training steps and test-set scoring"),
    (("sweep",), "gsmoe_lib.sweep", "run a seeds x settings sweep locally or on a Dask cluster"),
]


def _available(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def build_parser() -> argparse.ArgumentParser:
    from gsmoe_lib import __version__

    parser = argparse.ArgumentParser(prog="gsmoe", description="GS-MoE weakly-supervised video anomaly detection")
    parser.add_argument("--version", action="version", version=f"gsmoe {__version__}")
    top = parser.add_subparsers(dest="command", metavar="COMMAND")
    groups: dict[str, argparse._SubParsersAction] = {}
    for words, module, help_text in COMMANDS:
        if not _available(module):
            continue  # a stage not built yet; every listed module exists once the project is complete
        if len(words) == 1:
            sub = top.add_parser(words[0], help=help_text, description=help_text)
        else:
            if words[0] not in groups:
                group_parser = top.add_parser(words[0], help=f"{words[0]} commands")
                groups[words[0]] = group_parser.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)
            sub = groups[words[0]].add_parser(words[1], help=help_text, description=help_text)
        mod = importlib.import_module(module)
        mod.add_arguments(sub)
        sub.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_module", None):
        parser.print_help()
        return 2
    mod = importlib.import_module(args._module)
    return int(mod.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
