"""Configuration: ``lienthong.toml`` into frozen, keyword-only settings, strictly.

Unknown keys and missing required keys are refused at start with a one-line
:class:`SettingsError` that names them. Every scalar key can also be set from the environment as
``LIENTHONG_<SECTION>_<KEY>`` (``LIENTHONG_STORE_URL``, ``LIENTHONG_OUTBOX_WORKERS``); the
environment wins over the file. One :class:`Settings` object flows down from ``create_app``.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

__all__ = [
    "SERVICES",
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
    "load_settings",
    "settings_from_mapping",
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


@dataclass(frozen=True, kw_only=True)
class GatewaySettings:
    listen: str = "127.0.0.1:8080"
    tls_cert: str | None = None
    tls_key: str | None = None
    client_ca: str | None = None  # PEM of CAs whose client certificates identify subsystems
    max_body_bytes: int = 1_048_576
    max_document_bytes: int = 200 * 1024 * 1024
    lookup_attempts: int = 3  # in-request retries for synchronous lookups
    callback_timeout_s: float = 10.0


@dataclass(frozen=True, kw_only=True)
class StoreSettings:
    url: str = "sqlite:///lienthong.db"


@dataclass(frozen=True, kw_only=True)
class Subsystem:
    """A member's system, e.g. ``VN:GOV:000.00.00.H41:motcua``, and what it may call."""

    id: str
    rights: tuple[str, ...] = ()
    token: str | None = field(default=None, repr=False)
    cert_fingerprint: str | None = None  # SHA-256 hex of the client certificate (DER)
    callback_secret: str | None = field(default=None, repr=False)  # HMAC key for callbacks
    name: str = ""

    @property
    def member(self) -> str:
        return self.id.rsplit(":", 1)[0]

    @property
    def agency(self) -> str:
        return self.member.rsplit(":", 1)[-1]


@dataclass(frozen=True, kw_only=True)
class RetrySettings:
    max_attempts: int = 8
    base_delay_s: float = 0.5
    max_delay_s: float = 300.0
    jitter: float = 0.2


@dataclass(frozen=True, kw_only=True)
class RegistrySettings:
    url: str | None = None  # None: the embedded sandbox's URL
    username: str = "lienthong"
    password: str = field(default="sandbox", repr=False)
    secret: str = field(default="sandbox-secret", repr=False)
    api_key: str = field(default="sandbox-key", repr=False)
    client_id: str = "VN:GOV:000.00.00.H41:lienthong"
    timeout_s: float = 10.0
    sign_requests: bool | None = None  # None: as the registry requires (civil status: signed)
    retry: RetrySettings = RetrySettings()


@dataclass(frozen=True, kw_only=True)
class OutboxSettings:
    workers: int = 16
    lease_s: float = 60.0
    poll_s: float = 0.25
    breaker_failures: int = 5  # consecutive failures that open a registry's circuit
    breaker_reset_s: float = 10.0  # how long it stays open before one trial call


@dataclass(frozen=True, kw_only=True)
class SigningSettings:
    key: str | None = None  # PEM / .p12 path or pkcs11: URI
    cert: str | None = None
    trust: tuple[str, ...] = ()  # trust-anchor PEM files
    revocation: Literal["hard-fail", "soft-fail", "off"] = "soft-fail"
    tsa_url: str | None = None


@dataclass(frozen=True, kw_only=True)
class AuditSettings:
    checkpoint_every: int = 1000
    checkpoint_interval_s: float = 60.0
    tsa_url: str | None = None
    fail_closed_after_s: float = 0.0  # 0: never stop accepting work
    citizen_id_key: str = field(default="", repr=False)  # hex; the HMAC key for personal ids
    origin: str = "lienthong.local/audit"


@dataclass(frozen=True, kw_only=True)
class AgencySettings:
    id: str
    name: str = ""
    endpoint: str | None = None  # push delivery URL; None: the agency pulls its inbox
    token: str | None = field(default=None, repr=False)


@dataclass(frozen=True, kw_only=True)
class DocumentsSettings:
    blob_dir: str = "blobs"  # content-addressed packages and attachments
    organ_id: str | None = None  # the hub's own agency id for its TraceHeader


@dataclass(frozen=True, kw_only=True)
class SandboxSettings:
    embedded: bool = True  # start the registry sandboxes inside the gateway process
    seed: int = 0
    pki: str = "pki"  # test PKI folder (made on first start) for the sandboxes and dev signing
    faults: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


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

    def path(self, value: str) -> Path:
        """A path from the config, relative to the config file's folder."""
        p = Path(value)
        return p if p.is_absolute() else self.base_dir / p


T = TypeVar("T")


def _convert(tp: Any, value: Any, where: str) -> Any:
    """Check and convert one value to the annotated type; raise SettingsError naming ``where``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _convert(args[0], value, where)
    if origin is Literal:
        if value not in typing.get_args(tp):
            allowed = ", ".join(map(str, typing.get_args(tp)))
            raise SettingsError(f"{where}: {value!r} is not one of {allowed}")
        return value
    if origin is tuple:
        (item,) = {a for a in typing.get_args(tp) if a is not Ellipsis}
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise SettingsError(f"{where}: expected a list")
        return tuple(_convert(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin in (Mapping, dict) or tp is Mapping:
        if not isinstance(value, dict):
            raise SettingsError(f"{where}: expected a table")
        _, vt = typing.get_args(tp)
        return {k: _convert(vt, v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise SettingsError(f"{where}: expected a table")
        return _build(tp, value, where)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "0", "false", "no"):
            return value.lower() in ("1", "true", "yes")
        if not isinstance(value, bool):
            raise SettingsError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp in (int, float):
        if isinstance(value, bool):
            raise SettingsError(f"{where}: expected a number, got {value!r}")
        try:
            return tp(value)
        except (TypeError, ValueError):
            raise SettingsError(f"{where}: expected a number, got {value!r}") from None
    if tp is str:
        if not isinstance(value, str):
            raise SettingsError(f"{where}: expected a string, got {value!r}")
        return value
    if tp is Path:
        return Path(value)
    raise SettingsError(f"{where}: unsupported setting type {tp!r}")


def _build(cls: type[T], data: Mapping[str, Any], where: str) -> T:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise SettingsError(f"unknown key(s) in [{where or 'top level'}]: {', '.join(unknown)}")
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
    kwargs = {k: _convert(hints[k], v, f"{where}.{k}" if where else k) for k, v in data.items()}
    return cls(**kwargs)


_TOP = {f.name for f in dataclasses.fields(Settings)} - {"base_dir"}
_SCALAR_SECTIONS = sorted(_TOP - {"subsystems", "registries", "agencies"})  # one table each


def _env_overrides(data: dict[str, Any], environ: Mapping[str, str]) -> None:
    """Apply ``LIENTHONG_<SECTION>_<KEY>`` for the scalar keys of the single-table sections."""
    for section in _SCALAR_SECTIONS:
        for name in (f.name for f in dataclasses.fields(typing.get_type_hints(Settings)[section])):
            value = environ.get(f"LIENTHONG_{section.upper()}_{name.upper()}")
            if value is not None:
                data.setdefault(section, {})[name] = value


def settings_from_mapping(
    data: Mapping[str, Any], *, base_dir: Path = Path("."), environ: Mapping[str, str] | None = None
) -> Settings:
    """Build settings from parsed TOML (plus the environment). Raises SettingsError."""
    raw = dict(data)
    _env_overrides(raw, os.environ if environ is None else environ)
    unknown = sorted(set(raw) - _TOP)
    if unknown:
        raise SettingsError(f"unknown section(s): {', '.join(unknown)}")
    registries = raw.get("registries", {})
    bad = sorted(set(registries) - set(REGISTRY_NAMES))
    if bad:
        raise SettingsError(
            f"unknown registr{'y' if len(bad) == 1 else 'ies'}: {', '.join(bad)}"
            f" (known: {', '.join(REGISTRY_NAMES)})"
        )
    settings = _build(Settings, {**raw, "base_dir": str(base_dir)}, "")
    for sub in settings.subsystems:
        wrong = sorted(set(sub.rights) - set(SERVICES))
        if wrong:
            raise SettingsError(f"subsystem {sub.id}: unknown right(s): {', '.join(wrong)}")
        if not sub.token and not sub.cert_fingerprint:
            raise SettingsError(f"subsystem {sub.id}: needs a token or a cert_fingerprint")
    ids = [s.id for s in settings.subsystems]
    if len(ids) != len(set(ids)):
        raise SettingsError("subsystem ids must be unique")
    return settings


def load_settings(
    path: str | Path | None = None, *, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read ``path`` (or ``$LIENTHONG_CONFIG``). Raises SettingsError with a one-line message."""
    env = os.environ if environ is None else environ
    chosen = path or env.get("LIENTHONG_CONFIG")
    if not chosen:
        raise SettingsError("no configuration: pass --config or set LIENTHONG_CONFIG")
    file = Path(chosen)
    try:
        data = tomllib.loads(file.read_text("utf-8"))
    except FileNotFoundError:
        raise SettingsError(f"{file}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{file}: not valid TOML: {exc}") from None
    try:
        return settings_from_mapping(data, base_dir=file.resolve().parent, environ=env)
    except SettingsError as exc:
        raise SettingsError(f"{file}: {exc}") from None
