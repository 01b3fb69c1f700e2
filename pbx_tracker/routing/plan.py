"""The routing settings resolved once: groups with their members, hours and dial strings.

`RoutingPlan` answers what the board and the router ask of the config: which
group takes a number's calls, where a group overflows to, which working hours
apply to a manager, how a manager is dialled, and what time it is locally.
Configs built in code skip the cross-entry checks, so unknown names are
ignored here instead of failing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from pbx_tracker.hours import WorkingHours
from pbx_tracker.phones import normalize_number
from pbx_tracker.routing.settings import GroupSettings, RoutingSettings, Strategy, zone_of
from pbx_tracker.staff import Directory, Manager

ALL_MANAGERS = "all"


@dataclass(frozen=True, slots=True)
class Group:
    """A routing group as the router uses it (members in config order)."""

    name: str
    members: tuple[str, ...]
    strategy: Strategy
    queue: str | None
    sticky_days: int
    sticky_seconds: int
    ring_seconds: int
    hours: WorkingHours | None
    overflow: str | None
    crm_owner: bool = False


class RoutingPlan:
    """Groups, number rules, hours and dial strings of the ``routing:`` section and the
    configured managers."""

    def __init__(self, routing: RoutingSettings, directory: Directory) -> None:
        self.directory = directory
        self.routing = routing
        self.zone: ZoneInfo | None = zone_of(self.routing.timezone)
        self.order = {m.extension: index for index, m in enumerate(directory.managers)}
        self.groups = self._groups()
        self.default = self._default_group()
        self._manager_hours = {
            m.extension: WorkingHours.parse(m.hours) for m in directory.managers if m.hours
        }
        self._home = self._home_groups()
        self._rules = self._number_rules()

    # --- groups --------------------------------------------------------------

    def _groups(self) -> dict[str, Group]:
        configured = self.routing.groups
        if not configured:
            implicit = GroupSettings(name=ALL_MANAGERS, members=list(self.order))
            return {ALL_MANAGERS: self._group(implicit)}
        groups: dict[str, Group] = {}
        for group in configured:
            groups.setdefault(group.name, self._group(group))
        return groups

    def _group(self, group: GroupSettings) -> Group:
        if group.members is None:
            members = [m.extension for m in self.directory.managers if m.group == group.name]
        else:
            members = [ext for ext in group.members if ext in self.order]
        return Group(
            name=group.name,
            members=tuple(dict.fromkeys(members)),
            strategy=group.strategy,
            queue=group.queue,
            sticky_days=group.sticky_days,
            sticky_seconds=group.sticky_seconds,
            ring_seconds=group.ring_seconds,
            hours=None if group.hours is None else WorkingHours.parse(group.hours),
            overflow=group.overflow,
            crm_owner=group.crm_owner,
        )

    def _default_group(self) -> Group:
        named = self.routing.default_group
        if named is not None and named in self.groups:
            return self.groups[named]
        return next(iter(self.groups.values()))

    def _home_groups(self) -> dict[str, Group]:
        """Each manager's own group: their ``group`` if it routes, else the first listing them."""
        home: dict[str, Group] = {}
        for manager in self.directory.managers:
            own = self.groups.get(manager.group or "")
            if own is not None and manager.extension in own.members:
                home[manager.extension] = own
        for group in self.groups.values():
            for extension in group.members:
                home.setdefault(extension, group)
        return home

    def home_group(self, extension: str) -> Group | None:
        return self._home.get(extension)

    def chain(self, start: Group) -> list[Group]:
        """``start`` and the groups it overflows to, each once (a cycle ends the chain)."""
        chain = [start]
        seen = {start.name}
        while chain[-1].overflow is not None and chain[-1].overflow not in seen:
            following = self.groups.get(chain[-1].overflow)
            if following is None:
                break
            chain.append(following)
            seen.add(following.name)
        return chain

    # --- numbers -------------------------------------------------------------

    def _number_rules(self) -> dict[tuple[str, str], Group]:
        rules: dict[tuple[str, str], Group] = {}
        for rule in self.routing.numbers:
            group = self.groups.get(rule.group)
            kind, value = next(
                (kind, value)
                for kind, value in (("did", rule.did), ("pool", rule.pool), ("source", rule.source))
                if value is not None
            )
            if group is not None:
                rules.setdefault((kind, value), group)
        return rules

    def group_for_number(self, did: str | None) -> Group:
        """The group of the number's rule (did, then pool, then source), else the default."""
        labels = self.directory.find_number(did)
        number = labels.did if labels else normalize_number(did, self.directory.region)
        keys = [("did", number or "")]
        if labels is not None:
            keys += [("pool", labels.pool or ""), ("source", labels.source)]
        return next((self._rules[key] for key in keys if key in self._rules), self.default)

    # --- managers ------------------------------------------------------------

    def manager(self, extension: str) -> Manager | None:
        return self.directory.manager_for_extension(extension)

    def hours_for(self, extension: str, group: str | None = None) -> WorkingHours | None:
        """The manager's own hours, else the group's (default: their home group's)."""
        if extension in self._manager_hours:
            return self._manager_hours[extension]
        chosen = self.groups.get(group) if group is not None else None
        chosen = chosen or self.home_group(extension)
        return None if chosen is None else chosen.hours

    def dial_string(self, extension: str) -> str:
        """``dial``, else the devices joined with ``&``, else the dial template."""
        manager = self.manager(extension)
        if manager is not None and manager.dial:
            return manager.dial
        if manager is not None and manager.devices:
            return "&".join(manager.devices)
        return self.routing.dial_template.format(extension=extension)

    # --- time ----------------------------------------------------------------

    def local_time(self, moment: float) -> datetime:
        """Wall-clock time of an epoch moment in the routing time zone."""
        return datetime.fromtimestamp(moment, self.zone)

    def is_open(self, hours: WorkingHours | None, moment: float) -> bool:
        return hours is None or hours.is_open(self.local_time(moment))
