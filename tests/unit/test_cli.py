"""The `gsmoe` command: every subcommand is reachable and has --help."""

import subprocess
import sys

import pytest

from gsmoe_lib.cli import COMMANDS, build_parser, main


def test_every_listed_subcommand_is_built():
    parser = build_parser()
    for words, _, _ in COMMANDS:
        args = parser.parse_args(list(words) + _required(words))
        assert args._module


def _required(words):
    # the smallest argument list each subcommand accepts, to check it parses
    return {
        ("data", "check"): ["--data-root", "x"],
        ("data", "synth"): ["--out", "x"],
        ("train",): ["--run", "x"],
        ("score",): ["--run", "x", "f.npy"],
        ("reproduce",): [],
        ("bench", "speed"): ["--small"],
        ("bench", "precision"): [],
        ("bench", "robustness"): ["--list"],
        ("bench", "generalise"): [],
        ("bench", "scoring-options"): [],
        ("bench", "moe-options"): [],
        ("bench", "encoder-schedule"): ["data"],
        ("bench", "paper-pipeline"): ["--small"],
        ("sweep",): ["spec.yaml"],
        ("extract",): ["v.mp4", "--weights", "w.pt", "--out", "x"],
        ("bench", "extract"): [],
        ("bench", "context"): [],
    }[tuple(words)]


@pytest.mark.parametrize("words", [w for w, _, _ in COMMANDS])
def test_help_of_each_subcommand(words, capsys):
    with pytest.raises(SystemExit) as exc:
        main(list(words) + ["--help"])
    assert exc.value.code == 0
    assert "usage: gsmoe " + " ".join(words) in capsys.readouterr().out


def test_module_entry_point_without_command_prints_help():
    out = subprocess.run([sys.executable, "-m", "gsmoe_lib"], capture_output=True, text=True)
    assert out.returncode == 2 and "COMMAND" in out.stdout
