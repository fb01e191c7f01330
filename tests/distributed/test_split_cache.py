"""The executors' split cache: the same batches and records with and without it, and every hostile case."""

import errno
import os
import time

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

import hmm
from hmm.distributed import sources, split_cache
from hmm.distributed.sources import ParquetSequences, read_split
from tests.distributed.test_sources import model_for, one_file

COLUMNS = ["sequence", "id"]


def batching():
    """What read_split keys its entries by besides the file (as the tests have patched it)."""
    return (sources.BATCH_ROWS, sources.BATCH_BYTES)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A cache folder of the test's own, files cached as soon as written (no settling time in this process)."""
    folder = tmp_path / "cache"
    monkeypatch.setenv(split_cache.ENVIRONMENT, str(folder))
    monkeypatch.setattr(split_cache, "SETTLE_SECONDS", 0.0)
    return folder


@pytest.fixture
def data(tmp_path, monkeypatch):
    """Two files, the first cut into runs of row groups: splits of both kinds."""
    folder = tmp_path / "data"
    one_file(folder / "part-0.parquet", n_sequences=900, row_group_size=100, seed=1)
    one_file(folder / "part-1.parquet", n_sequences=250, seed=2)
    group_bytes = sources._compressed_bytes(pq.ParquetFile(folder / "part-0.parquet").metadata.row_group(0))
    monkeypatch.setattr(sources, "SPLIT_BYTES", 4 * group_bytes)
    monkeypatch.setattr(sources, "BATCH_ROWS", 70)  # several batches per split, the last one short
    return folder


def batches_of(source, columns=COLUMNS):
    filesystem = pafs.LocalFileSystem()
    return [list(read_split(filesystem, split, columns)) for split in source.splits()]


def entries(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def assert_same_batches(a, b):
    assert [[x.num_rows for x in split] for split in a] == [[y.num_rows for y in split] for split in b]
    for x, y in zip((x for s in a for x in s), (y for s in b for y in s), strict=True):
        assert x.equals(y) and x.schema.equals(y.schema, check_metadata=True)


def no_parquet(monkeypatch):
    """Make any Parquet decode fail (footers may still be read: the driver lists splits by them)."""

    def refuse(*args, **kwargs):
        raise AssertionError("Parquet was read")

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", refuse)


def records_without_cache(source, monkeypatch, **kwargs):
    with monkeypatch.context() as patch:
        patch.setenv(split_cache.ENVIRONMENT, "off")
        return source.records(**kwargs)


def test_a_cached_split_yields_the_same_batches_without_decoding_parquet(data, cache, monkeypatch):
    source = ParquetSequences(f"file://{data}", engine="local")
    assert len(source.splits()) >= 3
    monkeypatch.setenv(split_cache.ENVIRONMENT, "off")
    plain = batches_of(source)
    assert not cache.exists()
    monkeypatch.setenv(split_cache.ENVIRONMENT, str(cache))
    first = batches_of(source)  # a miss: decoded, and written
    assert len(entries(cache)) == len(source.splits())
    assert cache.stat().st_mode & 0o777 == 0o700
    no_parquet(monkeypatch)
    second = batches_of(source)  # a hit: memory-mapped
    assert_same_batches(first, plain)
    assert_same_batches(second, plain)
    # Other columns are another entry (a miss, which needs the Parquet).
    with pytest.raises(AssertionError, match="Parquet was read"):
        batches_of(source, ["sequence"])


@pytest.mark.parametrize("holdout_fraction", [0.0, 0.3])
@pytest.mark.parametrize("id_col", [None, "id"])
def test_records_are_bit_identical_with_and_without_the_cache(data, cache, monkeypatch, holdout_fraction, id_col):
    source = ParquetSequences(f"file://{data}", id_col=id_col, engine="local")
    model = model_for()
    kwargs = {"model": model, "statistics": True, "holdout_fraction": holdout_fraction}
    plain = records_without_cache(source, monkeypatch, **kwargs)
    with monkeypatch.context() as patch:
        patch.setenv(split_cache.ENVIRONMENT, "off")
        plain_scan = source.scan(model)
    miss = source.records(**kwargs)
    no_parquet(monkeypatch)
    hit = source.records(**kwargs)
    assert len(plain) > 10 and all(r["error"] is None for r in plain)
    assert miss == plain and hit == plain  # statistics bytes, hold-out, batch numbering: all equal
    assert source.scan(model) == plain_scan


def test_invalid_data_fails_with_the_same_messages_from_the_cache(tmp_path, cache, monkeypatch):
    data = tmp_path / "bad"
    data.mkdir()
    rows = [[0, 1, 2], [3, -4, 5], [1, 9]]
    table = pa.table({"id": pa.array([10, 11, 12], pa.int64()), "sequence": pa.array(rows, pa.list_(pa.int32()))})
    pq.write_table(table, data / "part-0.parquet")
    source = ParquetSequences(f"file://{data}", id_col="id", engine="local")
    model = model_for()
    plain = records_without_cache(source, monkeypatch, model=model, statistics=True)
    assert "sequence id=11, position 1: symbol -4 is negative" in plain[0]["error"]
    assert source.records(model, statistics=True) == plain
    assert entries(cache)
    no_parquet(monkeypatch)
    assert source.records(model, statistics=True) == plain


def test_a_read_stopped_early_writes_nothing(data, cache, monkeypatch):
    source = ParquetSequences(f"file://{data}", engine="local")
    split = source.splits()[0]
    batches = read_split(pafs.LocalFileSystem(), split, COLUMNS)
    next(batches)
    assert [p.name.startswith(".tmp-") for p in cache.iterdir()] == [True]  # being written, not under its name
    batches.close()
    assert entries(cache) == []
    _, offsets = source.sample(model_for(), n_sequences=10)  # the driver's sample reads only a few rows
    assert entries(cache) == [] and len(offsets) == 11


def test_the_cache_can_be_turned_off(data, cache, monkeypatch):
    source = ParquetSequences(f"file://{data}", engine="local")
    for setting in ("off", "OFF", "0", "false", "no"):
        monkeypatch.setenv(split_cache.ENVIRONMENT, setting)
        assert split_cache.cache_folder() is None
    batches_of(source)
    assert not cache.exists()


def test_the_default_folder_is_the_users_own_in_the_temporary_directory(tmp_path, monkeypatch):
    monkeypatch.delenv(split_cache.ENVIRONMENT)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    folder = split_cache.cache_folder()
    assert folder == str(tmp_path / f"hmm-em-split-cache-{os.getuid()}")
    assert os.stat(folder).st_mode & 0o777 == 0o700


def unusable_folders(tmp_path):
    file = tmp_path / "a-file"
    file.write_bytes(b"not a folder")
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    target = tmp_path / "target"
    target.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(target)
    return {
        "a file instead of a folder": file,
        "a folder others can write to": shared,
        "a symbolic link to a folder": link,
        "a folder whose parent is missing": tmp_path / "absent" / "cache",
    }


def test_an_unusable_folder_turns_the_cache_off_and_reads_go_on(data, tmp_path, monkeypatch):
    source = ParquetSequences(f"file://{data}", engine="local")
    monkeypatch.setattr(split_cache, "SETTLE_SECONDS", 0.0)
    monkeypatch.setenv(split_cache.ENVIRONMENT, "off")
    expected = source.records(model_for(), statistics=True)
    for why, folder in unusable_folders(tmp_path).items():
        monkeypatch.setenv(split_cache.ENVIRONMENT, str(folder))
        assert split_cache.cache_folder() is None, why
        assert source.records(model_for(), statistics=True) == expected, why
    assert os.listdir(tmp_path / "target") == [] and not (tmp_path / "absent").exists()
    assert (tmp_path / "a-file").read_bytes() == b"not a folder"


def test_a_folder_that_cannot_be_written_leaves_reads_from_parquet(data, tmp_path, monkeypatch):
    source = ParquetSequences(f"file://{data}", engine="local")
    monkeypatch.setattr(split_cache, "SETTLE_SECONDS", 0.0)
    monkeypatch.setenv(split_cache.ENVIRONMENT, "off")
    expected = source.records(model_for(), statistics=True)
    if os.getuid() == 0:  # root writes anywhere a mode allows nothing: a folder of a file system that takes no files
        folder = "/proc/sys"
    else:
        folder = tmp_path / "read-only"
        folder.mkdir(mode=0o500)
    monkeypatch.setenv(split_cache.ENVIRONMENT, str(folder))
    assert source.records(model_for(), statistics=True) == expected
    assert not any(name.endswith(".arrow") for name in os.listdir(folder))


def test_a_full_disk_leaves_nothing_behind(data, cache, monkeypatch):
    source = ParquetSequences(f"file://{data}", engine="local")
    monkeypatch.setenv(split_cache.ENVIRONMENT, "off")
    expected = source.records(model_for(), statistics=True)
    monkeypatch.setenv(split_cache.ENVIRONMENT, str(cache))
    real = pa.ipc.new_file
    writes = []

    class FullDisk:
        """The IPC writer, whose second batch finds the disk full."""

        def __init__(self, sink, schema):
            self.writer = real(sink, schema)

        def write_batch(self, batch):
            writes.append(batch.num_rows)
            if len(writes) % 2 == 0:
                raise OSError(errno.ENOSPC, "No space left on device")
            self.writer.write_batch(batch)

        def close(self):
            self.writer.close()

    monkeypatch.setattr(pa.ipc, "new_file", FullDisk)
    assert source.records(model_for(), statistics=True) == expected
    assert writes and entries(cache) == []  # no entry, no temporary file


def test_the_free_space_rule_deletes_stale_entries_first_and_never_fills_the_disk(data, cache, monkeypatch):
    source = ParquetSequences(f"file://{data}", engine="local")
    cache.mkdir(mode=0o700)
    stale, recent, crashed = cache / ("a" * 64 + ".arrow"), cache / ("b" * 64 + ".arrow"), cache / ".tmp-x.arrow"
    for path in (stale, recent, crashed):
        path.write_bytes(b"an entry")
    old = time.time() - 2 * split_cache.STALE_SECONDS
    os.utime(stale, (old, old))
    os.utime(crashed, (old, old))
    free = split_cache.shutil.disk_usage(cache).free
    monkeypatch.setattr(split_cache, "MIN_FREE_BYTES", free + 2**40)  # no room, whatever is deleted
    batches_of(source)
    assert entries(cache) == [recent.name]  # stale files deleted to try, the recent entry kept, nothing written
    monkeypatch.setattr(split_cache, "MIN_FREE_BYTES", 0)
    monkeypatch.setattr(split_cache, "MIN_FREE_SHARE", 0.0)
    # The cache's own share: here no more than what it already holds.
    monkeypatch.setattr(split_cache, "MAX_SHARE_OF_AVAILABLE", recent.stat().st_blocks * 512 / (free + 2**20))
    batches_of(source)
    assert entries(cache) == [recent.name]
    monkeypatch.setattr(split_cache, "MAX_SHARE_OF_AVAILABLE", 0.5)
    batches_of(source)
    assert len(entries(cache)) == 1 + len(source.splits())


def entry_paths(source, columns=COLUMNS):
    filesystem = pafs.LocalFileSystem()
    return [split_cache.entry_for(filesystem, split, columns, batching()).path for split in source.splits()]


@pytest.mark.parametrize(
    "damage",
    ["garbage", "empty", "truncated", "another entry", "a directory"],
)
def test_a_damaged_entry_is_a_miss_and_is_replaced(data, cache, monkeypatch, damage):
    source = ParquetSequences(f"file://{data}", engine="local")
    expected = batches_of(source)
    paths = entry_paths(source)
    assert all(os.path.isfile(p) for p in paths)
    first, second = paths[0], paths[1]
    if damage == "garbage":
        with open(first, "wb") as file:
            file.write(os.urandom(5000))
    elif damage == "empty":
        open(first, "wb").close()
    elif damage == "truncated":
        size = os.path.getsize(first)
        os.truncate(first, size // 2)
    elif damage == "another entry":
        os.replace(second, first)  # a valid Arrow file under the wrong name: its key differs
    else:
        os.unlink(first)
        os.mkdir(first)
    entry = split_cache.entry_for(pafs.LocalFileSystem(), source.splits()[0], COLUMNS, batching())
    assert split_cache.load(entry) is None
    assert_same_batches(batches_of(source), expected)
    if damage != "a directory":  # a rename cannot replace a directory: the split stays uncached
        assert split_cache.load(entry) is not None
        no_parquet(monkeypatch)
        assert_same_batches(batches_of(source), expected)


def test_a_symbolic_link_at_an_entry_is_not_followed(data, cache, monkeypatch, tmp_path):
    source = ParquetSequences(f"file://{data}", engine="local")
    expected = batches_of(source)
    first = entry_paths(source)[0]
    elsewhere = tmp_path / "elsewhere.arrow"
    os.replace(first, elsewhere)
    os.symlink(elsewhere, first)  # a valid entry, but through a link
    entry = split_cache.entry_for(pafs.LocalFileSystem(), source.splits()[0], COLUMNS, batching())
    assert split_cache.load(entry) is None
    before = elsewhere.read_bytes()
    assert_same_batches(batches_of(source), expected)
    assert not os.path.islink(first) and split_cache.load(entry) is not None  # the link itself replaced
    assert elsewhere.read_bytes() == before  # and its target never written


def test_two_writers_of_one_entry_each_rename_a_complete_file(data, cache):
    source = ParquetSequences(f"file://{data}", engine="local")
    split = source.splits()[0]
    filesystem = pafs.LocalFileSystem()
    entry = split_cache.entry_for(filesystem, split, COLUMNS, batching())
    first, second = read_split(filesystem, split, COLUMNS), read_split(filesystem, split, COLUMNS)
    a = [next(first)]
    b = [next(second)]
    assert len([p for p in cache.iterdir() if p.name.startswith(".tmp-")]) == 2
    assert split_cache.load(entry) is None  # nothing under the entry's name while both write
    b += list(second)
    assert split_cache.load(entry) is not None
    a += list(first)
    hit = split_cache.load(entry)
    assert entries(cache) == [os.path.basename(entry.path)]
    assert_same_batches([hit], [a]) and len(a) == len(b)


def test_a_rewritten_data_file_is_never_served_from_the_cache(tmp_path, cache, monkeypatch):
    """Rewritten in place with the same size and the same modification time: the change time tells."""
    data = tmp_path / "data"
    data.mkdir()
    path = data / "part-0.parquet"

    def write(symbol):
        rows = [[symbol] * 5 for _ in range(40)]
        table = pa.table({"sequence": pa.array(rows, pa.list_(pa.int32()))})
        pq.write_table(table, path, compression="none", use_dictionary=False, write_statistics=False)

    write(1)
    before = os.stat(path)
    source = ParquetSequences(f"file://{data}", engine="local")
    model = model_for()
    assert source.scan(model).max_symbol == 1
    assert source.scan(model).max_symbol == 1  # from the cache
    write(2)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert os.stat(path).st_size == before.st_size
    assert source.scan(model).max_symbol == 2


def test_a_file_changed_less_than_the_settling_time_ago_is_not_cached(data, cache, monkeypatch):
    monkeypatch.setattr(split_cache, "SETTLE_SECONDS", 3600.0)
    source = ParquetSequences(f"file://{data}", engine="local")
    batches_of(source)
    assert not cache.exists() or entries(cache) == []
    assert split_cache.entry_for(pafs.LocalFileSystem(), source.splits()[0], COLUMNS, batching()) is None


def test_s3_data_is_cached_by_its_size_and_modification_time(s3_root, tmp_path, cache, monkeypatch):
    from tests.conftest import write_categorical_parquet

    write_categorical_parquet(str(tmp_path / "data"), n_sequences=200, files=2)
    source = ParquetSequences(f"{s3_root}/data", engine="local")
    filesystem = source.filesystem_spec.open()
    pafs.copy_files(str(tmp_path / "data"), source.base, destination_filesystem=filesystem)
    monkeypatch.setattr(split_cache, "SETTLE_SECONDS", -10.0)  # S3's clock counts whole seconds
    model = model_for()
    expected = records_without_cache(source, monkeypatch, model=model, statistics=True)
    assert source.records(model, statistics=True) == expected
    entry = split_cache.entry_for(filesystem, source.splits()[0], ["sequence"], batching(), "sequence")
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ["AWS_ENDPOINT_URL"]
    assert entry.identity[:2] == ("s3", endpoint)  # the same bucket and key at another endpoint is other data
    assert split_cache.load(entry) is not None
    assert source.records(model, statistics=True) == expected


@pytest.mark.spark
def test_spark_executors_cache_their_splits_and_give_the_same_statistics(spark, tmp_path, monkeypatch):
    """The workers inherit the test run's cache folder (tests/conftest.py); their clock waits for the data to settle."""
    data = tmp_path / "data"
    one_file(data / "part-0.parquet", n_sequences=900, row_group_size=100, seed=1)
    one_file(data / "part-1.parquet", n_sequences=200, seed=2)
    group_bytes = sources._compressed_bytes(pq.ParquetFile(data / "part-0.parquet").metadata.row_group(0))
    monkeypatch.setattr(sources, "SPLIT_BYTES", 4 * group_bytes)
    time.sleep(split_cache.SETTLE_SECONDS + 0.1)
    model = hmm.CategoricalHMM(3, n_features=6, random_state=3, init_params="ste")
    model._init(np.arange(6)[:, None], np.array([6]))
    model._check()
    local = ParquetSequences(f"file://{data}", id_col="id", engine="local")
    on_spark = ParquetSequences(f"file://{data}", id_col="id", engine="spark", spark=spark)
    expected = records_without_cache(local, monkeypatch, model=model, statistics=True, holdout_fraction=0.25)
    for _ in range(2):  # a miss, then a hit
        assert on_spark.records(model, statistics=True, holdout_fraction=0.25) == expected
    filesystem = pafs.LocalFileSystem()
    cached = [split_cache.entry_for(filesystem, split, COLUMNS, batching(), "sequence") for split in on_spark.splits()]
    assert all(split_cache.load(entry) is not None for entry in cached)


def test_named_symbols_and_dictionary_ids_come_back_the_same(tmp_path, cache, monkeypatch):
    data = tmp_path / "named"
    data.mkdir()
    rows = [["a", "b"], ["c"], ["b", "a", "z"]] * 50
    ids = pa.array([f"user-{i % 37}-{i}" for i in range(len(rows))]).dictionary_encode()  # read back as dictionary
    table = pa.table({"sequence": pa.array(rows, pa.list_(pa.string())), "id": ids})
    pq.write_table(table, data / "part-0.parquet", row_group_size=40)
    monkeypatch.setattr(sources, "BATCH_ROWS", 30)
    source = ParquetSequences(f"file://{data}", id_col="id", engine="local")
    monkeypatch.setenv(split_cache.ENVIRONMENT, "off")
    plain = batches_of(source)
    model = hmm.CategoricalHMM(2, symbols=["a", "b", "c", "z"], init_params="")
    model.startprob_ = np.array([0.6, 0.4])
    model.transmat_ = np.array([[0.7, 0.3], [0.2, 0.8]])
    model.emissionprob_ = np.array([[0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1]])
    model._check()
    kwargs = {"model": model, "statistics": True, "holdout_fraction": 0.3}
    expected = source.records(**kwargs)
    monkeypatch.setenv(split_cache.ENVIRONMENT, str(cache))
    assert_same_batches(batches_of(source), plain)
    assert entries(cache)
    no_parquet(monkeypatch)
    assert_same_batches(batches_of(source), plain)
    assert source.records(**kwargs) == expected and all(r["error"] is None for r in expected)


def test_another_batch_size_is_another_entry(data, cache, monkeypatch):
    source = ParquetSequences(f"file://{data}", engine="local")
    batches_of(source)  # cached with 70 rows per batch
    monkeypatch.setattr(sources, "BATCH_ROWS", 50)
    monkeypatch.setenv(split_cache.ENVIRONMENT, "off")
    plain = batches_of(source)
    monkeypatch.setenv(split_cache.ENVIRONMENT, str(cache))
    assert_same_batches(batches_of(source), plain)  # not the entries of 70 rows per batch
    assert max(b.num_rows for split in plain for b in split) == 50
    assert len(entries(cache)) == 2 * len(source.splits())


def symbol_entries(source, columns=COLUMNS):
    """What the E-step of a categorical model without named symbols finds in the cache, split by split."""
    filesystem = pafs.LocalFileSystem()
    return [
        split_cache.load(split_cache.entry_for(filesystem, split, columns, batching(), "sequence"))
        for split in source.splits()
    ]


def test_symbols_that_fit_a_byte_are_kept_as_uint8_with_the_same_records(data, cache, monkeypatch):
    source = ParquetSequences(f"file://{data}", id_col="id", engine="local")
    model = model_for()
    plain = records_without_cache(source, monkeypatch, model=model, statistics=True, holdout_fraction=0.2)
    assert source.records(model, statistics=True, holdout_fraction=0.2) == plain
    kept = symbol_entries(source)
    assert all(b.schema.field("sequence").type == pa.list_(pa.uint8()) for split in kept for b in split)
    as_read = batches_of(source)  # the same columns as Parquet has them: another entry, int32
    for narrow, wide in zip((b for split in kept for b in split), (b for split in as_read for b in split), strict=True):
        assert narrow.column("sequence").to_pylist() == wide.column("sequence").to_pylist()
        assert narrow.column("id").equals(wide.column("id"))
    no_parquet(monkeypatch)
    assert source.records(model, statistics=True, holdout_fraction=0.2) == plain


def write_symbols(path, rows, **options):
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({"id": pa.array(range(len(rows)), pa.int64()), "sequence": pa.array(rows, pa.list_(pa.int32()))})
    pq.write_table(table, path, **options)


@pytest.mark.parametrize(
    ("rows", "options"),
    [
        ([[0, 1, 2], [3, 300, 5]], {}),  # a symbol above 255 (and above n_features)
        ([[0, 1, 2], [3, -1, 5]], {}),  # a negative symbol
        ([[0, 1, 2], [3, 4, 5]], {"write_statistics": False}),  # no statistics to go by
    ],
    ids=["above-255", "negative", "no-statistics"],
)
def test_symbols_that_may_not_fit_a_byte_are_kept_as_they_are(tmp_path, cache, monkeypatch, rows, options):
    write_symbols(tmp_path / "data" / "part-0.parquet", rows, **options)
    source = ParquetSequences(f"file://{tmp_path}/data", id_col="id", engine="local")
    model = model_for()
    plain = records_without_cache(source, monkeypatch, model=model, statistics=True)
    assert source.records(model, statistics=True) == plain
    (kept,) = symbol_entries(source)
    assert [b.schema.field("sequence").type for b in kept] == [pa.list_(pa.int32())]
    no_parquet(monkeypatch)
    assert source.records(model, statistics=True) == plain


def test_statistics_that_lie_about_the_symbols_drop_the_entry(tmp_path, cache, monkeypatch):
    write_symbols(tmp_path / "data" / "part-0.parquet", [[0, 1, 2], [3, 300, 5]])
    monkeypatch.setattr(sources, "_symbols_fit_a_byte", lambda *args: True)
    source = ParquetSequences(f"file://{tmp_path}/data", id_col="id", engine="local")
    model = model_for()
    plain = records_without_cache(source, monkeypatch, model=model, statistics=True)
    assert "symbol 300 is outside [0, 6)" in plain[0]["error"]
    assert source.records(model, statistics=True) == plain
    assert entries(cache) == []  # the cast refused 300: nothing kept, nothing half-written


def test_a_model_with_named_symbols_sees_integer_data_as_it_is(data, cache, monkeypatch):
    source = ParquetSequences(f"file://{data}", engine="local")
    model = hmm.CategoricalHMM(2, symbols=["a", "b"], init_params="")
    model.startprob_ = np.array([0.5, 0.5])
    model.transmat_ = np.array([[0.5, 0.5], [0.5, 0.5]])
    model.emissionprob_ = np.array([[0.5, 0.5], [0.5, 0.5]])
    model._check()
    plain = records_without_cache(source, monkeypatch, model=model, statistics=True)
    assert "dtype int32" in plain[0]["error"]  # its message names the integers' type
    assert source.records(model, statistics=True) == plain
    assert entries(cache)
    no_parquet(monkeypatch)
    assert source.records(model, statistics=True) == plain
