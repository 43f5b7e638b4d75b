# Thin wrappers around the package; every target creates or reuses the virtual environment first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.covidgan-installed
RUN_DIR ?= runs/demo
DATA_DIR ?=

.PHONY: setup demo test lab figures paper paper-smoke smoke notebooks check-notebooks studies sweeps real-results lint clean-runs

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

## demo: the whole study on the built-in phantoms with the demo profile (7-9 min on 2 AVX-512 cores, more on older ones; measured)
demo: setup
	$(PY) -m covidgan_utils run --profile demo --run-dir $(RUN_DIR) --resume $(if $(DATA_DIR),--data-dir $(DATA_DIR))

## smoke: every notebook on a tiny configuration (a few minutes)
smoke: setup
	$(PY) -m covidgan_utils run --profile smoke --run-dir runs/smoke --overwrite

## test: unit tests and nbval notebook tests (smoke profile)
test: setup
	$(PY) -m pytest

## lab: JupyterLab in the project's environment, for the interactive walkthrough
lab: setup
	$(VENV)/bin/jupyter lab notebooks/

## figures: regenerate the report figures from a finished run into figures/
figures: setup
	$(PY) -m covidgan_utils figures --run-dir $(RUN_DIR) --out figures

## paper: the report's settings on the real dataset (a GPU is strongly advised): make paper DATA_DIR=/path/to/data
paper: setup
	@test -n "$(DATA_DIR)" || (echo "Usage: make paper DATA_DIR=/path/to/COVID-19_Radiography_Dataset" && exit 2)
	$(PY) -m covidgan_utils run --profile paper --data-dir $(DATA_DIR) --run-dir runs/paper --resume

## paper-smoke: the paper's settings (128 px, full-width GANs, the report's batch sizes) for 2 epochs on 128 px phantoms,
## VGG16 from a local file (VGG16_FILE=path; without one a random-init file is written to data/ and said so)
VGG16_FILE ?=
paper-smoke: setup
	$(PY) -m covidgan_utils run --profile paper-smoke --run-dir runs/paper-smoke --overwrite \
		-p vgg_weights $(if $(VGG16_FILE),$(VGG16_FILE),$$($(PY) -m covidgan_utils vgg16-file data/vgg16-random-init.pth))
	$(PY) -m benchmarks.investigations.paper_time runs/paper-smoke

## studies: notebook 07's two studies, then notebook 07 itself on the demo run, published with the others: study 1
## (a planted shortcut; its own small GANs, SHORTCUT_SCALE=cpu|demo) and study 2 (VGG16's last blocks trained on the
## demo run's images, 0 up to TRAINABLE_BLOCKS; 2 wants a GPU). About 20 min on 2 CPU cores; finished parts are
## read back. The GAN-option runs and the sweeps that notebook 07 also reads are `make sweeps`.
SHORTCUT_SCALE ?= cpu
TRAINABLE_BLOCKS ?= 1
studies: demo
	$(PY) -m covidgan_utils.shortcut --scale $(SHORTCUT_SCALE)
	$(PY) -m covidgan_utils.finetune $(RUN_DIR) --blocks $$(seq -s, 0 $(TRAINABLE_BLOCKS)) --seeds 0 --epochs 3
	$(PY) -m covidgan_utils run --profile demo --run-dir $(RUN_DIR) --resume --again --notebooks 07 \
		-p shortcut_scale $(SHORTCUT_SCALE) -p trainable_blocks $(TRAINABLE_BLOCKS)
	$(PY) -m covidgan_utils publish --run-dir $(RUN_DIR) --notebooks 07
	$(PY) -m covidgan_utils readme --run-dir $(RUN_DIR)

## sweeps: what notebook 07 compares besides the studies (about 2 h on 2 CPU cores): two GAN-option runs (DiffAugment,
## ACGAN; the demo's epochs) and two sweeps (training-set size, seed); rerun `make studies` afterwards to read them
sweeps: demo
	$(PY) -m covidgan_utils run --profile demo --run-dir runs/compare-diffaug --resume -p diffaugment color,translation,cutout
	$(PY) -m covidgan_utils run --profile demo --run-dir runs/compare-acgan --resume -p variant acgan
	$(PY) -m covidgan_utils sweep demo-train-size --grid train_fraction=0.25,0.5,1 --notebooks 01,03,04,05
	$(PY) -m covidgan_utils sweep demo-seeds --grid seed=0,1,2 --notebooks 01,03,04,05

## notebooks: rerun the demo from scratch with its defaults, then commit-ready notebooks (outputs of that run), figures/
## and the README's results section
notebooks: setup
	$(PY) -m covidgan_utils run --profile demo --run-dir $(RUN_DIR) --overwrite
	$(PY) -m covidgan_utils publish --run-dir $(RUN_DIR)
	$(PY) -m covidgan_utils figures --run-dir $(RUN_DIR) --out figures
	$(PY) -m covidgan_utils readme --run-dir $(RUN_DIR)

## real-results: the demo profile on real X-rays (the Kaggle database or the shared sample; never in the repository),
## then the README's real-data section from that run (numbers only: its images and notebooks stay in REAL_RUN_DIR)
REAL_RUN_DIR ?= runs/real-demo
real-results: setup
	@test -n "$(DATA_DIR)" || (echo "Usage: make real-results DATA_DIR=/path/to/COVID-19_Radiography_Dataset" && exit 2)
	$(PY) -m covidgan_utils run --profile demo --data-dir $(DATA_DIR) --run-dir $(REAL_RUN_DIR) --overwrite
	$(PY) -m covidgan_utils readme --run-dir $(REAL_RUN_DIR) --section real

## check-notebooks: after make notebooks, compare notebooks/ with the committed ones (timings masked)
check-notebooks: setup
	$(PY) -m covidgan_utils publish --compare HEAD

lint: setup
	$(VENV)/bin/ruff check covidgan_utils tests benchmarks
