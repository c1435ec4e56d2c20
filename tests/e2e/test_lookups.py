"""Synchronous lookups through the gateway: answers translated from each registry, every failure a
precise problem naming the registry, every access in the audit log (by keyed hash, never the id)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
from dataclasses import replace
from typing import Any

import msgspec
import pytest

from connectors.business.sandbox import generate_enterprises
from connectors.insurance.sandbox import scenarios
from connectors.population.sandbox import REGISTRY_KEY
from connectors.testdata import Population
from gateway.audit import citizen_hash, decode_entry
from tests.e2e.conftest import MOTCUA, TOKENS, Gateway, population_registry

PROBLEM = "urn:lienthong:problem:"
FAST = {"max_attempts": 2, "base_delay_s": 0.01, "max_delay_s": 0.02, "jitter": 0.0}


def citizen_query(index: int = 0, **change: str) -> dict[str, str]:
    person = Population(0).citizen(index)
    query = {
        "personal_id": person.personal_id,
        "full_name": person.full_name,
        "birth_date": person.birth_date.isoformat(),
    }
    return {**query, **change}


async def _post(gw: Gateway, path: str, body: Any) -> tuple[int, dict[str, Any]]:
    async with await gw.post(path, body) as r:
        return r.status, await r.json()


async def test_citizen_match_mismatch_and_the_audit_trail(gateway: Gateway) -> None:
    status, found = await _post(gateway, "/v1/lookups/citizen", citizen_query())
    assert status == 200 and found["match"] is True and found["mismatches"] == []
    assert found["citizen"]["personal_id"] == citizen_query()["personal_id"]
    status, wrong = await _post(
        gateway, "/v1/lookups/citizen", citizen_query(full_name="Trần Văn Khác")
    )
    assert status == 200 and wrong["match"] is False and wrong["mismatches"] == ["full_name"]
    assert wrong["citizen"] is None  # a wrong name reveals nothing
    # NFD input is the same name
    import unicodedata

    nfd = citizen_query(full_name=unicodedata.normalize("NFD", citizen_query()["full_name"]))
    assert (await _post(gateway, "/v1/lookups/citizen", nfd))[1]["match"] is True
    rows = await gateway.runtime.store.read(lambda tx: tx.all("audit.range", start=0, stop=100))
    entries = [decode_entry(r["entry"]) for r in rows]
    lookups = [e for e in entries if e["action"] == "lookup.citizen"]
    assert len(lookups) == 3
    who = citizen_hash(gateway.runtime.citizen_key, citizen_query()["personal_id"])
    assert all(
        e["citizen"] == who and e["subsystem"] == "VN:GOV:000.00.00.H41:motcua" for e in lookups
    )
    assert all(citizen_query()["personal_id"].encode() not in bytes(r["entry"]) for r in rows)
    # The request's digest is keyed too: a plain SHA-256 of {id, name, birth date} gave the id
    # back to whoever knew the name and birth date (a million guesses).
    asked = msgspec.json.encode(citizen_query())
    plain = hashlib.sha256(asked).hexdigest()
    keyed = hmac.new(gateway.runtime.citizen_key, asked, hashlib.sha256).hexdigest()
    assert lookups[0]["digests"] == {"params_hmac": keyed}
    assert all(plain.encode() not in bytes(r["entry"]) for r in rows)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/lookups/citizen", citizen_query()),
        (
            "/v1/lookups/insurance-card",
            {"card_number": "GD4010123456789", "full_name": "Nguyễn Văn An"},
        ),
    ],
)
@pytest.mark.parametrize("born", ["1899-12-31", "9999-12-31", "0001-01-01", "1899", "9999"])
async def test_a_lookups_date_of_birth_lies_between_1900_and_today(
    gateway: Gateway, path: str, body: dict[str, str], born: str
) -> None:
    """As a dossier's: they were sent on to the registry and answered 200."""
    status, problem = await _post(gateway, path, {**body, "birth_date": born})
    assert (status, problem["type"], problem["field"]) == (
        422,
        PROBLEM + "invalid-request",
        "birth_date",
    )
    assert not await gateway.runtime.store.read(
        lambda tx: tx.all("audit.range", start=0, stop=10)
    )  # refused before any call, so nothing to audit


async def test_a_lookup_by_the_year_of_birth_alone(gateway: Gateway) -> None:
    """Both registries take a year alone for older records (population Nam, BHXH ngaySinh
    yyyy), and the connectors sent it; the API refused it (422 "Invalid RFC3339 encoded date")."""
    year = citizen_query()["birth_date"][:4]
    status, found = await _post(gateway, "/v1/lookups/citizen", citizen_query(birth_date=year))
    assert (status, found["match"]) == (200, True), found
    assert found["citizen"]["birth_date"] == citizen_query()["birth_date"]
    card = scenarios(0)["000"]
    by_year = {**card, "birth_date": str(card["birth_date"])[:4]}
    status, valid = await _post(gateway, "/v1/lookups/insurance-card", by_year)
    assert (status, valid["code"]) == (200, "000"), valid
    # The year must still agree with the one the personal id encodes.
    wrong = citizen_query(birth_date=str(int(year) + 1))
    status, problem = await _post(gateway, "/v1/lookups/citizen", wrong)
    assert (status, problem["type"], problem["field"]) == (
        422,
        PROBLEM + "invalid-personal-id",
        "personal_id",
    )
    for bad in ("2023-02-29", "1990-13-01", "90", "1990-5-12", "1990-05-12T00:00:00"):
        for path, body in (
            ("/v1/lookups/citizen", citizen_query()),
            ("/v1/lookups/insurance-card", card),
        ):
            status, problem = await _post(gateway, path, {**body, "birth_date": bad})
            assert (status, problem["type"]) == (422, PROBLEM + "invalid-request"), (bad, problem)


async def test_bad_lookups_are_refused_before_any_call(gateway: Gateway) -> None:
    status, problem = await _post(
        gateway, "/v1/lookups/citizen", citizen_query(personal_id="040190012")
    )
    assert (status, problem["type"]) == (422, PROBLEM + "invalid-personal-id")
    year = int(citizen_query()["birth_date"][:4])
    for wrong in (
        {"birth_date": f"{year + 1}-01-01"},  # not the year the id encodes (was the registry's 502)
        {"full_name": " "},
        {"full_name": "\u0000"},
        {"personal_id": "040190012345\n"},
        {"full_name": "Tr\uffffang"},  # was the registry's 502 registry-refused
    ):
        status, problem = await _post(gateway, "/v1/lookups/citizen", {**citizen_query(), **wrong})
        assert status == 422, (wrong, problem)
    status, problem = await _post(
        gateway, "/v1/lookups/citizen", citizen_query(personal_id="003190012345")
    )
    assert problem["field"] == "personal_id" and problem["detail"].startswith("personal_id: ")
    root = "/".join(gateway.sandbox("business").split("/")[:3])
    async with gateway.http.get(root + "/_sandbox/stats") as r:
        before = (await r.json())["requests"]
    async with await gateway.get("/v1/lookups/enterprises/0100233480") as r:
        assert (r.status, (await r.json())["type"]) == (422, PROBLEM + "invalid-tax-code")
    async with await gateway.get("/v1/lookups/enterprises/040190012345") as r:  # a person's
        problem = await r.json()
        assert (r.status, problem["type"]) == (422, PROBLEM + "invalid-tax-code")
        assert "personal identification number" in problem["detail"]
        assert "040190012345" not in problem["detail"]
    async with await gateway.get("/v1/lookups/enterprises/0314409058002") as r:  # no dash
        problem = await r.json()
        assert (r.status, problem["type"]) == (422, PROBLEM + "invalid-tax-code")
        assert "NNNNNNNNNN-NNN" in problem["detail"], problem
    async with gateway.http.get(root + "/_sandbox/stats") as r:
        assert (await r.json())["requests"] == before  # refused before any call
    async with await gateway.get("/v1/lookups/enterprises/0100233480", who="outsider") as r:
        assert r.status == 403


async def test_insurance_card_and_enterprise(gateway: Gateway) -> None:
    cards = scenarios(0)
    status, valid = await _post(gateway, "/v1/lookups/insurance-card", cards["000"])
    assert status == 200 and valid["code"] == "000" and valid["status"] == "valid"
    status, expired = await _post(gateway, "/v1/lookups/insurance-card", cards["010"])
    assert status == 200 and expired["code"] == "010" and expired["status"] == "expired"
    tax_code, wire = next(iter(generate_enterprises(0).items()))
    async with await gateway.get(f"/v1/lookups/enterprises/{tax_code}") as r:
        body = await r.json()
        assert r.status == 200, body
    assert (body["tax_code"], body["name"]) == (tax_code, wire["tenDoanhNghiep"])
    # One form of province code in every answer: 3 digits, as a citizen's (the registry's "08"
    # was passed on as it came).
    assert body["head_office"]["province_code"] == "0" + wire["diaChiTruSo"]["maTinhThanh"]
    unknown = "0100233488"  # a valid code no enterprise of the sandbox has
    if unknown not in generate_enterprises(0):
        async with await gateway.get(f"/v1/lookups/enterprises/{unknown}") as r:
            assert (r.status, (await r.json())["type"]) == (404, PROBLEM + "not-found")


async def test_a_card_number_as_printed_is_looked_up(gateway: Gateway) -> None:
    """A card is printed "XX Y ZZ NNNNNNNNNN" (identifiers.md), and the connector asks BHXH
    without spaces and in upper case; the API refused a number with spaces or in lower case."""
    card = scenarios(0)["000"]
    number = str(card["card_number"]).upper()
    for written in (f"{number[:2]} {number[2]} {number[3:5]} {number[5:]}", number.lower()):
        status, valid = await _post(
            gateway, "/v1/lookups/insurance-card", {**card, "card_number": written}
        )
        assert (status, valid["code"], valid["card_number"]) == (200, "000", number), valid
    for wrong in (
        number + "1",
        number[:-1],
        "Đ" + number[1:],
        number + "\t",
        f"{number[:5]}-{number[5:]}",
    ):
        status, problem = await _post(
            gateway, "/v1/lookups/insurance-card", {**card, "card_number": wrong}
        )
        assert (status, problem["type"]) == (422, PROBLEM + "invalid-request"), (wrong, problem)


def _metric(text: str, prefix: str) -> float:
    values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(prefix)]
    assert len(values) == 1, (prefix, values)
    return values[0]


async def test_registry_calls_are_counted_timed_and_logged(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    """An operator sees each registry's calls and their time in /metrics, and in each lookup's
    access-log line how much of its time was the registry's."""
    caplog.set_level(logging.INFO, logger="lienthong.http")
    assert (await _post(gateway, "/v1/lookups/citizen", citizen_query()))[0] == 200
    unknown = "0100233488"  # a valid code no enterprise of the sandbox has: refused, 404
    assert unknown not in generate_enterprises(0)
    async with await gateway.get(f"/v1/lookups/enterprises/{unknown}") as r:
        assert r.status == 404
    async with gateway.http.get(gateway.url + "/metrics") as r:
        text = await r.text()
    calls = "lienthong_registry_calls_total"
    assert _metric(text, calls + '{operation="citizen.lookup",outcome="ok",registry="population"}')
    assert _metric(
        text, calls + '{operation="enterprise.lookup",outcome="refused",registry="business"}'
    )
    timed = "lienthong_registry_call_duration_seconds"
    assert _metric(text, timed + '_count{registry="population"}') == 1.0
    assert _metric(text, timed + '_count{registry="business"}') == 1.0
    assert _metric(text, timed + '_sum{registry="population"}') > 0
    lines: dict[str, Any] = {
        r.route: r  # type: ignore[attr-defined]
        for r in caplog.records
        if r.name == "lienthong.http" and hasattr(r, "duration_ms")
    }
    for route in ("/v1/lookups/citizen", "/v1/lookups/enterprises/{tax_code}"):
        assert 0 < lines[route].registry_ms <= lines[route].duration_ms
    assert not hasattr(lines["/metrics"], "registry_ms")  # no registry was called


async def test_registry_failures_are_502_504_then_503_with_the_circuit_open(
    make_gateway: Any,
) -> None:
    async with make_gateway(
        registries={"population": {"timeout_s": 0.3, "retry": FAST}},
        gateway={"lookup_attempts": 2},
        outbox={"breaker_failures": 4, "breaker_reset_s": 30},
        sandbox={"faults": {"population": {"error_rate": 1.0}}},
    ) as gw:
        status, problem = await _post(gw, "/v1/lookups/citizen", citizen_query())
        assert (status, problem["type"], problem["registry"]) == (
            502,
            PROBLEM + "registry-unavailable",
            "population",
        )
        async with gw.http.get(gw.url + "/metrics") as r:
            text = await r.text()
        # Both attempts were calls, each counted and timed.
        assert (
            _metric(
                text,
                'lienthong_registry_calls_total{operation="citizen.lookup",outcome="error",'
                'registry="population"}',
            )
            == 2.0
        )
        assert (
            _metric(text, 'lienthong_registry_call_duration_seconds_count{registry="population"}')
            == 2.0
        )
        root = "/".join(gw.sandbox("population").split("/")[:3])
        async with gw.http.put(
            root + "/_sandbox/faults", json={"timeout_rate": 1.0, "hang_s": 5}
        ) as r:
            assert r.status == 200
        status, problem = await _post(gw, "/v1/lookups/citizen", citizen_query())
        assert (status, problem["type"]) == (504, PROBLEM + "registry-timeout")
        # Four consecutive failures so far: the circuit is open, the registry is not called.
        async with gw.http.get(root + "/_sandbox/stats") as r:
            before = (await r.json())["requests"]
        async with await gw.post("/v1/lookups/citizen", citizen_query()) as r:
            problem = await r.json()
            assert (r.status, problem["type"]) == (503, PROBLEM + "registry-unavailable")
            assert int(r.headers["Retry-After"]) >= 1
        async with gw.http.get(root + "/_sandbox/stats") as r:
            assert (await r.json())["requests"] == before
        rows = await gw.runtime.store.read(lambda tx: tx.all("audit.range", start=0, stop=100))
        outcomes = [
            decode_entry(r["entry"])["outcome"]
            for r in rows
            if b"lookup.citizen" in bytes(r["entry"])
        ]
        assert outcomes == ["failed", "failed", "failed"]  # failed accesses are audited too


async def test_access_log_never_holds_a_tax_code(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    """A tax code is an individual's personal id since 1 July 2025 (identifiers.md): the access
    log names the enterprise route, never the code in its path. Before, it logged request.path.
    Other paths (a dossier's code) are logged as they are, but for runs of 9 or more digits."""
    caplog.set_level(logging.INFO, logger="lienthong.http")
    personal = "040190012345"  # 12 digits: an individual's tax code, i.e. their personal id
    enterprise = next(iter(generate_enterprises(0)))
    async with await gateway.get(f"/v1/lookups/enterprises/{personal}") as r:
        assert r.status == 422
    async with await gateway.get(f"/v1/lookups/enterprises/{enterprise}") as r:
        assert r.status == 200
    async with gateway.http.post(
        f"{gateway.url}/v1/lookups/enterprises/{personal}", headers=gateway.headers()
    ) as r:
        assert r.status == 405
    async with await gateway.get(f"/v1/lookups/enterprises/{personal}/more") as r:
        assert r.status == 404
    dossier = "000.00.00.H41-261122-0001"
    async with await gateway.get(f"/v1/dossiers/{dossier}") as r:
        assert r.status == 404
    # Mistyped paths, found by probing: they were logged as they came.
    for path in (f"//v1/lookups/enterprises/{personal}", f"/v1/dossiers/{personal}"):
        async with await gateway.get(path) as r:
            assert r.status == 404
    lines = [r for r in caplog.records if r.name == "lienthong.http" and hasattr(r, "status")]
    logged = [f"{r.getMessage()} {sorted(vars(r).items())!r}" for r in lines]
    assert len(lines) == 7, logged
    for line in logged:
        assert personal not in line and enterprise not in line, line
    assert [r.getMessage() for r in lines[:4]] == [
        "GET /v1/lookups/enterprises/{tax_code} 422",
        "GET /v1/lookups/enterprises/{tax_code} 200",
        "POST /v1/lookups/enterprises/{tax_code} 405",
        "GET /v1/lookups/enterprises/{tax_code} 404",
    ]
    assert [r.getMessage() for r in lines[4:]] == [
        f"GET /v1/dossiers/{dossier} 404",
        "GET //v1/lookups/enterprises/… 404",
        "GET /v1/dossiers/… 404",
    ]


async def test_the_configured_officer_is_who_asks_the_insurance_registry(
    make_gateway: Any,
) -> None:
    """BHXH logs the officer asking (hoTenCb, cccdCb). With no officer to configure, the gateway
    sent its account name and its X-Road client id ('VN:GOV:…') as the officer's CCCD."""
    from aiohttp import web

    from connectors.sandboxes import serve_app

    bodies: list[dict[str, Any]] = []
    card = scenarios(0)["000"]

    async def token(request: web.Request) -> web.Response:
        return web.json_response(
            {"maKetQua": "200", "APIKey": {"access_token": "a", "id_token": "i"}}
        )

    async def check(request: web.Request) -> web.Response:
        bodies.append(await request.json())
        return web.json_response({"maKetQua": "000", "maThe": str(card["card_number"]).upper()})

    app = web.Application()
    app.router.add_post("/api/token/take", token)
    app.router.add_post("/api/egw/KQNhanLichSuKCB2024", check)
    async with serve_app(app) as bhxh:
        insurance = {
            "url": bhxh,
            "username": "h41-gateway",
            "password": "pw",
            "officer_name": "Nguyễn Văn Cán Bộ",
            "officer_id": "040088101111",
        }
        async with make_gateway(registries={"insurance": insurance}) as gw:
            status, answer = await _post(gw, "/v1/lookups/insurance-card", card)
    assert (status, answer["status"]) == (200, "valid"), answer
    assert [(b["hoTenCb"], b["cccdCb"]) for b in bodies] == [("Nguyễn Văn Cán Bộ", "040088101111")]


async def test_a_cards_data_error_does_not_open_the_registrys_circuit(make_gateway: Any) -> None:
    """Found by probing: BHXH's 100 (a data error about one record, in an HTTP 200 answer) was
    counted as the registry failing; two lookups of one such card opened the insurance circuit,
    and every province's card lookups (and the flows' card steps) got 503."""
    cards = scenarios(0)
    async with make_gateway(
        registries={"insurance": {"timeout_s": 2.0, "retry": FAST}},
        gateway={"lookup_attempts": 2},
        outbox={"breaker_failures": 2, "breaker_reset_s": 60},
    ) as gw:
        for _ in range(3):
            status, problem = await _post(gw, "/v1/lookups/insurance-card", cards["100"])
            assert status == 502, problem  # retried in the request, then told as it is
            assert problem["registry_code"] == "100", problem
        status, valid = await _post(gw, "/v1/lookups/insurance-card", cards["000"])
        assert status == 200 and valid["code"] == "000", valid
        assert gw.runtime.breakers.states()["insurance"] == "closed"


async def test_a_name_that_is_no_line_of_text_is_told_in_words(gateway: Gateway) -> None:
    """It was refused with the pattern's 400 characters of regular expression."""
    status, problem = await _post(
        gateway, "/v1/lookups/citizen", citizen_query(full_name="Mai\u0007")
    )
    assert (status, problem["type"]) == (422, PROBLEM + "invalid-request"), problem
    assert problem["detail"] == (
        "Expected one line of text: character 4 is a control character (U+0007) - at `$.full_name`"
    )


@pytest.mark.parametrize("name", ["\u0483", "\u3099", "\u093c", "\u05b0\u05b0", "\u200b", "12345"])
async def test_a_name_with_no_letter_is_refused_before_the_registry(
    gateway: Gateway, name: str
) -> None:
    """Found by probing: marks outside the pattern's ranges reached the registry as an empty
    HoVaTen, and the answer was a 502 registry-refused (THIEU_TRUONG)."""
    status, problem = await _post(gateway, "/v1/lookups/citizen", citizen_query(full_name=name))
    assert (status, problem["type"]) == (422, PROBLEM + "invalid-request"), problem
    assert "at least one letter" in problem["detail"], problem


async def test_a_citizen_answered_with_another_citizens_record_is_a_registry_fault(
    make_gateway: Any,
) -> None:
    """Found by probing: the population registry's record of another citizen, in answer to a
    lookup, was a 200 `match: true` with that citizen's data."""
    asked, other = citizen_query(), Population(0).citizen(1)
    async with population_registry() as registry:
        people = registry.app[REGISTRY_KEY].people
        pid = asked["personal_id"]
        people[pid] = replace(people[pid], pid=other.personal_id)
        async with make_gateway(
            registries={"population": registry.settings}, gateway={"lookup_attempts": 1}
        ) as gw:
            status, problem = await _post(gw, "/v1/lookups/citizen", asked)
    assert (status, problem["type"]) == (502, PROBLEM + "registry-unavailable"), problem
    assert "another citizen" in problem["detail"]
    assert other.personal_id not in str(problem) and other.full_name not in str(problem)


async def test_the_population_registry_is_told_which_agency_asks(make_gateway: Any) -> None:
    """Found by probing: every citizen lookup named 000.00.00.H41 (the connector's default) as
    the requesting unit (MaDonVi), whichever agency's system asked; the registry's access log
    blamed Nghệ An for Hồ Chí Minh City's lookups. A flow names its dossier's agency."""
    hcm = "VN:GOV:000.00.00.H29:motcua"
    subsystems = [
        {"id": MOTCUA, "token": TOKENS["motcua"], "rights": ["lookups.citizen"]},
        {"id": hcm, "token": "t-hcm-0123456789", "rights": ["lookups.citizen"]},
    ]
    async with population_registry() as registry:
        async with make_gateway(
            registries={"population": registry.settings}, subsystems=subsystems
        ) as gw:
            for token in ("t-hcm-0123456789", TOKENS["motcua"]):
                auth = {"Authorization": f"Bearer {token}"}
                async with await gw.post("/v1/lookups/citizen", citizen_query(), headers=auth) as r:
                    assert (r.status, (await r.json())["match"]) == (200, True)
            rows = await gw.runtime.store.read(lambda tx: tx.all("audit.range", start=0, stop=10))
    units = [re.findall(rb"<(?:\w+:)?MaDonVi>([^<]*)<", body) for body in registry.requests]
    assert units == [[b"000.00.00.H29"], [b"000.00.00.H41"]]
    # The public service asked for: the configured one (it was "LIENTHONG", in no catalogue).
    services = [re.findall(rb"<(?:\w+:)?MaDVC>([^<]*)<", body) for body in registry.requests]
    assert services == [[registry.settings["service_code"].encode()]] * 2
    # What was asked is digested as before: the unit is the event's member, not the question.
    asked = hmac.new(gw.runtime.citizen_key, msgspec.json.encode(citizen_query()), hashlib.sha256)
    events = [decode_entry(r["entry"]) for r in rows]
    assert [(e["member"], e["digests"]["params_hmac"]) for e in events] == [
        ("VN:GOV:000.00.00.H29", asked.hexdigest()),
        ("VN:GOV:000.00.00.H41", asked.hexdigest()),
    ]


async def test_a_bare_404_from_the_business_registry_is_a_fault_its_breaker_counts(
    make_gateway: Any,
) -> None:
    """Found by probing: a 404 page (a wrong url, a proxy) was 404 "no enterprise with tax code
    …" for every enterprise, and the breaker took it for an answer, so nothing showed the
    registry failing. Only the registry's own not-found (maLoi KHONG_TIM_THAY) is not-found."""
    from aiohttp import web

    from connectors.sandboxes import serve_app

    async def nowhere(request: web.Request) -> web.Response:
        return web.Response(
            status=404, text="<h1>404 Not Found</h1>nginx", content_type="text/html"
        )

    app = web.Application()
    app.router.add_get("/{path:.*}", nowhere)
    async with serve_app(app) as base:
        async with make_gateway(
            registries={"business": {"url": base, "api_key": "k", "retry": FAST}},
            gateway={"lookup_attempts": 1},
            outbox={"breaker_failures": 2, "breaker_reset_s": 60},
        ) as gw:
            answers = []
            for _ in range(3):
                async with await gw.get("/v1/lookups/enterprises/0100233488") as r:
                    answers.append((r.status, (await r.json()).get("registry_code")))
    assert answers == [(502, "http-404"), (502, "http-404"), (503, None)]


async def test_a_registry_echoing_the_password_it_was_sent_never_shows_it_to_the_client(
    make_gateway: Any,
) -> None:
    """Found by probing: BHXH's token endpoint echoing its request body in a 500 page put the
    gateway's password into the lookup's 502 ``detail``."""
    from aiohttp import web

    from connectors.sandboxes import serve_app

    async def token(request: web.Request) -> web.Response:
        said = (await request.read()).decode()
        return web.Response(status=500, text=f"Internal error while handling request body: {said}")

    app = web.Application()
    app.router.add_post("/api/token/take", token)
    async with serve_app(app) as bhxh:
        insurance = {
            "url": bhxh,
            "username": "h41-gateway",
            "password": "pw-secret-123",
            "officer_name": "Nguyễn Văn Cán Bộ",
            "officer_id": "040088101111",
            "retry": FAST,
        }
        async with make_gateway(
            registries={"insurance": insurance}, gateway={"lookup_attempts": 1}
        ) as gw:
            status, problem = await _post(gw, "/v1/lookups/insurance-card", scenarios(0)["000"])
    assert (status, problem["type"]) == (502, PROBLEM + "registry-unavailable"), problem
    assert "while handling request body" in problem["detail"], problem
    assert "pw-secret" not in problem["detail"], problem


def _pointed_at(url: str, registry: str) -> dict[str, Any]:
    """``[registries.<registry>]`` for a registry at ``url``, with the credentials it needs."""
    return {
        "population": {
            "url": url + "/soap",
            "username": "u",
            "secret": "s3cret-pop",
            "api_key": "k3y-pop",
            "officer_id": "040088101111",
            "service_code": "2.002156",
        },
        "insurance": {
            "url": url,
            "username": "u",
            "password": "pw",
            "officer_name": "Cán Bộ",
            "officer_id": "040088101111",
        },
        "business": {"url": url, "api_key": "k"},
    }[registry]


async def _look_up(gw: Gateway, registry: str) -> tuple[int, dict[str, Any]]:
    if registry == "population":
        return await _post(gw, "/v1/lookups/citizen", citizen_query())
    if registry == "insurance":
        return await _post(gw, "/v1/lookups/insurance-card", scenarios(0)["000"])
    async with await gw.get("/v1/lookups/enterprises/0100233488") as r:
        return r.status, await r.json()


def _registry(answer: Any) -> Any:
    """A registry whose every answer, but BHXH's token, is ``answer``'s (an aiohttp handler)."""
    from aiohttp import web

    async def token(request: web.Request) -> web.Response:
        return web.json_response(
            {"maKetQua": "200", "APIKey": {"access_token": "a", "id_token": "i"}}
        )

    app = web.Application()
    app.router.add_post("/api/token/take", token)
    app.router.add_route("*", "/{p:.*}", answer)
    return app


def _answering(status: int, body: str, content_type: str = "text/html") -> Any:
    """A registry answering ``status`` with ``body`` to all but BHXH's token requests."""
    from aiohttp import web

    async def answer(request: web.Request) -> web.Response:
        return web.Response(status=status, text=body, content_type=content_type)

    return _registry(answer)


async def _hang(request: Any) -> Any:
    await asyncio.sleep(3600)  # takes the request, never answers


NGINX_504 = (
    "<html><head><title>504 Gateway Time-out</title></head><body><center><h1>504 Gateway "
    "Time-out</h1></center><hr><center>nginx</center></body></html>"
)


@pytest.mark.parametrize("registry", ["population", "insurance", "business"])
async def test_one_http_failure_has_one_registry_code_whichever_registry_answered_it(
    make_gateway: Any, registry: str
) -> None:
    """Found by probing: the same HTTP 504 gave registry_code "504" from the population
    registry (SOAP) and "http-504" from the REST ones; the bare form reads as a MaKetQua."""
    from connectors.sandboxes import serve_app

    async with (
        serve_app(_answering(504, NGINX_504)) as url,
        make_gateway(
            registries={registry: _pointed_at(url, registry)}, gateway={"lookup_attempts": 1}
        ) as gw,
    ):
        status, problem = await _look_up(gw, registry)
    assert (status, problem["type"]) == (502, PROBLEM + "registry-unavailable"), problem
    assert (problem["registry"], problem["registry_code"]) == (registry, "http-504"), problem


@pytest.mark.parametrize("registry", ["population", "insurance", "business"])
@pytest.mark.parametrize(
    ("registry_does", "expected"),
    [
        ("503-saying-timeout", (502, "registry-unavailable", "http-503")),
        ("504-from-its-proxy", (502, "registry-unavailable", "http-504")),
        ("hangs", (504, "registry-timeout", None)),
    ],
)
async def test_504_is_the_gateways_own_deadline_never_the_registrys_words(
    make_gateway: Any, registry: str, registry_does: str, expected: tuple[Any, ...]
) -> None:
    """Found by probing: 504 or 502 was chosen by looking for "timeout" in the error's text,
    which quotes the registry's page. A 503 saying "connection pool timeout" (an answer, at
    once) was a 504; nginx's "504 Gateway Time-out" page a 502 by luck of its spelling."""
    from connectors.sandboxes import serve_app

    app = {
        "503-saying-timeout": lambda: _answering(
            503, "database connection pool timeout (30 s)", "text/plain"
        ),
        "504-from-its-proxy": lambda: _answering(504, NGINX_504),
        "hangs": lambda: _registry(_hang),
    }[registry_does]()
    async with serve_app(app) as url:
        config = {**_pointed_at(url, registry), "timeout_s": 0.3}
        async with make_gateway(
            registries={registry: config}, gateway={"lookup_attempts": 1}
        ) as gw:
            status, problem = await _look_up(gw, registry)
    assert (status, problem["type"], problem.get("registry_code")) == (
        expected[0],
        PROBLEM + expected[1],
        expected[2],
    ), problem


@pytest.mark.parametrize("registry", ["population", "insurance", "business"])
async def test_a_hanging_registry_holds_a_lookup_no_longer_than_its_deadline(
    make_gateway: Any, registry: str
) -> None:
    """Found by probing: each of lookup_attempts tries had the registry's whole timeout_s, and
    nothing bounded their sum (30 s by default). [gateway] lookup_timeout_s does: the try it
    cuts is a 504, counted by the breaker as the registry's failure to answer, and no retry
    starts that the deadline would overtake."""
    from connectors.sandboxes import serve_app

    asked: list[str] = []

    async def hang(request: Any) -> Any:
        asked.append(request.path)
        await _hang(request)

    async with serve_app(_registry(hang)) as url:
        config = {**_pointed_at(url, registry), "timeout_s": 30.0}
        async with make_gateway(
            registries={registry: config},
            gateway={"lookup_attempts": 3, "lookup_timeout_s": 0.5},
        ) as gw:
            status, problem = await _look_up(gw, registry)
            assert gw.runtime.breakers.get(registry).failures == 1
    assert (status, problem["type"]) == (504, PROBLEM + "registry-timeout"), problem
    assert "lookup_timeout_s" in problem["detail"], problem
    assert len(asked) == 1, asked


DEEP = '{"maKetQua":"000","maSoDoanhNghiep":"0100233488","x":' + "[" * 5000 + "]" * 5000 + "}"


@pytest.mark.parametrize("registry", ["insurance", "business"])
async def test_a_reply_nested_too_deep_is_a_502_audited_and_counted(
    make_gateway: Any, registry: str
) -> None:
    """Found by probing: JSON nested deeper than msgspec reads raised RecursionError through the
    connector; the lookup answered 500, was not audited, and the breaker did not count it."""
    from connectors.sandboxes import serve_app

    async with (
        serve_app(_answering(200, DEEP, "application/json")) as url,
        make_gateway(
            registries={registry: _pointed_at(url, registry)}, gateway={"lookup_attempts": 1}
        ) as gw,
    ):
        status, problem = await _look_up(gw, registry)
        assert (status, problem["type"]) == (502, PROBLEM + "registry-unavailable"), problem
        assert "malformed reply" in problem["detail"], problem
        assert gw.runtime.breakers.get(registry).failures == 1
        rows = await gw.runtime.store.read(lambda tx: tx.all("audit.range", start=0, stop=100))
    events = [decode_entry(r["entry"]) for r in rows]
    assert [(e["action"], e["outcome"]) for e in events if e["action"].startswith("lookup.")] == [
        ("lookup.enterprise" if registry == "business" else "lookup.insurance-card", "failed")
    ]


async def test_a_lookup_that_fails_unexpectedly_is_audited_all_the_same(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every access is audited, whatever its outcome: a bug after the registry was asked is a
    500, and its event is in the log before the answer leaves."""
    connector = gateway.runtime.connector("population")
    asked = connector.call

    async def buggy(*args: Any, **kwargs: Any) -> Any:
        await asked(*args, **kwargs)
        raise RuntimeError("a bug after the registry answered")

    monkeypatch.setattr(connector, "call", buggy)
    status, problem = await _post(gateway, "/v1/lookups/citizen", citizen_query())
    assert (status, problem["type"]) == (500, PROBLEM + "internal-error"), problem
    rows = await gateway.runtime.store.read(lambda tx: tx.all("audit.range", start=0, stop=100))
    events = [decode_entry(r["entry"]) for r in rows]
    who = citizen_hash(gateway.runtime.citizen_key, citizen_query()["personal_id"])
    assert [(e["action"], e["outcome"], e["citizen"]) for e in events] == [
        ("lookup.citizen", "failed", who)
    ]


async def test_a_lookup_its_client_gave_up_on_is_audited_as_cancelled(make_gateway: Any) -> None:
    """The registry was asked: a client that went away before the answer (aiohttp then cancels
    its handler) took the lookup's audit event with it. It is recorded, outcome "cancelled"."""
    from connectors.sandboxes import serve_app

    asked = asyncio.Event()

    async def hang(request: Any) -> Any:
        asked.set()
        await _hang(request)

    async with (
        serve_app(_registry(hang)) as url,
        make_gateway(registries={"population": _pointed_at(url, "population")}) as gw,
    ):
        lookup = asyncio.create_task(_look_up(gw, "population"))
        await asyncio.wait_for(asked.wait(), 10)
        lookup.cancel()  # the client goes away: its connection is closed
        with pytest.raises(asyncio.CancelledError):
            await lookup

        async def lookups() -> list[dict[str, Any]]:
            rows = await gw.runtime.store.read(lambda tx: tx.all("audit.range", start=0, stop=9))
            events = [decode_entry(r["entry"]) for r in rows]
            return [e for e in events if e["action"] == "lookup.citizen"]

        for _ in range(200):
            if await lookups():
                break
            await asyncio.sleep(0.05)
        events = await lookups()
    who = citizen_hash(gw.runtime.citizen_key, citizen_query()["personal_id"])
    assert [(e["outcome"], e["citizen"]) for e in events] == [("cancelled", who)], events


async def test_a_call_its_client_gave_up_on_is_counted_cancelled_not_as_a_registry_error(
    make_gateway: Any,
) -> None:
    """Found by probing: a lookup whose client left while the registry was still answering was
    counted ``outcome="error"`` and timed as a call that took as long as the client waited, so
    impatient clients showed on an operator's dashboard as a failing, fast registry. It is a
    call of its own outcome, ``cancelled``, and no time to answer is recorded for it."""
    from connectors.sandboxes import serve_app

    asked = asyncio.Event()

    async def hang(request: Any) -> Any:
        asked.set()
        await _hang(request)

    async def scraped() -> str:
        async with gw.http.get(gw.url + "/metrics") as r:
            return await r.text()

    async with (
        serve_app(_registry(hang)) as url,
        make_gateway(registries={"population": _pointed_at(url, "population")}) as gw,
    ):
        lookup = asyncio.create_task(_look_up(gw, "population"))
        await asyncio.wait_for(asked.wait(), 10)
        lookup.cancel()  # the client goes away: its connection is closed
        with pytest.raises(asyncio.CancelledError):
            await lookup
        calls = "lienthong_registry_calls_total"
        for _ in range(200):  # the handler is cancelled once the server sees the client gone
            if calls + "{" in (text := await scraped()):
                break
            await asyncio.sleep(0.05)
    counted = {
        line.split()[0]: float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith(calls + "{")
    }
    assert counted == {
        calls + '{operation="citizen.lookup",outcome="cancelled",registry="population"}': 1.0
    }, counted
    assert 'lienthong_registry_call_duration_seconds_count{registry="population"}' not in text
