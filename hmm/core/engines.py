"""Engines for data the core does not hold itself (a Spark DataFrame), found without importing them.

``fit(X)`` and ``score(X)`` take arrays, or anything an engine registered here accepts. The core
never imports an engine: the package facade (``hmm/__init__.py``) registers the distributed
layer's Spark engine with a check that needs no import (no DataFrame exists before pyspark is
imported), and the engine's module is imported only when such data arrives. An engine module
provides ``fit_dataframe(model, data, sequence_col)``, ``score_dataframe(model, data, sequence_col)`` and
``transform_dataframe(model, data, sequence_col, columns)`` (``columns``: output name -> new column,
outputs from :data:`hmm.core.base.INFERENCE_OUTPUTS`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any

#: (accepts(data) -> bool, module path), in registration order.
_ENGINES: list[tuple[Callable[[Any], bool], str]] = []


def register_engine(accepts: Callable[[Any], bool], module: str) -> None:
    """Route data for which ``accepts`` is true to the engine module ``module`` (imported on first use)."""
    if (accepts, module) not in _ENGINES:
        _ENGINES.append((accepts, module))


def engine_for(data: Any) -> ModuleType | None:
    """The engine module that takes ``data``, or None for arrays (the core's own path)."""
    for accepts, module in _ENGINES:
        if accepts(data):
            return importlib.import_module(module)
    return None
