"""The EM loop and everything every HMM shares, whatever it emits.

A model is a start distribution, a transition matrix and an emission model.
Subclasses provide the emission model through a handful of hooks
(``_frame_log_likelihood``, ``_new_emission_stats``,
``_accumulate_emission_stats``, ``_maximize_emissions``, ...); the E-step,
M-step, convergence, scoring and decoding here are shared, and run over whole
batches of sequences with the compiled kernels in :mod:`hmm.core.kernels`.

Parameters after every iteration equal hmmlearn 0.3.3's for the same data and
initial parameters (to floating-point rounding); so do initialisation (same
``random_state`` -> same initial parameters), scores and Viterbi paths.
"""

from __future__ import annotations

import copy
import logging
import math
import string
from collections.abc import Callable
from typing import Any

import numpy as np

from hmm.core import kernels
from hmm.core.candidates import Candidate, best, candidate_seeds, check_n_init, run_candidates
from hmm.core.convergence import ConvergenceMonitor
from hmm.core.engines import engine_for
from hmm.core.estimator import Estimator, check_fitted, check_random_state
from hmm.core.kernels import emissions
from hmm.core.limits import MAX_MODEL_BYTES_ENV, format_bytes, max_model_bytes
from hmm.core.sequences import InvalidParameterError, InvalidSequenceError, batches, offsets_from_lengths
from hmm.core.stats import SufficientStats

_log = logging.getLogger(__name__)

DECODER_ALGORITHMS = frozenset(("viterbi", "map"))
#: What :meth:`BaseHMM.infer_batch` computes, by name: the state of each sample (``predict``), the
#: log-likelihood of each sequence, the posterior (``predict_proba``) and the causal, filtered
#: (``predict_filtered_proba``) state probabilities of each sample.
INFERENCE_OUTPUTS = ("states", "log_likelihood", "posteriors", "filtered")
IMPLEMENTATIONS = frozenset(("log", "scaling"))
#: Copies of the parameters the estimate counts: the parameters, their expected counts
#: (statistics of the same shapes) and the new values of an M-step.
_PARAMETER_COPIES = 3
#: How many times ``frames_per_batch`` an E-step batch holds when its kernel keeps nothing per frame
#: (the categorical and Gaussian kernels read the frames and add the posteriors up in their lanes:
#: their memory grows with the batch's sequences and its longest one, not its frames). Fewer calls
#: save each call's set-up and statistics record: a K=10 categorical iteration over 400,000 frames
#: in one call instead of seven took ~4.5% less time.
FUSED_BATCH_FACTOR = 16


class ModelTooLargeError(InvalidParameterError):
    """A model whose parameters or work arrays would need more memory than allowed."""


def _dimension(value: Any) -> int | None:
    """A model dimension as an int, or None when unset or invalid (the settings checks name those)."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)) and value >= 1:
        return int(value)
    return None


def check_model_size(model: BaseHMM, n_features: int | None = None, limit: int | None = None, longest: int = 0) -> int:
    """Refuse a model too large for memory before anything of its size is allocated.

    Estimates the bytes a model of this size needs from ``n_components``,
    ``n_features`` (``n_features`` if given, e.g. inferred from data, else the
    model's own; unknown counts as 1), ``n_mix`` and the covariance type: its
    parameters, statistics and M-step values (3 copies of every parameter
    array) plus the kernels' work arrays for one batch of ``frames_per_batch``
    frames (or of the ``longest`` sequence, if longer), with the
    forward-backward buffers of a sequence of ``longest`` observations.
    Raises :class:`ModelTooLargeError` (a ``ValueError``) naming the sizes,
    the largest parameter and the limit (``limit``, default
    :func:`max_model_bytes`); returns the estimate.
    """
    n_components = _dimension(model.n_components)
    if n_components is None:
        return 0  # not a size: _check_settings refuses it by name
    known = _dimension(n_features if n_features is not None else getattr(model, "n_features", None))
    dimensions = {
        "n_components": n_components,
        "n_features": known or 1,
        "n_mix": _dimension(getattr(model, "n_mix", 1)) or 1,
    }
    shapes = model._parameter_shapes()
    elements = {name: math.prod(dimensions[axis] for axis in axes) for name, axes in shapes.items()}
    frames = max(model.frames_per_batch, longest)
    lanes = longest * kernels.LANES * model._lane_work_per_frame(dimensions)
    work = frames * model._work_per_frame(dimensions) + lanes
    estimate = 8 * (_PARAMETER_COPIES * sum(elements.values()) + work)
    limit = max_model_bytes() if limit is None else limit
    if estimate > limit:
        largest = max(elements, key=lambda name: elements[name])
        # An unknown n_features counts as 1 and goes unnamed: the size comes from the other fields.
        shown = _axes_used(shapes) - (set() if known else {"n_features"})
        sizes = ", ".join(f"{axis}={value}" for axis, value in dimensions.items() if axis in shown)
        sequence = f" for a sequence of {longest:,} observations" if longest else ""
        raise ModelTooLargeError(
            f"a {type(model).__name__} with {sizes} needs about {format_bytes(estimate)} of memory "
            f"(largest parameter {largest}: {' x '.join(shapes[largest])} = {elements[largest]:,} values, "
            f"{_PARAMETER_COPIES} copies; kernel work arrays {format_bytes(8 * work)}{sequence}), more than the "
            f"limit of {format_bytes(limit)}; set {MAX_MODEL_BYTES_ENV} (bytes) to allow more"
        )
    return estimate


def _axes_used(shapes: dict[str, tuple[str, ...]]) -> set[str]:
    return {axis for axes in shapes.values() for axis in axes}


def real_array(name: str, value: Any) -> np.ndarray:
    """A parameter as a C-contiguous float64 array; complex or non-numeric values are refused.

    A plain float conversion would drop an imaginary part silently.
    """
    array = np.asarray(value)
    if np.iscomplexobj(array):
        raise InvalidParameterError(f"{name} has complex values (dtype {array.dtype}); parameters must be real numbers")
    if not (np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.bool_)):
        raise InvalidParameterError(f"{name} must hold numbers, got dtype {array.dtype}")
    return np.ascontiguousarray(array, dtype=np.float64)


def normalize(a: np.ndarray, axis: int | None = None) -> None:
    """In-place normalisation to sum 1 (hmmlearn's rule: all-zero rows stay zero)."""
    a_sum = a.sum(axis)
    if axis and a.ndim > 1:
        a_sum[a_sum == 0] = 1
        shape = list(a.shape)
        shape[axis] = 1
        a_sum.shape = shape
    a /= a_sum


def check_distribution(name: str, value: np.ndarray) -> None:
    """``value`` (1-D, or 2-D by rows) must hold probabilities summing to 1."""
    if not np.all(np.isfinite(value)):
        raise InvalidParameterError(f"{name} contains non-finite values; probabilities must be finite")
    if np.any(value < 0):
        raise InvalidParameterError(f"{name} contains negative values; probabilities must be >= 0")
    sums = value.sum(axis=-1)
    if value.ndim == 1:
        if not np.allclose(sums, 1):
            raise InvalidParameterError(f"{name} must sum to 1 (got {float(sums):.6g})")
    else:
        bad = np.flatnonzero(~np.isclose(sums, 1))
        if bad.size:
            raise InvalidParameterError(
                f"{name} row {bad[0]} sums to {sums[bad[0]]:.6g}; each row must sum to 1 ({bad.size} row(s) break this)"
            )


def check_shape(name: str, value: np.ndarray, shape: tuple[int, ...]) -> None:
    if value.shape != shape:
        raise InvalidParameterError(f"{name} must have shape {shape}, got {value.shape}")


def _log_or_minus_inf(a: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log(a)


class BaseHMM(Estimator):
    """Hidden Markov model trained by Baum-Welch; see hmmlearn's ``BaseHMM``.

    Constructor arguments are stored as given (scikit-learn convention).
    Fitted attributes: ``startprob_``, ``transmat_``, the emission
    parameters, ``n_features`` and ``monitor_`` (``history``, ``iter``,
    ``converged``).
    """

    #: Number of frames per compiled-kernel call: bounds working memory
    #: (a few arrays of frames x states) whatever the size of the data.
    frames_per_batch = 1 << 16
    #: Letters of ``params`` / ``init_params`` owned by the emission model.
    _emission_letters = ""
    #: Set by fit (from X) or by the constructor of models that take it.
    n_features: Any
    #: "symbol": one integer per frame; "vector": n_features numbers per frame.
    _observation_kind = "vector"

    def __init__(
        self,
        n_components: int = 1,
        startprob_prior: Any = 1.0,
        transmat_prior: Any = 1.0,
        algorithm: str = "viterbi",
        random_state: Any = None,
        n_iter: int = 10,
        tol: float = 1e-2,
        verbose: bool = False,
        params: str = string.ascii_letters,
        init_params: str = string.ascii_letters,
        implementation: str = "log",
        n_init: int = 1,
    ):
        self.n_components = n_components
        self.startprob_prior = startprob_prior
        self.transmat_prior = transmat_prior
        self.algorithm = algorithm
        self.random_state = random_state
        self.n_iter = n_iter
        self.tol = tol
        self.verbose = verbose
        self.params = params
        self.init_params = init_params
        self.implementation = implementation
        self.n_init = n_init
        self.monitor_ = ConvergenceMonitor(self.tol, self.n_iter, self.verbose)

    # ------------------------------------------------------------------ fit

    def fit(self, X: Any, lengths: Any = None, *, sequence_col: str = "sequence") -> BaseHMM:
        """Estimate the parameters with EM (Baum-Welch).

        Initialises the parameters named in ``init_params`` first (hmmlearn's
        rules), then alternates E- and M-steps (:func:`run_em`) until the gain in
        log-likelihood is below ``tol`` or ``n_iter`` iterations are done.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or (n_samples,) for one feature
            The observations of every sequence, one after another; or a Spark DataFrame with one
            sequence per row in column ``sequence_col`` (:mod:`hmm.distributed.spark`).
        lengths : array-like of int of shape (n_sequences,), optional
            The length of each sequence (they sum to ``n_samples``); one sequence if not given.
            Not given with a DataFrame.
        sequence_col : str, default "sequence"
            The DataFrame's column of sequences.

        Returns
        -------
        self : BaseHMM
            Fitted: ``startprob_``, ``transmat_``, the emission parameters and ``monitor_``.
        """
        engine = engine_for(X)
        if engine is not None:
            if lengths is not None:
                raise ValueError("lengths must not be given with a DataFrame: each row is one sequence")
            return engine.fit_dataframe(self, X, sequence_col)
        self._check_settings()
        X, offsets = self._prepare(X, lengths)
        candidates = self.restart_candidates()
        for candidate in candidates:
            candidate._init(X, None if lengths is None else np.diff(offsets))
            candidate._check()
        candidates[0]._check_observations(X, offsets)  # the candidates share n_features: the data's
        X = candidates[0]._fit_observations(X)
        return self.adopt_best(run_candidates(candidates, lambda active: [m._e_step(X, offsets) for m in active]))

    # ------------------------------------------------- the EM protocol
    # What every driver uses: fit on arrays (above), fit on a DataFrame (hmm.distributed.spark) and
    # the training steps (hmm.training.steps), one process per iteration. These public names call
    # hmmlearn's extension hooks (_init, _check, _m_step, ...), which subclasses keep overriding.

    @property
    def observes_symbols(self) -> bool:
        """True when observations are symbols (integers in ``[0, n_features)``), False for vectors."""
        return self._observation_kind == "symbol"

    def infer_n_features(self, largest_symbol: int) -> None:
        """hmmlearn's rule for symbols: without ``n_features``, the largest symbol in the data + 1."""
        if self.observes_symbols and getattr(self, "n_features", None) is None:
            self.n_features = int(largest_symbol) + 1

    def check_settings(self) -> None:
        """Refuse constructor arguments the model cannot use (names the argument and the rule)."""
        self._check_settings()

    def check_parameters(self) -> None:
        """Refuse parameters that are not the model's (shapes, finite values, distributions summing to 1)."""
        self._check()

    def initialize_from_sample(self, X: Any, offsets: np.ndarray) -> np.ndarray:
        """Initial parameters from a sample of the data (hmmlearn's rules), checked.

        Parameters
        ----------
        X : array-like of shape (n_frames,) or (n_frames, n_features)
            The sample's frames, sequences one after another.
        offsets : array of shape (n_sequences + 1,)
            Where each sequence starts, and the end.

        Returns
        -------
        observations : ndarray of shape (n_frames, n_features)
            The sample as the kernels take it.
        """
        observations = self._encode(self._as_observations(X), offsets)
        self._check_values(observations, offsets)
        self._init(observations, np.diff(offsets))
        self._check()
        return observations

    def check_batch(self, X: Any, offsets: np.ndarray, limit: int | None = None) -> np.ndarray:
        """A batch's frames as the kernels take them, after every rule that can be checked.

        Rules on the data alone; the memory the data would make the model need (``limit``,
        :func:`check_model_size`); and, once the model knows its size, the rules against it
        (symbol < n_features, feature width). Raises a ``ValueError`` naming the sequence.
        """
        observations = self._encode(self._as_observations(X), offsets)
        self._check_values(observations, offsets)
        self._check_data_size(observations, offsets, limit)
        if getattr(self, "n_features", None) is not None:
            self._check_observations(observations, offsets)
        return observations

    def batch_statistics(self, X: np.ndarray, offsets: np.ndarray) -> SufficientStats:
        """The E-step over one batch: frames of shape (n_frames, n_features) and offsets -> expected counts."""
        return self._batch_statistics(X, offsets)

    def batch_log_likelihood(self, X: np.ndarray, offsets: np.ndarray) -> float:
        """The log-likelihood of one batch (as :meth:`check_batch` returns it), by the forward pass alone.

        Bit for bit ``batch_statistics(X, offsets).log_likelihood`` (the same forward kernel per
        sequence, the same sum) without the backward pass: what scoring held-out sequences needs.
        """
        return float(self._log_likelihoods(X, offsets).sum())

    def new_statistics(self) -> SufficientStats:
        """Zero statistics of this model's shapes, to add batches' statistics to."""
        return self._empty_stats()

    def update(self, stats: SufficientStats) -> None:
        """The M-step: parameters from (parameters, statistics, priors), replacing those in ``params``."""
        self._m_step(stats)

    def restart_candidates(self) -> list[BaseHMM]:
        """The models ``fit`` trains side by side: ``[self]``, or ``n_init`` copies with their own seeds.

        Copy ``i`` has ``random_state`` ``candidate_seeds(random_state, n_init)[i]`` and
        ``n_init=1``, so it equals a fit of that copy alone; parameters set by hand (those not in
        ``init_params``) are copied along.
        """
        n_init = check_n_init(self.n_init)
        if n_init == 1:
            return [self]
        copies = []
        for seed in candidate_seeds(self.random_state, n_init):
            model = copy.deepcopy(self)
            model.random_state, model.n_init = seed, 1
            copies.append(model)
        return copies

    def adopt_best(self, candidates: list[Candidate]) -> BaseHMM:
        """Take the fitted parameters and ``monitor_`` of the best candidate (highest score); returns self."""
        chosen = best(candidates).model
        if chosen is not self:
            # Everything fit set, and n_features (a setting of some models that fit also sets from the data).
            settings = set(self.get_params(deep=False)) - {"n_features"}
            self.__dict__.update({name: value for name, value in vars(chosen).items() if name not in settings})
        if (self.transmat_.sum(axis=1) == 0).any():
            _log.warning("Some rows of transmat_ have zero sum because no transition from the state was ever observed.")
        return self

    def state_divergence(self, reference: BaseHMM) -> np.ndarray:
        """How far each state's emission distribution is from each of ``reference``'s.

        Parameters
        ----------
        reference : BaseHMM
            A fitted model of the same class and observation width.

        Returns
        -------
        divergence : ndarray of shape (n_components, reference.n_components)
            A symmetric divergence in nats (0 for equal distributions): Jensen-Shannon for
            symbols, symmetric Kullback-Leibler for Poisson and Gaussian emissions, and for
            mixtures that of the Gaussians with the mixtures' mean and covariance.
        """
        check_fitted(self, "transmat_")
        check_fitted(reference, "transmat_")
        if type(reference) is not type(self):
            raise ValueError(f"cannot compare the states of a {type(self).__name__} with a {type(reference).__name__}")
        if getattr(reference, "n_features", None) != getattr(self, "n_features", None):
            raise ValueError(
                f"cannot compare states of {self.n_features} features with states of {reference.n_features} features"
            )
        return self._emission_divergence(reference)

    def permute_states(self, order: Any) -> BaseHMM:
        """Relabel the states: new state ``i`` is old state ``order[i]`` (every parameter follows); returns self."""
        check_fitted(self, "transmat_")
        order = np.asarray(order)
        if order.dtype.kind not in "iu" or sorted(order.tolist()) != list(range(self.n_components)):
            raise ValueError(f"order must be a permutation of range({self.n_components}), got {order.tolist()}")
        for name, axes in self._parameter_shapes().items():
            value = getattr(self, name)
            for axis, axis_name in enumerate(axes):
                if axis_name == "n_components":
                    value = np.take(value, order, axis=axis)
            setattr(self, name, value)
        return self

    def _emission_divergence(self, reference: BaseHMM) -> np.ndarray:
        raise NotImplementedError

    def _e_step(self, X: np.ndarray, offsets: np.ndarray) -> SufficientStats:
        """Expected counts over all sequences, one kernel call per batch."""
        total = self._empty_stats()
        for first, stop in batches(offsets, self._e_step_frames_per_batch()):
            rows = slice(offsets[first], offsets[stop])
            total += self._batch_statistics(X[rows], offsets[first : stop + 1] - offsets[first], first)
        return total

    def _fit_observations(self, X: np.ndarray) -> np.ndarray:
        """The checked training data as every E-step of a fit reads it: ``X`` (a model may narrow it once)."""
        return X

    def _e_step_frames_per_batch(self) -> int:
        """Frames per kernel call of :meth:`_e_step`: ``frames_per_batch``, since the E-step's arrays
        of frames x states (frame probabilities, posteriors) are what the batch size bounds. A model
        whose E-step kernel holds no such array returns :data:`FUSED_BATCH_FACTOR` times more."""
        return self.frames_per_batch

    def _batch_statistics(self, X: np.ndarray, offsets: np.ndarray, first_sequence: int = 0) -> SufficientStats:
        """E-step over one batch of sequences (the unit a Spark task runs)."""
        stats = self._empty_stats()
        log_likelihoods = self._accumulate(stats, X, offsets, first_sequence)
        stats.log_likelihood = float(log_likelihoods.sum())
        stats.n_sequences = offsets.shape[0] - 1
        stats.n_observations = int(offsets[-1])
        return stats

    def _accumulate(
        self, stats: SufficientStats, X: np.ndarray, offsets: np.ndarray, first_sequence: int
    ) -> np.ndarray:
        """Add one batch's expected counts to ``stats``; returns per-sequence log-likelihoods."""
        posteriors, log_likelihoods = self._forward_backward(X, offsets, first_sequence, stats)
        self._accumulate_emission_stats(stats.emission, X, posteriors)
        return log_likelihoods

    def _m_step(self, stats: SufficientStats) -> None:
        """Replace the parameters by the maximisers of the expected log-likelihood."""
        for name, value in self._maximize(stats).items():
            setattr(self, name, value)

    def _maximize(self, stats: SufficientStats) -> dict[str, np.ndarray]:
        """New parameters from (current parameters, statistics, priors); pure.

        Parameters not in ``params`` are left out, i.e. keep their values.
        Zero start or transition probabilities stay zero (left-right models).
        """
        new: dict[str, np.ndarray] = {}
        if "s" in self.params:
            startprob = np.maximum(self.startprob_prior - 1 + stats.start, 0)
            startprob = np.where(self.startprob_ == 0, 0, startprob)
            normalize(startprob)
            new["startprob_"] = startprob
        if "t" in self.params:
            transmat = np.maximum(self.transmat_prior - 1 + stats.trans, 0)
            transmat = np.where(self.transmat_ == 0, 0, transmat)
            normalize(transmat, axis=1)
            new["transmat_"] = transmat
        new.update(self._maximize_emissions(stats))
        return new

    def _empty_stats(self) -> SufficientStats:
        return SufficientStats.zeros(self.n_components, self._new_emission_stats())

    # ------------------------------------------------------------ inference

    def _forward_backward(
        self, X: np.ndarray, offsets: np.ndarray, first_sequence: int, stats: SufficientStats
    ) -> tuple[np.ndarray, np.ndarray]:
        frameprob, log_scale = self._frame_probabilities(X)
        posteriors = np.empty_like(frameprob)
        log_likelihoods = np.empty(offsets.shape[0] - 1)
        failed = kernels.forward_backward(
            self.startprob_, self.transmat_, frameprob, offsets, posteriors, log_likelihoods, stats.start, stats.trans
        )
        return posteriors, self._checked(failed, log_likelihoods, log_scale, X, offsets, first_sequence)

    def _forward_backward_moments(
        self, X: np.ndarray, offsets: np.ndarray, first_sequence: int, stats: SufficientStats, moments: np.ndarray
    ) -> np.ndarray:
        """:meth:`_forward_backward` adding the posteriors' moments over the frames ``X`` to ``moments``
        (:func:`hmm.core.kernels.forward_backward_moments`) instead of returning the posteriors; returns the
        log-likelihoods."""
        frameprob, log_scale = self._frame_probabilities(X)
        log_likelihoods = np.empty(offsets.shape[0] - 1)
        failed = kernels.forward_backward_moments(
            self.startprob_,
            self.transmat_,
            frameprob,
            np.ascontiguousarray(X, dtype=np.float64),
            offsets,
            log_likelihoods,
            stats.start,
            stats.trans,
            moments,
        )
        return self._checked(failed, log_likelihoods, log_scale, X, offsets, first_sequence)

    def _checked(
        self,
        failed: tuple[int, int],
        log_likelihoods: np.ndarray,
        log_scale: np.ndarray | None,
        X: np.ndarray,
        offsets: np.ndarray,
        first_sequence: int,
    ) -> np.ndarray:
        """A forward pass's log-likelihoods with the frames' scales added back, once it did not underflow."""
        self._raise_on_underflow(failed, X, offsets, first_sequence)
        if log_scale is not None:
            emissions.add_log_scales(log_scale, offsets, log_likelihoods)
        return log_likelihoods

    def _frame_probabilities(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Emission probabilities per frame and state, up to a per-frame factor.

        Returns ``(frameprob, log_scale)`` with ``P(x_t | state j) =
        frameprob[t, j] * exp(log_scale[t])``: dividing by the per-frame
        maximum keeps every frame representable however unlikely it is.
        """
        frameprob = np.ascontiguousarray(self._frame_log_likelihood(X), dtype=np.float64)
        log_scale = np.empty(frameprob.shape[0])
        kernels.scale_frames(frameprob, log_scale)  # in place: one frames x states array per batch
        return frameprob, log_scale

    def _raise_on_underflow(
        self, failed: tuple[int, int], X: np.ndarray, offsets: np.ndarray, first_sequence: int
    ) -> None:
        sequence, position = failed
        if sequence < 0:
            return
        row = offsets[sequence] + position
        raise InvalidSequenceError(
            f"sequence {first_sequence + sequence}, position {position}: X value {X[row].tolist()} has "
            "probability 0 under every state the model can be in at that point (forward pass underflow); "
            "the data cannot be explained by the current parameters"
        )

    def _log_likelihoods(self, X: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """Log-likelihood of each sequence."""
        result = np.empty(offsets.shape[0] - 1)
        for first, stop in batches(offsets, self.frames_per_batch):
            rows = slice(offsets[first], offsets[stop])
            local = offsets[first : stop + 1] - offsets[first]
            part = result[first:stop]
            failed, log_scale = self._forward_log_likelihoods(X[rows], local, part)
            self._checked(failed, part, log_scale, X[rows], local, first)
        return result

    def _forward_log_likelihoods(
        self, X: np.ndarray, offsets: np.ndarray, out: np.ndarray
    ) -> tuple[tuple[int, int], np.ndarray | None]:
        """The forward pass over one batch into ``out``: the kernel's ``(sequence, position)`` of an
        underflow (or ``(-1, -1)``) and the frames' log scales still to add (None: none)."""
        frameprob, log_scale = self._frame_probabilities(X)
        return kernels.forward_log_likelihoods(self.startprob_, self.transmat_, frameprob, offsets, out), log_scale

    def _posteriors(self, X: np.ndarray, offsets: np.ndarray) -> tuple[float, np.ndarray]:
        posteriors = np.empty((X.shape[0], self.n_components))
        log_prob = 0.0
        for first, stop in batches(offsets, self.frames_per_batch):
            rows = slice(offsets[first], offsets[stop])
            local = offsets[first : stop + 1] - offsets[first]
            part, log_likelihoods = self._forward_backward(X[rows], local, first, self._empty_stats())
            posteriors[rows] = part
            log_prob += float(log_likelihoods.sum())
        return log_prob, posteriors

    def score(self, X: Any, lengths: Any = None, *, sequence_col: str = "sequence") -> float:
        """Log-likelihood of ``X`` under the model.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or (n_samples,) for one feature
            The observations of every sequence, one after another.
        lengths : array-like of int of shape (n_sequences,), optional
            The length of each sequence (they sum to ``n_samples``); one sequence if not given.
        sequence_col : str, default "sequence"
            With a Spark DataFrame as ``X``: its column of sequences.

        Returns
        -------
        log_likelihood : float
            The sum over all sequences.
        """
        engine = engine_for(X)
        if engine is not None:
            check_fitted(self, "startprob_")
            return engine.score_dataframe(self, X, sequence_col)
        X, offsets = self._prepare_for_inference(X, lengths)
        return float(self._log_likelihoods(X, offsets).sum())

    def score_samples(
        self,
        X: Any,
        lengths: Any = None,
        *,
        sequence_col: str = "sequence",
        log_likelihood_col: str = "log_likelihood",
        proba_col: str = "proba",
    ) -> Any:
        """Log-likelihood of ``X`` and the posterior state probabilities of each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or (n_samples,) for one feature
            The observations of every sequence, one after another; or a Spark DataFrame with one
            sequence per row in column ``sequence_col``.
        lengths : array-like of int of shape (n_sequences,), optional
            The length of each sequence (they sum to ``n_samples``); one sequence if not given.
        sequence_col, log_likelihood_col, proba_col : str
            With a DataFrame: its column of sequences, and the names of the new columns.

        Returns
        -------
        log_likelihood : float
        posteriors : ndarray of shape (n_samples, n_components)
            With a DataFrame: the DataFrame with two new columns instead, ``log_likelihood_col``
            (double: the sequence's log-likelihood) and ``proba_col`` (array<array<double>>,
            length x n_components).
        """
        engine = engine_for(X)
        if engine is not None:
            return self._transform_with(
                engine, X, lengths, sequence_col, log_likelihood=log_likelihood_col, posteriors=proba_col
            )
        X, offsets = self._prepare_for_inference(X, lengths)
        return self._posteriors(X, offsets)

    def predict_proba(
        self, X: Any, lengths: Any = None, *, sequence_col: str = "sequence", proba_col: str = "proba"
    ) -> Any:
        """Posterior probability of each state for each sample (looks at the whole sequence).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or (n_samples,) for one feature
            The observations of every sequence, one after another; or a Spark DataFrame with one
            sequence per row in column ``sequence_col``.
        lengths : array-like of int of shape (n_sequences,), optional
            The length of each sequence (they sum to ``n_samples``); one sequence if not given.
        sequence_col, proba_col : str
            With a DataFrame: its column of sequences, and the name of the new column.

        Returns
        -------
        posteriors : ndarray of shape (n_samples, n_components)
            With a DataFrame: the DataFrame with a new column ``proba_col``
            (array<array<double>>, length x n_components).
        """
        engine = engine_for(X)
        if engine is not None:
            return self._transform_with(engine, X, lengths, sequence_col, posteriors=proba_col)
        return self.score_samples(X, lengths)[1]

    def predict_filtered_proba(
        self, X: Any, lengths: Any = None, *, sequence_col: str = "sequence", filtered_proba_col: str = "filtered_proba"
    ) -> Any:
        """Causal (filtered) probability of each state for each sample: ``P(state_t | x_1, ..., x_t)``.

        Unlike :meth:`predict_proba` (``P(state_t | x_1, ..., x_T)``, which looks ahead), the
        probabilities of sample ``t`` depend only on the samples up to ``t``: what an online
        decoder knows at time ``t``. They are the normalised forward variables of the scaled
        forward pass (Rabiner 1989); the last sample's equal its posterior.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or (n_samples,) for one feature
            The observations of every sequence, one after another; or a Spark DataFrame with one
            sequence per row in column ``sequence_col``.
        lengths : array-like of int of shape (n_sequences,), optional
            The length of each sequence (they sum to ``n_samples``); one sequence if not given.
        sequence_col, filtered_proba_col : str
            With a DataFrame: its column of sequences, and the name of the new column.

        Returns
        -------
        filtered : ndarray of shape (n_samples, n_components)
            Each row sums to 1. With a DataFrame: the DataFrame with a new column
            ``filtered_proba_col`` (array<array<double>>, length x n_components).
        """
        engine = engine_for(X)
        if engine is not None:
            return self._transform_with(engine, X, lengths, sequence_col, filtered=filtered_proba_col)
        X, offsets = self._prepare_for_inference(X, lengths)
        return self._filtered(X, offsets)

    def predict(self, X: Any, lengths: Any = None, *, sequence_col: str = "sequence", state_col: str = "state") -> Any:
        """Most likely state of each sample (by ``algorithm``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or (n_samples,) for one feature
            The observations of every sequence, one after another; or a Spark DataFrame with one
            sequence per row in column ``sequence_col``.
        lengths : array-like of int of shape (n_sequences,), optional
            The length of each sequence (they sum to ``n_samples``); one sequence if not given.
        sequence_col, state_col : str
            With a DataFrame: its column of sequences, and the name of the new column.

        Returns
        -------
        states : ndarray of int of shape (n_samples,)
            With a DataFrame: the DataFrame with a new column ``state_col`` (array<int>).
        """
        engine = engine_for(X)
        if engine is not None:
            return self._transform_with(engine, X, lengths, sequence_col, states=state_col)
        return self.decode(X, lengths)[1]

    def transform(
        self,
        df: Any,
        *,
        sequence_col: str = "sequence",
        state_col: str | None = "state",
        log_likelihood_col: str | None = "log_likelihood",
        proba_col: str | None = "proba",
        filtered_proba_col: str | None = None,
    ) -> Any:
        """A Spark DataFrame with the model's outputs as new columns (Spark ML's ``transform``).

        Every row keeps its columns and gains one column per output whose name is not None:
        ``state_col`` (array<int>, :meth:`predict`), ``log_likelihood_col`` (double, the
        sequence's log-likelihood), ``proba_col`` (array<array<double>>, :meth:`predict_proba`)
        and ``filtered_proba_col`` (array<array<double>>, :meth:`predict_filtered_proba`), all
        from one pass over each Arrow batch on the executors. Lazy, like any DataFrame.

        Parameters
        ----------
        df : pyspark.sql.DataFrame
            One sequence per row in column ``sequence_col``.
        sequence_col : str, default "sequence"
        state_col, log_likelihood_col, proba_col, filtered_proba_col : str or None
            The new columns' names; None leaves that output out.

        Returns
        -------
        DataFrame
        """
        engine = engine_for(df)
        if engine is None:
            raise TypeError(
                f"transform takes a Spark DataFrame, got {type(df).__name__}; on arrays use predict, predict_proba, "
                "score_samples or predict_filtered_proba"
            )
        return self._transform_with(
            engine,
            df,
            None,
            sequence_col,
            states=state_col,
            log_likelihood=log_likelihood_col,
            posteriors=proba_col,
            filtered=filtered_proba_col,
        )

    def _transform_with(self, engine: Any, df: Any, lengths: Any, sequence_col: str, **columns: str | None) -> Any:
        if lengths is not None:
            raise ValueError("lengths must not be given with a DataFrame: each row is one sequence")
        check_fitted(self, "startprob_")
        return engine.transform_dataframe(self, df, sequence_col, {k: v for k, v in columns.items() if v is not None})

    def infer_batch(self, X: np.ndarray, offsets: np.ndarray, outputs: Any) -> dict[str, np.ndarray]:
        """Inference over one batch of checked frames (from :meth:`check_batch`): what a decode runs per batch.

        Parameters
        ----------
        X : ndarray of shape (n_frames, n_features), or (n_frames,) for symbols
        offsets : ndarray of int64 of shape (n_sequences + 1,)
            Where each sequence starts, and the end.
        outputs : iterable of str
            Names from :data:`INFERENCE_OUTPUTS`.

        Returns
        -------
        dict
            ``states``: ndarray of int of shape (n_frames,), as :meth:`predict`;
            ``log_likelihood``: ndarray of shape (n_sequences,), each sequence's :meth:`score`;
            ``posteriors``: ndarray of shape (n_frames, n_components), as :meth:`predict_proba`;
            ``filtered``: ndarray of shape (n_frames, n_components), as :meth:`predict_filtered_proba`.
            Bit for bit what those methods give on the same sequences.
        """
        wanted = set(outputs)
        unknown = wanted - set(INFERENCE_OUTPUTS)
        if unknown:
            raise ValueError(f"unknown inference output(s) {sorted(unknown)}; choose from {list(INFERENCE_OUTPUTS)}")
        result: dict[str, np.ndarray] = {}
        if "posteriors" in wanted or ("states" in wanted and self.algorithm == "map"):
            _, posteriors = self._posteriors(X, offsets)
            if "posteriors" in wanted:
                result["posteriors"] = posteriors
            if "states" in wanted and self.algorithm == "map":
                result["states"] = np.argmax(posteriors, axis=1)
        if "states" in wanted and self.algorithm != "map":
            result["states"] = self._viterbi(X, offsets)[0]
        if "log_likelihood" in wanted:
            result["log_likelihood"] = self._log_likelihoods(X, offsets)
        if "filtered" in wanted:
            result["filtered"] = self._filtered(X, offsets)
        return result

    def decode(self, X: Any, lengths: Any = None, algorithm: str | None = None) -> tuple[float, np.ndarray]:
        """Most likely state sequence: ``viterbi`` (jointly) or ``map`` (per sample).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or (n_samples,) for one feature
            The observations of every sequence, one after another.
        lengths : array-like of int of shape (n_sequences,), optional
            The length of each sequence (they sum to ``n_samples``); one sequence if not given.
        algorithm : {"viterbi", "map"}, optional
            Default: the model's ``algorithm``.

        Returns
        -------
        log_prob : float
            Of the Viterbi paths; for ``map``, like hmmlearn, the sum of the per-sample maximum
            posteriors.
        states : ndarray of int of shape (n_samples,)
        """
        algorithm = algorithm or self.algorithm
        if algorithm not in DECODER_ALGORITHMS:
            raise ValueError(f"Unknown decoder {algorithm!r}; choose one of {sorted(DECODER_ALGORITHMS)}")
        X, offsets = self._prepare_for_inference(X, lengths)
        if algorithm == "map":
            _, posteriors = self._posteriors(X, offsets)
            return float(np.max(posteriors, axis=1).sum()), np.argmax(posteriors, axis=1)
        states, log_prob = self._viterbi(X, offsets)
        return log_prob, states

    def _viterbi(self, X: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, float]:
        """The Viterbi path of every sequence and the sum of their log-probabilities."""
        states = np.empty(X.shape[0], dtype=np.intp)
        log_prob = 0.0
        log_startprob = _log_or_minus_inf(self.startprob_)
        log_transmat = _log_or_minus_inf(self.transmat_)
        for first, stop in batches(offsets, self.frames_per_batch):
            rows = slice(offsets[first], offsets[stop])
            log_probs = np.empty(stop - first)
            kernels.viterbi(
                log_startprob,
                log_transmat,
                np.ascontiguousarray(self._frame_log_likelihood(X[rows])),
                offsets[first : stop + 1] - offsets[first],
                states[rows],
                log_probs,
            )
            log_prob += float(log_probs.sum())
        return states, log_prob

    def _filtered(self, X: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """Filtered state probabilities of every sample, one kernel call per batch."""
        filtered = np.empty((X.shape[0], self.n_components))
        for first, stop in batches(offsets, self.frames_per_batch):
            rows = slice(offsets[first], offsets[stop])
            local = offsets[first : stop + 1] - offsets[first]
            frameprob, _ = self._frame_probabilities(X[rows])  # a per-frame factor cancels when normalising
            failed = kernels.forward_filter(self.startprob_, self.transmat_, frameprob, local, filtered[rows])
            self._raise_on_underflow(failed, X[rows], local, first)
        return filtered

    def sample(
        self, n_samples: int = 1, random_state: Any = None, currstate: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``n_samples`` observations and their states (hmmlearn's draws, in order)."""
        check_fitted(self, "startprob_")
        self._check()
        if random_state is None:
            random_state = self.random_state
        random_state = check_random_state(random_state)
        transmat_cdf = np.cumsum(self.transmat_, axis=1)
        if currstate is None:
            startprob_cdf = np.cumsum(self.startprob_)
            currstate = int((startprob_cdf > random_state.rand()).argmax())
        state_sequence = [currstate]
        X = [self._generate_sample_from_state(currstate, random_state)]
        for _ in range(n_samples - 1):
            currstate = int((transmat_cdf[currstate] > random_state.rand()).argmax())
            state_sequence.append(currstate)
            X.append(self._generate_sample_from_state(currstate, random_state))
        return np.atleast_2d(X), np.array(state_sequence, dtype=int)

    def get_stationary_distribution(self) -> np.ndarray:
        """Stationary distribution of the hidden chain (left eigenvector for eigenvalue 1)."""
        check_fitted(self, "transmat_")
        from scipy import linalg  # hmmlearn's eigen solver, loaded when asked for

        eigvals, eigvecs = linalg.eig(self.transmat_.T)
        eigvec = np.real_if_close(eigvecs[:, np.argmax(eigvals)])
        return eigvec / eigvec.sum()

    def aic(self, X: Any, lengths: Any = None) -> float:
        """Akaike information criterion: -2 log L + 2 (number of free parameters)."""
        return self.information_criteria(self.score(X, lengths), len(np.asarray(X)))[0]

    def bic(self, X: Any, lengths: Any = None) -> float:
        """Bayesian information criterion: -2 log L + (free parameters) log(n_samples)."""
        return self.information_criteria(self.score(X, lengths), len(np.asarray(X)))[1]

    def information_criteria(self, log_likelihood: float, n_observations: int) -> tuple[float, float]:
        """(AIC, BIC) from counts a driver already has, as :meth:`aic` and :meth:`bic` compute them.

        Parameters
        ----------
        log_likelihood : float
            The data's log-likelihood under the model's parameters.
        n_observations : int
            The number of frames of the data (hmmlearn's ``n_samples``).

        Returns
        -------
        aic, bic : float
            hmmlearn's definitions: every parameter the model has counts, whatever ``params`` says.
        """
        n_params = sum(self._get_n_fit_scalars_per_param().values())
        return -2 * log_likelihood + 2 * n_params, -2 * log_likelihood + n_params * np.log(n_observations)

    def save(self, path: Any) -> None:
        """Write the model (settings and fitted parameters) to ``path``; see :func:`hmm.load`."""
        from hmm.core.persistence import save

        save(self, path)

    # ------------------------------------------------------ initialisation

    def _check_settings(self) -> None:
        if self.implementation not in IMPLEMENTATIONS:
            raise ValueError(f"implementation must be one of {sorted(IMPLEMENTATIONS)}, got {self.implementation!r}")
        if self.algorithm not in DECODER_ALGORITHMS:
            raise ValueError(f"algorithm must be one of {sorted(DECODER_ALGORITHMS)}, got {self.algorithm!r}")
        if not isinstance(self.n_components, (int, np.integer)) or self.n_components < 1:
            raise ValueError(f"n_components must be a positive integer, got {self.n_components!r}")
        check_n_init(self.n_init)
        check_model_size(self)

    def _prepare(self, X: Any, lengths: Any) -> tuple[np.ndarray, np.ndarray]:
        """Validate the data's layout and values; returns (observations, offsets)."""
        observations = self._as_observations(X)
        offsets = offsets_from_lengths(lengths, observations.shape[0])
        observations = self._encode(observations, offsets)
        self._check_values(observations, offsets)
        self._check_data_size(observations, offsets)
        return observations, offsets

    def _check_data_size(self, X: np.ndarray, offsets: np.ndarray, limit: int | None = None) -> None:
        """The model and its kernels must fit :func:`check_model_size` for this data.

        With ``n_features`` inferred from X, the model's size is what X makes it
        (named by what in X decides it); then the longest sequence, whose
        forward-backward buffers grow with its length, must fit too.
        """
        n_features = None
        if getattr(self, "n_features", None) is None:
            n_features, location = self._inferred_n_features(X, offsets)
            try:
                check_model_size(self, n_features, limit)
            except ModelTooLargeError as error:
                raise InvalidSequenceError(f"{location} would make n_features={n_features}: {error}") from None
        else:
            check_model_size(self, None, limit)  # the model itself, whatever the data
        lengths = np.diff(offsets)
        sequence = int(np.argmax(lengths))
        try:
            check_model_size(self, n_features, limit, longest=int(lengths[sequence]))
        except ModelTooLargeError as error:
            raise InvalidSequenceError(
                f"sequence {sequence}: its {int(lengths[sequence])} observations would need more memory than "
                f"allowed: {error}"
            ) from None

    def _inferred_n_features(self, X: np.ndarray, offsets: np.ndarray) -> tuple[int, str]:
        """``n_features`` as fit would infer it from X, and what in X decides it."""
        return int(X.shape[1]), f"observations of {X.shape[1]} features"

    def _prepare_for_inference(self, X: Any, lengths: Any) -> tuple[np.ndarray, np.ndarray]:
        check_fitted(self, "startprob_")
        self._check()
        X, offsets = self._prepare(X, lengths)
        self._check_observations(X, offsets)
        return X, offsets

    def _init(self, X: np.ndarray, lengths: np.ndarray | None = None) -> None:
        """hmmlearn's initialisation: Dirichlet draws for start and transitions."""
        self._check_and_set_n_features(X)
        check_model_size(self)  # before any parameter of that size is drawn
        init = 1.0 / self.n_components
        random_state = check_random_state(self.random_state)
        if self._needs_init("s", "startprob_"):
            self.startprob_ = random_state.dirichlet(np.full(self.n_components, init))
        if self._needs_init("t", "transmat_"):
            self.transmat_ = random_state.dirichlet(np.full(self.n_components, init), size=self.n_components)
        n_fit_scalars_per_param = self._get_n_fit_scalars_per_param()
        n_fit_scalars = sum(n_fit_scalars_per_param.get(p, 0) for p in self.params)
        if X.size < n_fit_scalars:
            _log.warning(
                "Fitting a model with %d free scalar parameters with only %d data points "
                "will result in a degenerate solution.",
                n_fit_scalars,
                X.size,
            )

    def _needs_init(self, code: str, name: str) -> bool:
        if code in self.init_params:
            if hasattr(self, name):
                _log.warning(
                    "Even though the %r attribute is set, it will be overwritten during initialization "
                    "because 'init_params' contains %r",
                    name,
                    code,
                )
            return True
        return not hasattr(self, name)

    def _check_and_set_n_features(self, X: np.ndarray) -> None:
        n_features = X.shape[1]
        if getattr(self, "n_features", None) is not None:
            if self.n_features != n_features:
                raise InvalidSequenceError(
                    f"X has {n_features} features per observation but the model has n_features={self.n_features}"
                )
        else:
            self.n_features = n_features

    def _check(self) -> None:
        """Validate the parameters (shapes, distributions) before using them."""
        self.startprob_ = real_array("startprob_", self.startprob_)
        check_shape("startprob_", self.startprob_, (self.n_components,))
        check_distribution("startprob_", self.startprob_)
        self.transmat_ = real_array("transmat_", self.transmat_)
        check_shape("transmat_", self.transmat_, (self.n_components, self.n_components))
        check_distribution("transmat_", self.transmat_)

    # ------------------------------------------------ emission model hooks

    def _as_observations(self, X: Any) -> np.ndarray:
        """X converted to the array the kernels use (layout checks only)."""
        raise NotImplementedError

    def _encode(self, X: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """Observations as numbers from what :meth:`_as_observations` accepted (named symbols -> indices);
        errors name the sequence and position. Default: unchanged."""
        return X

    def _check_values(self, X: np.ndarray, offsets: np.ndarray) -> None:
        """Rules on the data alone (finite, non-negative counts, ...)."""
        raise NotImplementedError

    def _check_observations(self, X: np.ndarray, offsets: np.ndarray) -> None:
        """Rules on the data against the model (symbols < n_features, ...)."""

    def _frame_log_likelihood(self, X: np.ndarray) -> np.ndarray:
        """log P(x_t | state j), shape (n_samples, n_components): a new array the caller may overwrite."""
        raise NotImplementedError

    def _new_emission_stats(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _accumulate_emission_stats(self, stats: dict[str, np.ndarray], X: np.ndarray, posteriors: np.ndarray) -> None:
        raise NotImplementedError

    def _maximize_emissions(self, stats: SufficientStats) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _get_n_fit_scalars_per_param(self) -> dict[str, int]:
        raise NotImplementedError

    def _generate_sample_from_state(self, state: int, random_state: np.random.RandomState) -> Any:
        raise NotImplementedError

    # Persistence: the names of the fitted attributes (besides start/trans).
    _fitted_emission_attributes: tuple[str, ...] = ()

    # ------------------------------------------------------------- sizes

    def _parameter_shapes(self) -> dict[str, tuple[str, ...]]:
        """Every fitted attribute's full shape, by axis name (``n_components``, ``n_features``, ``n_mix``)."""
        return {
            "startprob_": ("n_components",),
            "transmat_": ("n_components", "n_components"),
            **self._emission_parameter_shapes(),
        }

    def _emission_parameter_shapes(self) -> dict[str, tuple[str, ...]]:
        raise NotImplementedError

    def _work_per_frame(self, dimensions: dict[str, int]) -> int:
        """float64 values the kernels hold per frame of a batch: frame probabilities and posteriors."""
        return 2 * dimensions["n_components"]

    def _lane_work_per_frame(self, dimensions: dict[str, int]) -> int:
        """float64 values per lane the kernels hold per frame of the longest sequence: forward-backward's
        alpha and frame buffers, (longest, n_states, LANES) each, and its scales."""
        return 2 * (dimensions["n_components"] + 1)


def run_em(model: BaseHMM, statistics: Callable[[], SufficientStats]) -> BaseHMM:
    """The EM loop of one model (:func:`hmm.core.candidates.run_candidates` with one candidate): E-step
    (``statistics()``, over arrays or a DataFrame), M-step, hmmlearn's convergence rule; ``model`` holds
    initial parameters. A training runs the same iteration as one step per process, its history in the
    store."""
    return model.adopt_best(run_candidates([model], lambda active: [statistics()]))
