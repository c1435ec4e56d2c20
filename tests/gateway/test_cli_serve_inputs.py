"""A store URL the gateway cannot open and a log level logging does not know are one line and a
non-zero exit from every command that takes them, never a traceback."""

from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.cli import main
from gateway.settings import SettingsError, settings_from_mapping

EXPECTED = "store.url: expected sqlite:///path.db or postgresql://user@host/db"


@pytest.mark.parametrize(
    ("url", "got"),
    [
        ("mysql://gateway:hunter2@db.example.vn/lienthong", "a mysql: URL"),
        ("http://db.example.vn/", "a http: URL"),
        ("postgresql:/db", "a postgresql: URL"),
        ("lienthong.db", "no scheme"),
        ("", "no scheme"),
    ],
)
def test_a_store_url_no_store_opens_is_refused_at_load(url: str, got: str) -> None:
    with pytest.raises(SettingsError) as info:
        settings_from_mapping({"store": {"url": url}}, environ={})
    assert str(info.value) == f"{EXPECTED}, got {got}"
    assert "hunter2" not in str(info.value)  # the rest of the URL may hold its password


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///lienthong.db",
        "sqlite:////var/lib/lienthong/lienthong.db",
        "sqlite:relative.db",
        "postgresql://gateway@db.example.vn:5432/lienthong",
        "postgres://db.example.vn/lienthong?options=-csearch_path%3Dlt",
    ],
)
def test_the_store_urls_open_store_takes_load(url: str) -> None:
    assert settings_from_mapping({"store": {"url": url}}, environ={}).store.url == url


SQLITE_FORMS = "store.url: expected sqlite:///relative/path.db or sqlite:////absolute/path.db"


@pytest.mark.parametrize(
    "url",
    [
        "sqlite://probeops-hostform/gw.db",  # was the store /probeops-hostform/gw.db
        "sqlite://localhost/gw.db",
        "sqlite://gw.db",
        "sqlite:///gw.db?mode=ro",  # was a file named 'gw.db?mode=ro'
        "sqlite:////var/lib/lienthong/gw.db?cache=shared",
        "sqlite:///gw.db#x",
        "sqlite:///",
        "sqlite://",
        "sqlite:",
    ],
)
def test_a_sqlite_url_with_a_host_a_query_or_no_path_is_refused_at_load(url: str) -> None:
    with pytest.raises(SettingsError) as info:
        settings_from_mapping({"store": {"url": url}}, environ={})
    assert str(info.value).startswith(SQLITE_FORMS), info.value
    assert str(info.value).endswith(f"got {url!r}")


def test_the_cli_refuses_a_sqlite_host_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "lienthong.toml"
    config.write_text('[store]\nurl = "sqlite://probeops-hostform/gw.db"\n')
    result = CliRunner().invoke(main, ["outbox", "list", "--config", str(config)])
    assert result.exit_code == 1, result.output
    [line] = result.output.splitlines()
    assert line.startswith(f"Error: {config}: {SQLITE_FORMS}"), line  # not "no store at //…"


def test_a_store_url_from_the_environment_is_checked_too() -> None:
    with pytest.raises(SettingsError, match="got a mysql: URL"):
        settings_from_mapping({}, environ={"LIENTHONG_STORE_URL": "mysql://h/x"})


# Every command that reads --config.
COMMANDS = [
    ["serve"],
    ["outbox", "list"],
    ["outbox", "replay", "1"],
    ["flows", "resume", "000.00.00.H41-261122-0001"],
    ["audit", "verify"],
    ["audit", "query"],
    ["audit", "export", "--dossier", "000.00.00.H41-261122-0001", "out.zip"],
    ["docs", "inbox"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_refuses_an_unsupported_store_in_one_line(
    tmp_path: Path, command: list[str]
) -> None:
    config = tmp_path / "lienthong.toml"
    config.write_text('[store]\nurl = "mysql://localhost/x"\n')
    result = CliRunner().invoke(main, [*command, "--config", str(config)])
    assert result.exit_code == 1, result.output
    assert result.output.splitlines() == [f"Error: {config}: {EXPECTED}, got a mysql: URL"]
    assert not (tmp_path / "out.zip").exists()


def test_an_unknown_log_level_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["serve", "--log-level", "LOUD"], prog_name="lienthong")
    assert result.exit_code == 2
    lines = result.output.splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output
    assert lines[0].startswith("Error: lienthong serve: Invalid value for '--log-level': 'LOUD'")


@pytest.mark.parametrize(("given", "level"), [("debug", "DEBUG"), ("Warning", "WARNING")])
def test_a_log_level_in_any_case_reaches_logging_as_its_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: str, level: str
) -> None:
    import gateway.cli
    import gateway.logs

    seen: list[str] = []
    monkeypatch.setattr(gateway.logs, "configure_logging", seen.append)

    def stop(*_: object, **__: object) -> None:
        raise SettingsError("stopped before serving")

    monkeypatch.setattr(gateway.cli, "build_app", stop)
    config = tmp_path / "lienthong.toml"
    config.write_text('[store]\nurl = "sqlite:///gw.db"\n')
    result = CliRunner().invoke(main, ["serve", "--log-level", given, "--config", str(config)])
    assert result.output.splitlines() == ["Error: stopped before serving"]
    assert seen == [level]
