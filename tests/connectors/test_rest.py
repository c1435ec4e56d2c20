"""The REST transport's error translation, against a real server on a real socket."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import date
from typing import Any

import msgspec
import pytest
from aiohttp import web
from multidict import CIMultiDict

from connectors import rest
from connectors.api import ConnectorError, Endpoint, PermanentError, TransientError
from connectors.business.client import BusinessConnector
from connectors.insurance.client import InsuranceConnector
from connectors.population.sandbox import SANDBOX_OFFICER_ID as OFFICER
from connectors.rest import RestTransport
from connectors.sandboxes import serve_app
from tests.connectors.dropping import dropping

seen: list[CIMultiDict[str]] = []


async def ok(request: web.Request) -> web.Response:
    seen.append(CIMultiDict(request.headers))
    return web.json_response({"answer": 42, "echo": await request.text()})


async def html(request: web.Request) -> web.Response:
    return web.Response(text="<html>oops</html>", content_type="application/json")


async def status(request: web.Request) -> web.Response:
    code = int(request.match_info["code"])
    return web.json_response({"error": code}, status=code)


async def hang(request: web.Request) -> web.Response:
    await asyncio.sleep(5)
    return web.json_response({})


async def drop(request: web.Request) -> web.Response:
    assert request.transport is not None
    request.transport.close()
    raise asyncio.CancelledError


async def pieces(request: web.Request) -> web.StreamResponse:
    """The JSON in two chunks with a pause between them, as a proxy or TLS records deliver it."""
    body = msgspec.json.encode({"answer": 42, "pad": "x" * 3000})
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    await response.write(body[:1000])
    await asyncio.sleep(0.1)
    await response.write(body[1000:])
    await response.write_eof()
    return response


endless_chunks: list[int] = []  # per call of endless: how many chunks it wrote before it stopped


async def endless(request: web.Request) -> web.StreamResponse:
    """Chunk after chunk of JSON that never ends (100 chunks, unless the client hangs up)."""
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    sent = 0
    try:
        await response.write(b'{"pad": "')
        for _ in range(100):
            await response.write(b"x" * 4096)
            sent += 1
            await asyncio.sleep(0.05)
    except ConnectionResetError:
        pass  # the client gave up, as it should
    finally:
        endless_chunks.append(sent)
    return response


class Answer(msgspec.Struct):
    answer: int


@pytest.fixture
async def url() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_routes(
        [
            web.post("/base/ok", ok),
            web.get("/base/ok", ok),
            web.get("/base/html", html),
            web.get("/base/status/{code}", status),
            web.get("/base/hang", hang),
            web.get("/base/drop", drop),
            web.get("/base/pieces", pieces),
            web.get("/base/endless", endless),
        ]
    )
    async with serve_app(app) as base:
        yield base + "/base"


async def call(url: str, path: str, limit: float = 5.0, **kwargs: Any) -> Any:
    async with _transport(url, limit) as transport:
        return await transport.request("GET", path, **kwargs)


class _transport:
    def __init__(self, url: str, timeout: float) -> None:
        self.t = RestTransport("test", Endpoint(url=url, timeout=timeout))

    async def __aenter__(self) -> RestTransport:
        await self.t.open()
        return self.t

    async def __aexit__(self, *exc: object) -> None:
        await self.t.close()


async def test_json_reply_and_headers(url: str) -> None:
    seen.clear()
    async with _transport(url, 5) as transport:
        reply = await transport.request(
            "POST", "ok", json={"x": "Nguyễn"}, idempotency_key="k-1", request_id="r-1"
        )
    assert reply.status == 200 and reply.data["answer"] == 42
    assert msgspec.json.decode(reply.data["echo"]) == {"x": "Nguyễn"}
    assert seen[0]["Idempotency-Key"] == "k-1"
    assert seen[0]["X-Request-Id"] == "r-1"
    assert seen[0]["Content-Type"] == "application/json"


DEEP = b'{"answer":42,"x":' + b"[" * 5000 + b"]" * 5000 + b"}"


async def test_json_nested_too_deep_is_a_malformed_reply() -> None:
    """Found by probing: msgspec raises RecursionError (no DecodeError) for JSON nested some
    1,000 deep; it escaped the transport, and a lookup answered 500, unaudited, uncounted by
    the breaker."""

    async def deep(request: web.Request) -> web.Response:
        status = int(request.query.get("status", "200"))
        return web.Response(status=status, body=DEEP, content_type="application/json")

    app = web.Application()
    app.router.add_get("/deep", deep)
    async with serve_app(app) as base, _transport(base, 5) as transport:
        for wire in (Any, Answer):
            with pytest.raises(TransientError, match="malformed reply"):
                await transport.request("GET", "deep", type=wire)
        # A status the caller interprets itself: its body is a courtesy, read or not.
        reply = await transport.request("GET", "deep", params={"status": "404"}, accept=(404,))
        assert (reply.status, reply.data) == (404, None)


async def test_typed_decoding(url: str) -> None:
    reply = await call(url, "ok", type=Answer)
    assert reply.data == Answer(42)


async def test_wrong_shape_is_transient(url: str) -> None:
    class Other(msgspec.Struct):
        missing: str

    with pytest.raises(TransientError, match="malformed reply"):
        await call(url, "ok", type=Other)


async def test_html_is_transient(url: str) -> None:
    with pytest.raises(TransientError, match="malformed reply"):
        await call(url, "html")


@pytest.mark.parametrize("code", [500, 502, 503, 504])
async def test_5xx_is_transient(url: str, code: int) -> None:
    with pytest.raises(TransientError) as caught:
        await call(url, f"status/{code}")
    assert caught.value.code == f"http-{code}"
    assert not caught.value.timed_out  # an answer, even a 504: not our deadline


async def test_timeout_is_transient(url: str) -> None:
    with pytest.raises(TransientError, match="no answer in time") as caught:
        await call(url, "hang", limit=0.2)
    assert caught.value.timed_out


@pytest.mark.parametrize("code", [408, 425, 429])
async def test_retry_later_4xx_is_transient(url: str, code: int) -> None:
    with pytest.raises(TransientError) as caught:
        await call(url, f"status/{code}")
    assert caught.value.code == f"http-{code}"


@pytest.mark.parametrize("code", [400, 401, 403, 404, 409, 422])
async def test_4xx_is_permanent(url: str, code: int) -> None:
    with pytest.raises(PermanentError) as caught:
        await call(url, f"status/{code}")
    assert caught.value.code == f"http-{code}"
    assert caught.value.registry == "test"


async def test_accepted_status_is_returned(url: str) -> None:
    reply = await call(url, "status/404", accept=(404,))
    assert (reply.status, reply.data) == (404, {"error": 404})


async def test_reply_in_pieces_is_read_whole(url: str) -> None:
    reply = await call(url, "pieces", type=Answer)
    assert reply.data == Answer(42)


async def test_reply_over_the_cap_is_refused_as_it_is_read(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rest, "MAX_BODY", 20_000)
    endless_chunks.clear()
    with pytest.raises(TransientError, match=r"reply larger than the limit \(20000 bytes\)"):
        await call(url, "endless", limit=10)
    # Refused once past the cap (5 chunks of 4 KiB), not after reading the whole body: the
    # server finds the connection gone long before its 100th chunk.
    for _ in range(200):
        if endless_chunks:
            break
        await asyncio.sleep(0.05)
    assert endless_chunks and endless_chunks[0] < 50, endless_chunks


async def test_dropped_connection_is_transient(url: str) -> None:
    with pytest.raises(TransientError, match="connection failed"):
        await call(url, "drop")


async def test_refused_connection_is_transient() -> None:
    async with serve_app(web.Application()) as base:
        pass
    with pytest.raises(TransientError, match="connection failed"):
        await call(base, "ok")


async def test_use_before_open_is_refused(url: str) -> None:
    transport = RestTransport("test", Endpoint(url=url))
    with pytest.raises(PermanentError, match="before open"):
        await transport.request("GET", "ok")


async def test_close_is_idempotent(url: str) -> None:
    transport = RestTransport("test", Endpoint(url=url))
    await transport.open()
    await transport.close()
    await transport.close()


# --- redirects are not followed, and no error text quotes a URL --------------------------------
SECRETS = ("S3cr3t-Passw0rd", "bhxh_user", "AT-token", "IT-token")


async def _card_check(egw: Any, password: str = "S3cr3t-Passw0rd") -> ConnectorError:
    """What insurance's card.check raises against a registry that issues tokens and answers
    its egw calls with ``egw``."""

    async def token(request: web.Request) -> web.Response:
        answer = {"access_token": "AT-token", "id_token": "IT-token"}
        return web.json_response({"maKetQua": "200", "APIKey": answer})

    app = web.Application()
    app.router.add_post("/api/token/take", token)
    app.router.add_route("*", "/api/egw/{p}", egw)
    card = {"card_number": "HS4010120878811", "full_name": "A", "birth_date": "1992-01-01"}
    async with serve_app(app) as base:
        endpoint = Endpoint(url=base, username="bhxh_user", password=password)
        async with InsuranceConnector(endpoint) as insurance:
            with pytest.raises(ConnectorError) as caught:
                await insurance.call("card.check", card)
    return caught.value


async def test_insurance_redirect_loop_is_refused_without_its_credentials() -> None:
    seen_paths: list[str] = []

    async def loop(request: web.Request) -> web.Response:
        seen_paths.append(request.path_qs)
        raise web.HTTPFound("/api/egw/elsewhere")

    caught = await _card_check(loop)
    assert isinstance(caught, PermanentError)
    assert caught.code == "http-302"
    assert "redirects are not followed" in str(caught)
    assert not [s for s in SECRETS if s in str(caught)], str(caught)
    assert len(seen_paths) == 1  # asked once, not followed round the loop


async def test_redirect_to_another_host_sends_it_nothing() -> None:
    other_saw: list[str] = []

    async def collect(request: web.Request) -> web.Response:
        other_saw.append(request.headers.get("ApiKey", "(no key)"))
        return web.json_response({}, status=404)

    other = web.Application()
    other.router.add_get("/{p:.*}", collect)
    async with serve_app(other, host="127.0.0.2") as other_url:

        async def moved(request: web.Request) -> web.Response:
            raise web.HTTPFound(other_url + "/collect")

        registry = web.Application()
        registry.router.add_get("/{p:.*}", moved)
        async with serve_app(registry) as base:
            endpoint = Endpoint(url=base, api_key="REAL-BUSINESS-API-KEY")
            async with BusinessConnector(endpoint) as business:
                with pytest.raises(PermanentError) as caught:
                    await business.call("enterprise.lookup", {"tax_code": "0100233488"})
    assert other_saw == []  # before: the API key went there, and its 404 was believed
    assert caught.value.code == "http-302"
    assert "no enterprise" not in str(caught.value)


SECRET_QUERY = {"token": "AT-token", "username": "bhxh_user", "password": "S3cr3t-Passw0rd"}


@pytest.mark.parametrize("path", ["hang", "drop", "html", "endless", "refused"])
async def test_error_text_never_quotes_the_url(
    url: str, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Insurance's query carries its token and password (its contract); a failed call's error,
    stored as a step's error and shown to clients, must not."""
    monkeypatch.setattr(rest, "MAX_BODY", 20_000)
    if path == "refused":
        async with serve_app(web.Application()) as gone:
            pass
        url, path = gone, "ok"
    with pytest.raises(ConnectorError) as caught:
        await call(url, path, limit=0.3, params=SECRET_QUERY)
    assert not [s for s in SECRETS if s in str(caught.value)], str(caught.value)


async def test_an_error_page_echoing_the_request_never_shows_its_credentials() -> None:
    # Insurance's calls carry token, id_token, username and password in the query string (its
    # contract); an error page that echoes the request, decoded or as sent, must not carry them
    # into the step's error, which the API and the callbacks show.
    password = "S3cr3t+Pass/w0rd é"

    async def echo(request: web.Request) -> web.Response:
        page = f"bad gateway for {request.path_qs} ({dict(request.query)})"
        return web.Response(status=502, text=page)

    caught = await _card_check(echo, password)
    assert isinstance(caught, TransientError)
    message = str(caught)
    assert caught.code == "http-502" and "bad gateway for /api/egw/" in message, message
    for secret in ("AT-token", "IT-token", "S3cr3t", "w0rd"):
        assert secret not in message, message


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        ("Sun, 06 Dec 2026 12:02:00 GMT", 120.0),
        ("Sun, 06 Dec 2026 11:59:00 GMT", 0.0),  # already past
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_reads_seconds_and_http_dates(
    header: str | None, seconds: float | None
) -> None:
    from datetime import UTC, datetime

    from connectors.api import retry_after

    assert retry_after(header, now=datetime(2026, 12, 6, 12, 0, tzinfo=UTC)) == seconds


@pytest.mark.parametrize("registry", ["rest", "soap"])
async def test_a_registrys_retry_after_travels_with_its_transient_error(registry: str) -> None:
    async def busy(request: web.Request) -> web.Response:
        return web.Response(status=503, text="busy", headers={"Retry-After": "42"})

    app = web.Application()
    app.router.add_route("*", "/{p:.*}", busy)
    async with serve_app(app) as base:
        with pytest.raises(TransientError) as caught:
            if registry == "rest":
                async with BusinessConnector(Endpoint(url=base, api_key="k")) as business:
                    await business.call("enterprise.lookup", {"tax_code": "0100233488"})
            else:
                from connectors.population.client import PopulationConnector

                async with PopulationConnector(
                    Endpoint(url=base + "/soap"), officer_id=OFFICER
                ) as population:
                    await population.call(
                        "citizen.lookup",
                        {
                            "personal_id": "001099012345",
                            "full_name": "A",
                            "birth_date": "1999-01-01",
                        },
                    )
    assert caught.value.wait_s == 42.0


def _php_json(text: str) -> str:
    return json.dumps(text).replace("/", "\\/")  # PHP's json_encode: \uXXXX and \/


@pytest.mark.parametrize(
    "echo",
    [
        lambda body: body.decode(),  # the bytes as sent
        lambda body: json.dumps(json.loads(body)),  # re-encoded: non-ASCII as \uXXXX
        lambda body: "{" + ",".join(f'"{k}":{_php_json(v)}' for k, v in json.loads(body).items()),
    ],
    ids=["as-sent", "json-ascii", "php"],
)
@pytest.mark.parametrize("password", ["pw-secret-123", 'S3cr3t"Pass/w0rd é\\'])
async def test_a_token_endpoint_echoing_its_body_never_shows_the_password(
    echo: Any, password: str
) -> None:
    """Found by probing: BHXH's token endpoint answering ``500 Internal error while handling
    request body: {"username":"u","password":"pw-secret-123"}`` put the password into the
    error, which a lookup's 502 ``detail`` and a flow step's error show. Excerpts hid the query's
    values and the headers, not the credentials a JSON body carried."""

    async def token(request: web.Request) -> web.Response:
        page = "Internal error while handling request body: " + echo(await request.read())
        return web.Response(status=500, text=page)

    app = web.Application()
    app.router.add_post("/api/token/take", token)
    card = {"card_number": "HS4010120878811", "full_name": "A", "birth_date": "1992-01-01"}
    async with serve_app(app) as base:
        endpoint = Endpoint(url=base, username="bhxh_user", password=password)
        async with InsuranceConnector(endpoint) as insurance:
            with pytest.raises(TransientError) as caught:
                await insurance.call("card.check", card)
    message = str(caught.value)
    assert "while handling request body" in message and "bhxh_user" in message, message
    assert '"password":"***"' in message.replace(" ", ""), message
    for piece in ("pw-secret", "S3cr3t", "w0rd"):
        assert piece not in message, message


async def test_a_soap_error_page_never_shows_the_endpoints_secrets() -> None:
    """The population registry's secret signs its Basic auth and is never sent as it is, but an
    error page quoting the configuration (a misconfigured proxy's debug page) must not show it,
    nor the API key, in whatever form."""
    from connectors.population.client import PopulationConnector

    async def debug(request: web.Request) -> web.Response:
        return web.Response(status=502, text="upstream config: secret=pop-secret-42 key=K%2Fapi")

    app = web.Application()
    app.router.add_post("/soap", debug)
    async with serve_app(app) as base:
        endpoint = Endpoint(url=base + "/soap", secret="pop-secret-42", api_key="K/api")
        async with PopulationConnector(endpoint, officer_id=OFFICER) as population:
            with pytest.raises(TransientError) as caught:
                await population.call(
                    "citizen.lookup",
                    {"personal_id": "001099012345", "full_name": "A", "birth_date": "1999-01-01"},
                )
    message = str(caught.value)
    assert "upstream config" in message and "pop-secret" not in message, message
    assert "K%2Fapi" not in message, message


@pytest.mark.parametrize("tail", ["", "/", "?gw=GwKey1234", "/?gw=GwKey1234"])
async def test_registries_served_under_a_path_are_called_under_it(tail: str) -> None:
    """Found by probing: a url without a trailing slash and with a query (``http://h/bhxh?k=…``)
    lost its last segment and its query: the BHXH connector called ``http://h/api/token/take``.
    The three REST sandboxes, mounted under a path each, are called under it, with the url's
    query on every request."""
    from connectors.business import sandbox as business
    from connectors.business.sandbox import generate_enterprises
    from connectors.insurance import sandbox as insurance
    from connectors.portal import sandbox as portal
    from connectors.portal.client import PortalConnector

    seen: list[str] = []

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        seen.append(request.path_qs)
        return await handler(request)

    app = web.Application(middlewares=[record])
    app.add_subapp("/gw/bhxh/", insurance.create_app(seed=3, today=date(2026, 11, 22)))
    app.add_subapp("/gw/dkkd/", business.create_app())
    app.add_subapp("/gw/dvcqg/", portal.create_app())
    sync = {
        "code": "000.00.00.H41-261122-0007",
        "procedure": "1.001193",
        "procedure_name": "Đăng ký khai sinh",
        "applicant": {"full_name": "Nguyễn Thị Lan", "personal_id": "040190012345"},
        "status": "accepted",
        "received_at": "2026-11-22T09:15:00+07:00",
        "agency": "000.00.00.H41",
    }
    async with serve_app(app) as base:
        bhxh_at = insurance.endpoint(f"{base}/gw/bhxh{tail}")
        async with InsuranceConnector(bhxh_at, **insurance.SANDBOX_OFFICER) as bhxh:
            card = await bhxh.call("card.check", insurance.scenarios(3)["000"])
        async with BusinessConnector(business.endpoint(f"{base}/gw/dkkd{tail}")) as dkkd:
            tax_code = next(iter(generate_enterprises(0, 3000)))
            enterprise = await dkkd.call("enterprise.lookup", {"tax_code": tax_code})
        async with PortalConnector(portal.endpoint(f"{base}/gw/dvcqg{tail}")) as dvcqg:
            synced = await dvcqg.call("dossier.sync", sync)
    assert card.data["status"] == "valid" and enterprise.reference == tax_code, seen
    assert synced.reference, seen
    registries = sorted({path.split("/")[2] for path in seen})
    assert registries == ["bhxh", "dkkd", "dvcqg"] and all(p.startswith("/gw/") for p in seen)
    if "?" in tail:
        assert all("gw=GwKey1234" in path for path in seen), seen


async def test_an_error_page_echoing_the_request_never_shows_the_urls_query_values() -> None:
    """The url's query now goes with every request: an error page quoting the request line
    must not carry its values (an API gateway's key) into the error, as for SOAP registries."""

    async def echo(request: web.Request) -> web.Response:
        return web.Response(status=502, text=f"bad gateway for {request.path_qs}")

    app = web.Application()
    app.router.add_get("/dn/api/doanhnghiep/{code}", echo)
    async with serve_app(app) as base:
        endpoint = Endpoint(url=f"{base}/dn?apikey=GwQueryKey123", api_key="k")
        async with BusinessConnector(endpoint) as business:
            with pytest.raises(TransientError) as caught:
                await business.call("enterprise.lookup", {"tax_code": "0100233488"})
    message = str(caught.value)
    assert "bad gateway for /dn/api/doanhnghiep/0100233488?apikey=***" in message, message


@pytest.mark.parametrize(
    ("safe", "resent"),
    [
        pytest.param({"idempotency_key": "job-1"}, True, id="a-write-with-its-key"),
        pytest.param({"repeatable": True}, True, id="a-read-sent-as-post"),
        pytest.param({}, False, id="neither"),
    ],
)
async def test_a_post_meeting_a_kept_alive_connection_dropped_is_resent_only_if_safe(
    safe: dict[str, Any], resent: bool
) -> None:
    app = web.Application()
    app.router.add_post("/base/ok", ok)
    seen = dropping(app, 2)
    async with serve_app(app) as base, _transport(base + "/base", 5.0) as transport:
        await transport.request("POST", "ok", json={"n": 1})
        if resent:
            reply = await transport.request("POST", "ok", json={"n": 2}, **safe)
            assert json.loads(reply.data["echo"]) == {"n": 2}
        else:
            with pytest.raises(TransientError, match="connection failed: ConnectionResetError"):
                await transport.request("POST", "ok", json={"n": 2}, **safe)
    assert seen == ["/base/ok"] * (3 if resent else 2)
