"""``lienthong audit verify|query|export|verify-bundle``: what auditors run.

The root CLI (``gateway.cli``) adds :data:`commands`. Exit status 0 only on success; every error is
one line on stderr (click's ``Error: …``) with exit status 1 — but a command line that cannot be
parsed (a malformed time, an empty filter, no scope or half a time range for ``export``) is a usage
error naming the option, exit status 2.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from gateway.cliopts import config_option, existing_store, json_option, open_settings, require_utf8
from gateway.gil import quick_handoffs
from gateway.settings import citizen_key
from gateway.store import Store, StoreError
from signing.files import fsync_dir, locked_part, open_private, remove_abandoned_parts

__all__ = ["audit", "commands"]


def _trust(settings: Any, extra: tuple[Path, ...]) -> Any | None:
    """Anchors from --trust, else [signing] trust, else the development PKI if one exists.
    Never creates a PKI: verifying must not have side effects."""
    from signing.errors import SigningError
    from signing.trust import TrustStore

    paths: list[Path] = list(extra)
    revocation = settings.signing.revocation
    if not paths:
        paths = [settings.path(t) for t in settings.signing.trust]
    if not paths and settings.sandboxed:
        root = settings.path(settings.sandbox.pki) / "root.pem"
        if root.exists():
            paths = [root]
    if not paths:
        return None
    try:
        return TrustStore.from_pem_files(paths, revocation=revocation)
    except SigningError as exc:
        raise click.ClickException(str(exc)) from None


def _certificates(paths: tuple[Path, ...]) -> list[Any]:
    """The first certificate of each PEM file (a leaf followed by its chain is fine)."""
    from cryptography import x509

    out = []
    for path in paths:
        try:
            out.append(x509.load_pem_x509_certificates(path.read_bytes())[0])
        except (OSError, ValueError) as exc:
            raise click.ClickException(f"--signer {path}: not a PEM certificate ({exc})") from None
    return out


def _configured_signer(settings: Any) -> list[Any] | None:
    """The configured audit key's certificate, as a list of pins; None if no key is configured."""
    from gateway.keys import audit_certificate
    from gateway.settings import SettingsError

    try:
        cert = audit_certificate(settings)
    except SettingsError as exc:
        raise click.ClickException(f"{exc} (or name the audit signer with --signer)") from None
    return None if cert is None else [cert]


def _unpinned(signers: list[dict[str, str]]) -> click.ClickException:
    who = ", ".join(f"{s['name']} [key sha256:{s['key_sha256']}]" for s in signers)
    return click.ClickException(
        f"the checkpoint signer is not pinned: the checkpoints are signed by {who}; if that is "
        "the gateway's audit key, give its certificate with --signer"
    )


signer_option = click.option(
    "--signer",
    "signer_paths",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="the gateway's audit certificate (PEM): checkpoints must be signed by its key "
    "(repeatable: keys the gateway used before)",
)


def _run(settings: Any, work: Callable[[Store], Any]) -> Any:
    # Every audit command only reads: an auditor's read-only copy of a store will do.
    store = existing_store(settings, readonly=True)

    async def main() -> Any:
        async with store:
            return await work(store)

    try:
        return asyncio.run(main())
    except StoreError as exc:
        raise click.ClickException(f"store: {exc}") from None


@click.group()
def audit() -> None:
    """Check and search the audit log; export and check evidence bundles."""


@audit.command("verify")
@config_option
@click.option(
    "--trust",
    "trust_paths",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="trust anchor PEM (default: [signing] trust)",
)
@signer_option
@json_option
def verify_cmd(
    config: Path | None,
    trust_paths: tuple[Path, ...],
    signer_paths: tuple[Path, ...],
    as_json: bool,
) -> None:
    """Verify the whole log: entries, chain, tree, checkpoint signatures and timestamps, and that
    the checkpoints are signed by the audit key ([signing] key, or --signer) under [audit] origin."""
    from .verify import CheckpointPolicy, verify_log

    settings = open_settings(config)
    trust = _trust(settings, trust_paths)
    signers = _certificates(signer_paths) if signer_paths else _configured_signer(settings)
    origin = settings.audit.origin
    policy = CheckpointPolicy.from_settings(settings.audit)
    with quick_handoffs():  # the store's readers read the next pages while this thread checks
        report = _run(
            settings,
            lambda store: verify_log(
                store, trust, signers=signers, origin=origin, policy=policy, keep_checked=as_json
            ),
        )
    if as_json:
        click.echo(json.dumps({**report.to_dict(), "trust_checked": trust is not None}, indent=2))
    else:
        click.echo(report.describe())
        for note in report.notes:
            click.echo(f"note: {note}")
        if trust is None:
            click.echo(
                "note: no trust anchors configured: checkpoint chains and timestamps "
                "were not checked"
            )
    if not report.ok:
        raise click.ClickException(" ".join(report.problems[0].split()))
    if report.signers and not report.signer_pinned:
        raise _unpinned(report.signers)


def _filter(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A filter given empty would select nothing and be ignored: everything would be answered."""
    if value is not None and not value.strip():
        raise click.BadParameter(
            "is empty: a filter must name something (leave the option out to match all)",
            ctx=ctx,
            param=param,
        )
    if value is not None:
        require_utf8(ctx, param, value)
    return value


def _citizen(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """--citizen (or its variable): an empty one would match everyone, as any empty filter."""
    if value is None and os.environ.get("LIENTHONG_AUDIT_CITIZEN") == "":
        value = ""  # click reads an empty variable as unset
    return _filter(ctx, param, value)


def _window(start: str | None, stop: str | None) -> None:
    """--from after --to selects nothing: say so, rather than that the log holds nothing.
    (Both normalised by _time to one spelling in UTC, which compares as the times do.)"""
    if start is not None and stop is not None and start >= stop:
        raise click.UsageError(f"the window is empty: --from {start} is not before --to {stop}")


def _time(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """--from / --to: an ISO 8601 time with zone, or a date (its day in Vietnam), in the log's
    spelling."""
    from .query import FilterError, normalize_time

    _filter(ctx, param, value)
    try:
        return normalize_time(value)
    except FilterError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None


_TIME_HELP = "ISO 8601 time with zone (or a date: from its 00:00 in Vietnam, +07:00)"


@audit.command("query")
@config_option
@click.option("--dossier", callback=_filter)
@click.option("--document", callback=_filter)
@click.option("--member", callback=_filter)
@click.option("--service", callback=_filter)
@click.option("--from", "start", callback=_time, help=f"{_TIME_HELP}, inclusive")
@click.option("--to", "stop", callback=_time, help=f"{_TIME_HELP}, exclusive")
@click.option(
    "--citizen",
    "personal_id",
    envvar="LIENTHONG_AUDIT_CITIZEN",
    callback=_citizen,
    help="personal id (hashed with [audit] citizen_id_key; never stored). Prefer the "
    "LIENTHONG_AUDIT_CITIZEN variable: command lines end up in shell history",
)
@click.option("--limit", default=1000, show_default=True, type=click.IntRange(1, 1000))
@click.option(
    "--cursor",
    callback=_filter,
    help="continue after the page that printed it (its 'next'); give the same filters",
)
@json_option
def query_cmd(
    config: Path | None,
    dossier: str | None,
    document: str | None,
    member: str | None,
    service: str | None,
    start: str | None,
    stop: str | None,
    personal_id: str | None,
    limit: int,
    cursor: str | None,
    as_json: bool,
) -> None:
    """Events matching every filter given, in log order, a page (--limit) at a time."""
    from gateway.exchange.hub import hub_document_id  # the hub keeps its letters' index

    from .query import EventFilter, EventPage, FilterError, query_events

    _window(start, stop)
    # Hashed with the gateway's key: a non-embedded gateway's log holds no development-key hash.
    settings = open_settings(config, needs_citizen_key=personal_id is not None)
    key = citizen_key(settings) if personal_id is not None else None
    try:
        flt = EventFilter.build(
            start=start,
            stop=stop,
            member=member,
            service=service,
            dossier=dossier,
            document=document,
            personal_id=personal_id,
            citizen_key=key,
        )
    except FilterError as exc:
        raise click.ClickException(str(exc)) from None

    async def work(store: Store) -> EventPage:
        named = replace(flt, document=await hub_document_id(store, flt.document))
        return await query_events(store, named, cursor=cursor, limit=limit)

    try:
        page = _run(settings, work)
    except FilterError as exc:  # a cursor this command never printed
        raise click.BadParameter(str(exc), param_hint="'--cursor'") from None
    if as_json:
        click.echo(
            json.dumps({"items": page.items, "next": page.next}, ensure_ascii=False, indent=1)
        )
        return
    for e in page.items:
        click.echo(
            f"{e['seq']:>8}  {e['at']}  {e['action']:<22} {e.get('outcome', 'ok'):<8} "
            f"{e.get('member') or '-'}  {e.get('dossier') or e.get('document') or '-'}"
        )
    if not page.items:
        click.echo("no event matches" + (" after this cursor" if cursor else ""))
    if page.next:
        click.echo(
            f"(more: these are {limit}; the next page: the same command with --cursor {page.next})"
        )


def _publish(out: Path, data: bytes) -> None:
    """Write ``data`` to ``out`` whole or not at all, and never over an existing file (a store, an
    earlier bundle). Written beside it first, synced, then linked into place: a full disk or a kill
    mid-write leaves no cut-off bundle under the bundle's name (one the next export would refuse to
    write over, or an auditor could take for a whole one). The owner's alone, as the store: its
    events name dossiers and hold their citizens' hashes."""
    remove_abandoned_parts(out.parent, out.name.__eq__)
    with locked_part(out) as (part, f):
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
        try:
            os.link(part, out)  # unlike a rename, refuses an existing target
        except FileExistsError:
            raise
        except OSError:
            # No hard links (a FAT-formatted stick): claim the name, then rename over the claim.
            open_private(out, "xb").close()
            os.replace(part, out)
        fsync_dir(out.parent)


@audit.command("export")
@config_option
@click.option("--dossier", callback=_filter)
@click.option("--document", callback=_filter)
@click.option("--from", "start", callback=_time, help=f"{_TIME_HELP}, inclusive")
@click.option("--to", "stop", callback=_time, help=f"{_TIME_HELP}, exclusive")
@click.argument("out", type=click.Path(dir_okay=False, writable=True, path_type=Path))
@json_option
def export_cmd(
    config: Path | None,
    dossier: str | None,
    document: str | None,
    start: str | None,
    stop: str | None,
    out: Path,
    as_json: bool,
) -> None:
    """Write the evidence bundle for a dossier, a document or a time range to OUT.zip."""
    from gateway.exchange.hub import hub_document_id  # the hub keeps its letters' index

    from .bundle import BundleError, Scope, build_bundle

    given = [o for o, v in (("--dossier", dossier), ("--document", document)) if v is not None]
    if start is not None or stop is not None:
        given.append("--from and --to")
    if len(given) != 1:
        raise click.UsageError(
            "give exactly one scope: --dossier, --document, or --from and --to"
            + (f" (given: {', '.join(given)})" if given else "")
        )
    if (start is None) != (stop is None):
        raise click.UsageError(
            f"{'--from' if start is not None else '--to'} needs "
            f"{'--to' if start is not None else '--from'}: a time range has both ends"
        )
    _window(start, stop)
    settings = open_settings(config)

    async def work(store: Store) -> bytes:
        named = await hub_document_id(store, document)
        scope = Scope(dossier=dossier, document=named, start=start, stop=stop)
        return await build_bundle(store, scope)

    try:
        data = _run(settings, work)
    except BundleError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        _publish(out, data)
    except FileExistsError:
        raise click.ClickException(f"{out} exists: a bundle is never written over a file") from None
    except OSError as exc:
        raise click.ClickException(f"cannot write {out}: {exc.strerror}") from None
    if as_json:
        click.echo(json.dumps({"path": str(out), "bytes": len(data)}))
    else:
        click.echo(f"wrote {out} ({len(data)} bytes)")


@audit.command("verify-bundle")
@click.argument("bundle", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--trust",
    "trust_paths",
    multiple=True,
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="trust anchor PEM (repeatable)",
)
@signer_option
@json_option
def verify_bundle_cmd(
    bundle: Path, trust_paths: tuple[Path, ...], signer_paths: tuple[Path, ...], as_json: bool
) -> None:
    """Check an evidence bundle offline against the given trust anchors and the gateway's audit
    certificate (--signer). Without --signer it names who signed and fails: the anchors alone
    admit any certificate issued under them."""
    from signing.errors import SigningError

    from .bundle import MAX_MEMBER, MAX_TOTAL
    from .verify import verify_bundle

    signers = _certificates(signer_paths) if signer_paths else None
    try:
        size = bundle.stat().st_size
        if size > MAX_TOTAL + MAX_MEMBER:  # a zip a little larger than all it may hold
            raise click.ClickException(
                f"{bundle}: refused unread: {size} bytes; a bundle is at most {MAX_TOTAL} once "
                "decompressed"
            )
        data = bundle.read_bytes()
    except OSError as exc:
        raise click.ClickException(f"cannot read {bundle}: {exc.strerror}") from None
    try:
        report = asyncio.run(verify_bundle(data, list(trust_paths), signers=signers))
    except SigningError as exc:
        raise click.ClickException(str(exc)) from None
    if report.anchor is None:  # no manifest read (not a zip, not a bundle): nothing to report
        raise click.ClickException(report.problems[0])
    if as_json:
        click.echo(json.dumps(report.to_dict(), ensure_ascii=False, indent=2))
    else:
        click.echo(report.describe())
        for note in report.notes:
            click.echo(f"note: {note}")
    if not report.ok:
        raise click.ClickException(report.problems[0])
    if not report.signer_pinned:
        raise _unpinned(report.signers)


commands: list[click.Command] = [audit]
