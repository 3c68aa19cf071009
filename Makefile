# protloc: `make help` lists the targets. Everything runs from a local .venv that `make install`
# creates from nothing (the other targets call it).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch and torchvision are pinned here (not in pyproject) so the versions that match this
# machine's local wheels are used; override on another machine, e.g. TORCH_PIN="torch torchvision".
TORCH_PIN ?= torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.installed
AZURITE_VERSION ?= 3.35.0

.DEFAULT_GOAL := help
DEMO_ROOT ?= runs/local
# Every kustomization a user applies (make validate renders and checks each).
K8S_OVERLAYS := base overlays/standalone
# Every combination of compose files a user runs: on the CPU, with the GPUs, the e2e stand-in.
COMPOSE_SETS := "" "-f containers/compose.gpu.yaml" "-f containers/e2e/compose.e2e.yaml" \
	"-f containers/compose.gpu.yaml -f containers/e2e/compose.e2e.yaml"

.PHONY: help install test test-fast lint components docs validate check-install demo thresholds compile bench gpu-check images push demo-docker e2e-docker clean

help: ## list the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-14s %s\n", $$1, $$2}'

install: $(STAMP) ## create .venv and install protloc with torch and the dev tools

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(TORCH_PIN)
	$(BIN)/python -m pip install --quiet -e '.[torch,dev]'
	touch $(STAMP)

# Azurite, Azure Blob's emulator (from npm: the tests need Node.js), for the storage tests.
AZURITE := $(VENV)/azurite/node_modules/.bin/azurite-blob
$(AZURITE): $(STAMP)
	npm install --silent --no-audit --no-fund --prefix $(VENV)/azurite azurite@$(AZURITE_VERSION)
	touch $(AZURITE)

test: install $(AZURITE) ## run the whole test suite (7 to 10 minutes on the 2-vCPU development VM)
	$(BIN)/python -m pytest -q

test-fast: install $(AZURITE) ## the inner loop: every module, the slow tests left out (about 2.5 minutes)
	$(BIN)/python -m pytest -q -m "not slow"

lint: install ## ruff, and the generated files fresh
	$(BIN)/ruff check .
	$(BIN)/python -m tools.generate --check

components: install ## write components/<step>.py from the step configs (never edit them by hand)
	$(BIN)/python -m tools.generate components

docs: install ## write docs/parameters.md from the step configs
	$(BIN)/python -m tools.generate docs

validate: install ## render and check what runs outside Python: compose file, k8s manifests, pipeline YAML
	for extra in $(COMPOSE_SETS); do \
		docker-compose -f containers/compose.yaml $$extra --env-file containers/.env.example config -q && \
		echo "compose: containers/compose.yaml $$extra: valid" || exit 1; \
	done
	mkdir -p build
	for overlay in $(K8S_OVERLAYS); do \
		kubectl kustomize k8s/$$overlay > build/k8s-$$(basename $$overlay).yaml && \
		$(BIN)/kubernetes-validate --strict --quiet build/k8s-$$(basename $$overlay).yaml && \
		echo "k8s/$$overlay: $$(grep -c '^kind:' build/k8s-$$(basename $$overlay).yaml) objects valid" || exit 1; \
	done
	$(BIN)/python pipeline.py compile -o build/pipeline.yaml
	@echo "compose files, every k8s overlay and the pipeline YAML are valid"

check-install: ## a fresh venv with a plain `pip install .` runs compile, submit and (with torch) a tiny local
	$(PYTHON) -m tools.check_install --torch "$(TORCH_PIN)"

demo: install ## the whole pipeline on synthetic HPA data through kfp.local, then a summary
	$(BIN)/python pipeline.py local --root $(DEMO_ROOT)

thresholds: install ## rerun the demo with ALPHA=A and/or METHOD=M: only fingerprint, thresholds, submit and bundle execute
	@test -n "$(ALPHA)$(METHOD)" || { echo "make thresholds needs ALPHA=A and/or METHOD=M (e.g. ALPHA=0.3, METHOD=auto)"; exit 2; }
	$(BIN)/python pipeline.py local --root $(DEMO_ROOT) $(if $(ALPHA),--alpha $(ALPHA)) $(if $(METHOD),--method $(METHOD))

compile: install ## write pipeline.yaml for a cluster (the paper's Table 1 schedule)
	$(BIN)/python pipeline.py compile -o pipeline.yaml

bench: install ## every performance case against its yardstick, one table (about 3.5 min on 2 cores)
	$(BIN)/python -m bench.speed.run --demo-root $(DEMO_ROOT) --json build/bench.json

gpu-check: install ## on a GPU machine, under 10 min: img/s per architecture at 512 px (fp32, bf16), max batch, loader idle, a 2-cycle run
	bash tools/gpu_check.sh

images: ## build the cpu and gpu images from this tree, tagged with the code version (needs Docker, not the venv)
	bash containers/build.sh

push: ## build and push both images: make push REGISTRY=registry.example.org/team (then compile|submit --image-registry)
	@test -n "$(REGISTRY)" || { echo "make push needs REGISTRY=... (e.g. REGISTRY=ghcr.io/myorg)"; exit 2; }
	REGISTRY=$(REGISTRY) PUSH=1 bash containers/build.sh

demo-docker: images ## opt-in: make demo with each step in its container (kfp.local's DockerRunner)
	$(BIN)/python pipeline.py local --runner docker --root $(DEMO_ROOT)-docker

e2e-docker: install ## opt-in: build the images and run the compose flow for real (needs Docker)
	bash containers/e2e/run.sh

clean: ## remove caches and local outputs (keeps .venv)
	rm -rf .pytest_cache .ruff_cache build *.egg-info runs
