from pathlib import Path

import pytest

from gateway.settings import SettingsError, load_settings, settings_from_mapping

GOOD = """
[gateway]
listen = "127.0.0.1:9000"
max_body_bytes = 2048

[store]
url = "sqlite:///data/lienthong.db"

[[subsystems]]
id = "VN:GOV:000.00.00.H41:motcua"
token = "secret-token"
rights = ["dossiers.submit", "lookups.citizen"]

[registries.population]
url = "http://127.0.0.1:9100/"
timeout_s = 2.5
retry = { max_attempts = 4 }

[outbox]
workers = 4
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
            {"subsystems": [{"id": "a:b", "token": "t", "rights": ["everything"]}]},
            "unknown right(s): everything",
        ),
        ({"registries": {"police": {}}}, "unknown registry: police"),
        ({"outbox": {"workers": "many"}}, "outbox.workers: expected a number"),
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
