# cldetection: `make install` (creates .venv from requirements.lock), `make test`, `make demo`.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install test demo clean-demo

install: $(STAMP)

# Everything is pinned in requirements.lock and installed with --no-deps: pip resolves nothing, compiles nothing.
$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -r requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

test: install
	$(PY) -m pytest -q

demo: install
	$(PY) -m cldetection.demo --work-dir work_dirs/demo
