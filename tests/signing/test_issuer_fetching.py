"""A certificate under check is not trusted yet: the address its AIA names is never called.

Before, path building fetched a missing issuer from that address: anyone who could have a signature
checked could make the gateway send requests wherever they liked (or hold each verification until a
silent address timed out). The certificate here is otherwise good: given its intermediate, it
validates.
"""

from __future__ import annotations

import datetime as dt

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID

from signing.errors import UntrustedSigner
from signing.testing import TestPKI


def _leaf_naming(pki: TestPKI, ca_issuers_url: str) -> tuple[x509.Certificate, x509.Certificate]:
    """A signing certificate from the PKI's intermediate whose AIA names ``ca_issuers_url``."""
    inter = x509.load_pem_x509_certificate(pki.intermediate_pem.read_bytes())
    inter_key = serialization.load_pem_private_key(
        (pki.directory / "intermediate.key.pem").read_bytes(), None
    )
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "aia-signer")]))
        .issuer_name(inter.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, True, False, False, False, False, False, False, False), True
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(inter.public_key()),  # type: ignore[arg-type]
            False,
        )
        .add_extension(
            x509.AuthorityInformationAccess(
                [
                    x509.AccessDescription(
                        AuthorityInformationAccessOID.CA_ISSUERS,
                        x509.UniformResourceIdentifier(ca_issuers_url),
                    )
                ]
            ),
            False,
        )
        .sign(inter_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    return leaf, inter


async def test_the_address_an_untrusted_certificate_names_is_never_called(pki: TestPKI) -> None:
    calls: list[str] = []
    inter_der = x509.load_pem_x509_certificate(pki.intermediate_pem.read_bytes()).public_bytes(
        serialization.Encoding.DER
    )

    async def issuer(request: web.Request) -> web.Response:
        calls.append(request.path)
        return web.Response(body=inter_der, content_type="application/pkix-cert")

    app = web.Application()
    app.router.add_get("/issuer.cer", issuer)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        leaf, inter = _leaf_naming(pki, str(server.make_url("/issuer.cer")))
        trust = pki.trust(revocation="soft-fail")  # fetching on, as by default
        with pytest.raises(UntrustedSigner, match="no chain to a configured trust anchor"):
            await trust.validate(leaf)
        assert calls == []
        # Control: the certificate is good once its intermediate comes with it.
        assert (await trust.validate(leaf, [inter])).chain[0] == "aia-signer"
    finally:
        await server.close()
