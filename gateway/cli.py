"""``lienthong``: the command line. Each package contributes its own command group; this module
assembles them and turns every expected failure into a one-line message and a non-zero exit."""

from __future__ import annotations

# First, before the imports that take a second or two: Ctrl-C meanwhile is one line, exit 130.
from gateway import clistart

# isort: split
import asyncio
import errno
import importlib
import json
import os
import socket
import ssl
import sys
from pathlib import Path
from typing import Any

import click
from aiohttp import web

from gateway.audit.checkpoints import CheckpointError
from gateway.cliopts import (
    cli_user,
    config_option,
    existing_store,
    json_option,
    open_settings,
    require_utf8,
)
from gateway.exchange.errors import ExchangeError
from gateway.settings import Settings, SettingsError
from gateway.store import StoreError
from signing.errors import SigningError

__all__ = ["LOG_LEVELS", "build_app", "main"]

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")  # what logging.setLevel takes


class _OneLineUsageError(click.UsageError):
    """A click usage error told in one line: ``Error: <command>: <reason> (see '<command> --help')``.

    Same exit code (2), same stream (stderr) as click's own four-line usage block."""

    def __init__(self, error: click.UsageError, program: str) -> None:
        ctx = error.ctx or _innermost_context(error)
        super().__init__(error.format_message(), ctx)
        self.command_path = ctx.command_path if ctx is not None else program

    def format_message(self) -> str:
        reason = " ".join(self.message.split()) or "invalid usage"
        if reason.endswith(".") and not reason.endswith(".."):
            reason = reason[:-1]
        line = f"{self.command_path}: {reason}"
        ctx = self.ctx
        if ctx is not None and ctx.command.get_help_option(ctx) is not None:
            help_name = max(ctx.command.get_help_option_names(ctx), key=len)
            line += f" (see '{self.command_path} {help_name}')"
        return " ".join(line.split())  # a command path from argv[0] may hold whitespace too

    def show(self, file: Any = None) -> None:
        color = self.ctx.color if self.ctx is not None else self.show_color
        click.echo(f"Error: {self.format_message()}", file=file, err=file is None, color=color)


def _innermost_context(error: BaseException) -> click.Context | None:
    """The context of the deepest frame ``error`` came through: click's parser raises a few usage
    errors ("Option '--state' requires an argument") without the context of the command at fault."""
    import traceback

    found = None
    for frame, _ in traceback.walk_tb(error.__traceback__):
        ctx = frame.f_locals.get("ctx")
        if isinstance(ctx, click.Context):
            found = ctx
    return found


def _writing_stdout(error: BaseException) -> bool:
    """Whether ``error`` was raised by click.echo writing to standard output."""
    import traceback

    return any(
        frame.f_code is click.utils.echo.__code__ and frame.f_locals.get("file") is sys.stdout
        for frame, _ in traceback.walk_tb(error.__traceback__)
    )


class _Lienthong(click.Group):
    """The ``lienthong`` group: every click usage error under it, at any depth, is one line.

    Only the usage error's, the interrupt's and an unwritable output's rendering change (the
    last: ``Error: <command>: cannot write the output: …``, exit 1): click's ``main`` still does
    everything else (help, ``--version``, ``sys.exit(n)``/``ctx.exit(n)``, ``Error: …`` exit 1 for
    other ClickExceptions, ``Aborted!`` for click.Abort, EPIPE, shell completion). A bare group (``lienthong``, ``lienthong outbox``) still
    prints its help, as click's NoArgsIsHelpError does."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().main(*args, **kwargs)
        except OSError as exc:
            # click's main tells a closed pipe (EPIPE) itself, silently; any other failure to
            # write the output (a full disk: ENOSPC, EIO) was a traceback.
            if not kwargs.get("standalone_mode", True) or not _writing_stdout(exc):
                raise
            sys.stdout = open(os.devnull, "w")  # else flushed again at exit, failing
            ctx = _innermost_context(exc)
            where = ctx.command_path if ctx is not None else self.name or "lienthong"
            click.echo(f"Error: {where}: cannot write the output: {exc.strerror or exc}", err=True)
            sys.exit(1)

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            if _told_as_click_does(exc):
                raise
            raise _OneLineUsageError(exc, info_name or self.name or "lienthong") from exc

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            if _told_as_click_does(exc):
                raise
            raise _OneLineUsageError(exc, ctx.command_path) from exc
        except KeyboardInterrupt as exc:
            raise _Interrupted((_innermost_context(exc) or ctx).command_path) from None


class _Interrupted(click.ClickException):
    """Ctrl-C: ``Error: <command>: interrupted``, exit 130 (128 + SIGINT, as shells report it).

    click said ``Aborted!`` after a blank line, exit 1 — the code of a command that failed, so that
    ``lienthong audit verify || alarm`` took an interrupt for an altered log. The commands that
    serve until interrupted catch it themselves and exit 0."""

    exit_code = 130

    def __init__(self, command_path: str) -> None:
        super().__init__(f"{command_path}: interrupted")

    def show(self, file: Any = None) -> None:
        if sys.stderr.isatty():  # after the terminal's ^C, not on its line
            click.echo(err=True)
        super().show(file)


def _told_as_click_does(error: click.UsageError) -> bool:
    """Already one line, or a bare group's help (NoArgsIsHelpError: help text, not a complaint)."""
    return isinstance(error, (_OneLineUsageError, click.exceptions.NoArgsIsHelpError))


@click.group(cls=_Lienthong, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="lienthong")
@click.pass_context
def main(ctx: click.Context) -> None:
    """lienthong — interoperability gateway and document-exchange hub."""
    if ctx.invoked_subcommand != "serve":  # serve logs JSON lines (--log-level)
        # pyHanko logs as a warning what it then raises (a timestamp's imprint not matching):
        # with no logging set up, Python printed each before the command's one-line error.
        from signing.cli import quiet_pyhanko

        ctx.with_resource(quiet_pyhanko())


def _tls_context(settings: Settings) -> ssl.SSLContext | None:
    g = settings.gateway
    if not g.tls_cert:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    cert, key = settings.path(g.tls_cert), settings.path(g.tls_key) if g.tls_key else None
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:  # ssl's own messages name no file ("PEM lib")
        raise SettingsError(f"[gateway] tls_cert {cert} / tls_key {key}: {exc}") from None
    if g.client_ca:
        # Optional: token clients still connect; certificate clients are verified against client_ca.
        ctx.verify_mode = ssl.CERT_OPTIONAL
        # No session tickets (TLS 1.2's, nor TLS 1.3's, by which alone 1.3 resumes): a session
        # resumed from one brings back the client's certificate without the intermediates it
        # sent, and the revocation check, run on every request (gateway.auth.ClientRevocation),
        # could not build its path to a client_ca of roots alone. TLS 1.2 still resumes from
        # the server's session cache, which keeps that chain.
        ctx.options |= ssl.OP_NO_TICKET
        ctx.num_tickets = 0
        # What client_ca holds is trusted as configured, a root or the intermediate that issues
        # the clients' certificates (OpenSSL wants a self-signed root unless told so, and every
        # handshake failed), as the revocation check takes it (its anchors are client_ca's).
        ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        from gateway.auth import report_refused_handshakes

        report_refused_handshakes(ctx)
        try:
            ctx.load_verify_locations(settings.path(g.client_ca))
        except (OSError, ssl.SSLError) as exc:
            raise SettingsError(
                f"[gateway] client_ca {settings.path(g.client_ca)}: {exc}"
            ) from None
    return ctx


def _check_listen(listen: str) -> None:
    """Bind the listen address as ``serve`` will (every address the host resolves to), and let it
    go: a host that does not resolve, an address this machine does not have, a port in use or
    one this user may not bind is refused now, naming the key, before anything is started.
    Raises SettingsError."""
    host, _, port = listen.rpartition(":")
    host = host or "127.0.0.1"
    where = f"gateway.listen: cannot listen on {listen!r}"
    try:
        found = socket.getaddrinfo(
            host, int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except (socket.gaierror, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, socket.gaierror) else str(exc)
        raise SettingsError(f"{where}: the host {host!r} does not resolve ({reason})") from None
    for family, kind, proto, _, address in found:
        with socket.socket(family, kind, proto) as probe:
            if os.name == "posix":  # as asyncio's create_server binds: a port in TIME_WAIT will do
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(address)
                probe.listen()
            except OSError as exc:
                raise SettingsError(
                    f"{where}: {exc.strerror or exc} ({address[0]!s} port {address[1]!s})"
                ) from None


def build_app(settings: Settings, **extras: Any) -> web.Application:
    """The gateway as ``serve`` runs it: keys and trust from ``[signing]`` (loaded at start)."""
    from gateway.app import create_app

    return create_app(settings, extras={"load_keys": True, **extras})


@main.command()
@config_option
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default="INFO",
    show_default=True,
)
def serve(config: Path | None, log_level: str) -> None:
    """Run the gateway."""
    from gateway.logs import configure_logging, log_banner

    settings = open_settings(config, needs_citizen_key=True)
    configure_logging(log_level)
    try:
        _check_listen(settings.gateway.listen)
        # The sandboxes' test PKI, if one is in use, answers its revocation checks, as in the demo.
        app = build_app(settings, serve_pki=True)
        host, _, port = settings.gateway.listen.rpartition(":")
        web.run_app(
            app,
            host=host or "127.0.0.1",
            port=int(port),
            ssl_context=_tls_context(settings),
            print=log_banner,
            access_log=None,
            # A client that goes away mid-request cancels its handler (aiohttp's default since
            # 3.7 is to run it to its end): a lookup is then audited "cancelled" and logged 499,
            # as aiohttp's test server, which every test runs on, has always done.
            handler_cancellation=True,
        )
    except OSError as exc:
        if exc.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL):  # taken since _check_listen
            where = f"gateway.listen: cannot listen on {settings.gateway.listen!r}"
            raise click.ClickException(f"{where}: {exc.strerror}") from None
        raise click.ClickException(str(exc)) from None
    except (SettingsError, ssl.SSLError) as exc:
        raise click.ClickException(str(exc)) from None
    except StoreError as exc:  # as the other commands say it: "store: … is not a lienthong store"
        raise click.ClickException(f"store: {exc}") from None
    except (ExchangeError, SigningError, CheckpointError) as exc:
        # What the start refuses (a store that cannot open, a blob folder that cannot be made,
        # keys that cannot be read, an audit log its checkpoints do not match): one line, with
        # what failed.
        raise click.ClickException(f"cannot start: {exc}") from None


@main.group()
def flows() -> None:
    """Inter-connected procedure flows."""


def _not_empty(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """An empty argument is a usage error (exit 2), as the README says, not "no dossier ''"."""
    if not value.strip():
        raise click.BadParameter("is empty: name the dossier to resume", ctx=ctx, param=param)
    require_utf8(ctx, param, value)
    return value


@flows.command("resume")
@click.argument("code", callback=_not_empty)
@config_option
@json_option
def flows_resume(code: str, config: Path | None, as_json: bool) -> None:
    """Resume a stopped flow at its first unfinished step (the running gateway picks it up)."""
    from gateway import dossiers
    from gateway.audit import Actor

    store = existing_store(open_settings(config))

    async def run() -> str:
        async with store:
            return await store.transact(
                lambda tx: dossiers.resume(tx, code, actor=Actor.cli(cli_user()))
            )

    try:
        step = asyncio.run(run())
    except dossiers.UnknownDossier:
        raise click.ClickException(f"no dossier {code}") from None
    except dossiers.NotCorrectable as exc:
        raise click.ClickException(str(exc)) from None
    except StoreError as exc:
        raise click.ClickException(f"store: {exc}") from None
    if as_json:
        click.echo(json.dumps({"code": code, "resumed_step": step}))
    else:
        click.echo(f"dossier {code}: resumed at step {step}")


@main.command()
@click.option(
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("demo-output"),
    show_default=True,
)
@click.option(
    "--dossiers", "count", type=click.IntRange(1, 100_000), default=200, show_default=True
)
@click.option("--seed", type=int, default=2026, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print the summary as JSON")
def demo(output: Path, count: int, seed: int, as_json: bool) -> None:
    """Run the whole story on the embedded default: sandboxes, gateway, faults, flows, audit."""
    from gateway.demo import OutputError, run_demo

    try:
        summary = asyncio.run(run_demo(output, count=count, seed=seed, quiet=as_json))
    except (SettingsError, OutputError) as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(summary, ensure_ascii=False, indent=2))
    if not summary.get("ok"):
        sys.exit(1)


# Command groups that live beside the code they drive.
for _module in (
    "signing.cli",
    "connectors.cli",
    "gateway.outbox.cli",
    "gateway.audit.cli",
    "gateway.exchange.cli",
):
    for _command in importlib.import_module(_module).commands:
        main.add_command(_command)

clistart.imported()  # every group imported: Ctrl-C is KeyboardInterrupt again (see _Interrupted)


if __name__ == "__main__":  # python -m gateway.cli
    main()
