"""Realistic Vietnamese packages for the exchange tests (shared by unit, e2e and bench code)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any

from gateway.exchange.builder import build_status
from gateway.exchange.model import (
    VN_TZ,
    Business,
    Code,
    DocumentType,
    MessageHeader,
    Organization,
    OtherInfo,
    PromulgationInfo,
    ResponseFor,
    SignerInfo,
    StaffInfo,
    StatusMessage,
    TraceHeader,
    TraceHeaderList,
)
from gateway.exchange.xmldsig import sign_bytes

TAY_NINH_STC = "000.00.11.H53"  # Sở Tài chính Tây Ninh
NGHE_AN = "000.00.00.H41"  # UBND tỉnh Nghệ An
TU_PHAP = "000.00.00.G15"  # Bộ Tư pháp
AGENCIES = frozenset({TAY_NINH_STC, NGHE_AN, TU_PHAP, "000.00.00.G22"})
SAMPLES = Path(__file__).parent / "samples"


def cong_van_header(
    sender: str = TAY_NINH_STC,
    to: tuple[str, ...] = (NGHE_AN,),
    number: str = "2491",
) -> MessageHeader:
    """Công văn of the Finance Department of Tây Ninh to the People's Committee of Nghệ An."""
    names = {
        TAY_NINH_STC: "Sở Tài chính tỉnh Tây Ninh",
        NGHE_AN: "Ủy ban nhân dân tỉnh Nghệ An",
        TU_PHAP: "Bộ Tư pháp",
    }
    return MessageHeader(
        from_=Organization(
            sender,
            names.get(sender, "Cơ quan"),
            organ_add="Số 5, đường Trần Hưng Đạo, phường 2, thành phố Tây Ninh",
            email="stc@tayninh.gov.vn",
            telephone="02763822251",
        ),
        to=tuple(Organization(t, names.get(t, "Cơ quan")) for t in to),
        document_id=f"{sender},2020/10/30,{number}/STC-BCTC",
        code=Code(number, "STC-BCTC"),
        promulgation_info=PromulgationInfo("Tây Ninh", date(2020, 10, 30)),
        document_type=DocumentType(1, "Công văn"),
        subject="V/v báo cáo tình hình thực hiện dự toán ngân sách nhà nước năm 2020",
        content="Sở Tài chính tỉnh Tây Ninh kính gửi báo cáo tình hình thực hiện dự toán.",
        signer_info=SignerInfo("Nguyễn Văn Thành", "Giám đốc", "Ký thay"),
        due_date=date(2020, 11, 15),
        other_info=OtherInfo(priority=1, sphere_of_promulgation="Liên thông", page_amount=2),
    )


def trace_for(header: MessageHeader, doc_type: int = 0) -> TraceHeaderList:
    return TraceHeaderList(
        (TraceHeader(header.from_.organ_id, datetime(2020, 10, 30, 9, 15, tzinfo=VN_TZ)),),
        Business(
            header.document_id,
            doc_type,
            staff_info=StaffInfo("Văn phòng Sở", "Trần Thị Hoa", "0912345678"),
        ),
    )


async def chunks(data: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(data), 65536):
        yield data[i : i + 65536]


STATUS_DOCUMENT_ID = "000.00.11.H53,2020/10/30,2491/STC-BCTC"  # make_package()'s DocumentId


def signed_status(
    key: Callable[[str], Any],
    who: str,
    code: str = "01",
    *,
    organ_id: str = TAY_NINH_STC,
    doc: str = STATUS_DOCUMENT_ID,
    at: datetime | None = None,
) -> bytes:
    """A status message from ``who`` answering make_package()'s Công văn, signed with its key;
    dated ``at``, by default now (the hub takes no status dated before it received the
    document)."""
    msg = StatusMessage(
        Organization(who),
        ResponseFor(organ_id, "2491/STC-BCTC", date(2020, 10, 30), doc),
        code,
        at or datetime.now(VN_TZ),
    )
    return sign_bytes(build_status(msg), key(who))
