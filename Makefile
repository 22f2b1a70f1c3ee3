# Two entry points on a fresh machine: `make demo` (the main job on the synthetic dataset) and
# `make test` (the fast test set, what CI runs). Each creates .venv and installs what it needs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DATASETS ?= datasets
SYNTH := $(DATASETS)/synthetic
DEMO_IMAGES ?= 1000
DEMO_SEED ?= 0

.PHONY: demo test test-all lint install clean-venv

$(STAMP): setup.py pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) tools/make_synthetic_dataset.py --out $(SYNTH) --images $(DEMO_IMAGES) --seed $(DEMO_SEED)
	$(PY) tools/convert_deepfashion2.py --root $(SYNTH) --split train \
		--out $(SYNTH)/annotations/train.json --retrieval-gt $(SYNTH)/retrieval/train
	$(PY) tools/convert_deepfashion2.py --root $(SYNTH) --split validation \
		--out $(SYNTH)/annotations/validation.json --retrieval-gt $(SYNTH)/retrieval/validation
	MATCHRCNN_DATASETS=$(DATASETS) $(PY) tools/train_net.py \
		--config-file configs/synthetic/quickstart.yaml OUTPUT_DIR output/quickstart

lint: $(STAMP)
	$(PY) -m ruff check .

test: lint
	$(PY) -m pytest -m "not slow"

test-all: lint
	$(PY) -m pytest

clean-venv:
	rm -rf $(VENV)
