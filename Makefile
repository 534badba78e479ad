# The front door. `make reproduce` and `make test` are the two commands of the README.
# Both create .venv with python3 if it is missing and install the project with pinned dependencies (again when
# pyproject.toml, requirements.lock or the version in gsmoe_lib/__init__.py changed).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.gsmoe-installed
ARGS   ?=

.PHONY: setup reproduce test lab bench clean-runs

$(STAMP): pyproject.toml requirements.lock gsmoe_lib/__init__.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[dev,distributed]'
	# Register this environment as the `python3` kernel that papermill and JupyterLab use.
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (gsmoe)" >/dev/null
	touch $(STAMP)

setup: $(STAMP)

reproduce: setup
	$(VENV)/bin/gsmoe reproduce $(ARGS)

test: setup
	$(PY) -m pytest tests $(ARGS)

# The notebooks' defaults name the run `make reproduce` writes (runs/reproduce, data/ under the project root),
# so after it, Run All loads its finished stages; a stage asked for with another config is an error, never retrained.
# JupyterLab refuses to start as root (containers, CI images) unless told so: pass --allow-root there only.
LAB_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root,)
lab: setup
	$(VENV)/bin/jupyter lab notebooks/ $(LAB_ROOT) $(ARGS)

# `make bench` times the training steps and the test-set scoring (`gsmoe bench speed`); the other benchmarks are
# `gsmoe bench --help`'s subcommands.
bench: setup
	$(VENV)/bin/gsmoe bench speed $(ARGS)

clean-runs:
	rm -rf runs/
