# The front door. Targets stay thin: the logic lives in Python (image_builder/) and scripts/.
VENV      ?= .venv
PY        := $(VENV)/bin/python
BIN       := $(VENV)/bin
BUILD_FLAGS ?=
PYTEST_ARGS ?=
UV_COMPILE := $(BIN)/uv pip compile --quiet --no-config --index-url https://pypi.org/simple \
	--universal --python-version 3.11 --generate-hashes --custom-compile-command "make lock"

.PHONY: help setup engine image demo demo-down push bench validate-arm deploy-infra destroy register deploy-all test lint lock clean

help:
	@echo "make demo    the whole thing on this machine, no Azure: registry, Azurite, Prefect server, Docker worker, demo run"
	@echo "make demo-down   remove what make demo started"
	@echo "make image   build the image (offline Debian base when nothing can be pulled)"
	@echo "make push REGISTRY=host[:port] [REPOSITORY=name]   push all tags, record the digest"
	@echo "make bench   our image vs the usual recipe: size, build, start, push (build/bench.json)"
	@echo "make validate-arm   the ARM template: Azure's schemas, checkov, structure (offline)"
	@echo "make deploy-infra [WHAT_IF=1]   deploy the ARM template (settings from .env), outputs to build/azure.json"
	@echo "make destroy CONFIRM=yes        delete the resource group"
	@echo "make register [DRY_RUN=1]       Prefect side: credentials block, ACI work pool, storage, variable"
	@echo "make deploy-all  all of the Azure side in order: infra, push, worker, register, demo deployment"
	@echo "make test    run the whole test suite (starts a Docker engine if needed)"
	@echo "make lint    ruff, hadolint, shellcheck, actionlint"
	@echo "make lock    re-resolve docker/requirements.lock and requirements-dev.lock"

$(VENV)/.installed: pyproject.toml requirements-dev.lock requirements-checkov.lock
	scripts/bootstrap.sh

setup: $(VENV)/.installed

engine:
	scripts/ensure-packages.sh
	scripts/ensure-docker.sh

image: setup engine
	$(PY) -m image_builder build --offline-fallback $(BUILD_FLAGS)

demo: image
	$(PY) -m local_demo up

demo-down: setup engine
	$(PY) -m local_demo down

push: setup engine
	$(PY) -m image_builder push --registry "$(REGISTRY)" $(if $(REPOSITORY),--repository "$(REPOSITORY)") $(PUSH_FLAGS)

bench: setup engine
	$(PY) -m image_builder bench $(BENCH_FLAGS)

CHECKOV := .venv-checkov/bin/checkov --framework arm --skip-download --compact --quiet \
	--external-checks-dir arm/checkov_checks

validate-arm: setup
	$(PY) -m arm validate
	$(CHECKOV) -f arm/azuredeploy.json
	$(PY) -m pytest -q tests/arm

deploy-infra: setup
	$(PY) -m arm deploy $(if $(WHAT_IF),--what-if) $(DEPLOY_FLAGS)

destroy: setup
	$(PY) -m arm destroy $(if $(filter yes,$(CONFIRM)),--yes)

register: setup
	$(PY) -m blocks register $(if $(DRY_RUN),--dry-run) $(REGISTER_FLAGS)

# Settings are checked before the image is built: without them it stops at once (and names make demo).
deploy-all: setup
	$(PY) -m deploy_all check
	$(MAKE) --no-print-directory image
	$(PY) -m deploy_all run

test: setup engine
	$(PY) -m pytest $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/hadolint docker/Dockerfile bench/Dockerfile
	$(BIN)/shellcheck docker/entrypoint.sh scripts/*.sh .ci/run
	$(BIN)/actionlint .github/workflows/*.yml

lock: setup
	$(UV_COMPILE) docker/requirements.in -o docker/requirements.lock
	$(UV_COMPILE) docker/build-tools.in -o docker/build-tools.lock
	$(UV_COMPILE) --extra dev pyproject.toml -o requirements-dev.lock
	$(UV_COMPILE) requirements-checkov.in -o requirements-checkov.lock

clean:
	rm -rf build
