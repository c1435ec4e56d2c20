"""Sample dossiers are valid requests about people the sandboxes know, and nobody dies twice."""

import msgspec

from gateway.api.dossiers import validate
from gateway.models import DossierIn
from gateway.samples import sample_dossiers


def test_samples_validate_and_each_deceased_dies_once() -> None:
    batch = list(sample_dossiers(600, seed=2026))
    for doc in batch:
        validate(msgspec.convert(doc, DossierIn))  # raises Problem if the gateway would refuse it
    dead = [d["data"]["deceased"]["personal_id"] for d in batch if d["flow"] == "death"]
    assert dead and len(dead) == len(set(dead))
    assert len({d["code"] for d in batch}) == len(batch)
