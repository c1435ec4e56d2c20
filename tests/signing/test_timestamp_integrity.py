"""A timestamp token's own integrity is checked apart from its TSA's chain, which the trust store
judges once: the algorithms (MD5 refused), the content's digest, the signature and the imprint.
An audit checkpoint's fresh token has its TSA's chain judged now, where the store keeps a chain
found good, so that a busy gateway validates its TSA's path once per cache time, not once per
checkpoint (each validation ~2 ms of CPU, and pyHanko's check of the token validated it again)."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from asn1crypto import cms, tsp

from signing.errors import TimestampError
from signing.testing import TestPKI
from signing.timestamps import _load_stamper, verify_timestamp

DATA = b"lienthong.local/audit\n5\nroot\n"


def _token(pki: TestPKI, *, md: str | None = None) -> bytes:
    stamper = _load_stamper(pki.directory)
    stamper.override_md = md
    imprint = {
        "hash_algorithm": {"algorithm": "sha256"},
        "hashed_message": hashlib.sha256(DATA).digest(),
    }
    request = tsp.TimeStampReq({"version": 1, "message_imprint": imprint, "cert_req": True})
    return bytes(stamper.request_tsa_response(request)["time_stamp_token"].dump())


async def test_fresh_tokens_validate_their_tsa_path_once(
    pki: TestPKI, pki_server: Any, path_validations: list[object]
) -> None:
    trust = pki.trust(revocation="hard-fail")
    built = path_validations
    for _ in range(3):
        info = await verify_timestamp(_token(pki), DATA, trust, fresh=True)
        assert (info.tsa, info.revocation) == ("tsa", "good")
    assert len(built) == 1


async def test_tokens_judged_at_their_time_validate_each_time(
    pki: TestPKI, pki_server: Any, path_validations: list[object]
) -> None:
    # As of each token's own time (an audit verification, a B-T signature): no chain is reused.
    trust = pki.trust(revocation="hard-fail")
    built = path_validations
    for _ in range(2):
        await verify_timestamp(_token(pki), DATA, trust)
    assert len(built) == 2


async def test_a_token_signed_over_md5_is_refused(pki: TestPKI) -> None:
    with pytest.raises(TimestampError, match="does not verify: md5 is not allowed"):
        await verify_timestamp(_token(pki, md="md5"), DATA, pki.trust(revocation="off"))


async def test_a_token_signed_over_sha1_passes_as_older_documents_do(pki: TestPKI) -> None:
    info = await verify_timestamp(_token(pki, md="sha1"), DATA, pki.trust(revocation="off"))
    assert info.tsa == "tsa"


def _altered(token: bytes, edit: Any) -> bytes:
    content = cms.ContentInfo.load(token)
    edit(content["content"])
    return bytes(content.dump(force=True))


async def test_an_altered_tstinfo_is_refused(pki: TestPKI) -> None:
    def later_serial(signed: Any) -> None:
        tst = tsp.TSTInfo.load(bytes(signed["encap_content_info"]["content"].parsed.dump()))
        tst["serial_number"] = tst["serial_number"].native + 1
        signed["encap_content_info"]["content"] = cms.ParsableOctetString(tst.dump())

    token = _altered(_token(pki), later_serial)
    with pytest.raises(TimestampError, match="imprint does not match"):
        await verify_timestamp(token, DATA, pki.trust(revocation="off"))


async def test_a_token_with_a_broken_signature_is_refused(pki: TestPKI) -> None:
    def flip(signed: Any) -> None:
        signature = bytearray(signed["signer_infos"][0]["signature"].native)
        signature[-1] ^= 1
        signed["signer_infos"][0]["signature"] = bytes(signature)

    with pytest.raises(TimestampError, match="signature does not verify"):
        await verify_timestamp(_altered(_token(pki), flip), DATA, pki.trust(revocation="off"))


async def test_a_token_over_other_data_is_refused(pki: TestPKI) -> None:
    with pytest.raises(TimestampError, match="imprint does not match"):
        await verify_timestamp(_token(pki), DATA + b"x", pki.trust(revocation="off"))
