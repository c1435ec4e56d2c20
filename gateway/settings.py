"""Configuration: ``lienthong.toml`` into frozen, keyword-only settings, strictly.

Unknown keys, missing required keys and bad values (a wrong type, a number out of its range, NaN
or infinity, a URL that is not http(s), a listen address that cannot be bound, TLS half set up, a
fault plan the sandboxes would refuse, an agency id that is not one, a token no Authorization
header can carry) are refused at start with a one-line :class:`SettingsError` that names the key,
and never shows a secret nor the password of a URL. A value in the file must have the key's TOML
type (``workers = "32"`` is refused); the environment's, text by nature, are converted. Every key
can also be set from the environment as
``LIENTHONG_<SECTION>_<KEY>`` (``LIENTHONG_STORE_URL``, ``LIENTHONG_OUTBOX_WORKERS``), a registry's
as ``LIENTHONG_REGISTRIES_<NAME>_<KEY>``; the environment wins over the file, and a variable that
names a section but none of its keys, or is written in another case than upper, is refused. One :class:`Settings` object flows down from
``create_app``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import math
import os
import re
import tomllib
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import unquote, urlsplit

from yarl import URL

from connectors.identifiers import check_personal_id

__all__ = [
    "SERVICES",
    "UNLESS_SANDBOXED",
    "AgencySettings",
    "AuditSettings",
    "DocumentsSettings",
    "GatewaySettings",
    "OutboxSettings",
    "RegistrySettings",
    "SandboxSettings",
    "Settings",
    "SettingsError",
    "SigningSettings",
    "StoreSettings",
    "Subsystem",
    "citizen_key",
    "fingerprint",
    "is_http_url",
    "load_settings",
    "settings_from_mapping",
    "shown_url",
    "url_without_password",
    "without_url_secrets",
]

# The gateway's own services, to which rights are granted per subsystem.
SERVICES = (
    "dossiers.submit",  # POST /v1/dossiers, GET own dossiers
    "lookups.citizen",
    "lookups.insurance-card",
    "lookups.enterprise",
    "documents.exchange",  # send, receive and track edXML documents
    "audit.read",  # the auditor role
    "admin",  # the operator role: outbox, resume, correct dossiers
)

REGISTRY_NAMES = ("population", "civil_status", "insurance", "business", "portal")


class SettingsError(ValueError):
    """The configuration is wrong; the message is one line naming what and where."""


# Checks on a converted value, attached to a field's type with ``Annotated[type, check]``: each
# takes the value and the key's name and raises SettingsError naming the key.


def _positive(value: float, where: str) -> None:
    if value <= 0:
        raise SettingsError(f"{where}: must be greater than 0, got {value!r}")


def _not_negative(value: float, where: str) -> None:
    if value < 0:
        raise SettingsError(f"{where}: must be 0 or more, got {value!r}")


def _at_most(limit: float, unit: str = "") -> Callable[[float, str], None]:
    """A check that a value is no more than ``limit``: a number the gateway turns into a count
    of workers or a time must fit what it becomes (a SQLite integer, a date before year 9999)."""

    def check(value: float, where: str) -> None:
        if value > limit:
            raise SettingsError(f"{where}: must be at most {limit:g}{unit}, got {value!r}")

    return check


def _at_least(floor: float, unit: str = "") -> Callable[[float, str], None]:
    """A check that a value is no less than ``floor``: a time below which what it sets cannot
    work (a lease that runs out before it can be renewed)."""

    def check(value: float, where: str) -> None:
        if not value >= floor:
            raise SettingsError(f"{where}: must be at least {floor:g}{unit}, got {value!r}")

    return check


def _below(limit: float, unit: str = "") -> Callable[[float, str], None]:
    """A check that a value is less than ``limit``: a time that what holds it would cut."""

    def check(value: float, where: str) -> None:
        if not value < limit:
            raise SettingsError(f"{where}: must be less than {limit:g}{unit}, got {value!r}")

    return check


DAY_S = 86_400.0
# How long the outbox worker lets one attempt of a job run (a flow step's registry call among
# them) before it stops it as timed out: a registry's timeout_s must end an exchange before.
ATTEMPT_TIMEOUT_S = 300.0
# How long an outbox job may keep failing, its circuit's trials included, before it is given up
# (dead): a registry down for a weekend keeps its work pending, one that fails a job alone for
# three days lets it go, for an operator to see and replay.
GIVE_UP_AFTER_S = 3 * DAY_S


def _officer_id(value: str, where: str) -> None:
    """An officer is named by their 12-digit personal id (spec/identifiers.md)."""
    if value:
        try:
            check_personal_id(value)
        except ValueError as exc:
            raise SettingsError(f"{where}: not a personal id ({exc})") from None


def _note_origin(value: str, where: str) -> None:
    """The log's name, the first line of every checkpoint note and the key name of its signature
    line (C2SP signed-note, tlog-checkpoint): not empty, no space or control character (a newline
    would forge a line, a space split the signature line), no '+' (the note format reserves it)."""
    if not value or not value.isprintable() or any(c.isspace() or c == "+" for c in value):
        raise SettingsError(
            f"{where}: must be a name without spaces, control characters or '+'"
            f" (e.g. lienthong.local/audit), got {value!r}"
        )


def _fraction(value: float, where: str) -> None:
    if not 0 <= value <= 1:
        raise SettingsError(f"{where}: must be between 0 and 1, got {value!r}")


def is_http_url(value: str) -> bool:
    """An absolute http(s) URL with a host and a valid port, printable, without spaces (the
    registries, TSAs and agency endpoints here; a dossier's callback_url)."""
    try:
        parts = urlsplit(value)
        _ = parts.port  # raises ValueError unless a number from 0 to 65535
    except ValueError:
        return False
    return (
        parts.scheme in ("http", "https")
        and bool(parts.hostname)
        and value.isprintable()
        and " " not in value
    )


def _http_url(value: str, where: str) -> None:
    if not is_http_url(value):
        raise SettingsError(
            f"{where}: expected an http:// or https:// URL, got {shown_url(value)!r}"
        )


def _without_credentials(theirs: str) -> Callable[[str, str], None]:
    """A check that a URL carries no ``user[:password]@``: the gateway sends ``theirs`` (its own
    credentials for what the URL names) in an Authorization header, and a URL's credentials are
    sent in that header too: the two cannot go together, and every call would fail."""

    def check(value: str, where: str) -> None:
        if "@" in urlsplit(value).netloc:
            raise SettingsError(
                f"{where}: expected a URL without user or password (the gateway sends {theirs}),"
                f" got {shown_url(value)!r}"
            )

    return check


def shown_url(value: str) -> str:
    """A URL as a refusal or an error shows it (a registry's, an agency's push endpoint, a
    dossier's callback_url): without its password, and with every query value hidden, as a TSA
    URL's are in the errors of a running gateway: a service may take its key as ?token=,
    ?apikey=…, and no list of names is complete."""
    return _QUERY_VALUE.sub(r"\1***", url_without_password(value))


# The authority of a URL (after ``scheme://``, up to the path, query or fragment), and the
# password parameters libpq also reads from a URL's query (``?password=…``).
_AUTHORITY = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)([^/?#]*)")
_QUERY_SECRET = re.compile(r"([?&](?:ssl)?password=)([^&#]*)", re.IGNORECASE)
_QUERY_VALUE = re.compile(r"([?&][^=&#]*=)[^&#]+")


def _url_secrets(url: str) -> list[str]:
    """The secrets written in ``url``: the password of its ``user:password@`` (read as urllib
    reads it, up to the last ``@``, and as libpq does, up to the first) and of a ``password=``
    query parameter, each as written and percent-decoded. Found by pattern, not by a URL parser:
    the URLs that need hiding most are those a parser refuses (``[::1`` unclosed, ``%zz``)."""
    found: list[str] = []
    match = _AUTHORITY.match(url)
    if match and "@" in match[2]:
        authority = match[2]
        for userinfo in (authority.rpartition("@")[0], authority.partition("@")[0]):
            if ":" in userinfo:
                found.append(userinfo.partition(":")[2])
    found += [m[2] for m in _QUERY_SECRET.finditer(url)]
    secrets = {s for s in found if s}
    secrets |= {unquote(s) for s in secrets} - {""}
    return sorted(secrets, key=len, reverse=True)


def url_without_password(url: str) -> str:
    """``url`` with the password of its ``user:password@`` (and of a ``password=`` in its query)
    shown as ``***``, whatever else is wrong with it: a refusal is printed and logged."""
    match = _AUTHORITY.match(url)
    if match and "@" in match[2]:
        userinfo, at, host = match[2].rpartition("@")
        user, colon, _ = userinfo.partition(":")
        url = match[1] + user + (colon and ":***") + at + host + url[match.end() :]
    return _QUERY_SECRET.sub(lambda m: m[1] + ("***" if m[2] else ""), url)


def without_url_secrets(text: str, url: str) -> str:
    """``text`` (an error message, perhaps a library's: libpq quotes the URL it could not parse,
    or the one token of it that it could not decode) with ``url`` and every secret in it hidden."""
    if url and url in text:
        text = text.replace(url, url_without_password(url))
    for secret in _url_secrets(url):
        text = text.replace(secret, "***")
    return text


def _callback_base(value: str, where: str) -> None:
    _http_url(value, where)
    parts = urlsplit(value)
    if parts.query or parts.fragment or "@" in parts.netloc:
        raise SettingsError(
            f"{where}: expected scheme://host[:port][/path], without user, query or fragment,"
            f" got {shown_url(value)!r}"
        )


# A slash or backslash spelled encoded (yarl also sends a raw backslash as %5C). A receiver may
# decode them before it resolves the path, nginx does %2F, and some read a backslash as a slash:
# /cb/..%2Fadmin, under /cb/ as compared and sent, is /admin to it.
_ENCODED_SEPARATOR = re.compile(r"%2f|%5c", re.IGNORECASE)


def _encoded_dot_segment(path: str) -> bool:
    """Whether ``path`` (as written) has a ``.`` or ``..`` segment spelled with ``%2E``. yarl
    decodes and resolves one before the comparison, but a URL library that did not would send it
    as written, for the receiver to resolve (``/cb/%2E%2E/admin``)."""
    return any("%2e" in s.lower() and unquote(s) in (".", "..") for s in path.split("/"))


def _hidden_dot_segment(raw_path: str) -> bool:
    """Whether ``raw_path`` (as it will be sent, yarl's dot segments resolved) has a segment a
    receiver may still read as ``.`` or ``..``: once its path parameters (``;…``) are dropped, as
    Tomcat, Jetty and Spring drop them before they resolve dot segments (``/cb/..;/admin`` is
    ``/admin`` to them), or once it is percent-decoded, however many times (``%252e%252e``), and
    with what it decodes to split at slashes and backslashes."""
    for segment in raw_path.split("/"):
        for _ in range(8):  # %25 nested deeper is no URL anyone sends
            if (decoded := unquote(segment)) == segment:
                break
            segment = decoded
        for piece in re.split(r"[/\\]", segment):
            if piece.split(";", 1)[0] in (".", ".."):
                return True
    return False


def callback_allowed(url: str, bases: tuple[str, ...]) -> bool:
    """Whether ``url`` lies under one of ``bases`` (a subsystem's ``callback_urls``): the same
    scheme, host and port, and a path equal to the base's or below it as a folder
    (``https://h/cb`` admits ``https://h/cb/x``, not ``https://h/cbx``).

    Judged on the URL as aiohttp will send it (yarl's parsing: ``..`` and ``.`` segments resolved,
    the default port filled in), so that no spelling reaches what the comparison did not see. A
    URL carrying credentials is never admitted, nor one whose path holds an encoded slash or
    backslash, a backslash, or a dot segment spelled encoded or with path parameters (``..;``):
    the receiver might decode them, or drop the parameters, before resolving the path, and serve
    another folder than the one compared."""
    try:
        target = URL(url)
        # yarl reads the parts lazily: a host that is not valid IDNA ("xn--") fails only here.
        origin = (target.scheme, target.raw_host, target.port)
        if target.raw_user is not None or target.raw_password is not None:
            return False
        if (
            _ENCODED_SEPARATOR.search(target.raw_path)
            or _encoded_dot_segment(urlsplit(url).path)
            or _hidden_dot_segment(target.raw_path)
        ):
            return False
    except (ValueError, TypeError):
        return False
    for base in bases:
        allowed = URL(base)
        if origin != (allowed.scheme, allowed.raw_host, allowed.port):
            continue
        folder = allowed.raw_path.rstrip("/")
        if target.raw_path == folder or target.raw_path.startswith(folder + "/"):
            return True
    return False


def fingerprint(value: str) -> str:
    """A ``cert_fingerprint`` as the gateway compares it with a client certificate's SHA-256:
    lower case, without colons (``AB:CD:…`` and ``abcd…`` are one)."""
    return value.lower().replace(":", "")


_HOST_NAME = re.compile(r"[A-Za-z0-9._-]+")
# A bearer token as an Authorization header can carry it: visible ASCII, no blank, no control
# (a newline or NUL could never be presented, nor a space inside one be told from the scheme's).
_HEADER_TOKEN = re.compile(r"[\x21-\x7e]+")
_HEADER_TOKEN_RULE = (
    "must be visible ASCII characters only (no space, newline, NUL or other control, no"
    " letter outside ASCII): it is presented in an Authorization header"
)
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def _not_sha256(name: str, given: object, digests: Sequence[str]) -> str | None:
    """The key (``name``, or ``name[i]`` in a list) of the first of ``digests`` that is not a
    SHA-256, as the config spells it; None if all are."""
    for i, digest in enumerate(digests):
        if not _SHA256_HEX.fullmatch(digest):
            return name if isinstance(given, str) else f"{name}[{i}]"
    return None


def _listen_address(value: str, where: str) -> None:
    """``host:port`` as ``serve`` splits it (at the last colon): a port from 0 to 65535 and a host
    name, an IPv4 or a bare IPv6 address (``::1:8080``), or nothing (127.0.0.1)."""
    host, colon, port = value.rpartition(":")
    if not (colon and port.isascii() and port.isdigit() and len(port) <= 5 and int(port) < 65536):
        raise SettingsError(
            f"{where}: expected host:port with a port from 0 to 65535, got {value!r}"
        )
    if host.startswith("["):
        raise SettingsError(
            f"{where}: write an IPv6 host without brackets (e.g. '::1:8080'), got {value!r}"
        )
    if host and not _HOST_NAME.fullmatch(host):
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise SettingsError(
                f"{where}: {host!r} is neither a host name nor an IP address"
            ) from None


# The stores open_store (gateway.store) opens: anything else would fail only as the gateway starts.
_STORE_SCHEMES = ("sqlite:", "postgresql://", "postgres://")


def _store_url(value: str, where: str) -> None:
    if not value.startswith(_STORE_SCHEMES):
        # Only the scheme: the rest of a database URL may hold its password.
        scheme, colon, _ = value.partition(":")
        got = f"a {_shown(scheme)}: URL" if colon else "no scheme"
        raise SettingsError(
            f"{where}: expected sqlite:///path.db or postgresql://user@host/db, got {got}"
        )
    if value.startswith("sqlite:"):
        # open_store takes what follows "sqlite:" (and "///") as the file's path: a host would
        # become part of an absolute path (sqlite://h/x.db: /h/x.db) and a query or fragment part
        # of the file's name. SQLAlchemy, whose spelling this is, has no host here either.
        rest = value.removeprefix("sqlite:")
        hosted = rest.startswith("//") and not rest.startswith("///")
        if hosted or "?" in rest or "#" in rest or not rest.removeprefix("///"):
            raise SettingsError(
                f"{where}: expected sqlite:///relative/path.db or sqlite:////absolute/path.db"
                f" (a file: no host, query or fragment), got {url_without_password(value)!r}"
            )
    if value.startswith(_STORE_SCHEMES[1:]):
        # As libpq will read it, now: a URL it cannot parse fails at load, naming the key. Its
        # message quotes the URL, or the token it could not decode (the password, as may be).
        import psycopg
        from psycopg.conninfo import conninfo_to_dict

        try:
            conninfo_to_dict(value)
        except psycopg.Error as exc:
            detail = without_url_secrets(" ".join(str(exc).split()), value)
            raise SettingsError(f"{where}: not a PostgreSQL URL libpq can read: {detail}") from None


_SUBSYSTEM_ID = re.compile(r"VN:GOV:([^:]*):([A-Za-z0-9][A-Za-z0-9._-]*)")


def _subsystem_id(value: str, where: str) -> None:
    """``VN:GOV:<agency id>:<subsystem>`` (identifiers.md), the agency id valid: the gateway reads
    the caller's agency from it (whose dossier codes it may file, whose documents it sends)."""
    from connectors.identifiers import InvalidIdentifier, check_agency_id

    match = _SUBSYSTEM_ID.fullmatch(value)
    if match is None:
        raise SettingsError(
            f"{where}: expected VN:GOV:<agency id>:<subsystem> (letters, digits, '.', '_', '-'),"
            f" e.g. VN:GOV:000.00.00.H41:motcua, got {value!r}"
        )
    try:
        check_agency_id(match[1])
    except InvalidIdentifier as exc:
        raise SettingsError(f"{where}: {exc}") from None


def _agency_id(value: str, where: str) -> None:
    """An agency id as identifiers.md defines it (``000.00.00.H41``): the hub routes documents
    and writes TraceHeaders by it."""
    from connectors.identifiers import InvalidIdentifier, check_agency_id

    try:
        check_agency_id(value)
    except InvalidIdentifier as exc:
        raise SettingsError(f"{where}: {exc}") from None


def _fault_plans(plans: Mapping[str, Mapping[str, Any]], where: str) -> None:
    """``[sandbox.faults.<registry>]``: what the sandboxes' FaultPlan takes, checked now."""
    from connectors.faults import FaultPlan

    for name, table in plans.items():
        if name not in REGISTRY_NAMES:
            raise SettingsError(
                f"{where}: unknown registry: {_shown(name)} (known: {', '.join(REGISTRY_NAMES)})"
            )
        plan = _convert(FaultPlan, table, f"{where}.{name}")  # keys, types, finite numbers
        for key in ("latency_ms", "hang_s", "retry_after_s"):
            _not_negative(getattr(plan, key), f"{where}.{name}.{key}")
        try:
            FaultPlan.from_mapping(dataclasses.asdict(plan))  # the rates, between 0 and 1
        except ValueError as exc:
            raise SettingsError(f"{where}.{name}: {exc}") from None


PositiveInt = Annotated[int, _positive]
NonNegativeInt = Annotated[int, _not_negative]
PositiveFloat = Annotated[float, _positive]
Fraction = Annotated[float, _fraction]
HttpUrl = Annotated[str, _http_url]
CallbackBase = Annotated[str, _callback_base]
ListenAddress = Annotated[str, _listen_address]
FaultPlans = Annotated[Mapping[str, Mapping[str, Any]], _fault_plans]
SubsystemId = Annotated[str, _subsystem_id]
AgencyId = Annotated[str, _agency_id]
StoreUrl = Annotated[str, _store_url]


@dataclass(frozen=True, kw_only=True)
class GatewaySettings:
    listen: ListenAddress = "127.0.0.1:8080"
    tls_cert: str | None = None
    tls_key: str | None = None
    client_ca: str | None = None  # PEM of CAs whose client certificates identify subsystems
    max_body_bytes: PositiveInt = 1_048_576
    max_document_bytes: PositiveInt = 200 * 1024 * 1024
    lookup_attempts: PositiveInt = 3  # in-request retries for synchronous lookups
    # A lookup's whole time with its registry, tries and waits: lookup_attempts × a registry's
    # timeout_s (30 s by default) outlasted many clients and proxies.
    lookup_timeout_s: PositiveFloat = 15.0
    callback_timeout_s: PositiveFloat = 10.0


@dataclass(frozen=True, kw_only=True)
class StoreSettings:
    url: StoreUrl = "sqlite:///lienthong.db"
    # PostgreSQL: connections (and threads) serving units of work at once; SQLite has one writer.
    pool_size: Annotated[int, _positive, _at_most(256)] = 4


@dataclass(frozen=True, kw_only=True)
class Subsystem:
    """A member's system, e.g. ``VN:GOV:000.00.00.H41:motcua``, and what it may call."""

    id: SubsystemId
    rights: tuple[str, ...] = ()
    token: str | None = field(default=None, repr=False)
    # SHA-256 hex of the client certificate (DER), or a list of them: the old and the new
    # certificate while a client renews its own (the config is read at start only).
    cert_fingerprint: str | tuple[str, ...] | None = None
    callback_secret: str | None = field(default=None, repr=False)  # HMAC key for callbacks
    # Where its dossiers' callback_url may point (URL prefixes); none: it gets no callbacks. The
    # gateway POSTs from inside the province's network, so a URL a client may choose freely
    # would let it reach whatever the gateway can (databases, admin ports, the registries).
    callback_urls: tuple[CallbackBase, ...] = ()
    name: str = ""

    @property
    def fingerprints(self) -> tuple[str, ...]:
        """Its certificates' SHA-256 fingerprints, as compared (:func:`fingerprint`)."""
        given = self.cert_fingerprint or ()  # "": none, as before lists were taken
        return tuple(map(fingerprint, (given,) if isinstance(given, str) else given))

    def allows_callback(self, url: str) -> bool:
        return callback_allowed(url, self.callback_urls)

    @property
    def member(self) -> str:
        return self.id.rsplit(":", 1)[0]

    @property
    def agency(self) -> str:
        return self.member.rsplit(":", 1)[-1]


@dataclass(frozen=True, kw_only=True)
class RetrySettings:
    max_attempts: Annotated[int, _positive, _at_most(1000)] = 8
    base_delay_s: Annotated[float, _not_negative, _at_most(7 * DAY_S, " s (a week)")] = 0.5
    max_delay_s: Annotated[float, _not_negative, _at_most(7 * DAY_S, " s (a week)")] = (
        300.0  # ≥ base_delay_s
    )
    jitter: Fraction = 0.2


# The credentials each registry's connector sends: required whenever its url is set (the embedded
# sandboxes bring their own; no default may reach a real registry).
CREDENTIALS = {
    # signed Basic auth, ApiKey header; MaCanBo: the officer on whose behalf the gateway asks
    "population": ("username", "secret", "api_key", "officer_id", "service_code"),
    # signed requests (XMLDSig), no account; the register's certificate, the only signer of the
    # birth certificates it answers (the sandbox's is the development PKI's)
    "civil_status": ("signer_fingerprint",),
    # a token taken with the account; hoTenCb, cccdCb: the officer asking
    "insurance": ("username", "password", "officer_name", "officer_id"),
    "business": ("api_key",),
    "portal": ("username", "password"),  # HTTP Basic
}


@dataclass(frozen=True, kw_only=True)
class RegistrySettings:
    # None: the embedded sandbox's URL (and its credentials).
    url: (
        Annotated[
            HttpUrl,
            _without_credentials("the credentials given in username, password, secret, api_key"),
        ]
        | None
    ) = None
    username: str = ""
    password: str = field(default="", repr=False)
    secret: str = field(default="", repr=False)
    api_key: str = field(default="", repr=False)
    client_id: str = "VN:GOV:000.00.00.H41:lienthong"
    # The officer on whose behalf the gateway asks (population MaCanBo; BHXH hoTenCb, cccdCb):
    # a registry logs who looked a citizen up. The embedded sandboxes need none.
    officer_name: str = ""
    officer_id: Annotated[str, _officer_id] = ""
    # The public service a citizen lookup is made for (population MaDVC; a flow's calls name
    # their dossier's procedure).
    service_code: str = ""
    timeout_s: Annotated[
        float, _positive, _below(ATTEMPT_TIMEOUT_S, " s (the outbox worker stops an attempt then)")
    ] = 10.0
    sign_requests: bool | None = None  # None: as the registry requires (civil status: signed)
    # civil_status: the SHA-256 of the register's certificate (DER) that signs the birth
    # certificates, or a list (the old and the new while it renews its own). A chain to a trusted
    # root is not enough: an agency's certificate, or the gateway's, chains to the same root.
    signer_fingerprint: str | tuple[str, ...] | None = None
    retry: RetrySettings = RetrySettings()

    @property
    def signer_fingerprints(self) -> tuple[str, ...]:
        """``signer_fingerprint``, as compared (:func:`fingerprint`)."""
        given = self.signer_fingerprint or ()
        return tuple(map(fingerprint, (given,) if isinstance(given, str) else given))


@dataclass(frozen=True, kw_only=True)
class OutboxSettings:
    workers: Annotated[int, _positive, _at_most(1024)] = 16
    # Floors: a lease must outlast a store write and its renewal (every lease / 3), or a job is
    # taken over while it runs, again and again; a shorter poll only spins a CPU; a shorter reset
    # never holds a failing registry off.
    lease_s: Annotated[float, _at_least(1, " s"), _at_most(DAY_S, " s (a day)")] = 60.0
    poll_s: Annotated[float, _at_least(0.01, " s"), _at_most(3600, " s")] = 0.25
    breaker_failures: PositiveInt = 5  # consecutive failures that open a registry's circuit
    breaker_reset_s: Annotated[float, _at_least(0.1, " s"), _at_most(DAY_S, " s (a day)")] = (
        10.0  # open, then one trial
    )
    # A job failing this long (its trials included) is given up at its next failure; 0: never.
    give_up_after_s: Annotated[float, _not_negative, _at_most(366 * DAY_S, " s (a year)")] = (
        GIVE_UP_AFTER_S
    )


@dataclass(frozen=True, kw_only=True)
class SigningSettings:
    key: str | None = None  # PEM / .p12 path or pkcs11: URI (PIN: LIENTHONG_PKCS11_PIN)
    cert: str | None = None
    trust: tuple[str, ...] = ()  # trust-anchor PEM files
    revocation: Literal["hard-fail", "soft-fail", "off"] = "soft-fail"
    tsa_url: HttpUrl | None = None


@dataclass(frozen=True, kw_only=True)
class AuditSettings:
    checkpoint_every: PositiveInt = 1000
    # Bounded: `audit verify` adds both to an entry's time, which must stay a date.
    checkpoint_interval_s: Annotated[float, _positive, _at_most(DAY_S, " s (a day)")] = 60.0
    tsa_url: HttpUrl | None = None
    fail_closed_after_s: Annotated[float, _not_negative, _at_most(7 * DAY_S, " s (a week)")] = (
        0.0  # 0: never stop accepting work
    )
    citizen_id_key: str = field(default="", repr=False)  # hex; the HMAC key for personal ids
    origin: Annotated[str, _note_origin] = "lienthong.local/audit"


@dataclass(frozen=True, kw_only=True)
class AgencySettings:
    id: AgencyId
    name: str = ""
    # Push delivery URL; None: the agency pulls its inbox. Pushes carry the token.
    endpoint: (
        Annotated[HttpUrl, _without_credentials("the agency's token as a bearer token")] | None
    ) = None
    token: str | None = field(default=None, repr=False)


@dataclass(frozen=True, kw_only=True)
class DocumentsSettings:
    blob_dir: str = "blobs"  # content-addressed packages and attachments
    organ_id: AgencyId | None = None  # the hub's own agency id for its TraceHeader


@dataclass(frozen=True, kw_only=True)
class SandboxSettings:
    # Start the sandboxes of registries without a url inside the gateway process. Left out: only
    # while no registry has a url (Settings.embedded).
    embedded: bool | None = None
    seed: NonNegativeInt = 0
    pki: str = "pki"  # test PKI folder (made on first start) for the sandboxes and dev signing
    faults: FaultPlans = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Settings:
    base_dir: Path = Path(".")
    gateway: GatewaySettings = GatewaySettings()
    store: StoreSettings = StoreSettings()
    subsystems: tuple[Subsystem, ...] = ()
    registries: Mapping[str, RegistrySettings] = field(default_factory=dict)
    outbox: OutboxSettings = OutboxSettings()
    signing: SigningSettings = SigningSettings()
    audit: AuditSettings = AuditSettings()
    agencies: tuple[AgencySettings, ...] = ()
    documents: DocumentsSettings = DocumentsSettings()
    sandbox: SandboxSettings = SandboxSettings()

    def registry(self, name: str) -> RegistrySettings:
        return self.registries.get(name, RegistrySettings())

    @property
    def embedded(self) -> bool:
        """Whether registries without a url run on their embedded sandbox: ``[sandbox]
        embedded``, or, left out, only while no registry has a url. A config giving one
        registry's url is a real gateway's: a registry it forgot is an error at start, not a
        sandbox, and with it the development defaults (test PKI, fixed citizen key)."""
        if self.sandbox.embedded is not None:
            return self.sandbox.embedded
        return all(self.registry(n).url is None for n in REGISTRY_NAMES)

    @property
    def sandboxed(self) -> tuple[str, ...]:
        """The registries served by their embedded sandbox: those without a url, while
        :attr:`embedded`. Only while one is do the development defaults apply (the test PKI,
        the development citizen key): a config giving every registry's url is a real gateway's,
        whatever ``embedded`` says."""
        if not self.embedded:
            return ()
        return tuple(n for n in REGISTRY_NAMES if self.registry(n).url is None)

    def path(self, value: str) -> Path:
        """A path from the config, relative to the config file's folder."""
        p = Path(value)
        return p if p.is_absolute() else self.base_dir / p


T = TypeVar("T")


def _shown(name: object) -> str:
    """A key or id as written, or quoted if it would break the one-line message."""
    return name if isinstance(name, str) and name.isprintable() else repr(name)


def _names(names: list[Any]) -> str:
    return ", ".join(map(_shown, names))


def _got(value: Any, secret: bool) -> str:
    """How a refusal shows the value it got: a secret's (a field declared ``repr=False``: tokens,
    passwords, keys) only by its type."""
    if secret:
        return f"got a value of type {type(value).__name__} (secret: not shown)"
    return f"got {value!r}"


class _FromEnvironment(str):
    """A value from a ``LIENTHONG_*`` variable: text by nature, so converted to the key's type
    (``"32"`` to 32, ``"true"`` to True, one path to a list of one). A value written in the file
    has its TOML type, which must be the key's own: ``workers = "32"`` is refused."""


def _convert(tp: Any, value: Any, where: str, secret: bool = False) -> Any:
    """Check and convert one value to the annotated type; raise SettingsError naming ``where``
    (and never showing the value of a ``secret``). Only a value from the environment
    (:class:`_FromEnvironment`) is converted from text."""
    from_environment = isinstance(value, _FromEnvironment)
    origin = typing.get_origin(tp)
    if origin is Annotated:  # a type and the checks of its value
        base, *checks = typing.get_args(tp)
        value = _convert(base, value, where, secret)
        for check in checks:
            try:
                check(value, where)
            except SettingsError:
                if secret:  # the checks quote the value
                    raise SettingsError(f"{where}: not a valid value (secret: not shown)") from None
                raise
        return value
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        # A value or a list of them (str | tuple[str, ...]): a list is converted as the list.
        lists = [a for a in args if typing.get_origin(a) is tuple]
        if lists and isinstance(value, list):
            return _convert(lists[0], value, where, secret)
        return _convert(args[0], value, where, secret)
    if origin is Literal:
        if not isinstance(value, str) or value not in typing.get_args(tp):
            allowed = ", ".join(map(str, typing.get_args(tp)))
            shown = "the value (secret: not shown)" if secret else repr(value)
            raise SettingsError(f"{where}: {shown} is not one of {allowed}")
        return str(value)
    if origin is tuple:
        kinds = typing.get_args(tp)
        if from_environment:
            value = [str(value)]
        if not isinstance(value, list):
            raise SettingsError(f"{where}: expected a list, {_got(value, secret)}")
        items = (kinds[0],) * len(value) if kinds[-1] is Ellipsis else kinds  # or tuple[X, Y]
        if len(items) != len(value):
            raise SettingsError(f"{where}: expected a list of {len(items)}, {_got(value, secret)}")
        pairs = enumerate(zip(items, value, strict=True))
        return tuple(_convert(t, v, f"{where}[{i}]", secret) for i, (t, v) in pairs)
    if origin in (Mapping, dict) or tp is Mapping:
        if not isinstance(value, dict):
            raise SettingsError(f"{where}: expected a table")
        _, vt = typing.get_args(tp)
        return {k: _convert(vt, v, f"{where}.{_shown(k)}", secret) for k, v in value.items()}
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise SettingsError(f"{where}: expected a table")
        return _build(tp, value, where)
    if tp is Any:
        return value
    if tp is bool:
        if from_environment and value.lower() in ("1", "true", "yes", "0", "false", "no"):
            return value.lower() in ("1", "true", "yes")
        if not isinstance(value, bool):
            raise SettingsError(f"{where}: expected true or false, {_got(value, secret)}")
        return value
    if tp is int:  # neither a float nor a bool (an int to Python); a string from the environment
        if from_environment:
            with contextlib.suppress(ValueError):
                value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise SettingsError(f"{where}: expected an integer, {_got(value, secret)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not (isinstance(value, int | float) or from_environment):
            raise SettingsError(f"{where}: expected a number, {_got(value, secret)}")
        try:
            real = float(value)
        except (ValueError, OverflowError):
            raise SettingsError(f"{where}: expected a number, {_got(value, secret)}") from None
        if not math.isfinite(real):  # TOML and the environment both allow nan and inf
            raise SettingsError(f"{where}: expected a finite number, {_got(value, secret)}")
        return real
    if tp is str:
        if not isinstance(value, str):
            raise SettingsError(f"{where}: expected a string, {_got(value, secret)}")
        return str(value)
    if tp is Path:
        if not isinstance(value, str):
            raise SettingsError(f"{where}: expected a path, {_got(value, secret)}")
        return Path(value)
    raise SettingsError(f"{where}: unsupported setting type {tp!r}")


def _build(cls: type[T], data: Mapping[str, Any], where: str) -> T:
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise SettingsError(f"unknown key(s) in [{where or 'top level'}]: {_names(unknown)}")
    missing = [
        name
        for name, f in fields.items()
        if f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
        and name not in data
    ]
    if missing:
        raise SettingsError(
            f"missing required key(s) in [{where or 'top level'}]: {', '.join(missing)}"
        )
    kwargs = {
        k: _convert(hints[k], v, f"{where}.{k}" if where else k, secret=not fields[k].repr)
        for k, v in data.items()
    }
    return cls(**kwargs)


_TOP = {f.name for f in dataclasses.fields(Settings)} - {"base_dir"}
_SCALAR_SECTIONS = sorted(_TOP - {"subsystems", "registries", "agencies"})  # one table each
_LISTS = ("subsystems", "agencies")  # arrays of tables: not settable from the environment

# LIENTHONG_* variables that are not configuration keys though they begin like one.
_NOT_KEYS = frozenset({"LIENTHONG_AUDIT_CITIZEN"})  # `audit query --citizen`


def _keys(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _environment_keys() -> dict[str, tuple[str, ...]]:
    """``LIENTHONG_<SECTION>_<KEY>`` → the key's path: every key of the single-table sections,
    ``LIENTHONG_REGISTRIES_<NAME>_<KEY>`` and ``…_<NAME>_RETRY_<KEY>`` for the registries."""
    hints = typing.get_type_hints(Settings)
    paths: list[tuple[str, ...]] = [
        (section, key) for section in _SCALAR_SECTIONS for key in _keys(hints[section])
    ]
    for name in REGISTRY_NAMES:
        for key in _keys(RegistrySettings):
            if key == "retry":
                paths += [("registries", name, key, k) for k in _keys(RetrySettings)]
            else:
                paths.append(("registries", name, key))
    return {"LIENTHONG_" + "_".join(path).upper(): path for path in paths}


_ENVIRONMENT_KEYS = _environment_keys()


def _with(table: Any, path: tuple[str, ...], value: str) -> Any:
    """A copy of ``table`` with ``value`` at ``path``; the caller's tables stay as they are. A
    table that is not one is left for the build to refuse."""
    if not isinstance(table, dict):
        return table
    head, *rest = path
    return {**table, head: _with(table.get(head, {}), tuple(rest), value) if rest else value}


def _unknown_variable(variable: str) -> str | None:
    """Why ``variable`` names no key of the section it names; None: it names no section. Its
    case does not decide: one spelled in another case than upper (``LIENTHONG_store_url``,
    ``lienthong_gateway_listn``) is refused, never silently ignored."""
    upper = variable.upper()
    if not upper.startswith("LIENTHONG_") or variable in _NOT_KEYS:
        return None
    if variable != upper and (upper in _ENVIRONMENT_KEYS or upper in _NOT_KEYS):
        return f"variables are read in upper case only: name it {upper}"
    written, _, rest = upper.removeprefix("LIENTHONG_").partition("_")
    section = written.lower()
    if section not in _TOP:
        return None  # LIENTHONG_CONFIG, LIENTHONG_KEY_PASSWORD, …
    if section in _LISTS:
        return f"[[{section}]] cannot be set from the environment: write it in the file"
    where, key = section, rest.lower()
    if section == "registries":
        name = next((n for n in REGISTRY_NAMES if f"{key}_".startswith(f"{n}_")), None)
        if name is None:
            return f"names none of the registries ({', '.join(REGISTRY_NAMES)})"
        where, key = f"registries.{name}", key[len(name) + 1 :]
    prefix = f"LIENTHONG_{where.replace('.', '_').upper()}_"
    known = [k.removeprefix(prefix).lower() for k in _ENVIRONMENT_KEYS if k.startswith(prefix)]
    return f"[{where}] has no key {_shown(key) if key else repr(key)} (known: {', '.join(known)})"


def _env_overrides(data: dict[str, Any], environ: Mapping[str, str]) -> None:
    """Apply ``LIENTHONG_<SECTION>_<KEY>`` (``LIENTHONG_REGISTRIES_<NAME>_<KEY>``); refuse one
    that names a section and no key of it (``LIENTHONG_GATEWAY_LISTN``)."""
    for variable in sorted(environ):
        path = _ENVIRONMENT_KEYS.get(variable)
        if path is not None:
            section, *rest = path
            value = _FromEnvironment(environ[variable])
            data[section] = _with(data.get(section, {}), tuple(rest), value)
        elif (why := _unknown_variable(variable)) is not None:
            raise SettingsError(f"{_shown(variable)}: {why}")


MIN_TOKEN = 16  # characters of a subsystem's bearer token
MIN_CITIZEN_KEY = 16  # bytes: below this, guessing the key is easier than guessing the ids
MIN_CALLBACK_SECRET = 16  # bytes (UTF-8), as for citizen_id_key
DEVELOPMENT_CITIZEN_KEY = b"lienthong-development-citizen-key"
# When the development defaults do not apply (Settings.sandboxed).
UNLESS_SANDBOXED = "unless a registry runs on its embedded sandbox (one without a url)"


def citizen_key(settings: Settings) -> bytes:
    """The HMAC key personal ids are hashed under in the audit log: ``[audit] citizen_id_key``
    (hex, at least 16 bytes) or, while a registry runs on its embedded sandbox, a fixed
    development key.
    Raises SettingsError naming the key (never showing it)."""
    key = settings.audit.citizen_id_key
    if not key:
        if not settings.sandboxed:
            raise SettingsError(
                f"audit.citizen_id_key: required {UNLESS_SANDBOXED}"
                " (32 random bytes as hex: openssl rand -hex 32)"
            )
        # While a sandbox runs only: a fixed key still keeps raw ids out of the log, but anyone
        # with the source could test guesses against it.
        return DEVELOPMENT_CITIZEN_KEY
    try:
        raw = bytes.fromhex(key)
    except ValueError:
        raise SettingsError("audit.citizen_id_key: must be hex (secret: not shown)") from None
    if len(raw) < MIN_CITIZEN_KEY:
        raise SettingsError(
            f"audit.citizen_id_key: must be at least {MIN_CITIZEN_KEY} bytes"
            f" ({2 * MIN_CITIZEN_KEY} hex digits)"
        )
    return raw


def _check_together(settings: Settings) -> None:
    """What no single key shows: rights, ids, TLS files that go in pairs, retry delays."""
    if settings.audit.citizen_id_key:  # a key given must be one, whatever the command
        citizen_key(settings)
    g = settings.gateway
    for sub in settings.subsystems:
        wrong = sorted(set(sub.rights) - set(SERVICES))
        if wrong:
            raise SettingsError(f"subsystem {_shown(sub.id)}: unknown right(s): {_names(wrong)}")
        if not sub.token and not sub.fingerprints:
            raise SettingsError(f"subsystem {_shown(sub.id)}: needs a token or a cert_fingerprint")
        # Either would otherwise never match, and the subsystem be refused without a word why:
        # a bearer token is read without the blanks around it, a fingerprint is a SHA-256.
        if sub.token is not None and sub.token != sub.token.strip():
            raise SettingsError(f"subsystem {_shown(sub.id)}: token has blanks around it")
        if sub.token is not None and not _HEADER_TOKEN.fullmatch(sub.token):
            raise SettingsError(f"subsystem {_shown(sub.id)}: token {_HEADER_TOKEN_RULE}")
        # A token is all a caller shows for the rights it holds (admin, audit.read): one that
        # can be guessed is no credential.
        if sub.token is not None and len(sub.token) < MIN_TOKEN:
            raise SettingsError(
                f"subsystem {_shown(sub.id)}: token must be at least {MIN_TOKEN} characters"
                " (e.g. openssl rand -hex 16)"
            )
        key = _not_sha256("cert_fingerprint", sub.cert_fingerprint, sub.fingerprints)
        if key is not None:
            raise SettingsError(
                f"subsystem {_shown(sub.id)}: {key} is not a SHA-256 (64 hex digits,"
                " colons allowed)"
            )
        # Without client_ca the server asks for no client certificate: every request of such a
        # subsystem would be a 401, and nothing would say why.
        if sub.fingerprints and not sub.token and not g.client_ca:
            raise SettingsError(
                f"subsystem {_shown(sub.id)}: its only credential, cert_fingerprint, needs"
                " gateway.client_ca (and tls_cert): without it no client certificate is asked for"
            )
        if sub.callback_urls and not sub.callback_secret:  # callbacks go out signed (API.md)
            raise SettingsError(
                f"subsystem {_shown(sub.id)}: callback_urls need a callback_secret to sign"
                " the callbacks with"
            )
        # A key anyone could guess (one space was taken) signs forged callbacks as well as any.
        secret = sub.callback_secret
        if secret and (len(secret.encode()) < MIN_CALLBACK_SECRET or not secret.strip()):
            raise SettingsError(
                f"subsystem {_shown(sub.id)}: callback_secret must be at least"
                f" {MIN_CALLBACK_SECRET} bytes, not only blanks (secret: not shown)"
            )
    ids = [s.id for s in settings.subsystems]
    if len(ids) != len(set(ids)):
        raise SettingsError("subsystem ids must be unique")
    # A token or a certificate identifies one subsystem: shared, it would be any of them (the
    # clerks' token an operator's). Tokens are compared as written, fingerprints as read.
    holders: dict[tuple[str, str], str] = {}
    for sub in settings.subsystems:
        for kind, value in (
            ("token", sub.token),
            *(("cert_fingerprint", digest) for digest in sub.fingerprints),
        ):
            if value and (other := holders.setdefault((kind, value), sub.id)) != sub.id:
                raise SettingsError(
                    f"subsystems {_shown(other)} and {_shown(sub.id)} have the same {kind}:"
                    " each must identify one subsystem"
                )
    agencies: set[str] = set()
    for agency in settings.agencies:
        if agency.id in agencies:
            raise SettingsError(
                f"agency {agency.id}: listed twice in [[agencies]] (each agency once)"
            )
        agencies.add(agency.id)
        if agency.token is not None and not _HEADER_TOKEN.fullmatch(agency.token):
            raise SettingsError(f"agency {agency.id}: token {_HEADER_TOKEN_RULE}")
    # tls_cert alone is a PEM holding the key as well; a key without a certificate serves nothing.
    if g.tls_key and not g.tls_cert:
        raise SettingsError("gateway.tls_key is set without gateway.tls_cert")
    if g.client_ca and not g.tls_cert:
        raise SettingsError("gateway.client_ca is set without gateway.tls_cert")
    for name, registry in settings.registries.items():
        if registry.signer_fingerprint is not None and name != "civil_status":
            raise SettingsError(
                f"registries.{name}.signer_fingerprint: only the civil_status registry answers"
                " with a signed document (its birth certificates)"
            )
        key = _not_sha256(
            "signer_fingerprint", registry.signer_fingerprint, registry.signer_fingerprints
        )
        if key is not None:
            raise SettingsError(
                f"registries.{name}.{key}: not a SHA-256 (64 hex digits, colons allowed)"
            )
        missing = [key for key in CREDENTIALS[name] if registry.url and not getattr(registry, key)]
        if missing:
            raise SettingsError(
                f"registries.{name}: url is set without {', '.join(missing)}"
                " (the sandbox's credentials serve only the embedded sandbox)"
            )
        if registry.url and name in settings.sandbox.faults:  # the plan would be dropped unsaid
            raise SettingsError(
                f"sandbox.faults.{name}: the {name} registry has a url: there is no sandbox"
                " to inject faults into"
            )
        retry = registry.retry
        if retry.max_delay_s < retry.base_delay_s:
            raise SettingsError(
                f"registries.{name}.retry.max_delay_s: must be at least base_delay_s"
                f" ({retry.base_delay_s}), got {retry.max_delay_s}"
            )
    missing = [n for n in REGISTRY_NAMES if settings.registry(n).url is None]
    if settings.sandbox.embedded is None and 0 < len(missing) < len(REGISTRY_NAMES):
        # A gateway in front of real registries that forgot one: not a sandbox for it (and the
        # development keys with it) without a word; [sandbox] embedded = true says it is meant.
        raise SettingsError(
            f"no url for registr{'y' if len(missing) == 1 else 'ies'} {', '.join(missing)}"
            " while the others have one: set it, or [sandbox] embedded = true to run"
            f" {'its sandbox' if len(missing) == 1 else 'their sandboxes'} in the gateway"
        )


def settings_from_mapping(
    data: Mapping[str, Any],
    *,
    base_dir: Path = Path("."),
    environ: Mapping[str, str] | None = None,
    needs_citizen_key: bool = False,
) -> Settings:
    """Build settings from parsed TOML (plus the environment). Raises SettingsError.

    ``needs_citizen_key``: for what hashes personal ids (``serve``, ``audit query --citizen``),
    ``[audit] citizen_id_key`` is required unless the sandboxes are embedded. The other commands
    do without it: an auditor verifying a copy of the log need not hold the key."""
    raw = dict(data)
    unknown = sorted(set(raw) - _TOP)
    if unknown:
        raise SettingsError(f"unknown section(s): {_names(unknown)}")
    for section in [*_SCALAR_SECTIONS, "registries"]:
        if not isinstance(raw.get(section, {}), dict):
            raise SettingsError(f"{section}: expected a table")
    _env_overrides(raw, os.environ if environ is None else environ)
    bad = sorted(set(raw.get("registries", {})) - set(REGISTRY_NAMES))
    if bad:
        raise SettingsError(
            f"unknown registr{'y' if len(bad) == 1 else 'ies'}: {_names(bad)}"
            f" (known: {', '.join(REGISTRY_NAMES)})"
        )
    settings = _build(Settings, {**raw, "base_dir": str(base_dir)}, "")
    _check_together(settings)
    if needs_citizen_key:
        citizen_key(settings)
    return settings


def load_settings(
    path: str | Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    needs_citizen_key: bool = False,
) -> Settings:
    """Read ``path`` (or ``$LIENTHONG_CONFIG``). Raises SettingsError with a one-line message.
    ``needs_citizen_key``: as :func:`settings_from_mapping`."""
    env = os.environ if environ is None else environ
    chosen = path or env.get("LIENTHONG_CONFIG")
    if not chosen:
        raise SettingsError("no configuration: pass --config or set LIENTHONG_CONFIG")
    file = Path(chosen)
    try:
        # A byte order mark (Windows Notepad saves one) is no TOML statement: it was refused as
        # "Invalid statement (at line 1, column 1)", pointing at nothing one can see.
        data = tomllib.loads(file.read_text("utf-8").removeprefix("\ufeff"))
    except FileNotFoundError:
        raise SettingsError(f"{file}: no such file") from None
    except OSError as exc:  # a folder, no permission
        raise SettingsError(f"{file}: cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise SettingsError(f"{file}: not UTF-8 text (byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{file}: not valid TOML: {exc}") from None
    try:
        return settings_from_mapping(
            data,
            base_dir=file.resolve().parent,
            environ=env,
            needs_citizen_key=needs_citizen_key,
        )
    except SettingsError as exc:
        raise SettingsError(f"{file}: {exc}") from None
