# cldetection: `make install` (creates .venv from requirements.lock), `make test`, `make demo`.
# PYTHON: a version (3.11, 3.12, 3.13), a command or a path; default: the newest supported Python found
# (tools/find_python.sh). VENV: the environment's folder. E.g. `make test PYTHON=3.11 VENV=.venv-3.11`.
PYTHON ?=
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --quiet --disable-pip-version-check --no-deps

# Resolved once per make run (a few ms per candidate); an unsupported or missing PYTHON stops make here.
BASE_PYTHON := $(shell tools/find_python.sh $(PYTHON))
ifeq ($(BASE_PYTHON),)
$(error no usable Python (see the message above); pass PYTHON=3.11|3.12|3.13 or a path)
endif
PYVER := $(shell $(BASE_PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])')
STAMP := $(VENV)/.installed-py$(PYVER)

.PHONY: install test demo

install: $(STAMP)

# Everything is pinned in requirements.lock (markers pick the lines for this Python) and installed with
# --no-deps --only-binary=:all:: pip resolves nothing and compiles nothing. A venv of another Python is
# recreated. torch's NVIDIA libraries (requirements-cuda.lock) are added only for a CUDA build of torch.
$(STAMP): requirements.lock requirements-cuda.lock pyproject.toml
	@if [ -x $(PY) ] && [ "$$($(PY) -c 'import sys; print("%d.%d" % sys.version_info[:2])')" != "$(PYVER)" ]; then \
	    echo "$(VENV) holds another Python: recreating it with $(BASE_PYTHON)"; rm -rf $(VENV); fi
	@echo "creating $(VENV) with Python $(PYVER) ($(BASE_PYTHON))"
	$(BASE_PYTHON) -m venv $(VENV)
	rm -f $(VENV)/.installed-py*
	$(PIP) --only-binary=:all: -r requirements.lock
	@if $(PY) -c 'import importlib.metadata as m, sys; sys.exit("+cpu" in m.version("torch"))'; then \
	    echo "torch $$($(PY) -c 'import importlib.metadata as m; print(m.version("torch"))') is a CUDA build: adding requirements-cuda.lock"; \
	    $(PIP) --only-binary=:all: -r requirements-cuda.lock; fi
	$(PIP) --no-build-isolation -e .
	touch $(STAMP)

# One pytest-xdist worker per core (the suite is mostly processes that import torch and MMPose, one core each).
test: install
	$(PY) -m pytest -q -n auto

demo: install
	$(PY) -m cldetection.demo --work-dir work_dirs/demo
