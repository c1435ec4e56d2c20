"""An intermediate CA listed among the anchors (beside its root, or alone) decides as the root does.

The README advises listing a CA's intermediate in ``[signing] trust`` for senders that leave it
out, and an operator may give ``client_ca`` the issuing intermediate with or without the root.
pyhanko-certvalidator took such an anchor as the end of the path and could then not place the
CRLs it signs ("the chain of trust for the CRL issuer could not be determined"): a good
certificate whose CA tells its status by CRL alone was "revocation status unknown", refused even
under soft-fail, and a revoked one was refused for the wrong reason.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from signing.cli import verify
from signing.errors import UntrustedSigner
from signing.keys import FileKey
from signing.testing import SAMPLE_XML, TestPKI, serve_pki
from signing.trust import TrustStore
from signing.xml import sign_xml

GOOD_CRL_ONLY = "good-crl-only"
ROOT = "lienthong Test Root CA"
INTERMEDIATE = "lienthong Test Intermediate CA"


def _root(pki: TestPKI) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pki.root_pem.read_bytes())


def _intermediate(pki: TestPKI) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pki.intermediate_pem.read_bytes())


@pytest.fixture(scope="module")
def crl_only_key(pki: TestPKI) -> FileKey:
    """A good certificate from the test intermediate with a CRL distribution point and no OCSP
    address: only the intermediate's CRL (which does not list it) tells its status."""
    private = ec.generate_private_key(ec.SECP256R1())
    cert = pki.issue(GOOD_CRL_ONLY, private.public_key())
    assert cert.extensions.get_extension_for_class(x509.CRLDistributionPoints)
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess)
    return FileKey(private, cert, (_intermediate(pki),))


def _anchors(pki: TestPKI, which: str) -> list[x509.Certificate]:
    return {
        "root": [_root(pki)],
        "root+intermediate": [_root(pki), _intermediate(pki)],
        "intermediate+root": [_intermediate(pki), _root(pki)],
        "intermediate": [_intermediate(pki)],
    }[which]


ANCHOR_SETS = ["root", "root+intermediate", "intermediate+root", "intermediate"]
# The signer's certificate with its intermediate, or alone (the root alone then has no chain).
SETUPS = [
    pytest.param(anchors, sent, id=f"{anchors}-{'intermediate-sent' if sent else 'leaf-alone'}")
    for anchors in ANCHOR_SETS
    for sent in (True, False)
    if sent or anchors != "root"
]


@pytest.mark.parametrize("revocation", ["soft-fail", "hard-fail"])
@pytest.mark.parametrize(("anchors", "sent"), SETUPS)
async def test_a_good_crl_only_certificate_is_good(
    pki, pki_server, crl_only_key, anchors, revocation, sent
):
    trust = TrustStore(_anchors(pki, anchors), revocation=revocation)
    others = [_intermediate(pki)] if sent else []
    result = await trust.validate(crl_only_key.certificate, others)
    assert result.revocation == "good"


@pytest.mark.parametrize("revocation", ["soft-fail", "hard-fail"])
@pytest.mark.parametrize(("anchors", "sent"), SETUPS)
@pytest.mark.parametrize(
    ("subject", "source"), [("revoked-crl", "CRL"), ("revoked-ocsp", "OCSP"), ("revoked", "OCSP")]
)
async def test_a_revoked_certificate_is_refused_as_revoked(
    pki, pki_server, anchors, revocation, sent, subject, source
):
    trust = TrustStore(_anchors(pki, anchors), revocation=revocation)
    others = [_intermediate(pki)] if sent else []
    with pytest.raises(UntrustedSigner) as caught:
        await trust.validate(pki.certificate(subject), others)
    assert caught.value.kind == "revoked"
    assert str(caught.value) == f"certificate revoked ({source}): {subject}"


@pytest.mark.parametrize("anchors", ANCHOR_SETS)
async def test_a_good_certificate_with_ocsp_and_crl_stays_good(pki, pki_server, anchors):
    trust = TrustStore(_anchors(pki, anchors), revocation="hard-fail")
    result = await trust.validate(pki.certificate("agency-000.00.11.H53"), [_intermediate(pki)])
    assert result.revocation == "good"


@pytest.mark.parametrize("anchors", ["root+intermediate", "intermediate+root"])
async def test_an_intermediate_beside_its_root_completes_the_chain_to_the_root(
    pki, pki_server, crl_only_key, anchors
):
    # Listed beside its root, the intermediate helps build the chain and is itself checked
    # under the root (its validity, the root's CRL), as it is with the root alone.
    trust = TrustStore(_anchors(pki, anchors), revocation="hard-fail")
    result = await trust.validate(crl_only_key.certificate, [])
    assert result.chain == [GOOD_CRL_ONLY, INTERMEDIATE, ROOT]
    result = await trust.validate(pki.certificate("agency-000.00.11.H53"), [])
    assert result.chain == ["agency-000.00.11.H53", INTERMEDIATE, ROOT]


class _RootRevokesIntermediate(TestPKI):
    """The same PKI, its root's CRL listing the intermediate."""

    __test__ = False

    def crls(self) -> dict[str, bytes]:
        out = super().crls()
        root, key = self._ca("root")
        now = dt.datetime.now(dt.UTC)
        crl = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(root.subject)
            .last_update(now - dt.timedelta(minutes=5))
            .next_update(now + dt.timedelta(days=7))
            .add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(_intermediate(self).serial_number)
                .revocation_date(now - dt.timedelta(days=1))
                .build()
            )
            .sign(key, hashes.SHA256())
        )
        out["root.crl"] = crl.public_bytes(serialization.Encoding.DER)
        return out


@pytest.mark.parametrize("anchors", ["root", "root+intermediate", "intermediate+root"])
async def test_an_intermediate_its_root_revoked_is_refused_though_listed(pki, anchors):
    revoking = _RootRevokesIntermediate(pki.directory, pki.base_url, pki.index)
    trust = TrustStore(_anchors(pki, anchors), revocation="soft-fail")
    async with serve_pki(revoking):
        with pytest.raises(UntrustedSigner) as caught:
            await trust.validate(pki.certificate("agency-000.00.11.H53"), [_intermediate(pki)])
    assert caught.value.kind == "revoked"
    assert str(caught.value) == "certificate revoked (CRL): an intermediate certificate"


async def test_an_intermediate_alone_is_the_end_of_the_chain(pki, pki_server, crl_only_key):
    trust = TrustStore(_anchors(pki, "intermediate"), revocation="hard-fail")
    result = await trust.validate(crl_only_key.certificate, [])
    assert result.chain == [GOOD_CRL_ONLY, INTERMEDIATE]


async def test_without_the_crl_server_soft_fail_still_soft_fails(pki, crl_only_key):
    # No CRL to be had (nothing serves it): unknown, soft-failed, not "good".
    trust = TrustStore(_anchors(pki, "root+intermediate"), revocation="soft-fail")
    trust.fetch_timeout = 0.5
    result = await trust.validate(crl_only_key.certificate, [])
    assert result.revocation == "unknown (soft-fail)"
    hard = TrustStore(_anchors(pki, "intermediate"), revocation="hard-fail", fetch_timeout=0.5)
    with pytest.raises(UntrustedSigner, match="revocation status unknown"):
        await hard.validate(crl_only_key.certificate, [])


async def _verify_cli(*args: str) -> tuple[int, str]:
    # The command runs its own event loop: on a thread, so the CRL server on this one answers.
    result = await asyncio.to_thread(CliRunner().invoke, verify, list(args))
    return result.exit_code, result.output


async def test_verify_xml_with_root_and_intermediate_as_the_root_alone(
    pki, pki_server, crl_only_key, tmp_path
):
    good = tmp_path / "good.xml"
    good.write_bytes(await sign_xml(SAMPLE_XML, crl_only_key, level="B-B"))
    revoked = tmp_path / "revoked.xml"
    revoked.write_bytes(await sign_xml(SAMPLE_XML, pki.key("revoked-crl"), level="B-B"))
    root, inter = str(pki.root_pem), str(pki.intermediate_pem)
    for trust in (["--trust", root], ["--trust", root, "--trust", inter], ["--trust", inter]):
        code, out = await _verify_cli(
            "xml", str(good), *trust, "--revocation", "soft-fail", "--json"
        )
        assert code == 0, (trust, out)
        assert json.loads(out)["signatures"][0]["revocation"] == "good"
        code, out = await _verify_cli("xml", str(revoked), *trust, "--revocation", "soft-fail")
        assert code == 1 and "INVALID" in out, (trust, out)
        assert "certificate revoked (CRL): revoked-crl" in out, (trust, out)
