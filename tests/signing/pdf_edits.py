"""Incremental updates that a PDF editor (or anyone, with no key) can append to a signed PDF,
for the tests of what may follow a signature."""

from __future__ import annotations

import io

from pyhanko.pdf_utils import generic as g
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign.fields import SigFieldSpec, append_signature_field


def _name(text: str) -> g.NameObject:
    return g.NameObject(text)


def add_signature_field(
    pdf: bytes,
    name: str,
    box: tuple[int, int, int, int] | None = None,
    paint: str | None = None,
) -> bytes:
    """``pdf`` with a new, empty signature field ``name`` on its first page, in an incremental
    update: invisible without ``box``; with ``paint``, its widget's normal appearance is a white
    box over ``box`` showing ``paint`` (18 pt Helvetica): what a viewer draws over the page (the
    "shadow attack" of a signature field added after signing)."""
    w = IncrementalPdfFileWriter(io.BytesIO(pdf), strict=False)
    append_signature_field(w, SigFieldSpec(name, box=box, on_page=0))
    if paint is not None:
        assert box is not None
        width, height = box[2] - box[0], box[3] - box[1]
        font = w.add_object(
            g.DictionaryObject(
                {
                    _name("/Type"): _name("/Font"),
                    _name("/Subtype"): _name("/Type1"),
                    _name("/BaseFont"): _name("/Helvetica"),
                }
            )
        )
        appearance = g.StreamObject(
            {
                _name("/Type"): _name("/XObject"),
                _name("/Subtype"): _name("/Form"),
                _name("/BBox"): g.ArrayObject([g.NumberObject(n) for n in (0, 0, width, height)]),
                _name("/Resources"): g.DictionaryObject(
                    {_name("/Font"): g.DictionaryObject({_name("/F1"): font})}
                ),
            },
            stream_data=(
                f"1 1 1 rg 0 0 {width} {height} re f 0 0 0 rg BT /F1 18 Tf 12 20 Td ({paint}) Tj ET"
            ).encode(),
        )
        for ref in w.root["/AcroForm"]["/Fields"]:
            field = ref.get_object()
            if str(field.get("/T")) == name:
                field[_name("/AP")] = g.DictionaryObject({_name("/N"): w.add_object(appearance)})
                w.update_container(field)
    out = io.BytesIO()
    w.write(out)
    return out.getvalue()
