"""Hostile data: every bad value, type, size or file listing is refused before any work, with a
ValueError naming the file, the row id (or sequence) and position and the rule (exit 2 from the
CLI); no file is read twice, no symlink loop is followed, no model too large for memory is
allocated."""

from __future__ import annotations

import json
import os
import re
import socket
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import hmm
from hmm.core import kernels
from hmm.core.base import ModelTooLargeError, check_model_size
from hmm.core.limits import MAX_MODEL_BYTES_ENV
from hmm.core.sequences import InvalidSequenceError
from hmm.distributed.sources import ParquetSequences
from hmm.training import cli, steps
from hmm.training.report import build_report
from hmm.training.spec import TrainingSpec
from tests.conftest import write_categorical_parquet

L = pa.list_
DOUBLES = L(L(pa.float64()))


def write(path: Path, column: pa.Array, first_id: int = 10) -> Path:
    """One Parquet file: ``id`` from ``first_id`` and the ``sequence`` column."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ids = pa.array(range(first_id, first_id + len(column)), pa.int64())
    pq.write_table(pa.table({"id": ids, "sequence": column}), path)
    return path


def spec_for(data: Path | str, model: str = "categorical", **fields: Any) -> TrainingSpec:
    uri = data if isinstance(data, str) else f"file://{data}"
    return TrainingSpec.from_dict({"model": model, "n_components": 2, "data": uri, "id_col": "id", **fields})


def invalid(spec: TrainingSpec, pattern: str, engine: str = "local", spark: Any = None) -> str:
    """validate_data refuses the data; the message names the data and matches ``pattern``."""
    with pytest.raises(InvalidSequenceError) as caught:
        steps.validate_data(spec, engine, spark)
    message = str(caught.value)
    assert message.startswith(f"data {spec.data} is invalid: ") or message.startswith("data URI "), message
    assert re.search(pattern, message), message
    return message


def validate_cli(spec: TrainingSpec, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(["validate", "--engine", "local", "--spec", json.dumps(json.loads(spec.to_json()))])
    out, err = capsys.readouterr()
    return code, out, err


# ------------------------------------------------------------------ regression (issue 10, class 4)


def loop_data(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    write_categorical_parquet(str(data / "loop"), n_sequences=200)
    os.symlink(".", data / "loop" / "self")
    return data


def test_a_symlink_loop_in_the_data_folder_is_not_followed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``ln -s . data/loop/self``: the old listing read the 200 sequences 41 times (8,200)."""
    spec = spec_for(loop_data(tmp_path))
    assert steps.validate_data(spec, "local")["n_sequences"] == 200
    code, out, err = validate_cli(spec, capsys)
    assert (code, out, err) == (0, "valid: 200 sequences, 4179 observations\n", "")


def test_a_symlink_loop_on_the_spark_engine(spark: Any, tmp_path: Path) -> None:
    spec = spec_for(loop_data(tmp_path))
    assert steps.validate_data(spec, "spark", spark)["n_sequences"] == 200


# ------------------------------------------------------------------ regression (issue 10, class 8, data side)

HUGE_SYMBOL = (
    r"file part-0.parquet, batch 0: sequence id=10, position 0: symbol 1099511627776 would make "
    r"n_features=1099511627777: a CategoricalHMM with n_components=2, n_features=1099511627777 needs about "
    r"48.0 TiB of memory \(largest parameter emissionprob_: n_components x n_features = 2,199,023,255,554 values, "
    r"3 copies; kernel work arrays 2.0 MiB\), more than the limit of 8.0 GiB; set HMM_EM_MAX_MODEL_BYTES"
)


def test_one_huge_symbol_with_inferred_n_features_is_refused_naming_the_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One row ``[2**40, 0]``: the old scan passed and init tried to allocate 16 TiB."""
    write(tmp_path / "data" / "part-0.parquet", pa.array([[2**40, 0]], L(pa.int64())))
    spec = spec_for(tmp_path / "data")
    invalid(spec, HUGE_SYMBOL)
    code, out, err = validate_cli(spec, capsys)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert re.search(HUGE_SYMBOL, err), err


def test_one_huge_symbol_on_the_spark_engine(spark: Any, tmp_path: Path) -> None:
    write(tmp_path / "data" / "part-0.parquet", pa.array([[2**40, 0]], L(pa.int64())))
    invalid(spec_for(tmp_path / "data"), HUGE_SYMBOL, "spark", spark)


@pytest.mark.parametrize(
    ("model", "pattern"),
    [
        (hmm.CategoricalHMM(1_000_000), r"a CategoricalHMM with n_components=1000000 needs about 22.8 TiB"),
        (hmm.CategoricalHMM(2, n_features=10**11), r"n_components=2, n_features=100000000000 needs about 4.4 TiB"),
        (hmm.GMMHMM(10, n_mix=10**8), r"a GMMHMM with n_components=10, n_mix=100000000 needs about"),
        (hmm.PoissonHMM(100_000), r"largest parameter transmat_: n_components x n_components = 10,000,000,000"),
    ],
)
def test_models_too_large_for_memory_are_refused_before_allocating(model: hmm.BaseHMM, pattern: str) -> None:
    X = np.array([[0], [1]])
    with pytest.raises(ModelTooLargeError, match=pattern + r".*more than the limit of 8.0 GiB"):
        model.fit(X)
    assert not hasattr(model, "startprob_")


def test_a_gaussian_whose_data_is_too_wide_for_full_covariances() -> None:
    X = np.zeros((3, 100_000))
    with pytest.raises(InvalidSequenceError, match=r"observations of 100000 features would make n_features=100000: "):
        hmm.GaussianHMM(2, covariance_type="full").fit(X)


def test_the_size_limit_is_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    model = hmm.CategoricalHMM(50, n_features=1000)
    estimate = check_model_size(model)
    assert estimate == 8 * (3 * (50 + 50 * 50 + 50 * 1000) + 65536 * 2 * 50)
    monkeypatch.setenv(MAX_MODEL_BYTES_ENV, str(estimate - 1))
    with pytest.raises(ModelTooLargeError, match=r"more than the limit of 51.2 MiB; set HMM_EM_MAX_MODEL_BYTES"):
        check_model_size(model)
    monkeypatch.setenv(MAX_MODEL_BYTES_ENV, str(estimate))
    assert check_model_size(model) == estimate
    assert check_model_size(model, n_features=1, limit=10**9) < estimate
    monkeypatch.setenv(MAX_MODEL_BYTES_ENV, "lots")
    with pytest.raises(ValueError, match=r"HMM_EM_MAX_MODEL_BYTES='lots' must be a positive number of bytes"):
        check_model_size(model)


def test_the_driver_limit_applies_on_the_spark_executors(spark: Any, tmp_path: Path, monkeypatch: Any) -> None:
    """Executors run the data scan; the limit they apply is the driver's, whatever their environment."""
    write(tmp_path / "data" / "part-0.parquet", pa.array([[5000, 0]], L(pa.int64())))
    monkeypatch.setenv(MAX_MODEL_BYTES_ENV, "2200000")
    invalid(spec_for(tmp_path / "data"), r"symbol 5000 would make n_features=5001: .*limit of 2.1 MiB", "spark", spark)


def test_a_sequence_too_long_for_the_kernels_buffers_is_named(tmp_path: Path, monkeypatch: Any) -> None:
    """The forward-backward buffers grow with the longest sequence: 1,000,000 observations x 2 states
    need ~460 MiB with 8 lanes, ~885 MiB with 16 (AVX-512), here more than the limit."""
    monkeypatch.setenv(MAX_MODEL_BYTES_ENV, str(40 * 2**20))
    write(tmp_path / "data" / "part-0.parquet", pa.array([[0, 1], [0] * 1_000_000], L(pa.int8())))
    size = {8: "457.7 MiB", 16: "885.0 MiB"}[kernels.LANES]
    expected = (
        r"sequence id=11: its 1000000 observations would need more memory than allowed: a CategoricalHMM with "
        rf"n_components=2, n_features=2 needs about {size} of memory \(.* for a sequence of 1,000,000 "
        r"observations\), more than the limit of 40.0 MiB"
    )
    invalid(spec_for(tmp_path / "data", model_args={"n_features": 2}), expected)
    with pytest.raises(InvalidSequenceError, match=r"^sequence 1: its 1000000 observations would need more memory"):
        hmm.CategoricalHMM(2).fit(np.zeros((1_000_002, 1), dtype=int), [2, 1_000_000])


# ------------------------------------------------------------------ regression (issue 10, class 14)


def test_an_int64_max_symbol_is_named_with_its_row(tmp_path: Path) -> None:
    write(tmp_path / "data" / "part-0.parquet", pa.array([[1], [2, 2**63 - 1]], L(pa.int64())))
    invalid(
        spec_for(tmp_path / "data"),
        r"batch 0: sequence id=11, position 1: symbol 9223372036854775807 would make n_features=9223372036854775808",
    )
    with pytest.raises(InvalidSequenceError, match=r"^sequence 1, position 0: symbol 9223372036854775807 would make"):
        hmm.CategoricalHMM(2).fit(np.array([[0], [2**63 - 1]]), [1, 1])


def test_a_uint64_max_symbol_is_reported_as_itself(tmp_path: Path) -> None:
    write(tmp_path / "data" / "part-0.parquet", pa.array([[1], [2, 2**64 - 1]], L(pa.uint64())))
    invalid(
        spec_for(tmp_path / "data"),
        r"sequence id=11, position 1: symbol 18446744073709551615 is larger than the largest symbol hmm-em supports",
    )
    X = np.array([[0], [2**64 - 1]], dtype=np.uint64)
    with pytest.raises(InvalidSequenceError, match=r"^sequence 0, position 1: symbol 18446744073709551615 is larger"):
        hmm.CategoricalHMM(2, n_features=3).fit(X)


def test_zero_width_gaussian_rows_are_named(tmp_path: Path) -> None:
    write(tmp_path / "data" / "part-0.parquet", pa.array([[[]], [[]]], DOUBLES))
    invalid(
        spec_for(tmp_path / "data", "gaussian"),
        r"batch 0: sequence id=10, position 0: observation has 0 features \(every observation needs at least one",
    )


def test_widths_that_differ_between_files_name_the_files(tmp_path: Path) -> None:
    write(tmp_path / "data" / "part-0.parquet", pa.array([[[1.0, 2.0]], [[3.0, 4.0]]], DOUBLES))
    write(tmp_path / "data" / "part-1.parquet", pa.array([[[1.0, 2.0, 3.0]]], DOUBLES), first_id=20)
    invalid(
        spec_for(tmp_path / "data", "gaussian"),
        r"file part-1.parquet, batch 0: observations have 3 features but those of file part-0.parquet, batch 0 "
        r"have 2 \(every observation of the data needs the same number of features\)",
    )


def test_widths_that_differ_between_files_on_the_spark_engine(spark: Any, tmp_path: Path) -> None:
    write(tmp_path / "data" / "a" / "part-0.parquet", pa.array([[[1.0]], [[3.0]]], DOUBLES))
    write(tmp_path / "data" / "b" / "part-0.parquet", pa.array([[[1.0, 2.0]]], DOUBLES), first_id=20)
    invalid(
        spec_for(tmp_path / "data", "gaussian"),
        r"file b/part-0.parquet, batch 0: observations have 2 features but those of file a/part-0.parquet",
        "spark",
        spark,
    )


COMPLEX = np.array([[1 + 2j], [0.5], [3j], [4.0]])


@pytest.mark.parametrize("model", [hmm.GaussianHMM(2), hmm.PoissonHMM(2), hmm.GMMHMM(2)], ids=type)
def test_complex_observations_are_refused_not_truncated(model: hmm.BaseHMM) -> None:
    with pytest.raises(InvalidSequenceError, match=r"^X must hold real numbers, got dtype complex128$"):
        model.fit(COMPLEX)


@pytest.mark.parametrize("method", ["score", "predict", "predict_proba", "decode", "score_samples"])
def test_complex_observations_are_refused_by_inference(method: str) -> None:
    model = hmm.GaussianHMM(2, random_state=0, n_iter=2).fit(np.random.RandomState(0).normal(size=(20, 1)))
    with pytest.raises(InvalidSequenceError, match=r"^X must hold real numbers, got dtype complex128$"):
        getattr(model, method)(COMPLEX)


@pytest.mark.parametrize("name", ["startprob_", "transmat_", "means_"])
def test_complex_parameters_are_refused_not_truncated(name: str) -> None:
    model = hmm.GaussianHMM(2, random_state=0, n_iter=2).fit(np.random.RandomState(0).normal(size=(20, 1)))
    setattr(model, name, getattr(model, name) + 1j)
    with pytest.raises(hmm.InvalidParameterError, match=rf"^{name} has complex values \(dtype complex128\)"):
        model.score(np.zeros((3, 1)))


def test_the_report_lists_only_the_figures_it_drew(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    model = hmm.CategoricalHMM(2, random_state=0, n_iter=2).fit(np.array([[0], [1], [1], [0]]))
    spec = spec_for(tmp_path)
    records = [
        {"iteration": 0, "converged": False},
        {"iteration": 1, "log_likelihood": -3.0, "improvement": None, "converged": True, "timings": {}},
    ]
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if the report extra were not installed
    files = build_report(spec, records, model)
    assert sorted(files) == ["model.npz", "report.html", "report.json", "report.md"]
    assert "Files: `model.npz` (load with `hmm.load`), `report.json`, `report.html`.\n" in files["report.md"].decode()
    assert ".png" not in files["report.md"].decode()


# ------------------------------------------------------------------ campaign: data types and values

# (model, column, model_args, the rule in the message after "file part-0.parquet, batch 0: ")
DATA_CASES: dict[str, tuple[str, pa.Array, dict[str, Any], str]] = {
    "categorical floats": ("categorical", pa.array([[0, 1], [1.5]], L(pa.float64())), {}, r"X must hold integer sym"),
    "categorical bools": ("categorical", pa.array([[True, False]], L(pa.bool_())), {}, r"got dtype bool"),
    # Strings are named symbols (tests/training/test_named_symbols.py); bytes are neither.
    "categorical bytes": ("categorical", pa.array([[b"a"]], L(pa.binary())), {}, r"got dtype object"),
    "categorical decimals": ("categorical", pa.array([[1]], L(pa.decimal128(5, 2))), {}, r"got dtype object"),
    "categorical timestamps": ("categorical", pa.array([[1]], L(pa.timestamp("s"))), {}, r"got dtype datetime64"),
    "categorical scalar column": ("categorical", pa.array([1, 2]), {}, r"must be an array column, got type int64"),
    "categorical string column": ("categorical", pa.array(["ab"]), {}, r"must be an array column, got type string"),
    "categorical binary column": ("categorical", pa.array([b"ab"]), {}, r"must be an array column, got type binary"),
    "categorical struct column": (
        "categorical",
        pa.array([{"a": 1}], pa.struct([("a", pa.int64())])),
        {},
        r"must be an array column, got type struct<a: int64>",
    ),
    "categorical map column": (
        "categorical",
        pa.array([[(1, 2)]], pa.map_(pa.int64(), pa.int64())),
        {},
        r"must be an array column, got type map<int64, int64",
    ),
    "categorical fixed-size list": (
        "categorical",
        pa.array([[1, 2]], pa.list_(pa.int64(), 2)),
        {},
        r"must be an array column, got type fixed_size_list",
    ),
    "categorical nested lists": (
        "categorical",
        pa.array([[[1]]], L(L(pa.int64()))),
        {},
        r"must be array<int>, got list",
    ),
    "categorical null row": ("categorical", pa.array([[1], None], L(pa.int64())), {}, r"id=11: the sequence is null"),
    "categorical null symbol": (
        "categorical",
        pa.array([[1], [2, None]], L(pa.int64())),
        {},
        r"sequence id=11, position 1: observation is null",
    ),
    "categorical all-null type": ("categorical", pa.array([[None]], L(pa.null())), {}, r"id=10, position 0: observat"),
    "categorical empty sequence": (
        "categorical",
        pa.array([[1], []], L(pa.int64())),
        {},
        r"sequence id=11: the sequence is empty \(every sequence needs at least one observation",
    ),
    "categorical negative": (
        "categorical",
        pa.array([[1, -3]], L(pa.int8())),
        {},
        r"id=10, position 1: symbol -3 is neg",
    ),
    "categorical int64 min": (
        "categorical",
        pa.array([[-(2**63)]], L(pa.int64())),
        {},
        r"id=10, position 0: symbol -9223372036854775808 is negative",
    ),
    "categorical beyond n_features": (
        "categorical",
        pa.array([[0, 2**63 - 1]], L(pa.int64())),
        {"n_features": 3},
        r"id=10, position 1: symbol 9223372036854775807 is outside \[0, 3\) \(n_features=3",
    ),
    "categorical uint32 beyond n_features": (
        "categorical",
        pa.array([[0, 2**32 - 1]], L(pa.uint32())),
        {"n_features": 3},
        r"id=10, position 1: symbol 4294967295 is outside \[0, 3\)",
    ),
    "gaussian NaN": (
        "gaussian",
        pa.array([[[1.0]], [[np.nan]]], DOUBLES),
        {},
        r"id=11, position 0, feature 0: X value nan",
    ),
    "gaussian inf": (
        "gaussian",
        pa.array([[[1.0, np.inf]]], DOUBLES),
        {},
        r"id=10, position 0, feature 1: X value inf",
    ),
    "gaussian -inf, one feature": (
        "gaussian",
        pa.array([[1.0], [-np.inf]], L(pa.float64())),
        {},
        r"id=11, position 0, feature 0: X value -inf is not finite",
    ),
    "gaussian null observation": (
        "gaussian",
        pa.array([[[1.0]], [[2.0], None]], DOUBLES),
        {},
        r"id=11, position 1: observation is null \(every observation needs an array of features\)",
    ),
    "gaussian null first observation": (
        "gaussian",
        pa.array([[None, [1.0]]], DOUBLES),
        {},
        r"id=10, position 0: observation is null",
    ),
    "gaussian null value": (
        "gaussian",
        pa.array([[[1.0, 2.0]], [[1.0, None]]], DOUBLES),
        {},
        r"id=11, position 0, feature 1: observation is null",
    ),
    "gaussian ragged observations": (
        "gaussian",
        pa.array([[[1.0, 2.0], [1.0]]], DOUBLES),
        {},
        r"id=10, position 1: observation has 1 features but the first has 2",
    ),
    "gaussian zero width in a later row": (
        "gaussian",
        pa.array([[[1.0]], [[]]], DOUBLES),
        {},
        r"id=11, position 0: observation has 0 features but the first has 1",
    ),
    "gaussian strings": (
        "gaussian",
        pa.array([[["a"]]], L(L(pa.string()))),
        {},
        r"X must be numeric, got dtype object",
    ),
    "gaussian three levels": (
        "gaussian",
        pa.array([[[[1.0]]]], L(DOUBLES)),
        {},
        r"X must be numeric, got dtype object",
    ),
    "gaussian too wide for full covariances": (
        "gaussian",
        pa.array([[[0.0] * 100_000]], DOUBLES),
        {"covariance_type": "full"},
        r"observations of 100000 features would make n_features=100000: a GaussianHMM .* needs about 447.0 GiB",
    ),
    "poisson negative": (
        "poisson",
        pa.array([[[1]], [[-1]]], L(L(pa.int64()))),
        {},
        r"id=11, position 0, feature 0: co",
    ),
    "poisson fraction": ("poisson", pa.array([[[1.5]]], DOUBLES), {}, r"count 1.5 is not an integer"),
    "poisson NaN": ("poisson", pa.array([[[np.nan]]], DOUBLES), {}, r"count nan is not finite"),
    "poisson inf": ("poisson", pa.array([[[np.inf]]], DOUBLES), {}, r"count inf is not finite"),
    "poisson null count": ("poisson", pa.array([[[1, None]]], L(L(pa.int64()))), {}, r"feature 1: observation is null"),
    "gmm NaN": ("gmm", pa.array([[[1.0]], [[np.nan]]], DOUBLES), {}, r"id=11, position 0, feature 0: X value nan"),
    "gmm zero width": ("gmm", pa.array([[[]]], DOUBLES), {}, r"id=10, position 0: observation has 0 features"),
}


@pytest.mark.parametrize("case", DATA_CASES)
def test_bad_data_is_named_by_file_row_and_rule(case: str, tmp_path: Path) -> None:
    model, column, model_args, pattern = DATA_CASES[case]
    write(tmp_path / "data" / "part-0.parquet", column)
    invalid(spec_for(tmp_path / "data", model, model_args=model_args), r"file part-0.parquet, batch 0: .*" + pattern)


# Edge cases that are valid data: accepted, with the right counts.
VALID_CASES: dict[str, tuple[str, pa.Array, int]] = {
    "categorical int8": ("categorical", pa.array([[1, 0, 2, 1], [2, 0, 1]], L(pa.int8())), 7),
    "categorical large list": ("categorical", pa.array([[1, 0, 1, 1, 0]], pa.large_list(pa.int64())), 5),
    "categorical uint64 below 2**63": ("categorical", pa.array([[0, 7, 3, 0, 7]], L(pa.uint64())), 5),
    "gaussian one feature as array<double>": (
        "gaussian",
        pa.array([[1.0, 2.0, 1.5, 3.0], [3.0, 0.5, 2.0]], L(pa.float64())),
        7,
    ),
    "gaussian bools": (
        "gaussian",
        pa.array([[[True], [False], [True], [True], [False]], [[False], [True], [False]]], L(L(pa.bool_()))),
        8,
    ),
    "gaussian float16": (
        "gaussian",
        pa.array([[[1.0], [2.0], [1.5], [3.0]], [[2.5], [0.5], [1.0]]], L(L(pa.float16()))),
        7,
    ),
    "poisson uint64 counts": ("poisson", pa.array([[[1], [3], [0], [2]], [[7], [1], [0]]], L(L(pa.uint64()))), 7),
}


@pytest.mark.parametrize("case", VALID_CASES)
def test_edge_data_that_is_valid(case: str, tmp_path: Path) -> None:
    model, column, n_observations = VALID_CASES[case]
    write(tmp_path / "data" / "part-0.parquet", column)
    counts = steps.validate_data(spec_for(tmp_path / "data", model), "local")
    assert (counts["n_sequences"], counts["n_observations"]) == (len(column), n_observations)


LIBRARY_CASES: dict[str, tuple[hmm.BaseHMM, Any, Any, str]] = {
    "complex lengths": (hmm.CategoricalHMM(2), [[0], [1]], [1 + 1j, 1], r"lengths must be integers, got dtype complex"),
    "object X with None": (hmm.GaussianHMM(2), np.array([[1.0], [None]], dtype=object), None, r"X must be numeric"),
    "string X": (hmm.PoissonHMM(2), np.array([["1"], ["2"]]), None, r"X must be numeric, got dtype <U1"),
    "bool symbols": (
        hmm.CategoricalHMM(2),
        np.array([[True], [False]]),
        None,
        r"X must hold integer symbols, got dtype",
    ),
    "zero features": (hmm.GaussianHMM(2), np.zeros((4, 0)), None, r"X has 0 features: at least one column is needed"),
    "3-D X": (hmm.GaussianHMM(2), np.zeros((2, 2, 2)), None, r"X must be 2-D \(n_samples, n_features\)"),
    "no samples": (hmm.PoissonHMM(2), np.zeros((0, 1)), None, r"X has no samples"),
    "lengths beyond X": (hmm.CategoricalHMM(2), [[0], [1]], [5], r"lengths sum to 5 but X has 2 samples"),
    "huge lengths": (hmm.CategoricalHMM(2), [[0], [1]], [2**62, 2**62], r"lengths sum to -9223372036854775808"),
}


@pytest.mark.parametrize("case", LIBRARY_CASES)
def test_bad_arrays_given_to_the_library(case: str) -> None:
    model, X, lengths, pattern = LIBRARY_CASES[case]
    with pytest.raises(InvalidSequenceError, match=pattern):
        model.fit(X, lengths)


# ------------------------------------------------------------------ campaign: file listings


def two_files(data: Path) -> None:
    write(data / "part-0.parquet", pa.array([[0, 1], [1]], L(pa.int64())))
    write(data / "part-1.parquet", pa.array([[1, 1, 0]], L(pa.int64())), first_id=20)


def listed(data: Path) -> list[str]:
    return [split.describe(str(data)) for split in ParquetSequences(f"file://{data}", engine="local").splits()]


def test_a_loop_through_the_parent_directory(tmp_path: Path) -> None:
    data = tmp_path / "data"
    two_files(data / "a")
    os.symlink("..", data / "a" / "up")
    assert listed(data) == ["file a/part-0.parquet", "file a/part-1.parquet"]


def test_a_loop_through_two_links(tmp_path: Path) -> None:
    data = tmp_path / "data"
    two_files(data / "a")
    (data / "c").mkdir()
    os.symlink("../c", data / "a" / "b")
    os.symlink("../a", data / "c" / "d")
    assert listed(data) == ["file a/part-0.parquet", "file a/part-1.parquet"]


def test_two_links_to_one_directory_read_it_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    two_files(tmp_path / "elsewhere")
    data.mkdir()
    os.symlink(tmp_path / "elsewhere", data / "first")
    os.symlink(tmp_path / "elsewhere", data / "second")
    assert listed(data) == ["file first/part-0.parquet", "file first/part-1.parquet"]


def test_a_file_reached_by_a_link_and_a_hard_link_is_read_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    two_files(data)
    os.symlink("part-0.parquet", data / "part-2.parquet")
    os.link(data / "part-1.parquet", data / "part-3.parquet")
    assert listed(data) == ["file part-0.parquet", "file part-1.parquet"]
    assert steps.validate_data(spec_for(data), "local")["n_sequences"] == 3


def test_a_linked_data_root_is_followed(tmp_path: Path) -> None:
    two_files(tmp_path / "real")
    os.symlink(tmp_path / "real", tmp_path / "data")
    assert steps.validate_data(spec_for(tmp_path / "data"), "local")["n_sequences"] == 3


def test_a_dangling_symlink_is_refused_by_name(tmp_path: Path) -> None:
    data = tmp_path / "data"
    two_files(data)
    os.symlink("gone.parquet", data / "part-2.parquet")
    invalid(
        spec_for(data),
        r"^data URI file://.*/data: .*/data/part-2.parquet is a symbolic link to 'gone.parquet', "
        r"which does not exist$",
    )


def test_a_fifo_in_the_data_folder_is_refused_not_read(tmp_path: Path) -> None:
    data = tmp_path / "data"
    two_files(data)
    os.mkfifo(data / "part-2.parquet")  # opening it would block forever
    invalid(
        spec_for(data), r"^data URI .*: .*/data/part-2.parquet is a FIFO, not a Parquet file \(data must be regular"
    )


def test_a_socket_in_the_data_folder_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    two_files(data)
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(data / "s.parquet"))
        invalid(spec_for(data), r"^data URI .*: .*/data/s.parquet is a socket, not a Parquet file")


def test_a_data_uri_that_is_a_fifo(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "data")
    invalid(spec_for(tmp_path / "data"), r"^data URI file://.*/data: .*/data is a FIFO, not a Parquet file")


def test_a_data_uri_that_is_a_device(capsys: pytest.CaptureFixture[str]) -> None:
    spec = spec_for("file:///dev/zero")
    invalid(spec, r"^data URI file:///dev/zero: /dev/zero is a character device, not a Parquet file")
    code, out, err = validate_cli(spec, capsys)
    expected = (
        "hmm-em validate: error: data URI file:///dev/zero: /dev/zero is a character device, not a Parquet file "
        "(data must be regular files)\n"
    )
    assert (code, out, err) == (2, "", expected)


def test_a_missing_data_uri(tmp_path: Path) -> None:
    invalid(spec_for(tmp_path / "nothing"), r"^data URI file://.*/nothing does not exist$")


def test_directories_named_like_parquet_files_are_read_as_directories(tmp_path: Path) -> None:
    data = tmp_path / "data"
    two_files(data / "table.parquet")  # what Spark writes for df.write.parquet("table.parquet")
    (data / "empty.parquet").mkdir()
    assert listed(data) == ["file table.parquet/part-0.parquet", "file table.parquet/part-1.parquet"]


def test_hidden_files_and_directories_are_skipped(tmp_path: Path) -> None:
    data = tmp_path / "data"
    two_files(data)
    (data / "_SUCCESS").write_bytes(b"")
    (data / ".part-0.parquet.crc").write_bytes(b"garbage")
    write(data / "_temporary" / "0" / "part-9.parquet", pa.array([[5]], L(pa.int64())))
    assert listed(data) == ["file part-0.parquet", "file part-1.parquet"]


@pytest.mark.parametrize(
    ("content", "pattern"),
    [
        (b"", r"file part-2.parquet: is not a readable Parquet file \(.*size is 0 bytes"),
        (b"id,sequence\n1,2\n", r"file part-2.parquet: is not a readable Parquet file"),
        (b"PAR1" + bytes(100) + b"PAR1", r"file part-2.parquet: is not a readable Parquet file"),
        (b"PAR1garbage", r"file part-2.parquet: is not a readable Parquet file"),
    ],
    ids=["empty file", "csv", "fake magic", "truncated"],
)
def test_files_that_are_not_parquet_are_named(content: bytes, pattern: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    two_files(data)
    (data / "part-2.parquet").write_bytes(content)
    invalid(spec_for(data), pattern)


def test_a_truncated_parquet_file_is_named(tmp_path: Path) -> None:
    data = tmp_path / "data"
    two_files(data)
    raw = (data / "part-1.parquet").read_bytes()
    (data / "part-1.parquet").write_bytes(raw[: len(raw) // 2])
    invalid(spec_for(data), r"file part-1.parquet: is not a readable Parquet file")


def test_a_zero_row_file_counts_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    two_files(data)
    write(data / "part-2.parquet", pa.array([], L(pa.int64())))
    assert steps.validate_data(spec_for(data), "local")["n_sequences"] == 3


def test_a_file_with_another_column_name_is_named(tmp_path: Path) -> None:
    data = tmp_path / "data"
    two_files(data)
    pq.write_table(pa.table({"id": [1], "seq": pa.array([[0]], L(pa.int64()))}), data / "part-2.parquet")
    invalid(spec_for(data), r"file part-2.parquet: has no column 'sequence' \(columns: \['id', 'seq'\]\)")


def test_a_data_folder_without_files(tmp_path: Path) -> None:
    (tmp_path / "data" / "empty.parquet").mkdir(parents=True)
    invalid(spec_for(tmp_path / "data"), r"^data URI file://.*/data has no Parquet files$")
