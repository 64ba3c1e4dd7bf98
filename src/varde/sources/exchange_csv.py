"""Exchange's own CSV logs: HttpProxy (every protocol), EWS, ECP server and activity, OAB
generator, CmdletInfra (Rps_Http, Rps_Cmdlet), MapiHttp, message tracking, and any other log
Exchange writes with the same directive header.

Every one starts with ``#Software``, ``#Version``, ``#Log-type``, ``#Date`` and ``#Fields``
directives; rows are CSV with double-quote quoting, UTF-8 with or without BOM, times ISO 8601
UTC. Columns are named by ``#Fields`` (their sets differ between builds) and kept as logged.

Events go to channel ``Exchange <family>`` (:data:`FAMILIES`; an unknown ``#Log-type`` gives
``Exchange <its text>``), provider the HttpProxy protocol (the ``Logging\\HttpProxy\\<Protocol>``
folder, else the ``Protocol`` column), host ``ServerHostName`` or ``ServerName`` when logged.
Derived fields: ``Url`` (``UrlStem`` + ``UrlQuery``, which starts with ``?``) and ``UrlDecoded``
(percent-decoded) where the log has ``UrlStem``; for ECP logs, each ``S:KEY=value`` pair of
``EventData`` as its own field ``S:KEY`` (``EventData`` itself is kept).
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from varde.sources.base import EvidenceFile, Part, ReadContext
from varde.sources.linelog import Dialect, LineWarnings, Segment, read_segments, split_lines
from varde.sources.textcolumns import parse_times, percent_decoded

#: ``#Log-type`` text (lower case, without a trailing "log"/"logs") -> log family.
FAMILIES = {
    "httpproxy": "HttpProxy",
    "ews": "EWS",
    "ecp server": "ECP Server",
    "ecp activity context": "ECP Activity",
    "ecp activity": "ECP Activity",
    "oab generator": "OAB Generator",
    "oabgenerator": "OAB Generator",
    "rps http": "Rps Http",
    "rps cmdlet": "Rps Cmdlet",
    "mapihttp": "MapiHttp",
    "mapi http": "MapiHttp",
    "message tracking": "Message Tracking",
}
#: Folder names that tell the family when ``#Log-type`` is missing or unknown.
_FOLDERS = (
    (re.compile(r"[\\/]OABGeneratorLog[\\/]", re.IGNORECASE), "OAB Generator"),
    (re.compile(r"[\\/]HttpProxy[\\/]", re.IGNORECASE), "HttpProxy"),
    (re.compile(r"[\\/]ECP[\\/]Server[\\/]", re.IGNORECASE), "ECP Server"),
    (re.compile(r"[\\/]ECP[\\/]Activity[\\/]", re.IGNORECASE), "ECP Activity"),
    (re.compile(r"[\\/]MessageTracking[\\/]", re.IGNORECASE), "Message Tracking"),
)
_PROTOCOL_FOLDER = re.compile(r"(?:^|[\\/!])HttpProxy[\\/]([A-Za-z]+)[\\/][^\\/]*$", re.IGNORECASE)
#: Columns holding the record's time, in order of preference.
_TIME_COLUMNS = ("DateTime", "TimeStamp", "date-time", "Timestamp", "Time")
_HOST_COLUMNS = ("ServerHostName", "ServerName")
#: Boundary before an ``S:KEY=`` pair inside ECP ``EventData`` (a value may hold ``;`` itself, as
#: the JScript of a ProxyLogon ExternalUrl does; only ``;`` followed by a typed key splits).
_PAIR_SPLIT = re.compile(r";(?=[A-Za-z0-9]{1,4}:[^=;\s]{1,128}=)")
_DIALECT = Dialect(delimiter=",", quoted=True)
#: Most ``S:KEY`` fields split out of ``EventData`` per segment (real ECP logs use about 20 keys).
MAX_PAIR_FIELDS = 128


def family_of(log_type: str | None, path: str) -> str:
    """The log family of a file from its ``#Log-type`` directive, else its folder."""
    if log_type:
        key = re.sub(r"\s+logs?$", "", log_type.strip(), flags=re.IGNORECASE).lower()
        if key in FAMILIES:
            return FAMILIES[key]
    for pattern, family in _FOLDERS:
        if pattern.search(path):
            return family
    return log_type.strip() if log_type else "Log"


class ExchangeCsvReader:
    """Reads Exchange's CSV logs (see the module documentation)."""

    name = "exchange-csv"

    def sniff(self, head: bytes, name: str) -> bool:
        """A directive block written by Exchange (``#Software: Microsoft Exchange``), or one with
        ``#Log-type:`` and a comma-separated ``#Fields:`` line (lines before it are tolerated)."""
        text = head.removeprefix(b"\xef\xbb\xbf")
        if re.search(rb"^#Software: Microsoft Exchange", text, re.MULTILINE):
            return True
        fields = re.search(rb"^#Fields: *([^\r\n]*)", text, re.MULTILINE)
        return bool(fields) and b"," in fields.group(1) and re.search(rb"^#Log-type:", text, re.MULTILINE) is not None

    def split(self, evidence: EvidenceFile, part_bytes: int) -> list[Part] | None:
        """Plain files over ``part_bytes`` are read in parts (each finds its header by itself)."""
        return split_lines(evidence, part_bytes)

    def read(self, evidence: EvidenceFile, out: ReadContext) -> None:
        warnings = LineWarnings(out)
        folder = _PROTOCOL_FOLDER.search(evidence.path.replace("!", "/"))
        for segment in read_segments(evidence, out, _DIALECT, warnings):
            if not segment.table.num_columns:
                first = int(segment.lines[0]) + 1
                out.warn(f"line {first}", f"no #Fields header before this line: {len(segment.lines)} lines "
                         "cannot be named and are skipped", len(segment.lines))
                continue
            family = family_of(segment.header.directives.get("Log-type"), evidence.path)
            _emit(segment, family, folder.group(1) if folder else None, out, warnings)
        warnings.close()


def _emit(segment: Segment, family: str, protocol: str | None, out: ReadContext, warnings: LineWarnings) -> None:
    """Hand one segment's rows on as events of ``Exchange <family>``."""
    table = segment.table
    names = table.column_names
    time_column = next((c for c in _TIME_COLUMNS if c in names), None)
    if time_column is None:
        ts = pa.nulls(table.num_rows, pa.timestamp("us"))
    else:
        ts = parse_times(table[time_column], segment.lines, warnings)
    host_column = next((c for c in _HOST_COLUMNS if c in names), None)
    host = pc.if_else(pc.equal(table[host_column], ""), None, table[host_column]) if host_column else None
    provider: pa.ChunkedArray | str | None = None
    if family == "HttpProxy":
        provider = protocol if protocol else (table["Protocol"] if "Protocol" in names else None)
    if "UrlStem" in names:
        url = pc.binary_join_element_wise(table["UrlStem"], table["UrlQuery"], "") if "UrlQuery" in names \
            else table["UrlStem"]
        table = table.append_column("Url", url)
        table = table.append_column("UrlDecoded", percent_decoded(table["Url"]))
    if "EventData" in names:
        table = _event_data_pairs(table)
    out.table(f"Exchange {family}", None, np.asarray(segment.lines), ts, host, provider, table)


def split_pairs(text: str) -> dict[str, str]:
    """The ``S:KEY=value`` pairs of an ECP ``EventData`` text (other typed pairs, the per-server
    counters ``I32:``, ``Dbl:``, ``F:``, are left in ``EventData``). The first of a repeated key wins."""
    pairs: dict[str, str] = {}
    for item in _PAIR_SPLIT.split(text):
        key, sep, value = item.partition("=")
        if sep and key.startswith("S:") and key not in pairs:
            pairs[key] = value
    return pairs


def _event_data_pairs(table: pa.Table) -> pa.Table:
    """``table`` with one column per ``S:KEY`` found in its ``EventData`` values (at most
    MAX_PAIR_FIELDS keys per segment, the first in sorted order: a hostile log could otherwise
    make thousands of columns; the rest stay readable in ``EventData``)."""
    rows = [split_pairs(text) for text in table["EventData"].to_pylist()]
    keys = sorted({k for row in rows for k in row} - set(table.column_names))[:MAX_PAIR_FIELDS]
    for key in keys:
        table = table.append_column(key, pa.array([row.get(key) for row in rows], pa.string()))
    return table
