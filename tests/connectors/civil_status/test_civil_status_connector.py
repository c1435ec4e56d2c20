"""The civil-status connector against its sandbox over real sockets, with real signatures."""

from __future__ import annotations

import base64
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import hashes

from connectors.api import PermanentError, TransientError
from connectors.civil_status import CivilStatusConnector, certificate, mapping
from connectors.civil_status import sandbox as register
from connectors.civil_status.client import WSDL
from connectors.civil_status.sandbox import REGISTRY_KEY, create_app, sandbox_endpoint
from connectors.faults import FAULTS_KEY, FaultPlan
from connectors.identifiers import check_personal_id, make_personal_id
from connectors.soap import SoapClient
from connectors.testdata import WELL_KNOWN
from signing.pdf import verify_pdf
from signing.testing import AGENCIES, TestPKI
from tests.connectors.dropping import dropping

LAN, MINH, HUNG = WELL_KNOWN[0], WELL_KNOWN[1], WELL_KNOWN[2]
BIRTH = {
    "child": {
        "full_name": "Trần Minh Khôi",
        "sex": "male",
        "birth_date": "2026-10-01",
        "birth_place": "Bệnh viện Sản Nhi Nghệ An",
    },
    "mother": {
        "full_name": LAN.full_name,
        "personal_id": LAN.personal_id,
        "birth_date": "1990-05-12",
    },
    "father": {"full_name": MINH.full_name, "personal_id": MINH.personal_id},
    "declarant": {"full_name": MINH.full_name, "personal_id": MINH.personal_id, "relation": "Cha"},
    "place": {"province_code": "040", "name": "UBND phường Trường Thi"},
}
DEATH = {
    "deceased": {
        "personal_id": HUNG.personal_id,
        "full_name": HUNG.full_name,
        "death_date": "2026-11-02",
        "death_place": "Nghệ An",
    },
    "declarant": {
        "full_name": LAN.full_name,
        "personal_id": LAN.personal_id,
        "relation": "Con dâu",
    },
}


@dataclass
class Sandbox:
    app: web.Application
    base_url: str

    def faults(self, **plan: Any) -> None:
        self.app[FAULTS_KEY].set_plan(FaultPlan(hang_s=5.0, **plan))

    async def stats(self) -> dict[str, Any]:
        async with httpx.AsyncClient() as http:
            data: dict[str, Any] = (await http.get(f"{self.base_url}/_sandbox/stats")).json()
            return data


def text_of(pdf: bytes) -> str:
    """The text of a PDF as poppler's pdftotext reads it (an independent reader)."""
    read = subprocess.run(["pdftotext", "-", "-"], input=pdf, capture_output=True, check=True)
    return read.stdout.decode("utf-8")


def pinned(pki: Any, *subjects: str) -> list[str]:
    """The SHA-256 fingerprints of ``subjects``' certificates (default: the register's), as the
    connector is told which certificates sign birth certificates."""
    return [
        pki.certificate(s).fingerprint(hashes.SHA256()).hex() for s in subjects or ("register",)
    ]


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, shutdown_timeout=0.2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


def register_app(pki: Any, *callers: str) -> web.Application:
    """The register as the real one runs: it signs certificates with its key and takes requests
    signed only by the gateways it registered (``callers``, default: the PKI's gateway)."""
    return create_app(
        seed=3,
        signer=pki.key("register"),
        trust=pki.trust(),
        callers=[pki.certificate(name) for name in callers or ("gateway",)],
    )


@pytest.fixture
async def sandbox(pki: Any, pki_server: str) -> AsyncIterator[Sandbox]:
    # The register signs certificates with its key and requires signed requests.
    runner, url = await serve(register_app(pki))
    try:
        yield Sandbox(runner.app, url)
    finally:
        await runner.cleanup()


@pytest.fixture
async def connector(sandbox: Sandbox, pki: Any) -> AsyncIterator[CivilStatusConnector]:
    endpoint = sandbox_endpoint(sandbox.base_url, timeout=5.0, sign_requests=True)
    async with CivilStatusConnector(
        endpoint, signer=pki.key("gateway"), trust=pki.trust(), register_fingerprints=pinned(pki)
    ) as c:
        yield c


async def test_birth_register_issues_id_and_signed_certificate(
    connector: CivilStatusConnector, sandbox: Sandbox, pki: Any
) -> None:
    result = await connector.call("birth.register", BIRTH, idempotency_key="birth-1")
    data = result.data
    pid = check_personal_id(data["personal_id"])
    assert (pid.province_code, pid.sex, pid.birth_year) == ("040", "male", 2026)
    assert result.reference == data["registration_number"] and data[
        "registration_number"
    ].startswith("KS.040.")
    assert data["book"] and data["page"] and data["registered_at"].endswith("+07:00")
    pdf = base64.b64decode(data["certificate_pdf"])
    assert pdf.startswith(b"%PDF-") and f"Số định danh cá nhân: {data['personal_id']}" in text_of(
        pdf
    )
    assert data["certificate_signer"]
    reports = await verify_pdf(pdf, pki.trust())  # independently of the connector
    assert [r.valid for r in reports] == [True] and reports[0].level.startswith("PAdES")
    assert await sandbox.stats() == {"requests": 1, "writes": {"birth.register": 1}, "replays": 0}


async def test_a_certificate_whose_revocation_cannot_be_had_is_asked_for_again(pki: Any) -> None:
    """Hard-fail, and no CRL or OCSP server answers (none runs): the birth certificate cannot be
    verified yet, a transient failure (the registry gives the same certificate back on a retry),
    not a refused signature. Told by the refusal's kind, not by its text."""
    runner, url = await serve(register_app(pki))
    try:
        endpoint = sandbox_endpoint(url, timeout=5.0, sign_requests=True)
        trust = pki.trust(revocation="hard-fail")
        async with CivilStatusConnector(
            endpoint, signer=pki.key("gateway"), trust=trust, register_fingerprints=pinned(pki)
        ) as c:
            with pytest.raises(TransientError, match="not yet verifiable: revocation status"):
                await c.call("birth.register", BIRTH, idempotency_key="birth-unknown")
    finally:
        await runner.cleanup()


async def test_a_refused_certificate_names_the_registration_it_came_with(
    sandbox: Sandbox, pki: Any, tmp_path: Path
) -> None:
    """The gateway refuses the certificate's signature after the register registered the birth
    (its trust anchors miss the register's CA): the refusal says which registration it was."""
    stranger = TestPKI.create(tmp_path / "other", base_url="http://127.0.0.1:9")
    endpoint = sandbox_endpoint(sandbox.base_url, timeout=5.0, sign_requests=True)
    signer, trust = pki.key("gateway"), stranger.trust()
    async with CivilStatusConnector(
        endpoint, signer=signer, trust=trust, register_fingerprints=pinned(pki)
    ) as c:
        with pytest.raises(PermanentError) as refused:
            await c.call("birth.register", BIRTH, idempotency_key="birth-refused")
    assert refused.value.code == "signature-invalid"
    assert refused.value.recorded and refused.value.recorded.startswith("KS.040."), refused.value
    assert (await sandbox.stats())["writes"] == {"birth.register": 1}


async def test_the_certificate_says_the_names_as_registered_and_the_relation(
    connector: CivilStatusConnector,
) -> None:
    """Found by probing: certificates were set in Helvetica without diacritics, so twins
    "Nguyễn Ngọc Anh" and "Nguyễn Ngọc Ánh", two registrations, read the same on their signed
    certificates, and the declarant's relation README says is written on it was not."""
    said = []
    for name in ("Nguyễn Ngọc Anh", "Nguyễn Ngọc Ánh"):
        twin = {**BIRTH, "child": {**BIRTH["child"], "full_name": name, "sex": "female"}}
        result = await connector.call("birth.register", twin, idempotency_key=name)
        said.append(text_of(base64.b64decode(result.data["certificate_pdf"])))
        assert f"Họ, chữ đệm, tên: {name}\n" in said[-1]
        assert f"Số định danh cá nhân: {result.data['personal_id']}\n" in said[-1]
    assert f"Người đi khai sinh: {MINH.full_name}\n" in said[0]
    assert "Quan hệ với người được khai sinh: Cha\n" in said[0]
    assert "Nơi sinh: Bệnh viện Sản Nhi Nghệ An\n" in said[0]
    assert said[0].startswith("GIẤY KHAI SINH (bản chính điện tử)\n")


def test_without_the_font_a_certificate_is_still_written(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A machine without Debian's fonts-dejavu-core still registers births: the certificate
    falls back to plain Latin letters (the sandbox must not fail every birth for a font)."""
    monkeypatch.setattr(certificate, "FONT_PATH", tmp_path / "DejaVuSans.ttf")
    certificate._font.cache_clear()
    try:
        pdf = certificate.certificate_pdf("GIẤY KHAI SINH", [("Họ, chữ đệm, tên", "Đỗ Ngọc Ánh")])
    finally:
        certificate._font.cache_clear()
    assert text_of(pdf).startswith("GIAY KHAI SINH\nHo, chu dem, ten: Do Ngoc Anh\n")


async def test_female_and_undetermined_children(connector: CivilStatusConnector) -> None:
    girl = {**BIRTH, "child": {**BIRTH["child"], "full_name": "Trần Thị Ngọc Ánh", "sex": "female"}}
    result = await connector.call("birth.register", girl, idempotency_key="g")
    assert check_personal_id(result.data["personal_id"]).sex == "female"
    other = {**BIRTH, "child": {**BIRTH["child"], "sex": "undetermined"}}
    result = await connector.call("birth.register", other, idempotency_key="u")
    assert len(result.data["personal_id"]) == 12


async def test_birth_same_key_registers_once_even_with_lost_reply(
    connector: CivilStatusConnector, sandbox: Sandbox
) -> None:
    sandbox.faults(lost_reply_rate=1.0)
    with pytest.raises(TransientError):
        await connector.call("birth.register", BIRTH, idempotency_key="birth-lost")
    sandbox.faults()
    first = await connector.call("birth.register", BIRTH, idempotency_key="birth-lost")
    second = await connector.call("birth.register", BIRTH, idempotency_key="birth-lost")
    assert first == second  # same id, same number, same certificate bytes
    stats = await sandbox.stats()
    assert stats["writes"] == {"birth.register": 1} and stats["replays"] == 2


async def test_the_same_birth_under_another_key_is_refused_as_registered(
    connector: CivilStatusConnector, sandbox: Sandbox
) -> None:
    """A one-stop system that lost a 202 and filed the birth again under a new code got two
    birth certificates and two personal ids for one child; twins are two children."""
    first = await connector.call("birth.register", BIRTH, idempotency_key="birth-a")
    again = {**BIRTH, "child": {**BIRTH["child"], "full_name": BIRTH["child"]["full_name"].upper()}}
    with pytest.raises(PermanentError) as info:
        await connector.call("birth.register", again, idempotency_key="birth-b")
    assert info.value.code == "DA_DANG_KY" and first.reference in str(info.value)
    twin = {**BIRTH, "child": {**BIRTH["child"], "full_name": "Nguyễn Minh Ánh"}}
    assert (await connector.call("birth.register", twin, idempotency_key="birth-c")).reference
    assert (await sandbox.stats())["writes"] == {"birth.register": 2}


async def test_death_register(connector: CivilStatusConnector, sandbox: Sandbox) -> None:
    result = await connector.call("death.register", DEATH, idempotency_key="death-1")
    assert result.reference == result.data["death_record_number"]
    assert result.data["death_record_number"].startswith("KT.040.")
    assert await connector.call("death.register", DEATH, idempotency_key="death-1") == result
    with pytest.raises(PermanentError) as info:
        await connector.call("death.register", DEATH, idempotency_key="death-2")
    assert info.value.code == "DA_DANG_KY"
    assert (await sandbox.stats())["writes"] == {"death.register": 1}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({**BIRTH, "child": {**BIRTH["child"], "birth_date": "2999-01-01"}}, "in the future"),
        ({**BIRTH, "child": {**BIRTH["child"], "sex": "boy"}}, "child.sex"),
        ({**BIRTH, "mother": {**BIRTH["mother"], "personal_id": "123"}}, "mother.personal_id"),
        (
            {**BIRTH, "mother": {**BIRTH["mother"], "birth_date": "1991-05-12"}},
            "encodes birth year 1990",
        ),
        ({k: v for k, v in BIRTH.items() if k != "declarant"}, "declarant must be an object"),
        ({**BIRTH, "place": {"province_code": "003"}}, "unknown province code"),
    ],
)
async def test_bad_birth_params_are_permanent(
    connector: CivilStatusConnector, sandbox: Sandbox, params: dict[str, Any], message: str
) -> None:
    with pytest.raises(PermanentError, match=message):
        await connector.call("birth.register", params)
    assert (await sandbox.stats())["requests"] == 0


async def test_register_refuses_a_mother_younger_than_the_child(
    connector: CivilStatusConnector,
) -> None:
    child = {
        **BIRTH,
        "mother": {"full_name": "Huỳnh Ngọc Ánh", "personal_id": WELL_KNOWN[9].personal_id},
    }
    child["child"] = {**BIRTH["child"], "birth_date": "2021-01-01"}
    with pytest.raises(PermanentError) as info:
        await connector.call("birth.register", child)
    assert info.value.code == "SAI_LECH"


async def _post_raw(url: str, operation: str, fields: dict[str, Any]) -> bytes:
    """``operation`` with ``fields`` as the connector's WSDL builds it, posted unsigned."""
    async with SoapClient("civil_status", sandbox_endpoint(url), WSDL) as soap:
        body = soap.build(operation, fields)
    async with httpx.AsyncClient() as http:
        response = await http.post(sandbox_endpoint(url).url, content=body)
    return response.content


@pytest.mark.parametrize(
    ("operation", "build", "params", "last_field"),
    [
        ("DangKyKhaiSinh", mapping.birth_request, BIRTH, "nksNoiSinh"),
        ("DangKyKhaiTu", mapping.death_request, DEATH, "nktNoiChet"),
    ],
    ids=["birth", "death"],
)
async def test_a_request_refused_for_a_missing_field_registers_nothing(
    operation: str, build: Any, params: dict[str, Any], last_field: str
) -> None:
    """Found by probing: the register recorded the birth before reading nksNoiSinh, so the
    request it refused (THIEU_TRUONG: "fix it") had taken a number and a personal id, and the
    corrected request, under the same maYeuCau or another, was refused DA_DANG_KY for ever."""
    fields = build(params, "key-1", agency_id="000.00.00.H40", province_code="040",
                   today=date(2026, 11, 20))  # fmt: skip
    runner, url = await serve(create_app(seed=3))
    try:
        refused = await _post_raw(url, operation, {**fields, last_field: " "})
        assert b"THIEU_TRUONG" in refused and last_field.encode() in refused
        for key in ("key-1", "key-2"):  # the corrected request, then the same under another key
            answer = await _post_raw(url, operation, {**fields, "maYeuCau": key})
            if key == "key-1":
                assert b"<maKetQua>0</maKetQua>" in answer, answer[:600]
            else:
                assert b"DA_DANG_KY" in answer  # a second registration stays refused
        registry = runner.app[REGISTRY_KEY]
        assert len(registry.births) + len(registry.deaths) == 1
    finally:
        await runner.cleanup()


async def test_a_birth_whose_certificate_failed_registers_on_the_retry(
    connector: CivilStatusConnector, sandbox: Sandbox
) -> None:
    """Found by probing: the register recorded the birth, then failed making its certificate
    (soap:Server: "retry"); the retry under the same maYeuCau was refused DA_DANG_KY, a birth
    registered whose number and child id nobody learnt."""
    failures = [OSError("disk full while storing the certificate")]

    def fail_once(pdf: bytes) -> bytes:
        if failures:
            raise failures.pop()
        return pdf

    registry = sandbox.app[REGISTRY_KEY]
    registry.after_signing = fail_once
    with pytest.raises(TransientError, match="internal error"):
        await connector.call("birth.register", BIRTH, idempotency_key="birth-retried")
    assert registry.births == {} and registry.issued == set()
    result = await connector.call("birth.register", BIRTH, idempotency_key="birth-retried")
    assert registry.births == {next(iter(registry.births)): result.reference}
    assert registry.issued == {result.data["personal_id"]}
    assert (await sandbox.stats())["writes"] == {"birth.register": 1}


# --- signatures ---------------------------------------------------------------------------------
async def test_tampered_certificate_is_refused(
    connector: CivilStatusConnector, sandbox: Sandbox
) -> None:
    def tamper(pdf: bytes) -> bytes:
        return pdf.replace(b"/MediaBox [ 0 0 595 842 ]", b"/MediaBox [ 0 0 595 841 ]", 1)

    sandbox.app[REGISTRY_KEY].after_signing = tamper
    with pytest.raises(PermanentError) as info:
        await connector.call("birth.register", BIRTH, idempotency_key="t")
    assert info.value.code == "signature-invalid"
    assert "birth certificate" in info.value.message


@pytest.mark.parametrize("signer", [AGENCIES[1], "gateway"])
async def test_a_certificate_signed_by_another_than_the_register_is_refused(
    pki: Any, pki_server: str, signer: str
) -> None:
    """Found by probing: a birth certificate signed by any key under the trust anchors (another
    agency's, the gateway's own) was taken as the register's, its signer named in
    ``certificate_signer``. Whatever answers at the register's url (a proxy, a misrouted
    endpoint) could certify a birth."""
    app = create_app(
        seed=3, signer=pki.key(signer), trust=pki.trust(), callers=[pki.certificate("gateway")]
    )
    runner, url = await serve(app)
    try:
        endpoint = sandbox_endpoint(url, timeout=5.0, sign_requests=True)
        async with CivilStatusConnector(
            endpoint,
            signer=pki.key("gateway"),
            trust=pki.trust(),
            register_fingerprints=pinned(pki),
        ) as c:
            with pytest.raises(PermanentError) as refused:
                await c.call("birth.register", BIRTH, idempotency_key="birth-not-the-register")
    finally:
        await runner.cleanup()
    assert refused.value.code == "signature-invalid"
    assert f"signed by {signer}, not by the civil-status register" in refused.value.message
    registered = runner.app[REGISTRY_KEY].births
    assert refused.value.recorded == next(iter(registered.values()))


async def test_any_of_the_registers_pinned_certificates_signs(pki: Any, pki_server: str) -> None:
    """A register renewing its certificate: the old and the new are both pinned for a while
    (fingerprints as an operator copies them, in capitals and with colons, are the same)."""
    runner, url = await serve(register_app(pki))
    try:
        endpoint = sandbox_endpoint(url, timeout=5.0, sign_requests=True)
        shown = [":".join(f[i : i + 2] for i in range(0, 64, 2)).upper() for f in pinned(pki)]
        async with CivilStatusConnector(
            endpoint,
            signer=pki.key("gateway"),
            trust=pki.trust(),
            register_fingerprints=[*pinned(pki, "gateway"), *shown],
        ) as c:
            result = await c.call("birth.register", BIRTH, idempotency_key="birth-renewed")
    finally:
        await runner.cleanup()
    assert result.data["certificate_signer"] == "register"


def test_a_connector_that_verifies_certificates_needs_the_registers_certificate(
    pki: Any,
) -> None:
    with pytest.raises(ValueError, match="register_fingerprints"):
        CivilStatusConnector(sandbox_endpoint("http://127.0.0.1:1"), trust=pki.trust())
    with pytest.raises(ValueError, match="not a SHA-256 fingerprint"):
        CivilStatusConnector(
            sandbox_endpoint("http://127.0.0.1:1"), trust=pki.trust(), register_fingerprints=["ab"]
        )


async def test_the_registers_certificate_of_another_birth_is_a_malformed_reply(
    connector: CivilStatusConnector, sandbox: Sandbox
) -> None:
    """Found by probing: nothing tied the signed certificate to the registration it came with.
    A genuine certificate of one child, handed back with another's registration, was filed as
    that child's. It must show the reply's registration number and personal id."""
    first = await connector.call("birth.register", BIRTH, idempotency_key="birth-first")
    theirs = base64.b64decode(first.data["certificate_pdf"])
    sandbox.app[REGISTRY_KEY].after_signing = lambda pdf: theirs
    twin = {**BIRTH, "child": {**BIRTH["child"], "full_name": "Trần Minh Khang"}}
    with pytest.raises(TransientError, match="malformed reply") as caught:
        await connector.call("birth.register", twin, idempotency_key="birth-second")
    second = next(n for n in sandbox.app[REGISTRY_KEY].births.values() if n != first.reference)
    assert f"does not show registration number {second}" in str(caught.value)
    assert caught.value.recorded == second


async def test_a_certificate_showing_another_childs_personal_id_is_a_malformed_reply(
    connector: CivilStatusConnector, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = register._certificate

    async def for_another_child(reg: Any, asked: Any, number: str, *rest: Any) -> bytes:
        book, child_id, now = rest
        other = make_personal_id("040", "male", 2026, (int(child_id[-6:]) + 1) % 1_000_000)
        return await made(reg, asked, number, book, other, now)

    monkeypatch.setattr(register, "_certificate", for_another_child)
    with pytest.raises(TransientError, match="malformed reply") as caught:
        await connector.call("birth.register", BIRTH, idempotency_key="birth-other-id")
    assert "does not show the personal id the register answered" in str(caught.value)
    assert caught.value.recorded == next(iter(sandbox.app[REGISTRY_KEY].births.values()))


async def test_certificate_from_an_untrusted_register_is_refused(pki: Any, pki_server: str) -> None:
    runner, url = await serve(create_app(signer=pki.key("revoked")))
    try:
        async with CivilStatusConnector(
            sandbox_endpoint(url), trust=pki.trust(), register_fingerprints=pinned(pki, "revoked")
        ) as c:
            with pytest.raises(PermanentError) as info:
                await c.call("birth.register", BIRTH)
        assert info.value.code == "signature-invalid" and "revoked" in info.value.message
    finally:
        await runner.cleanup()


async def test_unsigned_certificate_is_refused_when_trust_is_configured(pki: Any) -> None:
    runner, url = await serve(create_app())
    try:
        async with CivilStatusConnector(
            sandbox_endpoint(url), trust=pki.trust(), register_fingerprints=pinned(pki)
        ) as c:
            with pytest.raises(PermanentError, match="no signature"):
                await c.call("birth.register", BIRTH)
        other = {**BIRTH, "child": {**BIRTH["child"], "full_name": "Trần Minh Khang"}}
        async with CivilStatusConnector(sandbox_endpoint(url)) as c:  # no trust: passed on as is
            result = await c.call("birth.register", other)
        assert result.data["certificate_signer"] is None
    finally:
        await runner.cleanup()


async def test_unsigned_request_refused_by_the_register(sandbox: Sandbox, pki: Any) -> None:
    async with CivilStatusConnector(
        sandbox_endpoint(sandbox.base_url), trust=pki.trust(), register_fingerprints=pinned(pki)
    ) as c:
        with pytest.raises(PermanentError) as info:
            await c.call("death.register", DEATH)
    assert info.value.code == "CHU_KY" and "must be signed" in info.value.message


async def test_request_signed_by_an_untrusted_key_refused(sandbox: Sandbox, pki: Any) -> None:
    endpoint = sandbox_endpoint(sandbox.base_url, sign_requests=True)
    async with CivilStatusConnector(
        endpoint, signer=pki.key("revoked"), trust=pki.trust(), register_fingerprints=pinned(pki)
    ) as c:
        with pytest.raises(PermanentError) as info:
            await c.call("death.register", DEATH)
    assert info.value.code == "CHU_KY" and "revoked" in info.value.message
    assert (await sandbox.stats())["writes"] == {}


@pytest.mark.parametrize(
    ("signer", "callers", "says"),
    [
        (AGENCIES[1], ("gateway",), f"signed by {AGENCIES[1]}, not a gateway registered"),
        ("weak-rsa1024", ("gateway", "weak-rsa1024"), "1024-bit key is too weak to sign"),
    ],
    ids=["another-agency", "rsa-1024"],
)
async def test_the_register_takes_requests_from_its_registered_gateways_only(
    pki: Any, pki_server: str, signer: str, callers: tuple[str, ...], says: str
) -> None:
    """Found by probing: any certificate that chained to the root was a caller (another
    agency's), and an RSA-1024 key signed as well as any (the norm: 2048 bits at least)."""
    runner, url = await serve(register_app(pki, *callers))
    try:
        endpoint = sandbox_endpoint(url, sign_requests=True)
        async with CivilStatusConnector(endpoint, signer=pki.key(signer)) as c:
            with pytest.raises(PermanentError) as info:
                await c.call("death.register", DEATH)
        assert info.value.code == "CHU_KY" and says in info.value.message
        assert runner.app[REGISTRY_KEY].deaths == {}
    finally:
        await runner.cleanup()


def test_a_register_that_checks_signatures_needs_its_callers(pki: Any) -> None:
    with pytest.raises(ValueError, match="needs its callers' certificates"):
        create_app(signer=pki.key("register"), trust=pki.trust())


async def test_request_altered_after_signing_refused(sandbox: Sandbox, pki: Any) -> None:
    endpoint = sandbox_endpoint(sandbox.base_url, sign_requests=True)
    async with CivilStatusConnector(
        endpoint, signer=pki.key("gateway"), trust=pki.trust(), register_fingerprints=pinned(pki)
    ) as c:
        original = c._sign

        async def sign_then_alter(envelope: bytes) -> bytes:
            signed = await original(envelope)
            return signed.replace(b"Con d\xc3\xa2u", b"Con trai")

        c._sign = sign_then_alter  # type: ignore[method-assign]
        with pytest.raises(PermanentError) as info:
            await c.call("death.register", DEATH)
    assert info.value.code == "CHU_KY"


def test_sign_requests_without_a_signer_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="needs a signer"):
        CivilStatusConnector(sandbox_endpoint("http://127.0.0.1:1", sign_requests=True))


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
    connector: CivilStatusConnector, sandbox: Sandbox, plan: dict[str, Any]
) -> None:
    sandbox.faults(**plan)
    with pytest.raises(TransientError):
        await connector.call("death.register", DEATH)


async def test_timeout_is_transient(sandbox: Sandbox, pki: Any) -> None:
    sandbox.faults(timeout_rate=1.0)
    endpoint = sandbox_endpoint(sandbox.base_url, timeout=0.3, sign_requests=True)
    async with CivilStatusConnector(endpoint, signer=pki.key("gateway")) as c:
        with pytest.raises(TransientError, match="timed out"):
            await c.call("death.register", DEATH)


async def test_latency_still_answers(connector: CivilStatusConnector, sandbox: Sandbox) -> None:
    sandbox.faults(latency_ms=30)
    result = await connector.call("death.register", DEATH)
    assert result.reference


async def test_doctype_rejected(sandbox: Sandbox) -> None:
    body = b'<!DOCTYPE x [<!ENTITY e "e">]><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"/>'
    async with httpx.AsyncClient() as http:
        response = await http.post(sandbox_endpoint(sandbox.base_url).url, content=body)
    assert response.status_code == 500 and b"XML_DOCTYPE" in response.content


async def test_wsdl_served(sandbox: Sandbox) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.get(sandbox_endpoint(sandbox.base_url).url + "?wsdl")
    assert "DangKyKhaiSinh" in response.text and sandbox.base_url in response.text


@pytest.mark.parametrize(
    ("days_after", "registration_type"),
    [(0, "1"), (15, "1"), (16, "4"), (400, "4")],  # on time within 15 days (art. 33), then late
)
def test_death_registration_type_follows_the_deadline(
    days_after: int, registration_type: str
) -> None:
    died = date(2026, 11, 2)
    fields = mapping.death_request(
        DEATH,
        "r-1",
        agency_id="000.00.00.H40",
        province_code="040",
        today=died + timedelta(days=days_after),
    )
    assert fields["loaiDangKy"] == registration_type


@pytest.mark.parametrize(
    ("days_after", "registration_type"),
    [(0, "1"), (60, "1"), (61, "4")],  # on time within 60 days (art. 15), then late
)
def test_birth_registration_type_follows_the_deadline(
    days_after: int, registration_type: str
) -> None:
    born = date(2026, 10, 1)
    fields = mapping.birth_request(
        BIRTH,
        "r-1",
        agency_id="000.00.00.H40",
        province_code="040",
        today=born + timedelta(days=days_after),
    )
    assert fields["loaiDangKy"] == registration_type


@pytest.mark.parametrize("operation", ["birth", "death"])
def test_lateness_is_judged_on_the_declaration_day_so_a_retry_sends_the_same_request(
    operation: str,
) -> None:
    """Judged on the day of the call, a registration declared on its last on-time day and
    retried after midnight (a lost reply) became "late": another request under the same key,
    which the register refuses for ever, though it had registered the first."""
    build, params, event, limit = (
        (mapping.birth_request, BIRTH, date(2026, 10, 1), 60)
        if operation == "birth"
        else (mapping.death_request, DEATH, date(2026, 11, 2), 15)
    )
    if operation == "death":
        params = {**params, "deceased": {**params["deceased"], "death_date": event.isoformat()}}
    declared = event + timedelta(days=limit)  # the last day on time
    sent = [
        build(
            {**params, "declared_on": declared.isoformat()},
            "key-1",
            agency_id="000.00.00.H40",
            province_code="040",
            today=declared + timedelta(days=later),
        )
        for later in (0, 1, 30)
    ]
    assert sent[0]["loaiDangKy"] == "1" and sent[0] == sent[1] == sent[2]
    with pytest.raises(ValueError, match="before the event it declares"):
        build(
            {**params, "declared_on": (event - timedelta(days=1)).isoformat()},
            "key-1",
            agency_id="000.00.00.H40",
            province_code="040",
            today=declared,
        )


@pytest.mark.parametrize(
    ("relation", "on_the_wire"),
    [("mother", "Mẹ"), ("child", "Con"), (" Father ", "Cha"), ("Con dâu", "Con dâu")],
)
def test_the_declarants_relation_goes_in_the_registers_words(
    relation: str, on_the_wire: str
) -> None:
    """The API's defaults ("mother", "child") went to the register in English."""
    params = {**BIRTH, "declarant": {**BIRTH["declarant"], "relation": relation}}  # type: ignore[dict-item]
    fields = mapping.birth_request(
        params, "r-1", agency_id="000.00.00.H40", province_code="040", today=date(2026, 10, 2)
    )
    assert fields["nycQuanHe"] == on_the_wire


@pytest.mark.parametrize(
    ("issued", "says"),
    [
        ("026226123456", "nksSoDinhDanh 026226123456 is of province 026; the birth was registered"),
        ("040326123456", "nksSoDinhDanh 040326123456 is a female's; the child is male"),
        ("040092123456", "encodes birth year 1992, but the date of birth is 2026-10-01"),
    ],
    ids=["another-province", "another-sex", "another-year"],
)
async def test_a_personal_id_that_cannot_be_the_childs_is_a_malformed_reply(
    connector: CivilStatusConnector, sandbox: Sandbox, issued: str, says: str
) -> None:
    """Found by probing: the id the register answered was checked for its shape alone. One that
    cannot be the child's was filed as the child's and the birth, which cannot be undone, marked
    done; the flow then died at the residence, where no correction helps. A malformed reply is
    asked again (the register answers a repeated request from its idempotency record)."""
    sandbox.app[REGISTRY_KEY].child_id = lambda *args: issued  # type: ignore[method-assign]
    with pytest.raises(TransientError, match="malformed reply") as caught:
        await connector.call("birth.register", BIRTH, idempotency_key="birth-wrong-id")
    assert says in str(caught.value)


async def test_a_signed_write_meeting_a_kept_alive_connection_dropped_is_sent_again(
    pki: Any, pki_server: str
) -> None:
    """The register closed the connection kept from the death registration as the birth's request
    arrived (its idle timeout): the same signed envelope, under the same maYeuCau, is sent once
    more on a new connection and registered once, where the step used to spend an attempt."""
    app = register_app(pki)
    seen = dropping(app, 2)
    runner, url = await serve(app)
    try:
        endpoint = sandbox_endpoint(url, timeout=5.0, sign_requests=True)
        async with CivilStatusConnector(
            endpoint,
            signer=pki.key("gateway"),
            trust=pki.trust(),
            register_fingerprints=pinned(pki),
        ) as c:
            await c.call("death.register", DEATH, idempotency_key="death-1")
            born = await c.call("birth.register", BIRTH, idempotency_key="birth-1")
        assert born.data["personal_id"]
        assert len(seen) == 3
        stats = runner.app[REGISTRY_KEY].ledger.stats()
        assert stats["writes"] == {"death.register": 1, "birth.register": 1}
        assert stats["replays"] == 0
    finally:
        await runner.cleanup()
