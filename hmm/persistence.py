"""Saving and loading models: one versioned ``.npz`` file, no pickle.

Pickles break across library versions and execute code when loaded; this
format holds only a JSON header and plain arrays, so it can be read safely
(``allow_pickle=False``) and checked before anything is built:

* ``header``: JSON with the format name and version, the hmm-em version that
  wrote it, the class name, the constructor parameters that are scalars or
  strings, ``n_features``, the names of the stored arrays and the monitor's
  ``iter``;
* ``param.<name>``: constructor parameters that are arrays (priors);
* ``fitted.<name>``: ``startprob_``, ``transmat_`` and the class's
  ``_fitted_emission_attributes``, bit for bit;
* ``monitor.history`` / ``monitor.seconds``: the convergence history;
* ``random_state.keys``: the Mersenne Twister state, when ``random_state`` is
  a ``RandomState`` (hmmlearn replaces a seed by one during ``fit``), so a
  loaded model samples exactly what the saved one would have.
"""

from __future__ import annotations

import io
import json
import os
import uuid
import zipfile
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # the classes are resolved on hmm at load time; importing base here would load every model
    from .base import BaseHMM

FORMAT = "hmm-em model"
FORMAT_VERSION = 1
#: Classes a file may name, resolved on ``hmm`` at load time (so models added
#: by later modules load without this module importing them).
KNOWN_CLASSES = ("CategoricalHMM", "GaussianHMM", "GMMHMM", "PoissonHMM")

_HEADER = "header"
_PARAM = "param."
_FITTED = "fitted."
_RANDOM_KEYS = "random_state.keys"


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
    """The model file's bytes; the same model always gives the same bytes."""
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
        elif isinstance(value, (np.ndarray, list, tuple)):
            # Lists (e.g. a prior written by hand) come back as the equivalent array.
            array = np.asarray(value)
            if array.dtype == object:
                raise TypeError(f"cannot save parameter {key}: {value!r} is not a regular numeric array")
            arrays[_PARAM + key] = array
            header["array_params"].append(key)
        else:
            header["params"][key] = _json_value(key, value)
    for attribute in ("startprob_", "transmat_", *model._fitted_emission_attributes):
        if hasattr(model, attribute):
            arrays[_FITTED + attribute] = np.asarray(getattr(model, attribute))
            header["fitted"].append(attribute)
    arrays["monitor.history"] = np.asarray(model.monitor_.history, dtype=np.float64)
    arrays["monitor.seconds"] = np.asarray(getattr(model.monitor_, "seconds", []), dtype=np.float64)
    arrays[_HEADER] = np.array(json.dumps(header, sort_keys=True))

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


def load(path: str | os.PathLike[str]) -> BaseHMM:
    """Rebuild the model saved at ``path`` by :func:`save` (or ``model.save``).

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` for a
    file that is not a model, of an unknown format version or class.
    """
    source = os.fspath(path)
    if not os.path.exists(source):
        raise FileNotFoundError(f"no saved model at {source!r}: the file does not exist")
    with open(source, "rb") as file:
        return loads(file.read(), source=source)


def loads(data: bytes, source: str = "<bytes>") -> BaseHMM:
    """Rebuild a model from :func:`dumps` bytes; ``source`` names them in errors."""
    try:
        stored = np.load(io.BytesIO(data), allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"{source!r} is not an hmm-em model file (not a readable .npz archive: {error})") from error
    if not isinstance(stored, np.lib.npyio.NpzFile):
        raise ValueError(f"{source!r} is not an hmm-em model file (a single array, not an .npz archive)")
    with stored:
        try:
            arrays = {key: stored[key] for key in stored.files}
        except (OSError, ValueError, zipfile.BadZipFile) as error:
            raise ValueError(f"{source!r} is a damaged model file ({error})") from error
    if _HEADER not in arrays:
        raise ValueError(f"{source!r} is not an hmm-em model file (no header)")
    try:
        header = json.loads(str(arrays[_HEADER][()]))
    except ValueError as error:
        raise ValueError(f"{source!r} is not an hmm-em model file (header is not JSON: {error})") from error
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ValueError(f"{source!r} is not an hmm-em model file (header format is not {FORMAT!r})")
    version = header.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{source!r} uses model file format version {version!r} (written by hmm-em "
            f"{header.get('hmm_em_version', '?')}); this hmm-em {_version()} reads only version {FORMAT_VERSION}"
        )
    cls = _resolve(header.get("class"), source)
    try:
        return _rebuild(cls, header, arrays)
    except KeyError as error:
        raise ValueError(f"{source!r} is a damaged model file (missing entry {error})") from error


def _rebuild(cls: type[BaseHMM], header: dict[str, Any], arrays: dict[str, np.ndarray]) -> BaseHMM:
    """The model a (version 1) header and its arrays describe, checked."""

    params = dict(header["params"])
    params.update({key: arrays[_PARAM + key] for key in header["array_params"]})
    random_state = header["random_state"]
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
    for attribute in header["fitted"]:
        setattr(model, attribute, arrays[_FITTED + attribute])
    if header["n_features"] is not None:
        model.n_features = header["n_features"]
    model.monitor_.history.extend(arrays["monitor.history"].tolist())
    model.monitor_.seconds = arrays["monitor.seconds"].tolist()
    model.monitor_.iter = header["monitor_iter"]
    if "startprob_" in header["fitted"]:
        model._check()  # a tampered file fails here, not at the first predict
    return model


def _resolve(name: Any, source: str) -> type[BaseHMM]:
    """The class a file names, from the known ones only (never an arbitrary import)."""
    if name not in KNOWN_CLASSES:
        raise ValueError(
            f"{source!r} holds a model of unknown class {name!r}; this hmm-em loads {', '.join(KNOWN_CLASSES)}"
        )
    import hmm

    cls = getattr(hmm, name, None)
    if cls is None:
        raise ValueError(f"{source!r} holds a {name}, which this installation of hmm-em {_version()} does not provide")
    return cls


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


def _to_int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def _version() -> str:
    import hmm

    return str(getattr(hmm, "__version__", "unknown"))
