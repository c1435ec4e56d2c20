from datetime import date

import pytest

from connectors.identifiers import check_personal_id
from connectors.testdata import WELL_KNOWN, Population, health_card_group

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
    p = Population(2).citizen(1064)
    for parent in (p.father, p.mother):
        assert check_personal_id(parent.personal_id, birth_date=parent.birth_date)
