"""The hub's TraceHeader in the copy it forwards: "every system that handles the package appends
one" (spec/edxml.md).

The copy is the received bytes with one ``TraceHeader`` spliced in after the last one, streamed
from the stored package, so nothing else moves. The sender's enveloped signature covers the
TraceHeaderList too; ``xmldsig.check_envelope`` therefore accepts TraceHeaders appended *after*
the signer's (and only those), reporting who added them. Recipients that verify with a strict
XMLDSig tool fetch the original (``GET /v1/documents/{id}?original=true``).
"""

from __future__ import annotations

from lxml import etree  # type: ignore[import-untyped,unused-ignore]

from gateway.exchange.blobs import BlobRef, BlobStore
from gateway.exchange.edxml import q
from gateway.exchange.errors import InvalidEdxml
from gateway.exchange.model import TraceHeader, format_timestamp
from gateway.exchange.stream import Scan

__all__ = ["forward_copy", "trace_header_bytes"]

_CHUNK = 1 << 20


def trace_header_bytes(scan: Scan, th: TraceHeader) -> bytes:
    """``<TraceHeader>`` written with the prefix the package's TraceHeaderList uses."""
    tl = scan.root.find(f"{q('edXMLEnvelope')}/{q('edXMLHeader')}/{q('TraceHeaderList')}")
    if tl is None:
        raise InvalidEdxml("no TraceHeaderList to append to")
    p = f"{tl.prefix}:" if tl.prefix else ""
    organ = etree.Element("x")
    organ.text = th.organ_id
    organ_text = etree.tostring(organ, encoding="unicode")[3:-4]  # escaped text
    return (
        f"<{p}TraceHeader><{p}OrganId>{organ_text}</{p}OrganId>"
        f"<{p}Timestamp>{format_timestamp(th.timestamp)}</{p}Timestamp></{p}TraceHeader>"
    ).encode()


def forward_copy(scan: Scan, th: TraceHeader, store: BlobStore) -> BlobRef | None:
    """Write the package with ``th`` appended into ``store``; None when the package has no
    TraceHeaderList (it is then forwarded as received). Raises BlobError, InvalidEdxml."""
    if scan.trace_insert < 0:
        return None
    insert = trace_header_bytes(scan, th)
    with scan.path.open("rb") as src, store.writer() as out:
        left = scan.trace_insert
        while left:
            chunk = src.read(min(_CHUNK, left))
            if not chunk:
                raise InvalidEdxml("package file changed while being copied")
            out.write(chunk)
            left -= len(chunk)
        out.write(insert)
        while chunk := src.read(_CHUNK):
            out.write(chunk)
        return out.commit()
