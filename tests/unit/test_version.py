"""One version number users can quote: gsmoe --version, the package metadata, CHANGELOG.md and CITATION.cff agree."""

import re
from importlib.metadata import version

import yaml

from gsmoe_lib import __version__
from gsmoe_lib.cli import main
from gsmoe_lib.paths import PROJECT_ROOT


def test_version_is_semantic_and_printed_by_the_cli(capsys):
    assert re.fullmatch(r"\d+\.\d+\.\d+", __version__)
    try:
        main(["--version"])
    except SystemExit as exc:  # argparse's version action exits 0 after printing
        assert exc.code == 0
    assert capsys.readouterr().out.strip() == f"gsmoe {__version__}"


def test_installed_metadata_changelog_and_citation_carry_the_same_version():
    # pyproject reads gsmoe_lib.__version__ (dynamic version); an older editable install needs `make setup`
    assert version("gsmoe") == __version__, "the installed metadata is stale: run make setup"
    changelog = (PROJECT_ROOT / "CHANGELOG.md").read_text()
    assert re.search(rf"^## \[{re.escape(__version__)}\] - \d{{4}}-\d{{2}}-\d{{2}}$", changelog, re.M)
    assert "Unreleased" not in changelog
    citation = yaml.safe_load((PROJECT_ROOT / "CITATION.cff").read_text())
    assert str(citation["version"]) == __version__
    assert "2508.06318" in str(citation["preferred-citation"])


def test_the_readme_names_the_current_version():
    readme = (PROJECT_ROOT / "README.md").read_text()
    assert re.findall(r"^Version (\d+\.\d+\.\d+) ", readme, re.M) == [__version__]
