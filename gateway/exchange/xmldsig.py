"""The edXML envelope signature (enveloped XMLDSig, ``Reference URI=""``) in constant memory.

A package's signature covers the whole document, attachments included, so verifying a 200 MB
package with a DOM-based library would hold it all in memory. Here the digest is computed over
the canonical form of the *reduced* document (see ``stream``) with each attachment's original text
streamed in at its placeholder: exact, because base64 text canonicalises to itself.

The profile is narrow on purpose (signature wrapping cannot hide behind it): exactly one
``ds:Signature``, a child of ``edXMLHeader``; exactly one ``Reference`` with ``URI=""``; the
enveloped-signature transform and at most one canonicalisation; RSA or ECDSA with SHA-256/384/512,
or RSA-SHA1 / SHA-1 digests from older systems (verified, reported as weak, never produced). That
Reference leaves the whole Signature out of what is signed, so the Signature may hold nothing but
its own parts: SignedInfo, SignatureValue and KeyInfo/X509Data/X509Certificate (at most
``MAX_CMS_CERTIFICATES`` of them, as in a PDF signature's CMS) — no ``ds:Object``, no other
element, no text: whatever else it held would reach recipients signed by no one. The certificate
chain is checked by ``signing.trust.TrustStore`` against the configured anchors.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree  # type: ignore[import-untyped,unused-ignore]

from gateway.exchange.builder import SIGNATURE_PARENT
from gateway.exchange.edxml import DS_NS, parse_bytes, q
from gateway.exchange.errors import InvalidEdxml, SignatureInvalid
from gateway.exchange.model import NS
from gateway.exchange.stream import Scan, scan_file
from signing.keys import pkcs1_not_allowed, pss_only

__all__ = [
    "EnvelopeSignature",
    "check_envelope",
    "sign_bytes",
    "sign_file",
    "verify_envelope",
]

ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
C14N_11 = "http://www.w3.org/2006/12/xml-c14n11"
_C14N = {
    EXC_C14N: (True, False),
    "http://www.w3.org/2001/10/xml-exc-c14n#WithComments": (True, True),
    "http://www.w3.org/TR/2001/REC-xml-c14n-20010315": (False, False),
    "http://www.w3.org/TR/2001/REC-xml-c14n-20010315#WithComments": (False, True),
    # C14N 1.1 differs from 1.0 only in how xml:* attributes are inherited into a subset's apex
    # (SignedInfo's): c14n_apex does each version's.
    C14N_11: (False, False),
    f"{C14N_11}#WithComments": (False, True),
}
_DIGESTS: dict[str, tuple[str, bool]] = {  # uri -> (hashlib name, weak)
    "http://www.w3.org/2001/04/xmlenc#sha256": ("sha256", False),
    "http://www.w3.org/2001/04/xmldsig-more#sha384": ("sha384", False),
    "http://www.w3.org/2001/04/xmlenc#sha512": ("sha512", False),
    "http://www.w3.org/2000/09/xmldsig#sha1": ("sha1", True),
}
_SIGS: dict[str, tuple[str, hashes.HashAlgorithm, bool]] = {  # uri -> (kind, hash, weak)
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256": ("rsa", hashes.SHA256(), False),
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384": ("rsa", hashes.SHA384(), False),
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512": ("rsa", hashes.SHA512(), False),
    "http://www.w3.org/2000/09/xmldsig#rsa-sha1": ("rsa", hashes.SHA1(), True),
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256": ("ecdsa", hashes.SHA256(), False),
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384": ("ecdsa", hashes.SHA384(), False),
}
_EC_SIZES = {256: 32, 384: 48, 521: 66}
_MAX_TRANSIT = 8  # TraceHeaders other systems may have appended after the signature


def _ds(local: str) -> str:
    return f"{{{DS_NS}}}{local}"


@dataclass
class EnvelopeSignature:
    """A verified envelope signature: who signed, with which chain, and what is weak about it."""

    signer: str
    certificate: x509.Certificate
    chain: list[str] = field(default_factory=list)
    revocation: str = "not checked"
    weaknesses: list[str] = field(default_factory=list)
    appended_by: list[str] = field(default_factory=list)  # TraceHeaders added after signing

    def as_dict(self) -> dict[str, Any]:
        return {
            "signer": self.signer,
            "chain": self.chain,
            "revocation": self.revocation,
            "weaknesses": self.weaknesses,
            "trace_headers_appended_by": self.appended_by,
        }


def _one(parent: etree._Element, tag: str, what: str) -> etree._Element:
    found = parent.findall(tag)
    if len(found) != 1:
        raise SignatureInvalid(f"{what}: expected exactly one, found {len(found)}")
    return found[0]


def _c14n(
    node: Any, algorithm: str, prefixes: list[str] | None = None, *, comments: bool = True
) -> bytes:
    """``node`` canonicalised by ``algorithm``; comments kept only if the algorithm keeps them
    and ``comments`` allows it. An inner element (SignedInfo) is canonicalised inclusively as
    the apex of its subtree, from a copy (signing.xml.c14n_apex: lxml's own is wrong)."""
    exclusive, with_comments = _C14N[algorithm]
    comments = comments and with_comments
    if not exclusive and isinstance(node, etree._Element) and node.getparent() is not None:
        from signing.xml import c14n_apex  # signing.xml loads pyHanko: only when needed

        node = c14n_apex(node, c14n11=algorithm.startswith(C14N_11))
    kwargs: dict[str, Any] = {"method": "c14n", "exclusive": exclusive, "with_comments": comments}
    if exclusive and prefixes:
        kwargs["inclusive_ns_prefixes"] = prefixes
    try:
        out: bytes = etree.tostring(node, **kwargs)
    except etree.C14NError as exc:
        # libxml2 refuses to canonicalise a relative namespace URI (xmlns:n="u"), as C14N 1.0
        # says it must; the package can then be neither verified nor signed.
        raise InvalidEdxml(f"cannot be canonicalised for its signature ({exc}): a namespace "
                           "URI must be absolute") from None  # fmt: skip
    return out


def _prefix_list(el: etree._Element) -> list[str] | None:
    inc = el.find("{http://www.w3.org/2001/10/xml-exc-c14n#}InclusiveNamespaces")
    if inc is None:
        return None
    return (inc.get("PrefixList") or "").split()


def _remove_keep_tail(el: etree._Element) -> None:
    # lxml's remove() drops the tail text with the element; the tail belongs to the parent.
    parent = el.getparent()
    assert parent is not None
    if el.tail:
        prev = el.getprevious()
        if prev is not None:
            prev.tail = (prev.tail or "") + el.tail
        else:
            parent.text = (parent.text or "") + el.tail
    parent.remove(el)


def _document_digest(
    root: etree._Element,
    signature: etree._Element | None,
    algorithm: str,
    prefixes: list[str] | None,
    hash_name: str,
    texts: Iterator[tuple[str, Iterator[bytes]]],
    drop_traces: int = 0,
) -> bytes:
    doc = copy.deepcopy(root.getroottree())
    if drop_traces:
        traces = doc.getroot().findall(
            f"{q('edXMLEnvelope')}/{q('edXMLHeader')}/{q('TraceHeaderList')}/{q('TraceHeader')}"
        )
        for th in traces[-drop_traces:]:
            _remove_keep_tail(th)
    if signature is not None:
        # check_envelope made sure there is exactly one Signature: remove its copy.
        for target in list(doc.getroot().iter(_ds("Signature"))):
            _remove_keep_tail(target)
    # XMLDSig §4.3.3.3: URI="" is the document "minus any comment nodes", so a #WithComments
    # transform has none left to keep (as xmlsec1 and every conforming verifier read it).
    canonical = _c14n(doc, algorithm, prefixes, comments=False)
    h = hashlib.new(hash_name)
    pos = 0
    for mark, chunks in texts:
        at = canonical.find(mark.encode(), pos)
        if at < 0 or canonical.find(mark.encode(), at + 1) >= 0:
            raise InvalidEdxml("attachment placeholder lost in canonicalisation")
        h.update(canonical[pos:at])
        for chunk in chunks:
            h.update(chunk)
        pos = at + len(mark)
    h.update(canonical[pos:])
    return h.digest()


def _shown_tag(el: etree._Element) -> str:
    name = etree.QName(el)
    prefix = {DS_NS: "ds:", NS: "edXML:"}.get(name.namespace or "")
    return f"{prefix}{name.localname}" if prefix else name.text


def _unsigned(where: str, what: str) -> SignatureInvalid:
    return SignatureInvalid(
        f"{where} holds {what}, which is not signed (the Reference leaves the whole ds:Signature "
        "out of what it signs): a signature carries only SignedInfo, SignatureValue and "
        "KeyInfo/X509Data/X509Certificate"
    )


def _only(parent: etree._Element, allowed: frozenset[str]) -> list[etree._Element]:
    """``parent``'s elements, each one of ``allowed``, with no text between them (comments are
    left out of every digest and read by no one: they may be there)."""
    where = _shown_tag(parent)
    children = []
    if (parent.text or "").strip():
        raise _unsigned(where, "text")
    for child in parent:
        if (child.tail or "").strip():
            raise _unsigned(where, "text")
        if not isinstance(child.tag, str):  # a comment or processing instruction
            continue
        if child.tag not in allowed:
            raise _unsigned(where, _shown_tag(child))
        children.append(child)
    return children


def _text_only(el: etree._Element) -> None:
    """``el`` holds base64 text, no element (the text before one is all that is read)."""
    for child in el:
        if isinstance(child.tag, str):
            raise _unsigned(_shown_tag(el), _shown_tag(child))


_IN_SIGNATURE = frozenset({_ds("SignedInfo"), _ds("SignatureValue"), _ds("KeyInfo")})
_IN_KEY_INFO = frozenset({_ds("X509Data")})
_IN_X509_DATA = frozenset({_ds("X509Certificate")})


def _check_contents(signature: etree._Element) -> None:
    """Refuse what the Signature holds beyond its own parts, and more certificates than a PDF
    signature may carry: KeyInfo is not signed, so anyone on the way can pad it (4,000 copies of
    a certificate cost the hub 43 s), and a ``ds:Object`` holding a MessageHeader or an
    Attachment would reach recipients unsigned (xmlsec1 verifies such a package all the same).
    SignedInfo is signed: what it holds is the signer's. Raises SignatureInvalid."""
    from signing.pdf_limits import MAX_CMS_CERTIFICATES  # loads pyHanko: only when needed

    parts = _only(signature, _IN_SIGNATURE)
    key_infos = [p for p in parts if p.tag == _ds("KeyInfo")]
    if len(key_infos) > 1:
        raise _unsigned("ds:Signature", f"{len(key_infos)} ds:KeyInfo")
    for part in parts:
        if part.tag == _ds("SignatureValue"):
            _text_only(part)
    certificates = [
        certificate
        for key_info in key_infos
        for data in _only(key_info, _IN_KEY_INFO)
        for certificate in _only(data, _IN_X509_DATA)
    ]
    if len(certificates) > MAX_CMS_CERTIFICATES:
        raise SignatureInvalid(
            f"too many certificates in KeyInfo: it carries {len(certificates)}, more than the "
            f"{MAX_CMS_CERTIFICATES} checked"
        )
    for certificate in certificates:
        _text_only(certificate)


def _certificates(signature: etree._Element) -> tuple[x509.Certificate, list[x509.Certificate]]:
    certs = []
    for el in signature.iterfind(f"{_ds('KeyInfo')}/{_ds('X509Data')}/{_ds('X509Certificate')}"):
        try:
            certs.append(
                x509.load_der_x509_certificate(base64.b64decode("".join((el.text or "").split())))
            )
        except ValueError as exc:
            raise SignatureInvalid("KeyInfo holds a certificate that cannot be read") from exc
    if not certs:
        raise SignatureInvalid("the signature carries no X509Certificate in KeyInfo")
    # XMLDSig sets no order in X509Data: the signer's certificate is the one that issues none of
    # the others, and a self-signed one (a root sent along, as some systems do, first or not) is
    # the signer only when it is alone. The chain built from the rest is checked afterwards.
    # One pass against the set of issuers, not every pair compared (4,000 certificates: 43 s).
    issuers = {c.issuer for c in certs}
    leaves = [c for c in certs if c.subject != c.issuer and c.subject not in issuers]
    leaf = leaves[0] if leaves else certs[0]
    return leaf, [c for c in certs if c is not leaf]


def _verify_value(cert: x509.Certificate, method: str, signed: bytes, value: bytes) -> None:
    kind, hash_alg, _ = _SIGS[method]
    pub = cert.public_key()
    if kind == "rsa" and pss_only(cert):  # cryptography would verify it as any RSA key's
        raise SignatureInvalid(pkcs1_not_allowed(method.rpartition("#")[2]))
    try:
        if kind == "rsa" and isinstance(pub, rsa.RSAPublicKey):
            pub.verify(value, signed, padding.PKCS1v15(), hash_alg)
        elif kind == "ecdsa" and isinstance(pub, ec.EllipticCurvePublicKey):
            n = len(value) // 2
            der = encode_dss_signature(
                int.from_bytes(value[:n], "big"), int.from_bytes(value[n:], "big")
            )
            pub.verify(der, signed, ec.ECDSA(hash_alg))
        else:
            raise SignatureInvalid("the signature method does not match the certificate's key")
    except InvalidSignature:
        raise SignatureInvalid("SignatureValue does not verify with the signer's key") from None


def check_envelope(scan: Scan) -> tuple[EnvelopeSignature, list[x509.Certificate]]:
    """Check the digest and the signature value (not yet the chain). Synchronous, CPU-bound.

    Returns the signature found and the other certificates from KeyInfo (for chain building).
    Raises SignatureInvalid (missing, malformed, outside the profile, or not matching).
    """
    root = scan.root
    sigs = list(root.iter(_ds("Signature")))
    if not sigs:
        raise SignatureInvalid("the envelope is not signed (no ds:Signature in edXMLHeader)")
    if len(sigs) > 1:
        raise SignatureInvalid(f"expected one ds:Signature, found {len(sigs)}")
    sig = sigs[0]
    parent = sig.getparent()
    if parent is None or parent.tag != SIGNATURE_PARENT or parent.getparent() is None:
        raise SignatureInvalid("ds:Signature must be a child of edXMLHeader")
    _check_contents(sig)
    si = _one(sig, _ds("SignedInfo"), "SignedInfo")
    cm = _one(si, _ds("CanonicalizationMethod"), "CanonicalizationMethod")
    cm_alg = cm.get("Algorithm", "")
    sm_alg = _one(si, _ds("SignatureMethod"), "SignatureMethod").get("Algorithm", "")
    if cm_alg not in _C14N:
        raise SignatureInvalid(f"unsupported canonicalisation {cm_alg!r}")
    if sm_alg not in _SIGS:
        raise SignatureInvalid(f"unsupported signature method {sm_alg!r}")
    ref = _one(si, _ds("Reference"), "Reference")
    if ref.get("URI") != "":
        raise SignatureInvalid('the Reference must cover the whole package (URI="")')
    transforms = [
        t.get("Algorithm", "") for t in ref.iterfind(f"{_ds('Transforms')}/{_ds('Transform')}")
    ]
    if not transforms or transforms[0] != ENVELOPED or len(transforms) > 2:
        raise SignatureInvalid("Transforms must be enveloped-signature then one canonicalisation")
    ref_c14n = (
        transforms[1] if len(transforms) == 2 else "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
    )
    if ref_c14n not in _C14N:
        raise SignatureInvalid(f"unsupported canonicalisation {ref_c14n!r}")
    dm_alg = _one(ref, _ds("DigestMethod"), "DigestMethod").get("Algorithm", "")
    if dm_alg not in _DIGESTS:
        raise SignatureInvalid(f"unsupported digest method {dm_alg!r}")
    hash_name, weak_digest = _DIGESTS[dm_alg]
    try:
        expected = base64.b64decode(
            "".join((_one(ref, _ds("DigestValue"), "DigestValue").text or "").split())
        )
        value = base64.b64decode(
            "".join((_one(sig, _ds("SignatureValue"), "SignatureValue").text or "").split())
        )
    except ValueError as exc:
        raise SignatureInvalid("DigestValue or SignatureValue is not base64") from exc

    prefixes = None
    if len(transforms) == 2:
        t_el = ref.findall(f"{_ds('Transforms')}/{_ds('Transform')}")[1]
        prefixes = _prefix_list(t_el)
    actual = _document_digest(root, sig, ref_c14n, prefixes, hash_name, scan.texts())
    appended: list[str] = []
    if actual != expected:
        # Systems that handle a package append their TraceHeader after it was signed: accept
        # exactly that (the last k TraceHeaders removed restore the signed document), nothing else.
        traces = root.findall(
            f"{q('edXMLEnvelope')}/{q('edXMLHeader')}/{q('TraceHeaderList')}/{q('TraceHeader')}"
        )
        for k in range(1, min(len(traces), _MAX_TRANSIT) + 1):
            if expected == _document_digest(
                root, sig, ref_c14n, prefixes, hash_name, scan.texts(), drop_traces=k
            ):
                appended = [(t.findtext(q("OrganId")) or "").strip() for t in traces[-k:]]
                break
        else:
            raise SignatureInvalid("digest mismatch: the package was changed after it was signed")
    leaf, others = _certificates(sig)
    _verify_value(leaf, sm_alg, _c14n(si, cm_alg, _prefix_list(cm)), value)
    weaknesses = []
    if weak_digest:
        weaknesses.append("SHA-1 digest")
    if _SIGS[sm_alg][2]:
        weaknesses.append("RSA-SHA1 signature")
    cn = leaf.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    signer = str(cn[0].value) if cn else leaf.subject.rfc4514_string()
    return EnvelopeSignature(signer, leaf, weaknesses=weaknesses, appended_by=appended), others


async def verify_envelope(scan: Scan, trust: Any) -> EnvelopeSignature:
    """Digest, signature value and chain (``trust``: a ``signing.trust.TrustStore``).

    Raises SignatureInvalid (the chain's UntrustedSigner is translated into it).
    """
    import asyncio

    from signing.errors import SignatureInvalid as SigningInvalid

    result, others = await asyncio.to_thread(check_envelope, scan)
    try:
        chain = await trust.validate(result.certificate, others)
    except SigningInvalid as exc:
        raise SignatureInvalid(f"untrusted signer: {exc.reason}", signer=result.signer) from exc
    result.chain = list(chain.chain)
    result.revocation = chain.revocation
    result.weaknesses.extend(w for w in chain.weaknesses if w not in result.weaknesses)
    return result


# -- signing ----------------------------------------------------------------------------------


def _signature_element(digest: bytes, key: Any) -> etree._Element:
    """A ds:Signature over ``digest`` (SHA-256, exclusive C14N) made with a ``signing`` key."""
    sig = etree.Element(_ds("Signature"), nsmap={"ds": DS_NS})
    si = etree.SubElement(sig, _ds("SignedInfo"))
    etree.SubElement(si, _ds("CanonicalizationMethod"), Algorithm=EXC_C14N)
    method = (
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
        if key.algorithm == "rsa"
        else "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"
    )
    etree.SubElement(si, _ds("SignatureMethod"), Algorithm=method)
    ref = etree.SubElement(si, _ds("Reference"), URI="")
    tr = etree.SubElement(ref, _ds("Transforms"))
    etree.SubElement(tr, _ds("Transform"), Algorithm=ENVELOPED)
    etree.SubElement(tr, _ds("Transform"), Algorithm=EXC_C14N)
    etree.SubElement(ref, _ds("DigestMethod"), Algorithm="http://www.w3.org/2001/04/xmlenc#sha256")
    etree.SubElement(ref, _ds("DigestValue")).text = base64.b64encode(digest).decode()
    raw = key.sign(_c14n(si, EXC_C14N))
    if key.algorithm == "ecdsa":
        r, s = decode_dss_signature(raw)
        n = _EC_SIZES.get(key.key_size, (key.key_size + 7) // 8)
        raw = r.to_bytes(n, "big") + s.to_bytes(n, "big")
    etree.SubElement(sig, _ds("SignatureValue")).text = base64.b64encode(raw).decode()
    x5 = etree.SubElement(etree.SubElement(sig, _ds("KeyInfo")), _ds("X509Data"))
    for cert in (key.certificate, *key.chain):
        etree.SubElement(x5, _ds("X509Certificate")).text = base64.b64encode(
            cert.public_bytes(Encoding.DER)
        ).decode()
    return sig


def sign_bytes(data: bytes, key: Any) -> bytes:
    """Sign a (small) package or status message in memory. Raises InvalidEdxml."""
    root = parse_bytes(data)
    header = root.find(f"{q('edXMLEnvelope')}/{q('edXMLHeader')}")
    if header is None:
        raise InvalidEdxml("no edXMLHeader to put the signature in")
    digest = _document_digest(root, None, EXC_C14N, None, "sha256", iter(()))
    header.append(_signature_element(digest, key))
    out: bytes = etree.tostring(root.getroottree(), xml_declaration=True, encoding="UTF-8")
    return out


def sign_file(src: Path, dst: Path, key: Any) -> None:
    """Sign the package at ``src`` into ``dst`` in constant memory. Raises InvalidEdxml."""
    scan = scan_file(src, None, max_bytes=1 << 62)
    if scan.header_end < 0:
        raise InvalidEdxml("no edXMLHeader to put the signature in")
    digest = _document_digest(scan.root, None, EXC_C14N, None, "sha256", scan.texts())
    sig = etree.tostring(_signature_element(digest, key))
    with src.open("rb") as fin, dst.open("wb") as fout:
        left = scan.header_end
        while left:
            chunk = fin.read(min(left, 1 << 20))
            fout.write(chunk)
            left -= len(chunk)
        fout.write(sig)
        shutil.copyfileobj(fin, fout, 1 << 20)
