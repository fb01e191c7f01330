"""Decoding a Spark DataFrame (predict, predict_proba, score_samples, predict_filtered_proba, transform)
on a real local[2] equals the in-memory library on the same sequences, bit for bit."""

import numpy as np
import pytest

import hmm
from hmm.core.sequences import InvalidSequenceError

pytestmark = pytest.mark.spark


def categorical_model(n_components=3, n_features=5, seed=1, **kwargs):
    rng = np.random.default_rng(seed)
    model = hmm.CategoricalHMM(n_components, n_features=n_features, **kwargs)
    model.startprob_ = rng.dirichlet(np.ones(n_components))
    model.transmat_ = rng.dirichlet(np.ones(n_components), size=n_components)
    model.emissionprob_ = rng.dirichlet(np.ones(n_features), size=n_components)
    return model


def categorical_frame(spark, n_sequences=300, n_features=5, seed=0, partitions=3):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 40, size=n_sequences)
    rows = [(i, "x" * (i % 3), rng.integers(0, n_features, size=n).tolist()) for i, n in enumerate(lengths)]
    return spark.createDataFrame(rows, "id long, tag string, sequence array<int>").repartition(partitions, "id")


def arrays_of(rows, column="sequence", width=None):
    """X, lengths of the sequences of collected rows, in their order."""
    sequences = [np.asarray(r[column]) for r in rows]
    X = np.concatenate(sequences)
    return (X[:, None] if width is None else X.reshape(-1, width)), np.array([len(s) for s in sequences])


def stacked(rows, column):
    """A column of T x K arrays of collected rows, as one (sum T) x K array."""
    return np.concatenate([np.asarray(r[column], dtype=np.float64) for r in rows])


def hand_filter(model, X, lengths):
    """The forward pass written out in numpy: alpha_t normalised to sum 1 at every t."""
    out = []
    for sequence in np.split(X, np.cumsum(lengths)[:-1]):
        b = model.emissionprob_[:, sequence[:, 0]].T
        alpha = model.startprob_ * b[0]
        alpha = alpha / alpha.sum()
        out.append(alpha)
        for t in range(1, len(sequence)):
            alpha = (alpha @ model.transmat_) * b[t]
            alpha = alpha / alpha.sum()
            out.append(alpha)
    return np.array(out)


def test_transform_equals_the_library_bit_for_bit(spark):
    model = categorical_model()
    df = categorical_frame(spark)
    out = model.transform(df, filtered_proba_col="filtered").collect()
    assert len(out) == 300 and sorted(r["id"] for r in out) == list(range(300))
    assert all(r["tag"] == "x" * (r["id"] % 3) for r in out)  # the row's own columns are kept
    X, lengths = arrays_of(out)
    states = np.concatenate([r["state"] for r in out])
    np.testing.assert_array_equal(states, model.predict(X, lengths))
    assert np.array_equal(stacked(out, "proba"), model.predict_proba(X, lengths))
    assert np.array_equal(stacked(out, "filtered"), model.predict_filtered_proba(X, lengths))
    log_likelihoods = [r["log_likelihood"] for r in out]
    assert log_likelihoods == [model.score(np.asarray(r["sequence"])[:, None]) for r in out]
    assert log_likelihoods == [model.score_samples(np.asarray(r["sequence"])[:, None])[0] for r in out]


def test_filtered_probabilities_are_a_forward_pass_by_hand(spark):
    model = categorical_model(n_components=4, n_features=6, seed=7)
    out = model.predict_filtered_proba(categorical_frame(spark, 80, 6, seed=3)).collect()
    X, lengths = arrays_of(out)
    filtered = stacked(out, "filtered_proba")
    np.testing.assert_allclose(filtered, hand_filter(model, X, lengths), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(filtered.sum(axis=1), 1.0, rtol=1e-13)
    # The last frame of a sequence has seen everything: there the filter is the posterior.
    last = np.cumsum(lengths) - 1
    np.testing.assert_allclose(filtered[last], model.predict_proba(X, lengths)[last], rtol=1e-10, atol=1e-14)


def test_the_four_methods_add_their_columns_named_as_asked(spark):
    model = categorical_model()
    df = categorical_frame(spark, 60)
    assert model.predict(df).columns == ["id", "tag", "sequence", "state"]
    assert model.predict_proba(df, proba_col="p").columns == ["id", "tag", "sequence", "p"]
    scored = model.score_samples(df, log_likelihood_col="ll", proba_col="post")
    assert scored.columns == ["id", "tag", "sequence", "ll", "post"]
    assert model.predict_filtered_proba(df).columns == ["id", "tag", "sequence", "filtered_proba"]
    only = model.transform(df, state_col=None, proba_col=None, log_likelihood_col="score")
    assert only.columns == ["id", "tag", "sequence", "score"]
    rows = scored.collect()
    X, lengths = arrays_of(rows)
    total, posteriors = model.score_samples(X, lengths)
    assert np.array_equal(stacked(rows, "post"), posteriors)
    assert sum(r["ll"] for r in rows) == pytest.approx(total, rel=1e-12)
    predicted = model.predict(df, state_col="path").collect()
    X, lengths = arrays_of(predicted)
    np.testing.assert_array_equal(np.concatenate([r["path"] for r in predicted]), model.predict(X, lengths))


def test_map_decoding_on_a_dataframe_is_the_librarys(spark):
    model = categorical_model(algorithm="map")
    rows = model.predict(categorical_frame(spark, 100)).collect()
    X, lengths = arrays_of(rows)
    np.testing.assert_array_equal(np.concatenate([r["state"] for r in rows]), model.predict(X, lengths))


@pytest.mark.parametrize(
    ("model_class", "column_type", "n_features", "kwargs"),
    [
        (hmm.GaussianHMM, "array<array<double>>", 3, {"covariance_type": "full"}),
        (hmm.GaussianHMM, "array<double>", 1, {"covariance_type": "diag"}),
        (hmm.PoissonHMM, "array<array<int>>", 2, {}),
        (hmm.GMMHMM, "array<array<double>>", 2, {"n_mix": 2}),
    ],
)
def test_vector_models_on_a_dataframe_equal_the_library(spark, model_class, column_type, n_features, kwargs):
    rng = np.random.default_rng(4)
    lengths = rng.integers(1, 30, size=150)
    shift = np.where(rng.random((lengths.sum(), 1)) < 0.5, 0.0, 4.0)
    if model_class is hmm.PoissonHMM:
        X = rng.poisson(1.0 + shift, size=(lengths.sum(), n_features))
    else:
        X = rng.normal(size=(lengths.sum(), n_features)) + shift
    model = model_class(2, random_state=0, n_iter=3, **kwargs).fit(X, lengths)
    sequences = np.split(X, np.cumsum(lengths)[:-1])
    rows = [(i, (s[:, 0] if column_type == "array<double>" else s).tolist()) for i, s in enumerate(sequences)]
    df = spark.createDataFrame(rows, f"id long, sequence {column_type}").repartition(2, "id")
    out = model.transform(df, filtered_proba_col="filtered").collect()
    X, lengths = arrays_of(out, width=n_features)
    X = X.astype(np.float64) if model_class is not hmm.PoissonHMM else X
    np.testing.assert_array_equal(np.concatenate([r["state"] for r in out]), model.predict(X, lengths))
    assert np.array_equal(stacked(out, "proba"), model.predict_proba(X, lengths))
    assert np.array_equal(stacked(out, "filtered"), model.predict_filtered_proba(X, lengths))
    log_likelihoods = np.array([r["log_likelihood"] for r in out])
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    in_memory = model.infer_batch(model.check_batch(X, offsets), offsets, ["log_likelihood"])["log_likelihood"]
    assert np.array_equal(log_likelihoods, in_memory)
    # One sequence alone: the emission model's BLAS calls on a tiny array may round the last bit differently.
    alone = [model.score(sequence) for sequence in np.split(X, np.cumsum(lengths)[:-1])]
    np.testing.assert_allclose(log_likelihoods, alone, rtol=1e-13)


def test_an_empty_dataframe_gives_an_empty_dataframe(spark):
    model = categorical_model()
    df = spark.createDataFrame([], "id long, sequence array<int>")
    assert model.transform(df).collect() == []


def test_bad_requests_are_refused_before_spark_runs(spark):
    model = categorical_model()
    df = categorical_frame(spark, 10)
    with pytest.raises(InvalidSequenceError, match="the DataFrame has no column 'seq'"):
        model.predict(df, sequence_col="seq")
    with pytest.raises(ValueError, match=r"already has column\(s\) \['tag'\]"):
        model.predict(df, state_col="tag")
    with pytest.raises(ValueError, match="must differ"):
        model.transform(df, state_col="a", proba_col="a")
    with pytest.raises(ValueError, match="no output column"):
        model.transform(df, state_col=None, log_likelihood_col=None, proba_col=None)
    with pytest.raises(ValueError, match="lengths must not be given with a DataFrame"):
        model.predict(df, [3])
    with pytest.raises(TypeError, match="transform takes a Spark DataFrame"):
        model.transform(np.zeros((3, 1), dtype=int))


def test_a_bad_row_fails_the_job_with_the_models_message(spark):
    model = categorical_model()
    df = spark.createDataFrame([(1, [0, 1]), (2, [1, 9])], "id long, sequence array<int>").coalesce(1)
    with pytest.raises(Exception, match=r"sequence 1, position 1: symbol 9 is outside \[0, 5\)"):
        model.predict(df).collect()
