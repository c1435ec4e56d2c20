"""``lienthong sandbox serve``: run the registry sandboxes on this machine until interrupted.

The root CLI (gateway/cli.py) adds :data:`commands`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import signal
import socket
from pathlib import Path
from typing import Any

import click

from connectors.faults import FaultPlan
from connectors.sandboxes import REGISTRIES, run_sandboxes
from signing.cli import listen_failure

__all__ = ["commands", "sandbox"]


@click.group()
def sandbox() -> None:
    """Emulators of the national registries (same contracts, test data, fault injection)."""


def _plans(text: str | None, names: list[str]) -> dict[str, FaultPlan]:
    """``--faults``: one plan for every registry (``{"error_rate": 0.1}``), or one per registry
    (``{"insurance": {"lost_reply_rate": 0.5}}``)."""
    if not text:
        return {}
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--faults") from None
    if not isinstance(data, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--faults")
    try:
        if data and set(data) <= set(REGISTRIES):
            strays = sorted(set(data) - set(names))
            if strays:
                raise ValueError(f"plans for registries not served: {', '.join(strays)}")
            return {name: FaultPlan.from_mapping(plan) for name, plan in data.items()}
        plan = FaultPlan.from_mapping(data)
    except (ValueError, TypeError) as exc:
        raise click.BadParameter(str(exc), param_hint="--faults") from None
    return dict.fromkeys(names, plan)


def _civil_status_keys(pki_dir: Path | None, names: list[str]) -> dict[str, Any]:
    """The register's signing key, the PKI's anchors and its gateway certificate (the one caller
    registered), so certificates are signed and requests checked as the real register does;
    without ``--pki`` all are off."""
    if pki_dir is None or "civil_status" not in names:
        return {}
    from signing.errors import SigningError
    from signing.testing import TestPKI

    try:
        pki = TestPKI.load(pki_dir)
        return {
            "signer": pki.key("register"),
            "trust": pki.trust(),
            "callers": [pki.certificate("gateway")],
        }
    except (OSError, KeyError, SigningError) as exc:
        raise click.BadParameter(f"{pki_dir}: not a test PKI ({exc})", param_hint="--pki") from None


def _taken_port(host: str, ports: range) -> int | None:
    """The first of ``ports`` another process holds on ``host`` (asked after the sandboxes that
    did start have stopped again), to name it in the error."""
    for port in ports:
        try:
            family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do
                probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return port
    return None


def _listen_error(host: str, first: int, count: int, exc: OSError) -> str:
    """One line for sandboxes that could not bind: which address, and why."""
    name = f"[{host}]" if ":" in host else host
    if isinstance(exc, socket.gaierror):
        return f"cannot listen on {name}: unknown host {host!r} ({exc.strerror})"
    if not first:
        where = f"{name} (free ports)"
    elif exc.errno == errno.EADDRINUSE and (
        taken := _taken_port(host, range(first, first + count))
    ):
        where = f"{name}:{taken}"
    else:
        where = f"{name}:{first}" + (f"-{first + count - 1}" if count > 1 else "")
    return f"cannot listen on {where}: {listen_failure(exc)}"


async def _serve(
    names: list[str],
    port: int,
    seed: int,
    plans: dict[str, FaultPlan],
    as_json: bool,
    host: str,
    options: dict[str, Any],
) -> None:
    ports = {name: port + i for i, name in enumerate(names)} if port else {}
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError):  # no signal handlers on Windows
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with run_sandboxes(
        names=names, seed=seed, faults=plans, host=host, ports=ports, **options
    ) as urls:
        if as_json:
            click.echo(json.dumps({"seed": seed, "registries": urls}))
        else:
            for name, url in urls.items():
                click.echo(f"{name:<13} {url}")
            click.echo("Ctrl-C to stop.")
        await stop.wait()


@sandbox.command()
@click.option(
    "--registry",
    "registries",
    multiple=True,
    type=click.Choice(REGISTRIES),
    help="A registry to serve (repeatable; default: all five).",
)
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="Port of the first registry, the next ones consecutive; 0: free ports.")  # fmt: skip
@click.option("--seed", type=int, default=0, show_default=True, help="Test-data seed.")
@click.option("--faults", "faults", metavar="JSON", default=None,
              help='Fault plan for all ({"error_rate": 0.1}) or per registry '
                   '({"insurance": {"lost_reply_rate": 0.5}}).')  # fmt: skip
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--json", "as_json", is_flag=True, help="Print the URLs as one JSON object.")
@click.option("--pki", "pki_dir", type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="A test PKI (lienthong pki init): civil status signs certificates with its "
                   "register key and requires requests signed by its gateway certificate.")  # fmt: skip
def serve(
    registries: tuple[str, ...],
    port: int,
    seed: int,
    faults: str | None,
    host: str,
    as_json: bool,
    pki_dir: Path | None,
) -> None:
    """Serve the sandboxes and print each registry's base URL; run until Ctrl-C."""
    names = list(dict.fromkeys(registries)) or list(REGISTRIES)
    if port and port + len(names) - 1 > 65535:
        raise click.BadParameter(
            f"{port} leaves no room for {len(names)} registries on consecutive ports "
            f"(at most {65536 - len(names)}, or 0 for free ports)",
            param_hint="--port",
        )
    plans = _plans(faults, names)
    options = _civil_status_keys(pki_dir, names)
    try:
        asyncio.run(_serve(names, port, seed, plans, as_json, host, options))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        raise click.ClickException(_listen_error(host, port, len(names), exc)) from None


commands: list[click.Command] = [sandbox]
