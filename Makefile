# Two entry points for a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch first, pinned: the CPU wheel is served locally, while an unpinned resolve
# would pull gigabytes of CUDA libraries.
TORCH_SPEC ?= torch==2.13.0

.PHONY: demo test lint bench-quality clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.torch: | $(BIN)/python
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	touch $@

$(VENV)/.installed: pyproject.toml $(VENV)/.torch
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

$(VENV)/.bench: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install --quiet -e ".[test,bench]"
	touch $@

demo: $(VENV)/.installed
	$(BIN)/vae-anomaly demo

test: $(VENV)/.installed
	$(BIN)/python -m pytest

lint: $(VENV)/.installed
	$(BIN)/ruff check vae_core flows tests benchmarks

# Detection quality against the anchors, with the shared evaluation harnesses beside the
# repository (../shared); each run appends to benchmarks/results/ and resumes if stopped.
SHARED ?= ../shared
bench-quality: $(VENV)/.bench
	$(BIN)/python $(SHARED)/eval/bench_tabular.py $(SHARED)/datasets/adbench benchmarks/results/adbench.jsonl project iforest ecod pyod_vae pyod_ae
	$(BIN)/python $(SHARED)/eval/bench_tabular.py $(SHARED)/datasets/adbench-small benchmarks/results/adbench_small.jsonl project iforest ecod pyod_vae pyod_ae
	$(BIN)/python $(SHARED)/eval/bench_mixed.py $(SHARED)/datasets/nslkdd/kddtest_plus.parquet benchmarks/results/nslkdd.jsonl project iforest ecod
	$(BIN)/python benchmarks/summarize_quality.py benchmarks/results/*.jsonl

clean:
	rm -rf $(VENV) .pytest_cache demo_output
