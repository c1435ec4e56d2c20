"""A timestamp token's own integrity is checked apart from its TSA's chain, which the trust store
judges once: the algorithms (MD5 refused), the content's digest, the signature and the imprint.
An audit checkpoint's fresh token has its TSA's chain judged now, where the store keeps a chain
found good, so that a busy gateway validates its TSA's path once per cache time, not once per
checkpoint (each validation ~2 ms of CPU, and pyHanko's check of the token validated it again);
and a fresh token shaped as one the store has seen checked whole has only its signature, digest
and imprint checked. Every refusal below holds on both paths."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from asn1crypto import cms, tsp

from signing import timestamps
from signing.errors import TimestampError, UntrustedSigner
from signing.testing import TestPKI
from signing.timestamps import _load_stamper, verify_timestamp

DATA = b"lienthong.local/audit\n5\nroot\n"


@pytest.fixture(scope="module")
def other_pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    """Another PKI, whose TSA `pki`'s trust store does not know (and the other way round)."""
    return TestPKI.create(tmp_path_factory.mktemp("other-pki"), base_url="http://127.0.0.1:9")


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


async def test_fresh_tokens_of_a_known_shape_are_checked_whole_once(
    pki: TestPKI, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole: list[object] = []
    check = timestamps._check_token_integrity

    def counted(*args: Any) -> None:
        whole.append(args)
        check(*args)

    monkeypatch.setattr(timestamps, "_check_token_integrity", counted)
    trust = pki.trust(revocation="off")
    for _ in range(3):
        info = await verify_timestamp(_token(pki), DATA, trust, fresh=True)
        assert info.tsa == "tsa"
    assert len(whole) == 1
    # A token judged at its own time (an auditor's) is always checked whole.
    await verify_timestamp(_token(pki), DATA, trust)
    assert len(whole) == 2


async def test_a_known_shape_does_not_vouch_for_its_tsa_elsewhere(
    pki: TestPKI, other_pki: TestPKI
) -> None:
    await verify_timestamp(_token(pki), DATA, pki.trust(revocation="off"), fresh=True)
    stranger = other_pki.trust(revocation="off")
    await verify_timestamp(_token(other_pki), DATA, stranger, fresh=True)  # its shape learnt
    with pytest.raises(UntrustedSigner):
        await verify_timestamp(_token(pki), DATA, stranger, fresh=True)


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


@pytest.fixture(params=["judged at its time", "fresh, shape known"])
async def verify(request: pytest.FixtureRequest, pki: TestPKI) -> Any:
    """verify_timestamp as an auditor calls it, or as a checkpoint does once the store has seen
    a good token of the TSA's (so the refusal must come from the short check)."""
    trust = pki.trust(revocation="off")
    fresh = request.param != "judged at its time"
    if fresh:
        await verify_timestamp(_token(pki), DATA, trust, fresh=True)

    async def call(token: bytes, data: bytes) -> object:
        return await verify_timestamp(token, data, trust, fresh=fresh)

    return call


def _altered(token: bytes, edit: Any) -> bytes:
    content = cms.ContentInfo.load(token)
    edit(content["content"])
    return bytes(content.dump(force=True))


async def test_an_altered_tstinfo_is_refused(pki: TestPKI, verify: Any) -> None:
    def later_serial(signed: Any) -> None:
        tst = tsp.TSTInfo.load(bytes(signed["encap_content_info"]["content"].parsed.dump()))
        tst["serial_number"] = tst["serial_number"].native + 1
        signed["encap_content_info"]["content"] = cms.ParsableOctetString(tst.dump())

    token = _altered(_token(pki), later_serial)
    with pytest.raises(TimestampError, match="imprint does not match"):
        await verify(token, DATA)


async def test_a_token_with_a_broken_signature_is_refused(pki: TestPKI, verify: Any) -> None:
    def flip(signed: Any) -> None:
        signature = bytearray(signed["signer_infos"][0]["signature"].native)
        signature[-1] ^= 1
        signed["signer_infos"][0]["signature"] = bytes(signature)

    with pytest.raises(TimestampError, match="signature does not verify"):
        await verify(_altered(_token(pki), flip), DATA)


async def test_a_token_over_other_data_is_refused(pki: TestPKI, verify: Any) -> None:
    with pytest.raises(TimestampError, match="imprint does not match"):
        await verify(_token(pki), DATA + b"x")


async def test_a_token_whose_signed_attributes_changed_is_checked_whole(
    pki: TestPKI, verify: Any
) -> None:
    # Its shape is new (another content type): the whole check runs, and refuses it.
    def relabel(signed: Any) -> None:
        attrs = signed["signer_infos"][0]["signed_attrs"]
        for attr in attrs:
            if attr["type"].native == "content_type":
                attr["values"] = [cms.ContentType("data")]

    with pytest.raises(TimestampError):
        await verify(_altered(_token(pki), relabel), DATA)
