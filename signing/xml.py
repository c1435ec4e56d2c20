"""Enveloped XML signatures: XMLDSig, XAdES-B-B and XAdES-B-T (XAdES-T).

Signing is a lean lxml signer (signxml costs ~420 µs per document beyond the key operation): one
``Reference URI=""`` with the enveloped-signature and exclusive C14N transforms, exclusive C14N of
SignedInfo, SHA-256, RSA or ECDSA, the signer's chain in KeyInfo; for XAdES a second reference to
``SignedProperties`` (with an explicit exc-c14n transform: signxml's XAdES signer drops it, see
spec pitfall 1) and, for B-T, an RFC 3161 ``SignatureTimeStamp`` over the canonical SignatureValue.
xmlsec1 verifies what this writes (tests/interop).

Verification refuses any DOCTYPE before parsing, caps the size and the number of nodes (the
signer refuses what the verifier would), reports SHA-1 as a weakness (or refuses it, if asked),
checks the reference profile (exactly one signature, one whole-document reference, no duplicate
Ids), then lets signxml check digests and the signature against the KeyInfo leaf, and the
TrustStore check the chain. Only the signed content (re-parsed from its canonical form) is
returned.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import functools
import hashlib
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urljoin

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from lxml import etree

from .errors import SignatureInvalid, SigningError, TimestampError, UntrustedSigner
from .keys import SigningKey, pkcs1_not_allowed, pss_only
from .report import SignatureReport
from .timestamps import TimestampInfo, request_timestamp, verify_timestamp
from .trust import TrustStore, common_name

__all__ = [
    "NodeCounter",
    "TooManyNodes",
    "XMLVerification",
    "c14n_apex",
    "sign_xml",
    "sign_xml_sync",
    "verify_xml",
    "verify_xml_sync",
]

DS = "http://www.w3.org/2000/09/xmldsig#"
XADES = "http://uri.etsi.org/01903/v1.3.2#"
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
C14N_11 = "http://www.w3.org/2006/12/xml-c14n11"
XML_NS = "http://www.w3.org/XML/1998/namespace"
# What C14N 1.1 inherits into a subset's apex as 1.0 does (xml:base is joined, xml:id is not).
_C14N11_INHERITED = (f"{{{XML_NS}}}lang", f"{{{XML_NS}}}space")
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
SIG_ALGS = {
    "rsa": "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
    "ecdsa": "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
}
SIGNED_PROPS_TYPE = "http://uri.etsi.org/01903#SignedProperties"
SHA1 = "http://www.w3.org/2000/09/xmldsig#sha1"
# SHA-1, in older documents: verified and reported as a weakness (spec: "verify them and report
# them as weak, never produce them"), as for PDF and edXML envelopes; refused with
# allow_sha1=False.
SHA1_URIS = {
    SHA1: "SHA-1 digest",
    "http://www.w3.org/2000/09/xmldsig#rsa-sha1": "RSA-SHA1 signature",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha1": "ECDSA-SHA1 signature",
    "http://www.w3.org/2000/09/xmldsig#dsa-sha1": "DSA-SHA1 signature",
}
# The digests a XAdES CertDigest may use.
CERT_DIGESTS = {
    SHA1: "sha1",
    SHA256: "sha256",
    "http://www.w3.org/2001/04/xmldsig-more#sha384": "sha384",
    "http://www.w3.org/2001/04/xmlenc#sha512": "sha512",
}

Level = Literal["XMLDSig", "B-B", "B-T"]


def _ds(tag: str) -> str:
    return f"{{{DS}}}{tag}"


def _xa(tag: str) -> str:
    return f"{{{XADES}}}{tag}"


_PARSER_OPTIONS: dict[str, Any] = dict(
    resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, remove_comments=False
)
_PARSER = etree.XMLParser(**_PARSER_OPTIONS)
_PROLOG_END = re.compile(rb"<[A-Za-z_:]")

# What verify_xml reads by default. Its memory grows with the document's nodes more than with its
# bytes: lxml takes ~250 bytes a node, and signxml holds three copies of the document at once
# while it checks the whole-document reference (about 0.8 KB a node in all; ~6x the bytes of
# text). 24 MB of <i>x</i> (3 million nodes) took 2.3 GB; 500,000 nodes take ~0.45 GB, and with
# 50 MB of text the worst case stays under about 1 GB.
MAX_BYTES = 50_000_000
MAX_NODES = 500_000
# What a signature adds to the document it signs (its elements; its certificates and timestamp
# token in base64): sign_xml refuses a document that, signed, verify_xml would refuse.
_SIGNATURE_ROOM = (100, 100_000)  # nodes, bytes


class _TooLarge(SignatureInvalid):
    pass


class TooManyNodes(ValueError):
    """A document holds more nodes than a :class:`NodeCounter` allows."""


class NodeCounter:
    """A parser target that builds nothing: it counts elements, comments and processing
    instructions (each a node of the tree a parse would build) and raises TooManyNodes past
    ``limit``: a document is counted so before it takes the memory its tree would."""

    def __init__(self, limit: int) -> None:
        self.limit, self.nodes = limit, 0

    def _node(self) -> None:
        self.nodes += 1
        if self.nodes > self.limit:
            raise TooManyNodes(
                f"more than {self.limit} elements, comments and processing instructions"
            )

    def start(self, tag: str, attrib: Any) -> None:
        self._node()

    def comment(self, text: str) -> None:
        self._node()

    def pi(self, target: str, data: str) -> None:
        self._node()

    def close(self) -> int:
        return self.nodes


def _safe_parse(data: bytes, max_bytes: int, max_nodes: int) -> etree._ElementTree:
    if len(data) > max_bytes:
        raise _TooLarge(f"document too large ({len(data)} > {max_bytes} bytes)")
    head = data
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        try:
            head = data.decode("utf-16").encode()
        except UnicodeDecodeError as exc:
            raise SignatureInvalid(
                f"not well-formed XML: a UTF-16 mark before {exc.reason}"
            ) from None
    # A DOCTYPE can only appear in the prolog, before the first element.
    m = _PROLOG_END.search(head)
    prolog = head[: m.start()] if m else head
    if b"<!doctype" in prolog.lower():
        raise SignatureInvalid("DOCTYPE not allowed")
    try:
        # Counted first, with no tree built, so that a document of too many nodes is refused
        # before it takes the memory they would.
        etree.fromstring(data, etree.XMLParser(target=NodeCounter(max_nodes), **_PARSER_OPTIONS))
        tree = etree.ElementTree(etree.fromstring(data, _PARSER))
    except TooManyNodes as exc:
        raise _TooLarge(f"document too large ({exc})") from None
    except etree.XMLSyntaxError as exc:
        raise SignatureInvalid(f"not well-formed XML: {exc}") from exc
    if tree.docinfo.doctype:
        raise SignatureInvalid("DOCTYPE not allowed")
    return tree


def _c14n(node: etree._Element | etree._ElementTree) -> bytes:
    return bytes(etree.tostring(node, method="c14n", exclusive=True, with_comments=False))


def _xml_attributes(el: etree._Element) -> dict[str, str]:
    """The xml:* attributes of ``el`` (xml:lang, xml:space, xml:base, xml:id), by Clark name."""
    return {name: value for name, value in el.attrib.items() if name.startswith(f"{{{XML_NS}}}")}


def c14n_apex(
    node: etree._Element, *, c14n11: bool = False, outer: Sequence[Mapping[str, str]] = ()
) -> etree._Element:
    """``node`` and its descendants copied into a document of their own, ``node`` its root, with
    what inclusive canonicalisation (C14N 1.0, or 1.1 if ``c14n11``) writes on the apex of a
    subtree: every namespace in scope (lxml serialises a subtree so) and the xml:* attributes
    ``node`` inherits (§2.4: 1.0, the nearest of each; 1.1, xml:lang and xml:space so and
    xml:base joined, no xml:id). ``outer``: the xml:* attributes of ancestors beyond ``node``'s
    tree, nearest first, when that tree is a copy of part of the document.

    Canonicalise the copy, not ``node``: lxml 6.1.3 (libxml2 2.14.6) canonicalises an inner
    element inclusively with a spurious ``xmlns=""`` on each grandchild in a default namespace,
    so the SignedInfo of a ``<Signature xmlns="…xmldsig#">`` with inclusive C14N (.NET
    SignedXml's default) never verified, where xmlsec1 verifies it.
    """
    apex = etree.fromstring(etree.tostring(node, with_tail=False), _PARSER)
    ancestors = [_xml_attributes(a) for a in node.iterancestors()] + list(outer)
    inherited: dict[str, str] = {}
    for attributes in ancestors:  # nearest first: the nearest of each name wins
        for name, value in attributes.items():
            inherited.setdefault(name, value)
    if c14n11:
        base = f"{{{XML_NS}}}base"
        inherited = {n: v for n, v in inherited.items() if n in _C14N11_INHERITED}
        bases = [a[base] for a in reversed(ancestors) if base in a]
        if bases:  # an xml:base relative to its ancestors' is made whole
            apex.set(base, functools.reduce(urljoin, [*bases, node.get(base, "")]))
    for name, value in inherited.items():
        if apex.get(name) is None:
            apex.set(name, value)
    return apex


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _raw_ecdsa(der: bytes, key: SigningKey) -> bytes:
    # XMLDSig wants r||s (RFC 4050/6931), cryptography and tokens give DER.
    r, s = decode_dss_signature(der)
    n = (key.key_size + 7) // 8
    return r.to_bytes(n, "big") + s.to_bytes(n, "big")


def _add(parent: etree._Element, tag: str, text: str | None = None, **attrs: str) -> etree._Element:
    el = etree.SubElement(parent, tag, attrs or None)
    if text is not None:
        el.text = text
    return el


def _reference(
    signed_info: etree._Element,
    uri: str,
    transforms: list[str],
    digest: bytes,
    type_: str | None = None,
) -> None:
    attrs = {"URI": uri}
    if type_:
        attrs["Type"] = type_
    ref = _add(signed_info, _ds("Reference"), **attrs)
    trs = _add(ref, _ds("Transforms"))
    for t in transforms:
        _add(trs, _ds("Transform"), Algorithm=t)
    _add(ref, _ds("DigestMethod"), Algorithm=SHA256)
    _add(ref, _ds("DigestValue"), _b64(digest))


def _find_parent(root: etree._Element, parent: str | None) -> etree._Element:
    if parent is None:
        return root
    if root.tag == parent:
        return root
    found = root.find(f".//{parent}")
    if found is None:
        raise SigningError(f"no element {parent} in the document to hold the signature")
    return found


def _build(
    data: bytes, key: SigningKey, level: Level, parent: str | None
) -> tuple[etree._ElementTree, etree._Element]:
    try:
        tree = _safe_parse(
            data, MAX_BYTES - _SIGNATURE_ROOM[1], max_nodes=MAX_NODES - _SIGNATURE_ROOM[0]
        )
    except _TooLarge:
        raise SigningError(
            "document too large to sign: signed, it would be more than a verifier reads "
            f"({MAX_BYTES} bytes, {MAX_NODES} elements, comments and processing instructions)"
        ) from None
    if (
        tree.getroot().tag == _ds("Signature")
        or tree.getroot().find(f".//{_ds('Signature')}") is not None
    ):
        # A second enveloped signature would cover the first, and the verifier (exactly one
        # signature per document: signature wrapping otherwise) refuses the result.
        raise SigningError(
            "the document already holds a signature: co-signing XML is not supported"
        )
    repeated = _repeated_id(tree.getroot())
    if repeated is not None:
        # The verifier refuses any repeated id (signature wrapping): a signature over this
        # document could never be verified, by us or by an agency using the same rule.
        value, first, second = repeated
        raise SigningError(
            f"the document holds the id {value!r} twice ({_where(first)} and {_where(second)}): "
            "a signature over it could not be verified (a repeated id is refused as signature "
            "wrapping)"
        )
    doc_digest = hashlib.sha256(_c14n(tree)).digest()
    holder = _find_parent(tree.getroot(), parent)
    sig_id = f"sig-{secrets.token_hex(8)}"
    sig = etree.SubElement(holder, _ds("Signature"), {"Id": sig_id}, nsmap={"ds": DS})
    signed_info = _add(sig, _ds("SignedInfo"))
    _add(signed_info, _ds("CanonicalizationMethod"), Algorithm=EXC_C14N)
    _add(signed_info, _ds("SignatureMethod"), Algorithm=SIG_ALGS[key.algorithm])
    _reference(signed_info, "", [ENVELOPED, EXC_C14N], doc_digest)
    sig_value = _add(sig, _ds("SignatureValue"))
    key_info = _add(sig, _ds("KeyInfo"))
    x509_data = _add(key_info, _ds("X509Data"))
    for cert in (key.certificate, *key.chain):
        _add(x509_data, _ds("X509Certificate"), _b64(cert.public_bytes(serialization.Encoding.DER)))
    if level != "XMLDSig":
        obj = _add(sig, _ds("Object"))
        qp = etree.SubElement(
            obj, _xa("QualifyingProperties"), {"Target": f"#{sig_id}"}, nsmap={"xades": XADES}
        )
        sp_id = f"{sig_id}-signedprops"
        sp = _add(qp, _xa("SignedProperties"), Id=sp_id)
        ssp = _add(sp, _xa("SignedSignatureProperties"))
        _add(
            ssp,
            _xa("SigningTime"),
            dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        )
        cert_el = _add(_add(ssp, _xa("SigningCertificateV2")), _xa("Cert"))
        cd = _add(cert_el, _xa("CertDigest"))
        _add(cd, _ds("DigestMethod"), Algorithm=SHA256)
        _add(cd, _ds("DigestValue"), _b64(_cert_digest(key.certificate)))
        _reference(
            signed_info,
            f"#{sp_id}",
            [EXC_C14N],
            hashlib.sha256(_c14n(sp)).digest(),
            type_=SIGNED_PROPS_TYPE,
        )
    raw = key.sign(_c14n(signed_info))
    sig_value.text = _b64(_raw_ecdsa(raw, key) if key.algorithm == "ecdsa" else raw)
    return tree, sig


def _where(el: etree._Element) -> str:
    return f"<{etree.QName(el).localname}> on line {el.sourceline}"


def _cert_digest_matches(sp: etree._Element, leaf: x509.Certificate) -> bool:
    """Whether the signed properties name ``leaf`` as the signing certificate: XAdES's
    SigningCertificateV2, or the SigningCertificate of older documents (often SHA-1)."""
    for version in ("SigningCertificateV2", "SigningCertificate"):
        cert_digest = sp.find(f".//{_xa(version)}/{_xa('Cert')}/{_xa('CertDigest')}")
        if cert_digest is not None:
            method = cert_digest.find(_ds("DigestMethod"))
            algo = CERT_DIGESTS.get(method.get("Algorithm") or "") if method is not None else None
            value = cert_digest.findtext(_ds("DigestValue"))
            if algo is None or value is None:
                return False
            der = leaf.public_bytes(serialization.Encoding.DER)
            return base64.b64decode(value) == hashlib.new(algo, der).digest()
    return False


def _cert_digest(cert: x509.Certificate) -> bytes:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest()


def _serialize(tree: etree._ElementTree) -> bytes:
    return bytes(etree.tostring(tree, xml_declaration=True, encoding="UTF-8"))


def _add_timestamp(sig: etree._Element, token: bytes) -> None:
    qp = sig.find(f"{_ds('Object')}/{_xa('QualifyingProperties')}")
    assert qp is not None
    usp = _add(_add(qp, _xa("UnsignedProperties")), _xa("UnsignedSignatureProperties"))
    ts = _add(usp, _xa("SignatureTimeStamp"), Id=f"{sig.get('Id')}-ts")
    _add(ts, _ds("CanonicalizationMethod"), Algorithm=EXC_C14N)
    _add(ts, _xa("EncapsulatedTimeStamp"), _b64(token))


def _signature_value_c14n(sig: etree._Element) -> bytes:
    sv = sig.find(_ds("SignatureValue"))
    assert sv is not None
    return _c14n(sv)


def sign_xml_sync(
    data: bytes,
    key: SigningKey,
    *,
    level: Level = "XMLDSig",
    parent: str | None = None,
    timestamper: Callable[[bytes], bytes] | None = None,
) -> bytes:
    """Synchronous :func:`sign_xml` (for benches and the CLI). ``timestamper`` maps the data to
    stamp to a DER token; it is required for B-T. Raises SigningError, SignatureInvalid
    (the input itself is refused: DOCTYPE, not well-formed), KeyLoadError, TimestampError."""
    if level not in ("XMLDSig", "B-B", "B-T"):
        raise SigningError(f"unknown XML signature level {level!r}")
    tree, sig = _build(data, key, level, parent)
    if level == "B-T":
        if timestamper is None:
            raise SigningError("B-T needs a TSA URL")
        _add_timestamp(sig, timestamper(_signature_value_c14n(sig)))
    return _serialize(tree)


async def sign_xml(
    data: bytes,
    key: SigningKey,
    *,
    level: Level = "XMLDSig",
    parent: str | None = None,
    tsa_url: str | None = None,
) -> bytes:
    """Sign ``data`` with an enveloped signature, placed under the element with Clark tag
    ``parent`` (the root if None). ``level``: "XMLDSig", "B-B" (XAdES-BES) or "B-T" (XAdES-T,
    needs ``tsa_url``). CPU work runs in a thread.

    Raises SigningError (bad level, parent not found, B-T without TSA), SignatureInvalid (input
    refused: DOCTYPE, not well-formed), KeyLoadError (token failure), TimestampError.
    """
    if level not in ("XMLDSig", "B-B", "B-T"):
        raise SigningError(f"unknown XML signature level {level!r}")
    if level == "B-T" and not tsa_url:
        raise SigningError("B-T needs a TSA URL")
    tree, sig = await asyncio.to_thread(_build, data, key, level, parent)
    if level == "B-T":
        assert tsa_url is not None
        to_stamp = _signature_value_c14n(sig)
        token = await request_timestamp(tsa_url, hashlib.sha256(to_stamp).digest())
        _add_timestamp(sig, token)
    return await asyncio.to_thread(_serialize, tree)


# --------------------------------------------------------------------------------------------
# Verification


@dataclass
class XMLVerification:
    """``signed``: the content that was actually signed (for ``URI=""`` the whole document,
    without the Signature), re-parsed from its canonical form. Use only this, never the input."""

    signed: etree._Element
    report: SignatureReport


@dataclass
class _Checked:
    signed: etree._Element
    leaf: x509.Certificate
    others: list[x509.Certificate]
    level: str
    weaknesses: list[str]
    signing_time: dt.datetime | None
    timestamp: tuple[bytes, bytes] | None  # (token, stamped data)


def _repeated_id(root: etree._Element) -> tuple[str, etree._Element, etree._Element] | None:
    """The first value two elements (or two attributes of one) give as ``Id``, ``ID`` or
    ``id``, with the two elements; None if every one is unique. A reference ``#x`` could
    resolve to either, so the verifier refuses such a document (signature wrapping)."""
    seen: dict[str, etree._Element] = {}
    for el in root.iter():
        for attr in ("Id", "ID", "id"):
            v = el.get(attr)
            if v is not None:
                if v in seen:
                    return v, seen[v], el
                seen[v] = el
    return None


def _profile_check(root: etree._Element, allow_sha1: bool) -> tuple[etree._Element, list[str]]:
    sigs = root.findall(f".//{_ds('Signature')}")
    if root.tag == _ds("Signature"):
        sigs.insert(0, root)
    if not sigs:
        raise SignatureInvalid("no signature found")
    if len(sigs) > 1:
        raise SignatureInvalid(f"signature wrapping: {len(sigs)} Signature elements")
    sig = sigs[0]
    repeated = _repeated_id(root)
    if repeated is not None:
        raise SignatureInvalid(f"signature wrapping: duplicate Id {repeated[0]!r}")
    weak: list[str] = []
    algs = [
        el.get("Algorithm") or "" for el in sig.iter(_ds("SignatureMethod"), _ds("DigestMethod"))
    ]
    for alg in algs:
        if alg in SHA1_URIS:
            if not allow_sha1:
                raise SignatureInvalid(f"weak algorithm: SHA-1 not accepted ({alg})")
            if SHA1_URIS[alg] not in weak:
                weak.append(SHA1_URIS[alg])
    signed_info = sig.find(_ds("SignedInfo"))
    if signed_info is None:
        raise SignatureInvalid("malformed signature: no SignedInfo")
    refs = signed_info.findall(_ds("Reference"))
    whole = [r for r in refs if r.get("URI") == ""]
    if len(whole) != 1:
        raise SignatureInvalid(
            "signature wrapping: the signature must cover the whole document "
            'with exactly one Reference URI=""'
        )
    transforms = [t.get("Algorithm") for t in whole[0].iter(_ds("Transform"))]
    if ENVELOPED not in transforms:
        raise SignatureInvalid("unsupported reference: no enveloped-signature transform")
    for r in refs:
        if r is whole[0]:
            continue
        uri = r.get("URI") or ""
        if r.get("Type") != SIGNED_PROPS_TYPE or not uri.startswith("#"):
            raise SignatureInvalid(f"signature wrapping: unexpected Reference URI={uri!r}")
        target = sig.find(
            f"{_ds('Object')}/{_xa('QualifyingProperties')}/{_xa('SignedProperties')}"
        )
        if target is None or target.get("Id") != uri[1:]:
            raise SignatureInvalid(
                "signature wrapping: SignedProperties reference points "
                "outside this signature's QualifyingProperties"
            )
    return sig, weak


def _keyinfo_certs(sig: etree._Element) -> tuple[x509.Certificate, list[x509.Certificate]]:
    texts = [
        el.text or ""
        for el in sig.iterfind(f"{_ds('KeyInfo')}/{_ds('X509Data')}/{_ds('X509Certificate')}")
    ]
    if not texts:
        raise SignatureInvalid("no X509Certificate in KeyInfo")
    try:
        certs = [
            x509.load_der_x509_certificate(base64.b64decode("".join(t.split()))) for t in texts
        ]
    except ValueError as exc:
        raise SignatureInvalid("malformed X509Certificate in KeyInfo") from exc
    issuers = {c.issuer for c in certs}
    leaves = [c for c in certs if c.subject not in issuers or c.subject == c.issuer]
    leaf = next((c for c in leaves if c.subject != c.issuer), certs[0])
    return leaf, [c for c in certs if c is not leaf]


@functools.cache
def _verifier_class() -> Any:
    """signxml's XMLVerifier, canonicalising SignedInfo inclusively as :func:`c14n_apex` does
    (its own canonical form of an inner element is lxml's: see there). Built on first use, as
    signxml is imported then."""
    from signxml.verifier import XMLVerifier

    class Verifier(XMLVerifier):
        def __init__(self, outer: Sequence[Mapping[str, str]]) -> None:
            super().__init__()
            self._outer = outer  # the xml:* attributes of the Signature's ancestors

        def _c14n(self, nodes: Any, algorithm: Any, inclusive_ns_prefixes: Any = None) -> bytes:
            # signxml's copy of the Signature is a document of its own: SignedInfo is the one
            # inner element it canonicalises (a reference's target is copied out before).
            if getattr(nodes, "tag", None) == _ds("SignedInfo") and not algorithm.value.startswith(
                EXC_C14N
            ):
                nodes = c14n_apex(
                    nodes, c14n11=algorithm.value.startswith(C14N_11), outer=self._outer
                )
            return bytes(super()._c14n(nodes, algorithm, inclusive_ns_prefixes))

    return Verifier


def _check_signature_method(
    uri: str | None, accepted: Mapping[str, Any], leaf: x509.Certificate
) -> None:
    """Refuse a SignatureMethod that is not one of ``accepted`` (signxml's by URI), or that the
    signer's key may not make: an RSA-PSS key (RFC 4055) makes PSS signatures alone, and
    signxml verifies PKCS#1 v1.5 with it as with any RSA key. (None: signxml says what is
    missing.)"""
    if uri is None:
        return
    method = accepted.get(uri)
    if method is None:
        pss = uri.endswith(("-rsa-MGF1", "#rsa-pss"))
        raise SignatureInvalid(
            f"unsupported signature algorithm: {uri}" + (" (RSASSA-PSS)" if pss else "")
        )
    if method.name.startswith("RSA_") and pss_only(leaf):
        raise SignatureInvalid(pkcs1_not_allowed(uri.rpartition("#")[2]))


def _verify_sync(data: bytes, max_bytes: int, max_nodes: int, allow_sha1: bool) -> _Checked:
    from signxml import exceptions as sx
    from signxml.algorithms import DigestAlgorithm, SignatureMethod
    from signxml.verifier import SignatureConfiguration

    tree = _safe_parse(data, max_bytes, max_nodes)
    sig, weak = _profile_check(tree.getroot(), allow_sha1)
    leaf, others = _keyinfo_certs(sig)
    method = sig.find(f"{_ds('SignedInfo')}/{_ds('SignatureMethod')}")
    method_uri = None if method is None else method.get("Algorithm")
    n_refs = len(sig.findall(f"{_ds('SignedInfo')}/{_ds('Reference')}"))
    token_b64 = sig.findtext(
        f"{_ds('Object')}/{_xa('QualifyingProperties')}/"
        f"{_xa('UnsignedProperties')}/{_xa('UnsignedSignatureProperties')}/"
        f"{_xa('SignatureTimeStamp')}/{_xa('EncapsulatedTimeStamp')}"
    )
    stamped = _signature_value_c14n(sig)
    outer = [_xml_attributes(a) for a in sig.iterancestors()]  # signxml's copy leaves them out
    # signxml parses the same bytes into a tree of its own: ours is let go first, as the
    # copies signxml makes of the document (three at once) are most of the memory it takes.
    del tree, sig
    methods = {
        m
        for m in SignatureMethod
        if m.name.startswith(("RSA_SHA", "ECDSA_SHA")) and not m.name.endswith("SHA224")
    }
    digests = {d for d in DigestAlgorithm if d.name in ("SHA256", "SHA384", "SHA512")}
    if allow_sha1:
        digests.add(DigestAlgorithm.SHA1)
    else:
        methods = {m for m in methods if "SHA1" not in m.name}
    _check_signature_method(method_uri, {m.value: m for m in methods}, leaf)
    config = SignatureConfiguration(
        location=".//",
        expect_references=n_refs,
        signature_methods=frozenset(methods),
        digest_algorithms=frozenset(digests),
        # Validity periods are the TrustStore's job (precise reasons, signing time).
        verification_time=leaf.not_valid_before_utc + dt.timedelta(seconds=1),
    )
    try:
        result: Any = _verifier_class()(outer).verify(data, x509_cert=leaf, expect_config=config)
    except sx.InvalidDigest as exc:
        raise SignatureInvalid(f"digest mismatch: {exc}") from exc
    except sx.InvalidSignature as exc:
        raise SignatureInvalid(f"signature value does not verify: {exc}") from exc
    except (sx.InvalidInput, sx.InvalidCertificate, sx.SignXMLException) as exc:
        raise SignatureInvalid(f"malformed signature: {exc}") from exc
    results = result if isinstance(result, list) else [result]
    # The whole-document reference is the one whose signed_xml is not SignedProperties.
    signed = next(
        (
            r.signed_xml
            for r in results
            if r.signed_xml is not None and r.signed_xml.tag != _xa("SignedProperties")
        ),
        None,
    )
    if signed is None:
        raise SignatureInvalid("the signed content is not XML")
    level, signing_time, ts = "XMLDSig", None, None
    sp = next(
        (
            r.signed_xml
            for r in results
            if r.signed_xml is not None and r.signed_xml.tag == _xa("SignedProperties")
        ),
        None,
    )
    if sp is not None:
        level = "XAdES-B-B"
        if not _cert_digest_matches(sp, leaf):
            raise SignatureInvalid("XAdES SigningCertificate does not match the signer")
        st = sp.findtext(f".//{_xa('SigningTime')}")
        if st:
            try:
                signing_time = dt.datetime.fromisoformat(st.replace("Z", "+00:00"))
            except ValueError as exc:
                raise SignatureInvalid("XAdES SigningTime is malformed") from exc
        if token_b64:
            level = "XAdES-B-T"
            ts = (base64.b64decode("".join(token_b64.split())), stamped)
    return _Checked(signed, leaf, others, level, weak, signing_time, ts)


async def verify_xml(
    data: bytes,
    trust: TrustStore,
    *,
    max_bytes: int = MAX_BYTES,
    max_nodes: int = MAX_NODES,
    allow_sha1: bool = True,
) -> XMLVerification:
    """Verify the one enveloped signature in ``data`` against ``trust``.

    A document over ``max_bytes``, or over ``max_nodes`` elements, comments and processing
    instructions (counted before any tree is built), is refused: see MAX_NODES for the memory.
    SHA-1 (older documents) is verified and listed in the report's weaknesses; with
    ``allow_sha1=False`` it is refused ("weak algorithm: SHA-1 not accepted").

    Raises :class:`SignatureInvalid` (with ``.reason``: "DOCTYPE not allowed", "digest mismatch: …",
    "signature wrapping: …", "weak algorithm: …", …), :class:`UntrustedSigner` (chain, expiry,
    revocation, key usage) or :class:`TimestampError` (a B-T timestamp that does not verify).
    Each carries ``.reports``: one invalid SignatureReport naming the level and signer the
    signature claims, when they can be read at all ("unknown" otherwise).
    """
    try:
        return await _verify_xml(data, trust, max_bytes, max_nodes, allow_sha1)
    except (SignatureInvalid, TimestampError) as exc:
        if getattr(exc, "reports", None):  # the signer refused: _verify_xml wrote the report
            raise
        reason = exc.reason if isinstance(exc, SignatureInvalid) else str(exc)
        signer, level = await asyncio.to_thread(_claimed, data, max_bytes, max_nodes)
        exc.reports = [  # type: ignore[union-attr]
            SignatureReport(valid=False, signer=signer, level=level, reason=reason)
        ]
        raise


def _claimed(data: bytes, max_bytes: int, max_nodes: int) -> tuple[str, str]:
    """The signer and level a signature claims, read without verifying anything, for a report
    on a signature that failed; ("unknown", "unknown") when there is no one signature to read."""
    try:
        root = _safe_parse(data, max_bytes, max_nodes).getroot()
        sigs = root.findall(f".//{_ds('Signature')}")
        if root.tag == _ds("Signature"):
            sigs.insert(0, root)
        if len(sigs) != 1:
            return "unknown", "unknown"
        sig = sigs[0]
        qp = f"{_ds('Object')}/{_xa('QualifyingProperties')}"
        level = "XMLDSig"
        if sig.find(f"{qp}/{_xa('SignedProperties')}") is not None:
            level = "XAdES-B-B"
            if (
                sig.find(f"{qp}/{_xa('UnsignedProperties')}//{_xa('SignatureTimeStamp')}")
                is not None
            ):
                level = "XAdES-B-T"
        try:
            leaf, _ = _keyinfo_certs(sig)
        except SignatureInvalid:
            return "unknown", level
        return common_name(leaf), level
    except Exception:
        return "unknown", "unknown"


async def _verify_signature_timestamp(
    token: bytes, stamped: bytes, trust: TrustStore
) -> TimestampInfo:
    """:func:`verify_timestamp`, its refusal of the TSA said to be the timestamp's, as verify_pdf
    says it: "no chain to a configured trust anchor: tsa" read as the signer's chain failing."""
    try:
        return await verify_timestamp(token, stamped, trust)
    except UntrustedSigner as exc:
        raise UntrustedSigner(
            f"signature timestamp is not from a trusted TSA ({exc.reason})", exc.kind
        ) from exc


async def _verify_xml(
    data: bytes, trust: TrustStore, max_bytes: int, max_nodes: int, allow_sha1: bool
) -> XMLVerification:
    """What :func:`verify_xml` does, without the failure report."""
    checked = await asyncio.to_thread(_verify_sync, data, max_bytes, max_nodes, allow_sha1)
    proven = None
    if checked.timestamp is not None:
        proven = (await _verify_signature_timestamp(*checked.timestamp, trust)).time
    # A trusted timestamp proves the signature existed then: the signer is judged as of that
    # moment (a certificate that expired, or was revoked, since still stands; one revoked before
    # does not). Without one, the signer's own claim of time proves nothing: judged now.
    try:
        chain = await trust.validate(checked.leaf, checked.others, moment=proven)
    except UntrustedSigner as exc:
        # The same report as verify_pdf's: revocation from the refusal's kind, and the time of
        # a timestamp that verified.
        exc.reports = [  # type: ignore[attr-defined]
            SignatureReport.untrusted(
                exc,
                signer=common_name(checked.leaf),
                level=checked.level,
                signed_at=proven,
                claimed_signing_time=checked.signing_time,
                weaknesses=checked.weaknesses,
            )
        ]
        raise
    report = SignatureReport(
        valid=True,
        signer=common_name(checked.leaf),
        chain=chain.chain,
        signed_at=proven,
        claimed_signing_time=checked.signing_time,
        level=checked.level,
        revocation=chain.revocation,
        weaknesses=[*checked.weaknesses, *chain.weaknesses],
        certificate=checked.leaf,
    )
    return XMLVerification(signed=checked.signed, report=report)


def verify_xml_sync(data: bytes, trust: TrustStore, **kwargs: Any) -> XMLVerification:
    """Blocking :func:`verify_xml` for scripts and the CLI (runs its own event loop)."""
    return asyncio.run(verify_xml(data, trust, **kwargs))
