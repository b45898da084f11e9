# Two entry points for a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch first, pinned: the CPU wheel is served locally, while an unpinned resolve
# would pull gigabytes of CUDA libraries.
TORCH_SPEC ?= torch==2.13.0

# Where `make docs` writes the site: git-ignored, and outside docs/.
SITE_DIR ?= build/site

.PHONY: demo test lint docs bench-quality clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.torch: | $(BIN)/python
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	touch $@

# The product alone (what `make demo` needs), and the product with the test extras.
$(VENV)/.app: pyproject.toml $(VENV)/.torch
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed: pyproject.toml $(VENV)/.torch
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

$(VENV)/.bench: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install --quiet -e ".[test,bench]"
	touch $@

# Installs no test extras. The commands it prints at the end work as printed.
demo: $(VENV)/.app
	$(BIN)/vae-anomaly demo

# The static checks, the docs, then the tests; the first failure stops the run.
# pytest exits 5 when it collected no test: that fails too, with a message saying so.
# The tests run in PYTEST_WORKERS processes, each test file whole in one of them (its
# module fixtures shared): most of the suite waits on servers and subprocesses, so two
# processes finish it in about 60% of the time on two cores. The slowest tests are listed
# at the end. PYTEST_WORKERS=0 runs it in this process.
PYTEST_WORKERS ?= 2
test: lint docs
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile --durations=20 || { status=$$?; \
	  if [ $$status -eq 5 ]; then echo "pytest collected no tests" >&2; fi; exit $$status; }

# Lint with a complexity bound, formatting, types of vae_core (settings in pyproject.toml's
# [tool.ruff] and [tool.mypy]) and the import contracts ([tool.importlinter]: vae_core
# imports no flows, Prefect or MLflow; the flows subpackages are layered).
lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# Strict: a broken link, a page missing from the nav or a warning fails the build. The
# variable silences the theme's notice about its successor, which is no warning.
docs: $(VENV)/.installed
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir $(SITE_DIR)

# Detection quality against the anchors, with the shared evaluation harnesses beside the
# repository (../shared); each run appends to benchmarks/results/ and resumes if stopped.
SHARED ?= ../shared
bench-quality: $(VENV)/.bench
	$(BIN)/python $(SHARED)/eval/bench_tabular.py $(SHARED)/datasets/adbench benchmarks/results/adbench.jsonl project iforest ecod pyod_vae pyod_ae
	$(BIN)/python $(SHARED)/eval/bench_tabular.py $(SHARED)/datasets/adbench-small benchmarks/results/adbench_small.jsonl project iforest ecod pyod_vae pyod_ae
	$(BIN)/python $(SHARED)/eval/bench_mixed.py $(SHARED)/datasets/nslkdd/kddtest_plus.parquet benchmarks/results/nslkdd.jsonl project iforest ecod
	$(BIN)/python benchmarks/summarize_quality.py benchmarks/results/*.jsonl

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .import_linter_cache $(SITE_DIR) demo_output
