"""Realistic, deterministic Vietnamese test citizens for the sandboxes, the tests and the demo.

``Population(seed).citizen(i)`` is a pure function of ``(seed, i)``: the same seed gives the same
people in every process, so a sandbox started with seed 7 and a test that asks for citizen 42 of
seed 7 agree without sharing state. Citizens 0-9 are :data:`WELL_KNOWN` — the same for every seed
— and are the applicants, mothers and deceased that tests and the demo name.

What is real and what is made up:
- names, the personal-id rule (``connectors.identifiers.make_personal_id``), province codes,
  health-insurance card layout ``XX Y ZZ NNNNNNNNNN`` and the ethnicity codes are real;
- district and ward codes have the real lengths (3 and 5 digits) but are synthetic, as are
  street addresses, household book numbers and the household relation codes other than ``CH01``.

Households hold together as a registry's would: citizens from 10 on come in blocks of four, the
first an adult who heads the household; the others are, by the household's plan, a spouse of the
other sex near the head's age (each the other's ``spouse``, both married), children born when
both parents were 18 to 42 (the head, and the spouse, among their parents; the father's family
name), a parent of the head 18 to 40 years older (the head's father or mother) — or adults who
live alone, heading households of their own. Minors are single.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from datetime import date, timedelta
from functools import lru_cache
from typing import Any

from connectors.identifiers import PROVINCES, make_personal_id

__all__ = [
    "ETHNICITIES",
    "RELATIONS",
    "WELL_KNOWN",
    "Address",
    "Citizen",
    "Parent",
    "Population",
    "health_card_group",
]

# Reference date for ages and insurance groups: fixed, so data does not drift with the calendar.
TODAY = date(2026, 11, 1)

FAMILY_NAMES = (
    ("Nguyễn", 38), ("Trần", 11), ("Lê", 9), ("Phạm", 7), ("Hoàng", 5), ("Huỳnh", 4),
    ("Phan", 4), ("Vũ", 4), ("Võ", 3), ("Đặng", 2), ("Bùi", 2), ("Đỗ", 2), ("Hồ", 2),
    ("Ngô", 1), ("Dương", 1), ("Lý", 1), ("Đinh", 1), ("Trương", 1), ("Lương", 1), ("Mai", 1),
)  # fmt: skip
_FAMILY, _FAMILY_W = zip(*FAMILY_NAMES, strict=True)
MIDDLE = {
    "male": ("Văn", "Văn", "Văn", "Đức", "Minh", "Quang", "Hữu", "Công", "Thành", "Xuân", "Quốc",
             "Ngọc", "Trọng", "Hoàng", "Anh"),
    "female": ("Thị", "Thị", "Thị", "Thị", "Ngọc", "Thu", "Thanh", "Minh", "Phương", "Hồng",
               "Kim", "Bảo", "Mai", "Thùy", "Diệu"),
}  # fmt: skip
GIVEN = {
    "male": ("Anh", "Bình", "Cường", "Dũng", "Đức", "Hải", "Hiếu", "Hoàng", "Hùng", "Huy",
             "Khánh", "Khoa", "Lâm", "Long", "Minh", "Nam", "Nghĩa", "Phong", "Phúc", "Quân",
             "Sơn", "Tài", "Thắng", "Thịnh", "Toàn", "Trung", "Tuấn", "Việt", "Vinh", "Khải"),
    "female": ("Ánh", "Châu", "Diệp", "Giang", "Hạnh", "Hằng", "Hoa", "Hương", "Huyền", "Lan",
               "Linh", "Loan", "Mai", "My", "Ngọc", "Nhung", "Oanh", "Phương", "Quỳnh", "Thảo",
               "Thủy", "Trang", "Tuyết", "Vy", "Yến", "Hà", "Nga", "Dung", "Trâm", "Uyên"),
}  # fmt: skip

# Ethnic group codes of the General Statistics Office list (used by the population registry).
ETHNICITIES = {
    "01": "Kinh", "02": "Tày", "03": "Thái", "04": "Hoa", "05": "Khơ-me", "06": "Mường",
    "07": "Nùng", "08": "Mông", "09": "Dao", "10": "Gia-rai",
}  # fmt: skip
_ETHNIC_CODES = tuple(ETHNICITIES)
_ETHNIC_W = (86, 2, 2, 1, 1.5, 1.5, 1, 1.5, 1, 0.5)

# Relation to the household head. CH01 (head) is seen in the registry's data; the rest are ours.
RELATIONS = {"CH01": "Chủ hộ", "CH02": "Vợ/Chồng", "CH03": "Con", "CH04": "Cha/Mẹ", "CH05": "Khác"}

# Provinces weighted towards the big cities and Nghệ An (the demo's province, agency H41).
_PROVINCE_CODES = tuple(PROVINCES)
_PROVINCE_W = tuple(
    {"001": 12, "079": 12, "040": 10, "031": 3, "048": 3, "092": 2, "038": 3}.get(c, 1)
    for c in _PROVINCE_CODES
)
STREETS = ("Lê Lợi", "Trần Phú", "Nguyễn Trãi", "Quang Trung", "Lý Thường Kiệt", "Bà Triệu",
           "Phan Đình Phùng", "Điện Biên Phủ", "Nguyễn Du", "Lê Duẩn", "Hùng Vương")  # fmt: skip
WARD_NAMES = ("Hưng Bình", "Trường Thi", "Bến Thủy", "Quang Trung", "Tân Phú", "Hòa Bình",
              "Phúc Xá", "Đông Vĩnh", "Nghi Phú", "Hưng Lộc", "Xuân Phương", "An Hòa")  # fmt: skip
DISTRICT_NAMES = ("Quận 3", "Quận 1", "Huyện Đông Sơn", "Thị xã Cửa Lò", "Huyện Nghi Lộc",
                  "Quận Ba Đình", "Huyện Hưng Nguyên", "Thị xã Hoàng Mai")  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class Address:
    province_code: (
        str  # 3 digits, as in the personal id ("040"); the registry's 2-digit form is [1:]
    )
    district_code: str  # 3 digits (synthetic)
    ward_code: str  # 5 digits (synthetic)
    detail: str
    ward: str = ""
    district: str = ""
    country: str = "VN"

    @property
    def province(self) -> str:
        return PROVINCES[self.province_code]

    def as_dict(self) -> dict[str, str]:
        return {
            "province_code": self.province_code,
            "district_code": self.district_code,
            "ward_code": self.ward_code,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Parent:
    full_name: str
    personal_id: str
    birth_date: date
    nationality: str = "VN"
    old_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Citizen:
    index: int
    personal_id: str
    old_id: str | None  # 9-digit CMND, for adults who had one before the 12-digit card
    family_name: str
    middle_name: str
    given_name: str
    sex: str  # "male" | "female"
    birth_date: date
    ethnicity: str  # "01" Kinh …
    religion: str  # "00" none
    nationality: str
    marital_status: str  # "single" | "married" | "widowed" | "divorced"
    blood_type: str  # "A" | "B" | "AB" | "O" | "" (unknown)
    birth_registration_place: Address
    hometown: Address
    permanent_address: Address
    current_address: Address
    father: Parent
    mother: Parent
    spouse: Parent | None
    household_book: str
    household_head_id: str
    relation_to_head: str  # key of RELATIONS
    phone: str
    social_insurance_code: str  # 10 digits, first two the province's statistics code
    health_card_number: str  # 15 characters XX Y ZZ NNNNNNNNNN

    @property
    def full_name(self) -> str:
        return " ".join(p for p in (self.family_name, self.middle_name, self.given_name) if p)

    def age_on(self, day: date = TODAY) -> int:
        before = (day.month, day.day) < (self.birth_date.month, self.birth_date.day)
        return day.year - self.birth_date.year - before

    def as_gateway(self) -> dict[str, Any]:
        """The ``citizen`` object of the gateway contract (``citizen.lookup``'s result data)."""

        def parent(p: Parent | None) -> dict[str, Any] | None:
            if p is None:
                return None
            return {"full_name": p.full_name, "personal_id": p.personal_id}

        return {
            "personal_id": self.personal_id,
            "old_id": self.old_id,
            "full_name": self.full_name,
            "sex": self.sex,
            "birth_date": self.birth_date.isoformat(),
            "ethnicity": self.ethnicity,
            "nationality": self.nationality,
            "birth_registration_place": self.birth_registration_place.as_dict(),
            "permanent_address": self.permanent_address.as_dict(),
            "current_address": self.current_address.as_dict(),
            "father": parent(self.father),
            "mother": parent(self.mother),
            "household_book": self.household_book,
            "death_record_number": None,  # the test data hold no deaths: the registry records them
        }

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["full_name"] = self.full_name
        return data


def health_card_group(birth_date: date, today: date = TODAY) -> str:
    """The beneficiary group by age: TE under 6, HS pupils, DN/GD working age, HT retired."""
    age = (
        today.year
        - birth_date.year
        - ((today.month, today.day) < (birth_date.month, birth_date.day))
    )
    if age < 6:
        return "TE"
    if age < 18:
        return "HS"
    if age >= 60:
        return "HT"
    return "DN"


_LEVEL = {"TE": 1, "HS": 4, "DN": 4, "GD": 4, "HT": 2}
_SERIAL_SPAN = 500_000  # citizens use serials 0..499999, parents 500000..999999: never equal


# (index, family, middle, given, sex, birth date, province) — the fixed people of every seed.
_FIXED = (
    (0, "Nguyễn", "Thị", "Lan", "female", date(1990, 5, 12), "040"),
    (1, "Trần", "Văn", "Minh", "male", date(1988, 11, 3), "040"),
    (2, "Lê", "Văn", "Hùng", "male", date(1942, 2, 20), "040"),
    (3, "Phạm", "Thị", "Hoa", "female", date(1995, 8, 25), "001"),
    (4, "Hoàng", "Văn", "Nam", "male", date(1993, 1, 30), "001"),
    (5, "Võ", "Thị", "Mai", "female", date(1998, 12, 1), "079"),
    (6, "Đặng", "Quốc", "Bảo", "male", date(1955, 7, 7), "079"),
    (7, "Bùi", "Thị Thu", "Hương", "female", date(1985, 4, 18), "040"),
    (8, "Đỗ", "Minh", "Tuấn", "male", date(2000, 9, 9), "048"),
    (9, "Huỳnh", "Ngọc", "Ánh", "female", date(2021, 6, 15), "040"),
)
_FIXED_SERIALS = {0: 12345}  # 040190012345, the applicant of the API examples
# Households of the fixed people: 0 (wife) lives in 1's household, 9 (a child) in her mother
# 7's; the rest head their own.
_FIXED_HEAD = {0: 1, 9: 7}
_FIXED_RELATION = {0: "CH02", 9: "CH03"}
_FIXED_MARITAL = {0: "married", 1: "married", 2: "widowed", 3: "married", 4: "married",
                  5: "single", 6: "married", 7: "divorced", 8: "single", 9: "single"}  # fmt: skip
FIXED_COUNT = len(_FIXED)


_HOUSEHOLD = 4  # citizens FIXED_COUNT.. come in blocks of four: a household and who lives alone


@dataclass(frozen=True, slots=True)
class _Member:
    """A place in a household, as the household's plan draws it before the person is named."""

    relation: str  # CH01 the head, CH02 spouse, CH03 child, CH04 parent (of the head)
    sex: str
    birth: date
    family: str  # a child's is its father's


def _years_after(day: date, years: int) -> date:
    """The same day ``years`` later (earlier when negative); 29 February becomes the 28th."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return day.replace(year=day.year + years, day=28)


_ADULT = _years_after(TODAY, -18)  # born on or before: 18 or older


def _sex(rng: random.Random) -> str:
    return "male" if rng.random() < 0.5 else "female"


def _family(rng: random.Random) -> str:
    family: str = rng.choices(_FAMILY, _FAMILY_W)[0]
    return family


def _adult_birth(rng: random.Random) -> date:
    """A birth date 18 to 92 years back, ages around 32 the likeliest."""
    age_days = int(rng.triangular(18 * 365.25, 92 * 365.25, 32 * 365.25))
    return min(TODAY - timedelta(days=age_days + 1), _ADULT)


@dataclass(frozen=True, slots=True)
class _Core:
    index: int
    family: str
    middle: str
    given: str
    sex: str
    birth: date
    province: str
    personal_id: str


class Population:
    """The citizens of one seed. Cheap to create; results are cached per instance."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self._core = lru_cache(maxsize=4096)(self._make_core)
        self._address = lru_cache(maxsize=4096)(self._make_address)
        self._household = lru_cache(maxsize=1024)(self._make_household)

    def citizen(self, index: int) -> Citizen:
        """Citizen number ``index`` (0-based). Raises ValueError for a negative index or one
        beyond the id space (personal-id serials must stay unique)."""
        if not 0 <= index < _SERIAL_SPAN:
            raise ValueError(f"citizen index must be in 0..{_SERIAL_SPAN - 1}, not {index}")
        if index < FIXED_COUNT and self.seed != 0:
            return WELL_KNOWN[index]
        return self._build(index)

    def citizens(self, n: int, start: int = 0) -> list[Citizen]:
        return [self.citizen(i) for i in range(start, start + n)]

    def __iter__(self) -> Iterator[Citizen]:
        return (self.citizen(i) for i in range(_SERIAL_SPAN))

    # --- internals ----------------------------------------------------------------------------
    def _rng(self, *parts: object) -> random.Random:
        # String seeds are hashed with SHA-512 by random.Random: stable across processes (unlike
        # hash()), independent streams per citizen.
        return random.Random(":".join(map(str, (self.seed, *parts))))

    def _serial(self, index: int) -> int:
        if index in _FIXED_SERIALS:
            return _FIXED_SERIALS[index]
        # 7919 is coprime to the span: distinct indexes get distinct serials.
        return (index * 7919 + self.seed * 104_729 + 1) % _SERIAL_SPAN

    def _make_core(self, index: int) -> _Core:
        if index < FIXED_COUNT:
            _, family, middle, given, sex, birth, province = _FIXED[index]
            serial = _FIXED_SERIALS.get(index, 100_000 + index * 1111)
            pid = make_personal_id(province, sex, birth.year, serial)
            return _Core(index, family, middle, given, sex, birth, province, pid)
        rng = self._rng("core", index)
        member = self._member(index)
        if member is None:  # lives alone: an adult
            member = _Member("CH01", _sex(rng), _adult_birth(rng), _family(rng))
        sex = member.sex
        middle = rng.choice(MIDDLE[sex])
        given = rng.choice(GIVEN[sex])
        province = rng.choices(_PROVINCE_CODES, _PROVINCE_W)[0]
        if member.relation == "CH03" and rng.random() < 0.8:  # born where the family lives
            province = self._core(self._head_of(index)).province
        pid = make_personal_id(province, sex, member.birth.year, self._serial(index))
        return _Core(index, member.family, middle, given, sex, member.birth, province, pid)

    def _member(self, index: int) -> _Member | None:
        """Citizen ``index``'s place in its block's household; None for one who lives alone."""
        first = FIXED_COUNT + (index - FIXED_COUNT) // _HOUSEHOLD * _HOUSEHOLD
        return self._household(first)[index - first]

    def _make_household(self, first: int) -> tuple[_Member | None, ...]:
        """The household citizen ``first`` heads, drawn from the head: maybe a spouse of the
        other sex within six years of the head's age, children born when both parents were 18
        to 42, maybe a parent of the head 18 to 40 years older; the block's places it leaves
        are people living alone (None)."""
        rng = self._rng("household", first)
        head = _Member("CH01", _sex(rng), _adult_birth(rng), _family(rng))
        members = [head]
        if head.birth <= _years_after(_ADULT, -2) and rng.random() < 0.8:
            other = "female" if head.sex == "male" else "male"
            born = min(head.birth + timedelta(days=rng.randint(-2190, 2190)), _ADULT)
            members.append(_Member("CH02", other, born, _family(rng)))
        couple = list(members)
        father = next((m for m in couple if m.sex == "male"), None)
        earliest = _years_after(max(m.birth for m in couple), 18)
        latest = min(_years_after(min(m.birth for m in couple), 42), TODAY - timedelta(days=1))
        if earliest <= latest:
            for _ in range(rng.choice((0, 1, 1, 2, 2, 3))):
                born = earliest + timedelta(days=rng.randrange((latest - earliest).days + 1))
                # No father at home: the child's is the one _build draws, of this family name.
                family = father.family if father is not None else _family(rng)
                members.append(_Member("CH03", _sex(rng), born, family))
        if head.birth >= _years_after(TODAY, -60) and rng.random() < 0.3:
            sex = _sex(rng)
            born = _years_after(head.birth, -rng.randint(18, 40)) - timedelta(
                days=rng.randrange(300)
            )
            # The head's father gave the head his family name.
            members.append(
                _Member("CH04", sex, born, head.family if sex == "male" else _family(rng))
            )
        places: list[_Member | None] = [*members[:_HOUSEHOLD]]
        return tuple(places + [None] * (_HOUSEHOLD - len(places)))

    def _make_address(self, key: str, province: str) -> Address:
        rng = self._rng("address", key)
        p = int(province)
        d = rng.randrange(8)
        district = f"{(p * 13 + d) % 1000:03d}"
        ward = f"{(int(district) * 31 + rng.randrange(25)) % 100_000:05d}"
        ward_name = rng.choice(WARD_NAMES)
        district_name = rng.choice(DISTRICT_NAMES)
        kind = rng.random()
        if kind < 0.6:
            detail = f"Số {rng.randint(1, 250)}, đường {rng.choice(STREETS)}"
        elif kind < 0.85:
            detail = f"Tổ {rng.randint(1, 20)}, khối {rng.randint(1, 12)}"
        else:
            detail = f"Xóm {rng.randint(1, 15)}"
        ward_kind = "xã" if district_name.startswith("Huyện") else "phường"
        detail = f"{detail}, {ward_kind} {ward_name}, {district_name}, {PROVINCES[province]}"
        return Address(
            province_code=province,
            district_code=district,
            ward_code=ward,
            detail=detail,
            ward=ward_name,
            district=district_name,
        )

    def _parent(self, rng: random.Random, child: _Core, sex: str, family: str) -> Parent:
        # Not before 1900: no personal id encodes an earlier year (a child born in 1936 gave
        # its father 072-299972697).
        birth_year = max(1900, child.birth.year - rng.randint(20, 38))
        birth = date(birth_year, rng.randint(1, 12), rng.randint(1, 28))
        province = child.province if rng.random() < 0.8 else rng.choice(_PROVINCE_CODES)
        serial = _SERIAL_SPAN + rng.randrange(_SERIAL_SPAN)
        name = f"{family} {rng.choice(MIDDLE[sex])} {rng.choice(GIVEN[sex])}"
        return Parent(
            full_name=name,
            personal_id=make_personal_id(province, sex, birth_year, serial),
            birth_date=birth,
            old_id=f"{rng.randrange(10**9):09d}" if birth_year < 1990 else None,
        )

    def _head_of(self, index: int) -> int:
        if index < FIXED_COUNT:
            return _FIXED_HEAD.get(index, index)
        # Households of up to four consecutive citizens; the first is the head.
        first = FIXED_COUNT + (index - FIXED_COUNT) // _HOUSEHOLD * _HOUSEHOLD
        return first if self._member(index) is not None else index

    def _relation(self, index: int) -> str:
        if index < FIXED_COUNT:
            return _FIXED_RELATION.get(index, "CH01")
        member = self._member(index)
        return member.relation if member is not None else "CH01"

    def _members(self, head: int) -> list[int]:
        """The citizens of the household ``head`` heads, the head first."""
        if head < FIXED_COUNT:
            return [head, *(i for i, h in _FIXED_HEAD.items() if h == head)]
        if self._member(head) is None:
            return [head]
        return [head + i for i, m in enumerate(self._household(head)) if m is not None]

    def _old_id(self, core: _Core) -> str | None:
        """The 9-digit CMND of someone born before 2000 (its own stream: a citizen's record and
        a relative's mention of them agree)."""
        if core.birth.year >= 2000:
            return None
        return f"{self._rng('old_id', core.index).randrange(10**9):09d}"

    def _as_relative(self, index: int) -> Parent:
        """Citizen ``index`` as a parent or spouse in another citizen's record."""
        c = self._core(index)
        return Parent(
            full_name=f"{c.family} {c.middle} {c.given}",
            personal_id=c.personal_id,
            birth_date=c.birth,
            old_id=self._old_id(c),
        )

    def _build(self, index: int) -> Citizen:
        core = self._core(index)
        rng = self._rng("rest", index)
        head = self._core(self._head_of(index))
        home = self._address(f"household:{head.index}", head.province)
        birthplace = self._address(f"birth:{index}", core.province)
        relation = self._relation(index)
        at_home = [(i, self._relation(i)) for i in self._members(head.index) if i != index]
        # The parents who live here: a child's are the head and the head's spouse; the head's,
        # a parent of theirs (CH04). Any other is drawn, a father of the citizen's family name.
        parent_relations = {"CH03": ("CH01", "CH02"), "CH01": ("CH04",)}.get(relation, ())
        parents = {
            self._core(i).sex: self._as_relative(i) for i, r in at_home if r in parent_relations
        }
        father = parents.get("male") or self._parent(rng, core, "male", core.family)
        mother = parents.get("female") or self._parent(rng, core, "female", _family(rng))
        partner = next(
            (i for i, r in at_home if {r, relation} == {"CH01", "CH02"}), None
        )  # a head and its spouse are each other's
        if index in _FIXED_MARITAL:
            marital = _FIXED_MARITAL[index]
        elif partner is not None:
            marital = "married"
        elif relation == "CH03" or core.birth > _years_after(TODAY, -20):
            marital = "single"  # children living with their parents are
        elif relation == "CH04":
            marital = "widowed"  # living with a child, their spouse dead
        else:
            marital = rng.choices(("single", "married", "widowed", "divorced"), (40, 20, 25, 15))[0]
        spouse = self._as_relative(partner) if partner is not None else None
        if spouse is None and marital == "married":  # married to someone living elsewhere
            sex = "female" if core.sex == "male" else "male"
            spouse = self._parent(rng, core, sex, _family(rng))
            # Near the citizen's age, an adult, and the id encodes that birth year (as every id
            # does).
            born = min(core.birth + timedelta(days=rng.randint(-2000, 2000)), _ADULT)
            pid = spouse.personal_id
            spouse = replace(
                spouse,
                birth_date=born,
                personal_id=make_personal_id(pid[:3], sex, born.year, int(pid[6:])),
                old_id=spouse.old_id if born.year < 1990 else None,
            )
        stats = core.province[1:]
        si_code = f"{stats}{(int(core.personal_id[-6:]) * 37 + index) % 10**8:08d}"
        group = health_card_group(core.birth)
        card = f"{group}{_LEVEL[group]}{stats}{si_code}"
        moved = rng.random() < 0.1
        current = self._address(f"current:{index}", rng.choice(_PROVINCE_CODES)) if moved else home
        return Citizen(
            index=index,
            personal_id=core.personal_id,
            old_id=self._old_id(core),
            family_name=core.family,  # a child's is its father's (the household's plan)
            middle_name=core.middle,
            given_name=core.given,
            sex=core.sex,
            birth_date=core.birth,
            ethnicity=rng.choices(_ETHNIC_CODES, _ETHNIC_W)[0] if index >= FIXED_COUNT else "01",
            religion="00",
            nationality="VN",
            marital_status=marital,
            blood_type=rng.choice(("A", "B", "AB", "O", "O", "")),
            birth_registration_place=birthplace,
            hometown=birthplace,
            permanent_address=home,
            current_address=current,
            father=father,
            mother=mother,
            spouse=spouse,
            household_book=f"{head.province[1:]}{int(head.personal_id[-7:]) % 10**7:07d}",
            household_head_id=head.personal_id,
            relation_to_head=relation,
            phone=f"09{rng.randrange(10**8):08d}",
            social_insurance_code=si_code,
            health_card_number=card,
        )


_FIXED_POPULATION = Population(0)
WELL_KNOWN: tuple[Citizen, ...] = tuple(_FIXED_POPULATION.citizen(i) for i in range(FIXED_COUNT))
"""Citizens 0-9, identical for every seed. 0 Nguyễn Thị Lan (040190012345, a mother, wife of 1),
1 Trần Văn Minh (her husband, household head), 2 Lê Văn Hùng (born 1942, the deceased of the
death flow), 3 Phạm Thị Hoa and 4 Hoàng Văn Nam (Hà Nội), 5 Võ Thị Mai, 6 Đặng Quốc Bảo (HCMC),
7 Bùi Thị Thu Hương, 8 Đỗ Minh Tuấn (Đà Nẵng), 9 Huỳnh Ngọc Ánh (a child under 6, card group TE,
7's daughter, in her household)."""
