"""The demo's correction story files a birth the batch does not: the register refuses a second
birth of one child to one mother, and the story then ended needs_attention (``NOT OK``)."""

from __future__ import annotations

import pytest

from gateway.demo import _batch_and_story
from gateway.samples import dossier_code


def _child(doc: dict[str, object]) -> tuple[object, ...]:
    data = doc["data"]
    assert isinstance(data, dict)
    return (data["mother"]["personal_id"], data["child"]["full_name"], data["child"]["birth_date"])


@pytest.mark.parametrize("seed", [2026, 0, 1, 2, 3, 7])
@pytest.mark.parametrize("count", [1, 3, 200])
def test_the_story_is_a_birth_the_batch_does_not_register(seed: int, count: int) -> None:
    batch, story = _batch_and_story(count, seed)
    assert len(batch) == count
    assert story["flow"] == "birth" and story["code"] == dossier_code(9001)
    births = {_child(d) for d in batch if d["flow"] == "birth"}
    assert _child(story) not in births
