# Joch developer entry points. `make help` lists them.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:
MAKEFLAGS += --no-builtin-rules

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(CURDIR)/bin
DEV := $(CURDIR)/.dev
# The local control plane's store: etcd, sqlite or postgres (empty: the one the state directory was
# created with; a new one gets sqlite for `make run`, etcd for `make dev-up`).
STORE ?=
STORE_FLAG := $(if $(STORE),--store $(STORE),)
export PATH := $(BIN):$(CURDIR)/$(VENV)/bin:$(PATH)
export JOCH_BIN_DIR := $(BIN)

##@ Main jobs

.PHONY: run
run: venv tools manifests ## Local control plane (SQLite store, state in .dev/; STORE=postgres|etcd), CRDs, operator, examples/ (Ctrl-C stops)
	$(PY) -m joch.cli.main dev run --state-dir $(DEV) --examples examples $(STORE_FLAG)

.PHONY: test
test: venv tools manifests ## Run every test tier that runs here (unit + integration against a real API server, side by side)
	bash hack/test.sh

##@ Development

.PHONY: venv
venv: $(VENV)/.installed ## Create .venv with pinned dependencies (constraints.txt)

$(VENV)/.installed: pyproject.toml constraints.txt
	[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $@

.PHONY: tools
tools: ## Build (once, cached in ~/.cache/joch) and link etcd, kine, the Kubernetes binaries, kwok, helm into bin/
	bash hack/tools.sh

.PHONY: manifests
manifests: venv ## Generate CRDs (crds/), webhook configurations (webhooks/), the chart's files and the gRPC code (proto/ -> operator/joch/grpc/gen/)
	$(PY) -m joch.cli.main manifests --out $(CURDIR)
	$(PY) hack/protos.py >/dev/null

GENERATED := crds/ webhooks/ rbac/ charts/ docs/resources.md docs/api/ operator/joch/grpc/gen/

.PHONY: verify
verify: manifests ## Fail if generated files differ from what is committed
	git diff --exit-code -- $(GENERATED)
	@test -z "$$(git status --porcelain -- $(GENERATED))" || { git status --porcelain -- $(GENERATED); echo "untracked generated files"; exit 1; }

.PHONY: lint
lint: venv ## ruff, mypy --strict and import-linter (layers)
	$(VENV)/bin/ruff check operator tests benchmarks
	$(VENV)/bin/ruff format --check operator tests benchmarks
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

.PHONY: fmt
fmt: venv ## Format and auto-fix
	$(VENV)/bin/ruff format operator tests benchmarks
	$(VENV)/bin/ruff check --fix operator tests benchmarks

.PHONY: unit
unit: venv tools ## Unit tests only (no control plane)
	$(PY) -m pytest tests/unit

.PHONY: bench
bench: venv tools ## Benchmarks: each figure next to a baseline measured in the same run
	$(PY) benchmarks/policy_bench.py
	$(PY) benchmarks/compile_bench.py
	$(PY) benchmarks/agbom_bench.py
	$(PY) benchmarks/decision_bench.py
	$(PY) benchmarks/webhook_bench.py
	$(PY) benchmarks/client_bench.py
	$(PY) benchmarks/operator_bench.py
	$(PY) benchmarks/resync_bench.py
	$(PY) benchmarks/store_bench.py
	$(PY) benchmarks/agbom_fanout_bench.py
	$(PY) benchmarks/execution_bench.py
	$(PY) benchmarks/approval_bench.py
	$(PY) benchmarks/api_bench.py
	$(PY) benchmarks/grpc_bench.py
	$(PY) benchmarks/budget_bench.py

##@ Local control plane

.PHONY: dev-up
dev-up: venv tools ## Start the store (STORE=etcd|sqlite|postgres), kube-apiserver, controllers and fake Nodes in the background; kubeconfig at .dev/kubeconfig
	$(PY) -m joch.devcluster up --state-dir $(DEV) $(STORE_FLAG)

.PHONY: dev-down
dev-down: venv ## Stop the local control plane (its data stays in .dev/)
	$(PY) -m joch.devcluster down --state-dir $(DEV)

.PHONY: dev-clean
dev-clean: venv ## Stop the local control plane and remove its data (.dev/, `make run`'s .dev/run/ too)
	$(PY) -m joch.devcluster clean --state-dir $(DEV)

.PHONY: install-crds
install-crds: manifests ## Install the CRDs into the cluster of $$KUBECONFIG (default .dev/kubeconfig)
	$(BIN)/kubectl --kubeconfig $${KUBECONFIG:-$(DEV)/kubeconfig} apply --server-side -f crds/

.PHONY: clean
clean: ## Remove the venv, bin/ links and .dev state (the binary cache in ~/.cache/joch stays)
	-$(PY) -m joch.devcluster down --state-dir $(DEV) 2>/dev/null
	rm -rf $(VENV) $(BIN) $(DEV)

include hack/kind.mk

##@ Help

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} /^[a-zA-Z_-]+:.*?##/ { printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)
