"""The public surface: ``signing.__all__`` is honest, and signing stands alone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# A fresh interpreter outside tests/: under pytest, tests/signing shadows the package's __init__.
CHECK = """
import json, sys, signing
names = [n for n in dir(signing) if not n.startswith('_')]
missing = [n for n in signing.__all__ if not hasattr(signing, n)]
print(json.dumps({"all": sorted(signing.__all__), "missing": missing,
                  "foreign": sorted(m for m in sys.modules if m.split('.')[0] in
                                    ('gateway', 'connectors'))}))
"""


def test_all_matches_importable_and_no_gateway_imports():
    import signing.cli

    out = subprocess.run(
        [sys.executable, "-c", CHECK + "import signing.cli"],
        cwd="/",
        capture_output=True,
        text=True,
        check=True,
    )
    data = json.loads(out.stdout)
    assert data["missing"] == []
    assert data["foreign"] == []  # signing never imports gateway or connectors
    expected = {
        "KeyLoadError",
        "SignatureInvalid",
        "SigningError",
        "TimestampError",
        "UntrustedSigner",
        "SigningKey",
        "load_key",
        "TrustStore",
        "SignatureReport",
        "sign_xml",
        "verify_xml",
        "XMLVerification",
        "sign_pdf",
        "verify_pdf",
        "request_timestamp",
        "serve_tsa",
        "TestPKI",
        "serve_pki",
    }
    assert expected <= set(data["all"])
    assert [c.name for c in signing.cli.commands] == ["sign", "verify", "pki", "tsa"]


def test_error_hierarchy():
    from signing import errors

    assert issubclass(errors.UntrustedSigner, errors.SignatureInvalid)
    for cls in (errors.KeyLoadError, errors.SignatureInvalid, errors.TimestampError):
        assert issubclass(cls, errors.SigningError)
    assert errors.SignatureInvalid("digest mismatch").reason == "digest mismatch"
