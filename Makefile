# Every target creates or reuses the virtual environment itself.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Single-threaded BLAS and numba, so tests and benchmarks measure our kernels,
# not the thread pool.
export OMP_NUM_THREADS ?= 1
export OPENBLAS_NUM_THREADS ?= 1
export MKL_NUM_THREADS ?= 1
export NUMBA_NUM_THREADS ?= 1
# Local Spark stays on loopback and runs workers with the project's python.
export SPARK_LOCAL_IP ?= 127.0.0.1
export PYSPARK_PYTHON ?= $(abspath $(BIN)/python)

# Python code that ruff checks (dags/ once it exists).
LINTED := hmm jobs tests benchmarks $(wildcard dags)

.PHONY: venv test lint demo bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[all,test]'
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/mypy hmm
	$(BIN)/cfn-lint infra/cloudformation/*.yaml

test: lint
	$(BIN)/python -m pytest -q

demo: $(STAMP)
	$(BIN)/python -m hmm.demo

bench: $(STAMP)
	$(BIN)/python benchmarks/library.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
