"""Waiting for an EMR step in Airflow's triggerer, so no worker slot is held while a step runs.

An iteration's step runs for seconds to hours. A sensor in ``reschedule`` mode frees its worker
slot between looks, but every look is a new task process (Airflow's own start-up, the DAG file
parsed again: a few CPU-seconds), so looking often is costly and looking rarely adds up to a
poke interval to every iteration. Deferring hands the wait to the triggerer, which runs many
waits as coroutines in one process: here one ``DescribeStep`` call every ``poll_seconds``, and
the task resumes as soon as the step has finished.

The look itself is :func:`hmm.orchestration.emr.step_state` (the same call and the same
failure reason as everywhere else), run in a thread so it never blocks the triggerer's event loop.

An iteration's step is done, for the training, once its COMMIT exists (the commit protocol: the
store is the truth), which is before EMR says COMPLETED (the job still has to stop Spark and exit,
and EMR to notice). So the trigger also looks for the COMMIT, every ``commit_poll_seconds``: one
S3 HEAD, cheap and not subject to the EMR API's throttling (its request rates are low, so
DescribeStep stays at one call every ``poll_seconds``, which also catches a step that failed).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

#: EMR step states after which the step changes no more.
TERMINAL_STATES = frozenset(("COMPLETED", "FAILED", "CANCELLED", "INTERRUPTED"))


class EmrStepDoneTrigger(BaseTrigger):
    """Fires once the EMR step ``step_id`` on ``cluster_id`` has finished, whatever the outcome, or once
    the iteration it computes is committed (``commit``: store URI, training id, iteration).

    The event is ``{"state": "COMPLETED"}`` (or another terminal state of EMR's), ``{"state":
    "COMMITTED"}`` when the COMMIT was seen first, or ``{"state": "FAILED", "reason": <EMR's reason>}``
    for a step that failed or was cancelled.
    """

    def __init__(
        self,
        cluster_id: str,
        step_id: str,
        poll_seconds: float,
        aws_conn_id: str,
        commit: list[Any] | None = None,
        commit_poll_seconds: float = 1.0,
    ):
        super().__init__()
        self.cluster_id = cluster_id
        self.step_id = step_id
        self.poll_seconds = poll_seconds
        self.aws_conn_id = aws_conn_id
        self.commit = list(commit) if commit else None
        self.commit_poll_seconds = commit_poll_seconds

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__name__}",
            {
                "cluster_id": self.cluster_id,
                "step_id": self.step_id,
                "poll_seconds": self.poll_seconds,
                "aws_conn_id": self.aws_conn_id,
                "commit": self.commit,
                "commit_poll_seconds": self.commit_poll_seconds,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow.sdk.exceptions import AirflowFailException

        from hmm.orchestration import emr

        client = await asyncio.to_thread(emr.client, self.aws_conn_id)
        committed = await asyncio.to_thread(self._commit_look) if self.commit else None
        # The task looked just before it deferred. And an event within seconds of the deferral races the
        # scheduler: if it handles the deferring process's exit ("success") after queueing the resumed task,
        # Airflow 3.3 fails the task (state mismatch; apache/airflow#66374, #72716). So the first look is
        # one poll later.
        await asyncio.sleep(self.poll_seconds)
        next_look = 0.0
        while True:
            if committed is not None and await asyncio.to_thread(committed):
                self.log.info("the iteration is committed (EMR step %s may still be stopping)", self.step_id)
                yield TriggerEvent({"state": "COMMITTED"})
                return
            if time.monotonic() >= next_look:
                try:
                    state = await asyncio.to_thread(emr.step_state, client, self.cluster_id, self.step_id)
                except AirflowFailException as failure:
                    yield TriggerEvent({"state": "FAILED", "reason": str(failure)})
                    return
                if state in TERMINAL_STATES:
                    yield TriggerEvent({"state": state})
                    return
                self.log.info("EMR step %s on cluster %s: %s", self.step_id, self.cluster_id, state)
                next_look = time.monotonic() + self.poll_seconds
            await asyncio.sleep(min(self.poll_seconds, self.commit_poll_seconds) if committed else self.poll_seconds)

    def _commit_look(self) -> Callable[[], bool]:
        """A function that says whether the iteration is committed (one HEAD of its COMMIT per call)."""
        from hmm.training.commits import Training
        from hmm.training.store import open_store

        assert self.commit is not None
        store, training_id, iteration = self.commit
        training = Training(open_store(store), training_id)
        return lambda: training.has_commit(int(iteration))
