"""xmlsec1, the independent tool, for tests: run it, and the unsigned Signature it fills in."""

from __future__ import annotations

import subprocess

from signing.xml import DS

RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
ECDSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"


def xmlsec1(*args: str) -> tuple[int, str]:
    """Its exit status and output."""
    done = subprocess.run(["xmlsec1", *args], capture_output=True, text=True, check=False)
    return done.returncode, done.stdout + done.stderr


def signature_template(c14n: str, method: str = RSA_SHA256, prefix: str = "") -> str:
    """An enveloped Signature for ``xmlsec1 --sign`` (one whole-document reference, SHA-256,
    room for the signer's certificate and its issuer), canonicalised by ``c14n``: in the default
    namespace, as .NET SignedXml writes it, or with ``prefix``."""
    signature = (
        f'<Signature xmlns="{DS}"><SignedInfo><CanonicalizationMethod Algorithm="{c14n}"/>'
        f'<SignatureMethod Algorithm="{method}"/><Reference URI=""><Transforms>'
        '<Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>'
        "</Transforms>"
        '<DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/><DigestValue/>'
        "</Reference></SignedInfo><SignatureValue/><KeyInfo><X509Data><X509Certificate/>"
        "<X509Certificate/></X509Data></KeyInfo></Signature>"
    )
    if prefix:
        signature = signature.replace("<", f"<{prefix}:").replace(f"<{prefix}:/", f"</{prefix}:")
        signature = signature.replace("xmlns=", f"xmlns:{prefix}=")
    return signature
