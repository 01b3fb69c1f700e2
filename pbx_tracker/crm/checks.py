"""What ``check-config --live`` asks the CRMs: does the configured webhook or token
open the account, with the rights the calls need.

Each check is one request through the platform's own client, so it is bounded by
the platform's ``timeout`` and reads the answer as the outbox would:

- Bitrix24: ``scope`` lists the webhook's scopes; ``telephony`` and ``crm`` must
  both be there, each missing one is a problem saying which scope to tick;
- amoCRM: ``GET /api/v4/account`` names the account the token opens.

What fails is one `Problem` naming the key to fix: the address (``base_url``,
the webhook's file) when nothing answered, the secret's file when the platform
refused it.  Reasons are the clients' (`PlatformError`), which hold no secret;
the webhook's code shows nowhere, only the portal's host.  Managers without an
account in a configured platform are one note per platform; for Bitrix24, where
a call needs a manager with a ``bitrix24_user``, none at all is a problem.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from pbx_tracker.ami.live_asterisk import Findings
from pbx_tracker.crm.amocrm_api import AmoCrmApi
from pbx_tracker.crm.bitrix24_api import Bitrix24Api
from pbx_tracker.crm.platform import PlatformError
from pbx_tracker.crm.settings import AmoCrmSettings, Bitrix24Settings
from pbx_tracker.staff import Account, Manager

__all__ = [
    "BITRIX24_SCOPES",
    "PlatformFindings",
    "answered",
    "check_amocrm",
    "check_bitrix24",
    "note_managers",
    "where",
]

BITRIX24_SCOPES = ("crm", "telephony")  # what the calls' methods need
BITRIX24_KEY = "crm.bitrix24.webhook_url_file"
_BITRIX24_WITHOUT = "their calls are registered under the first ringing manager who has one"
_AMOCRM_WITHOUT = "the calls they answer are added with no responsible user of theirs"


@dataclass(slots=True)
class PlatformFindings(Findings):
    """`Findings` of the outside platforms, and a line for each platform that passed."""

    passed: list[str] = field(default_factory=list)

    def extend(self, other: Findings) -> None:
        Findings.extend(self, other)
        if isinstance(other, PlatformFindings):
            self.passed += other.passed


async def check_bitrix24(
    settings: Bitrix24Settings, managers: Sequence[Manager]
) -> PlatformFindings:
    """The webhook answers ``scope`` with both scopes the calls need."""
    found = PlatformFindings()
    _bitrix24_managers(found, managers)
    api = Bitrix24Api(
        settings.webhook_url, timeout=settings.timeout, secrets=settings.secret_values()
    )
    try:
        scopes = await api.scopes()
    except PlatformError as error:
        found.add(BITRIX24_KEY, _bitrix24_refusal(error, where(settings.webhook_url)))
        return found
    finally:
        await api.close()
    missing = [scope for scope in BITRIX24_SCOPES if scope not in scopes]
    for scope in missing:
        found.add(
            BITRIX24_KEY,
            f"the webhook lacks the {scope} scope; tick {scope} among the inbound "
            "webhook's access permissions in Bitrix24 and save it",
        )
    if not missing:
        owner, shown = _webhook_owner(settings.webhook_url), ", ".join(sorted(scopes))
        found.passed.append(f"Bitrix24 OK: {owner} with scopes {shown}")
    return found


async def check_amocrm(settings: AmoCrmSettings, managers: Sequence[Manager]) -> PlatformFindings:
    """The token opens an account (``GET /api/v4/account``)."""
    found = PlatformFindings()
    note_managers(found, "crm.amocrm", managers, "amocrm_user", _AMOCRM_WITHOUT)
    api = AmoCrmApi(settings)
    try:
        account = await api.account()
    except PlatformError as error:
        found.add(*_amocrm_refusal(error, settings.base_url))
        return found
    finally:
        await api.close()
    found.passed.append(f"amoCRM OK: account {account.name} (id {account.id})")
    return found


def answered(error: PlatformError) -> bool:
    """Whether something answered at the platform's address (not a network failure or a
    timeout)."""
    return error.status is not None


def where(url: str) -> str:
    """The host (and port) of ``url``: what a message may show of an address whose path
    can hold a secret."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    return f"{host}:{parts.port}" if parts.port else host


def note_managers(
    found: Findings, key: str, managers: Sequence[Manager], account: Account, effect: str
) -> None:
    """A note naming the managers who have no ``account`` in the platform of ``key``, and
    what ``effect`` that has; none when each has one."""
    missing = [manager.extension for manager in managers if getattr(manager, account) is None]
    if missing:
        found.notes.append(f"{key}: managers without {account}: {', '.join(missing)} ({effect})")


def _bitrix24_managers(found: Findings, managers: Sequence[Manager]) -> None:
    """A note naming the managers without a ``bitrix24_user``; a problem when none has one
    (a call is registered for a Bitrix24 user, so none can be)."""
    if all(manager.bitrix24_user is None for manager in managers):
        found.add(
            "managers",
            "no manager has a bitrix24_user: Bitrix24 cannot register any call; set each "
            "manager's bitrix24_user to their user id in Bitrix24",
        )
    else:
        note_managers(found, "crm.bitrix24", managers, "bitrix24_user", _BITRIX24_WITHOUT)


def _bitrix24_refusal(error: PlatformError, host: str) -> str:
    status = error.status
    if not answered(error):
        return (
            f"cannot reach Bitrix24 at {host} ({error.reason}); is the portal's address right "
            "and reachable from this server?"
        )
    if status in (401, 403):
        return (
            f"Bitrix24 at {host} refused the webhook ({error.reason}); make an inbound webhook "
            "with the crm and telephony scopes and put its URL in the file"
        )
    return (
        f"Bitrix24 at {host} did not answer as a webhook does ({error.reason}); is the "
        "file's URL the inbound webhook's (https://<portal>/rest/<user>/<code>/)?"
    )


def _amocrm_refusal(error: PlatformError, base_url: str) -> tuple[str, str]:
    """(key, text) of a failed ``/api/v4/account``."""
    if not answered(error):
        return (
            "crm.amocrm.base_url",
            f"cannot reach amoCRM at {base_url} ({error.reason}); is the account's address "
            "right and reachable from this server?",
        )
    if error.status == 401:
        return (
            "crm.amocrm.token_file",
            f"amoCRM refused the token ({error.reason}): it was revoked or has expired; make a "
            "new long-lived token in the integration's settings and put it in the file",
        )
    return (
        "crm.amocrm.base_url",
        f"amoCRM at {base_url} did not open the account ({error.reason}); is it the "
        "account's address (https://<subdomain>.amocrm.ru), paid for and not blocked?",
    )


def _webhook_owner(url: str) -> str:
    """``webhook of user 1`` from ``.../rest/1/<code>/``; just ``webhook`` otherwise."""
    parts = urlsplit(url).path.strip("/").split("/")
    if len(parts) >= 3 and parts[-3] == "rest" and parts[-2].isdigit():
        return f"webhook of user {parts[-2]}"
    return "webhook"
