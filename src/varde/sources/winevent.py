"""Normalise one Windows event, in any of its JSON layouts, to the common columns + own fields.

Layouts handled (all seen in real collections):

* the ``evtx`` crate's rendering (``evtx_dump -o json``, the ``.json`` twins of the SigmaHQ
  regression data): ``Event.System`` + ``Event.EventData`` / ``Event.UserData``;
* Winlogbeat: ``winlog.channel``, ``winlog.event_data`` ...;
* flattened NXLog / OTRF style: ``Channel``, ``EventID``, ``Hostname`` and the EventData names as
  top-level keys, usually with the rendered ``Message``.

Field values are kept as the source wrote them (strings); numbers and booleans become their
text so that Sigma string matching sees what an analyst would see in Event Viewer.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any, NamedTuple

#: System values copied into the own fields (unless EventData already has that name), so
#: that rules and analysts can use them.
_SYSTEM_EXTRAS = ("Level", "Task", "Opcode", "Keywords", "Version")

#: Provider of the Exchange cmdlet log (channel ``MSExchange Management``: event 1 cmdlet
#: succeeded, 6 cmdlet failed), whose values are unnamed, positional ``<Data>`` elements.
CMDLET_PROVIDER = "MSExchange CmdletLogs"
#: Names given to those positions (read from real events; research notes, exchange-log-formats.md
#: "Windows event logs"). Positions 3 and 4 hold SIDs whose roles are not documented, and later
#: positions (AD scope text, activity id, service plan, culture) are localised or vary: they stay
#: only in the joined ``Data`` text, which keyword rules search.
CMDLET_DATA = {0: "Cmdlet", 1: "Parameters", 2: "Caller", 5: "ClientApplication", 6: "Process", 9: "Duration"}


class WinEvent(NamedTuple):
    """The common columns of one Windows event and its own fields."""

    ts_us: int | None
    host: str | None
    channel: str | None
    provider: str | None
    event_id: int | None
    record_id: int | None
    fields: dict[str, str | None]


def parse_time_us(value: Any) -> int | None:
    """Microseconds since 1970 UTC from an ISO 8601 time; a time without zone is taken as UTC."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip()
    text = text.removesuffix(" UTC")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return math.floor(moment.timestamp()) * 1_000_000 + moment.microsecond


def as_text(value: Any) -> str | None:
    """The text form of a scalar JSON value (``true``/``false`` for booleans)."""
    kind = type(value)
    if kind is str or value is None:
        return value
    if kind is int or kind is float:
        return str(value)
    if kind is bool:
        return "true" if value else "false"
    if kind is dict:
        return as_text(value.get("#text"))
    if kind is list:  # positional <Data> values: one text, as the rendered message reads
        return " ".join(t for t in (as_text(v) for v in value) if t is not None)
    return str(value)


def as_int(value: Any) -> int | None:
    """An integer from ``5``, ``"5"`` or the crate's ``{"#text": "5", "#attributes": ...}``."""
    if type(value) is int:
        return value
    if isinstance(value, dict):
        value = value.get("#text")
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    text = str(value).strip()
    try:
        return int(text, 16) if text[:2].lower() == "0x" else int(text)
    except ValueError:
        return None


def flatten_data(node: Any, out: dict[str, str | None]) -> None:
    """Flatten EventData / UserData into ``name -> text``.

    Named ``<Data Name="X">`` values arrive as keys. Unnamed, positional ``<Data>`` values
    (classic providers such as MSExchange CmdletLogs) arrive as one ``Data`` list and are kept
    as one space-joined ``Data`` text, which is what keyword rules search. UserData wraps its
    values in one provider-specific element, which is stepped into. (This runs for every event:
    plain strings, the common case, take the shortest path.)
    """
    if type(node) is not dict:
        text = as_text(node)
        if text is not None:
            out.setdefault("Data", text)
        return
    for name, value in node.items():
        kind = type(value)
        if kind is str or value is None:
            out[name if name != "#text" else "Data"] = value
        elif kind is dict:
            if name == "#attributes":
                continue
            if "#text" in value:
                out[name] = as_text(value)
            else:
                flatten_data(value, out)
        else:
            out[name if name != "#text" else "Data"] = as_text(value)


def name_cmdlet_data(values: list[str | None], fields: dict[str, str | None]) -> None:
    """Add the named fields of an MSExchange CmdletLogs event from its positional values (the
    joined ``Data`` text stays as it is)."""
    for position, name in CMDLET_DATA.items():
        if position < len(values) and name not in fields:
            fields[name] = values[position]


def from_evtx_layout(event: dict[str, Any]) -> WinEvent:
    """Normalise the ``evtx`` crate's ``{"Event": {"System": ..., "EventData": ...}}``."""
    system = event.get("System") or {}
    provider = system.get("Provider") or {}
    attrs = (provider.get("#attributes") or {}) if isinstance(provider, dict) else {}
    created = system.get("TimeCreated") or {}
    created_attrs = (created.get("#attributes") or {}) if isinstance(created, dict) else {}
    fields: dict[str, str | None] = {}
    for key in ("EventData", "UserData"):
        if key in event:
            flatten_data(event[key], fields)
    for name in _SYSTEM_EXTRAS:
        value = system.get(name)
        if value is not None and name not in fields:
            fields[name] = value if type(value) is str else as_text(value)
    if attrs.get("Name") == CMDLET_PROVIDER:
        data = (event.get("EventData") or {}).get("Data") if isinstance(event.get("EventData"), dict) else None
        if isinstance(data, dict):
            data = data.get("#text")
        if isinstance(data, list):
            name_cmdlet_data([as_text(v) for v in data], fields)
    security = system.get("Security")
    if isinstance(security, dict) and "UserID" not in fields:
        user = (security.get("#attributes") or {}).get("UserID")
        if user:
            fields["UserID"] = user
    return WinEvent(
        ts_us=parse_time_us(created_attrs.get("SystemTime")),
        host=as_text(system.get("Computer")),
        channel=as_text(system.get("Channel")),
        provider=attrs.get("Name") or attrs.get("EventSourceName"),
        event_id=as_int(system.get("EventID")),
        record_id=as_int(system.get("EventRecordID")),
        fields=fields,
    )


def from_winlogbeat(doc: dict[str, Any]) -> WinEvent:
    """Normalise a Winlogbeat document (``winlog`` object plus ``@timestamp`` and ``message``)."""
    winlog = doc.get("winlog") or {}
    fields: dict[str, str | None] = {}
    for key in ("event_data", "user_data"):
        if isinstance(winlog.get(key), dict):
            flatten_data(winlog[key], fields)
    if winlog.get("provider_name") == CMDLET_PROVIDER and "param1" in fields:  # Winlogbeat numbers them
        name_cmdlet_data([fields.get(f"param{n}") for n in range(1, max(CMDLET_DATA) + 2)], fields)
    message = doc.get("message")
    if message is not None and "Message" not in fields:
        fields["Message"] = as_text(message)
    event = doc.get("event") or {}
    return WinEvent(
        ts_us=parse_time_us(doc.get("@timestamp") or event.get("created")),
        host=as_text(winlog.get("computer_name") or (doc.get("host") or {}).get("name")),
        channel=as_text(winlog.get("channel")),
        provider=as_text(winlog.get("provider_name")),
        event_id=as_int(winlog.get("event_id") or event.get("code")),
        record_id=as_int(winlog.get("record_id")),
        fields=fields,
    )


#: Flat-layout keys that become common columns, in order of preference for each column.
_FLAT_COLUMNS = {
    "ts": ("TimeCreated", "@timestamp", "EventTime", "TimeGenerated", "EventReceivedTime"),
    "host": ("Hostname", "Computer", "ComputerName", "MachineName"),
    "channel": ("Channel", "LogName"),
    "provider": ("SourceName", "ProviderName", "Provider_Name", "Provider"),
    "event_id": ("EventID", "EventId", "Id"),
    "record_id": ("EventRecordID", "RecordNumber", "RecordId"),
}
_FLAT_META = frozenset(k for keys in _FLAT_COLUMNS.values() for k in keys) | {"@version"}


def _first(doc: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        value = doc.get(key)
        if value not in (None, ""):
            return value
    return None


#: The English rendered message of a cmdlet event (flattened exports keep only the message);
#: Exchange itself spells it "suceeded".
_CMDLET_MESSAGE = re.compile(r"Cmdlet (?:succeeded|suceeded|failed)\. Cmdlet (?P<c>[^,\s]+), parameters (?P<p>.*)\.",
                             re.DOTALL)


def from_flat(doc: dict[str, Any]) -> WinEvent:
    """Normalise a flattened NXLog / OTRF-style event (EventData names as top-level keys)."""
    fields: dict[str, str | None] = {}
    for name, value in doc.items():
        if name not in _FLAT_META:
            fields[name] = as_text(value)
    message = fields.get("Message")
    if message and "Cmdlet" not in fields and _first(doc, _FLAT_COLUMNS["provider"]) == CMDLET_PROVIDER:
        match = _CMDLET_MESSAGE.match(message)
        if match:
            fields["Cmdlet"], fields["Parameters"] = match.group("c"), match.group("p")
    return WinEvent(
        ts_us=parse_time_us(_first(doc, _FLAT_COLUMNS["ts"])),
        host=as_text(_first(doc, _FLAT_COLUMNS["host"])),
        channel=as_text(_first(doc, _FLAT_COLUMNS["channel"])),
        provider=as_text(_first(doc, _FLAT_COLUMNS["provider"])),
        event_id=as_int(_first(doc, _FLAT_COLUMNS["event_id"])),
        record_id=as_int(_first(doc, _FLAT_COLUMNS["record_id"])),
        fields=fields,
    )


def layout_of(doc: dict[str, Any]) -> str | None:
    """Which layout a decoded JSON document is in: ``evtx``, ``winlogbeat``, ``flat`` or None."""
    if isinstance(doc.get("Event"), dict) and isinstance(doc["Event"].get("System"), dict):
        return "evtx"
    if isinstance(doc.get("winlog"), dict):
        return "winlogbeat"
    if any(k in doc for k in ("EventID", "EventId")) and any(k in doc for k in _FLAT_COLUMNS["channel"]):
        return "flat"
    return None


def normalise(doc: dict[str, Any], layout: str) -> WinEvent:
    """Normalise ``doc`` known to be in ``layout`` (see :func:`layout_of`)."""
    if layout == "evtx":
        return from_evtx_layout(doc["Event"])
    if layout == "winlogbeat":
        return from_winlogbeat(doc)
    return from_flat(doc)
