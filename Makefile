# seqserve: every target sets up its own virtualenv (.venv) first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATA_DIR ?= ../shared/data
MODELS ?= models
DATASET ?= sarcasm
ARCH ?= all
# Empty: each dataset's default (sarcasm 10, imdb 5).
EPOCHS ?=
# `make serve` trains these when the model repository is empty, with few epochs so that a fresh
# clone is serving within minutes; `make train` does the full run.
SERVE_EPOCHS ?= 3
GRPC_PORT ?= 8500
METRICS_PORT ?= 8502

.PHONY: setup protos train report serve test lint bench claims prometheus clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@echo "==> creating $(VENV) and installing seqserve with its pinned dependencies"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --progress-bar on --upgrade pip
	$(BIN)/pip install --progress-bar on -e '.[train,dev]'
	touch $@

# Regenerates the gRPC/protobuf code in seqserve/v1 from protos/.
protos: setup
	$(BIN)/python -m grpc_tools.protoc -Iprotos --python_out=. --pyi_out=. --grpc_python_out=. \
		protos/seqserve/v1/*.proto

train: setup
	$(BIN)/seqserve train --data-dir $(DATA_DIR) --models $(MODELS) --dataset $(DATASET) \
		--arch $(ARCH) $(if $(EPOCHS),--epochs $(EPOCHS))

report: setup
	$(BIN)/seqserve report --models $(MODELS)

serve: setup
	@if ! ls $(MODELS)/*/*/config.pbtxt >/dev/null 2>&1; then \
		echo "==> $(MODELS)/ has no models: training the default sarcasm models ($(SERVE_EPOCHS) epochs)"; \
		$(BIN)/seqserve train --data-dir $(DATA_DIR) --models $(MODELS) --dataset sarcasm \
			--arch all --epochs $(SERVE_EPOCHS) || exit 1; \
	fi
	$(BIN)/seqserve serve --model-repository $(MODELS) --port $(GRPC_PORT) --metrics-port $(METRICS_PORT)

# The Prometheus server (Debian package) that the metrics tests scrape with.
prometheus:
	@command -v prometheus >/dev/null || { \
		echo "==> installing the prometheus Debian package"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; }

test: setup prometheus
	$(BIN)/pytest -q

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: setup
	$(BIN)/python -m bench.run --models $(MODELS)

# The serving benchmark's targets (transport ceiling, batching gain, overhead over in-process) as a
# pass/fail gate: the same run as `make bench`, exiting non-zero when a target fails.
claims: setup
	$(BIN)/python -m bench.run --models $(MODELS) --check

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
