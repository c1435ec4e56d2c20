import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from connectors.faults import FaultPlan
from gateway.cli import main
from gateway.settings import SettingsError, load_settings, settings_from_mapping

GOOD = """
[gateway]
listen = "127.0.0.1:9000"
max_body_bytes = 2048

[store]
url = "sqlite:///data/lienthong.db"

[[subsystems]]
id = "VN:GOV:000.00.00.H41:motcua"
token = "secret-token-0123456789"
rights = ["dossiers.submit", "lookups.citizen"]

[registries.population]
url = "http://127.0.0.1:9100/"
username = "lienthong"
secret = "population-secret"
api_key = "population-key"
officer_id = "040088101111"
service_code = "2.002156"
timeout_s = 2.5
retry = { max_attempts = 4 }

[outbox]
workers = 4

[sandbox]
embedded = true  # the other registries' sandboxes, beside the population registry at its url
"""


def test_loads_a_good_file(tmp_path: Path) -> None:
    cfg = tmp_path / "lienthong.toml"
    cfg.write_text(GOOD)
    s = load_settings(cfg, environ={})
    assert s.gateway.listen == "127.0.0.1:9000" and s.gateway.max_body_bytes == 2048
    assert s.base_dir == tmp_path
    assert s.subsystems[0].agency == "000.00.00.H41"
    assert s.subsystems[0].member == "VN:GOV:000.00.00.H41"
    assert s.registry("population").retry.max_attempts == 4
    assert s.registry("population").timeout_s == 2.5
    assert s.registry("insurance").url is None  # defaults for registries not named
    assert s.outbox.workers == 4


def test_environment_wins(tmp_path: Path) -> None:
    cfg = tmp_path / "lienthong.toml"
    cfg.write_text(GOOD)
    s = load_settings(
        cfg, environ={"LIENTHONG_OUTBOX_WORKERS": "9", "LIENTHONG_STORE_URL": "sqlite:///e.db"}
    )
    assert (s.outbox.workers, s.store.url) == (9, "sqlite:///e.db")


def test_config_from_environment_variable(tmp_path: Path) -> None:
    cfg = tmp_path / "x.toml"
    cfg.write_text(GOOD)
    assert load_settings(environ={"LIENTHONG_CONFIG": str(cfg)}).outbox.workers == 4


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"gatway": {}}, "unknown section(s): gatway"),
        ({"gateway": {"listn": "x"}}, "unknown key(s) in [gateway]: listn"),
        (
            {"registries": {"population": {"retry": {"tries": 1}}}},
            "[registries.population.retry]: tries",
        ),
        ({"subsystems": [{"token": "t"}]}, "missing required key(s) in [subsystems[0]]: id"),
        ({"subsystems": [{"id": "VN:GOV:000.00.00.H41:x"}]}, "needs a token or a cert_fingerprint"),
        (
            {
                "subsystems": [
                    {"id": "VN:GOV:000.00.00.H41:x", "token": "t", "rights": ["everything"]}
                ]
            },
            "unknown right(s): everything",
        ),
        ({"registries": {"police": {}}}, "unknown registry: police"),
        ({"outbox": {"workers": "many"}}, "outbox.workers: expected an integer"),
        ({"signing": {"revocation": "maybe"}}, "is not one of"),
        ({"gateway": {"tls_cert": 5}}, "gateway.tls_cert: expected a string"),
    ],
)
def test_bad_configuration_is_refused_in_one_line(data: dict, message: str) -> None:
    with pytest.raises(SettingsError) as info:
        settings_from_mapping(data, environ={})
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_and_broken_files(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="no such file"):
        load_settings(tmp_path / "nope.toml", environ={})
    bad = tmp_path / "bad.toml"
    bad.write_text("[gateway\n")
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings(bad, environ={})
    with pytest.raises(SettingsError, match="no configuration"):
        load_settings(environ={})


# --- values: types, ranges, URLs, addresses, pairs; every refusal is one line naming the key ---


def _nested(where: str, value: Any) -> dict[str, Any]:
    """``{"a": {"b": {"c": value}}}`` from ``"a.b.c"``; ``agencies[0].endpoint`` gives a list."""
    *path, key = where.split(".")
    data: Any = {key: value}
    for part in reversed(path):
        if part.endswith("[0]"):
            data = {part[:-3]: [{"id": "000.00.11.H53", **data}]}
        else:
            data = {part: data}
    return data


def _lookup(settings: Any, where: str) -> Any:
    for part in where.split("."):
        if part.endswith("[0]"):
            settings = getattr(settings, part[:-3])[0]
        elif isinstance(settings, Mapping):
            settings = settings[part]
        else:
            settings = getattr(settings, part)
    return settings


def _refused(data: dict[str, Any], environ: dict[str, str] | None = None) -> str:
    with pytest.raises(SettingsError) as info:
        settings_from_mapping(data, environ=environ or {})
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    return message


RETRY = "registries.population.retry"
# key → (refused values, accepted values and what they load as)
RANGES: dict[str, tuple[list[Any], list[tuple[Any, Any]]]] = {
    **{
        # A number written as a string in the file is refused: only the environment's are text.
        key: ([0, -1, 1.9, 1.0, True, "2.0", "many", "3"], [(3, 3)])
        for key in (
            "outbox.workers",
            "store.pool_size",
            "outbox.breaker_failures",
            "gateway.max_body_bytes",
            "gateway.max_document_bytes",
            "gateway.lookup_attempts",
            "audit.checkpoint_every",
            f"{RETRY}.max_attempts",
        )
    },
    **{
        key: (
            [0, -5, math.nan, math.inf, -math.inf, "nan", "inf", True, "lots", "0.25"],
            [(0.5, 0.5), (2, 2.0)],
        )
        for key in (
            "gateway.callback_timeout_s",
            "gateway.lookup_timeout_s",
            "audit.checkpoint_interval_s",
            "registries.population.timeout_s",
        )
    },
    # Floors (tests/outbox/test_outbox_settings_floors.py says why).
    **{
        f"outbox.{key}": (
            [0, -5, floor / 2, math.nan, math.inf, -math.inf, "nan", "inf", True, "lots", "0.25"],
            [(floor, floor), (2, 2.0)],
        )
        for key, floor in (("lease_s", 1.0), ("poll_s", 0.01), ("breaker_reset_s", 0.1))
    },
    "audit.fail_closed_after_s": ([-1, math.nan, math.inf, "nan"], [(0, 0.0), (300, 300.0)]),
    f"{RETRY}.base_delay_s": ([-0.1, math.nan, math.inf, False], [(0, 0.0), (1.5, 1.5)]),
    f"{RETRY}.max_delay_s": ([-1, math.nan, math.inf, "x"], [(0.5, 0.5), (600, 600.0)]),
    f"{RETRY}.jitter": ([-0.1, 1.1, math.nan, True], [(0, 0.0), (1, 1.0), (0.3, 0.3)]),
    "sandbox.seed": ([-1, 1.5, True, "x"], [(0, 0), (42, 42)]),
}
# Upper bounds: what each value becomes must hold it (the workers are a SQLite LIMIT, times become
# dates): a huge one loaded, then every claim failed with OverflowError, or `outbox list --json`
# with "year 33715 is out of range".
BOUNDS: dict[str, tuple[Any, Any]] = {  # key → (the largest accepted, the smallest refused)
    "outbox.workers": (1024, 1025),
    "store.pool_size": (256, 257),
    f"{RETRY}.max_attempts": (1000, 10**20),
    "outbox.lease_s": (86_400, 86_400.5),
    "outbox.poll_s": (3600, 1e12),
    "outbox.breaker_reset_s": (86_400, 1e9),
    f"{RETRY}.max_delay_s": (604_800, 1e12),
    # `audit verify` crashed (OverflowError) on a log checked with these, which `serve` ran with.
    "audit.checkpoint_interval_s": (86_400, 3e11),
    "audit.fail_closed_after_s": (604_800, 1e300),
    # The outbox worker stops an attempt at 300 s: a registry's longer exchange never ran out, its
    # step was cut there instead, stopped with an empty error.
    "registries.population.timeout_s": (299.5, 300),
}
for key, (largest, refused) in BOUNDS.items():
    RANGES[key][0].append(refused)
    RANGES[key][1].append((largest, type(RANGES[key][1][0][1])(largest)))  # as the key loads


@pytest.mark.parametrize(
    ("where", "value"), [(k, v) for k, (bad, _) in RANGES.items() for v in bad], ids=repr
)
def test_out_of_range_or_mistyped_numbers_are_refused(where: str, value: Any) -> None:
    assert f"{where}:" in _refused(_nested(where, value))


@pytest.mark.parametrize(
    ("where", "value", "loaded"),
    [(k, v, want) for k, (_, good) in RANGES.items() for v, want in good],
    ids=repr,
)
def test_numbers_in_range_still_load(where: str, value: Any, loaded: Any) -> None:
    got = _lookup(settings_from_mapping(_nested(where, value), environ={}), where)
    assert got == loaded and type(got) is type(loaded)


@pytest.mark.parametrize(
    ("variable", "value", "where"),
    [
        ("LIENTHONG_OUTBOX_WORKERS", "1.9", "outbox.workers"),
        ("LIENTHONG_OUTBOX_WORKERS", "0", "outbox.workers"),
        ("LIENTHONG_OUTBOX_WORKERS", "true", "outbox.workers"),
        ("LIENTHONG_OUTBOX_POLL_S", "nan", "outbox.poll_s"),
        ("LIENTHONG_OUTBOX_LEASE_S", "-inf", "outbox.lease_s"),
        ("LIENTHONG_AUDIT_FAIL_CLOSED_AFTER_S", "1e999", "audit.fail_closed_after_s"),
        ("LIENTHONG_GATEWAY_LISTEN", "garbage", "gateway.listen"),
        ("LIENTHONG_AUDIT_TSA_URL", "notaurl", "audit.tsa_url"),
        ("LIENTHONG_SANDBOX_SEED", "-3", "sandbox.seed"),
        ("LIENTHONG_OUTBOX_WORKERS", "99999999999999999999", "outbox.workers"),
    ],
)
def test_bad_values_from_the_environment_are_refused(variable: str, value: str, where: str) -> None:
    assert f"{where}:" in _refused({}, {variable: value})


def test_retry_max_delay_below_base_delay_is_refused() -> None:
    message = _refused(_nested(RETRY, {"base_delay_s": 2, "max_delay_s": 1}))
    assert f"{RETRY}.max_delay_s: must be at least base_delay_s" in message
    ok = settings_from_mapping(_nested(RETRY, {"base_delay_s": 1, "max_delay_s": 1}), environ={})
    assert ok.registry("population").retry.max_delay_s == 1.0


@pytest.mark.parametrize(
    "section",
    ["gateway", "store", "outbox", "signing", "audit", "documents", "sandbox", "registries"],
)
@pytest.mark.parametrize("value", [5, "text", [1, 2], True])
def test_a_section_that_is_not_a_table_is_refused(section: str, value: Any) -> None:
    assert _refused({section: value}) == f"{section}: expected a table"


def test_a_non_table_section_with_an_environment_override_is_refused() -> None:
    message = _refused({"store": 5}, {"LIENTHONG_STORE_URL": "sqlite:///x.db"})
    assert message == "store: expected a table"


def test_environment_overrides_leave_the_callers_mapping_alone() -> None:
    data = {"outbox": {"workers": 4}}
    s = settings_from_mapping(data, environ={"LIENTHONG_OUTBOX_WORKERS": "9"})
    assert s.outbox.workers == 9 and data == {"outbox": {"workers": 4}}


@pytest.mark.parametrize(
    "listen",
    [
        "garbage",
        "127.0.0.1:abc",
        "127.0.0.1:99999",
        pytest.param("127.0.0.1:" + "9" * 5000, id="huge-port"),
        "127.0.0.1:-1",
        "127.0.0.1:",
        "127.0.0.1: 80",
        "[::1]:8080",
        "a b:80",
        "",
        5,
    ],
)
def test_a_listen_address_that_cannot_be_bound_is_refused(listen: Any) -> None:
    assert "gateway.listen:" in _refused({"gateway": {"listen": listen}})


@pytest.mark.parametrize(
    "listen",
    ["127.0.0.1:9000", "0.0.0.0:65535", "localhost:0", ":8080", "::1:8080", "gw-1.example.vn:443"],
)
def test_listen_addresses_that_serve_binds_still_load(listen: str) -> None:
    assert (
        settings_from_mapping({"gateway": {"listen": listen}}, environ={}).gateway.listen == listen
    )


# civil_status: a registry whose url needs no account beside it (only its certificate's SHA-256).
URL_KEYS = [
    "signing.tsa_url",
    "audit.tsa_url",
    "registries.civil_status.url",
    "agencies[0].endpoint",
]


@pytest.mark.parametrize("where", URL_KEYS)
@pytest.mark.parametrize(
    "url",
    [
        "notaurl",
        "ftp://files.example.vn/",
        "http://",
        "http:///path",
        "https://host:99999/",
        "http://[::1/",
        "http://exa mple.vn/",
        "http://example.vn/\n",
        "",
        5,
    ],
)
def test_a_url_that_is_not_absolute_http_is_refused(where: str, url: Any) -> None:
    assert f"{where}:" in _refused(_nested(where, url))


@pytest.mark.parametrize("where", URL_KEYS)
def test_a_refused_url_is_shown_without_its_password(where: str) -> None:
    # The line is printed and logged: a user:password@ in a (wrong) URL must not be.
    message = _refused(_nested(where, "ftp://bhxh_user:S3cr3t-pw@registry.example.vn/api"))
    assert "S3cr3t-pw" not in message and "bhxh_user:***@registry.example.vn" in message, message


def test_an_unsupported_store_url_is_named_by_its_scheme_only() -> None:
    from gateway.store import open_store

    with pytest.raises(ValueError) as refused:
        open_store("mysql://root:S3cr3t-pw@db.example.vn/lienthong")
    assert "S3cr3t-pw" not in str(refused.value) and "'mysql'" in str(refused.value)


@pytest.mark.parametrize("where", URL_KEYS)
@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:9100/", "https://tsa.example.vn/tsr", "HTTPS://[::1]:8443/x?y=1"]
)
def test_http_urls_still_load(where: str, url: str) -> None:
    data = _nested(where, url)
    if where.startswith("registries."):  # the other registries on their sandboxes
        data["sandbox"] = {"embedded": True}
        data["registries"]["civil_status"]["signer_fingerprint"] = "ab" * 32
    assert _lookup(settings_from_mapping(data, environ={}), where) == url


@pytest.mark.parametrize(
    ("faults", "message"),
    [
        ({"nosuch": {"error_rate": 0.5}}, "sandbox.faults: unknown registry: nosuch"),
        ({"portal": {"latency_ms": "lots"}}, "sandbox.faults.portal.latency_ms: expected a number"),
        ({"portal": {"latency_ms": -1}}, "sandbox.faults.portal.latency_ms: must be 0 or more"),
        ({"portal": {"hang_s": math.inf}}, "sandbox.faults.portal.hang_s: expected a finite"),
        (
            {"portal": {"retry_after_s": -1}},
            "sandbox.faults.portal.retry_after_s: must be 0 or more",
        ),
        (
            {"portal": {"throttle_rate": 0.6, "cut_reply_rate": 0.6}},
            "sandbox.faults.portal: the fault rates add up to more than 1",
        ),
        (
            {"portal": {"error_rate": math.nan}},
            "sandbox.faults.portal.error_rate: expected a finite",
        ),
        (
            {"portal": {"error_rate": 2}},
            "sandbox.faults.portal: error_rate must be between 0 and 1",
        ),
        ({"portal": {"reset_rate": -0.1}}, "sandbox.faults.portal: reset_rate must be between"),
        ({"portal": {"seed": 1.5}}, "sandbox.faults.portal.seed: expected an integer"),
        ({"portal": {"outages": 5}}, "sandbox.faults.portal.outages: expected a list"),
        ({"portal": {"outages": [5]}}, "sandbox.faults.portal.outages[0]: expected a list"),
        ({"portal": {"outages": [[1]]}}, "sandbox.faults.portal.outages[0]: expected a list of 2"),
        ({"portal": {"outages": [[0, "x"]]}}, "sandbox.faults.portal.outages[0][1]: expected a"),
        ({"portal": {"flakiness": 1}}, "unknown key(s) in [sandbox.faults.portal]: flakiness"),
        ({"portal": 5}, "sandbox.faults.portal: expected a table"),
        (5, "sandbox.faults: expected a table"),
    ],
)
def test_a_bad_fault_plan_is_refused(faults: Any, message: str) -> None:
    assert message in _refused({"sandbox": {"faults": faults}})


def test_a_fault_plan_for_a_registry_with_a_url_is_refused() -> None:
    """The plan was dropped at start without a word: no sandbox serves that registry."""
    business = {"url": "http://127.0.0.1:1/api", "api_key": "k"}
    data = {
        "registries": {"business": business},
        "sandbox": {"embedded": True, "faults": {"business": {}}},
    }
    assert _refused(data) == (
        "sandbox.faults.business: the business registry has a url: there is no sandbox to"
        " inject faults into"
    )
    data["sandbox"]["faults"] = {"portal": {"error_rate": 1.0}}  # another registry's: sandboxed
    assert settings_from_mapping(data, environ={}).sandbox.faults["portal"]["error_rate"] == 1.0


def test_a_good_fault_plan_loads_and_builds() -> None:
    plan = {"error_rate": 0.1, "latency_ms": 5, "outages": [[0, 1.5]], "seed": 3}
    s = settings_from_mapping({"sandbox": {"faults": {"portal": plan}}}, environ={})
    built = FaultPlan.from_mapping(dict(s.sandbox.faults["portal"]))
    assert (built.error_rate, built.latency_ms, built.outages, built.seed) == (
        0.1,
        5,
        ((0, 1.5),),
        3,
    )


@pytest.mark.parametrize(
    ("gateway", "message"),
    [
        ({"tls_key": "k.pem"}, "gateway.tls_key is set without gateway.tls_cert"),
        ({"client_ca": "ca.pem"}, "gateway.client_ca is set without gateway.tls_cert"),
    ],
)
def test_tls_files_half_set_are_refused(gateway: dict[str, str], message: str) -> None:
    assert message in _refused({"gateway": gateway})


def test_tls_files_set_together_load() -> None:
    tls = {"tls_cert": "c.pem", "tls_key": "k.pem"}
    assert settings_from_mapping({"gateway": tls}, environ={}).gateway.tls_key == "k.pem"
    full = {**tls, "client_ca": "ca.pem"}
    assert settings_from_mapping({"gateway": full}, environ={}).gateway.client_ca == "ca.pem"
    one_pem = {"tls_cert": "cert-and-key.pem"}  # the key in the certificate's own file
    assert settings_from_mapping({"gateway": one_pem}, environ={}).gateway.tls_key is None


def test_a_key_with_a_line_break_is_named_on_one_line() -> None:
    assert "'a\\nb'" in _refused({"gateway": {"a\nb": 1}})


def test_a_file_that_is_not_utf8_or_not_a_file_is_refused(tmp_path: Path) -> None:
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00garbage" + bytes(range(256)))
    with pytest.raises(SettingsError, match=r"binary\.toml: not UTF-8 text"):
        load_settings(binary, environ={})
    with pytest.raises(SettingsError, match="cannot be read"):
        load_settings(tmp_path, environ={})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"registries = 5\n", "registries: expected a table"),
        (b'[gateway]\nlisten = "127.0.0.1:99999"\n', "gateway.listen:"),
        (b"[outbox]\nlease_s = nan\n", "outbox.lease_s: expected a finite number"),
        (b"[audit]\ncheckpoint_interval_s = 1e300\n", "audit.checkpoint_interval_s: must be at"),
        (b"[audit]\nfail_closed_after_s = 3e11\n", "audit.fail_closed_after_s: must be at most"),
        (
            b"[registries.insurance]\ntimeout_s = 400\n",
            "registries.insurance.timeout_s: must be less than 300 s",
        ),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "not UTF-8 text"),
    ],
)
def test_the_cli_prints_one_line(tmp_path: Path, text: bytes, message: str) -> None:
    config = tmp_path / "lienthong.toml"
    config.write_bytes(text)
    result = CliRunner().invoke(main, ["outbox", "list", "--config", str(config)])
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.output


def test_the_postgresql_pool_size_reaches_the_store() -> None:
    """The pool was fixed at 4 connections whatever the outbox's workers (16 by default)."""
    from gateway.app import RUNTIME, create_app
    from gateway.store import PostgresStore

    settings = settings_from_mapping(
        {"store": {"url": "postgresql://u@127.0.0.1/db", "pool_size": 12}}, environ={}
    )
    store = create_app(settings)[RUNTIME].store  # not opened: nothing connects
    assert isinstance(store, PostgresStore) and store.pool_size == 12
