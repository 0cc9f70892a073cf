# airt — `make help` lists every target.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

UV_VERSION ?= 0.13.9
UV ?= $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
PYTEST_ARGS ?=
# `make test` runs the tiers in this many pytest-xdist processes (tests/conftest.py groups them).
PYTEST_WORKERS ?= 4
export UV_LINK_MODE ?= hardlink

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make \033[36m<target>\033[0m\n"} \
	  /^[a-zA-Z_-]+:.*?##/ { printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2 } \
	  /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Setup (everything a fresh machine lacks)

.PHONY: uv
uv: ## Install uv (pinned) unless present.
	@command -v $(UV) >/dev/null 2>&1 || python3 -m pip install --user --quiet "uv==$(UV_VERSION)"

.PHONY: env
env: uv ## Create/refresh the Python environment (.venv) from the lock file.
	$(UV) sync --frozen --extra dev

.PHONY: tools
tools: ## Build the pinned control-plane binaries into ~/.cache/airt/bin/<key> (cached).
	@bash tools/build.sh

# What the real node (containerd, runc, CNI, iptables/ipset, openssl, gcc for the pause image) and
# the image build (buildah, mmdebstrap) need, besides Prometheus and Lua for the tests.
SYSTEM_PACKAGES := lua5.4 containerd runc containernetworking-plugins iptables ipset iproute2 \
  openssl gcc libc6-dev buildah mmdebstrap skopeo uidmap
SYSTEM_COMMANDS := lua5.4 containerd runc /usr/lib/cni/bridge iptables ipset ip openssl gcc buildah mmdebstrap skopeo

.PHONY: system-deps
system-deps: ## Install Debian packages the tests, the real node and the image build use, unless present.
	@if [ -x tools/install-prometheus.sh ]; then bash tools/install-prometheus.sh; fi
	@missing=0; for c in $(SYSTEM_COMMANDS); do command -v $$c >/dev/null 2>&1 || [ -x $$c ] || missing=1; done; \
	if [ $$missing = 1 ]; then SUDO=$$( [ "$$(id -u)" -eq 0 ] || echo sudo ); \
	  $$SUDO apt-get update && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y --no-install-recommends $(SYSTEM_PACKAGES); fi

.PHONY: setup
# The Go builds are CPU-bound, the image build and the GPU kit's stand-in mostly download and
# write, so on a fresh machine the three run side by side (each prefixes its own lines).
setup: env system-deps ## Everything above.
	@$(MAKE) --no-print-directory -j3 tools images gpu-kit-env

##@ Images

.PHONY: images
images: ## Build the runtime images (buildah, no Docker daemon) as OCI archives into ~/.cache/airt/images (cached); IMAGES_CUDA=1 adds the CUDA worker.
	@bash tools/images/build.sh

##@ Development

.PHONY: generate
generate: ## Regenerate the CRDs, docs/api.md, the chart's copies (CRDs, operator RBAC rules), its README's values table and each image's requirements.txt.
	$(UV) run airt-operator crds --out crds --api-doc docs/api.md
	$(UV) run python -m airt_operator.rbac --out charts/airt/files/operator-rules.yaml
	$(UV) run python -m airt_operator.rbac --out-dir charts/airt/files/rbac
	$(UV) run python -m airt_dev.chartdoc
	@# Each image installs its product's locked requirements, not the whole lock (tools/images).
	$(UV) export --quiet --frozen --no-dev --package airt-worker --no-emit-workspace --no-hashes -o runtime-images/worker/requirements.txt
	$(UV) export --quiet --frozen --no-dev --package airt-metrics --no-emit-workspace --no-hashes -o runtime-images/metrics/requirements.txt
	$(UV) export --quiet --frozen --no-dev --package airt-operator --no-emit-workspace --no-hashes -o operator/requirements.txt
	rm -f charts/airt/files/crds/*.yaml
	cp crds/*.yaml charts/airt/files/crds/

.PHONY: mlserver-requirements
mlserver-requirements: ## Re-pin the MLServer image's requirements from PyPI (raise --exclude-newer for newer releases).
	@# MLServer is no workspace member, so its pins do not constrain the products' lock; the fixed
	@# date makes this command give the same pins until someone moves it.
	$(UV) pip compile runtime-images/mlserver/pyproject.toml --universal --python-version 3.11 --exclude-newer 2026-12-01T00:00:00Z --no-annotate -o runtime-images/mlserver/requirements.txt

.PHONY: check-generated
check-generated: generate ## Fail when generated files differ from what is committed.
	@git diff --exit-code -- crds docs/api.md charts/airt/files charts/airt/README.md runtime-images/worker/requirements.txt runtime-images/metrics/requirements.txt operator/requirements.txt || { echo "generated files drifted: run make generate and commit"; exit 1; }

.PHONY: fmt
fmt: ## Format the code.
	$(UV) run ruff format .
	$(UV) run ruff check --fix .

.PHONY: lint
lint: ## ruff (lint and format check), mypy (strict on our packages) and the import walls (import-linter).
	$(UV) run ruff check .
	$(UV) run ruff format --check .
	$(UV) run mypy
	$(UV) run lint-imports --no-cache

.PHONY: cluster-up
cluster-up: env tools ## Start (or reuse) the local cluster and its real node; the last line is KUBECONFIG=<path>.
	@$(UV) run airt-dev up

.PHONY: cluster-down
cluster-down: env ## Stop and delete the local cluster.
	@$(UV) run airt-dev down

.PHONY: dev
dev: setup ## The main job: cluster, CRDs, runtimes, operator, examples Ready, the CPU example answered by its real pod.
	@$(UV) run airt-dev run

.PHONY: dev-down
dev-down: ## Stop the dev operator and worker, and delete the local cluster.
	@$(UV) run airt-dev down

##@ Publish

# Where `make chart` pushes the chart (oci://host[:port]/path; it lands at <registry>/airt).
CHART_REGISTRY ?= oci://ghcr.io/airt-dev/charts
# Where `make example-models` pushes the example models (host[:port]/path, no scheme).
MODEL_REGISTRY ?=

.PHONY: chart
chart: env tools ## Package charts/airt into dist/ and push it to CHART_REGISTRY (CHART_PLAIN_HTTP=1: a registry without TLS); prints the one-step `helm install`.
	@$(UV) run python -m airt_dev.chartpub --registry "$(CHART_REGISTRY)" $(if $(CHART_PLAIN_HTTP),--plain-http)

.PHONY: example-models
example-models: env ## Build the example models, push them to MODEL_REGISTRY as OCI artifacts (MODEL_PLAIN_HTTP=1: no TLS) and print their digests; WRITE=1 also pins examples/deployments to them (PIN_AS: name another registry there).
	@$(UV) run python -m airt_dev.example_models --registry "$(MODEL_REGISTRY)" $(if $(MODEL_PLAIN_HTTP),--plain-http) $(if $(WRITE),--write) $(if $(PIN_AS),--pin-as "$(PIN_AS)")

##@ Test

.PHONY: test
# lint only reads the tree, so it runs beside the tests (its output follows theirs);
# check-generated rewrites generated files, so it runs before them.
test: setup check-generated ## Set up what is missing, then lint and run every test tier.
	@lint_log=$$(mktemp); ( $(MAKE) --no-print-directory lint >"$$lint_log" 2>&1 ) & lint=$$!; \
	rc=0; $(UV) run pytest -ra -n $(PYTEST_WORKERS) $(PYTEST_ARGS) tests || rc=$$?; \
	lrc=0; wait $$lint || lrc=$$?; echo "---- make lint (run beside the tests): exit $$lrc"; \
	cat "$$lint_log"; rm -f "$$lint_log"; \
	if [ $$lrc -ne 0 ]; then echo "lint failed"; exit $$lrc; fi; exit $$rc

.PHONY: test-unit
test-unit: env ## Unit tier only.
	$(UV) run pytest -m unit $(PYTEST_ARGS) tests

.PHONY: test-worker
test-worker: env ## Worker tier only.
	$(UV) run pytest -m worker $(PYTEST_ARGS) tests

.PHONY: test-cluster
test-cluster: env tools ## Cluster tier only.
	$(UV) run pytest -m cluster $(PYTEST_ARGS) tests

.PHONY: test-e2e
test-e2e: setup ## e2e tier only.
	$(UV) run pytest -m e2e $(PYTEST_ARGS) tests

##@ Benchmarks

.PHONY: bench
bench: setup ## Run the benchmarks; results and plots go to docs/benchmarks/.
	@if [ -f bench/run.py ]; then $(UV) run python bench/run.py; else echo "no benchmarks yet"; fi

.PHONY: gpu-kit
gpu-kit: env ## Download the GPU check's offline kit into bench/gpu/kit (the wheels the GPU machine lacks, and airt's own).
	$(UV) run python bench/gpu/kit.py

.PHONY: gpu-kit-env
gpu-kit-env: env ## Create (cached) the Python 3.12 stand-in for the GPU machine that tests/worker/test_gpu_kit.py runs the kit in.
	$(UV) run python bench/gpu/standin.py
