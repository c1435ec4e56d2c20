"""The console in headless Chromium (Debian's, no `playwright install`) against the real API."""
# ruff: noqa: F811 - pytest fixtures imported from test_checkpoints / test_api are parameters here

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ssl
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from cryptography.hazmat.primitives import serialization

from gateway.audit import AuditEvent, append
from gateway.audit.checkpoints import Checkpointer
from gateway.settings import Subsystem
from gateway.store import SQLiteStore
from signing.testing import TestPKI, self_signed
from tests.audit.test_api import AUDITOR, _Signing, seeded_store, serve_audit_app
from tests.audit.test_checkpoints import add_events, pki, tamper, tsa_url  # noqa: F401 - fixtures

if TYPE_CHECKING:
    from playwright.async_api import Page, Request, Route

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
async def site(tmp_path: Path, pki: TestPKI, tsa_url: str) -> AsyncIterator[tuple[str, Path]]:
    path = tmp_path / "console.db"
    store = await seeded_store(path, pki, tsa_url)
    try:
        async with serve_audit_app(
            store, {"signing": _Signing(pki.trust(revocation="off"), pki.key("gateway"))}
        ) as url:
            yield url, path
    finally:
        await store.close()


async def test_console_end_to_end(
    site: tuple[str, Path], artifacts_dir: Path, tmp_path: Path
) -> None:
    from playwright.async_api import async_playwright, expect

    url, db = site
    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = await browser.new_page(accept_downloads=True)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(f"{url}/console/")
            await expect(page.locator("h1")).to_have_text("lienthong audit console")
            # Its words are English: read by a screen reader as such (it said lang="vi").
            await expect(page.locator("html")).to_have_attribute("lang", "en")

            # Without a token the API is asked all the same (a client certificate would say who
            # asks): its 401 is shown.
            await page.click("#events-form button[type=submit]")
            await expect(page.locator("#message")).to_contain_text("401")
            # A wrong token: the API's 401 is shown.
            await page.fill("#token", "wrong")
            await page.click("#token-form button")
            await page.click("#events-form button[type=submit]")
            await expect(page.locator("#message")).to_contain_text("401")

            await page.fill("#token", AUDITOR)
            await page.click("#token-form button")
            await page.fill("#events-form input[name=dossier]", "D1")
            await page.click("#events-form button[type=submit]")
            rows = page.locator("#events-table tbody tr")
            await expect(rows).to_have_count(9)
            await expect(rows.first.locator("td").nth(6)).to_have_text("D1")

            await page.click("nav button[data-tab=timeline]")
            await page.select_option("#timeline-form select", "document")
            await page.fill("#timeline-form input[name=code]", "DOC3")
            await page.click("#timeline-form button")
            await expect(page.locator("#timeline li")).to_have_count(7)

            await page.click("nav button[data-tab=citizen]")
            await page.fill("#citizen-form input[name=personal_id]", "001099012345")
            await page.click("#citizen-form button")
            await expect(page.locator("#accessors tbody tr")).to_have_count(2)
            await expect(page.locator("#accessors tbody tr").first).to_contain_text("VN:GOV:M1")

            # A mistyped id is refused, not answered "no recorded access".
            await page.fill("#citizen-form input[name=personal_id]", "00109901234")
            await page.click("#citizen-form button")
            await expect(page.locator("#message")).to_have_text(
                "422: personal_id: must be exactly 12 digits"
            )
            await expect(page.locator("#accessors tbody tr")).to_have_count(0)

            await page.click("nav button[data-tab=checkpoints]")
            await page.click("#checkpoints-load")
            cps = page.locator("#checkpoints tbody tr")
            await expect(cps).to_have_count(2)
            await expect(cps.locator("td.ok")).to_have_count(2)
            await page.screenshot(
                path=str(artifacts_dir / "audit-console-checkpoints.png"), full_page=True
            )

            # A forged checkpoint shows as FAILED, in red.
            tamper_db(db)
            await page.click("#checkpoints-load")
            await expect(cps.locator("td.bad")).to_have_count(1)
            await expect(cps.locator("td.bad")).to_contain_text("FAILED")
            await page.screenshot(
                path=str(artifacts_dir / "audit-console-forged.png"), full_page=True
            )

            await page.click("nav button[data-tab=export]")
            await page.fill("#export-form input[name=dossier]", "D3")
            async with page.expect_download() as info:
                await page.click("#export-form button")
            download = await info.value
            saved = tmp_path / "bundle.zip"
            await download.save_as(saved)
            with zipfile.ZipFile(saved) as zf:
                assert "README.txt" in zf.namelist() and "events/3.json" in zf.namelist()
            assert errors == []
        finally:
            await browser.close()


async def test_the_console_pages_through_every_checkpoint(
    tmp_path: Path, pki: TestPKI, tsa_url: str
) -> None:
    # It showed the 20 newest and ignored the API's "next": older checkpoints were out of reach.
    from playwright.async_api import async_playwright, expect

    store = SQLiteStore(tmp_path / "many.db")
    await store.open()
    checkpointer = Checkpointer(store, pki.key("gateway"), tsa_url=tsa_url)
    for i in range(23):
        await add_events(store, 1, first=i)
        assert await checkpointer.checkpoint_now() is not None
    try:
        async with (
            serve_audit_app(
                store, {"signing": _Signing(pki.trust(revocation="off"), pki.key("gateway"))}
            ) as url,
            async_playwright() as p,
        ):
            browser = await p.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
            )
            try:
                page = await browser.new_page()
                await page.goto(f"{url}/console/")
                await page.fill("#token", AUDITOR)
                await page.click("#token-form button")
                await page.click("nav button[data-tab=checkpoints]")
                await page.click("#checkpoints-load")
                cps = page.locator("#checkpoints tbody tr")
                await expect(cps).to_have_count(20)
                await expect(cps.first.locator("td").first).to_have_text("23")
                await page.click("#checkpoints-more")
                await expect(cps).to_have_count(23)
                await expect(cps.last.locator("td").first).to_have_text("1")
                await expect(cps.locator("td.ok")).to_have_count(23)
                await expect(page.locator("#checkpoints-more")).to_be_hidden()
                await page.click("#checkpoints-load")  # loading again starts from the newest
                await expect(cps).to_have_count(20)
            finally:
                await browser.close()
    finally:
        await store.close()


@contextlib.asynccontextmanager
async def console_page(
    url: str, token: str | None = AUDITOR, **context: Any
) -> AsyncIterator[Page]:
    """The console at ``url`` in a new browser, its token set (``None``: none); the test fails if
    the page raised."""
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = await (await browser.new_context(**context)).new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(f"{url}/console/")
            if token is not None:
                await page.fill("#token", token)
                await page.click("#token-form button[type=submit]")
            yield page
            assert errors == []
        finally:
            await browser.close()


class Held:
    """The first request a route sees, held until released: an answer slower than the next one
    (a busy gateway, a slow link), in the order a test chooses rather than by timing."""

    def __init__(self, page: Page) -> None:
        self.request: Request | None = None
        self._seen = asyncio.Event()
        self._release = asyncio.Event()
        self._end: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        page.on("requestfailed", lambda r: self._ended(r, "aborted"))
        page.on("requestfinished", lambda r: self._ended(r, "answered"))

    def _ended(self, request: Request, how: str) -> None:
        if request is self.request and not self._end.done():
            self._end.set_result(how)

    async def route(self, route: Route) -> None:
        from playwright.async_api import Error

        if self.request is not None:
            await route.continue_()
            return
        self.request = route.request
        self._seen.set()
        await self._release.wait()
        with contextlib.suppress(Error):  # the page has given it up meanwhile
            await route.continue_()

    async def seen(self) -> None:
        await asyncio.wait_for(self._seen.wait(), 10)

    async def release(self) -> str:
        """Let the held request go on; how it ended: ``aborted`` by the page, or ``answered``."""
        self._release.set()
        return await asyncio.wait_for(self._end, 10)


async def test_an_older_slower_answer_is_never_shown_under_a_newer_query(
    site: tuple[str, Path],
) -> None:
    # Found by probing: each tab wrote whichever answer came last, so the Citizen tab showed who
    # accessed one person's data under another person's id, and the Events tab another filter's.
    from playwright.async_api import expect

    url, _ = site
    async with console_page(url) as page:
        await page.click("nav button[data-tab=citizen]")
        held = Held(page)
        await page.route("**/v1/audit/search", held.route)
        await page.fill("#citizen-form input[name=personal_id]", "001099012345")  # 2 accessors
        await page.click("#citizen-form button")
        await held.seen()
        await page.fill("#citizen-form input[name=personal_id]", "001099012346")  # none
        await page.click("#citizen-form button")
        await expect(page.locator("#message")).to_have_text(
            "No recorded access to this citizen's data."
        )
        assert await held.release() == "aborted"
        await expect(page.locator("#accessors tbody tr")).to_have_count(0)
        await expect(page.locator("#message")).to_have_text(
            "No recorded access to this citizen's data."
        )

        await page.click("nav button[data-tab=events]")
        held = Held(page)
        await page.route("**/v1/audit/events*", held.route)
        await page.fill("#events-form input[name=dossier]", "D1")
        await page.click("#events-form button[type=submit]")
        await held.seen()
        await page.fill("#events-form input[name=dossier]", "D2")
        await page.click("#events-form button[type=submit]")
        dossiers = page.locator("#events-table tbody tr td:nth-child(7)")
        await expect(dossiers).to_have_count(8)
        assert await held.release() == "aborted"
        assert set(await dossiers.all_text_contents()) == {"D2"}


async def test_a_double_click_lists_each_entry_once(
    site: tuple[str, Path],
) -> None:
    # Found by probing: both runs of a double-clicked "Show timeline" appended to one list, which
    # then showed every event twice (two acceptances, two replays).
    from playwright.async_api import expect

    url, _ = site
    async with console_page(url) as page:
        await page.click("nav button[data-tab=timeline]")
        held = Held(page)
        await page.route("**/v1/audit/events*", held.route)
        await page.fill("#timeline-form input[name=code]", "D3")
        await page.dblclick("#timeline-form button")
        entries = page.locator("#timeline li")
        await expect(entries).to_have_count(8)
        assert await held.release() == "aborted"
        await expect(entries).to_have_count(8)


async def test_more_appends_one_page_and_a_failed_search_leaves_no_rows(tmp_path: Path) -> None:
    # Found by probing: a double-clicked More appended the same page twice; a search that failed
    # left the last one's rows and its More, which then appended the new query's rows to them.
    from playwright.async_api import expect

    store = SQLiteStore(tmp_path / "many.db")
    await store.open()
    await add_events(store, 250)
    try:
        async with serve_audit_app(store, {}) as url, console_page(url) as page:
            await page.click("#events-form button[type=submit]")
            seqs = page.locator("#events-table tbody tr td:first-child")
            await expect(seqs).to_have_count(100)
            held = Held(page)
            await page.route("**/v1/audit/events*", held.route)
            await page.dblclick("#events-more")
            await expect(seqs).to_have_count(200)
            assert await held.release() == "aborted"
            assert await seqs.all_text_contents() == [str(i) for i in range(200)]

            await page.fill("#events-form input[name=from]", "yesterday")
            await page.click("#events-form button[type=submit]")
            await expect(page.locator("#message")).to_contain_text("400: not an ISO 8601 time")
            await expect(seqs).to_have_count(0)
            await expect(page.locator("#events-more")).to_be_hidden()
    finally:
        await store.close()


async def test_an_events_detail_is_shown_as_text(tmp_path: Path) -> None:
    # Found by probing: the tabs dropped `detail`, so an auditor never saw why a job died nor
    # the operator's reason for a correction.
    from playwright.async_api import expect

    died = "the applicant does not match the population registry (full_name)"
    reason = "tên người nộp sai chính tả <b>x</b>"  # shown as typed, never as HTML
    store = SQLiteStore(tmp_path / "details.db")
    await store.open()
    for action, outcome, detail in (
        ("job.dead", "dead", died),
        ("dossier.corrected", "ok", reason),
    ):
        event = AuditEvent(action=action, outcome=outcome, dossier="D9", detail=detail)
        await store.transact(lambda tx, e=event: append(tx, e))
    try:
        async with serve_audit_app(store, {}) as url, console_page(url) as page:
            await page.fill("#events-form input[name=dossier]", "D9")
            await page.click("#events-form button[type=submit]")
            details = page.locator("#events-table tbody tr td:nth-child(8)")
            await expect(details).to_have_text([died, reason])

            await page.click("nav button[data-tab=timeline]")
            await page.fill("#timeline-form input[name=code]", "D9")
            await page.click("#timeline-form button")
            entries = page.locator("#timeline li")
            await expect(entries).to_have_count(2)
            await expect(entries.first).to_contain_text(f"job.dead (dead): {died} [#0]")
            await expect(entries.last).to_contain_text(f"dossier.corrected (ok): {reason} [#1]")
            assert await page.locator("#timeline b, #events-table b").count() == 0
    finally:
        await store.close()


async def test_an_auditor_known_by_certificate_needs_no_token(
    tmp_path: Path, pki: TestPKI, tsa_url: str
) -> None:
    # Found by probing: with mutual TLS (production) the console refused to ask the API until
    # some token was typed ("Enter the auditor token first"), which the certificate made moot.
    from playwright.async_api import expect

    cert, key = await asyncio.to_thread(self_signed, tmp_path, "console-tls", ip="127.0.0.1")
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    tls.verify_mode = ssl.CERT_OPTIONAL  # as serve does with a client_ca: tokens still work
    tls.load_verify_locations(pki.root_pem)
    agency = "agency-000.00.00.H41"
    der = pki.certificate(agency).public_bytes(serialization.Encoding.DER)
    auditors = Subsystem(
        id="VN:GOV:000.00.00.H41:kiemtoan",
        rights=("audit.read",),
        cert_fingerprint=hashlib.sha256(der).hexdigest(),
    )
    store = await seeded_store(tmp_path / "mtls.db", pki, tsa_url)
    try:
        async with serve_audit_app(store, {}, tls=tls, subsystems=(auditors,)) as url:
            client = {
                "origin": url,
                "certPath": pki.cert_path(agency),
                "keyPath": pki.key_path(agency),
            }
            async with console_page(
                url, token=None, client_certificates=[client], ignore_https_errors=True
            ) as page:
                await page.fill("#events-form input[name=dossier]", "D1")
                await page.click("#events-form button[type=submit]")
                await expect(page.locator("#events-table tbody tr")).to_have_count(9)
                await expect(page.locator("#message")).to_have_text("")
    finally:
        await store.close()


async def test_the_token_can_be_forgotten(site: tuple[str, Path]) -> None:
    # A shared workstation: the token stayed for the tab's life, with no way to clear it.
    from playwright.async_api import expect

    url, _ = site
    async with console_page(url) as page:
        await expect(page.locator("#token-state")).to_have_text("token set")
        await page.click("#token-forget")
        await expect(page.locator("#token-state")).to_have_text("no token")
        await expect(page.locator("#token-forget")).to_be_hidden()
        await page.click("#events-form button[type=submit]")  # asked without one: refused
        await expect(page.locator("#message")).to_contain_text(
            "401: present a client certificate or an Authorization: Bearer token"
        )
        await page.reload()
        await expect(page.locator("#token-state")).to_have_text("no token")


async def test_failures_outside_the_gateway_are_told_in_words(tmp_path: Path) -> None:
    # Found by probing: the browser's own words were shown ("Failed to fetch", a JSON parser's
    # "Unexpected token '<'", "String contains non ISO-8859-1 code point").
    from playwright.async_api import expect

    store = SQLiteStore(tmp_path / "words.db")
    await store.open()
    await add_events(store, 5)
    message = "#message"
    try:
        async with contextlib.AsyncExitStack() as gateway:
            url = await gateway.enter_async_context(serve_audit_app(store, {}))
            async with console_page(url, token=None) as page:
                await page.fill("#token", "mật-khẩu")  # a header carries Latin-1 only
                await page.click("#token-form button[type=submit]")
                await expect(page.locator(message)).to_have_text(
                    "A token is ASCII letters, digits and punctuation only: this one cannot be "
                    "sent."
                )
                await expect(page.locator("#token-state")).to_have_text("no token")

                async def portal(route: Route) -> None:  # a captive portal's or a proxy's page
                    await route.fulfill(status=200, content_type="text/html", body="<html>Wi-Fi")

                await page.route("**/v1/audit/events*", portal)
                await page.fill("#token", AUDITOR)
                await page.click("#token-form button[type=submit]")
                await page.click("#events-form button[type=submit]")
                await expect(page.locator(message)).to_have_text(
                    "The answer is not the gateway's (HTTP 200, text/html): is a proxy or a "
                    "portal in between?"
                )
                await page.unroute("**/v1/audit/events*")

                await gateway.aclose()  # the gateway stops
                await page.click("#events-form button[type=submit]")
                await expect(page.locator(message)).to_have_text(
                    "The gateway did not answer: is it running, and the network up?"
                )
    finally:
        await store.close()


def tamper_db(db: Path) -> None:
    import sqlite3

    conn = sqlite3.connect(db)
    with conn:
        conn.execute(
            "UPDATE audit_checkpoints SET note = replace(note, '\n33\n', '\n34\n') WHERE size = 33"
        )
    conn.close()
