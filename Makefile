# The front door. Each target is one call of the `prefect-aci` command (installed in .venv by
# `make setup`); the logic lives in Python. `prefect-aci --help` says the same at every level.
VENV      ?= .venv
BIN       := $(VENV)/bin
CLI       := $(BIN)/prefect-aci
CHECKOV_VENV ?= .venv-checkov
AZ_VENV   ?= .venv-az
BUILD_FLAGS ?=
PYTEST_ARGS ?=

.PHONY: help setup checkov az image push bench demo demo-down demo-status validate-arm deploy-infra \
	destroy register deploy-all test test-fast lint lock clean

help:
	@echo "make demo         the whole thing on this machine, no Azure: image, registry, Azurite, Prefect server + UI, worker, demo run"
	@echo "make demo-status  what of the demo runs, and where (UI, API, last flow run)"
	@echo "make demo-down    remove what make demo started"
	@echo "make image        build the image (offline Debian base when nothing can be pulled)"
	@echo "make push REGISTRY=host[:port] [NAMESPACE=ns] [REPOSITORY=name]   push all tags, record the digest"
	@echo "make bench        our image vs the usual recipe (build/bench.json), flow runs on local ACI (build/local-aci-bench.json)"
	@echo "make validate-arm the ARM template offline: Azure's schemas and checkov"
	@echo "make deploy-infra [WHAT_IF=1]   deploy the ARM template (settings from .env), outputs to build/azure.json"
	@echo "make destroy CONFIRM=yes        delete the resource group"
	@echo "make register [DRY_RUN=1]       Prefect side: credentials block, ACI work pool, storage, variable"
	@echo "make deploy-all   all of the Azure side in order: infra, image, push, worker, register, demo deployment"
	@echo "make test         the whole test suite (starts a Docker engine if needed)"
	@echo "make test-fast    the checks that need no engine, image or server (seconds)"
	@echo "make lint         ruff, the import contracts (lint-imports), hadolint, shellcheck, actionlint"
	@echo "make lock         re-resolve the lock files"
	@echo "make az           the Azure CLI in .venv-az, for prefect-aci demo az (the tests use it)"

$(VENV)/.installed: pyproject.toml requirements-dev.lock requirements-bootstrap.lock
	scripts/bootstrap.sh

setup: $(VENV)/.installed

# checkov in a venv of its own: its pins clash with the development tools.
$(CHECKOV_VENV)/.installed: requirements-checkov.lock requirements-bootstrap.lock
	scripts/bootstrap.sh checkov

checkov: $(CHECKOV_VENV)/.installed

# The Azure CLI in a venv of its own, to look at the demo's local Azure (its pins clash too).
$(AZ_VENV)/.installed: requirements-az.lock
	AZ_VENV=$(AZ_VENV) scripts/bootstrap.sh az

az: $(AZ_VENV)/.installed

image: setup
	$(CLI) image build --offline-fallback $(BUILD_FLAGS)

push: setup
	$(CLI) image push --registry "$(REGISTRY)" $(if $(NAMESPACE),--namespace "$(NAMESPACE)") $(if $(REPOSITORY),--repository "$(REPOSITORY)") $(PUSH_FLAGS)

bench: setup
	$(CLI) bench $(BENCH_FLAGS)

demo: setup
	$(CLI) demo up $(DEMO_FLAGS)

demo-down: setup
	$(CLI) demo down

demo-status: setup
	$(CLI) demo status

validate-arm: setup checkov
	$(CLI) azure validate

deploy-infra: setup
	$(CLI) azure deploy $(if $(WHAT_IF),--what-if) $(DEPLOY_FLAGS)

destroy: setup
	$(CLI) azure destroy $(if $(filter yes,$(CONFIRM)),--yes)

register: setup
	$(CLI) register $(if $(DRY_RUN),--dry-run) $(REGISTER_FLAGS)

deploy-all: setup
	$(CLI) deploy-all $(DEPLOY_ALL_FLAGS)

test: setup checkov az
	$(CLI) dev test $(PYTEST_ARGS)

test-fast: setup checkov
	$(CLI) dev test --fast $(PYTEST_ARGS)

lint: setup
	$(CLI) dev lint

lock: setup
	$(CLI) dev lock

clean:
	rm -rf build
