"""Hostile model files: ``hmm.load`` checks the zip directory, the header and every declared size
before inflating anything, sets only the class's own fitted attributes, and refuses every
malformed file with a ValueError naming the file and the rule (never TypeError, IndexError,
KeyError, never a gigabyte of memory). Models saved by this code still load, bit for bit."""

from __future__ import annotations

import io
import json
import os
import re
import tracemalloc
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import hmm
from hmm.core import persistence
from hmm.core.base import ModelTooLargeError
from hmm.core.persistence import InvalidModelFileError

LENGTHS = [20, 7, 13]


def fitted(kind: str) -> hmm.BaseHMM:
    rs = np.random.RandomState(0)
    n = sum(LENGTHS)
    if kind == "categorical":
        X = rs.choice(4, size=(n, 1))
        return hmm.CategoricalHMM(2, random_state=1, n_iter=3).fit(X, LENGTHS)
    if kind == "poisson":
        return hmm.PoissonHMM(2, random_state=1, n_iter=3).fit(rs.poisson([3.0, 0.5], size=(n, 2)), LENGTHS)
    if kind == "gaussian":
        return hmm.GaussianHMM(2, covariance_type="full", random_state=1, n_iter=3).fit(rs.normal(size=(n, 2)), LENGTHS)
    return hmm.GMMHMM(2, n_mix=2, random_state=1, n_iter=3).fit(rs.normal(size=(n, 2)), LENGTHS)


KINDS = ("categorical", "poisson", "gaussian", "gmm")


@pytest.fixture(scope="module")
def good() -> bytes:
    return persistence.dumps(fitted("categorical"))


def entries_of(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def npy(array: Any) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.asanyarray(array), allow_pickle=True)
    return buffer.getvalue()


def header_of(data: bytes) -> dict[str, Any]:
    with np.load(io.BytesIO(data)) as stored:
        return json.loads(str(stored["header"][()]))


def zipped(entries: list[tuple[str, bytes]] | dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, raw in entries.items() if isinstance(entries, dict) else entries:
            archive.writestr(name, raw)
    return buffer.getvalue()


def with_header(data: bytes, **changes: Any) -> bytes:
    header = header_of(data)
    for key, value in changes.items():
        if value is _DELETE:
            del header[key]
        else:
            header[key] = value
    entries = entries_of(data)
    entries["header.npy"] = npy(np.array(json.dumps(header)))
    return zipped(entries)


def with_entry(data: bytes, name: str, raw: bytes | None) -> bytes:
    entries = entries_of(data)
    if raw is None:
        del entries[name]
    else:
        entries[name] = raw
    return zipped(entries)


_DELETE = object()


def refused(data: bytes, pattern: str, error: type[Exception] = InvalidModelFileError) -> None:
    with pytest.raises(error) as caught:
        persistence.loads(data, source="s3://bucket/m.npz")
    message = str(caught.value)
    assert message.startswith("'s3://bucket/m.npz'"), message  # the file is named
    assert re.search(pattern, message), message


# ------------------------------------------------------------------ regression (issue 10, class 13)


def test_a_zip_bomb_is_refused_from_its_directory_without_inflating(good: bytes) -> None:
    """A 0.2 MB file declaring a 200 MB entry: the old code inflated every entry before any check."""
    entries = entries_of(good)
    zeros = np.zeros(25_000_000)  # 200 MB of float64, ~0.2 MB deflated
    entries["fitted.transmat_.npy"] = npy(zeros.reshape(5000, 5000))
    del zeros
    data = zipped(entries, zipfile.ZIP_DEFLATED)
    assert len(data) < 1_000_000
    tracemalloc.start()
    try:
        with pytest.raises(InvalidModelFileError, match=r"entry 'fitted.transmat_.npy' declares 200000128 bytes, more"):
            persistence.loads(data, source="bomb.npz")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5 * len(data)


def test_the_fitted_list_cannot_set_a_method_or_foreign_attribute(good: bytes) -> None:
    data = with_header(good, fitted=[*header_of(good)["fitted"], "score"])
    data = with_entry(data, "fitted.score.npy", npy(np.zeros(2)))
    refused(data, r"header 'fitted' lists 'score', which is not one of CategoricalHMM's")


def test_an_unknown_entry_is_refused(good: bytes) -> None:
    refused(with_entry(good, "payload.npy", npy(np.zeros(3))), r"unknown entry 'payload.npy'")


def test_a_header_of_wrong_types_is_a_value_error_not_a_type_error(good: bytes) -> None:
    refused(with_header(good, fitted=5), r"header field 'fitted' is 5, not list")


@pytest.mark.parametrize("kind", KINDS)
def test_models_saved_by_this_code_still_load_bit_for_bit(kind: str, tmp_path: Path) -> None:
    model = fitted(kind)
    data = persistence.dumps(model)
    loaded = persistence.loads(data)
    assert persistence.dumps(loaded) == data
    model.save(tmp_path / "m.npz")
    assert persistence.dumps(hmm.load(tmp_path / "m.npz")) == data
    unfitted = type(model)(3, random_state=4)
    assert persistence.dumps(persistence.loads(persistence.dumps(unfitted))) == persistence.dumps(unfitted)


# ------------------------------------------------------------------ campaign: not model files at all

GARBAGE: dict[str, Callable[[bytes], bytes]] = {
    "empty": lambda good: b"",
    "text": lambda good: b"hello, world\n",
    "random bytes": lambda good: np.random.default_rng(0).bytes(4096),
    "png": lambda good: b"\x89PNG\r\n\x1a\n" + bytes(100),
    "gzip": lambda good: zlib.compress(good),
    "json": lambda good: json.dumps(header_of(good)).encode(),
    "zip magic only": lambda good: b"PK\x03\x04",
    "cut at 10%": lambda good: good[: len(good) // 10],
    "cut at 50%": lambda good: good[: len(good) // 2],
    "cut before the end record": lambda good: good[:-23],
    "end record only": lambda good: good[-22:],
    "zeros": lambda good: bytes(len(good)),
}


@pytest.mark.parametrize("case", GARBAGE)
def test_garbage_and_truncated_files(case: str, good: bytes) -> None:
    refused(GARBAGE[case](good), r"is not an hmm-em model file \(not a readable \.npz archive")


def test_a_single_npy_array(good: bytes) -> None:
    refused(npy(np.zeros(3)), r"is not an hmm-em model file \(a single array, not an \.npz archive\)")


def test_a_zip_without_header(good: bytes) -> None:
    refused(with_entry(good, "header.npy", None), r"is not an hmm-em model file \(no header\)")


def test_an_entry_whose_bytes_are_damaged(good: bytes) -> None:
    # Flip a byte inside the stored transition matrix: the CRC catches it.
    position = good.index(npy(persistence.loads(good).transmat_)[-8:])
    damaged = good[:position] + bytes([good[position] ^ 0xFF]) + good[position + 1 :]
    refused(damaged, r"damaged model file: entry 'fitted.transmat_.npy': Bad CRC-32")


# ------------------------------------------------------------------ campaign: the zip directory

ENTRY_NAMES = {
    "parent path": "../header.npy",
    "absolute path": "/etc/header.npy",
    "sub-directory": "fitted/startprob_.npy",
    "backslash": "fitted.startprob_\\..\\x.npy",
    "no extension": "fitted.startprob_",
    "a directory entry": "fitted.d/",
    "unknown group": "pickle.startprob_.npy",
    "non-ascii name": "fitted.startprob\u0661.npy",
    "NUL in the name": "fitted.startprob_\x00.npy",
    "text file": "README.txt",
    "dotted attribute": "fitted.__class__.__init__.npy",
}


@pytest.mark.parametrize("case", ENTRY_NAMES)
def test_path_like_and_unknown_entry_names(case: str, good: bytes) -> None:
    name = ENTRY_NAMES[case]
    try:
        data = with_entry(good, name, npy(np.zeros(2)))
    except ValueError:  # zipfile itself refuses to write some names
        pytest.skip(f"zipfile cannot write {name!r}")
    expected = re.escape(repr(name)[1:-1]) if "\x00" not in name else "unknown entry"
    refused(data, rf"unknown entry .*{expected}|unknown entry")


@pytest.mark.parametrize("name", ["header.npy", "fitted.transmat_.npy", "monitor.history.npy"])
def test_duplicate_entries(name: str, good: bytes) -> None:
    entries = list(entries_of(good).items())
    entries.append((name, dict(entries)[name]))
    with pytest.warns(UserWarning, match="Duplicate name"):
        data = zipped(entries)
    refused(data, rf"entry '{re.escape(name)}' appears twice")


@pytest.mark.parametrize(("method", "number"), [(zipfile.ZIP_BZIP2, 12), (zipfile.ZIP_LZMA, 14)])
def test_compression_methods_other_than_stored_and_deflated(method: int, number: int, good: bytes) -> None:
    refused(zipped(entries_of(good), method), rf"uses compression method {number} \(only stored and deflated")


def test_an_encrypted_entry(good: bytes) -> None:
    data = bytearray(good)
    # Set the encryption bit in every central directory record (signature PK\x01\x02, flags at +8).
    start = 0
    while (start := data.find(b"PK\x01\x02", start)) >= 0:
        data[start + 8] |= 1
        start += 4
    refused(bytes(data), r"entry '.*' is encrypted")


def test_deflated_files_of_this_format_load(good: bytes) -> None:
    model = persistence.loads(zipped(entries_of(good), zipfile.ZIP_DEFLATED))
    assert persistence.dumps(model) == good


# ------------------------------------------------------------------ campaign: bombs and declared sizes


def test_a_header_entry_larger_than_a_header(good: bytes) -> None:
    big = npy(np.array(json.dumps({**header_of(good), "pad": "x" * 300_000})))
    refused(with_entry(good, "header.npy", big), r"entry 'header.npy' declares \d+ bytes, more than a header's 1048576")


def test_an_entry_declaring_fewer_bytes_than_it_inflates_to(good: bytes) -> None:
    data = bytearray(zipped(entries_of(good), zipfile.ZIP_DEFLATED))
    # Shrink the declared size of monitor.seconds in its central directory record (size at +24).
    record = data.find(b"PK\x01\x02", data.find(b"monitor.seconds.npy") - 50)
    record = data.rfind(b"PK\x01\x02", 0, data.find(b"monitor.seconds.npy", record))
    data[record + 24 : record + 28] = (10).to_bytes(4, "little")
    refused(bytes(data), r"entry 'monitor.seconds.npy'")


def forged_shape(array: np.ndarray, shape: str) -> bytes:
    """``array``'s .npy bytes with another shape in the preamble (the padding keeps its length)."""
    raw = npy(array)
    old = f"'shape': {array.shape}, }}".encode()
    new = f"'shape': {shape}, }}".encode()
    start = raw.index(old)
    padding = raw.index(b"\n") - (start + len(old))
    assert padding >= len(new) - len(old)
    return raw[:start] + new + b" " * (padding - len(new) + len(old)) + raw[start + len(old) + padding :]


def test_an_npy_preamble_declaring_a_huge_shape_with_few_bytes(good: bytes) -> None:
    data = with_entry(good, "fitted.transmat_.npy", forged_shape(np.zeros((2, 2)), "(99999, 9)"))
    refused(data, r"entry 'fitted.transmat_.npy' declares shape \(99999, 9\), more than the 4 values")


def test_an_npy_preamble_whose_shape_does_not_match_its_bytes(good: bytes) -> None:
    data = with_entry(good, "fitted.transmat_.npy", forged_shape(np.zeros((2, 2)), "(1, 2)"))
    refused(data, r"entry 'fitted.transmat_.npy' holds 32 data bytes; shape \(1, 2\) of dtype float64 needs 16")


def test_an_npy_preamble_that_is_not_a_dict(good: bytes) -> None:
    raw = npy(np.zeros((2, 2)))
    forged = raw[:10] + b"__import__" + raw[20:]  # never evaluated: numpy parses literals only
    refused(with_entry(good, "fitted.transmat_.npy", forged), r"entry 'fitted.transmat_.npy' is not a \.npy array")


def test_a_history_longer_than_the_monitor_counted(good: bytes) -> None:
    refused(
        with_entry(good, "monitor.history.npy", npy(np.zeros(100_000))),
        r"entry 'monitor.history.npy' declares \d+ bytes, more than the \d+ its header allows \(at most 3 values\)",
    )


@pytest.mark.parametrize(
    ("field", "value", "pattern"),
    [
        ("n_features", 10**12, r"needs about .* more than the limit of 8.0 GiB; set HMM_EM_MAX_MODEL_BYTES"),
        ("n_features", 2**63, r"needs about"),
    ],
)
def test_header_sizes_beyond_the_model_size_limit(field: str, value: Any, pattern: str, good: bytes) -> None:
    header = header_of(good)
    data = with_header(good, **{field: value}, params={**header["params"], field: value})
    refused(data, r"holds a CategoricalHMM that cannot be built: .*" + pattern)


def test_huge_n_components_in_the_header(good: bytes) -> None:
    header = header_of(good)
    data = with_header(good, params={**header["params"], "n_components": 10**9})
    refused(data, r"cannot be built: a CategoricalHMM with n_components=1000000000, n_features=4 needs about")


def test_a_file_larger_than_the_model_size_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, good: bytes) -> None:
    path = tmp_path / "m.npz"
    path.write_bytes(good)
    monkeypatch.setenv("HMM_EM_MAX_MODEL_BYTES", "1000")
    with pytest.raises(InvalidModelFileError, match=r"m.npz' is not a model file this hmm-em loads: its .* are more"):
        hmm.load(path)


@pytest.mark.parametrize("kind", ["fifo", "directory", "device"])
def test_load_reads_only_regular_files(kind: str, tmp_path: Path) -> None:
    path = tmp_path / "m.npz"
    if kind == "fifo":
        os.mkfifo(path)  # reading it would block forever
    elif kind == "directory":
        path.mkdir()
    else:
        path = Path("/dev/zero")  # reading it would never end
    with pytest.raises(InvalidModelFileError, match=r"is not an hmm-em model file \(not a regular file\)"):
        hmm.load(path)


# ------------------------------------------------------------------ campaign: array dtypes and values

BAD_DTYPES = {
    "object (pickle)": (np.array([0.5, 0.5], dtype=object), r"has dtype object, not bool or int"),
    "complex": (np.array([0.5 + 1j, 0.5]), r"has dtype complex128, not bool or int"),
    "string": (np.array(["0.5", "0.5"]), r"has dtype <U3, not bool"),
    "bytes": (np.array([b"ab", b"cd"]), r"has dtype \|S2, not bool"),
    "structured": (np.zeros(2, dtype=[("a", "f8")]), r"has dtype \[\('a', '<f8'\)\], not"),
    "long double": (np.zeros(2, dtype=np.longdouble), r"has dtype float128, wider than 8 bytes"),
    "datetime": (np.zeros(2, dtype="datetime64[s]"), r"has dtype datetime64\[s\], not"),
    "timedelta": (np.zeros(2, dtype="timedelta64[s]"), r"has dtype timedelta64\[s\], not"),
    "void": (np.zeros(2, dtype="V8"), r"has dtype \|V8, not"),
}


@pytest.mark.parametrize("case", BAD_DTYPES)
def test_fitted_arrays_of_a_wrong_dtype(case: str, good: bytes) -> None:
    array, pattern = BAD_DTYPES[case]
    refused(with_entry(good, "fitted.startprob_.npy", npy(array)), r"entry 'fitted.startprob_.npy' " + pattern)


def test_a_header_that_is_not_a_string(good: bytes) -> None:
    refused(with_entry(good, "header.npy", npy(np.zeros(3))), r"entry 'header.npy' has dtype float64, not a string")


def test_a_header_array_of_strings(good: bytes) -> None:
    header = json.dumps(header_of(good))
    refused(with_entry(good, "header.npy", npy(np.array([header, header]))), r"declares shape \(2,\), more than the 1")


def test_random_state_keys_of_a_wrong_length(good: bytes) -> None:
    refused(
        with_entry(good, "random_state.keys.npy", npy(np.zeros(10, dtype=np.uint32))),
        r"entry 'random_state.keys.npy' has shape \(10,\) and dtype uint32, not \(624,\) uint32",
    )


def test_random_state_keys_of_a_wrong_dtype(good: bytes) -> None:
    refused(
        with_entry(good, "random_state.keys.npy", npy(np.zeros(624, dtype=np.float64))),
        r"entry 'random_state.keys.npy' has dtype float64, not unsigned int",
    )


NON_FINITE = {
    "categorical startprob NaN": ("categorical", "fitted.startprob_.npy", lambda m: [np.nan, 1.0]),
    "categorical transmat inf": ("categorical", "fitted.transmat_.npy", lambda m: [[np.inf, 0], [0, 1]]),
    "categorical emissionprob NaN": ("categorical", "fitted.emissionprob_.npy", lambda m: np.full((2, 4), np.nan)),
    "poisson lambdas inf": ("poisson", "fitted.lambdas_.npy", lambda m: np.full((2, 2), np.inf)),
    "gaussian means NaN": ("gaussian", "fitted.means_.npy", lambda m: np.full((2, 2), np.nan)),
    "gaussian covars -inf": ("gaussian", "fitted._covars_.npy", lambda m: np.full((2, 2, 2), -np.inf)),
    "gmm weights NaN": ("gmm", "fitted.weights_.npy", lambda m: np.full((2, 2), np.nan)),
    "gmm prior NaN": ("gmm", "param.means_prior.npy", lambda m: np.full((2, 2, 2), np.nan)),
}


@pytest.mark.parametrize("case", NON_FINITE)
def test_non_finite_parameters(case: str) -> None:
    kind, entry, values = NON_FINITE[case]
    data = persistence.dumps(fitted(kind))
    refused(
        with_entry(data, entry, npy(np.asarray(values(None), dtype=np.float64))), rf"entry '{entry}' holds non-finite"
    )


def test_parameters_that_fail_the_models_checks_are_named_with_the_file(good: bytes) -> None:
    refused(
        with_entry(good, "fitted.emissionprob_.npy", npy(np.full((2, 4), 0.5))),
        r"holds invalid parameters: emissionprob_ row 0 sums to 2",
        hmm.InvalidParameterError,
    )


def test_parameters_of_the_wrong_shape(good: bytes) -> None:
    refused(
        with_entry(good, "fitted.startprob_.npy", npy(np.array([[1.0]]))),
        r"holds invalid parameters: startprob_ must have shape \(2,\), got \(1, 1\)",
        hmm.InvalidParameterError,
    )


# ------------------------------------------------------------------ campaign: header type confusion

HEADER_CASES: dict[str, tuple[dict[str, Any], str]] = {
    "format_version true": ({"format_version": True}, r"uses model file format version True"),
    "format_version string": ({"format_version": "1"}, r"uses model file format version '1'"),
    "format_version float": ({"format_version": 1.0}, r"uses model file format version 1.0"),
    "format missing": ({"format": _DELETE}, r"header format is not 'hmm-em model'"),
    "class list": ({"class": ["CategoricalHMM"]}, r"unknown class \['CategoricalHMM'\]"),
    "class base": ({"class": "BaseHMM"}, r"unknown class 'BaseHMM'"),
    "class module path": ({"class": "hmm.CategoricalHMM"}, r"unknown class 'hmm.CategoricalHMM'"),
    "unknown field": ({"exec": "print(1)"}, r"header has unknown field\(s\) \['exec'\]"),
    "missing field": ({"monitor_iter": _DELETE}, r"header lacks field\(s\) \['monitor_iter'\]"),
    "params list": ({"params": ["n_components", 2]}, r"header field 'params' is \[.*, not dict"),
    "params null": ({"params": None}, r"header field 'params' is None, not dict"),
    "array_params string": ({"array_params": "abc"}, r"header field 'array_params' is 'abc', not list"),
    "array_params unknown": ({"array_params": ["evil"]}, r"'array_params' lists 'evil', which is not one of"),
    "array_params number": ({"array_params": [3]}, r"'array_params' lists 3, which is not one of"),
    "fitted string": ({"fitted": "startprob_"}, r"header field 'fitted' is 'startprob_', not list"),
    "fitted method fit": ({"fitted": ["startprob_", "fit"]}, r"'fitted' lists 'fit', which is not one of"),
    "fitted dunder": ({"fitted": ["__class__"]}, r"'fitted' lists '__class__', which is not one of"),
    "fitted monitor": ({"fitted": ["monitor_"]}, r"'fitted' lists 'monitor_', which is not one of"),
    "fitted setting": ({"fitted": ["n_components"]}, r"'fitted' lists 'n_components', which is not one of"),
    "fitted twice": (
        {"fitted": ["startprob_", "startprob_", "transmat_", "emissionprob_"]},
        r"'fitted' lists a name twice",
    ),
    "fitted partial": ({"fitted": ["startprob_", "transmat_"]}, r"a fitted CategoricalHMM has all of"),
    "n_features string": ({"n_features": "4"}, r"header field 'n_features' is '4', not int or null"),
    "n_features true": ({"n_features": True}, r"header field 'n_features' is True, not int or null"),
    "n_features zero": ({"n_features": 0}, r"header field 'n_features' is 0, not a positive integer"),
    "n_features float": ({"n_features": 4.0}, r"header field 'n_features' is 4.0, not int or null"),
    "monitor_iter negative": ({"monitor_iter": -1}, r"header field 'monitor_iter' is -1, not >= 0"),
    "monitor_iter float": ({"monitor_iter": 1.5}, r"header field 'monitor_iter' is 1.5, not int"),
    "monitor_iter dict": ({"monitor_iter": {}}, r"header field 'monitor_iter' is \{\}, not int"),
    "random_state list": ({"random_state": [1, 2]}, r"header field 'random_state' is \[1, 2\], not dict or null"),
    "random_state kind": (
        {"random_state": {"kind": "PCG64", "pos": 1, "has_gauss": 0, "cached_gaussian": 0.0}},
        r"field 'random_state' kind is 'PCG64', not 'MT19937'",
    ),
    "random_state pos": (
        {"random_state": {"kind": "MT19937", "pos": 10**6, "has_gauss": 0, "cached_gaussian": 0.0}},
        r"pos is 1000000, not an integer in \[0, 624\]",
    ),
    "random_state keys missing": ({"random_state": {"kind": "MT19937"}}, r"has keys \['kind'\], not exactly"),
    "random_state gauss NaN": (
        {"random_state": {"kind": "MT19937", "pos": 1, "has_gauss": 1, "cached_gaussian": float("nan")}},
        r"cached_gaussian is nan, not a finite number",
    ),
    "hmm_em_version number": ({"hmm_em_version": 1}, r"header field 'hmm_em_version' is 1, not str"),
}


@pytest.mark.parametrize("case", HEADER_CASES)
def test_header_fields_of_wrong_types_and_values(case: str, good: bytes) -> None:
    changes, pattern = HEADER_CASES[case]
    refused(with_header(good, **changes), pattern)


PARAM_CASES: dict[str, tuple[dict[str, Any], str]] = {
    "unknown parameter": ({"evil": 1}, r"'params' names 'evil', which is not a parameter of CategoricalHMM"),
    "n_components string": ({"n_components": "2"}, r"parameter n_components is '2': it must be an integer"),
    "n_components float": ({"n_components": 2.5}, r"parameter n_components is 2.5: it must be an integer"),
    "n_components bool": ({"n_components": True}, r"parameter n_components is True: it must be an integer"),
    "n_components zero": ({"n_components": 0}, r"cannot be built: n_components must be a positive integer, got 0"),
    "n_iter list": ({"n_iter": [1]}, r"parameter n_iter is \[1\]: it must be an integer"),
    "tol NaN": ({"tol": float("nan")}, r"parameter tol is nan: it must be a finite number"),
    "tol string": ({"tol": "0.1"}, r"parameter tol is '0.1': it must be a number"),
    "prior infinite": (
        {"emissionprob_prior": float("inf")},
        r"parameter emissionprob_prior is inf: it must be a finite",
    ),
    "prior dict": ({"startprob_prior": {"a": 1}}, r"parameter startprob_prior is \{'a': 1\}: it must be a number"),
    "algorithm number": ({"algorithm": 5}, r"parameter algorithm is 5: it must be a string"),
    "algorithm unknown": ({"algorithm": "magic"}, r"cannot be built: algorithm must be one of"),
    "implementation unknown": ({"implementation": "fast"}, r"cannot be built: implementation must be one of"),
    "verbose string": ({"verbose": "yes"}, r"parameter verbose is 'yes': it must be true or false"),
    "random_state twice": ({"random_state": 3}, r"gives parameter\(s\) \['random_state'\] twice"),
    "n_features string": ({"n_features": "4"}, r"parameter n_features is '4': it must be an integer"),
    "params number": ({"params": 5}, r"parameter params is 5: it must be a string"),
}


@pytest.mark.parametrize("case", PARAM_CASES)
def test_header_settings_of_wrong_types_and_values(case: str, good: bytes) -> None:
    changes, pattern = PARAM_CASES[case]
    refused(with_header(good, params={**header_of(good)["params"], **changes}), pattern)


def test_a_negative_seed() -> None:
    seeded = persistence.dumps(hmm.CategoricalHMM(2, random_state=3))
    data = with_header(seeded, params={**header_of(seeded)["params"], "random_state": -1})
    refused(data, r"parameter random_state is -1: a seed must be in \[0, 2\*\*32\)")


def test_history_that_is_not_1_d(good: bytes) -> None:
    refused(with_entry(good, "monitor.history.npy", npy(np.zeros((1, 3)))), r"entry 'monitor.history.npy' is not 1-D")


def test_a_header_that_is_not_json(good: bytes) -> None:
    refused(with_entry(good, "header.npy", npy(np.array("{not json"))), r"header is not JSON")


def test_a_deeply_nested_header(good: bytes) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    refused(with_entry(good, "header.npy", npy(np.array(deep))), r"header is not JSON")


def test_a_header_that_is_a_json_list(good: bytes) -> None:
    refused(with_entry(good, "header.npy", npy(np.array("[1, 2]"))), r"header format is not 'hmm-em model'")


def test_a_header_integer_beyond_pythons_digit_limit(good: bytes) -> None:
    text = json.dumps(header_of(good)).replace('"monitor_iter": 3', '"monitor_iter": ' + "9" * 5000)
    refused(with_entry(good, "header.npy", npy(np.array(text))), r"header is not JSON")


def test_an_entry_the_header_does_not_name(good: bytes) -> None:
    refused(
        with_entry(good, "param.transmat_prior.npy", npy(np.ones((2, 2)))), r"'param.transmat_prior.npy' is not named"
    )


def test_an_entry_the_header_names_is_missing(good: bytes) -> None:
    refused(with_entry(good, "fitted.emissionprob_.npy", None), r"missing entry 'fitted.emissionprob_'")


def test_random_state_keys_without_a_random_state_in_the_header(good: bytes) -> None:
    refused(with_header(good, random_state=None), r"entry 'random_state.keys.npy' is not named by its header")


def test_a_gaussian_covars_property_is_not_a_fitted_attribute() -> None:
    data = persistence.dumps(fitted("gaussian"))
    header = header_of(data)
    fitted_list = [name if name != "_covars_" else "covars_" for name in header["fitted"]]
    data = with_header(data, fitted=fitted_list)
    refused(data, r"'fitted' lists 'covars_', which is not one of GaussianHMM's")


def test_errors_are_value_errors_for_every_case_above() -> None:
    """The classes the campaign asserts: both are ValueError, so a CLI maps them to exit 2."""
    assert issubclass(InvalidModelFileError, ValueError)
    assert issubclass(hmm.InvalidParameterError, ValueError)
    assert issubclass(ModelTooLargeError, ValueError)


# ------------------------------------------------------------------ saving refuses what loading would


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        (
            lambda m: setattr(m, "emissionprob_", np.full((2, 4), np.nan)),
            r"cannot save emissionprob_: it holds non-finite",
        ),
        (
            lambda m: setattr(m, "startprob_", np.array([0.5 + 1j, 0.5])),
            r"cannot save startprob_: it has dtype complex",
        ),
        (lambda m: setattr(m, "emissionprob_prior", float("nan")), r"cannot save parameter emissionprob_prior=nan"),
        (lambda m: setattr(m, "n_components", 2.0), r"cannot save parameter n_components=2.0: it must be an integer"),
        (lambda m: setattr(m, "transmat_prior", np.array([1 + 1j])), r"cannot save parameter transmat_prior: it has"),
    ],
)
def test_save_refuses_what_load_would_refuse(change: Callable[[Any], None], pattern: str, tmp_path: Path) -> None:
    model = fitted("categorical")
    change(model)
    with pytest.raises(ValueError, match=pattern):
        model.save(tmp_path / "m.npz")
    assert list(tmp_path.iterdir()) == []
