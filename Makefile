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
	# a gallery belongs to the weights that built it: the retrained model starts a new one
	rm -rf output/quickstart/gallery
	MATCHRCNN_DATASETS=$(DATASETS) $(PY) tools/build_gallery.py \
		--config-file configs/synthetic/quickstart.yaml \
		--weights output/quickstart/model_final.pth --images synthetic_validation \
		--out output/quickstart/gallery --min-score 0.3
	$(PY) tools/query_gallery.py --config-file configs/synthetic/quickstart.yaml \
		--weights output/quickstart/model_final.pth --gallery output/quickstart/gallery \
		--image $(SYNTH)/validation/image/000001.jpg --min-score 0.1 --max-items 3 --topk 10 \
		--out output/quickstart/query
	@echo "Search the gallery in a browser (http://127.0.0.1:8000, this machine only):"
	@echo "$(PY) tools/serve_gallery.py --config-file configs/synthetic/quickstart.yaml --weights output/quickstart/model_final.pth --gallery output/quickstart/gallery"

lint: $(STAMP)
	$(PY) -m ruff check .

test: lint
	$(PY) -m pytest -m "not slow"

test-all: lint
	$(PY) -m pytest

clean-venv:
	rm -rf $(VENV)
