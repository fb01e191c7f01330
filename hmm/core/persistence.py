"""Saving and loading models: one versioned ``.npz`` file, no pickle.

Pickles break across library versions and execute code when loaded; this
format holds only a JSON header and plain arrays, so it can be read safely
and checked before anything is built:

* ``header``: JSON with the format name and version, the hmm-em version that
  wrote it, the class name, the constructor parameters that are scalars or
  strings, ``n_features``, the names of the stored arrays and the monitor's
  ``iter``;
* ``param.<name>``: constructor parameters that are arrays (priors), and a categorical
  model's vocabulary (``param.symbols``, a 1-D ``str`` array: at most
  :data:`hmm.core.limits.MAX_SYMBOLS` strings of at most ``MAX_SYMBOL_CHARS`` characters);
* ``fitted.<name>``: ``startprob_``, ``transmat_`` and the class's
  ``_fitted_emission_attributes``, bit for bit;
* ``monitor.history`` / ``monitor.seconds``: the convergence history;
* ``random_state.keys``: the Mersenne Twister state, when ``random_state`` is
  a ``RandomState`` (hmmlearn replaces a seed by one during ``fit``), so a
  loaded model samples exactly what the saved one would have.

A model file may come from anywhere, so :func:`loads` trusts nothing in it:
the zip directory is checked before anything is inflated, the header before
any array is read, each array's declared size against what the header's model
can hold, and every rule broken is an :class:`InvalidModelFileError` (a
``ValueError``) naming the file and the rule. :func:`dumps` refuses to write
what :func:`loads` would refuse (non-finite parameters, complex arrays).
"""

from __future__ import annotations

import importlib
import inspect
import io
import json
import math
import os
import re
import stat
import tokenize
import uuid
import zipfile
import zlib
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np

from hmm.core.limits import MAX_MODEL_BYTES_ENV, MAX_SYMBOL_CHARS, MAX_SYMBOLS, format_bytes, max_model_bytes
from hmm.core.sequences import InvalidParameterError

if TYPE_CHECKING:  # the classes are resolved on hmm at load time; importing base here would load every model
    from hmm.core.base import BaseHMM

FORMAT = "hmm-em model"
FORMAT_VERSION = 1
#: Classes a file may name, resolved on ``hmm`` at load time (so models added
#: by later modules load without this module importing them).
#: The model classes and the core modules defining them (imported when a file or a spec names one).
MODEL_MODULES = {
    "CategoricalHMM": "hmm.core.categorical",
    "GaussianHMM": "hmm.core.gaussian",
    "GMMHMM": "hmm.core.gmm",
    "PoissonHMM": "hmm.core.poisson",
}
KNOWN_CLASSES = tuple(MODEL_MODULES)
#: Largest header entry read (the JSON of the settings is a few kB).
MAX_HEADER_BYTES = 1 << 20

_HEADER = "header"
_PARAM = "param."
_FITTED = "fitted."
_RANDOM_KEYS = "random_state.keys"
#: The names of the entries :func:`dumps` writes (``np.savez`` adds ``.npy``); nothing else is read.
_ENTRY = re.compile(
    r"(header|monitor\.history|monitor\.seconds|random_state\.keys|(?:param|fitted)\.[A-Za-z_][A-Za-z0-9_]{0,63})\.npy",
    re.ASCII,
)
#: Largest .npy preamble (magic, version, dtype and shape) read before an array's data.
_NPY_PREAMBLE_BYTES = 4096
_MAX_NDIM = 4
_MT_KEYS = 624
#: dtype kinds of parameter arrays: bool, int, unsigned int, float (never complex, object, str).
_NUMBER_KINDS = "biuf"
_KIND_NAMES = {"b": "bool", "i": "int", "u": "unsigned int", "f": "float", "U": "a string"}
#: Header fields of format version 1 and their JSON types.
_HEADER_FIELDS: dict[str, tuple[type, ...]] = {
    "format": (str,),
    "format_version": (int,),
    "hmm_em_version": (str,),
    "class": (str,),
    "params": (dict,),
    "array_params": (list,),
    "random_state": (dict, type(None)),
    "fitted": (list,),
    "n_features": (int, type(None)),
    "monitor_iter": (int,),
}
#: The constructor parameter holding a vocabulary of strings (CategoricalHMM), stored as a str array.
_SYMBOLS = "symbols"
#: Constructor parameters that are a string or None (their default).
_OPTIONAL_STRING_SETTINGS = frozenset(("unknown_symbol",))
#: Constructor parameters that must be integers (or None where that is their default).
_INTEGER_SETTINGS = frozenset(("n_components", "n_iter", "n_mix", "n_features", "random_state"))


class InvalidModelFileError(ValueError):
    """A file that is not a model this hmm-em loads; the message names the file and the rule broken."""


# ---------------------------------------------------------------------- save


def save(model: BaseHMM, path: str | os.PathLike[str]) -> None:
    """Write ``model`` to ``path`` (exactly that name: no extension added).

    The file is written next to its destination and renamed into place, so an
    interrupted save never leaves a truncated model behind.
    """
    data = dumps(model)
    destination = os.fspath(path)
    # Same directory (so the rename is atomic), mode from the umask like any new file.
    temporary = f"{destination}.{os.getpid()}-{uuid.uuid4().hex}.tmp"
    try:
        with open(temporary, "xb") as file:
            file.write(data)
        os.replace(temporary, destination)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def dumps(model: BaseHMM) -> bytes:
    """The model file's bytes; the same model always gives the same bytes.

    Raises ``TypeError`` for a parameter that cannot be stored and
    ``ValueError`` for one :func:`loads` would refuse (a NaN setting, a
    complex or non-finite array), so no file is written that cannot be read.
    """
    name = type(model).__name__
    if name not in KNOWN_CLASSES:
        raise TypeError(f"cannot save a {name}: only {', '.join(KNOWN_CLASSES)} can be saved")
    arrays: dict[str, np.ndarray] = {}
    header: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "hmm_em_version": _version(),
        "class": name,
        "params": {},
        "array_params": [],
        "random_state": None,
        "fitted": [],
        "n_features": _to_int_or_none(getattr(model, "n_features", None)),
        "monitor_iter": int(model.monitor_.iter),
    }
    defaults = _defaults(type(model))
    for key, value in model.get_params(deep=False).items():
        if key == "random_state" and isinstance(value, np.random.RandomState):
            kind, keys, pos, has_gauss, cached_gaussian = value.get_state(legacy=True)
            header["random_state"] = {
                "kind": kind,
                "pos": int(pos),
                "has_gauss": int(has_gauss),
                "cached_gaussian": float(cached_gaussian),
            }
            arrays[_RANDOM_KEYS] = np.asarray(keys)
        elif key == _SYMBOLS and value is not None:
            array = np.asarray(list(value), dtype=str)
            rule = _array_rule(array.dtype, array.shape, "U") or ("is not 1-D" if array.ndim != 1 else None)
            if rule:
                raise ValueError(f"cannot save parameter {key}: it {rule}")
            arrays[_PARAM + key] = array
            header["array_params"].append(key)
        elif isinstance(value, (np.ndarray, list, tuple)):
            # Lists (e.g. a prior written by hand) come back as the equivalent array.
            array = np.asarray(value)
            if array.dtype == object:
                raise TypeError(f"cannot save parameter {key}: {value!r} is not a regular numeric array")
            arrays[_PARAM + key] = _savable(f"parameter {key}", array)
            header["array_params"].append(key)
        else:
            value = _json_value(key, value)
            rule = _setting_rule(key, value, defaults.get(key))
            if rule:
                raise ValueError(f"cannot save parameter {key}={value!r}: {rule}")
            header["params"][key] = value
    for attribute in _fitted_attributes(type(model)):
        if hasattr(model, attribute):
            arrays[_FITTED + attribute] = _savable(attribute, np.asarray(getattr(model, attribute)))
            header["fitted"].append(attribute)
    arrays["monitor.history"] = np.asarray(model.monitor_.history, dtype=np.float64)
    arrays["monitor.seconds"] = np.asarray(getattr(model.monitor_, "seconds", []), dtype=np.float64)
    arrays[_HEADER] = np.array(json.dumps(header, sort_keys=True))

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


def _savable(what: str, array: np.ndarray) -> np.ndarray:
    """``array`` if :func:`loads` would read it back; otherwise ValueError naming ``what``."""
    rule = _array_rule(array.dtype, array.shape)
    if rule is None and array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        rule = "holds non-finite values"
    if rule:
        raise ValueError(f"cannot save {what}: it {rule}")
    return array


# ---------------------------------------------------------------------- load


def load(path: str | os.PathLike[str]) -> BaseHMM:
    """Rebuild the model saved at ``path`` by :func:`save` (or ``model.save``).

    Raises ``FileNotFoundError`` for a missing file and
    :class:`InvalidModelFileError` (a ``ValueError``) naming the file and the
    rule for anything that is not a model file this version reads (see
    :func:`loads`). Only regular files no larger than the model size limit
    (:func:`hmm.core.limits.max_model_bytes`) are read: a FIFO or ``/dev/zero``
    would never end.
    """
    source = os.fspath(path)
    try:
        info = os.stat(source)
    except FileNotFoundError:
        raise FileNotFoundError(f"no saved model at {source!r}: the file does not exist") from None
    except OSError as error:
        raise InvalidModelFileError(f"{source!r} cannot be read ({error.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        raise InvalidModelFileError(f"{source!r} is not an hmm-em model file (not a regular file)")
    limit = max_model_bytes()
    if info.st_size > limit:
        raise InvalidModelFileError(
            f"{source!r} is not a model file this hmm-em loads: its {format_bytes(info.st_size)} are more than "
            f"the model size limit of {format_bytes(limit)} ({MAX_MODEL_BYTES_ENV})"
        )
    with open(source, "rb") as file:
        return loads(file.read(limit + 1), source=source)


def loads(data: bytes, source: str = "<bytes>") -> BaseHMM:
    """Rebuild a model from :func:`dumps` bytes; ``source`` names them in errors.

    Nothing is inflated before the archive's directory is checked: only the
    entries :func:`dumps` writes (no duplicates, no paths), stored or
    deflated, the header no larger than :data:`MAX_HEADER_BYTES`. The header
    comes next (its fields and their types, the class, its settings and the
    model size, :func:`hmm.core.base.check_model_size`), then every entry's
    declared size against the size of the array the header's model gives it,
    then each array's dtype, shape and values as it is read. Only the class's
    own fitted attributes are set, and fitted parameters pass the model's
    checks. A rule broken raises :class:`InvalidModelFileError`
    (:class:`hmm.InvalidParameterError` for parameters the model's checks
    refuse), both ``ValueError`` s naming ``source``.
    """
    archive = _open_archive(data, source)
    with archive:
        entries = _directory(archive, source)
        header = _read_header(archive, entries[_HEADER], source)
        cls = _resolve(header["class"], source)
        _check_header_fields(cls, header, source)
        model = _configured(cls, header, source)
        limits = _entry_limits(model, header, entries, source)
        arrays = {name: _read_array(archive, entries[name], source, *limits[name]) for name in sorted(limits)}
    for name in ("monitor.history", "monitor.seconds"):
        if arrays[name].ndim != 1:
            raise InvalidModelFileError(f"{source!r} is a damaged model file: entry '{name}.npy' is not 1-D")
    if _RANDOM_KEYS in arrays and (arrays[_RANDOM_KEYS].shape != (_MT_KEYS,) or arrays[_RANDOM_KEYS].itemsize != 4):
        raise InvalidModelFileError(
            f"{source!r} is a damaged model file: entry '{_RANDOM_KEYS}.npy' has shape {arrays[_RANDOM_KEYS].shape} "
            f"and dtype {arrays[_RANDOM_KEYS].dtype}, not ({_MT_KEYS},) uint32"
        )
    return _rebuild(model, header, arrays, source)


def _open_archive(data: bytes, source: str) -> zipfile.ZipFile:
    if data[:6] == b"\x93NUMPY":
        raise InvalidModelFileError(f"{source!r} is not an hmm-em model file (a single array, not an .npz archive)")
    try:
        return zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as error:
        raise InvalidModelFileError(
            f"{source!r} is not an hmm-em model file (not a readable .npz archive: {error})"
        ) from None


def _directory(archive: zipfile.ZipFile, source: str) -> dict[str, zipfile.ZipInfo]:
    """The archive's entries by array name, checked before anything is read."""
    if _HEADER + ".npy" not in archive.namelist():
        raise InvalidModelFileError(f"{source!r} is not an hmm-em model file (no header)")
    entries: dict[str, zipfile.ZipInfo] = {}
    for info in archive.infolist():
        match = _ENTRY.fullmatch(info.filename)
        if match is None:
            raise InvalidModelFileError(
                f"{source!r} is not an hmm-em model file: unknown entry {_short(info.filename)} (a model file "
                "holds only header, param.*, fitted.*, monitor.* and random_state.keys .npy entries)"
            )
        name = match.group(1)
        if name in entries:
            raise InvalidModelFileError(f"{source!r} is a damaged model file: entry {info.filename!r} appears twice")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise InvalidModelFileError(
                f"{source!r} is a damaged model file: entry {info.filename!r} uses compression method "
                f"{info.compress_type} (only stored and deflated entries are read)"
            )
        if info.flag_bits & 0x1:
            raise InvalidModelFileError(f"{source!r} is a damaged model file: entry {info.filename!r} is encrypted")
        entries[name] = info
    return entries


def _read_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, source: str) -> bytes:
    """An entry's bytes. Its declared size was checked; zipfile never inflates more than that."""
    try:
        with archive.open(info) as handle:
            raw = handle.read(info.file_size + 1)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, zlib.error) as error:
        raise InvalidModelFileError(f"{source!r} is a damaged model file: entry {info.filename!r}: {error}") from None
    if len(raw) != info.file_size:
        raise InvalidModelFileError(
            f"{source!r} is a damaged model file: entry {info.filename!r} holds {len(raw)} bytes, "
            f"its directory declares {info.file_size}"
        )
    return raw


def _read_header(archive: zipfile.ZipFile, info: zipfile.ZipInfo, source: str) -> dict[str, Any]:
    if info.file_size > MAX_HEADER_BYTES:
        raise InvalidModelFileError(
            f"{source!r} is not an hmm-em model file: entry {info.filename!r} declares {info.file_size} bytes, "
            f"more than a header's {MAX_HEADER_BYTES}"
        )
    array = _parse_npy(_read_entry(archive, info, source), info.filename, source, 1, "U")
    if array.shape != ():
        raise InvalidModelFileError(
            f"{source!r} is not an hmm-em model file (header is an array of shape {array.shape}, not a string)"
        )
    try:
        header = json.loads(str(array[()]))
    except (ValueError, RecursionError) as error:
        raise InvalidModelFileError(f"{source!r} is not an hmm-em model file (header is not JSON: {error})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise InvalidModelFileError(f"{source!r} is not an hmm-em model file (header format is not {FORMAT!r})")
    version = header.get("format_version")
    if type(version) is not int or version != FORMAT_VERSION:
        raise InvalidModelFileError(
            f"{source!r} uses model file format version {_short(version)} (written by hmm-em "
            f"{_short(header.get('hmm_em_version', '?'))}); this hmm-em {_version()} reads only version "
            f"{FORMAT_VERSION}"
        )
    return header


def _check_header_fields(cls: type[BaseHMM], header: dict[str, Any], source: str) -> None:
    """Every header field is present, known and of its type (version 1)."""

    def refuse(rule: str) -> NoReturn:
        raise InvalidModelFileError(f"{source!r} is a damaged model file: header {rule}")

    missing = sorted(set(_HEADER_FIELDS) - set(header))
    unknown = sorted(set(header) - set(_HEADER_FIELDS))
    if missing or unknown:
        refuse(f"lacks field(s) {missing}" if missing else f"has unknown field(s) {_short(unknown)}")
    for field, kinds in _HEADER_FIELDS.items():
        value = header[field]
        if not isinstance(value, kinds) or isinstance(value, bool):
            kind_names = " or ".join("null" if kind is type(None) else kind.__name__ for kind in kinds)
            refuse(f"field {field!r} is {_short(value)}, not {kind_names}")
    names = cls._get_param_names()
    for key in header["params"]:
        if key not in names:
            refuse(f"'params' names {_short(key)}, which is not a parameter of {cls.__name__}")
    for field, allowed in (("array_params", tuple(names)), ("fitted", _fitted_attributes(cls))):
        listed = header[field]
        for item in listed:
            if not isinstance(item, str) or item not in allowed:
                refuse(f"{field!r} lists {_short(item)}, which is not one of {cls.__name__}'s {sorted(allowed)}")
        if len(set(listed)) != len(listed):
            refuse(f"{field!r} lists a name twice: {_short(listed)}")
    given = set(header["params"]) & set(header["array_params"])
    if header["random_state"] is not None:
        given |= {"random_state"} & (set(header["params"]) | set(header["array_params"]))
    if given:
        refuse(f"gives parameter(s) {sorted(given)} twice")
    fitted = header["fitted"]
    if "startprob_" in fitted and set(fitted) != set(_fitted_attributes(cls)):
        refuse(f"'fitted' lists {fitted}: a fitted {cls.__name__} has all of {list(_fitted_attributes(cls))}")
    if header["n_features"] is not None and header["n_features"] < 1:
        refuse(f"field 'n_features' is {header['n_features']}, not a positive integer")
    if header["monitor_iter"] < 0:
        refuse(f"field 'monitor_iter' is {header['monitor_iter']}, not >= 0")
    defaults = _defaults(cls)
    for key, value in header["params"].items():
        rule = _setting_rule(key, value, defaults.get(key))
        if rule:
            refuse(f"parameter {key} is {_short(value)}: {rule}")
    if header["random_state"] is not None:
        rule = _random_state_rule(header["random_state"])
        if rule:
            refuse(f"field 'random_state' {rule}")


def _setting_rule(key: str, value: Any, default: Any) -> str | None:
    """What is wrong with a scalar constructor parameter (as stored in JSON), or None."""
    if key in _OPTIONAL_STRING_SETTINGS:
        return None if value is None or isinstance(value, str) else "it must be a string or null"
    if key in _INTEGER_SETTINGS:
        if value is None and default is None:
            return None
        if type(value) is not int:
            return "it must be an integer"
        if key == "random_state" and not 0 <= value < 2**32:
            return "a seed must be in [0, 2**32)"
        return None
    if isinstance(default, bool):  # verbose: hmmlearn users also pass 0 or 1
        return None if isinstance(value, (bool, int)) else "it must be true or false"
    if isinstance(default, str):
        return None if isinstance(value, str) else "it must be a string"
    if value is None:
        return None if default is None else "it must be a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "it must be a number"
    if math.isnan(value) or (math.isinf(value) and key != "tol"):  # tol=-inf: run all n_iter iterations
        return "it must be a finite number"
    return None


def _random_state_rule(state: dict[str, Any]) -> str | None:
    if set(state) != {"kind", "pos", "has_gauss", "cached_gaussian"}:
        return f"has keys {_short(sorted(state))}, not exactly kind, pos, has_gauss and cached_gaussian"
    if state["kind"] != "MT19937":
        return f"kind is {_short(state['kind'])}, not 'MT19937'"
    if type(state["pos"]) is not int or not 0 <= state["pos"] <= _MT_KEYS:
        return f"pos is {_short(state['pos'])}, not an integer in [0, {_MT_KEYS}]"
    if type(state["has_gauss"]) is not int or state["has_gauss"] not in (0, 1):
        return f"has_gauss is {_short(state['has_gauss'])}, not 0 or 1"
    cached = state["cached_gaussian"]
    if isinstance(cached, bool) or not isinstance(cached, (int, float)) or not math.isfinite(cached):
        return f"cached_gaussian is {_short(cached)}, not a finite number"
    return None


def _configured(cls: type[BaseHMM], header: dict[str, Any], source: str) -> BaseHMM:
    """The model of the header's scalar settings, checked (values, size) before any array is read."""
    params = dict(header["params"])
    if _SYMBOLS in header["array_params"]:
        # The vocabulary is an array, not read yet: it and unknown_symbol are checked with it (_rebuild).
        params.pop("unknown_symbol", None)
    model = cls(**params)
    if header["n_features"] is not None:
        model.n_features = header["n_features"]
    try:
        model._check_settings()  # names a bad setting; refuses a model too large for memory
    except ValueError as error:
        raise InvalidModelFileError(f"{source!r} holds a {cls.__name__} that cannot be built: {error}") from None
    return model


def _entry_limits(
    model: BaseHMM, header: dict[str, Any], entries: dict[str, zipfile.ZipInfo], source: str
) -> dict[str, tuple[int, str]]:
    """For every entry but the header: the most values its array may hold and its dtype kinds.

    The entries must be exactly those the header names. Sizes come from the
    header's model (n_components, n_features, n_mix); a declared size
    beyond them is refused here, before anything is inflated.
    """
    shapes = model._parameter_shapes()
    n_features = getattr(model, "n_features", None)
    if isinstance(n_features, int):
        dimensions = {
            "n_components": int(model.n_components),
            "n_features": n_features,
            "n_mix": int(getattr(model, "n_mix", 1)),
        }
        sizes = {name: math.prod(dimensions[axis] for axis in axes) for name, axes in shapes.items()}
    else:  # a model that has not seen data: only the size limit bounds its arrays
        sizes = dict.fromkeys(shapes, max_model_bytes() // 8)
    expected: dict[str, tuple[int, str]] = {}
    for attribute in header["fitted"]:
        expected[_FITTED + attribute] = (sizes[attribute], _NUMBER_KINDS)
    for key in header["array_params"]:
        if key == _SYMBOLS:
            expected[_PARAM + key] = (MAX_SYMBOLS, "U")
        else:
            expected[_PARAM + key] = (max(sizes.values()), _NUMBER_KINDS)  # priors broadcast to parameter shapes
    expected["monitor.history"] = expected["monitor.seconds"] = (header["monitor_iter"], "f")
    if header["random_state"] is not None:
        expected[_RANDOM_KEYS] = (_MT_KEYS, "u")
    for name in sorted(set(entries) - set(expected) - {_HEADER}):
        raise InvalidModelFileError(
            f"{source!r} is a damaged model file: entry {entries[name].filename!r} is not named by its header"
        )
    for name in sorted(expected):
        if name not in entries:
            raise InvalidModelFileError(f"{source!r} is a damaged model file (missing entry {name!r})")
        most = _NPY_PREAMBLE_BYTES + _value_bytes(expected[name][1]) * expected[name][0]
        if entries[name].file_size > most:
            raise InvalidModelFileError(
                f"{source!r} is a damaged model file: entry {entries[name].filename!r} declares "
                f"{entries[name].file_size} bytes, more than the {most} its header allows "
                f"(at most {expected[name][0]} values)"
            )
    return expected


def _read_array(archive: zipfile.ZipFile, info: zipfile.ZipInfo, source: str, most: int, kinds: str) -> np.ndarray:
    array = _parse_npy(_read_entry(archive, info, source), info.filename, source, most, kinds)
    if kinds == "U" and (array.ndim != 1 or array.dtype.itemsize > _value_bytes("U")):
        raise InvalidModelFileError(
            f"{source!r} is a damaged model file: entry {info.filename!r} is not a 1-D array of symbols of at most "
            f"{MAX_SYMBOL_CHARS} characters (shape {array.shape}, dtype {array.dtype})"
        )
    # Parameters must be finite; a history may hold what a fit reported.
    if array.dtype.kind == "f" and not info.filename.startswith("monitor.") and not np.all(np.isfinite(array)):
        raise InvalidModelFileError(
            f"{source!r} is a damaged model file: entry {info.filename!r} holds non-finite values"
        )
    return array


def _array_rule(dtype: np.dtype, shape: tuple[int, ...], kinds: str = _NUMBER_KINDS) -> str | None:
    """What makes an array of this dtype and shape unfit for a model file, or None."""
    if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None or dtype.kind not in kinds:
        return f"has dtype {dtype}, not {' or '.join(_KIND_NAMES[kind] for kind in kinds)}"
    if dtype.kind != "U" and dtype.itemsize > 8:
        return f"has dtype {dtype}, wider than 8 bytes"
    if len(shape) > _MAX_NDIM:
        return f"has {len(shape)} axes, more than {_MAX_NDIM}"
    return None


def _value_bytes(kinds: str) -> int:
    """The most bytes one value of an entry of these dtype kinds takes (a symbol: 4 per character)."""
    return 4 * MAX_SYMBOL_CHARS if kinds == "U" else 8


def _parse_npy(raw: bytes, entry: str, source: str, most: int, kinds: str) -> np.ndarray:
    """The array of one ``.npy`` entry: its preamble (dtype, shape) is checked before its data is used."""

    def refuse(rule: str) -> NoReturn:
        raise InvalidModelFileError(f"{source!r} is a damaged model file: entry {entry!r} {rule}")

    stream = io.BytesIO(raw)
    try:
        major, _ = np.lib.format.read_magic(stream)
        if major == 1:
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(stream, _NPY_PREAMBLE_BYTES)
        else:
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(stream, _NPY_PREAMBLE_BYTES)
    except (ValueError, TypeError, SyntaxError, EOFError, OverflowError, RecursionError, tokenize.TokenError) as error:
        refuse(f"is not a .npy array ({type(error).__name__}: {error})")
    rule = _array_rule(dtype, shape, kinds)
    if rule:
        refuse(rule)
    count = math.prod(shape)
    if count > most:
        refuse(f"declares shape {shape}, more than the {most} values its header allows")
    offset = stream.tell()
    if len(raw) - offset != count * dtype.itemsize:
        refuse(f"holds {len(raw) - offset} data bytes; shape {shape} of dtype {dtype} needs {count * dtype.itemsize}")
    flat = np.frombuffer(raw, dtype=dtype, count=count, offset=offset).copy()
    return flat.reshape(shape[::-1]).T if fortran_order else flat.reshape(shape)


def _rebuild(model: BaseHMM, header: dict[str, Any], arrays: dict[str, np.ndarray], source: str) -> BaseHMM:
    """The model a checked (version 1) header and its checked arrays describe."""
    cls = type(model)
    params = dict(header["params"])
    params.update({key: arrays[_PARAM + key] for key in header["array_params"]})
    if _SYMBOLS in header["array_params"]:
        params[_SYMBOLS] = [str(symbol) for symbol in params[_SYMBOLS].tolist()]
    random_state = header["random_state"]
    try:
        if random_state is not None:
            generator = np.random.RandomState()
            generator.set_state(
                (
                    random_state["kind"],
                    arrays[_RANDOM_KEYS],
                    random_state["pos"],
                    random_state["has_gauss"],
                    random_state["cached_gaussian"],
                )
            )
            params["random_state"] = generator
        model = cls(**params)
        for attribute in header["fitted"]:  # checked: only the class's own fitted attributes
            setattr(model, attribute, arrays[_FITTED + attribute])
        if header["n_features"] is not None:
            model.n_features = header["n_features"]
        model.monitor_.history.extend(arrays["monitor.history"].tolist())
        model.monitor_.seconds = arrays["monitor.seconds"].tolist()
        model.monitor_.iter = header["monitor_iter"]
        if _SYMBOLS in header["array_params"]:
            model._check_settings()  # the vocabulary's rules and its size against n_features
        if "startprob_" in header["fitted"]:
            model._check()  # a tampered file fails here, not at the first predict
    except InvalidParameterError as error:
        raise InvalidParameterError(f"{source!r} holds invalid parameters: {error}") from None
    except (ValueError, TypeError, IndexError, KeyError, AttributeError, np.linalg.LinAlgError) as error:
        # The checks above should leave nothing to fail here; if something does, it is still the file's fault.
        raise InvalidModelFileError(f"{source!r} is a damaged model file ({type(error).__name__}: {error})") from None
    return model


def _resolve(name: Any, source: str) -> type[BaseHMM]:
    """The class a file names, from the known ones only (never an arbitrary import)."""
    if not isinstance(name, str) or name not in KNOWN_CLASSES:
        raise InvalidModelFileError(
            f"{source!r} holds a model of unknown class {_short(name)}; this hmm-em loads {', '.join(KNOWN_CLASSES)}"
        )
    return model_class(name)


def model_class(name: str) -> type[BaseHMM]:
    """The model class called ``name`` (one of :data:`KNOWN_CLASSES`), its module imported on first use."""
    cls: type[BaseHMM] = getattr(importlib.import_module(MODEL_MODULES[name]), name)
    return cls


# -------------------------------------------------------------------- shared


def _fitted_attributes(cls: type[BaseHMM]) -> tuple[str, ...]:
    return ("startprob_", "transmat_", *cls._fitted_emission_attributes)


def _defaults(cls: type[BaseHMM]) -> dict[str, Any]:
    return {name: parameter.default for name, parameter in inspect.signature(cls).parameters.items()}


def _json_value(key: str, value: Any) -> Any:
    """A scalar constructor parameter as JSON, exactly (numpy scalars become Python ones)."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(
        f"cannot save parameter {key}={value!r} of type {type(value).__name__}: "
        "only numbers, strings, booleans, None and numpy arrays can be saved"
    )


def _short(value: Any) -> str:
    """A value read from a file, for a message: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _to_int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def _version() -> str:
    from hmm import __version__

    return str(__version__)
