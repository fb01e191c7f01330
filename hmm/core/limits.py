"""How much memory a model may need: the limit :func:`hmm.core.base.check_model_size` enforces.

A module of its own, with no model import, so the training layer and model files can name the
limit without loading the models.
"""

from __future__ import annotations

import os

#: Default of the memory a model may need (see :func:`hmm.core.base.check_model_size`): parameters,
#: statistics and kernel work arrays. Large enough for every model that trains in
#: reasonable time on one machine; ``HMM_EM_MAX_MODEL_BYTES`` (bytes) raises or lowers it.
MAX_MODEL_BYTES = 8 * 2**30
MAX_MODEL_BYTES_ENV = "HMM_EM_MAX_MODEL_BYTES"
#: Sequences read for data-dependent initialisation (k-means means, Poisson moments) from a
#: DataFrame or a training's Parquet splits, so the driver holds a bounded sample; categorical
#: ``n_features`` uses an exact aggregate instead.
INIT_SAMPLE_SEQUENCES = 10_000


def max_model_bytes() -> int:
    """The memory limit: ``HMM_EM_MAX_MODEL_BYTES`` or :data:`MAX_MODEL_BYTES`."""
    text = os.environ.get(MAX_MODEL_BYTES_ENV)
    if text is None or not text.strip():
        return MAX_MODEL_BYTES
    value = text.strip()
    if not (value.isascii() and value.isdigit()) or int(value) < 1:
        raise ValueError(f"environment variable {MAX_MODEL_BYTES_ENV}={text!r} must be a positive number of bytes")
    return int(value)


def format_bytes(size: float) -> str:
    """``size`` bytes in binary units, e.g. ``16.0 TiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024:
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} PiB"


#: Most symbols a categorical vocabulary (``CategoricalHMM(symbols=...)``, a training's string column)
#: may hold, and the longest symbol in characters: a vocabulary travels in the model file, the
#: training's parameters and every Spark task, so it stays small next to the model it names.
MAX_SYMBOLS = 100_000
MAX_SYMBOL_CHARS = 256
