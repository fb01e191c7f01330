"""Stable state labels across refits: match a model's states to a reference model's.

A hidden state's number means nothing to EM: two fits of the same data, or this week's refit
of last week's model, can find the same states in another order (hmmlearn issues 140, 351).
Downstream users key on the numbers, so after training the states are renumbered to match a
reference: the assignment of states to reference states that minimises the total divergence
between their emission distributions (:meth:`BaseHMM.state_divergence`), found exactly by
scipy's ``linear_sum_assignment``. What moved is reported per state: the emission divergence
and the change of its transition row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from hmm.core.base import BaseHMM


@dataclass(frozen=True)
class Relabelling:
    """The permutation applied and how far each state is from its reference state."""

    #: New state ``i`` was state ``order[i]`` of the fitted model.
    order: list[int]
    #: The reference state each new state is matched to (``i`` itself while both models have it).
    reference_state: list[int | None]
    #: Emission divergence (nats) from the matched reference state; None when unmatched.
    emission_divergence: list[float | None]
    #: Sum of absolute differences of the state's transition row from the reference's; only when
    #: both models have the same number of states (rows of different lengths do not compare).
    transition_change: list[float | None]

    def as_rows(self) -> list[dict[str, Any]]:
        """One dict per new state, for reports."""
        return [
            {
                "state": state,
                "was": self.order[state],
                "reference_state": self.reference_state[state],
                "emission_divergence": self.emission_divergence[state],
                "transition_change": self.transition_change[state],
            }
            for state in range(len(self.order))
        ]


def relabel(model: BaseHMM, reference: BaseHMM) -> Relabelling:
    """Renumber ``model``'s states (in place) to match ``reference``'s.

    Parameters
    ----------
    model : BaseHMM
        The fitted model to relabel.
    reference : BaseHMM
        A fitted model of the same class and observation width; it may have more or fewer states.

    Returns
    -------
    relabelling : Relabelling
        The order applied (:meth:`BaseHMM.permute_states`) and the drift per state. States matched
        to reference state ``j`` get label ``j`` when the models have equal sizes; otherwise the
        matched states come first, in the order of their reference states, then the others in
        their old order.
    """
    from scipy.optimize import linear_sum_assignment

    divergence = model.state_divergence(reference)
    if not np.isfinite(divergence).all():
        # An infinite divergence (a Poisson rate of 0 against a positive one) is a poor match, not
        # an impossible one: rank it below every finite divergence.
        finite = divergence[np.isfinite(divergence)]
        ceiling = (finite.max() if finite.size else 0.0) * 2 + 1.0
        divergence = np.where(np.isfinite(divergence), divergence, ceiling)
    rows, columns = linear_sum_assignment(divergence)
    matched = dict(zip(rows.tolist(), columns.tolist(), strict=True))
    order = sorted(matched, key=lambda state: matched[state]) + [
        state for state in range(model.n_components) if state not in matched
    ]
    raw = model.state_divergence(reference)
    same_size = model.n_components == reference.n_components
    model.permute_states(order)
    reference_state = [matched.get(old) for old in order]
    return Relabelling(
        order=order,
        reference_state=reference_state,
        emission_divergence=[
            None if ref is None else float(raw[old, ref]) for old, ref in zip(order, reference_state, strict=True)
        ],
        transition_change=[
            float(np.abs(model.transmat_[new] - reference.transmat_[new]).sum()) if same_size else None
            for new in range(model.n_components)
        ],
    )
