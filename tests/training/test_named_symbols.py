"""Trainings on named symbols (an ``array<string>`` or dictionary-encoded column), local engine.

The vocabulary is fixed once at init (the data's distinct strings, sorted, or the spec's
``model_args.symbols``) and saved with the parameters of every iteration; a string training
equals the same training on the integer encoding bit for bit; the vocabulary survives a resume
and the published model; bad input is refused with one clear line and nothing written. The
Spark engine's half is tests/distributed/test_named_symbols_spark.py.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import hmm
from hmm.core.limits import MAX_SYMBOLS
from hmm.core.sequences import InvalidSequenceError
from hmm.distributed.sources import ParquetSequences
from hmm.training import steps
from hmm.training.commits import Training
from hmm.training.spec import InvalidSpecError, TrainingSpec
from hmm.training.store import open_store
from tests.conftest import write_categorical_parquet

#: Sorted, so the data's vocabulary (its distinct strings, sorted) gives each word its integer's index.
WORDS = ["ant", "bee", "cat", "dog", "eel", "fox"]


def write_named_copy(int_uri: str, directory: str, dictionary: bool = False, words: list[str] = WORDS) -> str:
    """The integer data at ``int_uri`` again, each symbol k written as ``words[k]`` (same files, same rows)."""
    source = int_uri.removeprefix("file://")
    os.makedirs(directory, exist_ok=True)
    lookup = pa.array(words, pa.string())
    for name in sorted(os.listdir(source)):
        table = pq.read_table(os.path.join(source, name))
        column = table.column("sequence").combine_chunks()
        indices = column.flatten()
        values = pa.DictionaryArray.from_arrays(indices, lookup) if dictionary else lookup.take(indices)
        named = pa.ListArray.from_arrays(column.offsets, values)
        pq.write_table(pa.table({"id": table.column("id"), "sequence": named}), os.path.join(directory, name))
    return f"file://{directory}"


def spec_for(data_uri: str, **overrides: Any) -> TrainingSpec:
    raw = {"model": "categorical", "n_components": 3, "data": data_uri, "id_col": "id", "tol": 0.0, "max_iter": 4}
    raw.update(overrides)
    return TrainingSpec.from_dict(raw)


def snapshot(store_uri: str) -> dict[str, bytes]:
    store = open_store(store_uri)
    return {key: store.read(key) for key in store.list("")}


def assert_same_training(named: Training, plain: Training) -> None:
    assert named.committed() == plain.committed()
    assert named.history() == plain.history()
    for k in named.committed():
        a, b = named.load_params(k), plain.load_params(k)
        assert a.symbols == WORDS and b.symbols is None
        for name in ("startprob_", "transmat_", "emissionprob_"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=f"iteration {k} {name}")


@pytest.mark.parametrize("dictionary", [False, True], ids=["array<string>", "dictionary"])
def test_a_string_training_equals_the_integer_training_bit_for_bit(tmp_path: Path, dictionary: bool) -> None:
    int_uri, _, _ = write_categorical_parquet(str(tmp_path / "ints"), n_sequences=150, files=2)
    named_uri = write_named_copy(int_uri, str(tmp_path / "names"), dictionary)
    root = f"file://{tmp_path}/store"
    steps.train(root, "named", spec_for(named_uri), engine="local", progress=lambda line: None)
    steps.train(root, "plain", spec_for(int_uri), engine="local", progress=lambda line: None)
    store = open_store(root)
    assert_same_training(Training(store, "named"), Training(store, "plain"))


def test_the_vocabulary_survives_a_resume_and_the_published_model(tmp_path: Path) -> None:
    int_uri, X, lengths = write_categorical_parquet(str(tmp_path / "ints"), n_sequences=120, files=2)
    named_uri = write_named_copy(int_uri, str(tmp_path / "names"))
    root = f"file://{tmp_path}/store"
    steps.init_training(root, "t", spec_for(named_uri), engine="local")
    steps.em_iteration(root, "t", 1, engine="local")
    training = Training(open_store(root), "t")
    assert training.load_params(0).symbols == WORDS
    # A resume (no spec given) reads the vocabulary from the committed parameters.
    published = steps.train(root, "t", engine="local", progress=lambda line: None)
    assert training.committed() == [0, 1, 2, 3, 4]
    assert all(training.load_params(k).symbols == WORDS for k in training.committed())
    assert {"model.npz", "report.html", "report.md", "report.json", "emissions.png"} <= set(published["files"])
    model_path = tmp_path / "model.npz"
    model_path.write_bytes(open_store(root).read(training.model_key(published["iteration"], "model.npz")))
    model = hmm.load(model_path)
    assert model.symbols == WORDS
    words = np.asarray(WORDS)[X]
    reference = training.load_params(4)
    np.testing.assert_array_equal(model.predict(words, lengths), reference.predict(words, lengths))
    assert model.score(words, lengths) == reference.score(words, lengths)


def test_the_specs_vocabulary_and_unknown_symbol(tmp_path: Path) -> None:
    int_uri, _, _ = write_categorical_parquet(str(tmp_path / "ints"), n_sequences=60, files=1)
    named_uri = write_named_copy(int_uri, str(tmp_path / "names"))
    root = f"file://{tmp_path}/store"
    # A given vocabulary fixes the order (here reversed) and may hold symbols the data lacks.
    given = [*reversed(WORDS), "<unk>"]
    spec = spec_for(named_uri, model_args={"symbols": given, "emissionprob_prior": 1.5})
    steps.init_training(root, "given", spec, engine="local")
    assert Training(open_store(root), "given").load_params(0).symbols == given
    # Strings outside a given vocabulary: named by row id, or counted as the spec's unknown symbol.
    small = spec_for(named_uri, model_args={"symbols": WORDS[:4]})
    with pytest.raises(
        InvalidSequenceError, match=r"sequence id=\d+, position \d+: symbol '(eel|fox)' is not in the vocabulary"
    ):
        steps.validate_data(small, "local")
    mapped = spec_for(named_uri, model_args={"symbols": [*WORDS[:4], "<unk>"], "unknown_symbol": "<unk>"})
    assert steps.validate_data(mapped, "local")["n_sequences"] == 60


def test_a_symbol_outside_the_vocabulary_in_a_later_pass_names_the_row(tmp_path: Path) -> None:
    int_uri, _, _ = write_categorical_parquet(str(tmp_path / "ints"), n_sequences=60, files=1)
    named_uri = write_named_copy(int_uri, str(tmp_path / "names"))
    root = f"file://{tmp_path}/store"
    steps.init_training(root, "t", spec_for(named_uri), engine="local")
    model = Training(open_store(root), "t").load_params(0)
    # The same rows with one word replaced: the committed vocabulary does not grow.
    other = write_named_copy(int_uri, str(tmp_path / "other"), words=[*WORDS[:5], "gnu"])
    with pytest.raises(
        InvalidSequenceError, match=r"sequence id=\d+, position \d+: symbol 'gnu' is not in the vocabulary"
    ):
        ParquetSequences(other, id_col="id", engine="local").statistics(model)


# ------------------------------------------------------------------ bad input: one line, nothing written


def write_column(path: Path, column: pa.Array) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"id": pa.array(range(10, 10 + len(column)), pa.int64()), "sequence": column}), path)


BAD_DATA = {
    "mixed types": (
        lambda d: (
            write_column(d / "a.parquet", pa.array([["x", "y"]], pa.list_(pa.string()))),
            write_column(d / "b.parquet", pa.array([[0, 1]], pa.list_(pa.int64()))),
        ),
        r"file a\.parquet, batch 0 holds string symbols but file b\.parquet, batch 0 holds integer symbols",
    ),
    "null symbol": (
        lambda d: write_column(d / "a.parquet", pa.array([["x", "y"], ["x", None]], pa.list_(pa.string()))),
        r"sequence id=11, position 1: observation is null \(observations must be symbols\)",
    ),
    "null sequence": (
        lambda d: write_column(d / "a.parquet", pa.array([["x"], None], pa.list_(pa.string()))),
        r"sequence id=11: the sequence is null",
    ),
    "empty string": (
        lambda d: write_column(d / "a.parquet", pa.array([["x", ""]], pa.list_(pa.string()))),
        r"sequence id=10, position 1: symbol is the empty string",
    ),
    "too many symbols": (
        lambda d: write_column(
            d / "a.parquet", pa.array([[f"s{i}"] for i in range(MAX_SYMBOLS + 1)], pa.list_(pa.string()))
        ),
        rf"{MAX_SYMBOLS + 1:,} distinct symbols, more than a vocabulary's limit of {MAX_SYMBOLS:,}",
    ),
    "strings on a non-categorical model": (
        lambda d: write_column(d / "a.parquet", pa.array([["x"]], pa.list_(pa.string()))),
        r"observation is null|must hold numbers|got dtype|observations must be",
    ),
}


@pytest.mark.parametrize("case", BAD_DATA)
def test_bad_named_data_is_one_clear_line_and_nothing_is_written(case: str, tmp_path: Path) -> None:
    make, pattern = BAD_DATA[case]
    make(tmp_path / "data")
    root = f"file://{tmp_path}/store"
    model = "poisson" if case.startswith("strings on") else "categorical"
    spec = spec_for(f"file://{tmp_path}/data", model=model)
    with pytest.raises(InvalidSequenceError) as caught:
        steps.init_training(root, "t", spec, engine="local")
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"data {spec.data} is invalid: "), message
    assert re.search(pattern, message), message
    assert snapshot(root) == {}


@pytest.mark.parametrize(
    ("model_args", "message"),
    [
        ({"symbols": []}, "symbols is empty"),
        ({"symbols": ["a", "a"]}, r"symbols\[1\] is 'a', which is symbols\[0\] already"),
        ({"symbols": "abc"}, "must be a list of strings"),
        ({"symbols": ["a", 1]}, "must be a list of strings"),
        ({"symbols": [f"s{i}" for i in range(MAX_SYMBOLS + 1)]}, f"more than the limit of {MAX_SYMBOLS:,}"),
        ({"symbols": ["a", "b"], "unknown_symbol": "c"}, "unknown_symbol is 'c', which is not in symbols"),
        ({"symbols": ["a", "b"], "n_features": 3}, "n_features=3 but symbols has 2 symbols"),
        ({"unknown_symbol": "c"}, "unknown_symbol is given without symbols"),
    ],
)
def test_bad_vocabularies_in_a_spec_are_refused(model_args: dict, message: str) -> None:
    with pytest.raises(InvalidSpecError, match=message):
        spec_for("file:///data", model_args=model_args)


def test_a_vocabulary_is_for_categorical_models_only() -> None:
    with pytest.raises(InvalidSpecError, match=r"'model_args\.symbols' is for categorical models only"):
        spec_for("file:///data", model="poisson", model_args={"symbols": ["a"]})


def test_a_dictionary_columns_unused_names_are_not_symbols(tmp_path: Path) -> None:
    """A Parquet dictionary may carry names no row uses (or repeat one): the vocabulary is what rows use."""
    names = pa.array(["fox", "zzz-unused", "ant", "fox"], pa.string())
    values = pa.DictionaryArray.from_arrays(pa.array([0, 2, 3, 2, 0], pa.int32()), names)
    column = pa.ListArray.from_arrays(pa.array([0, 2, 5], pa.int32()), values)
    write_column(tmp_path / "data" / "a.parquet", column)
    spec = spec_for(f"file://{tmp_path}/data", n_components=2)
    root = f"file://{tmp_path}/store"
    steps.init_training(root, "t", spec, engine="local")
    model = Training(open_store(root), "t").load_params(0)
    assert model.symbols == ["ant", "fox"]
    stats = ParquetSequences(spec.data, id_col="id", engine="local").statistics(model)
    plain = hmm.CategoricalHMM(2, n_features=2)
    for name in ("startprob_", "transmat_", "emissionprob_"):
        setattr(plain, name, getattr(model, name))
    plain.check_parameters()
    expected = plain.batch_statistics(np.array([1, 0, 1, 0, 1]), np.array([0, 2, 5]))
    np.testing.assert_array_equal(stats.emission["obs"], expected.emission["obs"])


@pytest.mark.parametrize("given", [False, True], ids=["data-vocabulary", "given-vocabulary"])
def test_candidates_of_a_named_symbol_training_share_its_vocabulary(tmp_path: Path, given: bool) -> None:
    int_uri, _, _ = write_categorical_parquet(str(tmp_path / "ints"), n_sequences=60, files=1)
    named_uri = write_named_copy(int_uri, str(tmp_path / "names"))
    root = f"file://{tmp_path}/store"
    vocabulary = [*reversed(WORDS), "<unk>"] if given else sorted(WORDS)
    model_args = {"symbols": vocabulary} if given else {}
    spec = spec_for(named_uri, n_components=[2, 3], n_init=2, model_args=model_args)
    steps.train(root, "sweep", spec, engine="local", progress=lambda line: None)
    training = Training(open_store(root), "sweep")
    last = training.record(training.latest())
    assert len(last["candidates"]) == 4
    for entry in last["candidates"]:
        model = training.load_stored(entry["params_key"], entry["params_sha256"], "candidate")
        assert model.symbols == vocabulary and model.n_features == len(vocabulary)
        assert model.n_components == entry["n_components"]
    # Each candidate equals the training of its number of states and seed alone, on the same strings.
    alone = spec_for(named_uri, n_components=3, seed=1, model_args=model_args)
    steps.train(root, "alone", alone, engine="local", progress=lambda line: None)
    single = Training(open_store(root), "alone")
    same = next(e for e in last["candidates"] if (e["n_components"], e["seed"]) == (3, 1))
    assert same["log_likelihood"] == single.record(single.latest())["log_likelihood"]
