"""Named symbols on Spark: a training on the Spark engine over an ``array<string>`` (or
dictionary-encoded) column equals the same training on the integer encoding and on the local
engine, bit for bit; ``fit(df)`` on an ``array<string>`` DataFrame equals the in-memory fit on the
strings. The local half is tests/training/test_named_symbols.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import hmm
from hmm.core.sequences import InvalidSequenceError
from hmm.training import steps
from hmm.training.commits import Training
from hmm.training.store import open_store
from tests.conftest import write_categorical_parquet
from tests.training.test_named_symbols import WORDS, assert_same_training, spec_for, write_named_copy

pytestmark = pytest.mark.spark


@pytest.mark.parametrize("dictionary", [False, True], ids=["array<string>", "dictionary"])
def test_a_string_training_on_spark_equals_the_integer_training_and_the_local_engine(
    spark: Any, tmp_path: Path, dictionary: bool
) -> None:
    int_uri, _, _ = write_categorical_parquet(str(tmp_path / "ints"), n_sequences=200, files=3)
    named_uri = write_named_copy(int_uri, str(tmp_path / "names"), dictionary)
    root = f"file://{tmp_path}/store"
    quiet = {"progress": lambda line: None}
    steps.train(root, "named-spark", spec_for(named_uri, max_iter=3), engine="spark", spark=spark, **quiet)
    steps.train(root, "plain-spark", spec_for(int_uri, max_iter=3), engine="spark", spark=spark, **quiet)
    steps.train(root, "named-local", spec_for(named_uri, max_iter=3), engine="local", **quiet)
    store = open_store(root)
    named = Training(store, "named-spark")
    assert_same_training(named, Training(store, "plain-spark"))
    local = Training(store, "named-local")
    assert named.history() == local.history()
    for k in named.committed():
        np.testing.assert_array_equal(named.load_params(k).emissionprob_, local.load_params(k).emissionprob_)


def test_an_unknown_symbol_on_the_spark_executors_names_the_row(spark: Any, tmp_path: Path) -> None:
    int_uri, _, _ = write_categorical_parquet(str(tmp_path / "ints"), n_sequences=60, files=2)
    named_uri = write_named_copy(int_uri, str(tmp_path / "names"))
    spec = spec_for(named_uri, model_args={"symbols": WORDS[:5]})
    with pytest.raises(
        InvalidSequenceError, match=r"sequence id=\d+, position \d+: symbol 'fox' is not in the vocabulary"
    ):
        steps.validate_data(spec, "spark", spark)


def test_fit_on_a_dataframe_of_strings_equals_the_in_memory_fit(spark: Any) -> None:
    rng = np.random.RandomState(3)
    lengths = rng.randint(1, 30, size=80)
    codes = rng.choice(len(WORDS), size=int(lengths.sum()))
    codes[: len(WORDS)] = np.arange(len(WORDS))  # every word occurs
    words = np.asarray(WORDS)[codes]
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    rows = [(i, words[offsets[i] : offsets[i + 1]].tolist()) for i in range(len(lengths))]
    df = spark.createDataFrame(rows, "id long, sequence array<string>").repartition(2)
    on_spark = hmm.CategoricalHMM(3, n_iter=5, tol=-np.inf, random_state=1).fit(df)
    in_memory = hmm.CategoricalHMM(3, n_iter=5, tol=-np.inf, random_state=1)
    # The DataFrame's rows in partition order are the in-memory sequences in some order: compare on the same order.
    sequences = [row["sequence"] for row in df.collect()]
    X, lengths_in_order = np.concatenate(sequences)[:, None], [len(s) for s in sequences]
    in_memory.fit(X, lengths_in_order)
    assert on_spark.symbols == in_memory.symbols == WORDS
    np.testing.assert_allclose(on_spark.emissionprob_, in_memory.emissionprob_, rtol=1e-9)
    np.testing.assert_allclose(on_spark.transmat_, in_memory.transmat_, rtol=1e-9)
    assert on_spark.score(df) == pytest.approx(in_memory.score(X, lengths_in_order), rel=1e-9)
