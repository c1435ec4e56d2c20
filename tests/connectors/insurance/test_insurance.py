"""The BHXH connector against its sandbox, over real sockets."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date
from typing import Any

import aiohttp
import pytest

from connectors.api import Endpoint, PermanentError, TransientError, Verdict
from connectors.identifiers import VIETNAM
from connectors.insurance.client import InsuranceConnector
from connectors.insurance.mapping import CARD_CODES, funeral_body
from connectors.insurance.sandbox import (
    PASSWORD,
    SANDBOX_OFFICER,
    USERNAME,
    create_app,
    endpoint,
    scenarios,
)
from connectors.sandboxes import serve_app
from connectors.testdata import Population
from tests.connectors.dropping import dropping

SEED = 3
TODAY = date(2026, 11, 22)
SCENARIOS = scenarios(SEED)
NEWBORN = {
    "personal_id": "040326001234",  # Nghệ An, girl born in 2026
    "full_name": "Trần Ngọc Ánh",
    "birth_date": "2026-11-15",
    "sex": "female",
    "province_code": "040",
}
FUNERAL = {
    "personal_id": "040042100222",
    "full_name": "Lê Văn Hùng",
    "death_date": "2026-11-20",
    "death_record_number": "KT-2026-000123",
    "beneficiary": {"full_name": "Lê Thị Hoa", "personal_id": "040170012345"},
}


@pytest.fixture
async def url() -> AsyncIterator[str]:
    async with serve_app(create_app(seed=SEED, today=TODAY)) as base:
        yield base


async def admin(base: str, path: str, method: str = "GET") -> Any:
    async with aiohttp.ClientSession() as session, session.request(method, base + path) as r:
        return await r.json()


def test_scenarios_cover_every_code() -> None:
    assert set(SCENARIOS) == set(CARD_CODES)
    assert scenarios(SEED) == SCENARIOS


@pytest.mark.parametrize("code", sorted(set(CARD_CODES) - {"100", "101", "205"}))
async def test_every_card_code(url: str, code: str) -> None:
    async with InsuranceConnector(endpoint(url), **SANDBOX_OFFICER) as bhxh:
        result = await bhxh.call("card.check", SCENARIOS[code], request_id=f"r-{code}")
    data = result.data
    assert data["code"] == code
    assert data["status"] == CARD_CODES[code].status
    assert CARD_CODES[code].english in data["message"]
    assert CARD_CODES[code].vietnamese in data["message"]


async def test_valid_card_fields(url: str) -> None:
    holder = Population(SEED).citizen(0)
    async with InsuranceConnector(endpoint(url), **SANDBOX_OFFICER) as bhxh:
        data = (await bhxh.call("card.check", SCENARIOS["000"])).data
    assert data["status"] == "valid"
    assert data["card_number"] == holder.health_card_number
    assert data["full_name"] == holder.full_name
    assert data["birth_date"] == holder.birth_date.isoformat()
    assert data["sex"] == holder.sex
    assert data["address"] == holder.permanent_address.detail
    assert data["valid_from"] == "2026-01-01" and data["valid_to"] == "2026-12-31"
    assert data["clinic"].startswith(holder.health_card_number[3:5])
    assert data["agency"].startswith("BHXH ")


async def test_expired_card_dates(url: str) -> None:
    async with InsuranceConnector(endpoint(url), **SANDBOX_OFFICER) as bhxh:
        data = (await bhxh.call("card.check", SCENARIOS["010"])).data
    assert (data["valid_from"], data["valid_to"]) == ("2025-01-01", "2025-12-31")


async def test_a_sandbox_running_into_a_new_year_renews_its_year_cards() -> None:
    """Found by probing: the cards were made once, valid through 31 December of the year the
    sandbox started, and checked against the date of each request: on 2 January almost every
    adult card was answered 010 expired. The registry's clock is moved across New Year."""
    day = [date(2026, 12, 31)]
    async with (
        serve_app(create_app(seed=SEED, clock=lambda: day[0])) as url,
        InsuranceConnector(endpoint(url), **SANDBOX_OFFICER) as bhxh,
    ):
        before = (await bhxh.call("card.check", SCENARIOS["000"])).data
        day[0] = date(2027, 1, 2)
        after = (await bhxh.call("card.check", SCENARIOS["000"])).data
        expired = (await bhxh.call("card.check", SCENARIOS["010"])).data
    assert (before["status"], before["valid_to"]) == ("valid", "2026-12-31")
    assert (after["status"], after["valid_from"], after["valid_to"]) == (
        "valid",
        "2027-01-01",
        "2027-12-31",
    )
    assert (expired["code"], expired["valid_to"]) == ("010", "2026-12-31")


async def test_name_is_compared_without_diacritics(url: str) -> None:
    params = {**SCENARIOS["000"], "full_name": SCENARIOS["000"]["full_name"].upper()}
    async with InsuranceConnector(endpoint(url), **SANDBOX_OFFICER) as bhxh:
        assert (await bhxh.call("card.check", params)).data["code"] == "000"


async def test_birth_year_alone(url: str) -> None:
    params = {**SCENARIOS["000"], "birth_date": SCENARIOS["000"]["birth_date"][:4]}
    async with InsuranceConnector(endpoint(url), **SANDBOX_OFFICER) as bhxh:
        data = (await bhxh.call("card.check", params)).data
    assert data["code"] == "000"


@pytest.mark.parametrize("code", ["100", "101"])
async def test_registry_errors_are_transient(url: str, code: str) -> None:
    async with InsuranceConnector(endpoint(url), **SANDBOX_OFFICER) as bhxh:
        with pytest.raises(TransientError) as caught:
            await bhxh.call("card.check", SCENARIOS[code])
    assert caught.value.code == code


async def test_missing_field_is_permanent(url: str) -> None:
    async with InsuranceConnector(endpoint(url), **SANDBOX_OFFICER) as bhxh:
        with pytest.raises(PermanentError) as caught:
            await bhxh.call("card.check", SCENARIOS["205"])
    assert caught.value.code == "205"


@pytest.mark.parametrize(
    ("officer", "says"),
    [
        ({"full_name": "Trần Văn Minh", "personal_id": ""}, ""),
        ({"full_name": "lienthong", "personal_id": SANDBOX_OFFICER["officer_id"]}, "hoTenCb"),
        (
            {"full_name": "Trần Văn Minh", "personal_id": "VN:GOV:000.00.00.H41:lienthong"},
            "cccdCb",
        ),
    ],
    ids=["no-cccdCb", "account-name", "x-road-id"],
)
async def test_a_card_check_must_name_a_person_as_the_officer(
    url: str, officer: dict[str, str], says: str
) -> None:
    """Found by probing: the embedded gateway sent its account name as hoTenCb and an empty
    cccdCb (the BHXH body names both, spec §3), and the sandbox answered the card anyway."""
    async with InsuranceConnector(endpoint(url), **SANDBOX_OFFICER) as bhxh:
        with pytest.raises(PermanentError) as caught:
            await bhxh.call("card.check", {**SCENARIOS["000"], "officer": officer})
    assert caught.value.code == "205" and says in caught.value.message


async def test_the_connector_names_no_officer_of_its_own(url: str) -> None:
    """The account's username is not a person: without an officer the registry refuses."""
    async with InsuranceConnector(endpoint(url)) as bhxh:
        with pytest.raises(PermanentError) as caught:
            await bhxh.call("card.check", SCENARIOS["000"])
    assert caught.value.code == "205"


@pytest.mark.parametrize(
    "params",
    [
        {"full_name": "Nguyễn Thị Lan", "birth_date": "1990-05-12"},
        {"card_number": "DN4404000456765", "full_name": "", "birth_date": "1990-05-12"},
        {"card_number": "DN4404000456765", "full_name": "Lan", "birth_date": "12/05/1990"},
    ],
)
async def test_bad_params_are_refused_before_sending(url: str, params: dict[str, Any]) -> None:
    async with InsuranceConnector(endpoint(url), **SANDBOX_OFFICER) as bhxh:
        with pytest.raises(PermanentError) as caught:
            await bhxh.call("card.check", params)
    assert caught.value.code == "invalid-params"
    assert (await admin(url, "/_sandbox/stats"))["requests"] == 0


async def test_token_is_cached(url: str) -> None:
    async with InsuranceConnector(endpoint(url), **SANDBOX_OFFICER) as bhxh:
        for _ in range(3):
            await bhxh.call("card.check", SCENARIOS["000"])
    assert bhxh.tokens_taken == 1
    assert (await admin(url, "/_sandbox/tokens"))["issued"] == 1


async def test_token_refreshed_on_expiry_by_the_clock(url: str) -> None:
    now = [1000.0]
    async with InsuranceConnector(endpoint(url), clock=lambda: now[0], **SANDBOX_OFFICER) as bhxh:
        await bhxh.call("card.check", SCENARIOS["000"])
        now[0] += 3500  # a one-hour token, still well within its life
        await bhxh.call("card.check", SCENARIOS["000"])
        assert bhxh.tokens_taken == 1
        now[0] += 75  # within the renewal margin (the last 30 s): renew before it expires
        await bhxh.call("card.check", SCENARIOS["000"])
        assert bhxh.tokens_taken == 2
        await bhxh.call("card.check", SCENARIOS["000"])
    assert bhxh.tokens_taken == 2
    # Renewed before expiry: the registry never had to refuse a token (2 takes + 4 checks).
    assert (await admin(url, "/_sandbox/stats"))["requests"] == 6
    assert (await admin(url, "/_sandbox/tokens"))["issued"] == 2


async def test_token_refreshed_once_on_401(url: str) -> None:
    async with InsuranceConnector(endpoint(url), **SANDBOX_OFFICER) as bhxh:
        await bhxh.call("card.check", SCENARIOS["000"])
        await admin(url, "/_sandbox/tokens/expire", "POST")
        result = await bhxh.call("card.check", SCENARIOS["000"])
    assert result.data["code"] == "000"
    assert bhxh.tokens_taken == 2
    # token, check, refused check, token, check
    assert (await admin(url, "/_sandbox/stats"))["requests"] == 5


async def test_fresh_token_refused_again_is_permanent() -> None:
    # Tokens that expire as they are issued: the one retry cannot help.
    async with (
        serve_app(create_app(seed=SEED, today=TODAY, token_ttl=-1)) as url,
        InsuranceConnector(endpoint(url), **SANDBOX_OFFICER) as bhxh,
    ):
        with pytest.raises(PermanentError) as caught:
            await bhxh.call("card.check", SCENARIOS["000"])
        stats = await admin(url, "/_sandbox/stats")
    assert caught.value.code == "http-401"
    assert bhxh.tokens_taken == 2 and stats["requests"] == 4


async def test_wrong_credentials(url: str) -> None:
    wrong = Endpoint(url=url, username=USERNAME, password="x" + PASSWORD)
    async with InsuranceConnector(wrong) as bhxh:
        with pytest.raises(PermanentError) as caught:
            await bhxh.call("card.check", SCENARIOS["000"])
    assert caught.value.code == "http-401"


async def test_newborn_card(url: str) -> None:
    async with InsuranceConnector(endpoint(url), **SANDBOX_OFFICER) as bhxh:
        issued = await bhxh.call("card.issue_newborn", NEWBORN, idempotency_key="nb-1")
        card = issued.data["card_number"]
        check = await bhxh.call(
            "card.check",
            {"card_number": card, "full_name": NEWBORN["full_name"], "birth_date": "2026-11-15"},
        )
    assert issued.reference == card
    assert card.startswith("TE140") and len(card) == 15
    assert issued.data["valid_from"] == "2026-11-15"
    # Turns 6 on 15 Nov 2032, after 30 September: the card ends the day before.
    assert issued.data["valid_to"] == "2032-11-14"
    assert check.data["status"] == "valid" and check.data["sex"] == "female"
    assert (await admin(url, "/_sandbox/stats"))["writes"] == {"card.issue_newborn": 1}


async def test_newborn_card_runs_to_september_for_an_early_birthday(url: str) -> None:
    params = {**NEWBORN, "birth_date": "2026-03-02", "personal_id": "040326001235"}
    async with InsuranceConnector(endpoint(url), **SANDBOX_OFFICER) as bhxh:
        issued = await bhxh.call("card.issue_newborn", params, idempotency_key="nb-2")
    assert issued.data["valid_to"] == "2032-09-30"


async def test_newborn_same_child_other_key_is_not_a_second_card(url: str) -> None:
    async with InsuranceConnector(endpoint(url), **SANDBOX_OFFICER) as bhxh:
        first = await bhxh.call("card.issue_newborn", NEWBORN, idempotency_key="a")
        second = await bhxh.call("card.issue_newborn", NEWBORN, idempotency_key="b")
    assert first.reference == second.reference
    stats = await admin(url, "/_sandbox/stats")
    assert stats["writes"] == {"card.issue_newborn": 1} and stats["replays"] == 0


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"birth_date": "2019-01-01", "personal_id": "040319001234"}, "207"),
        ({"personal_id": "040219001234"}, "206"),  # encodes 2019, born 2026
        ({"province_code": "003"}, "206"),
        ({"birth_date": "2026-12-30"}, "206"),  # in the future
    ],
)
async def test_newborn_refusals(url: str, change: dict[str, Any], code: str) -> None:
    async with InsuranceConnector(endpoint(url), **SANDBOX_OFFICER) as bhxh:
        with pytest.raises(PermanentError) as caught:
            await bhxh.call("card.issue_newborn", {**NEWBORN, **change}, idempotency_key="x")
    assert caught.value.code == code
    assert (await admin(url, "/_sandbox/stats"))["writes"] == {}


async def test_funeral_allowance(url: str) -> None:
    async with InsuranceConnector(endpoint(url), **SANDBOX_OFFICER) as bhxh:
        paid = await bhxh.call("funeral.pay", FUNERAL, idempotency_key="f-1")
        again = await bhxh.call("funeral.pay", FUNERAL, idempotency_key="f-2")
        older = await bhxh.call(
            "funeral.pay",
            {**FUNERAL, "personal_id": "040045100333", "death_date": "2024-01-10"},
            idempotency_key="f-3",
        )
    assert paid.reference and paid.data == {"reference": paid.reference, "amount": 23_400_000}
    assert again.reference == paid.reference
    assert older.data["amount"] == 18_000_000
    assert (await admin(url, "/_sandbox/stats"))["writes"] == {"funeral.pay": 2}


async def test_funeral_refusals(url: str) -> None:
    same = {**FUNERAL, "beneficiary": {"full_name": "X", "personal_id": FUNERAL["personal_id"]}}
    async with InsuranceConnector(endpoint(url), **SANDBOX_OFFICER) as bhxh:
        with pytest.raises(PermanentError) as not_eligible:
            await bhxh.call("funeral.pay", same, idempotency_key="x")
        with pytest.raises(PermanentError) as invalid:
            await bhxh.call("funeral.pay", {**FUNERAL, "death_date": "2027-01-01"})
        with pytest.raises(PermanentError) as params:
            await bhxh.call("funeral.pay", {**FUNERAL, "beneficiary": None})
    assert (not_eligible.value.code, invalid.value.code) == ("207", "206")
    assert params.value.code == "invalid-params"
    # The beneficiary being the deceased is the request's data, which an operator corrects: a
    # 207, and no verdict on eligibility.
    assert not isinstance(not_eligible.value, Verdict)
    assert "the beneficiary cannot be the deceased" in str(not_eligible.value)


async def test_a_funeral_allowance_the_deceased_is_not_eligible_for_is_a_verdict(url: str) -> None:
    """BHXH answers 207 both for its verdict (the deceased was never insured: a child) and for
    data it cannot pay on; maLyDo tells them apart, and only the verdict is one the gateway may
    end a flow on. Nothing is paid, and the same request is refused the same way again."""
    child = {**FUNERAL, "personal_id": "040215012345", "death_date": "2026-11-20"}
    async with InsuranceConnector(endpoint(url), **SANDBOX_OFFICER) as bhxh:
        refusals = []
        for key in ("v-1", "v-2"):
            with pytest.raises(Verdict) as caught:
                await bhxh.call("funeral.pay", child, idempotency_key=key)
            refusals.append(caught.value)
    assert [(v.code, v.reason) for v in refusals] == [
        ("207", "Không đủ điều kiện hưởng: "
                "the deceased never contributed to social insurance nor drew a pension")
    ] * 2  # fmt: skip
    assert "not eligible" in str(refusals[0])
    assert (await admin(url, "/_sandbox/stats"))["writes"] == {}


async def set_faults(url: str, plan: dict[str, Any]) -> None:
    async with aiohttp.ClientSession() as session:
        reply = await session.put(f"{url}/_sandbox/faults", json=plan)
        assert reply.status == 200


async def test_newborn_under_lost_reply_registers_once() -> None:
    async with serve_app(create_app(seed=SEED, today=TODAY)) as url:
        async with InsuranceConnector(endpoint(url), **SANDBOX_OFFICER) as bhxh:
            # Take the token before the fault is armed: the token exchange would meet it too.
            await bhxh.call("card.check", SCENARIOS["000"])
            await set_faults(url, {"lost_reply_rate": 1.0})
            for _ in range(3):
                with pytest.raises(TransientError):
                    await bhxh.call("card.issue_newborn", NEWBORN, idempotency_key="nb")
            await set_faults(url, {})
            issued = await bhxh.call("card.issue_newborn", NEWBORN, idempotency_key="nb")
        stats = await admin(url, "/_sandbox/stats")
    assert issued.data["card_number"].startswith("TE140")
    # The first delivery registered; its answer lost on the connection kept from the card check,
    # the client sent it once more on a new one (nothing of a reply had come back, and its key
    # makes it safe): a replay, lost too. The two retries (new connections, not sent twice) and
    # the last one were replays as well.
    assert stats["writes"] == {"card.issue_newborn": 1}
    assert stats["replays"] == 4


async def test_funeral_under_lost_reply_pays_once() -> None:
    async with serve_app(create_app(seed=SEED, today=TODAY)) as url:
        async with InsuranceConnector(endpoint(url), **SANDBOX_OFFICER) as bhxh:
            await bhxh.call("card.check", SCENARIOS["000"])
            await set_faults(url, {"lost_reply_rate": 1.0})
            with pytest.raises(TransientError):
                await bhxh.call("funeral.pay", FUNERAL, idempotency_key="f")
            await set_faults(url, {})
            paid = await bhxh.call("funeral.pay", FUNERAL, idempotency_key="f")
        stats = await admin(url, "/_sandbox/stats")
    assert paid.data["amount"] == 23_400_000
    # The lost delivery was sent once more by the client (a kept-alive connection dropped before
    # any reply; the key makes it safe): a replay; the last delivery another.
    assert stats["writes"] == {"funeral.pay": 1} and stats["replays"] == 2


def _fake_bhxh(card_answer: dict[str, Any]) -> aiohttp.web.Application:
    """A BHXH that gives a token and answers every card check with ``card_answer``."""
    from aiohttp import web

    async def token(request: web.Request) -> web.Response:
        return web.json_response(
            {"maKetQua": "200", "APIKey": {"access_token": "t", "id_token": "i"}}
        )

    async def check(request: web.Request) -> web.Response:
        return web.json_response(card_answer)

    app = web.Application()
    app.router.add_post("/api/token/take", token)
    app.router.add_post("/api/egw/KQNhanLichSuKCB2024", check)
    return app


async def test_valid_said_of_no_card_is_a_malformed_reply() -> None:
    asked = SCENARIOS["000"]
    answer = {"maKetQua": "000"}
    async with serve_app(_fake_bhxh(answer)) as base, InsuranceConnector(endpoint(base)) as bhxh:
        with pytest.raises(TransientError, match=r"malformed reply: card .* said valid") as caught:
            await bhxh.call("card.check", asked)
    assert str(asked["card_number"]).upper() in str(caught.value)


@pytest.mark.parametrize("code", sorted(CARD_CODES))
async def test_an_answer_about_another_card_is_a_malformed_reply(code: str) -> None:
    """Found by probing: only a "valid" (000) was checked against the card asked; an expired,
    revoked or reduced card (010, 110, 120 …) of another number was reported as the one asked,
    and a 100/101 about it did not count against the registry."""
    asked = SCENARIOS["000"]
    answer = {"maKetQua": code, "maThe": "DN4790000000001", "hoTen": "Khác"}
    async with serve_app(_fake_bhxh(answer)) as base, InsuranceConnector(endpoint(base)) as bhxh:
        with pytest.raises(TransientError, match="malformed reply: card DN4790000000001") as caught:
            await bhxh.call("card.check", asked)
    assert str(asked["card_number"]).upper() in str(caught.value)
    assert not caught.value.answered  # a registry fault: its breaker counts it


async def test_the_card_answered_is_compared_as_the_request_sends_it() -> None:
    asked = SCENARIOS["010"]
    number = str(asked["card_number"]).upper()
    spaced = f"{number[:2]} {number[2]} {number[3:5]} {number[5:]}".lower()  # XX Y ZZ NNNNNNNNNN
    answer = {"maKetQua": "010", "maThe": spaced}
    async with serve_app(_fake_bhxh(answer)) as base, InsuranceConnector(endpoint(base)) as bhxh:
        assert (await bhxh.call("card.check", asked)).data["status"] == "expired"


async def test_the_registry_sex_is_read_in_any_unicode_form() -> None:
    import unicodedata

    asked = SCENARIOS["000"]
    answer = {
        "maKetQua": "000",
        "maThe": str(asked["card_number"]).upper(),
        "gioiTinh": unicodedata.normalize("NFD", "Nữ"),
    }
    async with serve_app(_fake_bhxh(answer)) as base, InsuranceConnector(endpoint(base)) as bhxh:
        assert (await bhxh.call("card.check", asked)).data["sex"] == "female"


async def test_an_unknown_code_keeps_the_registrys_note() -> None:
    answer = {"maKetQua": "999", "ghiChu": "Hệ thống bảo trì"}
    async with serve_app(_fake_bhxh(answer)) as base, InsuranceConnector(endpoint(base)) as bhxh:
        with pytest.raises(TransientError, match="unknown result code '999': Hệ thống bảo trì"):
            await bhxh.call("card.check", SCENARIOS["000"])


@pytest.mark.parametrize(
    ("operation", "params"), [("funeral.pay", FUNERAL), ("card.issue_newborn", NEWBORN)]
)
@pytest.mark.parametrize("code", ["100", "101"])
async def test_a_write_answered_ask_again_later_does_not_open_the_registrys_circuit(
    operation: str, params: dict[str, Any], code: str
) -> None:
    """Found by probing: a card check's 100/101 was an answer, a write's "no answer": one
    deceased whose record has a data error (101), retried, opened the breaker that card lookups
    and every other funeral and newborn-card step share, while BHXH was up."""
    from aiohttp import web

    from gateway.outbox.breaker import CircuitBreaker, call_registry

    async def ask_again(request: web.Request) -> web.Response:
        return web.json_response({"maKetQua": code})

    app = _fake_bhxh({"maKetQua": "000"})
    for path in ("/api/egw/TroCapMaiTang", "/api/egw/CapTheTreEm"):
        app.router.add_post(path, ask_again)
    breaker = CircuitBreaker("insurance", failure_threshold=2)
    async with serve_app(app) as base, InsuranceConnector(endpoint(base)) as bhxh:
        for _ in range(3):
            with pytest.raises(TransientError) as caught:
                await call_registry(
                    breaker, operation, lambda: bhxh.call(operation, params), metrics=None
                )
            assert caught.value.code == code and caught.value.answered
    assert (breaker.state, breaker.failures) == ("closed", 0)


def test_the_sandbox_knows_what_day_it_is_after_midnight(monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by probing: its date was read once, at start; a sandbox that had run past midnight
    refused a death of the new day as "impossible date" (206) — after the death was registered
    and the residence de-registered, which use the live clock."""
    from datetime import datetime, timedelta

    from connectors.insurance import sandbox

    registry = sandbox.Registry(SEED)  # started now, no date given: it follows the clock
    tomorrow = datetime.now(VIETNAM) + timedelta(days=1)

    class Tomorrow(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
            return tomorrow

    monkeypatch.setattr(sandbox, "datetime", Tomorrow)
    died = {**funeral_body(FUNERAL), "ngayChet": tomorrow.strftime("%d/%m/%Y")}
    status, reply, outcome = registry.pay_funeral(died)
    assert (status, reply["maKetQua"], outcome) == (200, "000", "written"), reply


async def test_a_card_check_meeting_a_kept_alive_connection_dropped_is_sent_again() -> None:
    """A card check is a read sent as POST: the registry closing the kept-alive connection as it
    arrived (its idle timeout) costs it nothing but a new connection."""
    app = create_app(seed=SEED, today=TODAY)
    seen = dropping(app, 3)  # the token, a check, then the next check's connection drops
    async with serve_app(app) as url:
        async with InsuranceConnector(endpoint(url), **SANDBOX_OFFICER) as bhxh:
            await bhxh.call("card.check", SCENARIOS["000"])
            checked = await bhxh.call("card.check", SCENARIOS["010"])
    assert checked.data["code"] == "010"
    assert seen == ["/api/token/take"] + ["/api/egw/KQNhanLichSuKCB2024"] * 3


async def test_a_token_take_meeting_a_kept_alive_connection_dropped_is_not_sent_again() -> None:
    """A take issues a credential under no idempotency key: not known safe to repeat, it fails
    as before (a transient error, the caller's retry)."""
    app = create_app(seed=SEED, today=TODAY)
    seen = dropping(app, 4)  # the token, a check, a check refused (expired), the take drops
    async with serve_app(app) as url:
        async with InsuranceConnector(endpoint(url), **SANDBOX_OFFICER) as bhxh:
            await bhxh.call("card.check", SCENARIOS["000"])
            await admin(url, "/_sandbox/tokens/expire", method="POST")
            with pytest.raises(TransientError, match="connection failed"):
                await bhxh.call("card.check", SCENARIOS["000"])
    check = "/api/egw/KQNhanLichSuKCB2024"
    assert seen == ["/api/token/take", check, check, "/api/token/take"]
