"""Microsoft 365 unified audit log exports: the Purview CSV and the JSON of Search-UnifiedAuditLog.

Two real shapes reach responders:

* the CSV of Purview's "Export results" (columns ``CreationDate``, ``UserIds`` or ``UserId``,
  ``Operations`` or ``Operation``, ``AuditData``, newer exports also ``RecordId``, ``RecordType``),
  whose ``AuditData`` column holds the record as JSON text;
* JSON: ``Search-UnifiedAuditLog | ConvertTo-Json`` (objects with an ``AuditData`` string), or the
  records themselves as the Management Activity API returns them (``CreationTime``, ``Operation``,
  ``Workload``, ``RecordType`` ...), as one array or one object per line.

Each record becomes one event in channel ``M365 Audit`` (provider: the ``Workload``) whose fields
are the record's top-level properties (nested values as JSON text), plus what analysis needs
flattened: each cmdlet parameter as ``Parameters.<Name>``, and for ``MailItemsAccessed`` the
``MailAccessType``, the ``ItemCount`` (items in ``Folders``, else ``OperationCount``) and
``SizeBytes`` (sum of the items' ``SizeInBytes``). Records are never changed otherwise.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from typing import Any

from varde.sources.base import EvidenceFile, Part, ReadContext
from varde.sources.eventjson import MAX_DOCUMENT_BYTES
from varde.sources.winevent import parse_time_us

CHANNEL = "M365 Audit"
_RECORD_KEYS = ("CreationTime", "Operation", "RecordType")


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _derived(record: dict[str, Any]) -> dict[str, str]:
    """Parameters one by one, and the item count and size of a MailItemsAccessed record."""
    out: dict[str, str] = {}
    for param in record.get("Parameters") or []:
        if isinstance(param, dict) and param.get("Name"):
            out[f"Parameters.{param['Name']}"] = _text(param.get("Value")) or ""
    for prop in record.get("OperationProperties") or []:
        if isinstance(prop, dict) and prop.get("Name") == "MailAccessType":
            out["MailAccessType"] = _text(prop.get("Value")) or ""
    if record.get("Operation") == "MailItemsAccessed":
        items = [i for f in record.get("Folders") or [] if isinstance(f, dict)
                 for i in f.get("FolderItems") or [] if isinstance(i, dict)]
        count = len(items) or record.get("OperationCount")
        if count is not None:
            out["ItemCount"] = str(count)
        sizes = [i["SizeInBytes"] for i in items if isinstance(i.get("SizeInBytes"), int)]
        if sizes:
            out["SizeBytes"] = str(sum(sizes))
    return out


def add_record(record: Any, locator: str, out: ReadContext, fallback_time: str | None = None) -> None:
    """One audit record (an AuditData object, or a wrapper holding one as text) as an event."""
    if isinstance(record, dict) and "AuditData" in record:
        fallback_time = fallback_time or record.get("CreationDate")
        record = record["AuditData"]
    if isinstance(record, str):
        try:
            record = json.loads(record)
        except json.JSONDecodeError as exc:
            out.warn(locator, f"AuditData is not valid JSON: {exc}", 1)
            return
    if not isinstance(record, dict) or not any(k in record for k in _RECORD_KEYS):
        out.warn(locator, "not a unified audit log record", 1)
        return
    ts = parse_time_us(record.get("CreationTime")) or parse_time_us(fallback_time)
    if ts is None:
        out.warn(locator, "audit record without a readable CreationTime; kept without a time")
    fields = {k: _text(v) for k, v in record.items()}
    fields.update(_derived(record))
    out.event(locator, ts, None, CHANNEL, _text(record.get("Workload")), None, None, fields)


class M365AuditReader:
    """Reads unified audit log exports (CSV or JSON)."""

    name = "m365-audit"

    def sniff(self, head: bytes, name: str) -> bool:
        """A CSV header with ``AuditData`` and ``CreationDate``, or JSON with audit record keys."""
        text = head.lstrip(codecs.BOM_UTF8).lstrip()
        first = text.split(b"\n", 1)[0]
        if b"AuditData" in first and b"CreationDate" in first and not first.startswith((b"{", b"[")):
            return True
        return text.startswith((b"{", b"[")) and (
            b'"AuditData"' in text or all(k in text for k in (b'"Workload"', b'"CreationTime"', b'"Operation"')))

    def split(self, evidence: EvidenceFile, part_bytes: int) -> list[Part] | None:
        return None

    def read(self, evidence: EvidenceFile, out: ReadContext) -> None:
        with evidence.open(out.limits) as handle:
            head = handle.read(4096)
        if head.lstrip(codecs.BOM_UTF8).lstrip().startswith((b"{", b"[")):
            self._read_json(evidence, out)
        else:
            self._read_csv(evidence, out)

    def _read_csv(self, evidence: EvidenceFile, out: ReadContext) -> None:
        csv.field_size_limit(MAX_DOCUMENT_BYTES)
        with evidence.open(out.limits) as handle:
            rows = csv.DictReader(io.TextIOWrapper(handle, encoding="utf-8-sig", errors="replace", newline=""))
            number = 0
            while True:
                number += 1
                try:
                    row = next(rows)
                except StopIteration:
                    return
                except csv.Error as exc:
                    out.warn(f"row {number}", f"bad CSV: {exc}", 1)
                    return
                add_record(row, f"row {number}", out)

    def _read_json(self, evidence: EvidenceFile, out: ReadContext) -> None:
        with evidence.open(out.limits) as handle:
            data = handle.read(MAX_DOCUMENT_BYTES + 1)
        if len(data) > MAX_DOCUMENT_BYTES:
            out.warn(None, f"an audit log export over {MAX_DOCUMENT_BYTES} bytes is read only in part", 0)
        text = data.decode("utf-8-sig", errors="replace")
        try:
            doc = json.loads(text)
        except json.JSONDecodeError:
            doc = None
        if doc is not None:
            for number, record in enumerate(doc if isinstance(doc, list) else [doc], 1):
                add_record(record, f"item {number}", out)
            return
        for number, line in enumerate(text.splitlines(), 1):  # one record per line
            if not line.strip():
                continue
            try:
                add_record(json.loads(line), f"line {number}", out)
            except json.JSONDecodeError as exc:
                out.warn(f"line {number}", f"not valid JSON: {exc}", 1)
