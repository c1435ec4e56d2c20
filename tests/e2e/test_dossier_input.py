"""Bad input and identity: each refusal is a precise problem+json, and nothing is half-stored."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
from multidict import CIMultiDict

from connectors.identifiers import make_personal_id
from gateway.samples import sample_dossiers
from tests.e2e.conftest import MOTCUA, TOKENS, Gateway

PROBLEM = "urn:lienthong:problem:"


def birth() -> dict[str, Any]:
    return copy.deepcopy(next(sample_dossiers(1, seed=0, death_share=0)))


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def apply(doc: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        target = doc
        for p in parents:
            target = target[p]
        if value is KeyError:
            del target[leaf]
        else:
            target[leaf] = value

    return apply


BAD_DOSSIERS = [
    ("invalid-personal-id", 422, _set("applicant.personal_id", "04019001234")),
    ("invalid-personal-id", 422, _set("applicant.personal_id", "003190012345")),  # no province 003
    ("invalid-personal-id", 422, _set("data.mother.personal_id", "040990012345")),  # born 2099
    ("invalid-agency-id", 422, _set("code", "000.00.00.h41-261122-0001")),
    ("invalid-dossier-code", 422, _set("code", "000.00.00.H41-261322-0001")),  # month 13
    # Found by probing (December): a code without a dash was judged as an agency id whole,
    # 422 invalid-agency-id "code: must look like 000.00.00.H41".
    ("invalid-dossier-code", 422, _set("code", "bad")),
    ("invalid-dossier-code", 422, _set("code", "000.00.00.H41")),
    ("invalid-dossier-code", 422, _set("code", "000.00.00.H41_261122_0001")),
    ("invalid-dossier-code", 422, _set("code", "")),
    ("invalid-procedure-code", 422, _set("procedure", "1001193")),
    ("unknown-procedure", 422, _set("procedure", "1.000894")),  # marriage: not a flow here
    # Hồ Chí Minh City's local variant, in a dossier Nghệ An's system files.
    ("unknown-procedure", 422, _set("procedure", "1.001193.000.00.00.H29")),
    ("flow-mismatch", 422, _set("flow", "death")),
    ("unknown-field", 422, _set("applicant.nickname", "Lan")),
    ("unknown-field", 422, _set("data.child.weight_kg", 3.2)),
    ("invalid-request", 422, _set("data.child.sex", "boy")),
    ("invalid-request", 422, _set("data.child.birth_date", "22/11/2026")),
    ("invalid-request", 422, _set("submitted_at", KeyError)),
    ("invalid-request", 422, _set("submitted_at", "2026-11-10T09:15:00")),  # no offset: ambiguous
    ("invalid-request", 422, _set("data.residence", KeyError)),
    # Found by fuzzing: re's $ matches before a final newline and \d takes any script's digits.
    # A newline in the code reached the Location header: stored, and the answer never sent.
    ("invalid-dossier-code", 422, _set("code", "000.00.00.H41-261122-0201\n")),
    ("invalid-dossier-code", 422, _set("code", "000.00.00.H41-261122-\u0660\u0660\u0669\u0660")),
    ("invalid-procedure-code", 422, _set("procedure", "1.001193\n")),
    ("invalid-request", 422, _set("data.residence.province_code", "\u0661\u0662")),
    ("invalid-request", 422, _set("data.residence.ward_code", "01026\n")),
    ("invalid-dossier-code", 422, _set("code", "000.00.11.H53-261122-0106")),  # not the caller's
    ("invalid-dossier-code", 422, _set("code", "000.00.00.H41-991231-0001")),  # received in 2099
    ("invalid-personal-id", 422, _set("applicant.birth_date", "1999-01-01")),  # id says 1985
    ("invalid-request", 422, _set("applicant.full_name", " ")),
    ("invalid-request", 422, _set("data.child.birth_place", "\u0000")),
    ("invalid-request", 422, _set("data.child.birth_place", "")),
    ("invalid-request", 422, _set("data.child.birth_date", "2999-01-01")),
    ("invalid-request", 422, _set("data.child.birth_date", "0001-01-01")),
    ("inconsistent-dossier", 422, _set("data.child.birth_date", "1950-01-01")),  # before mother
    ("invalid-request", 422, _set("callback_url", "file:///etc/passwd")),
    ("invalid-request", 422, _set("callback_url", "")),
    # Were plain str: a control character was accepted (202), then the flow stopped partway, the
    # birth registered and the residence refused ("All strings must be XML compatible").
    ("invalid-request", 422, _set("data.residence.detail", "\u0001")),
    ("invalid-request", 422, _set("data.residence.detail", "Số 1\nLê Lợi")),
    ("invalid-request", 422, _set("data.residence.detail", "x" * 501)),
    ("invalid-request", 422, _set("data.child.ethnicity", "\u0000")),
    ("invalid-request", 422, _set("data.child.nationality", "\u001f")),
    ("invalid-request", 422, _set("data.mother.ethnicity", "\u007f")),
    ("invalid-request", 422, _set("data.mother.nationality", "VN\n")),
    ("invalid-request", 422, _set("data.relation", "mẹ\r")),
    ("invalid-request", 422, _set("data.relation", "x" * 501)),
    ("invalid-request", 422, _set("applicant.email", "a@b.vn\u0000")),
    # Found by probing (December): accepted, then the flow stopped at a registry. XML 1.0 cannot
    # carry U+FFFE/U+FFFF; a lone combining mark is no name ("HoVaTen is required"); C1 controls
    # and line separators are not one line of text.
    ("invalid-request", 422, _set("data.child.full_name", "Trần Thị\ufffe Chi")),
    ("invalid-request", 422, _set("data.child.birth_place", "Bệnh viện\uffff")),
    ("invalid-request", 422, _set("applicant.full_name", "\u0301")),
    ("invalid-request", 422, _set("data.mother.full_name", " \u0301\u0300 ")),
    # Marks the pattern's ranges did not hold (Cyrillic, kana, Devanagari), a zero-width space.
    ("invalid-request", 422, _set("applicant.full_name", "\u0483")),
    ("invalid-request", 422, _set("data.child.full_name", "\u3099")),
    ("invalid-request", 422, _set("data.mother.full_name", "\u093c")),
    ("invalid-request", 422, _set("data.child.full_name", "\u200b")),
    ("invalid-request", 422, _set("data.child.full_name", "Lan\u0085")),
    # Found by probing (December): a name of digits (a form's fields mixed up) was accepted, and
    # the birth, residence and card registered under the name "12345". A name has a letter.
    ("invalid-request", 422, _set("data.child.full_name", "12345")),
    ("invalid-request", 422, _set("applicant.full_name", "0 1\u0301")),
    ("invalid-request", 422, _set("data.mother.full_name", "\u0661\u0662")),  # Arabic digits
    ("invalid-request", 422, _set("data.residence.detail", "Số 1\u2028Lê Lợi")),
    # Accepted, then the birth registered and the residence refused.
    ("invalid-request", 422, _set("data.residence.province_code", "999")),
    ("invalid-request", 422, _set("data.residence.province_code", "03")),
    # A client's value that quotes msgspec's words is still only a wrong value.
    ("invalid-request", 422, _set("flow", "unknown field")),
    ("invalid-request", 422, _set("callback_url", "https://motcua.example/" + "a" * 2100)),
    # Accepted, then dead at the first step: the population registry is asked by birth date too.
    ("invalid-request", 422, _set("applicant.birth_date", KeyError)),
    # Found by probing (December 7): each was accepted, and the flow stopped for ever after the
    # birth was registered (which cannot be undone), or the register refused it.
    # Filed before the birth: refused as declared before the event; no correction changes it.
    ("inconsistent-dossier", 422, _set("submitted_at", "2026-10-31T09:00:00+07:00")),
    ("invalid-request", 422, _set("submitted_at", "2099-01-01T09:00:00+07:00")),  # the future
    # Found by probing (December 8): .NET's DateTime.MinValue with the office's offset (an unset
    # field) is before year 1 in UTC: converting it to Vietnam's time was a 500 (OverflowError).
    ("invalid-request", 422, _set("submitted_at", "0001-01-01T00:00:00+07:00")),
    ("invalid-request", 422, _set("submitted_at", "0001-01-01T00:00:00+14:00")),
    ("invalid-request", 422, _set("submitted_at", "1899-12-31T23:59:59-12:00")),
    # A child of 6 gets no group-TE card: the flow's last step was refused for ever.
    ("inconsistent-dossier", 422, _set("data.child.birth_date", "2020-11-03")),
    # The child's residence is registered in a ward of a district: the register needs both.
    ("invalid-request", 422, _set("data.residence.district_code", KeyError)),
    ("invalid-request", 422, _set("data.residence.ward_code", KeyError)),
    # The mother is verified (by id, name and birth date) before the birth is registered.
    ("invalid-request", 422, _set("data.mother.birth_date", KeyError)),
    # The sample's applicant is the mother: the certificate would name her the father.
    ("inconsistent-dossier", 422, _set("data.relation", "father")),
    ("inconsistent-dossier", 422, _set("data.relation", "Cha")),
]


async def _count_dossiers(gw: Gateway) -> int:
    row = await gw.runtime.store.read(lambda tx: tx.one("dossiers.count_by_status"))
    return int(row["n"]) if row else 0


@pytest.mark.parametrize(("slug", "status", "mutate"), BAD_DOSSIERS)
async def test_bad_dossier_is_refused_precisely(
    gateway: Gateway, slug: str, status: int, mutate: Callable[[dict[str, Any]], None]
) -> None:
    doc = birth()
    mutate(doc)
    async with await gateway.post("/v1/dossiers", doc, headers={"X-Request-Id": "req-bad-1"}) as r:
        problem = await r.json()
        assert r.status == status, problem
        assert r.content_type == "application/problem+json"
    assert problem["type"] == PROBLEM + slug, problem
    assert problem["request_id"] == "req-bad-1" and problem["instance"] == "/v1/dossiers"
    assert problem["detail"]
    assert await _count_dossiers(gateway) == 0
    jobs = await gateway.runtime.store.read(lambda tx: tx.all("outbox.counts"))
    assert jobs == []


@pytest.mark.parametrize(
    ("sequence", "slug"),
    [
        ("1000001", "invalid-request"),  # 7 digits: one past the longest code (the model's limit)
        ("7" * 3000, "invalid-request"),  # past PostgreSQL's btree row limit: was a 503
        ("7" * 20000, "invalid-request"),  # stored on SQLite, its URL past the server's limit
    ],
)
async def test_an_overlong_dossier_code_is_refused_on_each_store(
    any_gateway: Gateway, sequence: str, slug: str
) -> None:
    """Before, the sequence had no upper bound: on PostgreSQL a 3,000-digit code broke the
    index's row limit (503 store-unavailable, and /readyz failed for 30 s); on SQLite a
    20,000-digit code was stored and answered with a Location no request could fetch."""
    doc = birth()
    doc["code"] = doc["code"].rsplit("-", 1)[0] + "-" + sequence
    async with await any_gateway.post("/v1/dossiers", doc) as r:
        problem = await r.json()
        assert (r.status, problem["type"]) == (422, PROBLEM + slug), problem
        assert "Location" not in r.headers
    assert "code" in problem.get("field", "") + problem["detail"]
    assert await _count_dossiers(any_gateway) == 0
    async with any_gateway.http.get(any_gateway.url + "/readyz") as r:
        assert r.status == 200, await r.text()


async def test_a_six_digit_sequence_is_accepted_and_readable(any_gateway: Gateway) -> None:
    doc = birth()
    doc["code"] = doc["code"].rsplit("-", 1)[0] + "-100001"
    async with await any_gateway.post("/v1/dossiers", doc) as r:
        assert r.status == 202, await r.text()
        location = r.headers["Location"]
    async with await any_gateway.get(location) as r:
        assert (r.status, (await r.json())["code"]) == (200, doc["code"])


def death() -> dict[str, Any]:
    return copy.deepcopy(next(sample_dossiers(1, seed=0, death_share=1)))


@pytest.mark.parametrize(
    "mutate",
    [
        _set("data.deceased.cause", "\u0007"),
        _set("data.deceased.cause", "x" * 501),
        _set("data.relation", "\u0000"),
        _set("data.relation", " "),
        # The deceased is verified against the population registry by id, name and birth date.
        _set("data.deceased.birth_date", KeyError),
    ],
)
async def test_bad_death_dossier_text_is_refused(
    gateway: Gateway, mutate: Callable[[dict[str, Any]], None]
) -> None:
    doc = death()
    mutate(doc)
    async with await gateway.post("/v1/dossiers", doc) as r:
        problem = await r.json()
        assert (r.status, problem["type"]) == (422, PROBLEM + "invalid-request"), problem
    assert "$.data." in problem["detail"]
    assert await _count_dossiers(gateway) == 0


async def test_optional_text_may_be_empty_or_absent(gateway: Gateway) -> None:
    doc = birth()
    doc["data"]["residence"]["detail"] = ""
    doc["applicant"]["email"] = ""
    async with await gateway.post("/v1/dossiers", doc) as r:
        assert r.status == 202, await r.text()


async def test_a_local_variant_of_the_filing_province_runs_the_national_flow(
    gateway: Gateway,
) -> None:
    doc = birth()
    doc["procedure"] = "1.001193.000.00.00.H41"  # published by Nghệ An, filed by Nghệ An
    async with await gateway.post("/v1/dossiers", doc) as r:
        assert r.status == 202, await r.text()


async def test_a_father_with_the_mothers_personal_id_is_inconsistent(gateway: Gateway) -> None:
    doc = birth()  # accepted and completed: a child whose two parents are one person
    mother = doc["data"]["mother"]
    doc["data"]["father"] = {"full_name": "Trần Văn Minh", "personal_id": mother["personal_id"]}
    async with await gateway.post("/v1/dossiers", doc) as r:
        problem = await r.json()
    assert (r.status, problem["type"]) == (422, PROBLEM + "inconsistent-dossier"), problem
    assert problem["field"] == "data.father.personal_id"


async def test_a_death_reported_by_the_deceased_is_inconsistent(gateway: Gateway) -> None:
    doc = death()
    doc["applicant"]["personal_id"] = doc["data"]["deceased"]["personal_id"]
    doc["applicant"]["birth_date"] = doc["data"]["deceased"]["birth_date"]
    async with await gateway.post("/v1/dossiers", doc) as r:
        problem = await r.json()
        assert (r.status, problem["type"]) == (422, PROBLEM + "inconsistent-dossier")
    assert await _count_dossiers(gateway) == 0


async def test_malformed_json_wrong_type_and_oversize(
    make_gateway: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async with make_gateway(gateway={"max_body_bytes": 4096}) as gw:
        url, auth = gw.url + "/v1/dossiers", gw.headers()
        async with gw.http.post(
            url, data=b'{"code": ', headers={**auth, "Content-Type": "application/json"}
        ) as r:
            assert (r.status, (await r.json())["type"]) == (400, PROBLEM + "malformed-json")
        async with gw.http.post(
            url,
            data=b"code=1",
            headers={**auth, "Content-Type": "application/x-www-form-urlencoded"},
        ) as r:
            assert (r.status, (await r.json())["type"]) == (415, PROBLEM + "unsupported-media-type")
        big = birth()
        big["data"]["child"]["birth_place"] = "x" * 5000
        async with gw.http.post(url, json=big, headers=auth) as r:
            assert (r.status, (await r.json())["type"]) == (413, PROBLEM + "payload-too-large")
        async with gw.http.post(
            url,
            data="\udcff".encode("utf-8", "surrogatepass"),
            headers={**auth, "Content-Type": "application/json"},
        ) as r:
            assert (r.status, (await r.json())["type"]) == (400, PROBLEM + "malformed-json")
        for encoding in ("gzip", "deflate"):  # a body that is not in its Content-Encoding
            async with gw.http.post(
                url,
                data=b'{"code": 1}',
                headers={**auth, "Content-Type": "application/json", "Content-Encoding": encoding},
            ) as r:
                assert (r.status, (await r.json())["type"]) == (400, PROBLEM + "malformed-json")
                assert r.headers["Connection"] == "close"  # the rest cannot be read either
        # A coding aiohttp does not decode would reach the handler still encoded: refused.
        for codings in (["foo"], ["compress"], ["gzip, gzip"], ["gzip", "gzip"], ["identity, x"]):
            headers = CIMultiDict({**auth, "Content-Type": "application/json"})
            for coding in codings:
                headers.add("Content-Encoding", coding)
            async with gw.http.post(url, json=birth(), headers=headers) as r:
                assert (r.status, (await r.json())["type"]) == (
                    415,
                    PROBLEM + "unsupported-media-type",
                ), codings
                assert r.headers["Accept-Encoding"] == "gzip, deflate"
        async with gw.http.post(
            url,
            data=b'{"code": 1}',
            headers={**auth, "Content-Type": "application/json", "Content-Encoding": "Identity"},
        ) as r:
            assert r.status == 422  # no coding at all: read, and judged on its content
        assert not [r for r in caplog.records if r.levelname == "ERROR"]  # a client's fault
        for depth in (500, 1500):  # arrays in arrays: the decoder's and nfc()'s recursion
            nested = b'{"code": ' + b"[" * depth + b"]" * depth + b"}"
            async with gw.http.post(
                url, data=nested, headers={**auth, "Content-Type": "application/json"}
            ) as r:
                assert (r.status, (await r.json())["type"]) == (400, PROBLEM + "malformed-json")
        assert await _count_dossiers(gw) == 0


async def test_a_problem_in_the_data_names_its_path(gateway: Gateway) -> None:
    """``data`` is decoded on its own, by flow: its errors were reported from its root, without
    the ``$.data`` a client needs to find them."""
    for mutate, where in (
        (_set("data.child", KeyError), "`$.data`"),
        (_set("data.residence.province_code", "999"), "`$.data.residence`"),
        (_set("data.child.sex", "boy"), "`$.data.child.sex`"),
    ):
        doc = birth()
        mutate(doc)
        async with await gateway.post("/v1/dossiers", doc) as r:
            problem = await r.json()
        assert r.status == 422 and where in problem["detail"], problem


async def _raw_post(gw: Gateway, path: str, body: bytes, **headers: str) -> tuple[int, Any]:
    merged = {**gw.headers(), "Content-Type": "application/json", **headers}
    async with gw.http.post(gw.url + path, data=body, headers=merged) as r:
        return r.status, (await r.json())["type"].removeprefix(PROBLEM)


@pytest.mark.parametrize("path", ["/v1/dossiers", "/v1/lookups/citizen"])
async def test_json_that_is_not_utf8_or_names_a_key_twice_is_malformed(
    gateway: Gateway, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Bytes that are not UTF-8 inside a string were a 500 with a traceback; a key given twice
    was taken silently, the last one winning (a first personal_id never checked)."""
    lookup = b'"personal_id": "040190012345", "full_name": "Lan", "birth_date": "1990-01-01"'
    for body in (
        b'{"code": "\xff"}',
        '{"full_name": "Trần"}'.encode("latin-1", "replace").replace(b"?", b"\xe0"),
        b"{" + lookup + b', "personal_id": "040190012346"}',
        b'{"x": {"a": 1, "a": 2}, ' + lookup + b"}",
        # two keys that are one once in NFC
        b'{"full_name": "A", "full_name": "A", "\xc3\xa1": 1, "a\xcc\x81": 2}',
    ):
        assert await _raw_post(gateway, path, body) == (400, "malformed-json"), body
    assert await _raw_post(
        gateway, path, b"{" + lookup + b"}", **{"Content-Type": "application/json; charset=latin-1"}
    ) == (415, "unsupported-media-type")
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
    assert await _count_dossiers(gateway) == 0


async def test_a_default_spelled_out_is_the_same_dossier(gateway: Gateway) -> None:
    doc = birth()
    async with await gateway.post("/v1/dossiers", doc) as r:
        assert r.status == 202
        first = await r.json()
    doc["data"]["child"]["nationality"] = "VN"  # the model's default
    doc["data"]["relation"] = "mother"
    async with await gateway.post("/v1/dossiers", doc) as r:
        assert (r.status, await r.json()) == (202, first)
    doc["data"]["child"]["nationality"] = "LA"
    async with await gateway.post("/v1/dossiers", doc) as r:
        assert r.status == 409


async def test_a_code_taken_by_another_subsystem_says_only_that(make_gateway: Any) -> None:
    """The same body from another system of the same agency: the 409 said "different content",
    which was untrue, and hinted at what the other system had sent."""
    subsystems = [
        {"id": MOTCUA, "token": TOKENS["motcua"], "rights": ["dossiers.submit"]},
        {"id": MOTCUA + "2", "token": "t-motcua2-0123456789", "rights": ["dossiers.submit"]},
    ]
    async with make_gateway(subsystems=subsystems) as gw:
        doc = birth()
        async with await gw.post("/v1/dossiers", doc) as r:
            assert r.status == 202
        other = {"Authorization": "Bearer t-motcua2-0123456789"}
        async with await gw.post("/v1/dossiers", doc, headers=other) as r:
            problem = await r.json()
        assert (r.status, problem["type"]) == (409, PROBLEM + "duplicate-conflict")
        assert problem["detail"] == f"the dossier code {doc['code']} is taken"


async def test_a_token_that_is_not_utf8_is_a_401(gateway: Gateway) -> None:
    host, port = gateway.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"GET /v1/dossiers HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Authorization: Bearer \xff\xfe\r\n\r\n"
    )
    answer = await reader.read()
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 401"), head
    assert json.loads(body)["type"] == PROBLEM + "unauthenticated"


@pytest.mark.parametrize(
    ("headers", "status", "slug"),
    [
        ({}, 401, "unauthenticated"),
        ({"Authorization": "Bearer not-a-token"}, 401, "unauthenticated"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, 401, "unauthenticated"),
        ({"Authorization": "Bearer t-outsider-0123456789"}, 403, "forbidden-service"),
        ({"Authorization": "Bearer t-auditor-0123456789"}, 403, "forbidden-service"),
    ],
)
async def test_identity_and_rights(
    gateway: Gateway, headers: dict[str, str], status: int, slug: str
) -> None:
    async with gateway.http.post(gateway.url + "/v1/dossiers", json=birth(), headers=headers) as r:
        problem = await r.json()
        assert (r.status, problem["type"]) == (status, PROBLEM + slug)
        if status == 401:
            assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert await _count_dossiers(gateway) == 0


async def test_operator_only_endpoints_refuse_provincial_systems(gateway: Gateway) -> None:
    code = birth()["code"]
    async with gateway.http.patch(
        gateway.url + f"/v1/dossiers/{code}", json={"reason": "x"}, headers=gateway.headers()
    ) as r:
        assert (r.status, (await r.json())["type"]) == (403, PROBLEM + "forbidden-service")
    async with await gateway.post(f"/v1/dossiers/{code}/resume", None) as r:
        assert r.status == 403


async def test_unknown_routes_and_methods_are_problems(gateway: Gateway) -> None:
    async with await gateway.get("/v1/nothing-here") as r:
        assert (r.status, (await r.json())["type"]) == (404, PROBLEM + "not-found")
    async with gateway.http.delete(gateway.url + "/v1/dossiers", headers=gateway.headers()) as r:
        assert (r.status, (await r.json())["type"]) == (405, PROBLEM + "method-not-allowed")
        assert set(r.headers["Allow"].split(",")) >= {"GET", "POST"}
    async with gateway.http.request("TRACE", gateway.url + "/healthz") as r:
        assert (r.status, r.headers["Allow"]) == (405, "GET,HEAD")


async def test_request_id_is_echoed_or_generated(gateway: Gateway) -> None:
    async with gateway.http.get(gateway.url + "/healthz", headers={"X-Request-Id": "abc-123"}) as r:
        assert r.headers["X-Request-Id"] == "abc-123"
    async with gateway.http.get(
        gateway.url + "/healthz", headers={"X-Request-Id": "bad id with spaces"}
    ) as r:
        assert (
            r.headers["X-Request-Id"] != "bad id with spaces"
            and len(r.headers["X-Request-Id"]) == 32
        )


async def test_a_birth_that_leaves_the_relation_to_its_default_completes(gateway: Gateway) -> None:
    """The model's default (the applicant is the mother) was not stored, so the flow sent the
    civil-status registry no relation, and the registration was refused ("declarant.relation is
    required"): every client that left the default out had its dossier stopped."""
    doc = birth()
    del doc["data"]["relation"]
    async with await gateway.post("/v1/dossiers", doc) as r:
        assert r.status == 202
    view = await gateway.wait_status(doc["code"], {"completed", "needs_attention", "failed"})
    assert view["status"] == "completed", view


async def test_a_large_body_is_judged_as_a_small_one(gateway: Gateway) -> None:
    """Bodies over 64 KiB are decoded in a thread, not on the event loop: the same answers."""
    pad = " " * (70 * 1024)  # JSON whitespace: the same document, a larger body
    doc = birth()
    doc["data"]["child"]["sex"] = "boy"
    body = json.dumps(doc).replace("{", "{" + pad, 1).encode()
    assert await _raw_post(gateway, "/v1/dossiers", body) == (422, "invalid-request")
    twice = b'{"code": "a", "code": "b",' + pad.encode() + b'"x": 1}'
    assert await _raw_post(gateway, "/v1/dossiers", twice) == (400, "malformed-json")
    good = birth()
    body = json.dumps(good).replace("{", "{" + pad, 1).encode()
    merged = {**gateway.headers(), "Content-Type": "application/json"}
    async with gateway.http.post(gateway.url + "/v1/dossiers", data=body, headers=merged) as r:
        assert r.status == 202, await r.text()


async def test_the_declarants_relation_is_the_parent_the_applicant_is(gateway: Gateway) -> None:
    """Found by probing: the relation defaulted to "mother" whoever filed, and a father who
    filed was written on the birth certificate as the child's mother (nycQuanHe Mẹ)."""
    doc = birth()
    father = {
        "full_name": "Trần Văn Minh",
        "personal_id": make_personal_id("040", "male", 1988, 101111),
        "birth_date": "1988-05-06",
    }
    doc["data"]["father"] = father
    doc["applicant"] = {**father, "phone": "0912345678"}
    del doc["data"]["relation"]
    async with await gateway.post("/v1/dossiers", doc) as r:
        assert r.status == 202, await r.text()
    stored = await gateway.runtime.store.read(lambda tx: tx.one("dossiers.get", code=doc["code"]))
    assert json.loads(stored["body"])["data"]["relation"] == "father"

    # Neither parent filed: the client must say how the applicant is related to the child.
    other = birth()
    other["code"] = other["code"][:-4] + "0002"
    other["applicant"] = {**father, "phone": "0912345678"}
    del other["data"]["relation"]
    async with await gateway.post("/v1/dossiers", other) as r:
        problem = await r.json()
    assert (r.status, problem["type"]) == (422, PROBLEM + "invalid-request"), problem
    assert problem["field"] == "data.relation"
    other["data"]["relation"] = "grandparent"
    async with await gateway.post("/v1/dossiers", other) as r:
        assert r.status == 202, await r.text()


async def test_a_parent_the_id_says_is_no_older_than_the_child_is_inconsistent(
    gateway: Gateway,
) -> None:
    """Without the father's birth date, the year his personal id encodes: a father born the
    child's year was accepted, and the register refused the birth ("not older than the child")."""
    doc = birth()
    doc["data"]["father"] = {
        "full_name": "Lê Văn Hùng",
        "personal_id": make_personal_id("040", "male", 2026, 123456),
    }
    async with await gateway.post("/v1/dossiers", doc) as r:
        problem = await r.json()
    assert (r.status, problem["type"]) == (422, PROBLEM + "inconsistent-dossier"), problem
    assert problem["field"] == "data.father.birth_date"
    assert await _count_dossiers(gateway) == 0


async def test_a_death_filed_before_it_happened_is_inconsistent(gateway: Gateway) -> None:
    doc = death()
    doc["submitted_at"] = "2026-10-01T09:00:00+07:00"
    async with await gateway.post("/v1/dossiers", doc) as r:
        problem = await r.json()
    assert (r.status, problem["type"]) == (422, PROBLEM + "inconsistent-dossier"), problem
    assert problem["field"] == "submitted_at"


@pytest.mark.parametrize(
    ("path", "value", "words"),
    [
        ("data.child.full_name", "Lan\nAnh", "character 4 is a control character (U+000A)"),
        ("data.child.full_name", "Lan\u2028Anh", "character 4 is a line or paragraph separator (U+2028)"),
        ("data.child.full_name", "   ", "it holds nothing but spaces and combining marks"),
        ("data.child.birth_place", "", "it holds nothing but spaces and combining marks"),
        ("applicant.full_name", "An\u0007", "character 3 is a control character (U+0007)"),
        ("data.child.birth_place", "Bệnh viện\uffff", "character 10 is U+FFFF, which XML cannot carry"),
        ("data.residence.detail", "Số 1\rLê Lợi", "character 5 is a control character (U+000D)"),
        ("data.mother.ethnicity", "Kinh\u0085", "character 5 is a control character (U+0085)"),
    ],
)  # fmt: skip
async def test_text_that_is_no_line_is_told_in_words(
    gateway: Gateway, path: str, value: str, words: str
) -> None:
    """Found by probing: a name with a newline, a U+2028 or only spaces was refused with the
    pattern's 400 characters of regular expression as ``detail``, which tells a one-stop
    system's developer nothing. Now ``detail`` says what is wrong, and where."""
    doc = birth()
    _set(path, value)(doc)
    async with await gateway.post("/v1/dossiers", doc) as r:
        problem = await r.json()
    assert (r.status, problem["type"]) == (422, PROBLEM + "invalid-request"), problem
    assert problem["detail"] == f"Expected one line of text: {words} - at `$.{path}`", problem
    assert await _count_dossiers(gateway) == 0


@pytest.mark.parametrize("code", ["bad", "000.00.00.H41", "000.00.00.H41 261122 0001"])
async def test_a_code_without_a_dash_is_told_the_shape_of_a_dossier_code(
    gateway: Gateway, code: str
) -> None:
    doc = birth()
    doc["code"] = code
    async with await gateway.post("/v1/dossiers", doc) as r:
        problem = await r.json()
    assert (r.status, problem["type"]) == (422, PROBLEM + "invalid-dossier-code"), problem
    assert problem["field"] == "code"
    assert problem["detail"] == (
        "code: must look like 000.00.00.H41-261122-0001 (a sequence of 4 to 6 digits)"
    )
