"""What the decide path's memory of decisions costs: ids, and the garbage collector's work."""

from __future__ import annotations

import gc
import uuid

from gateway.assignment import Arm
from gateway.decisions import PendingDecisions, Served, new_decision_id


def test_decision_ids_are_random_version_4_uuids_in_hex() -> None:
    ids = [new_decision_id() for _ in range(1000)]  # several refills of the random block
    assert len(set(ids)) == len(ids)
    for decision_id in ids:
        parsed = uuid.UUID(hex=decision_id)
        assert parsed.hex == decision_id
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122


def test_remembered_decisions_leave_the_collectors_sight() -> None:
    """A million decisions awaiting their reward must not be walked at every full collection."""
    pending = PendingDecisions(capacity=100_000)
    gc.collect()
    before = len(gc.get_objects())
    for n in range(10_000):
        pending.add(f"d-{n}", "offers", Arm.CANDIDATE, "42", (("region", f"r{n % 3}"),))
    for _ in range(3):  # a tuple is untracked once a collection finds its items untracked:
        gc.collect()  # tuples in tuples in tuples may take a pass each
    assert len(gc.get_objects()) - before < 100  # not one tracked object per decision
    served = pending.reward("d-7", "offers")
    assert served == Served("offers", "candidate", "42", served.at, (("region", "r1"),))
    assert served.arm == Arm.CANDIDATE
