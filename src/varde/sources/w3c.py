"""IIS W3C extended logs: ``W3SVC1`` (Exchange's front end, 443) and ``W3SVC2`` (its back end, 444).

Columns are named by the ``#Fields`` directive, re-read at every directive block (IIS writes a new
one after each restart, mid-file). A file or excerpt without any header is read with Exchange's
default IIS field order, and a warning says so. Events go to channel ``IIS``, provider the site
folder (``W3SVC1``) when the path shows it, else ``s-sitename``; host ``s-computername`` when
logged. Times are UTC (IIS W3C logs always are); a file with ``time`` but no ``date`` takes the
date from ``#Date``.

Own fields keep the W3C names and the values as logged (``-`` for empty, ``+`` for the spaces of
user agents and referrers), which is what SigmaHQ ``webserver`` rules expect. Derived fields:

* ``cs-uri``: the whole URI, ``cs-uri-stem`` + ``?`` + ``cs-uri-query`` (without ``?`` when the
  query is empty): what Sigma rules call ``cs-uri-query`` (see ``data/logsources.yml``);
* ``cs-uri-decoded``: ``cs-uri`` percent-decoded (repeatedly, so double encoding is undone too);
* ``cs-user-agent-decoded``: ``cs(User-Agent)`` with ``+`` read back as a space (a real ``+`` in
  the agent cannot be told apart; match the raw field for exact agent strings).
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from varde.sources.base import EvidenceFile, Part, ReadContext
from varde.sources.linelog import Dialect, LineWarnings, Segment, read_segments, split_lines
from varde.sources.textcolumns import parse_times, percent_decoded

#: The fields Exchange's IIS sites log by default (in this order), used when a file has no header.
DEFAULT_FIELDS = (
    "date", "time", "s-ip", "cs-method", "cs-uri-stem", "cs-uri-query", "s-port", "cs-username", "c-ip",
    "cs(User-Agent)", "cs(Referer)", "sc-status", "sc-substatus", "sc-win32-status", "time-taken",
)

CHANNEL = "IIS"
_DIALECT = Dialect(delimiter=" ", quoted=False, default_fields=DEFAULT_FIELDS)
_SITE = re.compile(r"(?:^|[\\/!])(W3SVC\d+)(?:[\\/]|$)", re.IGNORECASE)
_METHODS = rb"(?:GET|POST|HEAD|PUT|DELETE|OPTIONS|PATCH|PROPFIND|RPC_IN_DATA|RPC_OUT_DATA|[A-Z]{3,16})"
#: A data line in the default Exchange field order: date time s-ip method /stem.
_DATA_LINE = re.compile(rb"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} \S+ " + _METHODS + rb" /", re.MULTILINE)


class W3cReader:
    """Reads IIS W3C extended log files (``u_exYYMMDD.log``)."""

    name = "iis-w3c"

    def sniff(self, head: bytes, name: str) -> bool:
        """An IIS directive block (``#Software: Microsoft Internet Information Services`` or a
        ``#Fields:`` line with W3C names), or data lines in Exchange's default IIS layout."""
        text = head.removeprefix(b"\xef\xbb\xbf")
        if b"#Software: Microsoft Internet Information Services" in text[:4096]:
            return True
        fields = re.search(rb"^#Fields: *(.*)$", text, re.MULTILINE)
        if fields:
            names = fields.group(1).split()
            return b"," not in fields.group(1) and (b"cs-uri-stem" in names or b"cs-method" in names)
        return not text.startswith(b"#") and _DATA_LINE.search(text[:8192]) is not None

    def split(self, evidence: EvidenceFile, part_bytes: int) -> list[Part] | None:
        """Plain files over ``part_bytes`` are read in parts (each finds its header by itself)."""
        return split_lines(evidence, part_bytes)

    def read(self, evidence: EvidenceFile, out: ReadContext) -> None:
        warnings = LineWarnings(out)
        site = _SITE.search(evidence.path)
        defaulted = False
        for segment in read_segments(evidence, out, _DIALECT, warnings):
            if segment.defaulted and not defaulted:
                out.warn(f"line {int(segment.lines[0]) + 1}", "no #Fields header before this line: read with "
                         "Exchange's default IIS field order (" + " ".join(DEFAULT_FIELDS) + ")")
                defaulted = True
            _emit(segment, site.group(1).upper() if site else None, out, warnings)
        warnings.close()


def _emit(segment: Segment, site: str | None, out: ReadContext, warnings: LineWarnings) -> None:
    """Hand one segment's rows on as IIS events, with the derived fields."""
    table = segment.table
    names = set(table.column_names)
    if "time" in names:
        if "date" in names:
            stamp = pc.binary_join_element_wise(table["date"], table["time"], " ")
        else:
            day = segment.header.directives.get("Date", "").split(" ")[0]
            stamp = pc.binary_join_element_wise(day, table["time"], " ")
        ts = parse_times(stamp, segment.lines, warnings)
    else:
        ts = pa.nulls(table.num_rows, pa.timestamp("us"))
    table = _derived(table, names)
    provider = site if site else (table["s-sitename"] if "s-sitename" in names else None)
    host = table["s-computername"] if "s-computername" in names else None
    out.table(CHANNEL, None, np.asarray(segment.lines), ts, host, provider, table)


def _derived(table: pa.Table, names: set[str]) -> pa.Table:
    """Add ``cs-uri``, ``cs-uri-decoded`` and ``cs-user-agent-decoded`` (see the module doc)."""
    if "cs-uri-stem" in names:
        stem = table["cs-uri-stem"]
        if "cs-uri-query" in names:
            query = table["cs-uri-query"]
            empty = pc.or_(pc.equal(query, "-"), pc.equal(query, ""))
            uri = pc.if_else(empty, stem, pc.binary_join_element_wise(stem, query, "?"))
        else:
            uri = stem
        table = table.append_column("cs-uri", uri)
        table = table.append_column("cs-uri-decoded", percent_decoded(table["cs-uri"]))
    if "cs(User-Agent)" in names:
        table = table.append_column("cs-user-agent-decoded", pc.replace_substring(table["cs(User-Agent)"], "+", " "))
    return table
