"""Which certificates may sign documents: KeyUsage and ExtendedKeyUsage (``usage="signing"``)."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from signing.errors import UntrustedSigner
from signing.trust import check_usage

DOCUMENT_SIGNING = ObjectIdentifier("1.3.6.1.5.5.7.3.36")
KEY = ec.generate_private_key(ec.SECP256R1())


def _cert(*purposes: ObjectIdentifier) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "signer")])
    b = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(KEY.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
    )
    if purposes:
        b = b.add_extension(x509.ExtendedKeyUsage(list(purposes)), critical=False)
    return b.sign(KEY, hashes.SHA256())


@pytest.mark.parametrize(
    "purposes",
    [
        (),  # no EKU: KeyUsage alone decides
        (ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.EMAIL_PROTECTION),
        (DOCUMENT_SIGNING,),
        (ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,),
        (ExtendedKeyUsageOID.TIME_STAMPING, ExtendedKeyUsageOID.EMAIL_PROTECTION),
    ],
)
def test_document_signers(purposes: tuple[ObjectIdentifier, ...]) -> None:
    check_usage(_cert(*purposes), "signing")


@pytest.mark.parametrize(
    ("purposes", "names"),
    [
        ((ExtendedKeyUsageOID.TIME_STAMPING,), "timeStamping"),
        ((ExtendedKeyUsageOID.OCSP_SIGNING,), "OCSPSigning"),
        (
            (ExtendedKeyUsageOID.OCSP_SIGNING, ExtendedKeyUsageOID.TIME_STAMPING),
            "OCSPSigning, timeStamping",
        ),
        ((ExtendedKeyUsageOID.SERVER_AUTH,), "serverAuth"),
        ((ExtendedKeyUsageOID.CODE_SIGNING,), "codeSigning"),
    ],
)
def test_keys_dedicated_to_another_service(
    purposes: tuple[ObjectIdentifier, ...], names: str
) -> None:
    with pytest.raises(UntrustedSigner) as info:
        check_usage(_cert(*purposes), "signing")
    assert (
        info.value.reason
        == f"extended key usage ({names}) does not allow signing documents: signer"
    )
