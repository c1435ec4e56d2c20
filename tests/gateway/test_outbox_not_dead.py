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
