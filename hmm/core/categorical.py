"""Categorical emissions: each observation is one symbol in ``[0, n_features)``, or a named symbol.

With ``symbols=[...]`` (a fixed vocabulary, :mod:`hmm.core.vocabulary`) the model takes and
returns strings: ``fit``, ``predict``, ``score``, ... map them to their indices in the
vocabulary, ``sample`` draws strings. Without it the model is hmmlearn's.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hmm.core import kernels
from hmm.core.base import FUSED_BATCH_FACTOR, BaseHMM, check_distribution, check_shape, normalize, real_array
from hmm.core.engines import engine_for
from hmm.core.estimator import check_random_state
from hmm.core.sequences import InvalidParameterError, InvalidSequenceError, offsets_from_lengths, where
from hmm.core.stats import SufficientStats
from hmm.core.vocabulary import FactorizedSymbols, check_vocabulary, distinct_symbols, encode, holds_strings

#: Symbols are int64 in the kernels (or uint8, read as they are).
_LARGEST_SYMBOL = np.iinfo(np.int64).max


class CategoricalHMM(BaseHMM):
    """HMM with categorical emissions; drop-in for ``hmmlearn.hmm.CategoricalHMM``.

    ``X`` holds integer symbols, shape ``(n_samples, 1)`` (or 1-D).
    Parameters letters: ``s`` startprob, ``t`` transmat, ``e`` emissionprob.
    Fitted: ``emissionprob_`` (n_components, n_features).

    Named symbols (not in hmmlearn): ``symbols``, a list of distinct strings whose order is the
    symbol index (``n_features = len(symbols)``); ``X`` then holds strings (numpy ``str`` or
    ``object`` arrays) and ``sample`` returns strings. ``fit`` on strings without ``symbols``
    sets it to the data's distinct strings, sorted. A string outside the vocabulary raises an
    error naming its sequence and position, unless ``unknown_symbol`` (one of ``symbols``)
    names the symbol it counts as.
    """

    _emission_letters = "e"
    _observation_kind = "symbol"
    _fitted_emission_attributes = ("emissionprob_",)

    def __init__(
        self,
        n_components: int = 1,
        startprob_prior: Any = 1.0,
        transmat_prior: Any = 1.0,
        *,
        emissionprob_prior: Any = 1.0,
        n_features: int | None = None,
        algorithm: str = "viterbi",
        random_state: Any = None,
        n_iter: int = 10,
        tol: float = 1e-2,
        verbose: bool = False,
        params: str = "ste",
        init_params: str = "ste",
        implementation: str = "log",
        n_init: int = 1,
        symbols: Any = None,
        unknown_symbol: str | None = None,
    ):
        super().__init__(
            n_components,
            startprob_prior=startprob_prior,
            transmat_prior=transmat_prior,
            algorithm=algorithm,
            random_state=random_state,
            n_iter=n_iter,
            tol=tol,
            verbose=verbose,
            params=params,
            init_params=init_params,
            implementation=implementation,
            n_init=n_init,
        )
        self.emissionprob_prior = emissionprob_prior
        self.n_features = n_features
        self.symbols = symbols
        self.unknown_symbol = unknown_symbol

    def fit(self, X: Any, lengths: Any = None, *, sequence_col: str = "sequence") -> CategoricalHMM:
        """As :meth:`BaseHMM.fit`; on strings without ``symbols``, the vocabulary is the data's distinct
        strings, sorted (as hmmlearn infers ``n_features`` from the largest symbol)."""
        self._check_vocabulary()
        if self.symbols is None and engine_for(X) is None and np.asarray(X).dtype.kind in "UO":
            array = self._as_observations(X)  # only for strings: integer data is converted once, by fit
            if array.dtype.kind in "UO":
                self.infer_symbols(distinct_symbols(array, offsets_from_lengths(lengths, array.shape[0])))
        super().fit(X, lengths, sequence_col=sequence_col)
        return self

    @property
    def named_symbols(self) -> bool:
        """True when the model has a vocabulary: its data and samples are strings."""
        return self.symbols is not None

    def infer_symbols(self, symbols: list[str]) -> None:
        """The vocabulary the data gives (its distinct strings, sorted), unless the model has one."""
        if self.symbols is None:
            self.symbols = list(symbols)
            self._check_vocabulary()

    def _check_vocabulary(self) -> None:
        """The vocabulary's rules; ``n_features`` is its size (set from it when not given)."""
        if self.symbols is None:
            if self.unknown_symbol is not None:
                raise InvalidParameterError("unknown_symbol is given without symbols (a vocabulary to map it into)")
            return
        self.symbols = list(check_vocabulary(self.symbols, self.unknown_symbol))
        if self.n_features is None:
            self.n_features = len(self.symbols)
        elif self.n_features != len(self.symbols):
            raise InvalidParameterError(
                f"n_features={self.n_features} but symbols has {len(self.symbols)} symbols (n_features is the "
                "vocabulary's size)"
            )

    def _check_settings(self) -> None:
        self._check_vocabulary()
        super()._check_settings()

    def _as_observations(self, X: Any) -> np.ndarray:
        if isinstance(X, FactorizedSymbols):  # an Arrow string column (hmm.distributed.arrow): _encode maps it
            return X  # type: ignore[return-value]
        array = np.asarray(X)
        if array.ndim == 2 and array.shape[1] == 1:
            array = array[:, 0]
        if array.ndim != 1:
            raise InvalidSequenceError(
                f"X must have shape (n_samples, 1) (one symbol per observation), got shape {array.shape}"
            )
        if self.symbols is not None or holds_strings(array):
            if np.issubdtype(array.dtype, np.number) or array.dtype.kind == "b":
                raise InvalidSequenceError(
                    f"X holds numbers (dtype {array.dtype}) but the model names its symbols (symbols=[...]): "
                    "give the symbols as strings"
                )
            return array  # strings: _encode maps them to indices, naming any it cannot
        if np.issubdtype(array.dtype, np.unsignedinteger) and array.size and array.max() > _LARGEST_SYMBOL:
            # Kept unsigned so that _check_values names the symbol (as int64 it would read as negative).
            return np.ascontiguousarray(array)
        if array.dtype == np.uint8:
            # The kernels read uint8 symbols as they are (what the Spark split cache keeps): widening
            # them to int64 and checking eight times the bytes cost more than a tenth of a Spark E-step.
            return np.ascontiguousarray(array)
        if np.issubdtype(array.dtype, np.integer):
            return np.ascontiguousarray(array, dtype=np.int64)
        raise InvalidSequenceError(f"X must hold integer symbols, got dtype {array.dtype}")

    def _encode(self, X: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        if not isinstance(X, FactorizedSymbols) and (X.dtype == np.int64 or np.issubdtype(X.dtype, np.unsignedinteger)):
            return X
        if self.symbols is None:
            raise InvalidSequenceError(
                "X holds strings but the model has no vocabulary: fit on strings sets one, or give symbols=[...]"
            )
        self._check_vocabulary()
        return encode(X, offsets, self.symbols, self.unknown_symbol)

    def _check_values(self, X: np.ndarray, offsets: np.ndarray) -> None:
        # Reductions first (here and in _check_observations): valid data, every batch of every
        # E-step on Spark, writes no mask or index array.
        if X.size and X.min() < 0:
            negative = np.flatnonzero(X < 0)
            row = negative[0]
            raise InvalidSequenceError(
                f"{where(offsets, row)}: symbol {X[row]} is negative (symbols must be integers in "
                f"[0, n_features); {negative.size} observation(s) break this)"
            )
        if X.dtype == np.uint64:
            too_large = np.flatnonzero(X > _LARGEST_SYMBOL)
            row = too_large[0]
            raise InvalidSequenceError(
                f"{where(offsets, row)}: symbol {X[row]} is larger than the largest symbol hmm-em supports, "
                f"2**63 - 1 ({too_large.size} observation(s) break this)"
            )

    def _inferred_n_features(self, X: np.ndarray, offsets: np.ndarray) -> tuple[int, str]:
        row = int(np.argmax(X))
        return int(X[row]) + 1, f"{where(offsets, row)}: symbol {X[row]}"

    def _check_observations(self, X: np.ndarray, offsets: np.ndarray) -> None:
        if X.size and X.max() >= self.n_features:
            too_large = np.flatnonzero(self.n_features <= X)
            row = too_large[0]
            raise InvalidSequenceError(
                f"{where(offsets, row)}: symbol {X[row]} is outside [0, {self.n_features}) "
                f"(n_features={self.n_features}; {too_large.size} observation(s) break this)"
            )

    def _check_and_set_n_features(self, X: np.ndarray) -> None:
        if self.n_features is None:
            self.n_features = int(X.max()) + 1

    def _init(self, X: np.ndarray, lengths: np.ndarray | None = None) -> None:
        super()._init(X, lengths)
        # hmmlearn replaces random_state by the generator it draws from.
        self.random_state = check_random_state(self.random_state)
        if self._needs_init("e", "emissionprob_"):
            self.emissionprob_ = self.random_state.rand(self.n_components, self.n_features)
            normalize(self.emissionprob_, axis=1)

    def _check(self) -> None:
        super()._check()
        self._check_vocabulary()
        self.emissionprob_ = np.atleast_2d(real_array("emissionprob_", self.emissionprob_))
        if self.n_features is None:
            self.n_features = self.emissionprob_.shape[1]
        check_shape("emissionprob_", self.emissionprob_, (self.n_components, self.n_features))
        check_distribution("emissionprob_", self.emissionprob_)
        self._emissionprob_by_symbol = np.ascontiguousarray(self.emissionprob_.T)

    def _frame_probabilities(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        # Probabilities are at most 1 and the kernel rescales every frame:
        # no log-space detour needed.
        return np.take(self._emissionprob_by_symbol, X, axis=0), None

    def _forward_log_likelihoods(
        self, X: np.ndarray, offsets: np.ndarray, out: np.ndarray
    ) -> tuple[tuple[int, int], np.ndarray | None]:
        # Frames read from the symbol table as the E-step reads them: no frames x states array,
        # and the same bits as the E-step's log-likelihoods.
        failed = kernels.categorical_forward_log_likelihoods(
            self.startprob_, self.transmat_, self._emissionprob_by_symbol, X, offsets, out
        )
        return failed, None

    def _frame_log_likelihood(self, X: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return np.log(np.take(self._emissionprob_by_symbol, X, axis=0))

    def _lane_work_per_frame(self, dimensions: dict[str, int]) -> int:
        # and the block's symbol-row offsets: one int64 per lane and frame
        return super()._lane_work_per_frame(dimensions) + 1

    def _new_emission_stats(self) -> dict[str, np.ndarray]:
        return {"obs": np.zeros((self.n_components, self.n_features))}

    def _fit_observations(self, X: np.ndarray) -> np.ndarray:
        # Checked symbols below 256 as uint8, once per fit: every E-step then reads an eighth of the
        # bytes (K=10, 400,000 symbols: 4.11 -> 4.00 ms per E-step, the same bits; the copy takes 0.04 ms).
        if X.dtype == np.int64 and self.n_features <= 256:
            return X.astype(np.uint8)
        return X

    def _e_step_frames_per_batch(self) -> int:
        # the fused kernel below holds no frames x states array
        return FUSED_BATCH_FACTOR * self.frames_per_batch

    def _accumulate(
        self, stats: SufficientStats, X: np.ndarray, offsets: np.ndarray, first_sequence: int
    ) -> np.ndarray:
        # One fused pass: emission probabilities come from the small symbol
        # table and posteriors go straight into per-symbol counts, so no
        # frames x states array is ever written.
        log_likelihoods = np.empty(offsets.shape[0] - 1)
        counts_by_symbol = np.zeros((self.n_features, self.n_components))
        failed = kernels.categorical_forward_backward(
            self.startprob_,
            self.transmat_,
            self._emissionprob_by_symbol,
            X,
            offsets,
            log_likelihoods,
            stats.start,
            stats.trans,
            counts_by_symbol,
        )
        self._raise_on_underflow(failed, X, offsets, first_sequence)
        if "e" in self.params:
            stats.emission["obs"] += counts_by_symbol.T
        return log_likelihoods

    def _maximize_emissions(self, stats: SufficientStats) -> dict[str, np.ndarray]:
        if "e" not in self.params:
            return {}
        emissionprob = np.maximum(self.emissionprob_prior - 1 + stats["obs"], 0)
        normalize(emissionprob, axis=1)
        return {"emissionprob_": emissionprob}

    def _m_step(self, stats: SufficientStats) -> None:
        super()._m_step(stats)
        self._emissionprob_by_symbol = np.ascontiguousarray(self.emissionprob_.T)

    def _emission_parameter_shapes(self) -> dict[str, tuple[str, ...]]:
        return {"emissionprob_": ("n_components", "n_features")}

    def _get_n_fit_scalars_per_param(self) -> dict[str, int]:
        nc, nf = self.n_components, self.n_features or 0
        return {"s": nc - 1, "t": nc * (nc - 1), "e": nc * (nf - 1)}

    def sample(
        self, n_samples: int = 1, random_state: Any = None, currstate: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``n_samples`` symbols and their states; strings of shape (n_samples, 1) with ``symbols``."""
        X, states = super().sample(n_samples, random_state, currstate)
        if self.symbols is not None:
            X = np.asarray(self.symbols, dtype=str)[X[:, 0]][:, None]
        return X, states

    def _generate_sample_from_state(self, state: int, random_state: np.random.RandomState) -> Any:
        cdf = np.cumsum(self.emissionprob_[state, :])
        return [(cdf > random_state.rand()).argmax()]

    def _emission_divergence(self, reference: BaseHMM) -> np.ndarray:
        """Jensen-Shannon divergence between emission distributions (finite where symbols have zero mass)."""
        from scipy.special import xlogy  # 0.14 s of imports a training step's model does not otherwise need

        p, q = self.emissionprob_[:, None, :], reference.emissionprob_[None, :, :]
        middle = (p + q) / 2
        safe = np.where(middle > 0, middle, 1.0)  # where the middle is 0, so are p and q: xlogy gives 0
        return 0.5 * (xlogy(p, p / safe).sum(-1) + xlogy(q, q / safe).sum(-1))
