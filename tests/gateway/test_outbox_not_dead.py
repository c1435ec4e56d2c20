"""NotDead says what happened, also when the job was dead when read and replayed before the
replay's own update (a concurrent resume or replay): "job 4 is dead, not dead" said neither."""

from __future__ import annotations

from gateway.outbox import NotDead


def test_not_dead_names_the_state_it_found() -> None:
    assert str(NotDead(4, "pending")) == (
        "outbox job 4 is pending, not dead: only dead jobs can be replayed"
    )


def test_a_job_replayed_meanwhile_is_not_said_to_be_dead() -> None:
    message = str(NotDead(4, "dead"))
    assert "is dead" not in message
    assert "replayed by another request meanwhile" in message


def test_a_replay_that_loses_the_race_names_the_state_the_job_is_in_now() -> None:
    # The update finds the job no longer dead (PostgreSQL, READ COMMITTED): the refusal (the
    # admin API's 409 job-not-dead carries its state) says what the job is now, not "dead".
    from typing import Any

    import pytest

    from gateway.outbox import replay

    states = iter(["dead", "pending"])

    class RacedTx:
        def one(self, query: str, /, **params: Any) -> dict[str, Any]:
            return {"id": 4, "kind": "registry", "key": "k", "payload": "{}", "state": next(states),
                    "attempts": 8, "run_after": 0.0, "lease_until": None, "owner": None,
                    "last_error": "x", "dossier": None, "document": None, "created_at": 0.0,
                    "updated_at": 0.0}  # fmt: skip

        def execute(self, query: str, /, **params: Any) -> int:
            assert query == "outbox.replay"
            return 0

    with pytest.raises(NotDead) as refused:
        replay(RacedTx(), 4)  # type: ignore[arg-type]
    assert refused.value.state == "pending"
