"""Microsoft 365 unified audit log exports, in the shapes Purview and Exchange Online PowerShell write.

The CSV is Purview's "Export results" layout (``RecordId, CreationDate, RecordType, Operation,
UserId, AuditData, AssociatedAdminUnits, AssociatedAdminUnitsNames``; AuditData is the record as
JSON). The JSON is ``Search-UnifiedAuditLog | ConvertTo-Json`` (wrappers with ``AuditData`` as
text) and the Management Activity API's records one per line. Record properties follow
Microsoft's audit log schema (MailItemsAccessed: ``Folders[].FolderItems[].SizeInBytes``,
``OperationProperties`` MailAccessType; cmdlet records: ``Parameters`` name/value pairs).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from varde.events.store import EventStore
from varde.pipeline import HuntOptions, hunt
from varde.sources.eventjson import EventJsonReader
from varde.sources.m365audit import M365AuditReader

ACCESSED = {
    "CreationTime": "2021-03-03T03:00:00", "Id": "9d3b7c1e-0000-4000-8000-000000000001",
    "Operation": "MailItemsAccessed", "OrganizationId": "0f0e0d0c-0000-4000-8000-000000000000", "RecordType": 50,
    "ResultStatus": "Succeeded", "UserKey": "10032000ABCDEF", "UserType": 0, "Version": 1, "Workload": "Exchange",
    "UserId": "alice@corp.example", "ClientIPAddress": "192.0.2.11", "ClientInfoString": "Client=REST;",
    "MailboxOwnerUPN": "dave@corp.example", "ExternalAccess": False, "LogonType": 0,
    "OperationProperties": [{"Name": "MailAccessType", "Value": "Bind"}, {"Name": "IsThrottled", "Value": "False"}],
    "Folders": [{"Id": "LgAAAA", "Path": "\\Inbox", "FolderItems": [
        {"InternetMessageId": "<m1@corp.example>", "SizeInBytes": 1200},
        {"InternetMessageId": "<m2@corp.example>", "SizeInBytes": 800}]}],
    "OperationCount": 2,
}
RULE = {
    "CreationTime": "2021-03-03T03:10:00", "Id": "9d3b7c1e-0000-4000-8000-000000000002", "Operation": "New-InboxRule",
    "OrganizationId": "0f0e0d0c-0000-4000-8000-000000000000", "RecordType": 1, "ResultStatus": "True",
    "UserKey": "alice@corp.example", "UserType": 2, "Version": 1, "Workload": "Exchange",
    "ClientIP": "192.0.2.11:50422", "ObjectId": "alice\\fwd", "UserId": "alice@corp.example",
    "Parameters": [{"Name": "Name", "Value": "fwd"}, {"Name": "ForwardTo", "Value": "drop@evil.example"}],
}


def purview_csv(records: list[dict]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_MINIMAL)
    writer.writerow(["RecordId", "CreationDate", "RecordType", "Operation", "UserId", "AuditData",
                     "AssociatedAdminUnits", "AssociatedAdminUnitsNames"])
    for r in records:
        writer.writerow([r["Id"], r["CreationTime"] + ".0000000Z", r["RecordType"], r["Operation"], r["UserId"],
                         json.dumps(r), "", ""])
    return out.getvalue().encode("utf-8-sig")


def powershell_json(records: list[dict]) -> bytes:
    wrapped = [{"RecordType": "ExchangeItemAggregated", "CreationDate": r["CreationTime"], "UserIds": r["UserId"],
                "Operations": r["Operation"], "AuditData": json.dumps(r), "ResultIndex": n, "ResultCount": 2,
                "Identity": r["Id"], "IsValid": True, "ObjectState": "Unchanged"} for n, r in enumerate(records, 1)]
    return json.dumps(wrapped, indent=4).encode()


def _events(tmp_path: Path, files: dict[str, bytes]) -> tuple[list[dict], list[tuple]]:
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    for name, data in files.items():
        (evidence / name).write_bytes(data)
    result = hunt([evidence], tmp_path / "case", HuntOptions(builtin_rules=False, workers=1))
    with EventStore(result.case.store_path) as store:
        rows = store.query("SELECT locator, ts, provider, fields::VARCHAR FROM events WHERE channel = 'M365 Audit' "
                           "ORDER BY evidence, locator")
        warnings = store.query("SELECT message FROM read_warnings")
    return [{"locator": loc, "ts": ts, "provider": p, **json.loads(f)} for loc, ts, p, f in rows], warnings


def test_purview_csv_and_powershell_json_are_read(tmp_path):
    events, warnings = _events(tmp_path, {"audit.csv": purview_csv([ACCESSED, RULE]),
                                          "audit.json": powershell_json([ACCESSED, RULE])})
    assert warnings == []
    assert len(events) == 4
    accessed = [e for e in events if e["Operation"] == "MailItemsAccessed"]
    for e in accessed:
        assert (e["ItemCount"], e["SizeBytes"], e["MailAccessType"]) == ("2", "2000", "Bind")
        assert e["MailboxOwnerUPN"] == "dave@corp.example" and e["provider"] == "Exchange"
        assert str(e["ts"]) == "2021-03-03 03:00:00"
    rule = next(e for e in events if e["Operation"] == "New-InboxRule")
    assert rule["Parameters.ForwardTo"] == "drop@evil.example"
    assert json.loads(rule["Parameters"])[0] == {"Name": "Name", "Value": "fwd"}


def test_api_records_one_per_line_and_bad_lines_are_counted(tmp_path):
    text = json.dumps(ACCESSED) + "\n{not json\n" + json.dumps(RULE) + "\n"
    events, warnings = _events(tmp_path, {"ual.jsonl": text.encode()})
    assert [e["Operation"] for e in events] == ["MailItemsAccessed", "New-InboxRule"]
    assert [e["locator"] for e in events] == ["line 1", "line 3"]
    assert len(warnings) == 1 and "not valid JSON" in warnings[0][0]


def test_sniffing_keeps_audit_exports_and_windows_events_apart():
    reader = M365AuditReader()
    assert reader.sniff(purview_csv([ACCESSED]), "x.csv")
    assert reader.sniff(powershell_json([RULE])[:4096], "x.json")
    windows = b'{"Event":{"System":{"EventID":4624,"Channel":"Security"}}}\n'
    assert not reader.sniff(windows, "x.json")
    assert not EventJsonReader().sniff(powershell_json([RULE])[:4096], "x.json")
    assert not reader.sniff(b"#Software: Microsoft Internet Information Services 10.0\n", "u_ex.log")
