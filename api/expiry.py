"""Journaled tasks that Prefect never took within RUN_RETENTION end with an `error`.

An entry normally leaves the journal within a second, once Prefect holds its flow run.
One that stays (Prefect refuses its run, or cannot be reached) is tried again and again;
once it is older than RUN_RETENTION it is no longer forwarded (the forwarder skips it),
and since every accepted task ends with a callback, the engine is told: an `error`
PATCH to its callback_url, after which the entry leaves the journal. An engine that does
not answer (no connection, 5xx, 429) is told at a later pass; one that refuses (another
4xx) would refuse again, so the entry goes.
"""

from __future__ import annotations

import asyncio
import logging

import httpx

from api.intake import Entry, Intake
from contract.models import TaskStatus, TaskUpdate

log = logging.getLogger(__name__)
# Entries ended per pass; a longer backlog goes at the next passes.
EXPIRY_BATCH = 100
CALLBACK_TIMEOUT = 10.0


def expired_update(retention: float) -> TaskUpdate:
    """The callback of a task Prefect never took."""
    return TaskUpdate(
        status=TaskStatus.ERROR,
        error_message=f"the task was not handed to Prefect within RUN_RETENTION "
        f"({retention:.0f} s) and was not run",
    )


async def expire(intake: Intake, retention: float, now: float) -> int:
    """End the tasks journaled more than `retention` seconds before `now` (a time.time())
    with their `error` callback; how many left the journal."""
    entries = await asyncio.to_thread(intake.accepted_before, now - retention, EXPIRY_BATCH)
    if not entries:
        return 0
    update = expired_update(retention)
    async with httpx.AsyncClient(timeout=CALLBACK_TIMEOUT) as http:
        # At once: an engine that hangs costs one timeout per pass, not one per entry.
        told = await asyncio.gather(*(_tell_engine(http, entry, update) for entry in entries))
    ended = [entry.task_id for entry, done in zip(entries, told, strict=True) if done]
    await asyncio.to_thread(intake.remove_all, ended)
    return len(ended)


async def _tell_engine(http: httpx.AsyncClient, entry: Entry, update: TaskUpdate) -> bool:
    """PATCH the error to the entry's callback_url; whether the entry may go."""
    ids = {"task_id": str(entry.task_id)}
    what = "task not handed to Prefect within RUN_RETENTION"
    try:
        response = await http.patch(
            entry.parameters.callback_url, json=update.model_dump(mode="json")
        )
    except httpx.HTTPError as error:
        log.warning(
            "%s: error callback not delivered (%s), tried again later",
            what,
            type(error).__name__,
            extra=ids,
        )
        return False
    status = response.status_code
    if status >= 500 or status == 429:
        log.warning(
            "%s: engine answered %d to its error callback, tried again later",
            what,
            status,
            extra=ids,
        )
        return False
    if response.is_success:
        log.error("%s: ended with an error callback, removed from the journal", what, extra=ids)
    else:
        log.error(
            "%s: engine refused its error callback with %d, removed from the journal",
            what,
            status,
            extra=ids,
        )
    return True
