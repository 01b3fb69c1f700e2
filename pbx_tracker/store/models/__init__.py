"""Tables of the call store, one module per room's tables. Alembic migrations
(migrations/) create them.

- `base`: the declarative `Base`, its naming convention, `UTCDateTime`
- `calls`: inbound calls and their ring attempts, calls managers placed
- `cel`: where the reading of each node's CEL log goes on
- `callbacks`: callback tasks, their calls and events
- `visits`: website visits, pool number leases, pool use per hour
- `spend`: ad spend per day
- `crm`: the outbox of the CRMs and messengers, and their links to calls
- `web`: users, browser sessions, failed sign-ins

Importing this package registers every table on `Base.metadata`.
"""

from __future__ import annotations

from pbx_tracker.store.models.base import NAMING_CONVENTION, Base, UTCDateTime
from pbx_tracker.store.models.callbacks import (
    OPEN_CUSTOMER_TASK,
    CallbackEventRow,
    CallbackTaskCallRow,
    CallbackTaskRow,
)
from pbx_tracker.store.models.calls import (
    ANSWERED_CALL,
    MISSED_CALL,
    MISSED_CALL_LABELS,
    SPAM_CALL,
    TRANSFERRED_CALL,
    CallRow,
    OutboundCallRow,
    RingAttemptRow,
)
from pbx_tracker.store.models.cel import CelPositionRow
from pbx_tracker.store.models.crm import PENDING_DELIVERY, CrmLinkRow, CrmOutboxRow
from pbx_tracker.store.models.spend import WHOLE_SOURCE, AdSpendRow
from pbx_tracker.store.models.visits import (
    LABEL_LENGTH,
    LIVE_LEASE,
    URL_LENGTH,
    NumberLeaseRow,
    PoolStatsRow,
    VisitRow,
)
from pbx_tracker.store.models.web import LoginFailureRow, WebSessionRow, WebUserRow

__all__ = [
    "ANSWERED_CALL",
    "LABEL_LENGTH",
    "LIVE_LEASE",
    "MISSED_CALL",
    "MISSED_CALL_LABELS",
    "NAMING_CONVENTION",
    "OPEN_CUSTOMER_TASK",
    "PENDING_DELIVERY",
    "SPAM_CALL",
    "TRANSFERRED_CALL",
    "URL_LENGTH",
    "WHOLE_SOURCE",
    "AdSpendRow",
    "Base",
    "CallRow",
    "CallbackEventRow",
    "CallbackTaskCallRow",
    "CallbackTaskRow",
    "CelPositionRow",
    "CrmLinkRow",
    "CrmOutboxRow",
    "LoginFailureRow",
    "NumberLeaseRow",
    "OutboundCallRow",
    "PoolStatsRow",
    "RingAttemptRow",
    "UTCDateTime",
    "VisitRow",
    "WebSessionRow",
    "WebUserRow",
]
