"""The event-JSON reader: layouts, encodings, document shapes and damaged lines.

Every fixture is written into ``tmp_path`` by the test; files are read through the real
discovery + ingest path (``plan`` + ``ingest``) into a case store, and the store is checked.
Most tests read in this process (``workers=0``) so they are fast and can lower module limits.
"""

from __future__ import annotations

import codecs
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from builders import Read, read

from varde.sources import eventjson
from varde.sources.eventjson import EventJsonReader

# --- helpers ---------------------------------------------------------------------------------------


def evtx_layout(
    n: int, channel: str = "Microsoft-Windows-Sysmon/Operational", event_id: int = 1, **data: Any
) -> dict:
    """One event as the ``evtx`` crate renders it (evtx_dump -o json / jsonl)."""
    return {
        "Event": {
            "#attributes": {"xmlns": "http://schemas.microsoft.com/win/2004/08/events/event"},
            "System": {
                "Provider": {
                    "#attributes": {
                        "Name": "Microsoft-Windows-Sysmon",
                        "Guid": "5770385F-C22A-43E0-BF4C-06F5698FFBD9",
                    }
                },
                "EventID": event_id,
                "Version": 5,
                "Level": 4,
                "TimeCreated": {"#attributes": {"SystemTime": f"2021-03-03T02:10:{n % 60:02d}.123456Z"}},
                "EventRecordID": 1000 + n,
                "Channel": channel,
                "Computer": "EXCH01.corp.example",
                "Security": {"#attributes": {"UserID": "S-1-5-18"}},
            },
            "EventData": {
                "Image": "C:\\Windows\\System32\\cmd.exe",
                "CommandLine": f"cmd /c echo {n}",
                **data,
            },
        }
    }


def winlogbeat(n: int) -> dict:
    return {
        "@timestamp": "2021-03-14T01:40:12.987Z",
        "message": "A new process has been created.",
        "host": {"name": "mx01"},
        "event": {"code": 4688, "created": "2021-03-14T01:40:13.000Z"},
        "winlog": {
            "channel": "Security",
            "provider_name": "Microsoft-Windows-Security-Auditing",
            "computer_name": "MX01.corp.example",
            "event_id": 4688,
            "record_id": 5000 + n,
            "event_data": {
                "NewProcessName": "C:\\Windows\\System32\\whoami.exe",
                "ProcessId": "0x1a4",
                "Elevated": True,
                "Count": 5,
            },
        },
    }


def flat(n: int) -> dict:
    """OTRF / NXLog style: common columns and EventData names side by side at the top level."""
    return {
        "SourceName": "MSExchange CmdletLogs",
        "Channel": "MSExchange Management",
        "Hostname": "MXS01.azsentinel.local",
        "TimeCreated": "2021-03-14T01:40:12.987Z",
        "@timestamp": "2021-03-14T01:40:12.987Z",
        "EventID": "1",
        "RecordNumber": 70 + n,
        "Message": "Cmdlet suceeded. Cmdlet Set-OabVirtualDirectory, parameters -ExternalUrl ...",
        "Task": "1",
    }


def jsonl(*docs: dict) -> bytes:
    return b"".join(json.dumps(d, ensure_ascii=False).encode() + b"\n" for d in docs)


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / "evidence" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def lines_of(result: Read) -> list[str]:
    return [e["locator"] for e in result.events]


# --- layouts ---------------------------------------------------------------------------------------


def test_evtx_crate_layout_json_lines(tmp_path: Path) -> None:
    path = write(tmp_path, "sysmon.jsonl", jsonl(*(evtx_layout(n) for n in range(3))))
    result = read(tmp_path, path)
    row = result.only()
    assert (row["reader"], row["records"], row["skipped_records"], row["complete"]) == (
        "event-json",
        3,
        0,
        True,
    )
    assert row["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert result.warnings == []
    assert lines_of(result) == ["line 1", "line 2", "line 3"]
    first = result.events[0]
    assert first["channel"] == "Microsoft-Windows-Sysmon/Operational"
    assert first["provider"] == "Microsoft-Windows-Sysmon"
    assert (first["event_id"], first["record_id"], first["host"]) == (1, 1000, "EXCH01.corp.example")
    assert first["ts"].isoformat().startswith("2021-03-03T02:10:00.123456")
    assert first["fields"]["CommandLine"] == "cmd /c echo 0"
    assert first["fields"]["UserID"] == "S-1-5-18"
    assert first["fields"]["Level"] == "4"  # System values kept as text


def test_winlogbeat_layout(tmp_path: Path) -> None:
    result = read(tmp_path, write(tmp_path, "winlogbeat.ndjson", jsonl(winlogbeat(0), winlogbeat(1))))
    assert result.only()["records"] == 2 and result.warnings == []
    event = result.events[0]
    assert (event["channel"], event["provider"], event["event_id"], event["record_id"]) == (
        "Security",
        "Microsoft-Windows-Security-Auditing",
        4688,
        5000,
    )
    assert event["host"] == "MX01.corp.example"
    assert event["ts"].isoformat().startswith("2021-03-14T01:40:12.987")
    assert event["fields"]["NewProcessName"] == "C:\\Windows\\System32\\whoami.exe"
    assert event["fields"]["Elevated"] == "true" and event["fields"]["Count"] == "5"  # values as text
    assert event["fields"]["Message"] == "A new process has been created."


def test_flat_otrf_layout(tmp_path: Path) -> None:
    result = read(tmp_path, write(tmp_path, "otrf.json", jsonl(flat(0), flat(1))))
    assert result.only()["records"] == 2 and result.warnings == []
    event = result.events[0]
    assert (event["channel"], event["provider"], event["event_id"], event["record_id"], event["host"]) == (
        "MSExchange Management",
        "MSExchange CmdletLogs",
        1,
        70,
        "MXS01.azsentinel.local",
    )
    assert "Set-OabVirtualDirectory" in event["fields"]["Message"]
    assert event["fields"]["Task"] == "1"
    assert "Channel" not in event["fields"] and "EventID" not in event["fields"]  # common columns, not fields


def test_layouts_may_change_from_line_to_line(tmp_path: Path) -> None:
    result = read(tmp_path, write(tmp_path, "mixed.jsonl", jsonl(evtx_layout(0), winlogbeat(0), flat(0))))
    assert [e["channel"] for e in result.events] == [
        "Microsoft-Windows-Sysmon/Operational",
        "Security",
        "MSExchange Management",
    ]
    assert result.warnings == []


def test_json_that_is_not_a_windows_event_is_skipped_and_reported(tmp_path: Path) -> None:
    data = (
        jsonl(evtx_layout(0), {"foo": 1}, evtx_layout(1)) + b"[1, 2]\n" + b'"text"\n' + jsonl(evtx_layout(2))
    )
    result = read(tmp_path, write(tmp_path, "events.jsonl", data))
    # a JSON array on a line is a list of records: each item that is not an event is one skipped
    assert result.only()["records"] == 3 and result.only()["skipped_records"] == 4
    assert [(w["locator"], w["skipped"]) for w in result.warnings] == [
        ("line 2", 1),
        ("line 4 item 1", 1),
        ("line 4 item 2", 1),
        ("line 5", 1),
    ]
    assert lines_of(result) == ["line 1", "line 3", "line 6"]


# --- document shapes -------------------------------------------------------------------------------


def test_pretty_printed_concatenated_documents(tmp_path: Path) -> None:
    """Objects one after another, as ``evtx_dump -o json`` writes them (and the SigmaHQ .json twins)."""
    docs = [json.dumps(evtx_layout(n), indent=2) for n in range(3)]
    path = write(tmp_path, "dump.json", ("\n".join(docs) + "\n").encode())
    result = read(tmp_path, path)
    assert result.only()["records"] == 3 and result.warnings == []
    starts = [1 + sum(d.count("\n") + 1 for d in docs[:k]) for k in range(3)]
    assert lines_of(result) == [f"line {s}" for s in starts]
    assert [e["record_id"] for e in result.events] == [1000, 1001, 1002]


def test_pretty_printed_json_array(tmp_path: Path) -> None:
    path = write(tmp_path, "array.json", json.dumps([evtx_layout(n) for n in range(3)], indent=4).encode())
    result = read(tmp_path, path)
    assert result.only()["records"] == 3 and result.warnings == []
    assert lines_of(result) == ["line 1 item 1", "line 1 item 2", "line 1 item 3"]


def test_compact_single_line_json_array(tmp_path: Path) -> None:
    path = write(tmp_path, "array.json", json.dumps([evtx_layout(n) for n in range(5)]).encode())
    result = read(tmp_path, path)
    assert result.only()["reader"] == "event-json"
    assert result.only()["records"] == 5
    assert result.warnings == []


# --- encodings -------------------------------------------------------------------------------------

UNICODE_VALUE = "Contrôleur « DC » 日本語 \u00e9"


@pytest.mark.parametrize(
    ("name", "encode"),
    [
        (
            "utf16le-lines.json",
            lambda text: codecs.BOM_UTF16_LE + text.replace("\n", "\r\n").encode("utf-16-le"),
        ),
        ("utf16be-lines.json", lambda text: codecs.BOM_UTF16_BE + text.encode("utf-16-be")),
        ("utf8bom-lines.json", lambda text: codecs.BOM_UTF8 + text.encode("utf-8")),
    ],
)
def test_json_lines_encodings(tmp_path: Path, name: str, encode: Any) -> None:
    text = jsonl(*(evtx_layout(n, Note=UNICODE_VALUE) for n in range(3))).decode()
    result = read(tmp_path, write(tmp_path, name, encode(text)))
    row = result.only()
    assert (row["reader"], row["records"], row["skipped_records"]) == ("event-json", 3, 0)
    assert result.warnings == []
    assert [e["fields"]["Note"] for e in result.events] == [UNICODE_VALUE] * 3
    assert lines_of(result) == ["line 1", "line 2", "line 3"]


def test_utf16le_pretty_array_as_powershell_writes_it(tmp_path: Path) -> None:
    """``ConvertTo-Json | Out-File`` in Windows PowerShell: UTF-16LE with BOM, CRLF, indented."""
    text = json.dumps([evtx_layout(n, Note=UNICODE_VALUE) for n in range(4)], indent=4, ensure_ascii=False)
    path = write(tmp_path, "ps.json", codecs.BOM_UTF16_LE + text.replace("\n", "\r\n").encode("utf-16-le"))
    result = read(tmp_path, path)
    assert result.only()["records"] == 4 and result.warnings == []
    assert result.events[3]["fields"]["Note"] == UNICODE_VALUE


def test_invalid_utf8_is_replaced_kept_and_warned(tmp_path: Path) -> None:
    bad = json.dumps(evtx_layout(1, Note="caf\u00e9")).encode().replace(b"caf\\u00e9", b"caf\xff\xfe")
    assert b"\xff\xfe" in bad
    data = jsonl(evtx_layout(0)) + bad + b"\n" + jsonl(evtx_layout(2))
    result = read(tmp_path, write(tmp_path, "latin.jsonl", data))
    assert result.only()["records"] == 3 and result.only()["skipped_records"] == 0
    assert [(w["locator"], w["skipped"]) for w in result.warnings] == [("line 2", 0)]
    assert "UTF-8" in result.warnings[0]["message"]
    assert result.events[1]["fields"]["Note"].startswith("caf\ufffd")


def test_invalid_utf8_in_a_pretty_printed_document(tmp_path: Path) -> None:
    text = json.dumps([evtx_layout(0, Note="caf\u00e9")], indent=2, ensure_ascii=False).encode()
    path = write(tmp_path, "pretty-latin1.json", text.replace("é".encode(), b"\xe9"))
    result = read(tmp_path, path)
    assert result.only()["records"] == 1
    assert any("UTF-8" in w["message"] for w in result.warnings)


# --- damaged lines ---------------------------------------------------------------------------------


def test_invalid_json_lines_between_valid_ones(tmp_path: Path) -> None:
    data = (
        jsonl(evtx_layout(0))
        + b'{"Event": {"System": {"EventID": 1,\n'  # cut short
        + jsonl(evtx_layout(1))
        + b"not json at all\n"
        + b"\x00\x00\x00\x00\n"
        + jsonl(evtx_layout(2))
    )
    result = read(tmp_path, write(tmp_path, "damaged.jsonl", data))
    row = result.only()
    assert (row["records"], row["skipped_records"], row["complete"]) == (3, 3, True)
    assert [(w["locator"], w["skipped"]) for w in result.warnings] == [
        ("line 2", 1),
        ("line 4", 1),
        ("line 5", 1),
    ]
    assert lines_of(result) == ["line 1", "line 3", "line 6"]
    assert [e["record_id"] for e in result.events] == [1000, 1001, 1002]


def test_a_thousand_junk_lines_between_valid_lines(tmp_path: Path) -> None:
    junk = b"".join(b'%d: this line is garbage {"half": \n' % n for n in range(1000))
    data = jsonl(evtx_layout(0)) + junk + jsonl(*(evtx_layout(n) for n in range(1, 51)))
    result = read(tmp_path, write(tmp_path, "junk.jsonl", data))
    row = result.only()
    assert (row["records"], row["skipped_records"]) == (51, 1000)
    assert len(result.warnings) == 1000
    assert {w["locator"] for w in result.warnings} == {f"line {n}" for n in range(2, 1002)}
    assert [e["record_id"] for e in result.events] == list(range(1000, 1051))
    assert result.events[-1]["locator"] == "line 1051"


def test_a_thousand_junk_lines_before_valid_lines(tmp_path: Path) -> None:
    junk = b"".join(b"%d: this line is garbage\n" % n for n in range(1000))
    data = junk + jsonl(*(evtx_layout(n) for n in range(50)))
    result = read(tmp_path, write(tmp_path, "junk-first.jsonl", data))
    row = result.only()
    assert row["reader"] == "event-json"
    assert (row["records"], row["skipped_records"]) == (50, 1000)


def test_invalid_first_line_then_valid_lines(tmp_path: Path) -> None:
    data = b'{"Event": {"System": {"EventID": 1, "Chan\n' + jsonl(*(evtx_layout(n) for n in range(5)))
    result = read(tmp_path, write(tmp_path, "cut-first.jsonl", data))
    row = result.only()
    assert row["reader"] == "event-json"
    assert (row["records"], row["skipped_records"]) == (5, 1)
    assert [w["locator"] for w in result.warnings] == ["line 1"]


def test_invalid_json_in_a_pretty_printed_file_is_reported(tmp_path: Path) -> None:
    text = (
        json.dumps(evtx_layout(0), indent=2)
        + '\n{\n  "Event": oops\n}\n'
        + json.dumps(evtx_layout(1), indent=2)
    )
    result = read(tmp_path, write(tmp_path, "pretty-damaged.json", text.encode()))
    assert result.only()["records"] >= 1
    assert result.warnings and result.warnings[0]["locator"].startswith("line ")
    assert result.only()["skipped_records"] >= 1


def test_overlong_line_is_skipped_and_the_rest_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(eventjson, "MAX_LINE_BYTES", 1000)
    long_line = json.dumps(evtx_layout(99, Blob="A" * 5000)).encode()
    data = jsonl(evtx_layout(0)) + long_line + b"\n" + jsonl(evtx_layout(1), evtx_layout(2))
    result = read(tmp_path, write(tmp_path, "long.jsonl", data))
    row = result.only()
    assert (row["records"], row["skipped_records"]) == (3, 1)
    assert [(w["locator"], w["skipped"]) for w in result.warnings] == [("line 2", 1)]
    assert "longer than" in result.warnings[0]["message"]
    assert lines_of(result) == ["line 1", "line 3", "line 4"]


def test_overlong_last_line_without_newline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(eventjson, "MAX_LINE_BYTES", 1000)
    data = jsonl(evtx_layout(0)) + json.dumps(evtx_layout(99, Blob="A" * 5000)).encode()
    result = read(tmp_path, write(tmp_path, "long-last.jsonl", data))
    assert (result.only()["records"], result.only()["skipped_records"]) == (1, 1)


def test_line_at_the_limit_does_not_swallow_the_next_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = json.dumps(evtx_layout(99, Blob="")).encode()
    at_limit = json.dumps(evtx_layout(99, Blob="B" * (1000 - len(base)))).encode()
    assert len(at_limit) == 1000
    monkeypatch.setattr(eventjson, "MAX_LINE_BYTES", 1000)
    data = jsonl(evtx_layout(0)) + at_limit + b"\n" + jsonl(evtx_layout(1), evtx_layout(2))
    result = read(tmp_path, write(tmp_path, "limit.jsonl", data))
    row = result.only()
    # the line at the limit may be read or skipped with a warning, but lines 3 and 4 must be read
    assert {"line 3", "line 4"} <= set(lines_of(result))
    assert row["records"] + row["skipped_records"] == 4


# --- empty and unknown -----------------------------------------------------------------------------


@pytest.mark.parametrize("content", [b"", b"\n\n  \r\n", codecs.BOM_UTF8])
def test_empty_file_is_listed_hashed_and_warned(tmp_path: Path, content: bytes) -> None:
    path = write(tmp_path, "empty.json", content)
    result = read(tmp_path, path)
    row = result.only()
    assert row["reader"] is None and row["records"] == 0
    assert row["sha256"] == hashlib.sha256(content).hexdigest()
    assert len(result.warnings) == 1 and result.events == []


# --- sniffing --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (jsonl(evtx_layout(0)), True),
        (jsonl(winlogbeat(0)), True),
        (jsonl(flat(0)), True),
        (json.dumps([evtx_layout(0)], indent=2).encode(), True),
        (json.dumps(evtx_layout(0), indent=2).encode(), True),
        (codecs.BOM_UTF16_LE + jsonl(evtx_layout(0)).decode().encode("utf-16-le"), True),
        (codecs.BOM_UTF8 + b"\r\n  " + jsonl(evtx_layout(0)), True),
        (b'{"foo": 1, "bar": [1, 2]}\n', False),
        (b"[1, 2, 3]", False),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", False),
        (b"#Software: Microsoft Internet Information Services 10.0\n", False),
        (b"", False),
    ],
)
def test_sniff(head: bytes, expected: bool) -> None:
    assert EventJsonReader().sniff(head[:4096], "whatever.bin") is expected


def test_worker_processes_read_the_same_as_inline(tmp_path: Path) -> None:
    data = jsonl(*(evtx_layout(n) for n in range(20))) + b"junk\n" + jsonl(winlogbeat(0), flat(0))
    path = write(tmp_path, "events.jsonl", data)
    inline = read(tmp_path, path, workers=0)
    pooled = read(tmp_path, path, workers=2)
    assert pooled.evidence == inline.evidence
    assert pooled.warnings == inline.warnings
    assert pooled.events == inline.events
