"""The console in headless Chromium (Debian's, no `playwright install`) against the real API."""
# ruff: noqa: F811 - pytest fixtures imported from test_checkpoints / test_api are parameters here

from __future__ import annotations

import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.audit.checkpoints import Checkpointer
from gateway.store import SQLiteStore
from signing.testing import TestPKI
from tests.audit.test_api import AUDITOR, _Signing, seeded_store, serve_audit_app
from tests.audit.test_checkpoints import add_events, pki, tamper, tsa_url  # noqa: F401 - fixtures

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

            # Without a token the API is not called.
            await page.click("#events-form button[type=submit]")
            await expect(page.locator("#message")).to_contain_text("token")
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


def tamper_db(db: Path) -> None:
    import sqlite3

    conn = sqlite3.connect(db)
    with conn:
        conn.execute(
            "UPDATE audit_checkpoints SET note = replace(note, '\n33\n', '\n34\n') WHERE size = 33"
        )
    conn.close()
