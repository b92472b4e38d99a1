# podium: the commands README.md gives. Every target installs what it needs first.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
KEDRO := $(BIN)/kedro
PIPELINE ?= deepfake
COMPETITIONS := deepfake mask uda monet
PYTEST_ARGS ?=
GRID ?= deepfake_split
SEEDS ?=

# Kedro and kedro-viz telemetry would try the network; matplotlib must not want a screen.
export KEDRO_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1
export MPLBACKEND := Agg

.PHONY: help install sample-data run test lint format viz ui clean-runs ablate reproduce bench-scale bench bench-inference

help:
	@echo "make run          install, write the sample data if absent, kedro run --pipelines=$(PIPELINE)"
	@echo "make test         install, then the test suite"
	@echo "make sample-data  write the embedded sample of any competition whose folder is absent"
	@echo "make viz          kedro-viz on http://127.0.0.1:4141"
	@echo "make ui           MLflow UI on http://127.0.0.1:5000"
	@echo "make ablate       kedro ablate --grid=conf/base/ablations/$(GRID).yml (SEEDS=0,1 to choose seeds)"
	@echo "make reproduce    kedro reproduce --run-id=<id>, as make reproduce RUN_ID=<id>"
	@echo "make bench-scale  peak memory and time per stage at growing sample sizes (PIPELINES=deepfake,uda ...)"
	@echo "make bench        training against the bare model step, face extraction against stock MTCNN (DEVICE=cuda PIPELINES=mask,uda WORKERS=0,2)"
	@echo "make bench-inference  s/video of the deepfake ensemble: decode, detect, model, end to end, on Dask (DEVICE=cuda, BENCH_ARGS=--env=full)"
	@echo "make lint         ruff"

$(BIN)/python:
	@echo "==> creating $(VENV) with $(PYTHON)"
	$(PYTHON) -m venv $(VENV)

# facenet-pytorch 2.6.0 pins torch<2.3 and numpy<2 yet runs on current ones: installed
# without its dependencies, after the project's own.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	@echo "==> installing podium and its dependencies into $(VENV)"
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/pip install --quiet --no-deps facenet-pytorch==2.6.0
	@touch $@

install: $(VENV)/.installed

sample-data: install
	@missing=""; for c in $(COMPETITIONS); do \
	  if [ -z "$$(ls -A data/01_raw/$$c 2>/dev/null)" ]; then missing="$$missing,$$c"; fi; done; \
	if [ -n "$$missing" ]; then \
	  echo "==> writing the embedded sample data for: $${missing#,}"; \
	  $(KEDRO) run --pipelines=sample_data --tags=$${missing#,}; \
	else echo "==> sample data present in data/01_raw/ ($(COMPETITIONS))"; fi

# An unregistered PIPELINE stops at the first line, naming the registered pipelines and the
# closest match, before the sample data is written or anything runs. One command a line:
# `make -n run` then prints them and runs nothing (make runs a line naming $(MAKE) even then).
run: install
	@$(KEDRO) check-pipelines '$(PIPELINE)'
	@$(MAKE) --no-print-directory sample-data
	@echo "==> kedro run --pipelines=$(PIPELINE)"
	@$(KEDRO) run --pipelines='$(PIPELINE)'

test: install
	@echo "==> pytest"
	$(BIN)/pytest $(PYTEST_ARGS)

# Minutes to an hour on 2 cores: each pipeline at several sample sizes, every stage its own
# kedro run; figures go to data/08_reporting/bench/scale.md and .json.
bench-scale: install
	$(BIN)/python benchmarks/scale.py $(if $(PIPELINES),--pipelines=$(PIPELINES)) $(if $(MULTIPLIERS),--multipliers=$(MULTIPLIERS))

# Minutes on 2 cores: each pipeline's training step end to end (its dataset, DataLoader,
# augmentation, precision, loss) against the same model's bare step, num_workers swept;
# figures go to data/08_reporting/bench/<date>-<host>.md and .json and to MLflow (run
# "bench"). DEVICE=cuda on a GPU box; BENCH_ARGS for more flags (--env=full, --repeats=5).
bench: install
	$(BIN)/python benchmarks/bench.py $(if $(DEVICE),--device=$(DEVICE)) $(if $(PIPELINES),--pipelines=$(PIPELINES)) $(if $(WORKERS),--workers=$(WORKERS)) $(BENCH_ARGS)

lint: install
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

format: install
	$(BIN)/ruff format src tests
	$(BIN)/ruff check --fix src tests

viz: install
	$(KEDRO) viz run --host 127.0.0.1 --port 4141 --no-browser

ui: install
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port 5000

ablate: install
	$(KEDRO) ablate --grid=conf/base/ablations/$(GRID).yml $(if $(SEEDS),--seeds=$(SEEDS))

reproduce: install
	@test -n "$(RUN_ID)" || { echo "usage: make reproduce RUN_ID=<mlflow run id>"; exit 2; }
	$(KEDRO) reproduce --run-id=$(RUN_ID)

# Seconds per video of deepfake scoring (the scoring suite of make bench alone): decode,
# detect and model apart, end to end, on a Dask LocalCluster; DEVICE=cuda on a GPU box.
bench-inference: install
	$(BIN)/python benchmarks/bench.py --suites=scoring $(if $(DEVICE),--device=$(DEVICE)) $(BENCH_ARGS)
