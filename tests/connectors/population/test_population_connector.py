"""The population connector against its sandbox, over real sockets."""

from __future__ import annotations

import socket
import unicodedata
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

import httpx
import pytest
from aiohttp import web
from lxml import etree

from connectors.api import Endpoint, PermanentError, TransientError
from connectors.faults import FAULTS_KEY, FaultPlan
from connectors.population import PopulationConnector, auth_headers
from connectors.population.sandbox import REGISTRY_KEY, SOAP_PATH, create_app, sandbox_endpoint
from connectors.population.sandbox import SANDBOX_OFFICER_ID as OFFICER
from connectors.sandboxes import serve_app
from connectors.testdata import WELL_KNOWN, Population
from tests.connectors.dropping import dropping

SEED = 5
LAN, MINH, HUNG = WELL_KNOWN[0], WELL_KNOWN[1], WELL_KNOWN[2]


@dataclass
class Sandbox:
    app: web.Application
    base_url: str

    def faults(self, **plan: Any) -> None:
        self.app[FAULTS_KEY].set_plan(FaultPlan(hang_s=5.0, **plan))

    async def stats(self) -> dict[str, Any]:
        async with httpx.AsyncClient() as http:
            response = await http.get(f"{self.base_url}/_sandbox/stats")
            response.raise_for_status()
            data: dict[str, Any] = response.json()
            return data


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    app = create_app(seed=SEED, citizens=300)
    runner = web.AppRunner(app, shutdown_timeout=0.2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield Sandbox(app, f"http://127.0.0.1:{runner.addresses[0][1]}")
    finally:
        await runner.cleanup()


@pytest.fixture
async def connector(sandbox: Sandbox) -> AsyncIterator[PopulationConnector]:
    async with PopulationConnector(
        sandbox_endpoint(sandbox.base_url, timeout=2.0), officer_id=OFFICER
    ) as c:
        yield c


def lookup(c: Any, **changes: str) -> dict[str, str]:
    params = {
        "personal_id": c.personal_id,
        "full_name": c.full_name,
        "birth_date": c.birth_date.isoformat(),
    }
    return {**params, **changes}


NEWBORN = {
    "personal_id": "040226000777",
    "full_name": "Trần Minh Khôi",
    "birth_date": "2026-10-01",
    "address": {
        "province_code": "040",
        "district_code": "412",
        "ward_code": "16681",
        "detail": "Số 5, Lê Lợi",
    },
    "household_head_id": MINH.personal_id,
    "relation": "CH03",
}
DEATH = {
    "personal_id": HUNG.personal_id,
    "full_name": HUNG.full_name,
    "reason": "death",
    "death_record_number": "KT.040.2026.000001",
}


# --- lookups ----------------------------------------------------------------------------------
async def test_lookup_match_returns_the_citizen(connector: PopulationConnector) -> None:
    result = await connector.call("citizen.lookup", lookup(LAN))
    assert result.data["match"] is True and result.data["mismatches"] == []
    citizen = result.data["citizen"]
    assert citizen["personal_id"] == "040190012345"
    assert citizen["full_name"] == "Nguyễn Thị Lan"  # diacritics come back from the registry
    assert citizen["sex"] == "female" and citizen["birth_date"] == "1990-05-12"
    assert citizen["permanent_address"] == LAN.permanent_address.as_dict()
    assert citizen["permanent_address"]["province_code"] == "040"  # the registry sent "40"
    assert citizen["mother"] == {
        "full_name": LAN.mother.full_name,
        "personal_id": LAN.mother.personal_id,
    }
    assert citizen["household_book"] == MINH.household_book
    assert citizen["death_record_number"] is None  # alive


async def test_lookup_generated_citizen(connector: PopulationConnector) -> None:
    person = Population(SEED).citizen(123)
    result = await connector.call("citizen.lookup", lookup(person))
    assert result.data["match"] is True
    assert result.data["citizen"] == person.as_gateway()


async def test_name_compared_without_case_or_diacritics(connector: PopulationConnector) -> None:
    nfd = unicodedata.normalize("NFD", "nguyễn thị  lan")
    result = await connector.call("citizen.lookup", lookup(LAN, full_name=nfd))
    assert result.data["match"] is True


@pytest.mark.parametrize(
    ("changes", "mismatches"),
    [
        ({"full_name": "Nguyễn Thị Lanh"}, ["full_name"]),
        ({"birth_date": "1990-05-13"}, ["birth_date"]),
        ({"full_name": "Lê Thị Lan", "birth_date": "1990-01-12"}, ["full_name", "birth_date"]),
    ],
)
async def test_lookup_mismatch(
    connector: PopulationConnector, changes: dict[str, str], mismatches: list[str]
) -> None:
    result = await connector.call("citizen.lookup", lookup(LAN, **changes))
    assert result.data == {"match": False, "mismatches": mismatches, "citizen": None}


async def test_lookup_by_the_year_of_birth_alone(connector: PopulationConnector) -> None:
    """Service 037 takes NgayThangNamSinh as Nam (a year) for records holding only the year;
    the connector refused anything but a full date."""
    year = str(LAN.birth_date.year)
    result = await connector.call("citizen.lookup", lookup(LAN, birth_date=year))
    assert result.data["match"] is True
    assert result.data["citizen"]["birth_date"] == LAN.birth_date.isoformat()
    with pytest.raises(PermanentError, match="encodes birth year 1990"):
        await connector.call("citizen.lookup", lookup(LAN, birth_date="1991"))


async def test_unknown_citizen_is_not_an_error(connector: PopulationConnector) -> None:
    result = await connector.call("citizen.lookup", lookup(LAN, personal_id="040190999999"))
    assert result.data == {"match": False, "mismatches": ["personal_id"], "citizen": None}


async def test_a_record_about_another_citizen_is_a_malformed_reply(
    connector: PopulationConnector, sandbox: Sandbox
) -> None:
    """Found by probing: a reply whose CongDan was another citizen's (SoDinhDanh not the id
    asked) was taken as a match, with that citizen's record; the flows' verify steps, which
    come before registering a birth or a death, ask the same question."""
    people = sandbox.app[REGISTRY_KEY].people
    people[LAN.personal_id] = replace(people[LAN.personal_id], pid=MINH.personal_id)
    with pytest.raises(TransientError, match="malformed reply: a record about another citizen"):
        await connector.call("citizen.lookup", lookup(LAN))


async def test_bad_params_refused_before_sending(
    connector: PopulationConnector, sandbox: Sandbox
) -> None:
    with pytest.raises(PermanentError, match="12 digits"):
        await connector.call("citizen.lookup", lookup(LAN, personal_id="04019001234"))
    with pytest.raises(PermanentError, match="encodes birth year 1990"):
        await connector.call("citizen.lookup", lookup(LAN, birth_date="1991-05-12"))
    with pytest.raises(PermanentError, match="full_name is required"):
        await connector.call("citizen.lookup", lookup(LAN, full_name=""))
    with pytest.raises(PermanentError, match="unknown operation"):
        await connector.call("citizen.delete", lookup(LAN))
    assert (await sandbox.stats())["requests"] == 0


# --- authentication -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "changes",
    [{"secret": "wrong"}, {"username": "someone"}, {"api_key": "wrong"}, {"client_id": ""}],
)
async def test_bad_credentials_are_permanent(sandbox: Sandbox, changes: dict[str, str]) -> None:
    endpoint = replace(sandbox_endpoint(sandbox.base_url), **changes)
    async with PopulationConnector(endpoint, officer_id=OFFICER) as c:
        with pytest.raises(PermanentError) as info:
            await c.call("citizen.lookup", lookup(LAN))
    assert info.value.code == "http-401"


async def test_stale_timestamp_refused(sandbox: Sandbox) -> None:
    endpoint = sandbox_endpoint(sandbox.base_url)
    body = b"<x/>"
    headers = auth_headers(endpoint, endpoint.url, now_ms=1_000_000)
    async with httpx.AsyncClient() as http:
        response = await http.post(endpoint.url, content=body, headers=headers)
    assert response.status_code == 401 and "clock skew" in response.text


# --- writes and idempotency ---------------------------------------------------------------------
async def test_register_newborn_then_look_them_up(
    connector: PopulationConnector, sandbox: Sandbox
) -> None:
    result = await connector.call(
        "residence.register", NEWBORN, idempotency_key="dossier-1:residence"
    )
    assert result.reference == result.data["registration_number"]
    assert result.reference.startswith("DKTT.40.")
    assert result.data["household_book"] == MINH.household_book
    assert result.data["registered_at"].endswith("+07:00")
    found = await connector.call(
        "citizen.lookup", {k: NEWBORN[k] for k in ("personal_id", "full_name", "birth_date")}
    )
    assert found.data["match"] is True
    citizen = found.data["citizen"]
    assert citizen["permanent_address"]["ward_code"] == "16681"
    # The record as the birth registered it, not made of the request's folded name ("TRAN MINH
    # KHOI", sex "undetermined", no parent): the name with its diacritics, the sex the id
    # encodes, the parent whose child it joins (Minh, a man: its father).
    assert citizen["full_name"] == "Trần Minh Khôi"
    assert citizen["sex"] == "male" and citizen["nationality"] == "VN"
    assert citizen["father"] == {"full_name": MINH.full_name, "personal_id": MINH.personal_id}
    assert citizen["mother"] is None
    assert (await sandbox.stats())["writes"] == {"residence.register": 1}


async def test_same_key_twice_registers_once(
    connector: PopulationConnector, sandbox: Sandbox
) -> None:
    first = await connector.call("residence.register", NEWBORN, idempotency_key="k-1")
    second = await connector.call("residence.register", NEWBORN, idempotency_key="k-1")
    assert first == second
    stats = await sandbox.stats()
    assert stats["writes"] == {"residence.register": 1} and stats["replays"] == 1
    third = await connector.call("residence.register", NEWBORN, idempotency_key="k-2")
    assert third.reference != first.reference  # a new key is a new registration
    assert (await sandbox.stats())["writes"] == {"residence.register": 2}


async def test_key_reused_for_other_data_is_refused(connector: PopulationConnector) -> None:
    await connector.call("residence.register", NEWBORN, idempotency_key="k-1")
    other = {**NEWBORN, "address": {**NEWBORN["address"], "ward_code": "16682"}}  # type: ignore[dict-item]
    with pytest.raises(PermanentError) as info:
        await connector.call("residence.register", other, idempotency_key="k-1")
    assert info.value.code == "DUPLICATE_REQUEST_ID"


async def test_lost_reply_then_redelivery_registers_once(
    connector: PopulationConnector, sandbox: Sandbox
) -> None:
    sandbox.faults(lost_reply_rate=1.0)
    with pytest.raises(TransientError):
        await connector.call("residence.register", NEWBORN, idempotency_key="k-lost")
    with pytest.raises(TransientError):
        await connector.call("residence.register", NEWBORN, idempotency_key="k-lost")
    sandbox.faults()
    result = await connector.call("residence.register", NEWBORN, idempotency_key="k-lost")
    assert result.reference
    stats = await sandbox.stats()
    assert stats["writes"] == {"residence.register": 1}
    assert stats["replays"] == 2  # the second lost delivery and the last one


async def test_register_refusals(connector: PopulationConnector, sandbox: Sandbox) -> None:
    wrong_name = {
        **NEWBORN,
        "personal_id": LAN.personal_id,
        "birth_date": "1990-05-12",
        "full_name": "Nguyễn Thị Lam",
    }
    with pytest.raises(PermanentError) as info:
        await connector.call("residence.register", wrong_name, idempotency_key="a")
    # The WSDL's result code (it was a Client fault SAI_LECH), naming the field
    assert info.value.code == "1" and "data does not match the registry: full_name" in str(
        info.value
    )
    no_head = {**NEWBORN, "household_head_id": "040190999999"}
    with pytest.raises(PermanentError) as info:
        await connector.call("residence.register", no_head, idempotency_key="b")
    assert info.value.code == "CHU_HO"
    bad_province = {**NEWBORN, "address": {**NEWBORN["address"], "province_code": "003"}}  # type: ignore[dict-item]
    with pytest.raises(PermanentError) as info:
        await connector.call("residence.register", bad_province, idempotency_key="c")
    assert info.value.code == "MA_TINH"
    for words in ("con", "child", "CH9"):  # the relation is a code, not free words
        with pytest.raises(PermanentError) as info:
            await connector.call(
                "residence.register", {**NEWBORN, "relation": words}, idempotency_key=f"d-{words}"
            )
        assert info.value.code == "QUAN_HE"
    assert (await sandbox.stats())["writes"] == {}  # nothing of a refused one recorded


async def test_a_child_joins_its_mothers_household_under_its_head(
    connector: PopulationConnector, sandbox: Sandbox
) -> None:
    """Lan is the wife (CH02) of Minh, the head. Her newborn was recorded with Lan as its head
    and its relation in free words; it is the head's household, and the head's child."""
    child = {**NEWBORN, "household_head_id": LAN.personal_id}
    await connector.call("residence.register", child, idempotency_key="k-lan")
    record = sandbox.app[REGISTRY_KEY].people[str(NEWBORN["personal_id"])]
    assert (record.household_head, record.relation) == (MINH.personal_id, "CH03")
    assert record.household_book == MINH.household_book
    found = await connector.call(
        "citizen.lookup", {k: NEWBORN[k] for k in ("personal_id", "full_name", "birth_date")}
    )
    assert found.data["citizen"]["mother"] == {
        "full_name": LAN.full_name,
        "personal_id": LAN.personal_id,
    }


async def test_a_person_the_registry_does_not_hold_and_nothing_to_record_them_by_is_unknown(
    sandbox: Sandbox,
) -> None:
    """A newborn's record is made from the name as registered (HoVaTenKhaiSinh, with its
    diacritics: HoVaTen has none); without it, an id the registry does not hold is the WSDL's
    MaKetQua 2, and nothing is registered."""
    body = f"""<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>
<DangKyThuongTru xmlns="http://dancuquocgia.bca"><MaYeuCau>k-raw</MaYeuCau><MaDVC>1.001193</MaDVC>
<MaTichHop>DKTT</MaTichHop><MaCanBo>{OFFICER}</MaCanBo><MaDonVi>000.00.00.H41</MaDonVi>
<SoDinhDanh>040226000777</SoDinhDanh><HoVaTen>TRAN MINH KHOI</HoVaTen>
<NgayThangNamSinh><NgayThangNam>20261001</NgayThangNam></NgayThangNamSinh>
<DiaChiThuongTru><MaTinhThanh>40</MaTinhThanh><MaQuanHuyen>412</MaQuanHuyen>
<MaPhuongXa>16681</MaPhuongXa></DiaChiThuongTru></DangKyThuongTru></s:Body></s:Envelope>"""
    response = await post_raw(sandbox, body.encode())
    assert response.status_code == 200, response.text
    assert "<MaKetQua>2</MaKetQua>" in response.text.replace("ns0:", "")
    assert "040226000777" not in sandbox.app[REGISTRY_KEY].people
    assert (await sandbox.stats())["writes"] == {}


async def test_deregister_after_death(connector: PopulationConnector, sandbox: Sandbox) -> None:
    result = await connector.call("residence.deregister", DEATH, idempotency_key="d-1")
    assert result.reference and result.reference.startswith("XDKTT.40.")
    again = await connector.call("residence.deregister", DEATH, idempotency_key="d-1")
    assert again == result
    with pytest.raises(PermanentError) as info:
        await connector.call("residence.deregister", DEATH, idempotency_key="d-2")
    assert info.value.code == "DA_XOA"
    stats = await sandbox.stats()
    assert stats["writes"] == {"residence.deregister": 1} and stats["replays"] == 1


async def test_the_dead_stay_dead(connector: PopulationConnector) -> None:
    """Found by probing: after a death de-registration the citizen could be registered again
    (the de-registration undone), others could join the dead head's household, and a lookup
    still gave the old permanent address."""
    await connector.call("residence.deregister", DEATH, idempotency_key="d-1")
    found = await connector.call(
        "citizen.lookup",
        {"personal_id": HUNG.personal_id, "full_name": HUNG.full_name,
         "birth_date": HUNG.birth_date.isoformat()},
    )  # fmt: skip
    assert found.data["match"] and found.data["citizen"]["permanent_address"] is None
    # and says the registry holds them dead (SoTrichLucKhaiTu): it answered a plain match
    assert found.data["citizen"]["death_record_number"] == "KT.040.2026.000001"
    back = {
        **NEWBORN,
        "personal_id": HUNG.personal_id,
        "full_name": HUNG.full_name,
        "birth_date": HUNG.birth_date.isoformat(),
    }
    with pytest.raises(PermanentError) as info:
        await connector.call("residence.register", back, idempotency_key="back")
    assert info.value.code == "DA_CHET" and "KT.040.2026.000001" in info.value.message
    under_the_dead = {**NEWBORN, "household_head_id": HUNG.personal_id}
    with pytest.raises(PermanentError) as info:
        await connector.call("residence.register", under_the_dead, idempotency_key="under")
    assert info.value.code == "CHU_HO" and "deceased" in info.value.message


async def test_a_member_joining_a_household_is_not_its_head(connector: PopulationConnector) -> None:
    with pytest.raises(PermanentError) as info:
        await connector.call("residence.register", {**NEWBORN, "relation": "CH01"})
    assert info.value.code == "QUAN_HE"


async def test_deregister_refusals(connector: PopulationConnector, sandbox: Sandbox) -> None:
    """The WSDL's result codes, MaKetQua 1 (naming the fields) and 2: the sandbox answered Client
    faults SAI_LECH and KHONG_TON_TAI, so the connector's mapping of 1 and 2 never ran."""
    with pytest.raises(PermanentError) as info:
        await connector.call("residence.deregister", {**DEATH, "personal_id": "040042999999"})
    assert info.value.code == "2" and "no citizen with this SoDinhDanh" in str(info.value)
    with pytest.raises(PermanentError) as info:
        await connector.call(
            "residence.deregister", {**DEATH, "full_name": "Lê Văn Khác"}, idempotency_key="d-1"
        )
    assert info.value.code == "1" and "does not match the registry: full_name" in str(info.value)
    assert (await sandbox.stats())["writes"] == {}  # a refusal registers nothing
    # nor holds its key: the corrected request, under the same key, goes through
    result = await connector.call("residence.deregister", DEATH, idempotency_key="d-1")
    assert result.reference and (await sandbox.stats())["writes"] == {"residence.deregister": 1}
    with pytest.raises(PermanentError, match="death_record_number is required"):
        await connector.call("residence.deregister", {**DEATH, "death_record_number": ""})
    with pytest.raises(PermanentError, match="reason"):
        await connector.call("residence.deregister", {**DEATH, "reason": "bored"})


# --- faults -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "plan",
    [
        {"error_rate": 1.0},
        {"reset_rate": 1.0},
        {"lost_reply_rate": 1.0},
        {"malformed_rate": 1.0},
        {"outages": ((0.0, 3600.0),)},
    ],
    ids=["error", "reset", "lost_reply", "malformed", "outage"],
)
async def test_faults_are_transient(
    connector: PopulationConnector, sandbox: Sandbox, plan: dict[str, Any]
) -> None:
    sandbox.faults(**plan)
    with pytest.raises(TransientError):
        await connector.call("citizen.lookup", lookup(LAN))
    injected = sandbox.app[FAULTS_KEY].injected
    assert sum(injected.values()) == 1


async def test_timeout_is_transient(sandbox: Sandbox) -> None:
    sandbox.faults(timeout_rate=1.0)
    async with PopulationConnector(
        sandbox_endpoint(sandbox.base_url, timeout=0.2), officer_id=OFFICER
    ) as c:
        with pytest.raises(TransientError, match="timed out"):
            await c.call("citizen.lookup", lookup(LAN))


async def test_latency_still_answers(connector: PopulationConnector, sandbox: Sandbox) -> None:
    sandbox.faults(latency_ms=50)
    result = await connector.call("citizen.lookup", lookup(LAN))
    assert result.data["match"] is True


async def test_nobody_listening_is_transient() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with PopulationConnector(
        sandbox_endpoint(f"http://127.0.0.1:{port}", timeout=1.0), officer_id=OFFICER
    ) as c:
        with pytest.raises(TransientError, match="connection failed"):
            await c.call("citizen.lookup", lookup(LAN))


async def test_server_fault_is_transient(connector: PopulationConnector, sandbox: Sandbox) -> None:
    class Broken(dict[str, Any]):
        def get(self, key: str, default: Any = None) -> Any:
            raise RuntimeError("registry database unavailable")

    sandbox.app[REGISTRY_KEY].people = Broken()
    with pytest.raises(TransientError) as info:
        await connector.call("citizen.lookup", lookup(LAN))
    assert info.value.code == "INTERNAL"


async def test_http_404_is_permanent(sandbox: Sandbox) -> None:
    broken = Endpoint(url=sandbox.base_url + "/nowhere", timeout=1.0)
    async with PopulationConnector(broken, officer_id=OFFICER) as c:
        with pytest.raises(PermanentError) as info:
            await c.call("citizen.lookup", lookup(LAN))
    assert info.value.code == "http-404"


# --- the sandbox's own defences and extras -------------------------------------------------------
async def post_raw(sandbox: Sandbox, body: bytes) -> httpx.Response:
    endpoint = sandbox_endpoint(sandbox.base_url)
    headers = {**auth_headers(endpoint, endpoint.url), "Content-Type": "text/xml"}
    async with httpx.AsyncClient() as http:
        return await http.post(endpoint.url, content=body, headers=headers)


def fault_code(response: httpx.Response) -> tuple[str | None, str | None]:
    root = etree.fromstring(response.content)
    code = root.findtext(".//faultcode")
    error = next((e.text for e in root.iter() if etree.QName(e).localname == "MaLoi"), None)
    return code, error


async def test_doctype_rejected(sandbox: Sandbox) -> None:
    bomb = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;">]>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>
<TraCuuThongTinCongDan xmlns="http://dancuquocgia.bca"><MaYeuCau>&lol2;</MaYeuCau></TraCuuThongTinCongDan>
</soap:Body></soap:Envelope>"""
    response = await post_raw(sandbox, bomb)
    assert response.status_code == 500
    assert fault_code(response) == ("soap:Client", "XML_DOCTYPE")


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"<not xml", "XML_SYNTAX"),
        (b"<Envelope/>", "SOAP_ENVELOPE"),
        (
            b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body/></s:Envelope>',
            "SOAP_BODY",
        ),
        (
            b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>'
            b'<Xoa xmlns="http://dancuquocgia.bca"/></s:Body></s:Envelope>',
            "OPERATION",
        ),
    ],
)
async def test_bad_envelopes_get_client_faults(sandbox: Sandbox, body: bytes, error: str) -> None:
    response = await post_raw(sandbox, body)
    assert response.status_code == 500
    assert fault_code(response) == ("soap:Client", error)


async def test_wsdl_served_with_own_address(sandbox: Sandbox) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{sandbox.base_url}{SOAP_PATH}?wsdl")
    assert response.status_code == 200
    assert f'location="{sandbox.base_url}{SOAP_PATH}"' in response.text
    assert "http://dancuquocgia.bca" in response.text and "PROJECT'S OWN DESIGN" in response.text


async def test_stats_count_requests(connector: PopulationConnector, sandbox: Sandbox) -> None:
    for _ in range(3):
        await connector.call("citizen.lookup", lookup(LAN))
    assert await sandbox.stats() == {"requests": 3, "writes": {}, "replays": 0}


REGISTRATION_REPLY = """<?xml version="1.0"?>
<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>
<t:{op}Response xmlns:t="http://dancuquocgia.bca"><t:MaYeuCau>k1</t:MaYeuCau>
<t:MaKetQua>{code}</t:MaKetQua><t:MoTa>Không tìm thấy công dân</t:MoTa></t:{op}Response>
</s:Body></s:Envelope>"""


async def _registration_answered(operation: str, code: str) -> None:
    op, params = {
        "residence.register": ("DangKyThuongTru", NEWBORN),
        "residence.deregister": ("XoaDangKyThuongTru", DEATH),
    }[operation]

    async def answer(request: web.Request) -> web.Response:
        body = REGISTRATION_REPLY.format(op=op, code=code).encode()
        return web.Response(body=body, content_type="text/xml")

    app = web.Application()
    app.router.add_post("/soap", answer)
    async with serve_app(app) as base:
        async with PopulationConnector(
            Endpoint(url=base + "/soap"), officer_id=OFFICER
        ) as population:
            await population.call(operation, params, idempotency_key="k1")


@pytest.mark.parametrize("operation", ["residence.register", "residence.deregister"])
@pytest.mark.parametrize("code", ["1", "2"])
async def test_registration_refused_by_result_code_is_permanent(operation: str, code: str) -> None:
    with pytest.raises(PermanentError) as info:
        await _registration_answered(operation, code)
    assert info.value.code == code
    assert "Không tìm thấy công dân" in info.value.message  # the registry's MoTa is kept


@pytest.mark.parametrize("operation", ["residence.register", "residence.deregister"])
async def test_registration_unknown_result_code_is_transient(operation: str) -> None:
    with pytest.raises(TransientError, match="MaKetQua '7'"):
        await _registration_answered(operation, "7")


# --- a kept-alive connection closed under a request ----------------------------------------------
@pytest.mark.parametrize(
    ("operation", "params", "key"),
    [
        pytest.param("citizen.lookup", lookup(MINH), None, id="a-lookup"),
        pytest.param("residence.register", NEWBORN, "dossier-1:residence", id="a-write"),
    ],
)
async def test_a_call_meeting_a_kept_alive_connection_dropped_is_sent_again(
    operation: str, params: dict[str, Any], key: str | None
) -> None:
    """The registry closed the connection kept from the first lookup as the next call arrived
    (its idle timeout): the call is sent once more on a new connection, and succeeds, where it
    used to fail (a lookup's retry, or an attempt of the outbox's job, spent on nothing)."""
    app = create_app(seed=SEED, citizens=300)
    seen = dropping(app, 2)
    async with serve_app(app) as base:
        async with PopulationConnector(sandbox_endpoint(base), officer_id=OFFICER) as c:
            await c.call("citizen.lookup", lookup(LAN))
            result = await c.call(operation, params, idempotency_key=key)
        assert len(seen) == 3
        stats = app[REGISTRY_KEY].ledger.stats()
    if key is None:
        assert result.data["match"] is True
    else:
        assert stats["writes"] == {"residence.register": 1} and stats["replays"] == 0
