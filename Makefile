# thrifty — the two promises: `make run` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: run test test-all bench bench-short lint venv clean

venv: $(STAMP)

# torch is pinned and installed first: the CPU build of 2.13.0 is on these machines, and an unpinned
# torch (pulled in by sentence-transformers) would fetch gigabytes of CUDA packages.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/thrifty serve --host 127.0.0.1 --port 8080

test: $(STAMP)
	$(BIN)/python -m pytest tests -q -m "not slow" -p no:cacheprovider

test-all: $(STAMP)
	$(BIN)/python -m pytest tests -q -p no:cacheprovider

bench: $(STAMP)
	$(BIN)/python -m pytest bench -q -p no:cacheprovider --benchmark-only --benchmark-disable-gc --benchmark-json=results/bench.json

bench-short: $(STAMP)
	THRIFTY_BENCH_SHORT=1 $(BIN)/python -m pytest bench -q -p no:cacheprovider --benchmark-only --benchmark-disable-gc

lint: $(STAMP)
	$(BIN)/ruff check engine cache router models bench tests
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
