from datetime import date

import pytest

from connectors.identifiers import (
    DOSSIER_CODE_MAX,
    InvalidIdentifier,
    check_agency_id,
    check_dossier_code,
    check_personal_id,
    check_procedure_code,
    check_tax_code,
    make_personal_id,
    make_tax_code,
)


def test_personal_id_spec_vector() -> None:
    pid = check_personal_id("026092008262", birth_date=date(1992, 5, 1))
    assert (pid.province_code, pid.sex, pid.birth_year) == ("026", "male", 1992)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("02609200826", "12 digits"),
        ("02609200826a", "12 digits"),
        ("０２６０９２００８２６２", "12 digits"),  # full-width digits are not ASCII
        ("003092008262", "unknown province code 003"),
        ("026492008262", "in the future"),  # 2192
    ],
)
def test_personal_id_refused(value: str, reason: str) -> None:
    with pytest.raises(InvalidIdentifier, match=reason):
        check_personal_id(value, today=date(2026, 11, 22))


def test_personal_id_must_agree_with_birth_date() -> None:
    with pytest.raises(InvalidIdentifier, match="birth year 1992"):
        check_personal_id("026092008262", birth_date=date(1993, 1, 1))


@pytest.mark.parametrize(
    ("province", "sex", "year"),
    [("040", "female", 1990), ("001", "male", 2024), ("079", "female", 2005)],
)
def test_make_personal_id_round_trips(province: str, sex: str, year: int) -> None:
    pid = check_personal_id(make_personal_id(province, sex, year, 12345))
    assert (pid.province_code, pid.sex, pid.birth_year) == (province, sex, year)


@pytest.mark.parametrize("year", [1898, 1899, 2400])
def test_no_personal_id_encodes_a_year_outside_its_centuries(year: int) -> None:
    """Parents born in 1898 got ids like 072-299972697 (a negative century digit)."""
    with pytest.raises(ValueError, match=str(year)):
        make_personal_id("072", "male", year, 12345)


@pytest.mark.parametrize("value", ["0100233488", "0100109106", "0314409058-002"])
def test_tax_code_valid(value: str) -> None:
    assert check_tax_code(value) == value


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("0100233480", "check digit"),
        ("0100000000", "all zero"),
        ("0314409058-000", "000"),
        ("031440905", "10 digits"),
        ("0314409058-02", "10 digits"),
        ("001099012345", "personal identification number"),  # an individual's, since July 2025
        ("0010990123456", "dash after the 10th digit"),
    ],
)
def test_tax_code_invalid(value: str, reason: str) -> None:
    with pytest.raises(InvalidIdentifier, match=reason):
        check_tax_code(value)


def test_a_branch_code_without_its_dash_is_told_the_dashed_form() -> None:
    """Found by probing: "0314409058002" was told only "must be 10 digits, optionally followed
    by -NNN". identifiers.md writes a branch only as NNNNNNNNNN-NNN, so it stays refused, but
    the reason now says where the dash goes."""
    with pytest.raises(InvalidIdentifier) as caught:
        check_tax_code("0314409058002")
    assert "dash after the 10th digit" in caught.value.reason
    assert "NNNNNNNNNN-NNN" in caught.value.reason


def test_make_tax_code_matches_check() -> None:
    assert make_tax_code("010023348") == "0100233488"


@pytest.mark.parametrize(
    "value", ["000.00.00.H41", "000.00.11.H53", "000.00.00.G22", "000.00.01.A53"]
)
def test_agency_ids(value: str) -> None:
    assert check_agency_id(value) == value


@pytest.mark.parametrize(
    "value", ["000.00.00.h41", "00.00.00.H41", "000.00.00.H4", "000-00-00-H41"]
)
def test_agency_ids_invalid(value: str) -> None:
    with pytest.raises(InvalidIdentifier):
        check_agency_id(value)


def test_procedure_and_dossier_codes() -> None:
    assert check_procedure_code("1.001193")
    assert check_procedure_code("1.000494.000.00.00.H29")
    with pytest.raises(InvalidIdentifier):
        check_procedure_code("1001193")
    assert check_dossier_code("000.00.14.H20-200703-0002")
    with pytest.raises(InvalidIdentifier, match="not a date"):
        check_dossier_code("000.00.14.H20-201303-0002")


@pytest.mark.parametrize("sequence", ["0002", "10002", "100002"])
def test_dossier_code_sequences_of_4_to_6_digits(sequence: str) -> None:
    code = f"000.00.14.H20-200703-{sequence}"
    assert check_dossier_code(code) == code
    assert len(code) <= DOSSIER_CODE_MAX


@pytest.mark.parametrize("sequence", ["002", "1000002", "1" * 3000])
def test_dossier_code_sequence_is_bounded(sequence: str) -> None:
    # Unbounded before: thousands of digits were a dossier code (past PostgreSQL's index row
    # limit, and into a URL longer than the server reads).
    with pytest.raises(InvalidIdentifier, match="4 to 6 digits"):
        check_dossier_code(f"000.00.14.H20-200703-{sequence}")
