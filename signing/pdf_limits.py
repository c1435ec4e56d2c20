# mypy: disable-error-code="no-untyped-call"
# (pyHanko is only partly annotated)
"""Bounds on the work a PDF may ask of its verifier, checked before pyHanko validates anything.

A PDF is the sender's, and small ones can cost minutes: pyHanko's diff analysis runs a rule per
form field for every signature (1,000 signature fields in 120 KB took 37 s and 560 MB), and it
finds each object of an object stream by reading that stream's header from its start (4,000
fields in one 58 KB object stream took 31 s). Both costs are counted here, from what pyHanko has
read so far (the cross-reference sections and a few dictionaries), and a PDF over a bound is
refused (:class:`~signing.errors.DocumentTooComplex`) before the work.

The bounds are far above what a signed document needs: it is signed by a handful of officials,
has at most a few hundred form fields, and its writer puts at most a few hundred objects in an
object stream (qpdf, pdfTeX, PDFBox: 100; iText: 200).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.pdf_utils.xref import ObjStreamRef

from .errors import DocumentTooComplex

__all__ = [
    "MAX_CMS_CERTIFICATES",
    "MAX_DIFF_WORK",
    "MAX_DSS_ENTRIES",
    "MAX_FORM_FIELDS",
    "MAX_OBJECT_STREAM_WORK",
    "MAX_SIGNATURES",
    "check_diff_work",
    "check_form",
    "check_object_streams",
]

# Filled signature fields in one PDF. Each is validated, and each validation's diff analysis
# walks the whole form, so the cost grows with signatures × fields. An official document carries
# a handful of signatures (signer, co-signers, the issuing office's seal, timestamps); 32 is
# several times what any document reaches.
MAX_SIGNATURES = 32
# Fields of the form, counted as its field tree's nodes (fields and their widgets): what pyHanko
# walks to find the signatures, and what each diff analysis walks in every revision.
MAX_FORM_FIELDS = 2000
# The diff analyses together: each signature's compares every later revision with the one
# before, walking the whole form (some 40 µs a field), so the work is Σ over the signatures of
# (revisions after it) × (fields + REVISION_WEIGHT, a revision's own cost in fields). 32
# signatures in turn on a form of 1,900 fields took 41 s. 100,000 is about 4 s, and admits 10
# signatures in turn on a form of 2,000 fields, or 32 on one of 100.
MAX_DIFF_WORK = 100_000
REVISION_WEIGHT = 10
# Header entries pyHanko may read to find objects in object streams: it reads a stream's header
# from its start for every object it takes from it, so a stream of N objects, each looked up,
# costs about N²/2 entries (some 4 µs each). Counted as Σ (xref entries into a stream) × (its /N):
# 2^21 is a few seconds at worst, and admits ~20,000 objects in streams of 100 (qpdf, pdfTeX,
# PDFBox), ~10,000 in streams of 200 (iText), or one stream of ~1,400.
MAX_OBJECT_STREAM_WORK = 2**21
# Certificates in one signature's CMS (or its timestamp token's). The CMS's certificate set is
# outside what the signer signs, so anyone may pad it, and each certificate is converted and
# offered to path building (~90 KB of memory each: 10,000 took a gateway to 1 GB). A CMS needs its
# signer's chain, two to five certificates.
MAX_CMS_CERTIFICATES = 64
# Certificates, CRLs and OCSP answers (each kind) in the DSS: every signature's chains, its
# timestamp's and its OCSP responders' at most, i.e. well under this for MAX_SIGNATURES.
MAX_DSS_ENTRIES = 512


def check_object_streams(reader: PdfFileReader) -> None:
    """Refuse a PDF whose object streams would cost pyHanko more than MAX_OBJECT_STREAM_WORK
    header entries to look objects up in, as the cross-reference sections (read when the reader
    was made) say, before any object stream is opened. Raises DocumentTooComplex."""
    xrefs = reader.xrefs
    # How many cross-reference entries, over all revisions, point into each object stream: each
    # is a lookup some revision's resolver may make.
    refs: Counter[int] = Counter()
    for revision in range(xrefs.total_revisions):
        data = xrefs.get_xref_data(revision)
        sections = [data] if data.hybrid is None else [data, data.hybrid.xref_data]
        for section in sections:
            refs.update(loc.obj_stream_id for loc in section.xrefs_in_objstm.values())
    work = 0
    for stream_id, count in refs.items():
        # pyHanko opens an object stream as the latest revision has it, whatever the revision
        # of the object looked up (reader._get_object_from_stream).
        ref = generic.Reference(stream_id, 0, reader)
        if isinstance(xrefs[ref], ObjStreamRef):
            # pyHanko would look it up in another stream, and so on: no writer does that.
            raise DocumentTooComplex(
                f"too complex a PDF: object stream {stream_id} is itself in an object stream"
            )
        stream = reader.get_object(ref)
        declared = _value(stream, "/N") if isinstance(stream, generic.StreamObject) else 0
        if not isinstance(declared, int) or declared <= 0:
            continue  # pyHanko finds nothing in it
        work += count * declared
        if work > MAX_OBJECT_STREAM_WORK:
            raise DocumentTooComplex(
                "too complex a PDF: finding the objects of its object streams would read more "
                f"than {MAX_OBJECT_STREAM_WORK} header entries (object stream {stream_id} "
                f"holds {declared} objects)"
            )


def check_form(reader: PdfFileReader) -> int:
    """How many fields the PDF's form has (nodes of its field tree), counted before pyHanko walks
    it; refuses more than MAX_FORM_FIELDS. A tree that loops is left to pyHanko, which refuses
    it. Raises DocumentTooComplex."""
    try:
        form = reader.root["/AcroForm"]
        fields = form["/Fields"]
    except (KeyError, TypeError):
        return 0
    todo: list[Any] = list(fields) if isinstance(fields, generic.ArrayObject) else []
    seen: set[tuple[int, int]] = set()
    count = 0
    while todo:
        raw = todo.pop()
        if isinstance(raw, generic.IndirectObject):
            key = (raw.idnum, raw.generation)
            if key in seen:
                continue
            seen.add(key)
        count += 1
        if count > MAX_FORM_FIELDS:
            raise DocumentTooComplex(
                f"too complex a PDF: its form has more than {MAX_FORM_FIELDS} fields"
            )
        node = raw.get_object()
        if isinstance(node, generic.DictionaryObject):
            kids = _value(node, "/Kids")
            if isinstance(kids, generic.ArrayObject):
                todo.extend(kids)
    return count


def check_diff_work(revisions_after: list[int], fields: int) -> None:
    """Refuse a PDF whose signatures' diff analyses would together exceed MAX_DIFF_WORK: one
    signature per item of ``revisions_after`` (the revisions added after it was made), on a
    form of ``fields`` fields. Raises DocumentTooComplex."""
    work = sum(revisions_after) * (fields + REVISION_WEIGHT)
    if work > MAX_DIFF_WORK:
        raise DocumentTooComplex(
            f"too complex a PDF: checking what changed after each of its {len(revisions_after)} "
            f"signatures would walk its form of {fields} fields in {sum(revisions_after)} "
            "revisions in all"
        )


def dss_size(reader: PdfFileReader) -> int:
    """The largest number of entries (certificates, CRLs or OCSP answers) the DSS lists."""
    try:
        dss = reader.root["/DSS"]
    except (KeyError, TypeError):
        return 0
    if not isinstance(dss, generic.DictionaryObject):
        return 0
    sizes = [len(v) for k in ("/Certs", "/CRLs", "/OCSPs") if isinstance(v := _value(dss, k), list)]
    return max(sizes, default=0)


def _value(d: generic.DictionaryObject, key: str) -> Any:
    """``d[key]`` with an indirect value resolved (``d.get`` would not), or None."""
    try:
        return d[key]
    except KeyError:
        return None
