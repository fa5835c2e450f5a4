"""Registering the service with the Core engines (CONTRACT.md §5), in the background.

Every engine of ENGINE_URLS has its own asyncio task, so a dead engine never delays a
live one, and none of it ever runs on a request's path:

    wait until SERVICE_URL/status answers (uvicorn serves only after the lifespan startup)
      └─▶ announce: POST /services ─ 200: registered
                                   ─ 409: GET /services/slug/{slug}, PATCH /services/{id}: updated
                                   ─ else: retry in ENGINE_ANNOUNCE_RETRY_DELAY s, doubling,
                                           ENGINE_ANNOUNCE_RETRIES times; then every 60 s, forever
            └─▶ heartbeat: POST /services/{slug}/ping every ENGINE_HEARTBEAT_INTERVAL s
                           ─ 404: the engine lost the service: announce again

`stop()` cancels all that and tells every engine `{"status": "sleeping"}` (GET the id by
slug, PATCH it), all engines at once, within a short overall deadline.

Errors of one engine call (each carries `engine` and `step`, the call that failed):

    EngineError
     ├── EngineRefused       the engine answered, with an unexpected status (`status_code`)
     └── EngineUnreachable   no answer: connection refused, timeout, ...

    InvalidDescription       the service's description is one the engine would choke on
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Mapping
from typing import Any, Literal

import httpx
from pydantic import ValidationError

from contract.description import ServiceDescription
from core.settings import ApiSettings

log = logging.getLogger(__name__)

# The engine calls GET /status (5 s timeout) before it answers the announcement.
REQUEST_TIMEOUT_SECONDS = 10.0
# After the quick retries, an engine that still does not take the service is tried this often.
SLOW_RETRY_SECONDS = 60.0
# Overall time allowed, at shutdown, to tell every engine that the service is sleeping.
SHUTDOWN_DEADLINE_SECONDS = 5.0
# How long to wait for SERVICE_URL/status to answer before announcing anyway.
SERVING_TIMEOUT_SECONDS = 10.0
_SERVING_POLL_SECONDS = 0.1
_DETAIL_CHARS = 200

Outcome = Literal["registered", "updated"]


class InvalidDescription(ValueError):
    """The description has a field the engine would refuse or break on; names the field."""


class EngineError(Exception):
    """One call to an engine failed."""

    def __init__(self, engine: str, step: str, reason: str) -> None:
        super().__init__(f"{step}: {reason}")
        self.engine = engine
        self.step = step


class EngineRefused(EngineError):
    """The engine answered with a status that the step does not expect."""

    def __init__(self, engine: str, step: str, status_code: int, detail: str) -> None:
        super().__init__(engine, step, f"answered {status_code} {detail}".rstrip())
        self.status_code = status_code
        self.detail = detail


class EngineUnreachable(EngineError):
    """The engine did not answer: connection refused, timeout, broken connection."""

    def __init__(self, engine: str, step: str, cause: httpx.HTTPError) -> None:
        shown = str(cause) or "no detail"
        super().__init__(engine, step, f"no answer ({type(cause).__name__}: {shown})")
        self.cause = cause


def checked(description: ServiceDescription) -> ServiceDescription:
    """The description validated again, as the engine will read it; InvalidDescription if not.

    Module-level descriptions are validated when built; this also catches one built with
    `model_construct` or changed afterwards, before anything is sent to an engine.
    """
    try:
        return ServiceDescription.model_validate(description.model_dump(warnings=False))
    except ValidationError as error:
        problems = "; ".join(
            _where(description, item["loc"]) + item["msg"].removeprefix("Value error, ")
            for item in error.errors()
        )
        raise InvalidDescription(
            f"service {description.slug!r} has an invalid description: {problems}"
        ) from None


def _where(description: ServiceDescription, loc: tuple[int | str, ...]) -> str:
    """`data_in_fields[1] ('my-field') type: ` for a field's error, else the dotted location."""
    match loc:
        case ("data_in_fields" | "data_out_fields" as fields, int(index), *rest):
            found = getattr(description, fields)
            name = repr(found[index].name) if index < len(found) else "?"
            return " ".join([f"{fields}[{index}] ({name})", *map(str, rest)]) + ": "
    return ".".join(map(str, loc)) + ": "


def shown_url(url: str) -> str:
    """The URL without any user:password, for logs."""
    parsed = httpx.URL(url)
    if parsed.userinfo:
        return str(parsed.copy_with(username=None, password=None))
    return url


class EngineClient:
    """The calls of CONTRACT.md §5 to one engine."""

    def __init__(self, http: httpx.AsyncClient, engine: str, slug: str) -> None:
        self._http = http
        self.url = engine.rstrip("/")
        self.shown = shown_url(self.url)
        self._slug = slug

    async def announce(self, body: Mapping[str, Any]) -> Outcome:
        """POST the description; on 409 find the service by slug and PATCH it."""
        step = "POST /services"
        response = await self._call("POST", "/services", step, json=body)
        if response.is_success:
            return "registered"
        if response.status_code != 409:
            raise self._refused(step, response)
        service_id = await self.service_id()
        step = f"PATCH /services/{service_id}"
        response = await self._call("PATCH", f"/services/{service_id}", step, json=body)
        if not response.is_success:
            raise self._refused(step, response)
        return "updated"

    async def service_id(self) -> str:
        """The engine's id of this service, looked up by slug."""
        step = f"GET /services/slug/{self._slug}"
        response = await self._call("GET", f"/services/slug/{self._slug}", step)
        if not response.is_success:
            raise self._refused(step, response)
        try:
            service_id = response.json()["id"]
        except (ValueError, KeyError, TypeError):
            raise EngineRefused(
                self.shown, step, response.status_code, "without a service id"
            ) from None
        return str(service_id)

    async def ping(self) -> bool:
        """The heartbeat; False when the engine does not know the service (404)."""
        step = f"POST /services/{self._slug}/ping"
        response = await self._call("POST", f"/services/{self._slug}/ping", step)
        if response.status_code == 404:
            return False
        if not response.is_success:
            raise self._refused(step, response)
        return True

    async def sleep(self) -> None:
        """Tell the engine the service is going away: PATCH its status to sleeping."""
        service_id = await self.service_id()
        step = f"PATCH /services/{service_id}"
        response = await self._call(
            "PATCH", f"/services/{service_id}", step, json={"status": "sleeping"}
        )
        if not response.is_success:
            raise self._refused(step, response)

    async def _call(
        self, method: str, path: str, step: str, json: Mapping[str, Any] | None = None
    ) -> httpx.Response:
        try:
            return await self._http.request(method, self.url + path, json=json)
        except httpx.HTTPError as error:
            raise EngineUnreachable(self.shown, step, error) from None

    def _refused(self, step: str, response: httpx.Response) -> EngineRefused:
        detail = " ".join(response.text.split())[:_DETAIL_CHARS]
        return EngineRefused(self.shown, step, response.status_code, detail)


class Registration:
    """Keeps the service registered with every engine of ENGINE_URLS until `stop()`."""

    def __init__(
        self,
        settings: ApiSettings,
        description: ServiceDescription,
        *,
        slow_retry: float = SLOW_RETRY_SECONDS,
        shutdown_deadline: float = SHUTDOWN_DEADLINE_SECONDS,
        serving_timeout: float = SERVING_TIMEOUT_SECONDS,
    ) -> None:
        self._description = checked(description)
        self._service_url = settings.service_url.rstrip("/")
        self._engine_urls = list(dict.fromkeys(settings.engine_urls))  # each engine once
        self._retries = max(0, settings.engine_announce_retries)
        self._retry_delay = max(0.0, settings.engine_announce_retry_delay)
        self._heartbeat = settings.engine_heartbeat_interval
        self._slow_retry = slow_retry
        self._shutdown_deadline = shutdown_deadline
        self._serving_timeout = serving_timeout
        self._serving = asyncio.Event()
        self._http: httpx.AsyncClient | None = None
        self._engines: list[EngineClient] = []
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """Start announcing and the heartbeats in the background; returns at once."""
        if not self._engine_urls:
            log.info("ENGINE_URLS is empty: running standalone, not registering with any engine")
            return
        self._http = httpx.AsyncClient(timeout=REQUEST_TIMEOUT_SECONDS)
        slug = self._description.slug
        self._engines = [EngineClient(self._http, url, slug) for url in self._engine_urls]
        self._tasks = [asyncio.create_task(self._wait_until_serving(), name="serving")]
        self._tasks += [
            asyncio.create_task(self._keep_registered(engine), name=f"engine {engine.shown}")
            for engine in self._engines
        ]

    async def stop(self) -> None:
        """Stop the background work, then tell every engine that the service is sleeping."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._http is None:
            return
        telling = {asyncio.create_task(self._tell_sleeping(e)): e for e in self._engines}
        _, late = await asyncio.wait(telling, timeout=self._shutdown_deadline)
        for task in late:
            task.cancel()
            log.warning(
                "engine did not answer within %g s; not told this service is sleeping",
                self._shutdown_deadline,
                extra={"engine": telling[task].shown},
            )
        await asyncio.gather(*late, return_exceptions=True)
        await self._http.aclose()
        self._http = None

    async def _wait_until_serving(self) -> None:
        """Set `_serving` once SERVICE_URL/status answers at all (or after a timeout).

        uvicorn runs the lifespan startup before it opens its socket, and the engine calls
        GET /status before it answers the announcement; so nothing is announced until the
        service answers at the very URL the engine will call.
        """
        assert self._http is not None
        url = f"{self._service_url}/status"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._serving_timeout
        while True:
            try:
                await self._http.get(url, timeout=1.0)
                break  # any answer, a 503 included, means the server is up
            except httpx.HTTPError:
                if loop.time() >= deadline:
                    log.warning(
                        "%s does not answer from here after %g s; announcing anyway "
                        "(is SERVICE_URL right?)",
                        shown_url(url),
                        self._serving_timeout,
                    )
                    break
                await asyncio.sleep(_SERVING_POLL_SECONDS)
        self._serving.set()

    async def _keep_registered(self, engine: EngineClient) -> None:
        """Announce, then ping until the engine loses the service; again, forever."""
        await self._serving.wait()
        extra = {"engine": engine.shown}
        lost = False
        # Set when a 404 on ping was followed by a 409: that engine knew the service all
        # along, so it likely has no ping endpoint; say so once, not every heartbeat.
        pingless = False
        while True:
            try:
                outcome = await self._announce(engine)
                if not lost:
                    if outcome == "registered":
                        log.info("registered with engine", extra=extra)
                    else:
                        log.info(
                            "engine already knew this service; description updated", extra=extra
                        )
                elif outcome == "registered":
                    log.info("re-registered with engine after it lost this service", extra=extra)
                    pingless = False
                elif not pingless:
                    log.warning(
                        "engine answers 404 to the heartbeat yet knows this service (no ping "
                        "endpoint?); the description is sent again after each 404",
                        extra=extra,
                    )
                    pingless = True
                await self._heartbeat_until_lost(engine)
                lost = True
                log.log(
                    logging.DEBUG if pingless else logging.WARNING,
                    "heartbeat answered 404: engine lost this service; registering again",
                    extra=extra,
                )
            except Exception:  # a bug here must not end registration for good
                log.exception("registration with engine failed", extra=extra)
                await asyncio.sleep(self._slow_retry)

    async def _announce(self, engine: EngineClient) -> Outcome:
        """Announce until the engine takes it, backing off, then at a slow pace."""
        body = self._description.announcement(self._service_url)
        failures = 0
        while True:
            try:
                return await engine.announce(body)
            except EngineError as error:
                delay = self._delay_after(failures)
                failures += 1
                log.warning(
                    "engine did not take the announcement (try %d): %s; retrying in %.1f s",
                    failures,
                    error,
                    delay,
                    extra={"engine": engine.shown},
                )
                await asyncio.sleep(delay)

    def _delay_after(self, failures: int) -> float:
        """ENGINE_ANNOUNCE_RETRY_DELAY doubling for ENGINE_ANNOUNCE_RETRIES tries, then slow."""
        if failures >= self._retries:
            return self._slow_retry
        delay = min(self._retry_delay * 2.0**failures, self._slow_retry)
        # A little jitter, so replicas started together do not announce in lockstep.
        return delay * random.uniform(0.9, 1.1)

    async def _heartbeat_until_lost(self, engine: EngineClient) -> None:
        """Ping every ENGINE_HEARTBEAT_INTERVAL s; return when the engine answers 404."""
        loop = asyncio.get_running_loop()
        next_ping = loop.time() + self._heartbeat
        failing = False
        while True:
            await asyncio.sleep(max(0.0, next_ping - loop.time()))
            # A fixed rate, not interval + time of the ping; no burst after a slow ping.
            next_ping = max(next_ping + self._heartbeat, loop.time())
            try:
                known = await engine.ping()
            except EngineError as error:
                if not failing:
                    log.warning(
                        "heartbeat to engine failed: %s; still trying every %g s",
                        error,
                        self._heartbeat,
                        extra={"engine": engine.shown},
                    )
                failing = True
                continue
            if failing:
                log.info("heartbeat to engine answered again", extra={"engine": engine.shown})
                failing = False
            if not known:
                return

    async def _tell_sleeping(self, engine: EngineClient) -> None:
        try:
            await engine.sleep()
        except EngineError as error:
            log.warning(
                "could not tell engine this service is sleeping: %s",
                error,
                extra={"engine": engine.shown},
            )
        else:
            log.info("told engine this service is sleeping", extra={"engine": engine.shown})
