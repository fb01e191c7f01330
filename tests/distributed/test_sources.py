"""Parquet data as splits: listing, row-group splits, batch sizes, and both engines on file and S3 data."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import hmm
from hmm.core.sequences import InvalidSequenceError
from hmm.distributed import sources
from hmm.distributed.sources import ParquetSequences, Split
from tests.conftest import write_categorical_parquet


def model_for(n_features=6):
    model = hmm.CategoricalHMM(3, n_features=n_features, random_state=3, init_params="ste")
    model._init(np.arange(n_features)[:, None], np.array([n_features]))
    model._check()
    return model


def assert_same_statistics(a, b, rtol=0.0):
    for x, y in [(a.start, b.start), (a.trans, b.trans), (a["obs"], b["obs"])]:
        np.testing.assert_allclose(x, y, rtol=rtol, atol=0)
    assert a.log_likelihood == pytest.approx(b.log_likelihood, rel=rtol, abs=0)


def one_file(path, n_sequences=300, row_group_size=None, seed=5):
    """One Parquet file of categorical sequences with the given row-group size; returns its rows."""
    rng = np.random.default_rng(seed)
    rows = [rng.integers(0, 6, size=rng.integers(1, 30)).tolist() for _ in range(n_sequences)]
    rows[0] = list(range(6))
    table = pa.table({"id": pa.array(range(n_sequences), pa.int64()), "sequence": pa.array(rows, pa.list_(pa.int32()))})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=row_group_size)
    return rows


def test_splits_are_the_data_files_in_path_order_without_hidden_ones(tmp_path):
    data = tmp_path / "data"
    for name in ("part-1.parquet", "part-0.parquet", "nested/part-2.parquet"):
        one_file(data / name, n_sequences=5)
    (data / "_SUCCESS").touch()
    (data / ".part-0.parquet.crc").write_bytes(b"crc")
    (data / "_temporary").mkdir()
    (data / "_temporary" / "part-9.parquet").write_bytes(b"half written")
    splits = ParquetSequences(f"file://{data}", engine="local").splits()
    names = ("nested/part-2.parquet", "part-0.parquet", "part-1.parquet")
    stats = [(data / n).stat() for n in names]
    # Each split carries its file's size and modification time: what a training pins at iteration 0.
    assert splits == [
        Split(str(data / n), None, s.st_size, file_size=s.st_size, mtime_ns=s.st_mtime_ns)
        for n, s in zip(names, stats, strict=True)
    ]
    single = ParquetSequences(f"file://{data}/part-1.parquet", engine="local")
    assert single.splits() == [splits[2]]
    assert single.scan(model_for()).n_sequences == 5


def test_splits_are_grouped_into_tasks_of_about_equal_bytes_in_order(monkeypatch):
    monkeypatch.setattr(sources, "SPLIT_BYTES", 100)
    splits = list(enumerate(Split(f"f{i}", None, size) for i, size in enumerate([10, 10, 10, 10, 40, 5, 5, 10])))
    groups = sources.task_groups(splits, parallelism=2)
    assert [[index for index, _ in group] for group in groups] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    # More data than SPLIT_BYTES per slot: one task per SPLIT_BYTES.
    monkeypatch.setattr(sources, "SPLIT_BYTES", 25)
    groups = sources.task_groups(splits, parallelism=1)
    assert [[index for index, _ in group] for group in groups] == [[0, 1], [2, 3], [4], [5, 6, 7]]
    assert sources.task_groups(splits[:1], parallelism=8) == [splits[:1]]
    equal = list(enumerate(Split(f"f{i}", None, 10) for i in range(8)))
    assert sources.task_groups(equal, parallelism=100) == [[item] for item in equal]


def test_a_data_uri_without_parquet_files_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "_SUCCESS").touch()
    with pytest.raises(InvalidSequenceError, match=r"data URI file://.*/empty has no Parquet files"):
        ParquetSequences(f"file://{tmp_path}/empty", engine="local").splits()
    with pytest.raises(InvalidSequenceError, match=r"data URI file://.*/absent does not exist"):
        ParquetSequences(f"file://{tmp_path}/absent", engine="local").splits()


def test_large_files_are_cut_into_runs_of_row_groups_that_cover_every_row(tmp_path, monkeypatch):
    path = tmp_path / "data" / "part-0.parquet"
    rows = one_file(path, n_sequences=1000, row_group_size=100)
    uri = f"file://{path.parent}"
    whole = ParquetSequences(uri, engine="local")
    model = model_for()
    unsplit = whole.statistics(model)
    group_bytes = sources._compressed_bytes(pq.ParquetFile(path).metadata.row_group(0))
    monkeypatch.setattr(sources, "SPLIT_BYTES", 3 * group_bytes)
    splits = whole.splits()
    assert len(splits) >= 3
    covered = [g for split in splits for g in split.row_groups]
    assert covered == list(range(10))
    scan = whole.scan(model)
    assert (scan.n_sequences, scan.n_observations) == (1000, sum(map(len, rows)))
    # The same sums in another grouping: equal to rounding.
    assert_same_statistics(whole.statistics(model), unsplit, rtol=1e-12)


def test_wide_rows_are_read_in_smaller_batches(tmp_path, monkeypatch):
    path = tmp_path / "data" / "part-0.parquet"
    one_file(path, n_sequences=400)
    source = ParquetSequences(f"file://{path.parent}", engine="local")
    model = model_for()
    before = source.records(model, statistics=True)
    size = pq.ParquetFile(path).metadata.row_group(0).total_byte_size
    monkeypatch.setattr(sources, "BATCH_BYTES", size // 8)
    after = source.records(model, statistics=True)
    rows_per_batch = 400 * (size // 8) // size  # rows whose uncompressed bytes fit BATCH_BYTES
    assert len(before) == 1 and len(after) == -(-400 // rows_per_batch)
    assert {r["n_sequences"] for r in after[:-1]} == {rows_per_batch}
    assert_same_statistics(source.statistics(model), sources.sum_statistics(model, before), rtol=1e-12)


def test_a_later_file_without_the_column_is_named(tmp_path):
    data = tmp_path / "data"
    one_file(data / "part-0.parquet", n_sequences=5)
    pq.write_table(pa.table({"id": [1], "symbols": pa.array([[1]], pa.list_(pa.int32()))}), data / "part-1.parquet")
    with pytest.raises(InvalidSequenceError, match=r"file part-1.parquet: has no column 'sequence' \(columns"):
        ParquetSequences(f"file://{data}", engine="local").statistics(model_for())


def test_a_file_that_is_not_parquet_is_named(tmp_path):
    data = tmp_path / "data"
    one_file(data / "part-0.parquet", n_sequences=5)
    (data / "notes.csv").write_text("id,sequence\n1,2\n")
    with pytest.raises(InvalidSequenceError, match=r"^file notes.csv: is not a readable Parquet file \(.*magic bytes"):
        ParquetSequences(f"file://{data}", engine="local").statistics(model_for())


def test_data_without_sequences_is_refused(tmp_path, file_root):
    from hmm.training import steps
    from hmm.training.spec import TrainingSpec
    from hmm.training.store import open_store

    data = tmp_path / "data"
    data.mkdir()
    empty = pa.table({"id": pa.array([], pa.int64()), "sequence": pa.array([], pa.list_(pa.int32()))})
    pq.write_table(empty, data / "part-0.parquet")
    with pytest.raises(InvalidSequenceError, match=r"^data URI file://.*/data has no sequences$"):
        ParquetSequences(f"file://{data}", engine="local").sample(model_for())
    spec = TrainingSpec.from_dict({"model": "categorical", "n_components": 2, "data": f"file://{data}", "seed": 1})
    with pytest.raises(InvalidSequenceError, match=r"^data file://.*/data has no sequences$"):
        steps.init_training(file_root, "empty", spec, engine="local")
    assert open_store(file_root).list("") == []


def test_a_bad_row_is_named_by_file_batch_and_id(tmp_path):
    data = tmp_path / "data"
    one_file(data / "part-0.parquet", n_sequences=5)
    table = pa.table({"id": [70, 71], "sequence": pa.array([[0, 1], [1, 9]], pa.list_(pa.int32()))})
    pq.write_table(table, data / "part-1.parquet")
    scan = ParquetSequences(f"file://{data}", id_col="id", engine="local").scan(model_for())
    assert scan.errors == [
        "file part-1.parquet, batch 0: sequence id=71, position 1: symbol 9 is outside [0, 6) "
        "(n_features=6; 1 observation(s) break this)"
    ]


def test_the_sample_is_the_first_sequences_in_split_order(tmp_path):
    data = tmp_path / "data"
    first = one_file(data / "part-0.parquet", n_sequences=7, seed=1)
    second = one_file(data / "part-1.parquet", n_sequences=7, seed=2)
    X, offsets = ParquetSequences(f"file://{data}", engine="local").sample(model_for(), n_sequences=10)
    expected = first + second[:3]
    assert np.diff(offsets).tolist() == [len(s) for s in expected]
    assert X.ravel().tolist() == [symbol for s in expected for symbol in s]


@pytest.mark.spark
def test_spark_engine_equals_local_engine_bit_for_bit_on_split_files(spark, tmp_path, monkeypatch):
    data = tmp_path / "data"
    one_file(data / "part-0.parquet", n_sequences=900, row_group_size=100, seed=1)
    one_file(data / "part-1.parquet", n_sequences=200, seed=2)
    group_bytes = sources._compressed_bytes(pq.ParquetFile(data / "part-0.parquet").metadata.row_group(0))
    monkeypatch.setattr(sources, "SPLIT_BYTES", 4 * group_bytes)
    model = model_for()
    local = ParquetSequences(f"file://{data}", engine="local")
    on_spark = ParquetSequences(f"file://{data}", engine="spark", spark=spark)
    assert len(on_spark.splits()) >= 4
    assert_same_statistics(on_spark.statistics(model), local.statistics(model))
    assert on_spark.scan(model) == local.scan(model)


def test_spark_engine_on_a_spark_connect_session_equals_local_engine_bit_for_bit(connect_spark, tmp_path, monkeypatch):
    """Spark Connect (Spark 4 only: pyspark 3.5 ships no Connect server) has no RDDs: the same DataFrame path."""
    from hmm.distributed.spark import default_parallelism, is_connect

    data = tmp_path / "data"
    one_file(data / "part-0.parquet", n_sequences=900, row_group_size=100, seed=1)
    one_file(data / "part-1.parquet", n_sequences=200, seed=2)
    group_bytes = sources._compressed_bytes(pq.ParquetFile(data / "part-0.parquet").metadata.row_group(0))
    monkeypatch.setattr(sources, "SPLIT_BYTES", 4 * group_bytes)
    model = model_for()
    local = ParquetSequences(f"file://{data}", engine="local")
    remote = ParquetSequences(f"file://{data}", engine="spark", spark=connect_spark)
    assert is_connect(connect_spark) and default_parallelism(connect_spark) == 2
    assert len(remote.splits()) >= 4
    assert_same_statistics(remote.statistics(model), local.statistics(model))
    assert remote.scan(model) == local.scan(model)
    one_file(data / "part-2.parquet", n_sequences=3, seed=3)
    (data / "part-3.parquet").write_bytes(b"not parquet")  # an error record comes back through Connect too
    assert remote.scan(model) == local.scan(model) and "part-3.parquet" in remote.scan(model).errors[0]


@pytest.mark.spark
def test_spark_executors_read_s3_data_themselves(spark, s3_root, tmp_path):
    import pyarrow.fs as pafs

    data_uri, _, _ = write_categorical_parquet(str(tmp_path / "data"), n_sequences=300, files=3)
    s3_data = f"{s3_root}/data"
    source = ParquetSequences(s3_data, engine="spark", spark=spark)
    filesystem = source.filesystem_spec.open()
    pafs.copy_files(str(tmp_path / "data"), source.base, destination_filesystem=filesystem)
    model = model_for()
    local = ParquetSequences(data_uri, engine="local")
    assert [s.path.rsplit("/", 1)[1] for s in source.splits()] == [s.path.rsplit("/", 1)[1] for s in local.splits()]
    assert_same_statistics(source.statistics(model), local.statistics(model))
    np.testing.assert_array_equal(source.sample(model)[0], local.sample(model)[0])


@pytest.mark.spark
def test_spark_tasks_freeze_the_heap_the_local_engine_leaves_it(tmp_path):
    import gc

    one_file(tmp_path / "data" / "part-0.parquet", n_sequences=5)
    gc.unfreeze()
    ParquetSequences(f"file://{tmp_path}/data", engine="local").statistics(model_for())
    assert gc.get_freeze_count() == 0  # the driver's collector is left as it was
    import pickle

    import pyarrow as pa

    task = sources._spark_task(lambda group: [gc.get_freeze_count()], [[]])
    try:
        (batch,) = task([pa.record_batch([pa.array([0])], names=["id"])])
        # a worker's imports, out of the after-task gc.collect()'s way
        assert pickle.loads(batch.column(0)[0].as_py()) > 1000
    finally:
        gc.unfreeze()


def test_a_classic_sessions_task_freezes_the_heap_and_pickles_each_record_in_order():
    import gc
    import pickle

    records = [{"partition": p, "batch": b} for p in (3, 4) for b in range(2)]
    task = sources._rdd_task(
        lambda group: [dict(r, freeze=gc.get_freeze_count()) for r in records if r["partition"] in group], [[3], [4, 9]]
    )
    try:
        out = [pickle.loads(record) for record in task(iter([0, 1]))]
        assert [(r["partition"], r["batch"]) for r in out] == [(3, 0), (3, 1), (4, 0), (4, 1)]
        assert all(r["freeze"] > 1000 for r in out)  # frozen before the work ran
    finally:
        gc.unfreeze()


def test_a_spark_task_sends_its_records_in_few_arrow_batches_in_order(monkeypatch):
    import pickle

    import pyarrow as pa

    records = [{"partition": p, "batch": b, "stats": bytes(100)} for p in (3, 4) for b in range(5)]
    task = sources._spark_task(lambda group: [r for r in records if r["partition"] in group], [[3, 4], [9]])
    tasks = pa.record_batch([pa.array([0, 1])], names=["id"])
    try:
        (one,) = task([tasks])  # group 1 has no records: no empty batch either
        assert [pickle.loads(r) for r in one.column("record").to_pylist()] == records
        size = len(pickle.dumps(records[0]))
        monkeypatch.setattr(sources, "RECORD_MESSAGE_BYTES", 3 * size)  # a batch closes at 3 records
        batches = list(task([tasks]))
        assert [b.num_rows for b in batches] == [3, 3, 3, 1]
        assert [pickle.loads(r) for b in batches for r in b.column("record").to_pylist()] == records
    finally:
        import gc

        gc.unfreeze()


@pytest.mark.parametrize("kind", [pa.string(), pa.large_string()])
def test_string_ids_are_held_out_from_the_arrow_buffers_as_from_python_strings(kind):
    from hmm.core.holdout import holdout_mask
    from hmm.distributed.arrow import holdout_rows

    ids = [f"user-{i}" if i % 7 else "" for i in range(3_000)] + ["ünïcödé-1", "ünïcödé-2"]
    batch = pa.record_batch([pa.array(ids, kind)], names=["id"])
    for start, stop in ((0, len(ids)), (17, 2_003), (2_990, len(ids))):  # sliced batches read their own rows
        expected = holdout_mask(np.array(ids[start:stop], dtype=object), 0.3)
        np.testing.assert_array_equal(holdout_rows(batch.slice(start, stop - start), "id", None, 0.3), expected)


def test_only_a_scan_finds_the_largest_symbol_an_e_step_skips_that_pass(tmp_path):
    rows = one_file(tmp_path / "data" / "part-0.parquet", n_sequences=50)
    source = ParquetSequences(f"file://{tmp_path}/data", engine="local")
    assert [r["max_symbol"] for r in source.records(model_for(), statistics=True)] == [None]
    assert [r["max_symbol"] for r in source.records(model_for(), statistics=False)] == [max(max(r) for r in rows)]
