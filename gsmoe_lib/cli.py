"""The `gsmoe` command (also `python -m gsmoe_lib`).

Each subcommand lives in the module named after its concept. A module that provides a subcommand
defines two functions:

    add_arguments(parser: argparse.ArgumentParser) -> None
    run(args: argparse.Namespace) -> int        # exit status

and is listed in COMMANDS below. Only the module of the subcommand on the command line is imported
(`build_parser(argv)`), so `gsmoe data check` does not pay for importing the models, and an error in a
`gsmoe score` call is reported within the time it takes to import torch.

Errors speak to users, not in tracebacks: `run` raises, and `main` reports what it raised in one line on
stderr, `gsmoe <command>: error: <message>` (argparse's own format). A user error (`USER_ERRORS`: a
missing or unreadable file, a bad value, a failed notebook, a stage that finished with another config)
exits with status 2, anything else with 1 and says it was unexpected. `--debug`, before or after the
subcommand, shows the traceback instead. Ctrl-C exits with 130 and one line.
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
    (("train",), "gsmoe_lib.training.command", "run training stages (encoder, tgs, experts, gate) into a run folder"),
    (("score",), "gsmoe_lib.inference", "score feature files (or videos) with a finished run and write per-snippet CSV"),
    (("extract",), "gsmoe_lib.extract.command",
     "videos -> the field's I3D features (named crop / snippet recipes), with an extract.json manifest"),
    (("reproduce",), "gsmoe_lib.reproduce", "execute the notebook collection with papermill"),
    (("bench", "speed"), "gsmoe_lib.bench.speed",
     "time every training step and test-set scoring (and its peak memory)"),
    (("bench", "precision"), "gsmoe_lib.bench.precision",
     "fp32 / bf16 / TF32: every stage's metrics and time, over seeds"),
    (("bench", "robustness"), "gsmoe_lib.bench.robustness",
     "the pipeline over variants of the synthetic data x seeds, checked against the targets"),
    (("bench", "generalise"), "gsmoe_lib.bench.generalise",
     "the references and every stage on each synthetic world (default, drift, XD-shaped) x seeds, one table"),
    (("bench", "scoring-options"), "gsmoe_lib.bench.scoring_options",
     "crops each / mean x fp32 / bf16 on a finished run's test metrics and scoring time"),
    (("bench", "moe-options"), "gsmoe_lib.bench.moe_options",
     "the MoE options (pseudo-label sources, extensions) over seeds"),
    (("bench", "encoder-schedule"), "gsmoe_lib.bench.encoder_schedule",
     "test metrics along training of the encoder or the Sultani MIL stage"),
    (("bench", "context"), "gsmoe_lib.bench.context",
     "a finished run's encoder scored with its temporal context cut to windows: what the context costs"),
    (("bench", "paper-pipeline"), "gsmoe_lib.bench.paper_pipeline",
     "the four stages at paper-scale training settings, end to end, timed"),
    (("bench", "extract"), "gsmoe_lib.bench.extract",
     "gsmoe extract: snippets/s of decoding, the model and both, and peak host memory on a long video"),
    (("sweep",), "gsmoe_lib.sweep", "run a seeds x settings sweep locally or on a Dask cluster"),
]


def _available(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


DEBUG_HELP = "show the Python traceback of an error instead of a one-line message"


def user_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that are the user's input, not a bug: reported in one line, exit status 2."""
    from gsmoe_lib.notebook import NotebookFailed

    # OSError: missing / unreadable / unwritable files. ValueError: bad values and contents (ParameterError,
    # runs.StageConflict and the data loaders' errors are ValueErrors). NotebookFailed: names notebook and cell.
    return (OSError, ValueError, NotebookFailed)


def _chosen(argv: list[str] | None) -> tuple[str, ...] | None:
    """The command words of COMMANDS that `argv` starts with (options skipped); None for all (argv None)."""
    if argv is None:
        return None
    words = tuple(a for a in argv if not a.startswith("-"))
    return next((w for w, _, _ in COMMANDS if words[:len(w)] == w), ())


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The `gsmoe` parser. With `argv`, only the subcommand it names gets its arguments (its module is
    imported); the others are listed with their help line only. Without, every subcommand is complete."""
    from gsmoe_lib import __version__

    chosen = _chosen(argv)

    parser = argparse.ArgumentParser(prog="gsmoe", description="GS-MoE weakly-supervised video anomaly detection")
    parser.add_argument("--version", action="version", version=f"gsmoe {__version__}")
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    top = parser.add_subparsers(dest="command", metavar="COMMAND")
    groups: dict[str, argparse._SubParsersAction] = {}
    for words, module, help_text in COMMANDS:
        if not _available(module):
            continue  # a stage not built yet; every listed module exists once the project is complete
        if len(words) == 1:
            sub = top.add_parser(words[0], help=help_text, description=help_text)
        else:
            if words[0] not in groups:
                group_help = f"{words[0]} commands: " + ", ".join(w[1] for w, _, _ in COMMANDS if w[0] == words[0])
                group_parser = top.add_parser(words[0], help=group_help, description=group_help)
                groups[words[0]] = group_parser.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)
            sub = groups[words[0]].add_parser(words[1], help=help_text, description=help_text)
        if chosen is not None and words != chosen:
            continue  # listed in --help; not parsed in this call, so its module is not imported
        mod = importlib.import_module(module)
        mod.add_arguments(sub)
        # SUPPRESS: without the flag here, the top-level --debug (False by default) is kept.
        sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
        sub.set_defaults(_module=module, _command="gsmoe " + " ".join(words))
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "_module", None):
        parser.print_help()
        return 2
    try:
        mod = importlib.import_module(args._module)
        return int(mod.run(args) or 0)
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"{args._command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - every error becomes one line unless --debug
        if args.debug:
            raise
        user = isinstance(exc, user_errors())
        text = str(exc) or type(exc).__name__
        if not user:
            text = f"unexpected {type(exc).__name__}: {text} (run with --debug for the traceback)"
        print(f"{args._command}: error: {' '.join(text.split())}", file=sys.stderr)  # one line
        return 2 if user else 1


if __name__ == "__main__":
    sys.exit(main())
