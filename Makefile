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
LINTED := hmm jobs tests benchmarks infra $(wildcard dags)

# The EMR code bundle (infra/bundle.py): `make bundle` builds $(BUNDLE_DIR)/<version>/;
# `make upload ROOT=s3://bucket/prefix` builds it and uploads it to <ROOT>/bundle/<version>/
# (ALLOW_DIRTY=1: a bundle of uncommitted changes, for a development stack).
BUNDLE_DIR ?= dist/bundle

.PHONY: venv test lint demo local-stack bench bundle upload clean

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

# The Airflow DAG end to end on this machine (infra/local/): `make demo` with spark-submit steps and a
# file:// store under ./demo-output; `make local-stack` against a local S3 (moto on 127.0.0.1).
demo: $(STAMP)
	$(BIN)/python -m infra.local.demo

local-stack: $(STAMP)
	$(BIN)/python -m infra.local.stack

bench: $(STAMP)
	$(BIN)/python benchmarks/library.py

bundle: $(STAMP)
	$(BIN)/python infra/bundle.py build --out $(BUNDLE_DIR)

upload: $(STAMP)
	$(BIN)/python infra/bundle.py upload --out $(BUNDLE_DIR) --root "$(ROOT)" $(if $(ALLOW_DIRTY),--allow-dirty)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
