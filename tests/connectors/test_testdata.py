from collections import defaultdict
from datetime import date

import pytest

from connectors.identifiers import check_personal_id
from connectors.testdata import TODAY, WELL_KNOWN, Citizen, Parent, Population, health_card_group

_CARD_GROUPS = {"TE", "HS", "DN", "GD", "HT"}


def test_same_seed_same_people_other_seed_other_people() -> None:
    a = Population(7).citizens(200)
    b = Population(7).citizens(200)
    c = Population(8).citizens(200)
    assert a == b
    assert [x.personal_id for x in a[10:]] != [x.personal_id for x in c[10:]]
    # random access agrees with the sequence
    assert Population(7).citizen(150) == a[150]


def test_thousands_of_valid_unique_citizens() -> None:
    people = Population(1).citizens(5000)
    assert len({p.personal_id for p in people}) == 5000
    for p in people:
        pid = check_personal_id(p.personal_id, birth_date=p.birth_date, today=date(2026, 11, 1))
        assert pid.sex == p.sex
        assert pid.province_code == p.birth_registration_place.province_code
        assert p.full_name == p.full_name.strip() and len(p.full_name.split()) >= 3
        assert len(p.social_insurance_code) == 10 and p.social_insurance_code.isdigit()
        assert p.social_insurance_code[:2] == p.personal_id[1:3]
        card = p.health_card_number
        assert len(card) == 15 and card[:2] in _CARD_GROUPS and card[2] in "12345"
        assert card[3:5] == p.personal_id[1:3] and card[5:] == p.social_insurance_code
        assert card[:2] == health_card_group(p.birth_date)
        assert len(p.permanent_address.district_code) == 3
        assert len(p.permanent_address.ward_code) == 5
        for parent in (p.father, p.mother):
            assert check_personal_id(parent.personal_id).birth_year < p.birth_date.year
            assert check_personal_id(parent.personal_id, birth_date=parent.birth_date)
        if p.spouse is not None:  # the id encoded a parent's birth year, not the spouse's
            check_personal_id(p.spouse.personal_id, birth_date=p.spouse.birth_date)
    assert sum(p.ethnicity == "01" for p in people) > 0.75 * len(people)
    assert {p.sex for p in people} == {"male", "female"}
    assert any("ễ" in p.full_name or "ị" in p.full_name for p in people)


def test_households_share_book_address_and_head() -> None:
    people = Population(2).citizens(30)
    by_book: dict[str, list[object]] = {}
    for p in people:
        by_book.setdefault(p.household_book, []).append(p)
        head = next(q for q in people if q.personal_id == p.household_head_id)
        assert head.permanent_address == p.permanent_address
        assert head.household_book == p.household_book
        assert (p.relation_to_head == "CH01") == (p is head)
    assert any(len(members) > 1 for members in by_book.values())


def test_well_known_citizens_do_not_depend_on_seed() -> None:
    lan = WELL_KNOWN[0]
    assert (lan.full_name, lan.personal_id, lan.sex) == ("Nguyễn Thị Lan", "040190012345", "female")
    assert Population(0).citizen(0) == Population(99).citizen(0) == lan
    minh = WELL_KNOWN[1]
    assert lan.spouse is not None and lan.spouse.personal_id == minh.personal_id
    assert lan.household_head_id == minh.personal_id and minh.relation_to_head == "CH01"
    assert WELL_KNOWN[2].birth_date.year == 1942
    assert WELL_KNOWN[9].health_card_number.startswith("TE1")


def test_gateway_shape() -> None:
    data = WELL_KNOWN[0].as_gateway()
    assert data["birth_date"] == "1990-05-12"
    assert data["permanent_address"]["province_code"] == "040"
    assert set(data["mother"]) == {"full_name", "personal_id"}


def test_index_bounds() -> None:
    with pytest.raises(ValueError):
        Population(0).citizen(-1)
    with pytest.raises(ValueError):
        Population(0).citizen(500_000)


def test_a_parent_of_a_citizen_born_in_the_1930s_has_a_personal_id() -> None:
    """Seed 2's citizen 1064 had a father born in 1898, served as 072-299972697."""
    born_before_1940 = [p for p in Population(2).citizens(2000) if p.birth_date.year < 1940]
    assert born_before_1940
    for p in born_before_1940:
        for parent in (p.father, p.mother):
            assert check_personal_id(parent.personal_id, birth_date=parent.birth_date)


def _years(older: date, younger: date) -> int:
    return younger.year - older.year - ((younger.month, younger.day) < (older.month, older.day))


def _is(parent: Parent | None, c: Citizen) -> bool:
    """``parent`` names ``c``, as the registry holds them."""
    return parent is not None and (parent.personal_id, parent.full_name, parent.birth_date) == (
        c.personal_id,
        c.full_name,
        c.birth_date,
    )


@pytest.mark.parametrize("seed", [0, 3])
def test_households_are_families_a_registry_could_hold(seed: int) -> None:
    """Found by probing seed 0: a 5-year-old "spouse" (CH02) of a 75-year-old head, "children"
    (CH03) older than the head or whose parents did not include the head, spouses married to
    someone else than the head, two spouses in a household, a father of another family name
    than his child's. Households are now built from the head: a spouse of the other sex and
    near the head's age, children 18 to 42 years younger than their parents, a parent 18 to 40
    years older."""
    people = Population(seed).citizens(2000)
    by_id = {c.personal_id: c for c in people}
    households: dict[str, list[Citizen]] = defaultdict(list)
    for c in people:
        households[c.household_head_id].append(c)
        assert c.father.full_name.split()[0] == c.family_name, c  # the father's family name
        if c.spouse is not None:
            assert c.marital_status == "married" and _years(c.spouse.birth_date, TODAY) >= 18, c
        if c.age_on() < 18:
            assert (c.marital_status, c.spouse) == ("single", None), c
    sizes = {len(members) for members in households.values()}
    assert 1 in sizes and 4 in sizes, sizes
    for head_id, members in households.items():
        head = by_id[head_id]
        assert head.relation_to_head == "CH01" and head.age_on() >= 18, head
        assert [m.relation_to_head for m in members].count("CH02") <= 1, members
        spouse = next((m for m in members if m.relation_to_head == "CH02"), None)
        for m in members:
            assert m.household_book == head.household_book, m
            assert m.permanent_address == head.permanent_address, m
            if m.relation_to_head == "CH02":
                assert m.sex != head.sex and m.age_on() >= 18, (head, m)
                assert _is(m.spouse, head) and _is(head.spouse, m), (head, m)
            elif m.relation_to_head == "CH03":
                parents = [head] if spouse is None else [head, spouse]
                for parent in parents:
                    assert 18 <= _years(parent.birth_date, m.birth_date) <= 42, (parent, m)
                    assert _is(m.father, parent) or _is(m.mother, parent), (parent, m)
            elif m.relation_to_head == "CH04":
                assert 18 <= _years(m.birth_date, head.birth_date) <= 40, (head, m)
                assert _is(head.father, m) or _is(head.mother, m), (head, m)
    relations = {c.relation_to_head for c in people}
    assert {"CH01", "CH02", "CH03", "CH04"} <= relations, relations


def test_the_fixed_child_lives_with_her_mother() -> None:
    """Huỳnh Ngọc Ánh (citizen 9, born 2021) headed a household of her own, at five."""
    anh, huong = WELL_KNOWN[9], WELL_KNOWN[7]
    assert (anh.household_head_id, anh.relation_to_head) == (huong.personal_id, "CH03")
    assert _is(anh.mother, huong) and anh.family_name == "Huỳnh"
