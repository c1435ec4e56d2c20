"""``lienthong demo``: the whole story on the embedded default, with no set-up.

It makes a test PKI, writes the ``lienthong.toml`` it runs with, starts the gateway on loopback with
the five registry sandboxes (transient faults injected), pushes a batch of birth and death dossiers,
shows an operator correcting and resuming a stopped one, waits until every dossier is done, and
prints a summary with the audit verification. Everything it made stays in ``--output``.
"""

from __future__ import annotations

import asyncio
import base64
import io
import itertools
import json
import logging
import shutil
import sqlite3
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import click
from aiohttp import web

from gateway.demo_stories import evidence_story, exchange_story
from gateway.logs import configure_logging
from gateway.outbox.jobs import depth
from gateway.samples import dossier_code, sample_dossiers
from gateway.settings import Settings, load_settings
from signing.errors import SigningError
from signing.files import open_private, write_private
from signing.testing import TestPKI, building_name, free_port

__all__ = ["make_pki", "run_demo"]

TOKEN, OPERATOR, AUDITOR = "demo-motcua-token", "demo-operator-token", "demo-auditor-token"
DONE = {"completed", "needs_attention", "failed"}

CONFIG = """\
# The configuration `lienthong demo` ran with. `lienthong serve --config {path}` runs the same gateway.
[gateway]
listen = "127.0.0.1:8080"  # for `lienthong serve`; the demo itself takes a free port

[store]
url = "sqlite:///lienthong.db"

[[subsystems]]
id = "VN:GOV:000.00.00.H41:motcua"
name = "Hệ thống một cửa điện tử tỉnh Nghệ An"
token = "{token}"
callback_secret = "demo-callback-secret"
rights = ["dossiers.submit", "lookups.citizen", "lookups.insurance-card", "lookups.enterprise"]

[[subsystems]]
id = "VN:GOV:000.00.00.H41:vanhanh"
name = "Operators"
token = "{operator}"
rights = ["admin"]

[[subsystems]]
id = "VN:GOV:000.00.00.H41:kiemtoan"
name = "Auditors"
token = "{auditor}"
rights = ["audit.read"]

[[subsystems]]
id = "VN:GOV:000.00.11.H53:vanban"
name = "Sở Tài chính Tây Ninh — văn bản điện tử"
token = "demo-stc-vanban-token"
rights = ["documents.exchange"]

[[subsystems]]
id = "VN:GOV:000.00.00.H41:vanban"
name = "UBND tỉnh Nghệ An — văn bản điện tử"
token = "demo-ubnd-vanban-token"
rights = ["documents.exchange"]

[[agencies]]
id = "000.00.11.H53"
name = "Sở Tài chính tỉnh Tây Ninh"

[[agencies]]
id = "000.00.00.H41"
name = "Ủy ban nhân dân tỉnh Nghệ An"

[outbox]
workers = 32
poll_s = 0.05
breaker_failures = 25
breaker_reset_s = 0.5

[audit]
checkpoint_every = 500
checkpoint_interval_s = 5

[sandbox]
embedded = true
seed = {seed}
pki = "pki"

{registries}
# Transient faults at the sandboxes: every dossier must still complete, none registered twice.
[sandbox.faults.population]
error_rate = 0.08
lost_reply_rate = 0.03
seed = {seed}

[sandbox.faults.civil_status]
error_rate = 0.05
reset_rate = 0.03
lost_reply_rate = 0.03
seed = {seed}

[sandbox.faults.insurance]
error_rate = 0.06
malformed_rate = 0.03
lost_reply_rate = 0.02
seed = {seed}

[sandbox.faults.portal]
error_rate = 0.1
seed = {seed}
"""

REGISTRY = """[registries.{name}]
timeout_s = 5.0
retry = {{ max_attempts = 10, base_delay_s = 0.05, max_delay_s = 1.0, jitter = 0.2 }}
"""


def _write_config(output: Path, seed: int) -> Path:
    registries = "\n".join(
        REGISTRY.format(name=n)
        for n in ("population", "civil_status", "insurance", "business", "portal")
    )
    path = output / "lienthong.toml"
    text = CONFIG.format(
        path=path, token=TOKEN, operator=OPERATOR, auditor=AUDITOR, seed=seed, registries=registries
    )
    with open_private(path, "w", encoding="utf-8") as f:  # the subsystems' tokens and secrets
        f.write(text)
    return path


class OutputError(Exception):
    """The output folder cannot be used: it holds other files, or cannot be made."""


# Everything a demo run writes in its folder: a folder holding anything else is not a demo's.
_OUTPUTS = frozenset(
    {"artifacts", "blobs", "pki", "lienthong.toml", "lienthong.log", "summary.json"}
    | {f"lienthong.db{suffix}" for suffix in ("", "-wal", "-shm", "-journal")}
)


def _clear(output: Path) -> None:
    """Empty an earlier demo's output folder; refuse a folder that holds anything else (a
    mistyped --output must not delete someone's files). A demo's folder is known by the first
    line of its lienthong.toml, written before anything else: a gateway's own folder holds the
    same names (lienthong.toml, lienthong.db, pki/) and was deleted whole. So lienthong.toml is
    deleted last: a clear that stops midway (a file this user may not delete) leaves a folder
    the next run still knows as a demo's. The folder itself is kept, and so is a link to it
    (a demo-output linked to a larger disk). Raises OutputError."""
    if not output.exists():
        return
    if not output.is_dir():
        raise OutputError(f"{output} is not a folder")
    try:
        names = [p.name for p in output.iterdir()]
    except OSError as exc:
        raise OutputError(f"cannot read {output}: {_reason(exc)}") from None
    # A PKI it was making when it was killed (SIGKILL: its own cleanup never ran) is a demo's too.
    strangers = sorted(n for n in names if n not in _OUTPUTS and not building_name("pki", n))
    if strangers:
        raise OutputError(
            f"{output} holds files a demo did not write ({', '.join(strangers[:3])}"
            f"{', …' if len(strangers) > 3 else ''}): choose another --output"
        )
    if names and not _written_by_a_demo(output / "lienthong.toml"):
        raise OutputError(
            f"{output} is not an earlier demo's output (its lienthong.toml is not the one a "
            "demo writes): choose another --output"
        )
    later = _entries_since_the_demo(output)
    if later:
        raise OutputError(
            f"{output} holds work done after its demo ({later} audit entries since: a gateway "
            "served its store): move it away, or delete it yourself, or choose another --output"
        )
    try:
        for entry in (output / name for name in sorted(names, key=_toml_last)):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, onerror=_with_path)
            else:  # a file, or a link: the link goes, never what it points to
                entry.unlink()
    except OSError as exc:
        raise OutputError(f"cannot clear {output}: {_reason(exc)}") from None


def _with_path(function: Any, path: str, excinfo: Any) -> None:
    """rmtree's failure, naming the file by its path (rmtree's own error names it alone)."""
    exc = excinfo[1]
    raise OSError(exc.errno, exc.strerror, path) from None


def _toml_last(name: str) -> bool:
    return name == "lienthong.toml"


def _reason(exc: OSError) -> str:
    """An OSError in words, with the file it is about: "Permission denied: demo/artifacts/x"."""
    why = exc.strerror or str(exc)
    return f"{why}: {exc.filename}" if exc.filename else why


def _entries_since_the_demo(output: Path) -> int:
    """How many audit entries the demo's store has past those its summary counted (work a
    gateway served over the folder since: `serve --config demo-output/lienthong.toml`), which a
    clear would delete. 0 when either cannot be read: a demo cut short wrote no summary, and
    its store is its own."""
    try:
        summary = json.loads((output / "summary.json").read_bytes())
        counted = int(summary["audit"]["entries"])
        db = sqlite3.connect(f"{(output / 'lienthong.db').resolve().as_uri()}?mode=ro", uri=True)
        try:
            (last,) = db.execute("SELECT max(seq) FROM audit_events").fetchone()
        finally:
            db.close()
    except (OSError, ValueError, KeyError, TypeError, sqlite3.Error):
        return 0
    return max(0, (last + 1 if last is not None else 0) - counted)


def _written_by_a_demo(config: Path) -> bool:
    try:
        with config.open("rb") as f:
            return f.readline().startswith(CONFIG.split("{", 1)[0].encode())
    except OSError:
        return False


def _prepare(output: Path, seed: int) -> tuple[TestPKI, Settings]:
    """A clean output folder with a fresh test PKI and the config file the demo runs with; the
    gateway's JSON log goes to ``lienthong.log`` there, so the console shows only the story."""
    _clear(output)
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot make {output}: {exc.strerror}") from None
    try:
        config = _write_config(output, seed)  # first: it marks the folder as a demo's (_clear)
        pki = make_pki(output / "pki")
        # The owner's alone, as the store: a log line can quote a registry's words.
        open_private(output / "lienthong.log", "a").close()  # the handler keeps its mode
        handler = logging.FileHandler(output / "lienthong.log", encoding="utf-8")
    except OSError as exc:  # a full disk
        raise OutputError(f"cannot write in {output}: {_reason(exc)}") from None
    except SigningError as exc:  # openssl missing
        raise OutputError(f"cannot make the test PKI in {output / 'pki'}: {exc}") from None
    configure_logging("INFO", handler)  # as serve logs: libraries at WARNING, no pyHanko
    return pki, load_settings(config, environ={})


def make_pki(folder: Path) -> TestPKI:
    """The demo's test PKI. The revocation URLs in its certificates name the port its CRLs and
    OCSP are served on: a free one, as the tests' PKIs have, not the default 8791, so that two
    demos, or a demo and the gateway of an earlier one, never meet there (the second one failed
    with a traceback)."""
    return TestPKI.create(folder, base_url=f"http://127.0.0.1:{free_port()}")


def _say(quiet: bool, message: str = "", **style: Any) -> None:
    if not quiet:
        click.secho(message, **style)


class _Client:
    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self.http, self.base = http, base

    async def call(
        self, method: str, path: str, token: str = TOKEN, body: Any = None
    ) -> tuple[int, Any]:
        async with self.http.request(
            method, self.base + path, json=body, headers={"Authorization": f"Bearer {token}"}
        ) as r:
            return r.status, (await r.json() if r.content_type.endswith("json") else await r.read())


async def _submit_all(client: _Client, dossiers: list[dict[str, Any]], quiet: bool) -> Counter[int]:
    statuses: Counter[int] = Counter()
    gate = asyncio.Semaphore(32)

    async def one(doc: dict[str, Any]) -> None:
        async with gate:
            status, _ = await client.call("POST", "/v1/dossiers", body=doc)
            statuses[status] += 1

    tasks = [asyncio.create_task(one(d)) for d in dossiers]
    with click.progressbar(
        length=len(tasks), label="submitting dossiers ", file=io.StringIO() if quiet else None
    ) as bar:
        for task in asyncio.as_completed(tasks):
            await task
            bar.update(1)
    return statuses


async def _notifications_sent(runtime: Any, within_s: float = 60.0) -> None:
    """Let the outbox send what the dossiers' last changes queued (callbacks, portal syncs and
    progress) before the summary counts it: bounded, as a registry may be down for longer."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        queued = await runtime.store.read(depth)
        if not queued["pending"] and not queued["running"]:
            return
        await asyncio.sleep(0.1)


async def _wait_all(client: _Client, codes: list[str], quiet: bool) -> dict[str, str]:
    final: dict[str, str] = {}
    deadline = time.monotonic() + 600  # a bound, not a target: a stuck flow ends the demo NOT OK
    with click.progressbar(
        length=len(codes), label="running the flows   ", file=io.StringIO() if quiet else None
    ) as bar:
        while len(final) < len(codes) and time.monotonic() < deadline:
            _status, _page = await client.call(
                "GET", "/v1/dossiers?status=completed", token=OPERATOR
            )
            pending = [c for c in codes if c not in final]
            for chunk in range(0, len(pending), 50):
                results = await asyncio.gather(
                    *(client.call("GET", f"/v1/dossiers/{c}") for c in pending[chunk : chunk + 50])
                )
                for code, (_, doc) in zip(pending[chunk : chunk + 50], results, strict=True):
                    if doc["status"] in DONE:
                        final[code] = doc["status"]
                        bar.update(1)
            if len(final) < len(codes):
                await asyncio.sleep(0.2)
    return final


def _batch_and_story(count: int, seed: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The batch's ``count`` dossiers, and the story's birth (code …-9001): the next birth of the
    same stream, so its child is none the batch registers. Drawn from a stream of its own, it
    was the batch's first birth again whenever the batch began with one, and the register
    refused the second birth of one child to one mother (the story ended needs_attention)."""
    stream = sample_dossiers(count + 100, seed=seed)  # read lazily: only up to the story's
    batch = list(itertools.islice(stream, count))
    story = next(d for d in stream if d["flow"] == "birth")
    return batch, {**story, "code": dossier_code(9001)}


async def _correction_story(client: _Client, doc: dict[str, Any], quiet: bool) -> dict[str, Any]:
    """An operator's day: a dossier stopped by a wrong name is corrected and resumed."""
    right_name = doc["applicant"]["full_name"]
    doc["applicant"]["full_name"] = right_name.replace(right_name.split()[-1], "Sai")
    code = doc["code"]
    await client.call("POST", "/v1/dossiers", body=doc)
    story: dict[str, Any] = {"code": code}
    for _ in range(600):
        _, view = await client.call("GET", f"/v1/dossiers/{code}")
        if view["status"] in DONE:
            break
        await asyncio.sleep(0.05)
    story["stopped_as"] = view["status"]
    story["reason"] = view["steps"][0].get("error")
    _say(quiet, f"\n• {code} stopped: {view['status']} — {story['reason']}", fg="yellow")
    await client.call(
        "PATCH", f"/v1/dossiers/{code}", token=OPERATOR,
        body={"reason": "tên người nộp sai chính tả", "applicant": {**doc["applicant"], "full_name": right_name}},
    )  # fmt: skip
    _status, _ = await client.call("POST", f"/v1/dossiers/{code}/resume", token=OPERATOR)
    for _ in range(1200):
        _, view = await client.call("GET", f"/v1/dossiers/{code}")
        if view["status"] in DONE:
            break
        await asyncio.sleep(0.05)
    story["after_resume"] = view["status"]
    _say(
        quiet,
        f"  operator corrected the applicant's name and resumed it → {view['status']}",
        fg="green",
    )
    return story


async def _lookups(client: _Client, seed: int) -> dict[str, Any]:
    from connectors.testdata import Population

    person = Population(seed).citizen(0)
    status, found = await client.call(
        "POST", "/v1/lookups/citizen",
        body={"personal_id": person.personal_id, "full_name": person.full_name,
              "birth_date": person.birth_date.isoformat()},
    )  # fmt: skip
    status2, wrong = await client.call(
        "POST", "/v1/lookups/citizen",
        body={"personal_id": person.personal_id, "full_name": "Trần Văn Khác",
              "birth_date": person.birth_date.isoformat()},
    )  # fmt: skip
    return {
        "citizen_match": found.get("match") if status == 200 else f"HTTP {status}",
        "citizen_wrong_name": wrong.get("mismatches") if status2 == 200 else f"HTTP {status2}",
    }


async def _sandbox_stats(http: aiohttp.ClientSession, urls: dict[str, str]) -> dict[str, Any]:
    stats: dict[str, Any] = {}
    for name, url in urls.items():
        base = url.split("/", 3)
        root = "/".join(base[:3])
        async with http.get(root + "/_sandbox/stats") as r:
            s = await r.json()
        async with http.get(root + "/_sandbox/faults") as r:
            f = await r.json()
        stats[name] = {**s, "faults_injected": f.get("injected", {})}
    return stats


async def run_demo(
    output: Path, *, count: int = 200, seed: int = 2026, quiet: bool = False
) -> dict[str, Any]:
    from gateway.app import RUNTIME
    from gateway.audit import verify_chain
    from gateway.audit.verify import verify_log
    from gateway.cli import build_app
    from gateway.store import open_store

    _say(
        quiet,
        "lienthong demo — the embedded default: SQLite store, five registry sandboxes on loopback, test PKI",
        bold=True,
    )
    pki, settings = await asyncio.to_thread(_prepare, output, seed)
    certificates: list[tuple[str, bytes]] = []

    def keep(code: str, step: Any, data: dict[str, Any]) -> None:
        if "certificate_pdf" in data and len(certificates) < 3:
            certificates.append((code, base64.b64decode(data["certificate_pdf"])))

    app = build_app(settings, on_result=keep, serve_pki=True)
    # As serve runs it: a handler whose client left is cancelled (and logged so), not run on.
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    summary: dict[str, Any] = {"ok": False}
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        runtime = app[RUNTIME]
        base = f"http://127.0.0.1:{port}"
        _say(
            quiet,
            f"gateway on {base}; sandboxes: "
            + ", ".join(f"{k} {v}" for k, v in runtime.registry_urls.items()),
        )
        async with aiohttp.ClientSession() as http:
            client = _Client(http, base)
            dossiers, story_dossier = _batch_and_story(count, seed)
            started = time.monotonic()
            submitted = await _submit_all(client, dossiers, quiet)
            final = await _wait_all(client, [d["code"] for d in dossiers], quiet)
            elapsed = time.monotonic() - started
            story = await _correction_story(client, story_dossier, quiet)
            lookups = await _lookups(client, seed)
            exchange = await exchange_story(http, base, pki, output)
            _say(quiet, f"\n• Công văn {exchange['document']}: sent {exchange['sent']}, "
                 f"statuses {exchange['statuses']}, a backwards status refused {exchange['backwards_status'][0]}", fg="green")  # fmt: skip
            evidence = await evidence_story(runtime, dossiers[0]["code"], pki.root_pem, output)
            _say(
                quiet,
                f"• evidence bundle for {dossiers[0]['code']}: {evidence['bundle_report']}",
                fg="green",
            )
            await _notifications_sent(runtime)
            sandboxes = await _sandbox_stats(http, runtime.registry_urls)
        jobs = await runtime.store.read(lambda tx: tx.all("outbox.counts"))
        signing = runtime.extras["signing"]
        calls = {
            f"{s.labels['registry']}/{s.labels['operation']}/{s.labels['outcome']}": int(s.value)
            for metric in runtime.metrics.registry_calls.collect()
            for s in metric.samples
            if s.name.endswith("_total")
        }
    finally:
        await runner.cleanup()
    # Verified as an auditor would find the store: the gateway stopped, its last checkpoint
    # (signed as it stopped) covering the whole log.
    async with open_store(settings.store.url, base=settings.base_dir, readonly=True) as store:
        chain = await verify_chain(store)
        log = await verify_log(
            store,
            signing.trust,
            signers=[signing.signer.certificate],
            origin=settings.audit.origin,
        )
    evidence.update(log=log.describe(), log_ok=log.ok, checkpoints=log.checkpoints)
    for code, pdf in certificates:
        (output / "artifacts").mkdir(exist_ok=True)
        await asyncio.to_thread(  # names, personal ids: the owner's alone, as the store
            write_private, output / "artifacts" / f"birth-certificate-{code}.pdf", pdf
        )
    outcomes = Counter(final.values())
    summary = {
        "ok": outcomes.get("completed", 0) == count
        and chain.ok
        and log.ok
        and story.get("after_resume") == "completed",
        "dossiers": count,
        "accepted": submitted.get(202, 0),
        "outcomes": dict(outcomes),
        "elapsed_s": round(elapsed, 2),
        "dossiers_per_s": round(count / elapsed, 1) if elapsed else None,
        "outbox_jobs": {r["state"]: r["n"] for r in jobs},
        "registry_calls": calls,
        "sandboxes": sandboxes,
        "correction": story,
        "lookups": lookups,
        "documents": exchange,
        "audit": {"ok": chain.ok, "entries": chain.entries, "report": chain.describe(), **evidence},
        "output": str(output),
    }
    await asyncio.to_thread(  # the official who handled the letter is named: as the store
        write_private,
        output / "summary.json",
        json.dumps(summary, ensure_ascii=False, indent=2).encode(),
    )
    if not quiet:
        _print_summary(summary)
    return summary


def _print_summary(s: dict[str, Any]) -> None:
    click.secho("\nSummary", bold=True)
    click.echo(
        f"  dossiers accepted      {s['accepted']} of {s['dossiers']} (202, stored durably before answering)"
    )
    click.echo(f"  outcomes               {s['outcomes']}")
    click.echo(
        f"  throughput             {s['dossiers_per_s']} dossiers/s end to end ({s['elapsed_s']} s)"
    )
    click.echo(f"  outbox jobs            {s['outbox_jobs']}")
    click.echo(
        "  per registry (writes performed / deliveries answered from the idempotency record / faults injected):"
    )
    for name, st in s["sandboxes"].items():
        click.echo(
            f"    {name:<13} writes {st.get('writes')} replays {st.get('replays')} faults {st.get('faults_injected')}"
        )
    retried = {k: v for k, v in s["registry_calls"].items() if not k.endswith("/ok")}
    click.echo(
        f"  failed registry calls, retried (deliveries by the outbox, lookups at once): {retried}"
    )
    click.echo(f"  lookups                {s['lookups']}")
    d = s["documents"]
    click.echo(
        f"  documents              Công văn sent {d['sent']}, duplicate {d['duplicate']}, statuses {d['statuses']}"
    )
    a = s["audit"]
    colour = "green" if a["ok"] and a["log_ok"] and a["bundle_ok"] else "red"
    click.secho(f"  audit                  {a['report']}; {a['log']}", fg=colour)
    click.secho(f"  evidence bundle        {a['bundle']}: {a['bundle_report']}", fg=colour)
    click.secho(
        f"\n{'OK' if s['ok'] else 'NOT OK'} — artefacts in {s['output']}/",
        bold=True,
        fg="green" if s["ok"] else "red",
    )
