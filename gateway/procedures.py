"""The procedures this gateway runs as inter-connected flows, by national procedure code (mã TTHC).

A local variant of a procedure (code + ``.agency-id``) runs the same flow as the national one.
"""

from __future__ import annotations

__all__ = ["PROCEDURES", "flow_of"]

# code → (flow, Vietnamese name)
PROCEDURES: dict[str, tuple[str, str]] = {
    "1.001193": (
        "birth",
        "Đăng ký khai sinh (liên thông: thường trú, thẻ BHYT cho trẻ dưới 6 tuổi)",
    ),
    "1.000656": ("death", "Đăng ký khai tử (liên thông: xóa đăng ký thường trú, trợ cấp mai táng)"),
}


def flow_of(procedure: str) -> tuple[str, str] | None:
    """The (flow, name) of a procedure code or its local variant; None when not run here."""
    return PROCEDURES.get(procedure) or PROCEDURES.get(procedure[:8])
