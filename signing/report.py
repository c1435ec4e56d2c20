"""The verification report every verifier returns (and the CLI prints)."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any

from cryptography import x509

from .errors import UntrustedSigner

__all__ = ["SignatureReport"]


@dataclass
class SignatureReport:
    """What a verifier found about one signature.

    ``level``: "XMLDSig", "XAdES-B-B", "XAdES-B-T", "PAdES-B-B", "PAdES-B-T", "PAdES-B-LT" or
    "legacy adbe.pkcs7.detached". ``signed_at``: the time a verified signature timestamp proves
    (None without one); ``claimed_signing_time``: the time the signer wrote into the signature
    (XAdES SigningTime, the PDF's signing time), its own claim, which proves nothing (any signer
    sets it as it likes). ``revocation``: "good", "revoked", "unknown (soft-fail)",
    "unknown" (refused: the status could not be had or decided) or "not checked". ``reason`` is
    set when ``valid`` is false; ``cause`` when the signer was refused: the
    :class:`UntrustedSigner` kind ("revoked", "expired", "no-chain", …), for code to branch on
    (``reason`` ends with a subject's name, which may say anything). ``cause`` is not in
    :meth:`as_dict` or :meth:`as_text`.
    """

    valid: bool
    signer: str
    chain: list[str] = field(default_factory=list)
    signed_at: dt.datetime | None = None
    claimed_signing_time: dt.datetime | None = None
    level: str = "XMLDSig"
    revocation: str = "not checked"
    weaknesses: list[str] = field(default_factory=list)
    reason: str | None = None
    field_name: str | None = None  # PDF signature field, None for XML
    # The signer's certificate, where a verifier sets it (PDF and XML: each valid signature), for a
    # caller that must know who signed, not only that the chain is trusted (the document hub
    # holds a MIME part's PDF to its sender). Not part of the report's JSON.
    certificate: x509.Certificate | None = field(default=None, repr=False, compare=False)
    cause: str | None = None

    @classmethod
    def untrusted(cls, exc: UntrustedSigner, **fields: Any) -> SignatureReport:
        """The report on a signature whose signer ``exc`` refused (XML and PDF alike), the
        revocation status taken from its kind, never from its text."""
        revocation = {"revoked": "revoked", "revocation-unknown": "unknown"}.get(
            exc.kind, "not checked"
        )
        return cls(valid=False, reason=exc.reason, cause=exc.kind, revocation=revocation, **fields)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        del d["certificate"], d["cause"]
        d["signed_at"] = self.signed_at.isoformat() if self.signed_at else None
        claimed = self.claimed_signing_time
        d["claimed_signing_time"] = claimed.isoformat() if claimed else None
        return d

    def as_text(self) -> str:
        lines = [
            f"{'VALID' if self.valid else 'INVALID'} {self.level} signature"
            + (f" in field {self.field_name}" if self.field_name else ""),
            f"  signer:     {self.signer}",
            f"  chain:      {' -> '.join(self.chain) if self.chain else '-'}",
            self._when(),
            f"  revocation: {self.revocation}",
            f"  weaknesses: {', '.join(self.weaknesses) if self.weaknesses else 'none'}",
        ]
        if self.reason:
            lines.append(f"  reason:     {self.reason}")
        return "\n".join(lines)

    def _when(self) -> str:
        if self.signed_at:
            return f"  signed at:  {self.signed_at.isoformat()} (signature timestamp)"
        if self.claimed_signing_time:
            return (
                f"  claimed:    {self.claimed_signing_time.isoformat()} (signing time claimed by "
                "the signer; no timestamp proves it)"
            )
        return "  signed at:  unknown"
