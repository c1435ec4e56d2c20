"""PDFs that cost their verifier more than their size says (probe "resource exhaustion"), and
ordinary ones shaped as real writers make them, built from a signed PDF by incremental updates
(what anyone handling a signed file can append)."""

from __future__ import annotations

import datetime as dt
import io
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pyhanko.pdf_utils import generic as g
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.writer import PdfFileWriter
from pyhanko.sign.fields import SigSeedSubFilter
from pyhanko.sign.signers.pdf_signer import PdfSignatureMetadata, PdfSigner
from pyhanko_certvalidator.registry import SimpleCertificateStore

from signing.keys import SigningKey
from signing.pdf import _KeySigner
from signing.trust import to_asn1


def _write(w: Any) -> bytes:
    out = io.BytesIO()
    w.write(out)
    return out.getvalue()


def _text_field(i: int) -> g.DictionaryObject:
    return g.DictionaryObject(
        {g.NameObject("/FT"): g.NameObject("/Tx"), g.NameObject("/T"): g.TextStringObject(f"t{i}")}
    )


def with_signature_fields(signed: bytes, n: int) -> bytes:
    """One update adding ``n`` signature fields whose /V is the PDF's first signature (each is
    then one more signature to validate)."""
    w = IncrementalPdfFileWriter(io.BytesIO(signed), strict=False)
    form = w.root["/AcroForm"]
    fields = g.ArrayObject(list(form["/Fields"]))
    value = fields[0].get_object().raw_get("/V")
    for i in range(n):
        widget = {
            "/FT": g.NameObject("/Sig"),
            "/T": g.TextStringObject(f"s{i}"),
            "/V": value,
            "/Type": g.NameObject("/Annot"),
            "/Subtype": g.NameObject("/Widget"),
            "/Rect": g.ArrayObject([g.NumberObject(0)] * 4),
        }
        fields.append(
            w.add_object(g.DictionaryObject({g.NameObject(k): v for k, v in widget.items()}))
        )
    form[g.NameObject("/Fields")] = fields
    w.update_container(form)
    return _write(w)


def with_text_fields(signed: bytes, n: int, *, per_stream: int | None = None) -> bytes:
    """One update adding ``n`` text fields to the form, as plain objects or in object streams of
    ``per_stream`` objects each."""
    w = IncrementalPdfFileWriter(io.BytesIO(signed), strict=False)
    form = w.root["/AcroForm"]
    fields = g.ArrayObject(list(form["/Fields"]))
    stream = None
    for i in range(n):
        if per_stream is not None and i % per_stream == 0:
            stream = w.prepare_object_stream()
        fields.append(w.add_object(_text_field(i), obj_stream=stream))
    form[g.NameObject("/Fields")] = fields
    w.update_container(form)
    return _write(w)


def form_pdf(fields: int, per_stream: int) -> bytes:
    """An unsigned one-page PDF with a form of ``fields`` text fields, its objects in object
    streams of ``per_stream`` (as qpdf, pdfTeX and PDFBox write them: 100; iText: 200)."""
    w = PdfFileWriter(stream_xrefs=True)
    stream = w.prepare_object_stream()
    refs = []
    for i in range(fields):
        if i and i % per_stream == 0:
            stream = w.prepare_object_stream()
        refs.append(w.add_object(_text_field(i), obj_stream=stream))
    form = g.DictionaryObject({g.NameObject("/Fields"): g.ArrayObject(refs)})
    w.root[g.NameObject("/AcroForm")] = w.add_object(form)
    page = g.DictionaryObject(
        {
            g.NameObject("/Type"): g.NameObject("/Page"),
            g.NameObject("/MediaBox"): g.ArrayObject([g.NumberObject(x) for x in (0, 0, 595, 842)]),
        }
    )
    w.insert_page(page)
    return _write(w)


def with_dss_crls(pdf: bytes, crls: list[bytes]) -> bytes:
    """One update that adds ``crls`` (DER, or anything) to the DSS, making one if there is none
    (a permitted change after signing: B-LT signers make it)."""
    w = IncrementalPdfFileWriter(io.BytesIO(pdf), strict=False)
    refs = [w.add_object(g.StreamObject(stream_data=c)) for c in crls]
    try:
        dss = w.root["/DSS"]
    except KeyError:
        dss = g.DictionaryObject()
        w.root[g.NameObject("/DSS")] = w.add_object(dss)
        w.update_root()
    old = list(dss["/CRLs"]) if "/CRLs" in dss else []
    dss[g.NameObject("/CRLs")] = g.ArrayObject(old + refs)
    w.update_container(dss)
    return _write(w)


def junk_crl(size: int = 1024) -> bytes:
    """A DER SEQUENCE header announcing ``size`` bytes, then zeros: no CRL."""
    n = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([0x30, 0x80 | len(n)]) + n + b"\0" * size


async def sign_with_extra_certificates(pdf: bytes, key: SigningKey, n: int) -> bytes:
    """``pdf`` signed B-B by ``key``, its CMS carrying ``n`` more certificates (self-issued, under
    the name of the signer's issuer: each a candidate when the signer's is looked for)."""
    k = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    extra = [
        to_asn1(
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"x{i}")]))
            .issuer_name(key.certificate.issuer)
            .public_key(k.public_key())
            .serial_number(i + 1)
            .not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=30))
            .sign(k, hashes.SHA256())
        )
        for i in range(n)
    ]

    class Padded(_KeySigner):
        @property
        def cert_registry(self) -> SimpleCertificateStore:
            return SimpleCertificateStore.from_certs([to_asn1(c) for c in key.chain] + extra)

        @cert_registry.setter
        def cert_registry(self, value: Any) -> None:
            pass

    signer = Padded(key)
    meta = PdfSignatureMetadata(
        field_name="Signature1", md_algorithm="sha256", subfilter=SigSeedSubFilter.PADES
    )
    out = io.BytesIO()
    w = IncrementalPdfFileWriter(io.BytesIO(pdf), strict=False)
    await PdfSigner(meta, signer).async_sign_pdf(w, output=out)
    return out.getvalue()
