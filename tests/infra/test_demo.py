"""`make demo`'s pieces: the letters data, the training it asks the DAG for, what it prints.

The demo itself (the DAG with about 14 spark-submit steps, a few minutes) is run by hand;
tests/dags/test_local_runner.py runs the same runner end to end with quick steps.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import hmm
from hmm.orchestration import decisions as orchestration
from infra.local import demo, letters


def test_letters_are_paragraphs_of_spaces_and_lowercase_letters(tmp_path):
    X, lengths = letters.letter_sequences()
    assert len(lengths) > 1000 and X.shape == (lengths.sum(), 1)
    assert sorted(set(X.ravel().tolist())) == letters.SYMBOLS and lengths.min() >= 20
    uri = letters.write_parquet(tmp_path / "data", max_sequences=10)
    table = pq.read_table(tmp_path / "data" / "letters.parquet")
    assert uri == (tmp_path / "data").as_uri()
    assert table.schema.field("sequence").type.value_type == pa.string()
    assert table.column("id").to_pylist() == list(range(10))
    assert np.concatenate(table.column("sequence").to_pylist()).tolist() == X[: lengths[:10].sum(), 0].tolist()


def test_the_demo_training_needs_a_continuation_run_and_splits_vowels_from_consonants():
    """The same training in memory (the DAG's steps give the same numbers): it stops on tol after
    more iterations than one DAG run has slots, with one state for the vowels."""
    X, lengths = letters.letter_sequences()
    conf = demo.training_conf("file:///data", "file:///store", "spark")
    settings = orchestration.check_params(conf)  # valid params of the DAG's trigger form
    model = settings.spec.build_model().fit(X, lengths)
    assert model.symbols == letters.SYMBOLS
    assert 6 < model.monitor_.iter < demo.MAX_ITER
    vowels = [letters.ALPHABET.index(v) for v in letters.VOWELS]
    share = np.sort(model.emissionprob_[:, vowels].sum(axis=1))
    assert share[0] < 0.1 and share[1] > 0.7
    text = letters.describe(model)
    assert "state 0:" in text and "state 1:" in text and "probability of a, e, i, o, u per state" in text


def test_the_timing_table_shows_each_iteration_with_its_start_up():
    records = [
        {"iteration": 0, "log_likelihood": None, "improvement": None, "converged": False, "timings": {}},
        {
            "iteration": 1,
            "log_likelihood": -10.0,
            "improvement": None,
            "converged": False,
            "timings": {"startup_seconds": 7.25, "estep_seconds": 1.5},
        },
        {"iteration": 2, "log_likelihood": -9.5, "improvement": 0.5, "converged": True, "timings": {}},
    ]
    lines = demo.timing_table(records).splitlines()
    assert lines[2] == "| 0 | (initial parameters) | | | | |"
    assert lines[3] == "| 1 | -10.0 |  | 7.2 | 1.50 |  |"
    assert lines[4] == "| 2 | -9.5 | +0.5 |  |  | yes |"


def test_describe_names_what_each_state_emits():
    model = hmm.CategoricalHMM(2, symbols=letters.SYMBOLS)
    model.startprob_ = np.array([0.5, 0.5])
    model.transmat_ = np.array([[0.1, 0.9], [0.9, 0.1]])
    emissions = np.zeros((2, 27))
    emissions[0, letters.ALPHABET.index("e")] = 1.0
    emissions[1, 0] = 1.0
    model.emissionprob_ = emissions
    text = letters.describe(model)
    assert "state 0: e:1.00" in text and "state 1: _:1.00" in text
    assert "state 0: 1.00, state 1: 0.00" in text
