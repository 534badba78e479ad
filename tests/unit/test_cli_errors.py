"""The `gsmoe` command speaks to users: one-line errors with exit status 2, --debug for the traceback.

The console script is called as a user would; `gsmoe score`'s file errors are in test_score_cli.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gsmoe_lib import cli

GSMOE = Path(sys.executable).with_name("gsmoe")
ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "MPLBACKEND": "Agg"}


def _gsmoe(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    assert GSMOE.is_file(), f"{GSMOE}: the console script is not installed (pip install -e .)"
    return subprocess.run([str(GSMOE), *args], capture_output=True, text=True, timeout=300, env=ENV, cwd=cwd)


def _one_line_error(out: subprocess.CompletedProcess, command: str, *expected: str) -> str:
    assert out.returncode == 2, (out.returncode, out.stderr)
    assert "Traceback" not in out.stderr, out.stderr
    err = out.stderr.strip().splitlines()[-1]  # progress bars may come before; the error is one line
    assert err.startswith(f"gsmoe {command}: error: "), out.stderr
    for text in expected:
        assert text in err, (text, err)
    return err


def test_data_check_and_reproduce_report_missing_files_in_one_line(tmp_path):
    _one_line_error(_gsmoe("data", "check", "--data-root", str(tmp_path / "nowhere")), "data check", "nowhere")
    (tmp_path / "data").mkdir()
    _one_line_error(_gsmoe("reproduce", "--data-root", str(tmp_path / "data"), "--train-list", "my.list",
                           "--out", str(tmp_path / "run")), "reproduce", "--train-list my.list")
    assert not (tmp_path / "run").exists()


def test_train_refuses_to_overwrite_a_finished_stage_naming_the_key(tiny_run, tiny_data, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run / "seed-0", run, ignore=shutil.ignore_patterns("*.partial.pt"))
    before = {p: p.read_bytes() for p in (run / "gate").iterdir()}
    (tmp_path / "over.json").write_text(json.dumps({"gate": {"lr": 0.123}}))
    out = _gsmoe("train", "--run", str(run), "--profile", "tiny", "--data-root", str(tiny_data),
                 "--config", str(tmp_path / "over.json"), "--stages", "encoder,tgs,experts,gate")
    _one_line_error(out, "train", f"{run / 'gate'}", "settings.lr:", "-> 0.123", "--replace")
    assert {p: p.read_bytes() for p in (run / "gate").iterdir()} == before


@pytest.mark.parametrize("dataset", ["ucf-crime", "xd-violence"])
def test_train_without_the_default_data_says_how_to_build_it(dataset, monkeypatch, capsys, tmp_path):
    import gsmoe_lib.training.config as config

    monkeypatch.setattr(config, "default_data_root", lambda profile, ds=None: str(tmp_path / f"synth-{ds}"))
    assert cli.main(["train", "--run", str(tmp_path / "run"), "--profile", "tiny", "--dataset", dataset]) == 2
    err = capsys.readouterr().err
    xd = " --dataset xd-violence" if dataset == "xd-violence" else ""
    assert f"gsmoe data synth --out {tmp_path / f'synth-{dataset}'} --profile tiny{xd}`" in err
    assert not (tmp_path / "run").exists()


def test_a_subcommand_imports_only_its_own_module():
    code = ("import sys; from gsmoe_lib.cli import build_parser; "
            "build_parser(['data', 'check', '--data-root', 'x']); "
            "print(sorted(m for m in ('torch', 'gsmoe_lib.training.command', 'gsmoe_lib.training.stages', "
            "'gsmoe_lib.inference') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=ENV)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_unexpected_errors_and_interrupts_are_one_line_too(monkeypatch, capsys):
    import gsmoe_lib.data.check as check

    def boom(args):
        raise RuntimeError("a bug\nwith two lines")

    monkeypatch.setattr(check, "run", boom)
    assert cli.main(["data", "check", "--data-root", "x"]) == 1
    assert capsys.readouterr().err == ("gsmoe data check: error: unexpected RuntimeError: a bug with two lines "
                                       "(run with --debug for the traceback)\n")
    with pytest.raises(RuntimeError, match="a bug"):
        cli.main(["--debug", "data", "check", "--data-root", "x"])
    with pytest.raises(RuntimeError, match="a bug"):
        cli.main(["data", "check", "--data-root", "x", "--debug"])

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(check, "run", interrupted)
    assert cli.main(["data", "check", "--data-root", "x"]) == 130
    assert capsys.readouterr().err == "gsmoe data check: interrupted\n"
