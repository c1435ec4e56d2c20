"""What a registry says, and how much of it a lookup's client (and a flow step's error) gets:
its error text masked and cut, its Retry-After, its records' codes and masked ids, and names
compared without the invisible characters copy-paste brings. Each registry is a real server on
a real socket (a fake one where the sandboxes do not misbehave that way)."""

from __future__ import annotations

import html
from typing import Any

import pytest
from aiohttp import web

from connectors.business.sandbox import generate_enterprises
from connectors.insurance.sandbox import scenarios
from connectors.sandboxes import serve_app
from gateway.samples import sample_dossiers
from tests.e2e.conftest import Gateway
from tests.e2e.test_lookups import (
    PROBLEM,
    _look_up,
    _pointed_at,
    _post,
    _registry,
    citizen_query,
)

API_KEY = "k3y-pop"  # the population registry's api_key in _pointed_at


def _fault_echoing_the_request(padding: int = 0) -> web.Application:
    """A population registry whose SOAP Fault quotes the headers it was sent, as a Java backend's
    error text might, with an internal address, and ``padding`` characters more."""

    async def fault(request: web.Request) -> web.Response:
        said = (
            f"Authentication backend error for ApiKey={request.headers.get('ApiKey')} "
            f"Authorization={request.headers.get('Authorization')} "
            "db=jdbc:oracle:thin:@10.12.0.5:1521/DANCU " + "x" * padding
        )
        body = (
            '<?xml version="1.0"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/'
            'envelope/"><soap:Body><soap:Fault><faultcode>soap:Client</faultcode>'
            f"<faultstring>{html.escape(said)}</faultstring></soap:Fault></soap:Body>"
            "</soap:Envelope>"
        )
        return web.Response(status=500, text=body, content_type="text/xml")

    return _registry(fault)


def _credentials_in(text: str) -> list[str]:
    return [s for s in (API_KEY, "Basic ", "s3cret-pop") if s in text]


@pytest.mark.parametrize("padding", [0, 200_000], ids=["short", "200k-characters"])
async def test_a_soap_fault_reaches_the_client_masked_and_cut(
    make_gateway: Any, padding: int
) -> None:
    """Found by probing: a fault echoing the request headers gave every client the population
    api_key and the signed Authorization header, and a fault of 200,000 characters a 200 KB
    answer. A fault is quoted as an HTTP error page is."""
    async with (
        serve_app(_fault_echoing_the_request(padding)) as url,
        make_gateway(
            registries={"population": _pointed_at(url, "population")},
            gateway={"lookup_attempts": 1},
        ) as gw,
    ):
        async with await gw.post("/v1/lookups/citizen", citizen_query()) as r:
            raw = await r.read()
            problem = await r.json()
    assert (r.status, problem["type"]) == (502, PROBLEM + "registry-refused"), problem
    assert "SOAP fault Client: Authentication backend error" in problem["detail"], problem
    assert not _credentials_in(problem["detail"]), problem
    assert len(problem["detail"]) < 300 and len(raw) < 2000, len(raw)


async def test_a_flow_steps_error_quotes_a_soap_fault_masked_and_cut(make_gateway: Any) -> None:
    """The same fault, met by a dossier's verification: the step's stored error, shown by
    GET /v1/dossiers/{code} and the callbacks, was the fault word for word."""
    doc = next(sample_dossiers(1, seed=0, death_share=0))
    async with (
        serve_app(_fault_echoing_the_request(200_000)) as url,
        make_gateway(registries={"population": _pointed_at(url, "population")}) as gw,
    ):
        async with await gw.post("/v1/dossiers", doc) as r:
            assert r.status == 202, await r.text()
        view = await gw.wait_status(doc["code"], {"needs_attention", "failed", "completed"})
    errors = [s["error"] for s in view["steps"] if s["error"]]
    assert errors and "Authentication backend error" in errors[0], view
    assert not _credentials_in(errors[0]) and len(errors[0]) < 300, errors[0]


PASSWORD = "S3cret&<pw>'x\"q"


async def test_an_html_error_page_echoing_the_bhxh_password_never_shows_it(
    make_gateway: Any,
) -> None:
    """Found by probing: an HTML error page quotes the request URL HTML-escaped (& as &amp;,
    ' as &#x27;), a spelling the masking did not know; a password with any of & < > ' " (as
    generated passwords have) showed in full."""

    async def page(request: web.Request) -> web.Response:
        quoted = html.escape(request.raw_path)
        said = html.escape(request.query.get("password", ""))
        body = f"<html><body><p>Request: {quoted}</p><p>password={said}</p></body></html>"
        return web.Response(status=500, text=body, content_type="text/html")

    insurance = {**_pointed_at("", "insurance"), "password": PASSWORD}
    async with serve_app(_registry(page)) as url:
        async with make_gateway(
            registries={"insurance": {**insurance, "url": url}}, gateway={"lookup_attempts": 1}
        ) as gw:
            status, problem = await _look_up(gw, "insurance")
    assert (status, problem["type"]) == (502, PROBLEM + "registry-unavailable"), problem
    assert "Request: /api/egw/" in problem["detail"], problem
    for piece in ("S3cret", "pw>", "pw&gt;", "%3Cpw"):
        assert piece not in problem["detail"], problem


@pytest.mark.parametrize("registry", ["population", "insurance", "business"])
async def test_an_unreachable_registry_is_not_named_by_its_address(
    make_gateway: Any, registry: str
) -> None:
    """Found by probing: the REST registries' 502 said "Connect call failed ('10.…', 8443)",
    their address on the government network, to every client."""
    async with serve_app(web.Application()) as gone:
        pass  # closed: nothing listens there any more
    port = gone.rsplit(":", 1)[1]
    async with make_gateway(
        registries={registry: _pointed_at(gone, registry)}, gateway={"lookup_attempts": 1}
    ) as gw:
        status, problem = await _look_up(gw, registry)
    assert (status, problem["type"]) == (502, PROBLEM + "registry-unavailable"), problem
    assert "connection failed: ConnectionRefusedError" in problem["detail"], problem
    assert "127.0.0.1" not in problem["detail"] and port not in problem["detail"], problem


@pytest.mark.parametrize(
    ("said", "told"),
    [("120", "120"), ("86400", "300"), ("0", "1")],
    ids=["two-minutes", "a-day-capped", "at-once"],
)
@pytest.mark.parametrize("registry", ["population", "insurance", "business"])
async def test_a_registrys_retry_after_is_passed_on(
    make_gateway: Any, registry: str, said: str, told: str
) -> None:
    """Found by probing: a registry's 503 with Retry-After: 120 reached the client as a 502
    without one, and a client that retried at once kept hitting a registry down for two
    minutes. It is passed on, at most 300 s."""

    async def busy(request: web.Request) -> web.Response:
        return web.Response(status=503, text="maintenance", headers={"Retry-After": said})

    async with (
        serve_app(_registry(busy)) as url,
        make_gateway(
            registries={registry: _pointed_at(url, registry)}, gateway={"lookup_attempts": 1}
        ) as gw,
    ):
        if registry == "business":
            response = await gw.get("/v1/lookups/enterprises/0100233488")
        else:
            body = citizen_query() if registry == "population" else scenarios(0)["000"]
            path = "citizen" if registry == "population" else "insurance-card"
            response = await gw.post(f"/v1/lookups/{path}", body)
        async with response:
            problem = await response.json()
    assert (response.status, problem["registry_code"]) == (502, "http-503"), problem
    assert response.headers.get("Retry-After") == told, dict(response.headers)


def _enterprise(**change: Any) -> dict[str, Any]:
    tax_code, wire = next(iter(generate_enterprises(0, count=1).items()))
    return {**wire, "maSoDoanhNghiep": tax_code, **change}


async def _enterprise_answered(make_gateway: Any, wire: dict[str, Any]) -> dict[str, Any]:
    async def answer(request: web.Request) -> web.Response:
        return web.json_response(wire)

    async with (
        serve_app(_registry(answer)) as url,
        make_gateway(registries={"business": _pointed_at(url, "business")}) as gw,
    ):
        async with await gw.get(f"/v1/lookups/enterprises/{wire['maSoDoanhNghiep']}") as r:
            found: dict[str, Any] = await r.json()
            assert r.status == 200, found
    return found


async def test_a_representatives_personal_id_is_masked_whatever_the_registry_sends(
    make_gateway: Any,
) -> None:
    """Found by probing: soGiayToMaHoa was copied as sent; a registry sending the full id gave
    it, under the name personal_id_masked, to callers without the right to look citizens up."""
    wire = _enterprise()
    wire["nguoiDaiDien"] = {**wire["nguoiDaiDien"], "soGiayToMaHoa": "001092110867"}
    found = await _enterprise_answered(make_gateway, wire)
    assert found["legal_representative"]["personal_id_masked"] == "001******867", found


@pytest.mark.parametrize(
    ("sent", "answered"),
    [("1", "001"), ("01", "001"), ("40", "040"), ("040", "040"), ("99", None), ("", None)],
)
async def test_an_enterprises_province_code_has_3_digits_or_is_null(
    make_gateway: Any, sent: str, answered: str | None
) -> None:
    """Found by probing: "1" (Hà Nội's "01" without its zero) was answered "1", a code of no
    province as it came, where README promises 3 digits."""
    wire = _enterprise()
    wire["diaChiTruSo"] = {**wire["diaChiTruSo"], "maTinhThanh": sent}
    found = await _enterprise_answered(make_gateway, wire)
    assert found["head_office"]["province_code"] == answered, found


async def test_an_enterprise_status_the_gateway_does_not_know_is_answered_as_sent(
    make_gateway: Any,
) -> None:
    """Found by probing: a status code outside the five known (one the registry adds) made
    every lookup of that enterprise a 502 "malformed reply"."""
    label = "Không hoạt động tại địa chỉ đã đăng ký"
    wire = _enterprise(tinhTrang={"ma": "KHONG_HOAT_DONG_TAI_DIA_CHI", "ten": label})
    found = await _enterprise_answered(make_gateway, wire)
    assert (found["status"], found["status_code"], found["status_label"]) == (
        "unknown",
        "KHONG_HOAT_DONG_TAI_DIA_CHI",
        label,
    ), found


INVISIBLE = {
    "zero-width-space": lambda name: name + "\u200b",
    "soft-hyphen": lambda name: name[:2] + "\u00ad" + name[2:],
    "byte-order-mark": lambda name: "\ufeff" + name,
    "word-joiner": lambda name: name.replace(" ", "\u2060 ", 1),
}


@pytest.mark.parametrize("how", list(INVISIBLE))
async def test_a_name_pasted_with_invisible_characters_still_matches(
    gateway: Gateway, how: str
) -> None:
    """Found by probing: a name copied from Word or a PDF form with a zero-width space, a soft
    hyphen, a BOM or a word joiner in it was answered "name does not match"."""
    name = citizen_query()["full_name"]
    status, found = await _post(
        gateway, "/v1/lookups/citizen", citizen_query(full_name=INVISIBLE[how](name))
    )
    assert (status, found["match"], found["mismatches"]) == (200, True, []), found
    card = scenarios(0)["000"]
    status, valid = await _post(
        gateway,
        "/v1/lookups/insurance-card",
        {**card, "full_name": INVISIBLE[how](str(card["full_name"]))},
    )
    assert (status, valid["code"]) == (200, "000"), valid
