"""Named symbols in CategoricalHMM: a fixed vocabulary (``symbols=``), strings in and out.

Training on strings equals training on their indices bit for bit; symbols outside the vocabulary
are named by sequence and position (or mapped to ``unknown_symbol``); the vocabulary survives
save/load; every bad vocabulary is refused by name. Without ``symbols`` nothing changes
(tests/core/test_categorical.py).
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

import hmm
from hmm.core import persistence
from hmm.core.limits import MAX_SYMBOL_CHARS, MAX_SYMBOLS

SYMBOLS = ["the", "cat", "sat", "on", "mat", "a"]
LENGTHS = [30, 1, 17, 12]


def data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Integer symbols and the same data as strings of SYMBOLS (shape (n, 1))."""
    codes = np.random.RandomState(seed).choice(len(SYMBOLS), size=(sum(LENGTHS), 1))
    return codes, np.asarray(SYMBOLS)[codes]


def test_strings_train_bit_for_bit_as_their_indices() -> None:
    codes, words = data()
    named = hmm.CategoricalHMM(3, n_iter=15, tol=-np.inf, random_state=2, symbols=SYMBOLS).fit(words, LENGTHS)
    plain = hmm.CategoricalHMM(3, n_iter=15, tol=-np.inf, random_state=2, n_features=len(SYMBOLS)).fit(codes, LENGTHS)
    for name in ("startprob_", "transmat_", "emissionprob_"):
        np.testing.assert_array_equal(getattr(named, name), getattr(plain, name), err_msg=name)
    assert named.monitor_.history == plain.monitor_.history
    assert named.n_features == len(SYMBOLS)
    assert named.score(words, LENGTHS) == plain.score(codes, LENGTHS)
    np.testing.assert_array_equal(named.predict(words, LENGTHS), plain.predict(codes, LENGTHS))
    np.testing.assert_array_equal(named.predict_proba(words, LENGTHS), plain.predict_proba(codes, LENGTHS))
    # 1-D, object arrays and lists of strings are the same data.
    assert named.score(words.ravel(), LENGTHS) == named.score(words.astype(object), LENGTHS)
    assert named.score(list(words.ravel()), LENGTHS) == plain.score(codes, LENGTHS)


def test_sample_returns_strings_drawn_as_the_indices() -> None:
    codes, words = data()
    named = hmm.CategoricalHMM(2, n_iter=3, random_state=0, symbols=SYMBOLS).fit(words, LENGTHS)
    plain = hmm.CategoricalHMM(2, n_iter=3, random_state=0, n_features=len(SYMBOLS)).fit(codes, LENGTHS)
    drawn, states = named.sample(50, random_state=5)
    expected, expected_states = plain.sample(50, random_state=5)
    assert drawn.shape == (50, 1) and drawn.dtype.kind == "U"
    np.testing.assert_array_equal(drawn, np.asarray(SYMBOLS)[expected])
    np.testing.assert_array_equal(states, expected_states)
    named.score(drawn)  # what sample gives, fit and score take


def test_fit_on_strings_without_symbols_takes_the_sorted_distinct_strings() -> None:
    _, words = data()
    model = hmm.CategoricalHMM(2, n_iter=2, random_state=0).fit(words.astype(object), LENGTHS)
    assert model.symbols == sorted(SYMBOLS)
    assert model.n_features == len(SYMBOLS)


def test_a_symbol_outside_the_vocabulary_is_named_by_sequence_and_position() -> None:
    _, words = data()
    model = hmm.CategoricalHMM(2, n_iter=2, random_state=0, symbols=SYMBOLS).fit(words, LENGTHS)
    X = np.array(["the", "cat", "dog", "on", "dog"])
    with pytest.raises(
        hmm.InvalidSequenceError, match=r"sequence 1, position 0: symbol 'dog' is not in the vocabulary"
    ):
        model.predict(X, [2, 3])
    with pytest.raises(hmm.InvalidSequenceError, match=r"2 observation\(s\) break this"):
        model.score(X)


def test_unknown_symbol_maps_strings_outside_the_vocabulary() -> None:
    vocabulary = [*SYMBOLS, "<unk>"]
    _, words = data()
    model = hmm.CategoricalHMM(
        2, n_iter=2, random_state=0, symbols=vocabulary, unknown_symbol="<unk>", emissionprob_prior=2.0
    )
    model.fit(words, LENGTHS)
    with_unknown = np.array(["the", "dog", "sat", "zebra"])
    as_unknown = np.array(["the", "<unk>", "sat", "<unk>"])
    assert model.score(with_unknown) == model.score(as_unknown)
    np.testing.assert_array_equal(model.predict(with_unknown), model.predict(as_unknown))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"symbols": []}, "symbols is empty"),
        ({"symbols": "abc"}, "symbols must be a list of strings"),
        ({"symbols": ["a", "b", "a"]}, r"symbols\[2\] is 'a', which is symbols\[0\] already"),
        ({"symbols": ["a", 1]}, r"symbols\[1\] is 1, not a string"),
        ({"symbols": ["a", ""]}, r"symbols\[1\] is the empty string"),
        ({"symbols": ["a", "x" * (MAX_SYMBOL_CHARS + 1)]}, f"more than the limit of {MAX_SYMBOL_CHARS}"),
        ({"symbols": [f"s{i}" for i in range(MAX_SYMBOLS + 1)]}, f"more than the limit of {MAX_SYMBOLS:,}"),
        ({"symbols": ["a", "b"], "n_features": 3}, "n_features=3 but symbols has 2 symbols"),
        ({"symbols": ["a", "b"], "unknown_symbol": "?"}, "unknown_symbol is '\\?', which is not in symbols"),
        ({"unknown_symbol": "?"}, "unknown_symbol is given without symbols"),
    ],
)
def test_bad_vocabularies_are_refused_by_name(settings: dict, message: str) -> None:
    with pytest.raises(hmm.InvalidParameterError, match=message):
        hmm.CategoricalHMM(2, **settings).fit(np.array([["a"], ["b"]]))


def test_bad_string_data_is_refused_by_name() -> None:
    model = hmm.CategoricalHMM(2, symbols=["a", "b"])
    with pytest.raises(
        hmm.InvalidSequenceError, match=r"sequence 0, position 1: symbol 2 is of type int, not a string"
    ):
        model.fit(np.array(["a", 2, "b"], dtype=object))
    with pytest.raises(hmm.InvalidSequenceError, match=r"symbol None is of type NoneType"):
        model.fit(np.array(["a", None], dtype=object))
    with pytest.raises(hmm.InvalidSequenceError, match=r"X holds numbers .* but the model names its symbols"):
        model.fit(np.array([[0], [1]]))
    with pytest.raises(hmm.InvalidSequenceError, match="symbol is the empty string"):
        hmm.CategoricalHMM(2).fit(np.array(["a", ""], dtype=object))


def test_the_vocabulary_survives_save_and_load(tmp_path: Path) -> None:
    _, words = data()
    vocabulary = [*SYMBOLS, "é", "<unk>"]
    model = hmm.CategoricalHMM(2, n_iter=4, random_state=0, symbols=vocabulary, unknown_symbol="<unk>")
    model.fit(words, LENGTHS)
    model.save(tmp_path / "m.npz")
    loaded = hmm.load(tmp_path / "m.npz")
    assert loaded.symbols == vocabulary and loaded.unknown_symbol == "<unk>" and loaded.n_features == 8
    assert loaded.score(words, LENGTHS) == model.score(words, LENGTHS)
    np.testing.assert_array_equal(loaded.sample(20)[0], model.sample(20)[0])
    assert persistence.dumps(loaded) == persistence.dumps(model)
    unfitted = hmm.CategoricalHMM(2, symbols=["x", "y"])
    assert persistence.loads(persistence.dumps(unfitted)).symbols == ["x", "y"]


def _rewritten(data: bytes, **arrays: np.ndarray) -> bytes:
    with np.load(io.BytesIO(data)) as stored:
        entries = {key: stored[key] for key in stored.files}
    entries.update(arrays)
    buffer = io.BytesIO()
    np.savez(buffer, **entries)
    return buffer.getvalue()


def test_model_files_without_a_vocabulary_still_load() -> None:
    """A file written before vocabularies existed has no symbols/unknown_symbol settings."""
    codes, _ = data()
    model = hmm.CategoricalHMM(2, n_iter=3, random_state=0).fit(codes, LENGTHS)
    good = persistence.dumps(model)
    with np.load(io.BytesIO(good)) as stored:
        header = json.loads(str(stored["header"][()]))
    for key in ("symbols", "unknown_symbol"):
        del header["params"][key]
    old = _rewritten(good, header=np.array(json.dumps(header, sort_keys=True)))
    loaded = persistence.loads(old)
    assert loaded.symbols is None
    assert loaded.score(codes, LENGTHS) == model.score(codes, LENGTHS)


@pytest.mark.parametrize(
    ("symbols", "message"),
    [
        (np.array(["a", "a", "b"]), r"symbols\[1\] is 'a', which is symbols\[0\] already"),
        (np.array(["a", "b"]), "n_features=3 but symbols has 2 symbols"),
        (np.array([["a", "b", "c"]]), "not a 1-D array of symbols"),
        (np.array(["a", "b", "x" * (MAX_SYMBOL_CHARS + 1)]), "not a 1-D array of symbols"),
        (np.array([1.0, 2.0, 3.0]), "has dtype float64, not a string"),
    ],
)
def test_a_tampered_vocabulary_is_refused(symbols: np.ndarray, message: str) -> None:
    model = hmm.CategoricalHMM(2, n_iter=2, random_state=0, symbols=["a", "b", "c"]).fit(
        np.array([["a"], ["b"], ["c"], ["a"]])
    )
    bad = _rewritten(persistence.dumps(model), **{"param.symbols": symbols})
    with pytest.raises(ValueError, match=message):
        persistence.loads(bad, source="bad.npz")


def test_the_vocabulary_entry_is_sized_before_it_is_inflated() -> None:
    model = hmm.CategoricalHMM(2, symbols=["a", "b"])
    good = persistence.dumps(model)
    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(good)) as source, zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            payload = source.read(info)
            if info.filename == "param.symbols.npy":
                payload = payload + bytes(4 * MAX_SYMBOL_CHARS * MAX_SYMBOLS + 10_000)
            target.writestr(info.filename, payload)
    with pytest.raises(persistence.InvalidModelFileError, match=r"param\.symbols\.npy' declares \d+ bytes, more than"):
        persistence.loads(buffer.getvalue())
