# The two commands: `make run` (the default study, end to end) and `make test` (the suite).
# Both bootstrap what they need: a .venv with the pinned packages and the dataset.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
STUDY ?= studies/quickstart.yaml

.PHONY: run test check lint bench data install docs clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, at the version constraints.txt pins: the CPU build comes from local disk on
	# our machines (an unpinned torch would pull a multi-GB CUDA build).
	$(BIN)/pip install -q -c constraints.txt torch
	# Every extra: the suite runs a study and a search on a local Ray instance, the audit's
	# label search, the web server, the ONNX export and the trackers (TensorBoard, MLflow).
	$(BIN)/pip install -q -c constraints.txt -e '.[dev,ray,audit,serve,export,track]'
	touch $(STAMP)

install: $(STAMP)

# The Debian package is the dataset's source on machines without internet; elsewhere the
# loader falls back to the cache or a verified download.
data: $(STAMP)
	@if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null 2>&1 \
	    && [ "$$(id -u)" = 0 ]; then \
	  apt-get install -y -q dataset-fashion-mnist >/dev/null || apt-get update -q >/dev/null && \
	  apt-get install -y -q dataset-fashion-mnist >/dev/null; fi
	$(BIN)/fashionlab data fetch

run: data
	$(BIN)/fashionlab data info
	$(BIN)/fashionlab study $(STUDY)

# Two pytest-xdist workers: many of the slowest tests wait on other processes (torchrun
# nodes, Ray), and the other worker uses that time; the Ray tests share one worker.
TEST_WORKERS ?= 2

test: data
	$(BIN)/ruff check src tests benchmarks examples docs
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup

# The documentation site (site/): reference pages generated from the code, then MkDocs with
# --strict, so a broken link, a page missing from the nav or a bad docstring reference fails.
# MkDocs lives in its own venv: its packages never share an environment with the lab's.
DOCS_VENV := .venv-docs
DOCS_STAMP := $(DOCS_VENV)/.installed

$(DOCS_STAMP): constraints.txt
	$(PYTHON) -m venv $(DOCS_VENV)
	$(DOCS_VENV)/bin/pip install -q -c constraints.txt mkdocs mkdocs-material mkdocstrings-python
	touch $(DOCS_STAMP)

docs: $(STAMP) $(DOCS_STAMP)
	$(BIN)/python docs/gen_reference.py
	NO_MKDOCS_2_WARNING=1 $(DOCS_VENV)/bin/mkdocs build --strict --quiet
	@echo "the site is in site/ (open site/index.html)"

# The inner loop: lint plus every test not marked slow (multi-process, cluster, notebook,
# browser and whole-study tests are), in about two minutes on 2 cores. CI runs `make test`.
check: data
	$(BIN)/ruff check src tests benchmarks examples docs
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup -m "not slow"

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples docs

clean:
	rm -rf $(VENV) $(DOCS_VENV) site docs/reference build *.egg-info .pytest_cache
