"""Assertions shared by the model tests: hmm-em against hmmlearn, the oracle."""

import numpy as np
import pytest


def assert_same_inference(ours, theirs, X, lengths):
    """With identical parameters: scores, posteriors, both decoders, frame densities, AIC and BIC agree."""
    assert ours.score(X, lengths) == pytest.approx(theirs.score(X, lengths), rel=1e-12)
    log_prob, posteriors = ours.score_samples(X, lengths)
    their_log_prob, their_posteriors = theirs.score_samples(X, lengths)
    assert log_prob == pytest.approx(their_log_prob, rel=1e-12)
    np.testing.assert_allclose(posteriors, their_posteriors, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ours.predict_proba(X, lengths), their_posteriors, atol=1e-12)
    for algorithm in ("viterbi", "map"):
        log_prob, states = ours.decode(X, lengths, algorithm=algorithm)
        their_log_prob, their_states = theirs.decode(X, lengths, algorithm=algorithm)
        np.testing.assert_array_equal(states, their_states)
        assert log_prob == pytest.approx(their_log_prob, rel=1e-12)
        if algorithm == "viterbi":
            np.testing.assert_array_equal(ours.predict(X, lengths), their_states)
    np.testing.assert_allclose(ours._frame_log_likelihood(X), theirs._compute_log_likelihood(X), rtol=1e-12, atol=1e-12)
    assert ours.aic(X, lengths) == pytest.approx(theirs.aic(X, lengths), rel=1e-12)
    assert ours.bic(X, lengths) == pytest.approx(theirs.bic(X, lengths), rel=1e-12)
