"""api.registration against pytest-httpserver engines (CONTRACT.md §5).

Each test runs the registration in its own event loop (`asyncio.run`) and waits on what
the stand-in engine received, polling with a deadline.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from pydantic import ValidationError
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from api.registration import InvalidDescription, Registration, checked, shown_url
from contract.description import FieldDescription, FieldType, ServiceDescription
from core.settings import ApiSettings
from services import image_rotate
from tests.conftest import free_port

T = TypeVar("T")

# CONTRACT.md §5, verbatim.
ANNOUNCEMENT = """
{"name": "Image Rotate", "slug": "image-rotate", "url": "http://127.0.0.1:9090",
 "summary": "Rotates an image", "description": "Rotates an image by 90, 180 or 270 degrees.",
 "status": "available",
 "data_in_fields": [{"name": "image", "type": ["image/png", "image/jpeg"]},
                    {"name": "rotation", "type": ["text/plain"]}],
 "data_out_fields": [{"name": "result", "type": ["image/png", "image/jpeg"]}],
 "tags": [{"name": "Image Processing", "acronym": "IP"}],
 "has_ai": false, "docs_url": "https://example.org/docs/image-rotate"}
"""
SLUG = "image-rotate"


def contract_description() -> ServiceDescription:
    """The description that CONTRACT.md §5 announces."""
    body = json.loads(ANNOUNCEMENT)
    fields = {k: v for k, v in body.items() if k not in ("url", "status", "tags")}
    return ServiceDescription.model_validate(
        {**fields, "tags": [tag["name"] for tag in body["tags"]]}
    )


@dataclass
class Call:
    method: str
    path: str
    body: Any
    at: float


class FakeEngine:
    """pytest-httpserver playing the engine's service registry: services by slug, with ids."""

    def __init__(self, refuse_posts: int = 0, has_ping: bool = True) -> None:
        self.calls: list[Call] = []
        self.services: dict[str, dict[str, Any]] = {}
        self.refuse_posts = refuse_posts
        self.has_ping = has_ping
        self.failing_pings = 0  # the next ones answered 503
        self.server = HTTPServer(host="127.0.0.1", port=0)
        self.server.expect_request(re.compile(".*")).respond_with_handler(self._handle)
        self.server.start()
        self.url = self.server.url_for("").rstrip("/")

    def know(self, body: dict[str, Any]) -> str:
        """Hold a record of the service already, as after an earlier start; its id."""
        service_id = str(uuid.uuid4())
        self.services[body["slug"]] = {**body, "id": service_id}
        return service_id

    def forget(self) -> None:
        """Lose every service, as when the engine's database is reset."""
        self.services.clear()

    def called(self, method: str, path: str) -> list[Call]:
        return [c for c in self.calls if c.method == method and c.path == path]

    def _handle(self, request: Request) -> Response:
        body: Any = json.loads(request.data) if request.data else None
        self.calls.append(Call(request.method, request.path, body, time.monotonic()))
        route = (request.method, *request.path.strip("/").split("/"))
        match route:
            case ("POST", "services"):
                if self.refuse_posts > 0:
                    self.refuse_posts -= 1
                    return _json(500, {"detail": "Internal Server Error"})
                if body["slug"] in self.services:
                    return _json(409, {"detail": f"Service with slug '{body['slug']}' exists."})
                self.know(body)
                return _json(200, self.services[body["slug"]])
            case ("GET", "services", "slug", slug) if slug in self.services:
                return _json(200, self.services[slug])
            case ("PATCH", "services", service_id):
                for record in self.services.values():
                    if record["id"] == service_id:
                        record.update(body)
                        return _json(200, record)
            case ("POST", "services", slug, "ping") if self.failing_pings > 0:
                self.failing_pings -= 1
                return _json(503, {"detail": "Service Unavailable"})
            case ("POST", "services", slug, "ping") if self.has_ping and slug in self.services:
                return _json(200, None)
        return _json(404, {"detail": "Service Not Found"})


def _json(status: int, body: Any) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json")


@pytest.fixture
def make_engine() -> Iterator[Callable[..., FakeEngine]]:
    """Start stand-in engines; all stopped at the end of the test."""
    started: list[FakeEngine] = []

    def make(refuse_posts: int = 0, has_ping: bool = True) -> FakeEngine:
        engine = FakeEngine(refuse_posts, has_ping)
        started.append(engine)
        return engine

    yield make
    # Each stop waits out werkzeug's 0.5 s poll: stop them side by side.
    stopping = [threading.Thread(target=engine.server.stop) for engine in started]
    for thread in stopping:
        thread.start()
    for thread in stopping:
        thread.join()


@pytest.fixture(scope="module")
def service_server() -> Iterator[HTTPServer]:
    server = HTTPServer(host="127.0.0.1", port=0)
    server.expect_request("/status").respond_with_json({"status": "Service is available"})
    server.start()
    yield server
    server.clear()
    server.stop()


@pytest.fixture
def service(service_server: HTTPServer) -> HTTPServer:
    """What answers at SERVICE_URL: GET /status, as the API does once uvicorn serves."""
    service_server.clear_log()
    return service_server


@pytest.fixture(autouse=True)
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="api.registration")
    return caplog


def settings(engines: list[str], service: HTTPServer | str, **overrides: Any) -> ApiSettings:
    service_url = service if isinstance(service, str) else service.url_for("").rstrip("/")
    values: dict[str, Any] = {
        "engine_urls": engines,
        "service_url": service_url,
        "engine_announce_retries": 5,
        "engine_announce_retry_delay": 0.05,
        "engine_heartbeat_interval": 30.0,
        **overrides,
    }
    return ApiSettings(_env_file=None, **values)


async def eventually(check: Callable[[], T | None], what: str, within: float = 5.0) -> T:
    """Poll `check` until it returns something truthy; fail naming `what` after `within` s."""
    deadline = time.monotonic() + within
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(0.02)


def logged(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if text in r.getMessage()]


def test_announcement_posts_the_contract_body_once_the_service_answers(
    make_engine: Callable[..., FakeEngine], service: HTTPServer
) -> None:
    """POST /services carries CONTRACT.md §5's body (url = SERVICE_URL), after /status answers."""
    engine = make_engine()
    config = settings([engine.url], service)

    async def scenario() -> None:
        registration = Registration(config, contract_description())
        registration.start()
        try:
            await eventually(lambda: engine.called("POST", "/services"), "the announcement")
        finally:
            await registration.stop()

    asyncio.run(scenario())
    expected = json.loads(ANNOUNCEMENT) | {"url": config.service_url}
    for field in expected["data_in_fields"] + expected["data_out_fields"]:
        field["format_hint"] = None
    post = engine.called("POST", "/services")
    assert [c.body for c in post] == [expected]
    request, _ = next(entry for entry in engine.server.log if entry[0].method == "POST")
    assert request.headers["Content-Type"] == "application/json"
    assert engine.calls[0].method == "POST"  # nothing else first
    assert [entry[0].path for entry in service.log][:1] == ["/status"]


def test_409_looks_up_the_id_by_slug_and_patches_the_new_description(
    make_engine: Callable[..., FakeEngine],
    service: HTTPServer,
    logs: pytest.LogCaptureFixture,
) -> None:
    """When the slug exists, the id is read by slug and the new description PATCHed to it."""
    engine = make_engine()
    config = settings([engine.url], service)
    description = contract_description()
    old = description.model_copy(update={"summary": "An older summary"})
    service_id = engine.know(old.announcement(config.service_url))

    async def scenario() -> None:
        registration = Registration(config, description)
        registration.start()
        try:
            # The log line, not the engine's side: it comes once the PATCH's answer is read,
            # and a stop before that would cut the announcement short.
            await eventually(lambda: logged(logs, "description updated"), "the update")
        finally:
            await registration.stop()

    asyncio.run(scenario())
    assert [(c.method, c.path) for c in engine.calls[:3]] == [
        ("POST", "/services"),
        ("GET", f"/services/slug/{SLUG}"),
        ("PATCH", f"/services/{service_id}"),
    ]
    assert engine.calls[2].body == description.announcement(config.service_url)
    assert engine.calls[2].body["summary"] == "Rotates an image"
    updated = logged(logs, "description updated")[0]
    assert updated.engine == engine.url  # type: ignore[attr-defined]


def test_an_engine_refusing_twice_then_accepting_gets_the_service(
    make_engine: Callable[..., FakeEngine],
    service: HTTPServer,
    logs: pytest.LogCaptureFixture,
) -> None:
    """Two 500s are retried, each logged with the error; the third POST registers it."""
    engine = make_engine(refuse_posts=2)

    async def scenario() -> None:
        registration = Registration(settings([engine.url], service), contract_description())
        registration.start()
        try:
            await eventually(lambda: logged(logs, "registered with engine"), "registration")
        finally:
            await registration.stop()

    asyncio.run(scenario())
    assert len(engine.called("POST", "/services")) == 3
    retries = logged(logs, "did not take the announcement")
    assert len(retries) == 2
    for record in retries:
        assert record.levelno == logging.WARNING
        assert record.engine == engine.url  # type: ignore[attr-defined]
        assert "POST /services: answered 500" in record.getMessage()
        assert "retrying in" in record.getMessage()


def test_after_the_quick_retries_it_keeps_trying_at_a_slow_pace(
    make_engine: Callable[..., FakeEngine],
    service: HTTPServer,
    logs: pytest.LogCaptureFixture,
) -> None:
    """Once ENGINE_ANNOUNCE_RETRIES are spent it never gives up: it retries every slow_retry s."""
    engine = make_engine(refuse_posts=4)
    config = settings([engine.url], service, engine_announce_retries=1)

    async def scenario() -> None:
        registration = Registration(config, contract_description(), slow_retry=0.1)
        registration.start()
        try:
            await eventually(lambda: logged(logs, "registered with engine"), "registration")
        finally:
            await registration.stop()

    asyncio.run(scenario())
    assert len(engine.called("POST", "/services")) == 5
    messages = [r.getMessage() for r in logged(logs, "did not take the announcement")]
    assert all(message.endswith("retrying in 0.1 s") for message in messages[1:])


def test_a_dead_engine_does_not_delay_a_live_one(
    make_engine: Callable[..., FakeEngine],
    service: HTTPServer,
    logs: pytest.LogCaptureFixture,
) -> None:
    """A dead engine listed first (30 s retry delay) leaves the live one registered at once."""
    live = make_engine()
    dead = f"http://127.0.0.1:{free_port()}"
    config = settings([dead, live.url], service, engine_announce_retry_delay=30)

    async def scenario() -> None:
        registration = Registration(config, contract_description())
        registration.start()
        try:
            await eventually(lambda: logged(logs, "registered with engine"), "registration", 3)
            await eventually(lambda: logged(logs, "did not take"), "the dead engine's retry", 3)
        finally:
            await registration.stop()

    asyncio.run(scenario())
    [registered] = logged(logs, "registered with engine")
    assert registered.engine == live.url  # type: ignore[attr-defined]
    [retrying] = logged(logs, "did not take the announcement")
    assert retrying.engine == dead  # type: ignore[attr-defined]
    assert "no answer (ConnectError" in retrying.getMessage()


def test_heartbeats_arrive_at_the_configured_interval(
    make_engine: Callable[..., FakeEngine], service: HTTPServer
) -> None:
    """Once registered, POST /services/{slug}/ping comes every ENGINE_HEARTBEAT_INTERVAL s."""
    engine = make_engine()
    interval = 0.2
    config = settings([engine.url], service, engine_heartbeat_interval=interval)
    ping = f"/services/{SLUG}/ping"

    async def scenario() -> None:
        registration = Registration(config, contract_description())
        registration.start()
        try:
            await eventually(lambda: len(engine.called("POST", ping)) >= 4, "four pings")
        finally:
            await registration.stop()

    asyncio.run(scenario())
    [post] = engine.called("POST", "/services")
    times = [post.at] + [c.at for c in engine.called("POST", ping)]
    # At a fixed rate: the n-th ping no sooner than n intervals after the announcement.
    # (One ping late on a busy machine is followed by a shorter gap: gaps of 0.27 then
    # 0.12 s were seen with 0.2 s, while two other suites ran.)
    since = [later - times[0] for later in times[1:]]
    assert all(t >= n * interval * 0.75 for n, t in enumerate(since, start=1)), since


def test_a_404_on_ping_leads_to_a_new_announcement(
    make_engine: Callable[..., FakeEngine],
    service: HTTPServer,
    logs: pytest.LogCaptureFixture,
) -> None:
    """When the engine forgets the service, the next ping's 404 makes it register again."""
    engine = make_engine()
    config = settings([engine.url], service, engine_heartbeat_interval=0.1)

    async def scenario() -> None:
        registration = Registration(config, contract_description())
        registration.start()
        try:
            await eventually(lambda: engine.called("POST", f"/services/{SLUG}/ping"), "a ping")
            engine.forget()
            await eventually(lambda: logged(logs, "re-registered"), "the new registration")
        finally:
            await registration.stop()

    asyncio.run(scenario())
    assert len(engine.called("POST", "/services")) == 2
    assert SLUG in engine.services
    [lost] = logged(logs, "engine lost this service")
    assert lost.levelno == logging.WARNING
    assert lost.engine == engine.url  # type: ignore[attr-defined]


def test_failing_heartbeats_are_logged_once_and_their_recovery_too(
    make_engine: Callable[..., FakeEngine],
    service: HTTPServer,
    logs: pytest.LogCaptureFixture,
) -> None:
    """Pings that fail are kept up; one warning with the error, one line when they pass."""
    engine = make_engine()
    engine.failing_pings = 3
    config = settings([engine.url], service, engine_heartbeat_interval=0.05)

    async def scenario() -> None:
        registration = Registration(config, contract_description())
        registration.start()
        try:
            await eventually(lambda: logged(logs, "answered again"), "the recovery")
        finally:
            await registration.stop()

    asyncio.run(scenario())
    [failed] = logged(logs, "heartbeat to engine failed")
    assert "answered 503" in failed.getMessage()
    assert len(engine.called("POST", f"/services/{SLUG}/ping")) >= 4
    assert len(engine.called("POST", "/services")) == 1  # a failing ping is not a lost service


def test_an_engine_without_a_ping_endpoint_is_reported_once(
    make_engine: Callable[..., FakeEngine],
    service: HTTPServer,
    logs: pytest.LogCaptureFixture,
) -> None:
    """404 on every ping yet 409 on announcing (no ping endpoint) warns once, not per ping."""
    engine = make_engine(has_ping=False)
    config = settings([engine.url], service, engine_heartbeat_interval=0.05)

    async def scenario() -> None:
        registration = Registration(config, contract_description())
        registration.start()
        try:
            await eventually(lambda: len(engine.called("POST", "/services")) >= 4, "re-sends")
        finally:
            await registration.stop()

    asyncio.run(scenario())
    assert len(logged(logs, "no ping endpoint?")) == 1
    lost = logged(logs, "engine lost this service")
    assert [r.levelno for r in lost[:2]] == [logging.WARNING, logging.DEBUG]
    assert logged(logs, "re-registered") == []


def test_stop_tells_every_engine_the_service_is_sleeping(
    make_engine: Callable[..., FakeEngine],
    service: HTTPServer,
    logs: pytest.LogCaptureFixture,
) -> None:
    """On stop, each engine gets GET /services/slug/{slug}, then PATCH {"status": "sleeping"}."""
    engines = [make_engine(), make_engine()]

    async def scenario() -> None:
        registration = Registration(
            settings([e.url for e in engines], service), contract_description()
        )
        registration.start()
        try:
            for engine in engines:
                await eventually(lambda e=engine: e.services, "registration")  # type: ignore[misc]
        finally:
            await registration.stop()

    asyncio.run(scenario())
    for engine in engines:
        service_id = engine.services[SLUG]["id"]
        assert [(c.method, c.path, c.body) for c in engine.calls[-2:]] == [
            ("GET", f"/services/slug/{SLUG}", None),
            ("PATCH", f"/services/{service_id}", {"status": "sleeping"}),
        ]
        assert engine.services[SLUG]["status"] == "sleeping"
    told = {r.engine for r in logged(logs, "told engine this service is sleeping")}  # type: ignore[attr-defined]
    assert told == {e.url for e in engines}


def test_stop_does_not_hang_on_an_engine_that_never_answers(
    service: HTTPServer, logs: pytest.LogCaptureFixture
) -> None:
    """An engine that accepts connections but never answers is given up at the deadline."""
    with socket.socket() as hole:
        hole.bind(("127.0.0.1", 0))
        hole.listen(16)
        url = f"http://127.0.0.1:{hole.getsockname()[1]}"

        async def scenario() -> None:
            registration = Registration(
                settings([url], service), contract_description(), shutdown_deadline=0.3
            )
            registration.start()
            await asyncio.wait_for(registration.stop(), timeout=5)

        asyncio.run(scenario())
    [late] = logged(logs, "did not answer within")
    assert late.engine == url  # type: ignore[attr-defined]


def test_standalone_sends_nothing(service: HTTPServer, logs: pytest.LogCaptureFixture) -> None:
    """With ENGINE_URLS=[] nothing is announced, and start and stop return at once."""

    async def scenario() -> None:
        registration = Registration(settings([], service), contract_description())
        registration.start()
        await registration.stop()

    asyncio.run(scenario())
    assert logged(logs, "running standalone")
    assert service.log == []


def test_announces_anyway_when_service_url_never_answers(
    make_engine: Callable[..., FakeEngine], logs: pytest.LogCaptureFixture
) -> None:
    """If SERVICE_URL/status does not answer from here, it warns naming it and announces."""
    engine = make_engine()
    service_url = f"http://127.0.0.1:{free_port()}"

    async def scenario() -> None:
        registration = Registration(
            settings([engine.url], service_url), contract_description(), serving_timeout=0.2
        )
        registration.start()
        try:
            await eventually(lambda: engine.called("POST", "/services"), "the announcement")
        finally:
            await registration.stop()

    asyncio.run(scenario())
    [warning] = logged(logs, "does not answer from here")
    assert f"{service_url}/status" in warning.getMessage()


def test_engine_credentials_never_reach_the_logs(
    make_engine: Callable[..., FakeEngine],
    service: HTTPServer,
    logs: pytest.LogCaptureFixture,
) -> None:
    """An engine URL with user:password is logged without them."""
    engine = make_engine(refuse_posts=1)
    url = engine.url.replace("http://", "http://operator:s3cret@")

    async def scenario() -> None:
        registration = Registration(settings([url], service), contract_description())
        registration.start()
        try:
            await eventually(lambda: logged(logs, "registered with engine"), "registration")
        finally:
            await registration.stop()

    asyncio.run(scenario())
    assert logs.records
    for record in logs.records:
        assert "s3cret" not in record.getMessage()
        assert "s3cret" not in str(record.__dict__.get("engine"))
    assert shown_url(url) == engine.url


def test_an_invalid_field_name_is_refused_before_anything_is_sent(
    make_engine: Callable[..., FakeEngine], service: HTTPServer
) -> None:
    """A hyphenated field name stops the registration at construction, naming the field."""
    engine = make_engine()
    description = image_rotate.DESCRIPTION.model_copy(deep=True)
    description.data_out_fields[0].name = "rotated-image"
    with pytest.raises(InvalidDescription) as caught:
        Registration(settings([engine.url], service), description)
    assert "data_out_fields[0] ('rotated-image') name" in str(caught.value)
    assert "not a valid Python identifier" in str(caught.value)
    assert engine.calls == []


def test_an_unknown_field_type_is_refused_naming_the_field() -> None:
    """A type the engine does not accept is refused naming the field, built or checked."""
    with pytest.raises(ValidationError) as built:
        FieldDescription.model_validate({"name": "picture", "type": ["image/gif"]})
    assert "field 'picture'" in str(built.value)
    assert "image/png" in str(built.value)  # the types allowed are listed
    description = image_rotate.DESCRIPTION.model_copy(deep=True)
    gif: Any = ["image/gif"]
    description.data_in_fields[1] = FieldDescription.model_construct(
        name="rotation", type=gif, format_hint=None
    )
    with pytest.raises(InvalidDescription, match=r"data_in_fields\[1\] \('rotation'\) type"):
        checked(description)


def test_checked_keeps_a_valid_description() -> None:
    """The service's own description passes the check unchanged."""
    assert checked(image_rotate.DESCRIPTION) == image_rotate.DESCRIPTION
    assert FieldType.IMAGE_PNG in checked(image_rotate.DESCRIPTION).data_in_fields[0].type
