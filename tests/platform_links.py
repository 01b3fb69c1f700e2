"""`DictLinks`: the outbox's `Links` (what a platform keeps of a call between its events)
in a dict, for driving a platform's ``deliver`` without the database.  Each object goes
through JSON, as the ``crm_links`` column keeps it, so a platform cannot keep what the
database could not."""

from __future__ import annotations

import copy
import json
from typing import Any


class DictLinks:
    def __init__(self) -> None:
        self.data: dict[str, dict[str, Any]] = {}

    async def get(self, call_key: str) -> dict[str, Any] | None:
        found = self.data.get(call_key)
        return copy.deepcopy(found) if found is not None else None

    async def put(self, call_key: str, data: dict[str, Any]) -> None:
        self.data[call_key] = json.loads(json.dumps(data))
