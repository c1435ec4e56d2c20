import importlib

import pytest

from connectors.api import PermanentError, TransientError
from connectors.soap import Fault, SandboxLedger, SoapFault, fault_class, parse_request

ENV = b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>%s</s:Body></s:Envelope>'


def test_fault_codes_classified() -> None:
    assert fault_class(Fault("Server", "busy")) is TransientError
    assert fault_class(Fault("Receiver", "busy")) is TransientError
    assert fault_class(Fault("Client", "bad")) is PermanentError
    assert fault_class(Fault("Sender", "bad")) is PermanentError


def test_parse_request_returns_the_operation() -> None:
    op = parse_request(ENV % b'<Op xmlns="urn:x"><A>1</A></Op>')
    assert op.tag == "{urn:x}Op"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (
            b'<!DOCTYPE s [<!ENTITY x SYSTEM "file:///etc/passwd">]>' + ENV % b"<Op>&x;</Op>",
            "XML_DOCTYPE",
        ),
        (b"<!doctype html><html/>", "XML_DOCTYPE"),
        (b"<a>", "XML_SYNTAX"),
        (b"x" * (1024 * 1024 + 1), "XML_TOO_LARGE"),
    ],
)
def test_parse_request_refuses(body: bytes, code: str) -> None:
    with pytest.raises(SoapFault) as info:
        parse_request(body)
    assert info.value.code == "Client" and info.value.error_code == code


def test_ledger_replays_and_refuses_reuse() -> None:
    ledger = SandboxLedger()
    assert ledger.replay("k", b"a") is None
    ledger.record("k", b"a", "x.write", b"answer")
    assert ledger.replay("k", b"a") == b"answer"
    with pytest.raises(SoapFault):
        ledger.replay("k", b"b")
    assert ledger.stats() == {"requests": 0, "writes": {"x.write": 1}, "replays": 1}


@pytest.mark.parametrize(
    "module",
    [
        "connectors.soap",
        "connectors.text",
        "connectors.testdata",
        "connectors.population",
        "connectors.population.mapping",
        "connectors.population.sandbox",
        "connectors.civil_status",
        "connectors.civil_status.mapping",
        "connectors.civil_status.sandbox",
    ],
)
def test_all_is_honest(module: str) -> None:
    mod = importlib.import_module(module)
    for name in mod.__all__:
        assert hasattr(mod, name), f"{module}.{name}"
