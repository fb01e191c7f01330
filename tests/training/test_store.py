"""One contract for both stores: a directory and a real S3 API (moto server)."""

import threading

import pytest

from hmm.distributed.uris import InvalidURIError, check_uri
from hmm.training.store import MissingObjectError, open_store


def test_write_then_read(store_root):
    store = open_store(store_root)
    store.write("a/b/c.json", b"first")
    assert store.read("a/b/c.json") == b"first"
    store.write("a/b/c.json", b"second")
    assert store.read("a/b/c.json") == b"second"


def test_missing_object_names_the_url(store_root):
    store = open_store(store_root)
    with pytest.raises(MissingObjectError, match=r"/nothing/here does not exist"):
        store.read("nothing/here")
    assert not store.exists("nothing/here")


def test_create_if_absent_never_overwrites(store_root):
    store = open_store(store_root)
    assert store.create_if_absent("t/COMMIT", b"winner") is True
    assert store.create_if_absent("t/COMMIT", b"loser") is False
    assert store.read("t/COMMIT") == b"winner"
    assert store.exists("t/COMMIT")


def test_concurrent_creators_exactly_one_wins(store_root):
    store = open_store(store_root)
    results = {}
    barrier = threading.Barrier(8)

    def attempt(i):
        barrier.wait()
        results[i] = store.create_if_absent("race/COMMIT", f"writer {i}".encode())

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [i for i, won in results.items() if won]
    assert len(winners) == 1
    assert store.read("race/COMMIT") == f"writer {winners[0]}".encode()


def test_list_is_sorted_and_scoped(store_root):
    store = open_store(store_root)
    for key in ("x/2/b", "x/1/a", "x/10/c", "y/1/a"):
        store.write(key, b".")
    assert store.list("x/") == ["x/1/a", "x/10/c", "x/2/b"]
    assert store.list("z/") == []


def test_keys_cannot_escape_the_root(store_root):
    store = open_store(store_root)
    for key in ("../outside", "/absolute", "a//b", "a/./b"):
        with pytest.raises(Exception, match="invalid object key"):
            store.write(key, b".")


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("http://example.com/x", r"has scheme 'http'; only file:// and s3:// are allowed"),
        ("relative/path", r"has scheme ''; only file:// and s3:// are allowed"),
        ("file://relative", r"must be an absolute file:///path"),
        ("s3://", r"must name a bucket"),
        ("s3://bucket/a/../b", r"must not contain '..'"),
        ("", r"must be a non-empty string"),
    ],
)
def test_bad_uris_are_refused(uri, message):
    with pytest.raises(InvalidURIError, match=message):
        check_uri(uri)
