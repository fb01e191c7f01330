"""scikit-learn's estimator conventions, kept without importing scikit-learn.

hmmlearn's models are scikit-learn estimators: constructor arguments stored as given,
``get_params`` / ``set_params`` (so ``sklearn.base.clone``, pipelines and searches work), a
repr that names the changed arguments, and ``check_random_state`` / ``check_is_fitted``
semantics. Importing ``sklearn.base`` for that costs 0.6-0.7 s (scikit-learn 1.9 imports
scipy.stats and pandas), more than everything else a model needs, in every process that
touches a model: each training step, CLI command and Spark worker. So the models implement the
protocol here, with scikit-learn's own code paths for what is rare (the repr, tags, the
not-fitted error), imported on first use.

The difference from hmmlearn: ``isinstance(model, sklearn.base.BaseEstimator)`` is False.
"""

from __future__ import annotations

import inspect
import numbers
from collections import defaultdict
from typing import TYPE_CHECKING, Any

import numpy as np


class Estimator:
    """``get_params`` / ``set_params`` and the repr of a scikit-learn estimator (``BaseEstimator``'s rules)."""

    if TYPE_CHECKING:
        # Fitted attributes (``startprob_``, ``emissionprob_``, ...) are set by fit and hooks of each
        # model kind, as on scikit-learn's estimators, which type checkers see as Any.
        def __getattr__(self, name: str) -> Any: ...

    @classmethod
    def _get_param_names(cls) -> list[str]:
        """The constructor's argument names, sorted (scikit-learn's rule: no ``*args``)."""
        init = getattr(cls.__init__, "deprecated_original", cls.__init__)
        if init is object.__init__:
            return []
        parameters = [
            p for p in inspect.signature(init).parameters.values() if p.name != "self" and p.kind != p.VAR_KEYWORD
        ]
        for p in parameters:
            if p.kind == p.VAR_POSITIONAL:
                raise RuntimeError(
                    f"scikit-learn estimators should always specify their parameters in the signature of their "
                    f"__init__ (no varargs). {cls} with constructor {inspect.signature(init)} doesn't follow this "
                    "convention."
                )
        return sorted(p.name for p in parameters)

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor arguments by name; with ``deep``, those of estimator-valued ones as ``name__arg``."""
        out: dict[str, Any] = {}
        for key in self._get_param_names():
            value = getattr(self, key)
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                out.update((f"{key}__{k}", v) for k, v in value.get_params().items())
            out[key] = value
        return out

    def set_params(self, **params: Any) -> Any:
        """Set constructor arguments (``name__arg`` for an estimator-valued one's); returns self."""
        if not params:
            return self
        valid = self.get_params(deep=True)
        nested: defaultdict[str, dict[str, Any]] = defaultdict(dict)
        for name, value in params.items():
            key, delimiter, sub_key = name.partition("__")
            if key not in valid:
                raise ValueError(
                    f"Invalid parameter {key!r} for estimator {self}. "
                    f"Valid parameters are: {self._get_param_names()!r}."
                )
            if delimiter:
                nested[key][sub_key] = value
            else:
                setattr(self, key, value)
                valid[key] = value
        for key, sub_params in nested.items():
            valid[key].set_params(**sub_params)
        return self

    def __repr__(self, N_CHAR_MAX: int = 700) -> str:  # scikit-learn's signature
        # scikit-learn's printer (the changed arguments, wrapped and cut as it does) formats only its
        # own estimators and hands anything else back to repr: a stand-in of this class's name,
        # constructor and arguments, derived from BaseEstimator, gets the same text.
        from sklearn.base import BaseEstimator

        stand_in_class: Any = type(type(self).__name__, (BaseEstimator,), {"__init__": type(self).__init__})
        stand_in = object.__new__(stand_in_class)
        stand_in.__dict__.update(self.get_params(deep=False))
        return str(BaseEstimator.__repr__(stand_in, N_CHAR_MAX))

    def __sklearn_tags__(self) -> Any:
        """scikit-learn's tags of a plain estimator (``sklearn.utils.get_tags`` asks every estimator)."""
        from sklearn.base import BaseEstimator

        return BaseEstimator.__sklearn_tags__(self)


def check_random_state(seed: Any) -> np.random.RandomState:
    """``sklearn.utils.check_random_state``: None -> numpy's global RandomState, an int -> a new
    RandomState seeded with it, a RandomState -> itself."""
    if seed is None or seed is np.random:
        return np.random.mtrand._rand
    if isinstance(seed, numbers.Integral):
        return np.random.RandomState(int(seed))
    if isinstance(seed, np.random.RandomState):
        return seed
    raise ValueError(f"{seed!r} cannot be used to seed a numpy.random.RandomState instance")


def check_fitted(model: Any, attribute: str) -> None:
    """``sklearn.utils.validation.check_is_fitted(model, attribute)``: scikit-learn's
    ``NotFittedError`` (a ValueError and an AttributeError) when ``model`` lacks ``attribute``."""
    if hasattr(model, attribute):
        return
    from sklearn.exceptions import NotFittedError

    raise NotFittedError(
        f"This {type(model).__name__} instance is not fitted yet. Call 'fit' with appropriate arguments before "
        "using this estimator."
    )
