"""Waiting for an EMR step in Airflow's triggerer, so no worker slot is held while a step runs.

An iteration's step runs for seconds to hours. A sensor in ``reschedule`` mode frees its worker
slot between looks, but every look is a new task process (Airflow's own start-up, the DAG file
parsed again: a few CPU-seconds), so looking often is costly and looking rarely adds up to a
poke interval to every iteration. Deferring hands the wait to the triggerer, which runs many
waits as coroutines in one process: here one ``DescribeStep`` call every ``poll_seconds``, and
the task resumes as soon as the step has finished.

The look itself is :func:`hmm.orchestration.emr.step_state` (the same call and the same
failure reason as everywhere else), run in a thread so it never blocks the triggerer's event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

#: EMR step states after which the step changes no more.
TERMINAL_STATES = frozenset(("COMPLETED", "FAILED", "CANCELLED", "INTERRUPTED"))


class EmrStepDoneTrigger(BaseTrigger):
    """Fires once the EMR step ``step_id`` on ``cluster_id`` has finished, whatever the outcome.

    The event is ``{"state": "COMPLETED"}``, or ``{"state": "FAILED", "reason": <EMR's reason>}``
    for a step that failed or was cancelled.
    """

    def __init__(self, cluster_id: str, step_id: str, poll_seconds: float, aws_conn_id: str):
        super().__init__()
        self.cluster_id = cluster_id
        self.step_id = step_id
        self.poll_seconds = poll_seconds
        self.aws_conn_id = aws_conn_id

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__name__}",
            {
                "cluster_id": self.cluster_id,
                "step_id": self.step_id,
                "poll_seconds": self.poll_seconds,
                "aws_conn_id": self.aws_conn_id,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow.sdk.exceptions import AirflowFailException

        from hmm.orchestration import emr

        client = await asyncio.to_thread(emr.client, self.aws_conn_id)
        while True:
            try:
                state = await asyncio.to_thread(emr.step_state, client, self.cluster_id, self.step_id)
            except AirflowFailException as failure:
                yield TriggerEvent({"state": "FAILED", "reason": str(failure)})
                return
            if state in TERMINAL_STATES:
                yield TriggerEvent({"state": state})
                return
            self.log.info("EMR step %s on cluster %s: %s", self.step_id, self.cluster_id, state)
            await asyncio.sleep(self.poll_seconds)
