"""A ``LIENTHONG_*`` variable of a section written in another case than upper is refused in one
line, never silently ignored. Found by probing: ``LIENTHONG_store_url`` and ``LIENTHONG_Store_URL``
loaded fine, the store being the file's."""

from __future__ import annotations

import pytest

from gateway.settings import SettingsError, settings_from_mapping


@pytest.mark.parametrize(
    ("variable", "message"),
    [
        ("LIENTHONG_store_url", "LIENTHONG_store_url: variables are read in upper case only: "
                                "name it LIENTHONG_STORE_URL"),
        ("LIENTHONG_Store_URL", "name it LIENTHONG_STORE_URL"),
        ("lienthong_outbox_workers", "name it LIENTHONG_OUTBOX_WORKERS"),
        ("LIENTHONG_registries_insurance_password",
         "name it LIENTHONG_REGISTRIES_INSURANCE_PASSWORD"),
        ("LIENTHONG_audit_citizen", "name it LIENTHONG_AUDIT_CITIZEN"),  # audit query --citizen
        ("lienthong_gateway_listn", "lienthong_gateway_listn: [gateway] has no key listn"),
        ("LIENTHONG_Subsystems_TOKEN", "[[subsystems]] cannot be set from the environment"),
    ],
)  # fmt: skip
def test_a_variable_in_another_case_is_refused(variable: str, message: str) -> None:
    with pytest.raises(SettingsError) as info:
        settings_from_mapping({}, environ={variable: "x"})
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("variable", ["lienthong_config", "Lienthong_Token", "LIENTHONG_url"])
def test_the_other_variables_in_any_case_are_left_alone(variable: str) -> None:
    assert settings_from_mapping({}, environ={variable: "x"}).gateway.listen == "127.0.0.1:8080"
