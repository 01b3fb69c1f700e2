"""The company's phone book: tracked numbers and their labels, managers and their phones.

`Directory` is the one lookup every room uses to tell what a number Asterisk
reports is (a tracked DID and its source; a manager's mobile, extension or
device), so a service is handed this and its own settings section, never the
whole configuration.  Numbers follow one rule
(`pbx_tracker.phones.canonical_number`): any phone form becomes E.164, a short
internal number (``401``) stays its digits.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import ConfigDict, Field

from pbx_tracker.calls.topology import is_pseudo_channel
from pbx_tracker.config_fields import (
    DEFAULT_REGION,
    ConfigModel,
    Device,
    Did,
    Email,
    Extension,
    NonEmptyStr,
    TrackedDid,
)
from pbx_tracker.hours import HoursLine
from pbx_tracker.phones import canonical_number

__all__ = [
    "ACCOUNTS",
    "Account",
    "Directory",
    "Manager",
    "NotifyChannel",
    "NumberLabels",
    "TrackedNumber",
    "device_key",
]

NotifyChannel = Literal["email", "webhook", "ring_me", "telegram"]
Account = Literal["bitrix24_user", "amocrm_user", "telegram_chat"]
ACCOUNTS: tuple[Account, ...] = ("bitrix24_user", "amocrm_user", "telegram_chat")


class TrackedNumber(ConfigModel):
    """A DID given to one advertising source."""

    model_config = ConfigDict(extra="forbid")

    did: TrackedDid
    source: NonEmptyStr
    medium: str | None = None
    campaign: str | None = None
    name: str | None = None


class Manager(ConfigModel):
    """A person who answers calls: extension, phones, and (for routing) own hours and dial."""

    model_config = ConfigDict(extra="forbid")

    name: NonEmptyStr
    extension: Extension
    group: str | None = None
    devices: list[Device] = Field(default_factory=list)
    external_numbers: list[Did] = Field(default_factory=list)
    email: Email | None = None
    hours: list[HoursLine] | None = None
    dial: NonEmptyStr | None = None
    notify: list[NotifyChannel] | None = None
    # the same person in the tools managers live in (pbx_tracker.crm, pbx_tracker.telegram)
    bitrix24_user: int | None = Field(default=None, ge=1)
    amocrm_user: int | None = Field(default=None, ge=1)
    telegram_chat: int | None = None


@dataclass(frozen=True, slots=True)
class NumberLabels:
    """What a tracked DID says about a call: its source labels and pool, if any."""

    did: str
    source: str
    medium: str | None
    campaign: str | None
    pool: str | None


class Directory:
    """Lookups of tracked numbers and managers, built once from the configured lists.

    The first entry wins where two name the same number, extension or device
    (the config's checks refuse such duplicates anyway).
    """

    def __init__(
        self,
        managers: Sequence[Manager] = (),
        numbers: Iterable[NumberLabels] = (),
        region: str = DEFAULT_REGION,
    ) -> None:
        self.region = region
        self.managers: tuple[Manager, ...] = tuple(managers)
        self._numbers: dict[str, NumberLabels] = {}
        for labels in numbers:
            self._numbers.setdefault(labels.did, labels)
        self._extensions: dict[str, Manager] = {}
        self._bare_extensions: dict[str, Manager] = {}
        self._devices: dict[str, Manager] = {}
        self._external_numbers: dict[str, Manager] = {}
        self._accounts: dict[tuple[str, int], Manager] = {}  # ("bitrix24_user", 7) -> manager
        for manager in self.managers:
            self._index(manager)

    def _index(self, manager: Manager) -> None:
        self._extensions.setdefault(manager.extension, manager)
        if not manager.devices:
            self._bare_extensions.setdefault(manager.extension, manager)
        for device in manager.devices:
            self._devices.setdefault(device_key(device), manager)
        for number in manager.external_numbers:
            self._external_numbers.setdefault(number, manager)
        for account in ACCOUNTS:
            value = getattr(manager, account)
            if value is not None:
                self._accounts.setdefault((account, value), manager)

    def find_number(self, did: str | None) -> NumberLabels | None:
        """Labels of a tracked or pool DID, given as Asterisk reports it; else None.

        ``did`` is read by the config's rule: ``84951110002`` finds ``+74951110002``,
        ``401`` finds the short number ``401``.
        """
        if did is None:
            return None
        if did in self._numbers:
            return self._numbers[did]
        number = canonical_number(did, self.region)
        return None if number is None else self._numbers.get(number)

    def manager_for_number(self, number: str) -> Manager | None:
        """The manager one of whose external numbers this is, as a trunk or Dial() writes it
        (``79160000103``, ``89160000103``, ``+79160000103``); else None."""
        found = canonical_number(number, self.region)
        return None if found is None else self._external_numbers.get(found)

    def manager_for_channel(self, channel: str) -> Manager | None:
        """The manager whose phone is ``channel`` (``IAX2/101-11234``, ``PJSIP/anna-0000001a``);
        None for trunks, Local channels and other channels that are no phone."""
        tech, sep, name = channel.partition("/")
        if not sep or not name or is_pseudo_channel(channel):
            return None
        device = name.rsplit("-", 1)[0]
        for candidate in (device, name):
            manager = self._devices.get(f"{tech.lower()}/{candidate}")
            if manager is not None:
                return manager
        return self._bare_extensions.get(device)

    def manager_for_extension(self, extension: str) -> Manager | None:
        """The manager with this extension (``"101"``), or None."""
        return self._extensions.get(extension.strip())

    def manager_for_account(self, account: Account, value: int) -> Manager | None:
        """The manager who is ``value`` in another tool (``bitrix24_user`` 7), or None."""
        return self._accounts.get((account, value))


def device_key(device: str) -> str:
    """``PJSIP/101`` as the lookups key it: the technology in lower case."""
    tech, _, name = device.partition("/")
    return f"{tech.lower()}/{name}"
