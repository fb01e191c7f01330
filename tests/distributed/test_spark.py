"""The E-step on a real local[2] Spark equals the in-memory library."""

import numpy as np
import pytest

import hmm
from hmm.core.sequences import InvalidSequenceError
from hmm.distributed import spark as hmm_spark

pytestmark = pytest.mark.spark


def categorical_rows(seed=0, n_sequences=300, n_features=5):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 30, size=n_sequences)
    X = rng.integers(0, n_features, size=int(lengths.sum()))
    X[:n_features] = np.arange(n_features)  # every symbol occurs
    return X, lengths


def to_dataframe(spark, X, lengths, partitions=3):
    sequences = np.split(X, np.cumsum(lengths)[:-1])
    rows = [(i, s.tolist()) for i, s in enumerate(sequences)]
    return (
        spark.createDataFrame(rows, "id long, sequence array<int>")
        .repartition(partitions, "id")
        .sortWithinPartitions("id")
    )


def local_order(df):
    """X, lengths in the DataFrame's own row order (what Spark will iterate)."""
    rows = df.collect()
    return np.concatenate([r["sequence"] for r in rows])[:, None], np.array([len(r["sequence"]) for r in rows])


def start(n_components, n_features, seed=1):
    rng = np.random.default_rng(seed)
    return {
        "startprob_": rng.dirichlet(np.ones(n_components)),
        "transmat_": rng.dirichlet(np.ones(n_components), size=n_components),
        "emissionprob_": rng.dirichlet(np.ones(n_features), size=n_components),
    }


def with_params(model, params):
    for name, value in params.items():
        setattr(model, name, value.copy())
    return model


def test_dataframe_fit_equals_in_memory_fit_after_every_iteration(spark):
    X, lengths = categorical_rows()
    df = to_dataframe(spark, X, lengths).cache()
    X, lengths = local_order(df)
    params = start(3, 5)
    on_spark = with_params(hmm.CategoricalHMM(3, n_features=5, init_params="", n_iter=1), params)
    in_memory = with_params(hmm.CategoricalHMM(3, n_features=5, init_params="", n_iter=1), params)
    for _ in range(4):
        on_spark.fit(df)
        in_memory.fit(X, lengths)
        for name in params:
            np.testing.assert_allclose(getattr(on_spark, name), getattr(in_memory, name), rtol=1e-9, atol=1e-15)
        assert on_spark.monitor_.history[-1] == pytest.approx(in_memory.monitor_.history[-1], rel=1e-12)
    assert on_spark.score(df) == pytest.approx(in_memory.score(X, lengths), rel=1e-12)


def test_random_initialisation_on_a_dataframe_matches(spark):
    X, lengths = categorical_rows(seed=2)
    df = to_dataframe(spark, X, lengths)
    X, lengths = local_order(df)
    on_spark = hmm.CategoricalHMM(3, random_state=4, n_iter=5, tol=-np.inf).fit(df)
    in_memory = hmm.CategoricalHMM(3, random_state=4, n_iter=5, tol=-np.inf).fit(X, lengths)
    assert on_spark.n_features == in_memory.n_features == 5
    np.testing.assert_allclose(list(on_spark.monitor_.history), list(in_memory.monitor_.history), rtol=1e-9)
    np.testing.assert_allclose(on_spark.emissionprob_, in_memory.emissionprob_, rtol=1e-9)


def test_rerun_gives_bit_identical_statistics(spark):
    X, lengths = categorical_rows(seed=3)
    df = to_dataframe(spark, X, lengths, partitions=4)
    model = with_params(hmm.CategoricalHMM(3, n_features=5), start(3, 5))
    model._check()
    first = hmm_spark.e_step(model, df)
    second = hmm_spark.e_step(model, df)
    assert first.to_bytes() == second.to_bytes()
    assert first.n_sequences == len(lengths) and first.n_observations == lengths.sum()


def test_bad_row_is_named_by_its_id(spark):
    rows = [(10, [0, 1, 2]), (11, [1, 9, 0]), (12, [2, 2])]
    df = spark.createDataFrame(rows, "id long, sequence array<int>").coalesce(1)
    model = with_params(hmm.CategoricalHMM(3, n_features=5), start(3, 5))
    model._check()
    with pytest.raises(InvalidSequenceError, match=r"sequence id=11, position 1: symbol 9 is outside \[0, 5\)"):
        hmm_spark.e_step(model, df, id_col="id")


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([(1, [0, 1]), (2, [])], r"sequence 1: the sequence is empty"),
        ([(1, [0, 1]), (2, None)], r"sequence 1: the sequence is null"),
        ([(1, [0, None])], r"sequence 0, position 1: observation is null"),
    ],
)
def test_empty_and_null_sequences_are_refused(spark, rows, message):
    df = spark.createDataFrame(rows, "id long, sequence array<int>").coalesce(1)
    model = with_params(hmm.CategoricalHMM(3, n_features=5), start(3, 5))
    model._check()
    with pytest.raises(InvalidSequenceError, match=message):
        hmm_spark.e_step(model, df)


def test_lengths_with_a_dataframe_is_refused(spark):
    df = spark.createDataFrame([(1, [0, 1])], "id long, sequence array<int>")
    with pytest.raises(ValueError, match="lengths must not be given with a DataFrame"):
        hmm.CategoricalHMM(2).fit(df, [2])


def vector_rows(seed, n_sequences, n_features, integer):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 25, size=n_sequences)
    if integer:
        X = rng.poisson(np.where(rng.random((lengths.sum(), 1)) < 0.5, 2.0, 9.0), size=(lengths.sum(), n_features))
    else:
        X = rng.normal(size=(lengths.sum(), n_features)) + np.where(rng.random((lengths.sum(), 1)) < 0.5, -2.0, 2.0)
    return X, lengths


@pytest.mark.parametrize(
    ("model_class", "integer", "column_type", "kwargs"),
    [
        (hmm.PoissonHMM, True, "array<array<int>>", {}),
        (hmm.GaussianHMM, False, "array<array<double>>", {"covariance_type": "full"}),
        (hmm.GaussianHMM, False, "array<double>", {"covariance_type": "diag"}),
        (hmm.GMMHMM, False, "array<array<double>>", {"n_mix": 2}),
    ],
)
def test_vector_emissions_on_a_dataframe_equal_in_memory(spark, model_class, integer, column_type, kwargs):
    n_features = 1 if column_type == "array<double>" else 2
    X, lengths = vector_rows(5, 120, n_features, integer)
    sequences = np.split(X, np.cumsum(lengths)[:-1])
    rows = [(i, (s[:, 0] if n_features == 1 else s).tolist()) for i, s in enumerate(sequences)]
    df = spark.createDataFrame(rows, f"id long, sequence {column_type}").coalesce(2)
    X, lengths = (
        np.concatenate([np.asarray(r["sequence"], dtype=float).reshape(len(r["sequence"]), -1) for r in df.collect()]),
        np.array([len(r["sequence"]) for r in df.collect()]),
    )
    start = model_class(2, random_state=3, n_iter=1, **kwargs).fit(X, lengths)
    names = ["startprob_", "transmat_", *start._fitted_emission_attributes]
    on_spark = model_class(2, init_params="", n_iter=3, tol=-np.inf, **kwargs)
    in_memory = model_class(2, init_params="", n_iter=3, tol=-np.inf, **kwargs)
    for model in (on_spark, in_memory):
        for name in names:
            setattr(model, name, np.copy(getattr(start, name)))
    on_spark.fit(df)
    in_memory.fit(X, lengths)
    np.testing.assert_allclose(list(on_spark.monitor_.history), list(in_memory.monitor_.history), rtol=1e-9)
    for name in names:
        np.testing.assert_allclose(getattr(on_spark, name), getattr(in_memory, name), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(
    ("column_type", "rows", "dtype", "width"),
    [
        ("array<int>", [[0, 1, 2], [3], [4, 4]], np.int32, None),
        ("array<array<double>>", [[[0.5, 1.0], [2.0, -1.5]], [[3.0, 0.25]]], np.float64, 2),
    ],
)
def test_the_sample_is_the_dataframe_rows_in_order_with_their_types(spark, column_type, rows, dtype, width):
    many = rows * 40
    df = spark.createDataFrame(list(enumerate(many)), f"id long, sequence {column_type}").repartition(3, "id")
    in_order = [r["sequence"] for r in df.collect()]
    X, offsets = hmm_spark.collect_sample(df, "sequence", width is None, n_sequences=len(many) + 5)
    assert X.dtype == dtype
    assert np.diff(offsets).tolist() == [len(s) for s in in_order]
    expected = np.concatenate([np.asarray(s, dtype=dtype) for s in in_order])
    np.testing.assert_array_equal(X, expected if width is None else expected.reshape(-1, width))
    X, offsets = hmm_spark.collect_sample(df, "sequence", width is None, n_sequences=7)
    assert len(offsets) == 8 and len(X) == offsets[-1]


@pytest.mark.parametrize("model", [hmm.CategoricalHMM(2), hmm.GaussianHMM(2)])
def test_fitting_an_empty_dataframe_is_refused(spark, model):
    df = spark.createDataFrame([], "id long, sequence array<double>")
    with pytest.raises(InvalidSequenceError, match="the DataFrame has no sequences"):
        model.fit(df)


def spark_jobs(spark, group, action):
    """Run ``action`` in a Spark job group; returns the number of jobs it ran."""
    spark.sparkContext.setJobGroup(group, group)
    try:
        action()
    finally:
        spark.sparkContext.setLocalProperty("spark.jobGroup.id", None)
    return len(spark.sparkContext.statusTracker().getJobIdsForGroup(group))


def test_restarts_on_a_dataframe_read_it_once_per_iteration_and_equal_separate_fits(spark):
    X, lengths = categorical_rows(seed=6)
    df = to_dataframe(spark, X, lengths).cache()
    df.count()  # the cache's own jobs, before the jobs are counted
    settings = dict(n_iter=4, tol=-np.inf)
    restarted = hmm.CategoricalHMM(3, n_init=3, random_state=20, **settings)
    single = hmm.CategoricalHMM(3, random_state=20, **settings)
    # One pass per iteration whatever the number of candidates: as many Spark jobs as one fit.
    assert spark_jobs(spark, "restarts", lambda: restarted.fit(df)) == spark_jobs(
        spark, "single", lambda: single.fit(df)
    )
    separate = [hmm.CategoricalHMM(3, random_state=seed, **settings).fit(df) for seed in (20, 21, 22)]
    chosen = separate[int(np.argmax([model.monitor_.history[-1] for model in separate]))]
    for name in ("startprob_", "transmat_", "emissionprob_"):
        np.testing.assert_array_equal(getattr(restarted, name), getattr(chosen, name), err_msg=name)
    assert list(restarted.monitor_.history) == list(chosen.monitor_.history)
    in_memory = hmm.CategoricalHMM(3, n_init=3, random_state=20, **settings).fit(*local_order(df))
    np.testing.assert_allclose(restarted.emissionprob_, in_memory.emissionprob_, rtol=1e-9)
