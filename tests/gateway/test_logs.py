"""The gateway's JSON log lines."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from gateway.logs import JsonFormatter


def test_a_traceback_keeps_no_personal_id() -> None:
    """An exception's text is foreign words (a registry's, a library's quoting a value): its
    traceback may carry a personal id or card number, as a registry's error does, and logs are
    shipped and read more widely than the audit log. Runs of nine digits or more are withheld,
    as they are from the audit log's free text; the rest of the traceback is kept."""
    try:
        raise KeyError("no household for 019053987654 (card DN4797924134567)")
    except KeyError:
        record = logging.getLogger("t").makeRecord(
            "t", logging.ERROR, __file__, 1, "lookup failed", None, sys.exc_info()
        )
    entry = json.loads(JsonFormatter().format(record))
    assert "019053987654" not in entry["error"] and "4797924134567" not in entry["error"]
    assert "no household for [number withheld] (card DN[number withheld])" in entry["error"]
    assert entry["error"].startswith("Traceback") and "KeyError" in entry["error"]
    assert entry["message"] == "lookup failed"


# A certificate whose serial number is negative, as anyone may put in an edXML envelope's KeyInfo:
# cryptography loads it with a CryptographyDeprecationWarning (a UserWarning, shown by default).
_WARNS = """
import datetime, logging
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from gateway.logs import configure_logging

configure_logging("INFO")
key = ec.generate_private_key(ec.SECP256R1())
name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "agency")])
now = datetime.datetime.now(datetime.UTC)
cert = (
    x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
    .serial_number(0x7F1234).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
    .sign(key, hashes.SHA256())
)
der = bytearray(cert.public_bytes(serialization.Encoding.DER))
der[der.find(bytes([2, 3, 0x7F, 0x12, 0x34])) + 2] = 0xFF  # the serial's sign bit set
x509.load_der_x509_certificate(bytes(der))
logging.getLogger("lienthong").info("loaded")
"""


def test_a_librarys_warning_is_one_json_line_of_the_log() -> None:
    """Found by probing: an edXML envelope whose KeyInfo certificate had a negative serial
    number made cryptography warn while the hub checked it, and Python printed the warning on
    serve's stderr as two lines of plain text (the file, the line of code), in a log that is
    otherwise one JSON object a line. Warnings are logged, as JSON lines, by ``py.warnings``."""
    import subprocess

    done = subprocess.run(
        [sys.executable, "-c", _WARNS],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        check=True,
    )
    entries = [json.loads(line) for line in done.stderr.splitlines()]  # each line, or this fails
    warned = [e for e in entries if e["logger"] == "py.warnings"]
    assert len(warned) == 1, entries
    assert warned[0]["level"] == "warning"
    assert "CryptographyDeprecationWarning" in warned[0]["message"]
    assert entries[-1]["message"] == "loaded"


def test_a_traceback_keeps_its_amounts_of_money() -> None:
    """An amount written the Vietnamese way ("2.000.000.000đ") is no personal id and is kept; a
    personal id before a currency word is withheld all the same (tests/audit/test_withhold_amounts)."""
    try:
        raise ValueError("mức 2.000.000.000đ vượt hạn mức của 079 198 105 555 đồng")
    except ValueError:
        record = logging.getLogger("t").makeRecord(
            "t", logging.ERROR, __file__, 1, "payment failed", None, sys.exc_info()
        )
    error = json.loads(JsonFormatter().format(record))["error"]
    assert "079 198 105 555" not in error
    assert "ValueError: mức 2.000.000.000đ vượt hạn mức của [number withheld] đồng" in error
