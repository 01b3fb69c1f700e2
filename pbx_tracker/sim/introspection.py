"""What the simulated Asterisk tells about itself, as Asterisk 16-22 tells it.

`PbxSetup` holds the loaded modules, the dialplan's contexts, the devices the
channel drivers know, CEL and the AMI user's write classes, and builds the
answers of the actions that ask about them:

- ``ListCommands`` (no class needed): one message, a ``Name: synopsis (Priv:
  classes)`` header per action the user may run (``main/manager.c``
  `action_listcommands`: an action is listed when the user holds one of its
  classes, or it needs none - ``<none>``); channel drivers' own actions
  (``IAXpeers``...) are listed only while their module is loaded;
- ``Command`` (``command``): ``Response: Success``, ``Message: Command output
  follows`` and one ``Output:`` header per line (Asterisk 14+); an unknown
  CLI command is ``Response: Error`` with the same output shape;
- ``ModuleCheck`` (``system``): ``Response: Success`` with an empty
  ``Version:``, or ``Response: Error`` ``Message: Module not loaded``;
- ``ShowDialPlan`` (``config,reporting``): the ``ListDialplan`` EventList, or
  ``Response: Error`` ``Message: Did not find context NAME``;
- ``Getvar`` (``call,reporting``): ``Variable`` and ``Value`` headers; without
  a channel a function is evaluated, e.g. ``DEVICE_STATE(PJSIP/101)`` is
  ``INVALID`` when no loaded driver knows the device.

A user without a class of an action gets ``Response: Error`` ``Message:
Permission denied``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from pbx_tracker.sim.cel_apps import DEFAULT_APPS

Fields = list[tuple[str, str]]

NO_CLASS = "<none>"
# name -> (classes as ListCommands prints them, synopsis); main/manager.c, app_queue
CORE_ACTIONS: dict[str, tuple[str, str]] = {
    "Login": (NO_CLASS, "Login Manager."),
    "Challenge": (NO_CLASS, "Generate Challenge for MD5 Auth."),
    "Logoff": (NO_CLASS, "Logoff Manager."),
    "Ping": (NO_CLASS, "Keepalive command."),
    "Events": (NO_CLASS, "Control Event Flow."),
    "ListCommands": (NO_CLASS, "List available manager commands."),
    "WaitEvent": (NO_CLASS, "Wait for an event to occur."),
    "QueueStatus": (NO_CLASS, "Show queue status."),
    "QueueSummary": (NO_CLASS, "Show queue summary."),
    "Hangup": ("system,call", "Hangup channel."),
    "Setvar": ("call", "Sets a channel variable or function value."),
    "Getvar": ("call,reporting", "Gets a channel variable or function value."),
    "Redirect": ("call", "Redirect (transfer) a call."),
    "Originate": ("originate", "Originate a call."),
    "Command": ("command", "Execute Asterisk CLI Command."),
    "GetConfig": ("system,config", "Retrieve configuration."),
    "UpdateConfig": ("config", "Update basic configuration."),
    "UserEvent": ("user", "Send an arbitrary event."),
    "CoreSettings": ("system,reporting", "Show PBX core settings (version etc)."),
    "CoreStatus": ("system,reporting", "Show PBX core status variables."),
    "CoreShowChannels": ("system,reporting", "List currently active channels."),
    "DeviceStateList": ("call,reporting", "List the current known device states."),
    "ExtensionStateList": ("call,reporting", "List the current known extension states."),
    "ShowDialPlan": ("config,reporting", "Show dialplan contexts and extensions"),
    "Reload": ("system,config", "Send a reload event."),
    "ModuleLoad": ("system", "Module management."),
    "ModuleCheck": ("system", "Check if module is loaded."),
    "Filter": ("system", "Dynamically add filters for the current manager session."),
}
# module -> its channel type and description (core show channeltypes)
CHANNEL_DRIVERS: dict[str, tuple[str, str]] = {
    "chan_pjsip": ("PJSIP", "PJSIP Channel Driver"),
    "chan_iax2": ("IAX2", "Inter Asterisk eXchange Driver (Ver 2)"),
    "chan_sip": ("SIP", "Session Initiation Protocol (SIP)"),
    "chan_dahdi": ("DAHDI", "DAHDI Telephony"),
}
CORE_CHANNEL_TYPES = (
    ("Local", "Local Proxy Channel Driver"),
    ("Announcer", "Bridge Media Announcing Channel Driver"),
    ("Recorder", "Bridge Media Recording Channel Driver"),
)
# module -> the manager actions it registers (chan_iax2.c, chan_sip.c, res_pjsip, chan_dahdi.c)
DRIVER_ACTIONS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "chan_iax2": (
        ("IAXpeers", "system,reporting", "List IAX peers."),
        ("IAXpeerlist", "system,reporting", "List IAX Peers."),
        ("IAXnetstats", "system,reporting", "Show IAX Netstats."),
        ("IAXregistry", "system,reporting", "Show IAX registrations."),
    ),
    "chan_sip": (
        ("SIPpeers", "system,reporting", "List SIP peers (text format)."),
        ("SIPshowpeer", "system,reporting", "show SIP peer (text format)."),
        ("SIPshowregistry", "system,reporting", "Show SIP registrations (text format)."),
        ("SIPnotify", "system", "Send a SIP notify."),
    ),
    "chan_pjsip": (
        ("PJSIPShowEndpoints", "system", "Lists PJSIP endpoints."),
        ("PJSIPShowEndpoint", "system", "Detail listing of an endpoint and its objects."),
    ),
    "chan_dahdi": (("DAHDIShowChannels", "system,reporting", "Show status of DAHDI channels."),),
}
# what `cel show status` lists with the shipped cel.conf (events = ALL, its apps =)
CEL_EVENTS = (
    "CHAN_START", "CHAN_END", "ANSWER", "HANGUP", "APP_START", "APP_END", "PARK_START",
    "PARK_END", "USER_DEFINED", "BRIDGE_ENTER", "BRIDGE_EXIT", "BLINDTRANSFER",
    "ATTENDEDTRANSFER", "PICKUP", "FORWARD", "LINKEDID_END", "LOCAL_OPTIMIZE",
    "LOCAL_OPTIMIZE_BEGIN", "STREAM_BEGIN", "STREAM_END", "DTMF",
)  # fmt: skip
CEL_APPS = tuple(sorted(DEFAULT_APPS))
CEL_SUBSCRIBERS = ("Manager Event", "CEL Custom CSV Logging")
DEFAULT_CONTEXTS = (
    "default",
    "from-trunk",
    "from-pstn",
    "from-internal",
    "pbx-tracker-inbound",
    "pbx-tracker-callback",
    "callback",
)


@dataclass
class PbxSetup:
    """What the simulated Asterisk has loaded and configured (change it freely in tests).

    ``devices``: the devices its drivers know (``IAX2/101``); None: every device
    of a loaded driver.  ``write_classes``: the AMI user's ``write =``; None:
    ``all``.  ``contexts``: context -> its extensions (``_X.``, ``s``...).
    """

    modules: set[str] = field(default_factory=lambda: {"chan_pjsip", "chan_iax2"})
    contexts: dict[str, list[str]] = field(
        default_factory=lambda: {name: ["s"] for name in DEFAULT_CONTEXTS}
    )
    devices: set[str] | None = None
    write_classes: frozenset[str] | None = None
    cel_enabled: bool = True
    cel_events: tuple[str, ...] = CEL_EVENTS
    cel_apps: tuple[str, ...] = CEL_APPS

    def add_context(self, name: str, *extensions: str) -> None:
        self.contexts[name] = list(extensions or ("s",))

    # -- permissions ---------------------------------------------------------

    def privilege(self, action: str) -> str | None:
        """The classes an action needs (``<none>``), None for an action nobody registered."""
        wanted = action.lower()
        for name, classes, _ in self._registered():
            if name.lower() == wanted:
                return classes
        return None

    def may_run(self, action: str) -> bool:
        classes = self.privilege(action)
        if classes is None or classes == NO_CLASS or self.write_classes is None:
            return True
        return bool(set(classes.split(",")) & self.write_classes)

    def list_commands(self, missing: Iterable[str] = ()) -> Fields:
        """The ``ListCommands`` headers: actions this user may run (``missing``: actions
        this Asterisk does not have, e.g. a test removed them)."""
        gone = {name.lower() for name in missing}
        return [
            (name, f"{synopsis} (Priv: {classes})")
            for name, classes, synopsis in self._registered()
            if name.lower() not in gone and self.may_run(name)
        ]

    def _registered(self) -> Iterable[tuple[str, str, str]]:
        for name, (classes, synopsis) in CORE_ACTIONS.items():
            yield name, classes, synopsis
        for module in sorted(self.modules):
            yield from DRIVER_ACTIONS.get(module, ())

    # -- answers -------------------------------------------------------------

    def command(self, line: str) -> tuple[bool, list[str]]:
        """A CLI command's success and output lines (the few a tracker asks)."""
        words = " ".join(line.split()).lower()
        if words == "core show channeltypes":
            return True, self._channel_types()
        if words == "cel show status":
            return True, self._cel_status()
        hint = f"(type 'core show help {line}' for other possible commands)"
        return False, [f"No such command '{line}' {hint}"]

    def module_loaded(self, name: str) -> bool:
        return name.strip().removesuffix(".so") in self.modules

    def channel_types(self) -> list[str]:
        loaded = [CHANNEL_DRIVERS[m][0] for m in sorted(self.modules) if m in CHANNEL_DRIVERS]
        return loaded + [name for name, _ in CORE_CHANNEL_TYPES]

    def dialplan(self, context: str) -> list[Fields] | None:
        """One ``ListDialplan`` body per extension of ``context``; None when there is none."""
        extensions = self.contexts.get(context)
        if extensions is None:
            return None
        entry = [("Priority", "1"), ("Application", "NoOp"), ("AppData", "")]
        entry.append(("Registrar", "pbx_config"))
        return [[("Context", context), ("Extension", exten), *entry] for exten in extensions]

    def getvar(self, variable: str, known: Mapping[str, str] | None = None) -> str:
        """A global variable ("") or, for ``DEVICE_STATE(...)``, the device's state
        (``known``: the states the simulation set, by device)."""
        name, _, rest = variable.partition("(")
        if name.strip().upper() == "DEVICE_STATE" and rest.endswith(")"):
            return self.device_state(rest[:-1], known)
        return ""

    def device_state(self, device: str, known: Mapping[str, str] | None = None) -> str:
        """As `ast_device_state`: INVALID unless a loaded driver knows ``device``."""
        tech, _, resource = device.partition("/")
        if tech.upper() == "LOCAL":
            context = resource.partition("@")[2].partition("/")[0] or "default"
            return "NOT_INUSE" if context in self.contexts else "INVALID"
        if tech.upper() not in {t.upper() for t in self.channel_types()} or not resource:
            return "INVALID"
        if known and device in known:
            return known[device]
        if self.devices is not None and not any(fnmatchcase(device, d) for d in self.devices):
            return "INVALID"
        return "NOT_INUSE"

    def _channel_types(self) -> list[str]:
        row = "{:<15.15s}  {:<40.40s} {:<13.13s} {:<13.13s} {:<13.13s} {:<13.13s}"
        header = ("Type", "Description", "Devicestate", "Presencestate", "Indications", "Transfer")
        lines = [row.format(*header).rstrip(), row.format(*(["-----------"] * 6)).rstrip()]
        described = dict(CHANNEL_DRIVERS.values()) | dict(CORE_CHANNEL_TYPES)
        for name in self.channel_types():
            lines.append(row.format(name, described[name], "yes", "no", "yes", "no").rstrip())
        lines.append("----------")
        lines.append(f"{len(self.channel_types())} channel drivers registered.")
        return lines

    def _cel_status(self) -> list[str]:
        if not self.cel_enabled:
            return ["CEL Logging: Disabled"]
        lines = ["CEL Logging: Enabled"]
        lines += [f"CEL Tracking Event: {name}" for name in self.cel_events]
        lines += [f"CEL Tracking Application: {name}" for name in self.cel_apps]
        lines += [f"CEL Event Subscriber: {name}" for name in CEL_SUBSCRIBERS]
        return lines
