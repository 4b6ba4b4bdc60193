# TinyBeauty toolkit. README commands: `make demo`, `make test`.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
WORK ?= work
STYLE ?= glamorous
PROFILE ?= demo
BACKEND ?= tiny-ddpm
COUNT ?= $(if $(filter paper,$(PROFILE)),4000,300)
STYLE_NAME := $(basename $(notdir $(STYLE)))
OUT := $(WORK)/$(STYLE_NAME)
TB := $(BIN)/tinybeauty

.PHONY: setup demo test bench seeds teacher amplify student export android-assets web web-assets clean help

help:
	@echo "make demo | make test | make setup | make bench"
	@echo "make seeds teacher amplify student export [WORK=work STYLE=natural PROFILE=demo]"

# Torch first (the pinned pair installs from local disk), then the project with constraints so nothing
# replaces it. The stamp depends on pyproject.toml, so a dependency change reinstalls.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt torch torchvision
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

test: setup
	$(BIN)/python -m pytest -q tests

# Latency table first (one run, every figure with its thread count): the demo export of STYLE when there is
# one, else the default student exported untrained. Then the pytest-benchmark suite (render, teacher, ...).
BENCH_EXPORT := $(if $(wildcard $(OUT)/export/report.json),--export $(OUT)/export,)

bench: setup
	mkdir -p $(WORK)
	$(TB) bench $(BENCH_EXPORT) --json $(WORK)/bench_latency.json
	$(BIN)/python -m pytest -q benchmarks --benchmark-enable --benchmark-only \
		--benchmark-json=$(WORK)/bench.json

seeds: setup
	$(TB) synth-faces --out $(WORK)/faces --count 24 --seed 0 --size 256
	$(TB) render --faces $(WORK)/faces --style $(STYLE) --out $(OUT)/seeds --count 5 --pick tones

demo: setup
	$(TB) demo --work $(WORK) --style $(STYLE) --profile $(PROFILE)

teacher: seeds
	$(TB) teacher train --seeds $(OUT)/seeds --out $(OUT)/teacher --backend $(BACKEND) --profile $(PROFILE)

amplify: setup
	$(TB) amplify --teacher $(OUT)/teacher --faces synthetic --count $(COUNT) --out $(OUT)/pairs --profile $(PROFILE)

student: setup
	$(TB) student train --pairs $(OUT)/pairs --out $(OUT)/student --profile $(PROFILE)

export: setup
	$(TB) export --checkpoint $(OUT)/student/tinybeauty_final.pt --out $(OUT)/export --calib $(OUT)/pairs --profile $(PROFILE)

android-assets: export
	mkdir -p android_demo/app/src/main/assets
	cp $(OUT)/export/tinybeauty.tflite android_demo/app/src/main/assets/tinybeauty.tflite
	cp $(OUT)/export/model_card.json android_demo/app/src/main/assets/model_card.json

# The browser demo (web_demo/README.md): the model and card from the export folder, the face-landmarker
# bundle assembled from the mediapipe wheel, the sample photo; then served cross-origin isolated.
# WEB_HOST=0.0.0.0 for a phone on this network (it needs https or adb reverse: see the README).
WEB_HOST ?= 127.0.0.1
WEB_PORT ?= 8765
WEB_FLAGS ?=

web-assets: setup
	cd web_demo && { [ node_modules/.package-lock.json -nt package-lock.json ] || npm ci --no-audit --no-fund; }
	$(BIN)/python web_demo/tools/build_assets.py --export $(OUT)/export --out web_demo/assets

web: web-assets
	$(BIN)/python web_demo/serve.py --host $(WEB_HOST) --port $(WEB_PORT) $(WEB_FLAGS)

clean:
	rm -rf $(WORK)
