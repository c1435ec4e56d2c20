"""What the command groups share: the --config and --json options, settings and an existing store.

Kept apart from :mod:`gateway.cli` (which imports every group) so the groups can use it without
importing the root command.
"""

from __future__ import annotations

import getpass
from pathlib import Path

import click

from gateway.settings import Settings, SettingsError, load_settings
from gateway.store import Store, open_store

__all__ = [
    "cli_user",
    "config_option",
    "existing_store",
    "json_option",
    "open_settings",
    "require_utf8",
]

config_option = click.option(
    "--config",
    "config",
    envvar="LIENTHONG_CONFIG",
    type=click.Path(dir_okay=False, path_type=Path),
    help="lienthong.toml (or $LIENTHONG_CONFIG)",
)
json_option = click.option("--json", "as_json", is_flag=True, help="machine-readable output")


def require_utf8(ctx: click.Context, param: click.Parameter, value: str) -> None:
    """Refuse (BadParameter: exit 2) a name given in bytes that are not UTF-8: Python hands them
    over as surrogates, which no store can take (they were a UnicodeEncodeError's traceback once
    the store was opened), and which no name in the store holds. File names are not checked this
    way: a file may be named in any bytes."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        shown = value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        raise click.BadParameter(
            f"'{shown}' is not UTF-8 text (bytes of the command line that are not UTF-8)",
            ctx=ctx,
            param=param,
        ) from None


def cli_user() -> str:
    """The login name an operator's command is audited under (``cli:<name>``)."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name in some containers
        return "unknown"


def open_settings(config: Path | None, *, needs_citizen_key: bool = False) -> Settings:
    """Settings for a command; a bad config becomes a one-line error (exit 1).
    ``needs_citizen_key``: the command hashes personal ids (see load_settings)."""
    try:
        return load_settings(config, needs_citizen_key=needs_citizen_key)
    except (SettingsError, OSError) as exc:
        raise click.ClickException(str(exc)) from None


def existing_store(settings: Settings, *, readonly: bool = False) -> Store:
    """The configured store, refusing to create one: an operator who mistyped a path or a
    database name must not get "no jobs" or "log verified" for an answer, nor turn another file
    or database into a store. The refusal is a StoreError when the store opens.

    ``readonly``: for commands that only read. They then work on a store this user may not
    write (an auditor's copy on read-only media) and never change it; a command that writes
    gets a StoreError saying the store is read-only."""
    try:
        return open_store(
            settings.store.url, base=settings.base_dir, create=False, readonly=readonly
        )
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
