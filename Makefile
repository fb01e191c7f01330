# Every target creates or reuses the virtual environment itself.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The second environment: an EMR 7 node (Spark 3.5), made as infra/emr/bootstrap.sh makes one --
# the wheel's `emr` extra under constraints.txt -- with pyspark standing in for EMR's Spark and
# the test tools added. constraints-spark35.txt holds the pins that differ from constraints.txt.
VENV35 ?= .venv-spark35
BIN35 := $(VENV35)/bin
STAMP35 := $(VENV35)/.installed
# What runs on both Spark versions: the tests marked `spark` (the DataFrame E-step and fit, the
# Spark engine of the training sources, spark-submit of each job).
SPARK_TESTS := tests/distributed tests/jobs

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

.PHONY: venv spark35-venv test test-spark35 lint demo demo-scheduler local-stack bench bundle upload clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[all,test]'
	touch $(STAMP)

venv: $(STAMP)

# constraints.txt without the names constraints-spark35.txt pins, then those pins.
$(STAMP35): pyproject.toml constraints.txt constraints-spark35.txt
	test -x $(BIN35)/python || $(PYTHON) -m venv $(VENV35)
	$(BIN35)/python -m pip install --quiet --upgrade pip
	awk -F'==' 'NR == FNR { if (NF == 2) pinned[tolower($$1)] = 1; next } !(tolower($$1) in pinned)' \
		constraints-spark35.txt constraints.txt | cat - constraints-spark35.txt > $(VENV35)/constraints.txt
	$(BIN35)/python -m pip install --quiet -c $(VENV35)/constraints.txt -e '.[emr,test]' pyspark
	touch $(STAMP35)

spark35-venv: $(STAMP35)

lint: $(STAMP)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/mypy hmm
	$(BIN)/cfn-lint infra/cloudformation/*.yaml

# Lint, the whole suite on Spark 4 (.venv), then the Spark tests again on Spark 3.5 (.venv-spark35).
test: lint
	$(BIN)/python -m pytest -q
	$(MAKE) test-spark35

test-spark35: $(STAMP35)
	@$(BIN35)/python -c 'import pyspark; print("Spark tests on pyspark", pyspark.__version__)'
	PYSPARK_PYTHON=$(abspath $(BIN35)/python) $(BIN35)/python -m pytest -q -m spark $(SPARK_TESTS) \
		-W 'ignore:distutils Version classes are deprecated:DeprecationWarning'

# The Airflow DAG end to end on this machine (infra/local/): `make demo` with spark-submit steps and a
# file:// store under ./demo-output; `make local-stack` against a local S3 (moto on 127.0.0.1).
demo: $(STAMP)
	$(BIN)/python -m infra.local.demo

# The same demo under the real Airflow components (scheduler with LocalExecutor, DAG processor,
# API server on 127.0.0.1, triggerer; infra/local/airflow_services.py), driven through the REST API.
# SQLite as a single machine needs it: a lock timeout in the URL (?timeout=60) and WAL journaling.
demo-scheduler: $(STAMP)
	$(BIN)/python -m infra.local.demo --scheduler

local-stack: $(STAMP)
	$(BIN)/python -m infra.local.stack

bench: $(STAMP)
	$(BIN)/python benchmarks/library.py

bundle: $(STAMP)
	$(BIN)/python infra/bundle.py build --out $(BUNDLE_DIR)

upload: $(STAMP)
	$(BIN)/python infra/bundle.py upload --out $(BUNDLE_DIR) --root "$(ROOT)" $(if $(ALLOW_DIRTY),--allow-dirty)

clean:
	rm -rf $(VENV) $(VENV35) .pytest_cache .mypy_cache .ruff_cache
