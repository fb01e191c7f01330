"""Bad input gets a ValueError naming the sequence, position, field and rule, before any work."""

import numpy as np
import pytest

import hmm
from hmm.core.sequences import InvalidParameterError, InvalidSequenceError


def fitted_model():
    model = hmm.CategoricalHMM(2, n_features=3)
    model.startprob_ = np.array([0.5, 0.5])
    model.transmat_ = np.array([[0.9, 0.1], [0.2, 0.8]])
    model.emissionprob_ = np.array([[0.5, 0.5, 0.0], [0.1, 0.1, 0.8]])
    return model


SYMBOLS = np.array([[0], [1], [2], [0], [1]])


@pytest.mark.parametrize(
    ("lengths", "message"),
    [
        ([2, 2], r"lengths sum to 4 but X has 5 samples"),
        ([3, 0, 2], r"sequence 1: length 0 is not positive"),
        ([6, -1], r"sequence 1: length -1 is not positive"),
        ([2.5, 2.5], r"lengths must be integers"),
        ([], r"lengths must be a non-empty 1-D sequence"),
    ],
)
def test_bad_lengths(lengths, message):
    with pytest.raises(InvalidSequenceError, match=message):
        hmm.CategoricalHMM(2).fit(SYMBOLS, lengths)


def test_symbol_outside_range_names_sequence_and_position():
    X = np.array([[0], [1], [2], [0], [7], [1]])
    with pytest.raises(InvalidSequenceError, match=r"sequence 1, position 1: symbol 7 is outside \[0, 3\)"):
        fitted_model().score(X, [3, 3])


def test_negative_symbol():
    X = np.array([[0], [1], [-2], [0]])
    with pytest.raises(InvalidSequenceError, match=r"sequence 0, position 2: symbol -2 is negative"):
        hmm.CategoricalHMM(2).fit(X, [4])


def test_float_symbols_are_refused():
    with pytest.raises(InvalidSequenceError, match=r"X must hold integer symbols, got dtype float64"):
        hmm.CategoricalHMM(2).fit(np.array([[0.0], [1.5]]))


def test_wrong_shape():
    with pytest.raises(InvalidSequenceError, match=r"X must have shape \(n_samples, 1\).*got shape \(3, 2\)"):
        hmm.CategoricalHMM(2).fit(np.zeros((3, 2), dtype=int))


def test_probability_rows_must_sum_to_one():
    model = fitted_model()
    model.transmat_ = np.array([[0.9, 0.1], [0.2, 0.7]])
    with pytest.raises(InvalidParameterError, match=r"transmat_ row 1 sums to 0.9; each row must sum to 1"):
        model.score(SYMBOLS)


def test_startprob_must_sum_to_one():
    model = fitted_model()
    model.startprob_ = np.array([0.5, 0.6])
    with pytest.raises(InvalidParameterError, match=r"startprob_ must sum to 1 \(got 1.1\)"):
        model.predict(SYMBOLS)


def test_wrong_parameter_shape():
    model = fitted_model()
    model.emissionprob_ = np.full((3, 3), 1 / 3)
    with pytest.raises(InvalidParameterError, match=r"emissionprob_ must have shape \(2, 3\), got \(3, 3\)"):
        model.score(SYMBOLS)


def test_negative_probability():
    model = fitted_model()
    model.emissionprob_ = np.array([[1.2, -0.2, 0.0], [0.1, 0.1, 0.8]])
    with pytest.raises(InvalidParameterError, match=r"emissionprob_ contains negative values"):
        model.score(SYMBOLS)


def test_impossible_observation_names_the_frame():
    # Symbol 2 has probability 0 in state 0, and state 1 cannot be reached.
    model = fitted_model()
    model.startprob_ = np.array([1.0, 0.0])
    model.transmat_ = np.array([[1.0, 0.0], [0.0, 1.0]])
    X = np.array([[0], [1], [0], [1], [2], [0]])
    with pytest.raises(InvalidSequenceError, match=r"sequence 1, position 1: X value 2 has probability 0"):
        model.score(X, [3, 3])


def test_unknown_settings_are_refused():
    with pytest.raises(ValueError, match=r"implementation must be one of \['log', 'scaling'\]"):
        hmm.CategoricalHMM(2, implementation="fast").fit(SYMBOLS)
    with pytest.raises(ValueError, match=r"Unknown decoder 'best'"):
        fitted_model().decode(SYMBOLS, algorithm="best")
    with pytest.raises(ValueError, match=r"n_components must be a positive integer"):
        hmm.CategoricalHMM(0).fit(SYMBOLS)
