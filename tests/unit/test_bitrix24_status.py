"""What Bitrix24 is told of a call's outcome (STATUS_CODE of telephony.externalCall.finish)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pbx_tracker.calls.records import CallRecord, CallStatus, Direction, MissedReason
from pbx_tracker.crm.bitrix24 import CallLink, status_code

MOMENT = datetime(2024, 5, 14, 10, 0, tzinfo=UTC)


def call(status: CallStatus, reason: MissedReason | None) -> CallRecord:
    return CallRecord(
        linkedid="1.1",
        node="pbx1",
        direction=Direction.INBOUND,
        did=None,
        caller="+79161234567",
        caller_name=None,
        status=status,
        missed_reason=reason,
        answered_by=None,
        transferred_to=None,
        started_at=MOMENT,
        answered_at=None,
        ended_at=MOMENT,
        ring_seconds=0,
        talk_seconds=0,
        recording_path=None,
    )


@pytest.mark.parametrize(
    ("status", "reason", "code"),
    [
        (CallStatus.ANSWERED, None, "200"),
        (CallStatus.MISSED, MissedReason.NO_ANSWER, "304"),
        (CallStatus.MISSED, MissedReason.ABANDONED, "304"),
        (CallStatus.MISSED, MissedReason.BUSY, "486"),
        (CallStatus.MISSED, MissedReason.UNAVAILABLE, "480"),
        (CallStatus.MISSED, MissedReason.FAILED, "503"),
        (CallStatus.MISSED, None, "304"),
    ],
)
def test_each_outcome_has_its_documented_code(
    status: CallStatus, reason: MissedReason | None, code: str
) -> None:
    """Bitrix24's call log shows answered, missed, busy, unavailable and failed calls apart."""
    assert status_code(call(status, reason)) == code


def test_the_fields_go_to_the_deal_or_lead_made_for_the_call_first() -> None:
    """A deal made for the call gets the labels before its lead, and both before the contact."""
    link = CallLink(entity_type="CONTACT", entity_id=5, created=[["LEAD", 7], ["DEAL", 9]])
    assert link.target() == ("DEAL", 9)
    assert CallLink(entity_type="contact", entity_id=5).target() == ("CONTACT", 5)
    assert CallLink().target() is None


def test_links_from_someone_else_keep_only_what_is_known() -> None:
    """Unknown keys in a call's stored links are dropped, not a crash."""
    link = CallLink.from_json({"call_id": "x", "finished": True, "other": 1})
    assert (link.call_id, link.finished) == ("x", True)
    assert "other" not in link.to_json()
