"""A DocumentId the hub will never file is refused as the package's fault, on either store.

PostgreSQL cannot index a key of more than about 2.7 kB (its unique key on the sender's
DocumentIds): a longer one was a 500 there, where SQLite took it. Both now answer 400."""

from __future__ import annotations

import random
import string
from collections.abc import Callable

import pytest

from gateway.exchange.check import MAX_DOCUMENT_ID
from gateway.exchange.errors import InvalidEdxml
from gateway.exchange.hub import DocumentHub
from tests.exchange.test_document_ids import _documents, _receive, hub, package  # noqa: F401 - fixtures


def _number(length: int) -> str:
    # Random, so that PostgreSQL cannot compress the key below its index's limit.
    rng = random.Random(length)
    return "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(length))


async def test_a_document_id_over_the_cap_is_invalid_edxml_on_either_store(
    hub: DocumentHub,  # noqa: F811 - the fixture
    package: Callable[..., bytes],  # noqa: F811 - the fixture
) -> None:
    with pytest.raises(InvalidEdxml) as refused:
        await _receive(hub, package(number=_number(3000)))
    assert refused.value.extra["field"] == "MessageHeader/DocumentId"
    assert f"longer than {MAX_DOCUMENT_ID} characters" in refused.value.detail
    assert len(refused.value.detail) < 300  # names its length, does not quote it
    assert await _documents(hub) == 0


async def test_a_document_id_at_the_cap_is_taken(
    hub: DocumentHub,  # noqa: F811 - the fixture
    package: Callable[..., bytes],  # noqa: F811 - the fixture
) -> None:
    # "{OrganId},2020/10/30,{number}/STC-BCTC": 34 characters beside the number.
    at_cap = package(number=_number(MAX_DOCUMENT_ID - 34))
    assert (await _receive(hub, at_cap)).duplicate is False
    assert await _documents(hub) == 1
