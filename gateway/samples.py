"""Sample dossiers built from the sandboxes' own citizens: for the demo, the tests and the bench.

The population sandbox of seed S holds ``Population(S).citizens(n)``; a sample built with the same
seed names people that registry knows, so the flows run end to end.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

from connectors.testdata import Citizen, Population

__all__ = ["birth_dossier", "death_dossier", "dossier_code", "sample_dossiers"]

AGENCY = "000.00.00.H41"  # UBND tỉnh Nghệ An
_GIVEN = {
    "male": ("An", "Bảo", "Khôi", "Minh", "Nam", "Phúc", "Quân", "Tuấn", "Đức", "Huy"),
    "female": ("Anh", "Chi", "Hà", "Linh", "Mai", "Ngọc", "Thảo", "Trang", "Vy", "Yến"),
}
_MIDDLE = {"male": ("Văn", "Minh", "Đức", "Gia"), "female": ("Thị", "Ngọc", "Bảo", "Khánh")}
_HOSPITALS = (
    "Bệnh viện Sản Nhi Nghệ An",
    "Bệnh viện Hữu nghị Đa khoa Nghệ An",
    "Trạm y tế phường Hưng Bình",
)


def dossier_code(seq: int, day: date = date(2026, 11, 22), agency: str = AGENCY) -> str:
    return f"{agency}-{day:%y%m%d}-{seq:04d}"


def _applicant(c: Citizen) -> dict[str, Any]:
    return {
        "full_name": c.full_name,
        "personal_id": c.personal_id,
        "birth_date": c.birth_date.isoformat(),
        "phone": c.phone,
    }


def birth_dossier(
    code: str, mother: Citizen, rng: random.Random, *, callback_url: str | None = None
) -> dict[str, Any]:
    sex = rng.choice(("male", "female"))
    born = date(2026, 11, 1) + timedelta(days=rng.randrange(20))
    child_name = f"{mother.family_name} {rng.choice(_MIDDLE[sex])} {rng.choice(_GIVEN[sex])}"
    doc: dict[str, Any] = {
        "code": code,
        "procedure": "1.001193",
        "flow": "birth",
        "submitted_at": f"{born + timedelta(days=3)}T09:15:00+07:00",
        "applicant": _applicant(mother),
        "data": {
            "child": {
                "full_name": child_name,
                "sex": sex,
                "birth_date": born.isoformat(),
                "birth_place": rng.choice(_HOSPITALS),
            },
            "mother": {
                "full_name": mother.full_name,
                "personal_id": mother.personal_id,
                "birth_date": mother.birth_date.isoformat(),
            },
            "residence": mother.permanent_address.as_dict(),
            "relation": "mother",
        },
    }
    if callback_url:
        doc["callback_url"] = callback_url
    return doc


def death_dossier(
    code: str,
    deceased: Citizen,
    applicant: Citizen,
    rng: random.Random,
    *,
    callback_url: str | None = None,
) -> dict[str, Any]:
    died = date(2026, 11, 1) + timedelta(days=rng.randrange(20))
    doc: dict[str, Any] = {
        "code": code,
        "procedure": "1.000656",
        "flow": "death",
        "submitted_at": f"{died + timedelta(days=2)}T14:30:00+07:00",
        "applicant": _applicant(applicant),
        "data": {
            "deceased": {
                "full_name": deceased.full_name,
                "personal_id": deceased.personal_id,
                "birth_date": deceased.birth_date.isoformat(),
                "death_date": died.isoformat(),
                "death_place": deceased.permanent_address.detail,
                "residence": deceased.permanent_address.as_dict(),
            },
            "relation": "child",
        },
    }
    if callback_url:
        doc["callback_url"] = callback_url
    return doc


def sample_dossiers(
    count: int,
    *,
    seed: int = 0,
    population: int = 2000,
    start: int = 1,
    death_share: float = 0.3,
    callback_url: str | None = None,
) -> Iterator[dict[str, Any]]:
    """``count`` dossiers naming citizens of ``Population(seed).citizens(population)``."""
    rng = random.Random(seed)
    people = Population(seed).citizens(population)
    mothers = [c for c in people if c.sex == "female" and 18 <= c.age_on() <= 45]
    elders = [c for c in people if c.age_on() >= 60]
    rng.shuffle(elders)  # each person dies once: the civil-status register refuses a second death
    adults = [c for c in people if 18 <= c.age_on() < 60]  # declarants: never one of the deceased
    for seq in range(start, start + count):
        code = dossier_code(seq)
        if rng.random() < death_share:
            if not elders:
                raise ValueError(
                    f"too few elderly citizens among {population} for {count} dossiers"
                )
            yield death_dossier(
                code, elders.pop(), rng.choice(adults), rng, callback_url=callback_url
            )
        else:
            yield birth_dossier(code, rng.choice(mothers), rng, callback_url=callback_url)
