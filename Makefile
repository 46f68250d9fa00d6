# seqserve: every target sets up its own virtualenv (.venv) first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATA_DIR ?= ../shared/data
MODELS ?= models
DATASET ?= sarcasm
ARCH ?= all
# Empty: each dataset's default (sarcasm 10, imdb 4).
EPOCHS ?=
# Runs per architecture (seeds SEED, SEED+1, ...): the best on validation is published, and the
# report shows the spread. SEED=44 SEEDS=1 adds a third seed to an earlier two-seed run.
SEEDS ?= 3
SEED ?= 42
# `make serve` trains these when the model repository is empty, with few epochs so that a fresh
# clone is serving within minutes; `make train` does the full run.
# Measured (reports/training.md): the seven sarcasm models take ~85 s per epoch together on 2 shared
# cores, each batch padded only to its longest headline, and every published run had its lowest
# validation loss by epoch 2.
SERVE_EPOCHS ?= 2
GRPC_PORT ?= 8500
METRICS_PORT ?= 8502

.PHONY: setup lock protos train report serve test lint bench claims prometheus chromium curl h2load soak clean image image-sizes scale-out bench-peers

setup: $(VENV)/.installed

# Every transitive dependency comes from the lock, then seqserve itself (editable) without resolving again.
$(VENV)/.installed: pyproject.toml requirements.lock
	@echo "==> creating $(VENV) and installing seqserve with the dependencies pinned in requirements.lock"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --progress-bar on --upgrade pip
	$(BIN)/pip install --progress-bar on -r requirements.lock
	$(BIN)/pip install --progress-bar on --no-deps -e .
	touch $@

# Refreshes the locks after a change to pyproject.toml: clean installs into virtualenvs without pip of
# their own, frozen with everything they hold (setuptools and wheel too, when a dependency needs them).
# requirements.lock: '.[train,dev]' (make setup, CI); requirements-runtime.lock: the server alone (the
# image), resolved within requirements.lock so that both pin the same versions. build/ is what
# `pip install .` leaves in the tree.
LOCK_DIR ?= /tmp/seqserve-lock
define freeze_lock
	{ echo "# $(2)"; echo "# Written by \`make lock\` ($$($(PYTHON) -c 'import platform; print("Python", platform.python_version(), platform.machine())')): do not edit."; \
		$(PYTHON) -m pip --python $(LOCK_DIR)/$(1)/bin/python freeze --all --exclude pip --exclude seqserve; } > $(3)
endef
lock:
	rm -rf $(LOCK_DIR)
	$(PYTHON) -m venv --without-pip $(LOCK_DIR)/full
	$(PYTHON) -m pip --python $(LOCK_DIR)/full/bin/python install --quiet '.[train,dev]'
	$(call freeze_lock,full,every dependency of the training and development extras: make setup and CI,requirements.lock)
	$(PYTHON) -m venv --without-pip $(LOCK_DIR)/runtime
	$(PYTHON) -m pip --python $(LOCK_DIR)/runtime/bin/python install --quiet -c requirements.lock .
	$(call freeze_lock,runtime,every dependency of the server alone: the container image,requirements-runtime.lock)
	rm -rf $(LOCK_DIR) build
	@wc -l requirements.lock requirements-runtime.lock

# Regenerates the gRPC/protobuf code in seqserve/v1 from protos/, and TensorFlow Serving's API in
# seqserve/tfs (protos/tfserving_stubs.py): no .proto sources are published for it, so protoc runs on
# the descriptors embedded in the pinned tensorflow-serving-api wheel (pip download, SHA-256 checked)
# and in the installed tensorflow-cpu's *_pb2.py files (read, not imported); the output's imports move
# under seqserve.tfs and its descriptors into a pool of their own, so the server needs no TensorFlow
# and still runs beside one (seqserve/tfs/pool.py).
protos: setup
	$(BIN)/python -m grpc_tools.protoc -Iprotos --python_out=. --pyi_out=. --grpc_python_out=. \
		protos/seqserve/v1/*.proto
	$(BIN)/python protos/tfserving_stubs.py --out seqserve/tfs

train: setup
	$(BIN)/seqserve train --data-dir $(DATA_DIR) --models $(MODELS) --dataset $(DATASET) \
		--arch $(ARCH) --seed $(SEED) --seeds $(SEEDS) $(if $(EPOCHS),--epochs $(EPOCHS))

report: setup
	$(BIN)/seqserve report --models $(MODELS)

serve: setup
	@if ! ls $(MODELS)/*/*/config.pbtxt >/dev/null 2>&1; then \
		echo "==> $(MODELS)/ has no models: training the default sarcasm models ($(SERVE_EPOCHS) epochs)"; \
		$(BIN)/seqserve train --data-dir $(DATA_DIR) --models $(MODELS) --dataset sarcasm \
			--arch all --epochs $(SERVE_EPOCHS); \
		ls $(MODELS)/*/*/config.pbtxt >/dev/null 2>&1 || exit 1; \
	fi
	$(BIN)/seqserve serve --model-repository $(MODELS) --port $(GRPC_PORT) --metrics-port $(METRICS_PORT)

# $(call debian_package,COMMAND,PACKAGE): install PACKAGE unless COMMAND is on PATH.
define debian_package
	@command -v $(1) >/dev/null || { \
		echo "==> installing the $(2) Debian package"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(2); }
endef

# The programs the tests drive: the Prometheus server the metrics tests scrape with, the headless
# browser that loads the compare page, curl against the REST port, and h2load (below).
prometheus:
	$(call debian_package,prometheus,prometheus)

chromium:
	$(call debian_package,chromium,chromium)

curl:
	$(call debian_package,curl,curl)

# The native HTTP/2 load generator of make bench-peers (bench/native_client.py), tested by
# tests/bench/test_native_client.py.
h2load:
	$(call debian_package,h2load,nghttp2-client)

# The suite on TEST_WORKERS pytest-xdist workers: tests/scheduling.py says how it is spread over them.
TEST_WORKERS ?= 2
test: setup prometheus chromium curl h2load
	$(BIN)/pytest -q -n $(TEST_WORKERS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: setup
	$(BIN)/python -m bench.run --models $(MODELS)
	$(BIN)/python -m bench.variable_length --models $(MODELS) --data-dir $(DATA_DIR)
	$(BIN)/python -m bench.request_path --models $(MODELS) --texts $(DATA_DIR)/sarcasm/sarcasm.json
	$(BIN)/python -m bench.tokenizer_speed --models $(MODELS) --data-dir $(DATA_DIR)
	$(BIN)/python -m bench.explain_cost --models $(MODELS) --data-dir $(DATA_DIR)

# The speed claims about the architectures (in-process ONNX Runtime vs TensorFlow, training s/epoch,
# served latency), judged from one fresh run: reports/speed.md and its plots. Then whether word order
# matters more to LSTM/GRU than to Flatten/GAP/Conv1D, from every dataset's test split as written and
# with its words shuffled: reports/word_order.md.
claims: setup
	$(BIN)/python -m bench.claims --models $(MODELS) --dataset $(DATASET) --data-dir $(DATA_DIR)
	$(BIN)/python -m bench.word_order --models $(MODELS) --data-dir $(DATA_DIR)

# The server's container image (Dockerfile): IMAGE_TARGET=runtime (ONNX only) or runtime-tf; the model
# repository MODELS is baked in at /models.
IMAGE ?= seqserve:latest
IMAGE_TARGET ?= runtime
image:
	docker build --target $(IMAGE_TARGET) --build-arg MODELS=$(MODELS) -t $(IMAGE) .

# What each image variant installs: replays the Dockerfile's virtualenv builds here, no Docker needed.
image-sizes: setup
	$(BIN)/python -m deploy.image_venv --target runtime --target runtime-tf --dir /tmp/seqserve-image-venvs

# N servers behind gRPC client-side round_robin on loopback; writes reports/scale_out.md.
scale-out: setup
	$(BIN)/python -m bench.scale_out --models $(MODELS) --servers 1,2

# An hour of mixed load against a real server serving two models (bench/soak.py): Classify, KServe V2
# and TF Serving Predict at concurrency 32, explanations at 1/s beside them; tracemalloc snapshots at
# minutes 10, 30 and 60. Writes reports/soak.md and the RSS curve reports/soak-rss.png; exits 1 on any
# error, any server warning, or RSS growth of 1 % or more over the last 40 minutes. Judged on errors and
# memory only, never on speed, so server and load generator run at nice 19 beside other work.
SOAK_SECONDS ?= 3600
SOAK_NICE ?= 19
soak: setup
	nice -n $(SOAK_NICE) $(BIN)/python -m bench.soak --models $(MODELS) --seconds $(SOAK_SECONDS) \
		--texts $(DATA_DIR)/sarcasm/sarcasm.json

clean:
	rm -rf $(VENV) $(KSERVE_VENV) .pytest_cache .ruff_cache

# seqserve against the no-op floor and KServe's Python ModelServer (fully padded, and padded to each
# request's longest text) on the same ONNX files and the same clients (bench/peers/): parity of every
# server first, then targets judged against the floor of the same round: reports/peers.md. The Python
# clients (tritonclient.grpc.aio, seqserve loadtest) measure every server; h2load (make h2load)
# measures the floor and seqserve. The peer lives in its own virtualenv, kept for reruns.
# PEERS_ROUNDS, PEERS_SECONDS: interleaved rounds and measured seconds per measurement;
# PEERS_ARGS: more flags, e.g. --baseline DIR, or --clients native (h2load alone, no KServe).
KSERVE_VENV := .venv-kserve
PEERS_ROUNDS ?= 3
PEERS_SECONDS ?= 2.5
PEERS_ARGS ?=
$(KSERVE_VENV)/.installed: bench/kserve_peer_requirements.txt
	@echo "==> creating $(KSERVE_VENV) with KServe (the peer of make bench-peers)"
	$(PYTHON) -m venv $(KSERVE_VENV)
	$(KSERVE_VENV)/bin/pip install --progress-bar on -r bench/kserve_peer_requirements.txt
	touch $@

bench-peers: setup h2load $(KSERVE_VENV)/.installed
	$(BIN)/python -m bench.peers --models $(MODELS) --kserve-python $(KSERVE_VENV)/bin/python \
		--texts $(DATA_DIR)/sarcasm/sarcasm.json --rounds $(PEERS_ROUNDS) --duration $(PEERS_SECONDS) \
		$(PEERS_ARGS)
