"""``audit verify-bundle`` on a file that is no evidence bundle at all (not a zip, a zip without a
manifest): one line, exit 1. Found by probing: it printed the report ('bundle FAILED: …'), a note
about revocation and the error, three lines about nothing verified."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.cli import main
from signing.testing import TestPKI


def _zip_without_manifest(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("README.txt", "not a bundle")


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_a_file_that_is_no_bundle_is_one_line(tmp_path: Path, pki: TestPKI, as_json: bool) -> None:
    not_zip, no_manifest = tmp_path / "notes.zip", tmp_path / "other.zip"
    not_zip.write_text("hello")
    _zip_without_manifest(no_manifest)
    for bundle, reason in [
        (not_zip, "File is not a zip file"),
        (no_manifest, "'manifest.json'"),  # the missing member (a KeyError's words)
    ]:
        args = ["audit", "verify-bundle", str(bundle), "--trust", str(pki.root_pem)]
        result = CliRunner().invoke(main, args + (["--json"] if as_json else []))
        assert result.exit_code == 1, result.output
        assert result.output == f"Error: not an evidence bundle: {reason}\n"
