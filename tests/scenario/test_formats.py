"""Strict checks of the simulated evidence against the documented formats (research notes
``exchange-log-formats.md``): headers, column counts per line, times, quoting, encodings, file
names per hour or day. Written from the formats, not from the simulator's code."""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime
from pathlib import Path

import orjson
import pytest
from conftest import files_under

from varde.sources.winevent import layout_of, normalise

IIS_FIELDS = ["date", "time", "s-ip", "cs-method", "cs-uri-stem", "cs-uri-query", "s-port", "cs-username", "c-ip", "cs(User-Agent)", "cs(Referer)", "sc-status", "sc-substatus", "sc-win32-status", "time-taken"]
#: Log folder (under V15\Logging) -> (file name pattern, #Log-type, number of fields, first field).
EXCHANGE_LOGS = {
    "HttpProxy": (r"HttpProxy_(\d{10})-\d+\.LOG", "HttpProxy Logs", 74, "DateTime"),
    "Ews": (r"Ews_(\d{10})-\d+\.LOG", "EWS Logs", None, "DateTime"),
    "ECP/Server": (r"ECPServer(\d{8})-\d+\.LOG", "ECP Server Log", 4, "TimeStamp"),
    "CmdletInfra/Powershell-Proxy/Http": (r"Rps_Http_(\d{10})-\d+\.LOG", "Rps Http Logs", 38, "DateTime"),
    "OABGeneratorLog": (r"OABGenerator(\d{8})-\d+\.LOG", "OAB Generator Log", 4, "TimeStamp"),
}
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
SCENARIOS = ("proxylogon", "clean-busy")


def _logging(case: Path) -> Path:
    return case / "EXCH01" / "C" / "Program Files" / "Microsoft" / "Exchange Server" / "V15" / "Logging"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_iis_w3c_files(simulated, scenario: str) -> None:
    case = simulated(scenario).out
    files = files_under(case / "EXCH01" / "C" / "inetpub" / "logs" / "LogFiles", "*.log")
    assert {p.parent.name for p in files} == {"W3SVC1", "W3SVC2"}
    for path in files:
        data = path.read_bytes()
        assert not data.startswith(b"\xef\xbb\xbf"), path
        lines = data.decode("ascii").split("\r\n")
        assert lines[-1] == ""
        assert lines[0] == "#Software: Microsoft Internet Information Services 10.0"
        assert lines[1] == "#Version: 1.0"
        assert re.fullmatch(r"#Date: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d", lines[2])
        assert lines[3] == "#Fields: " + " ".join(IIS_FIELDS)
        day = datetime.strptime(path.name, "u_ex%y%m%d.log").strftime("%Y-%m-%d")
        port = "443" if path.parent.name == "W3SVC1" else "444"
        previous = ""
        for line in lines[4:-1]:
            values = line.split(" ")
            assert len(values) == len(IIS_FIELDS), line
            row = dict(zip(IIS_FIELDS, values, strict=True))
            assert row["date"] == day and f"{row['date']} {row['time']}" >= previous, line
            previous = f"{row['date']} {row['time']}"
            datetime.strptime(previous, "%Y-%m-%d %H:%M:%S")
            assert row["s-port"] == port and row["cs-method"] in ("GET", "POST", "OPTIONS"), line
            assert row["sc-status"].isdigit() and row["time-taken"].isdigit(), line
            assert all(values), line  # empty values are written as '-'


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_exchange_csv_logs(simulated, scenario: str) -> None:
    logging = _logging(simulated(scenario).out)
    seen = set()
    for folder, (name_pattern, log_type, width, first) in EXCHANGE_LOGS.items():
        for path in files_under(logging / folder, "*.LOG"):
            seen.add(folder)
            stamp = re.fullmatch(name_pattern, path.name)
            assert stamp, path
            _check_exchange_file(path, stamp.group(1), log_type, width, first)
    assert seen == set(EXCHANGE_LOGS)


def _check_exchange_file(path: Path, stamp: str, log_type: str, width: int | None, first: str) -> None:
    data = path.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf#Software: Microsoft Exchange Server\r\n"), path
    text = data[3:].decode("utf-8")
    header = text.split("\r\n", 5)
    assert re.fullmatch(r"#Version: 15\.\d\d\.\d{4}\.\d{3}", header[1])
    assert header[2] == f"#Log-type: {log_type}"
    assert ISO_MS.match(header[3].removeprefix("#Date: ")), header[3]
    fields = header[4].removeprefix("#Fields: ").split(",")
    assert fields[0] == first and (width is None or len(fields) == width)
    assert len(fields) == len(set(fields))
    rows = list(csv.reader(io.StringIO(header[5], newline="")))
    assert rows
    previous = ""
    for row in rows:
        assert len(row) == len(fields), (path, row[:3])
        moment = row[0]
        assert ISO_MS.match(moment) and moment >= previous, (path, moment)
        previous = moment
        compact = moment[0:4] + moment[5:7] + moment[8:10] + moment[11:13]
        assert compact.startswith(stamp), (path, moment)


def test_quoting_doubles_quotes_and_keeps_commas(simulated) -> None:
    """The ProxyLogon ECP line holds commas and double quotes: quoted, quotes doubled."""
    logging = _logging(simulated("proxylogon").out)
    raw = b"".join(p.read_bytes() for p in files_under(logging / "ECP" / "Server", "*.LOG"))
    assert b'"S:TIME=' in raw and b'Request[""' in raw
    rows = [r for p in files_under(logging / "ECP" / "Server", "*.LOG")
            for r in csv.reader(io.StringIO(p.read_bytes()[3:].decode(), newline="")) if r and not r[0].startswith("#")]
    assert any('eval(Request["' in r[3] and len(r) == 4 for r in rows)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_event_json_lines(simulated, scenario: str) -> None:
    files = files_under(simulated(scenario).out / "EXCH01" / "EventLogs", "*.jsonl")
    assert {p.stem for p in files} >= {"Security", "Microsoft-Windows-Sysmon%4Operational", "Application"}
    for path in files:
        records = []
        for line in path.read_bytes().splitlines():
            doc = orjson.loads(line)
            assert layout_of(doc) == "evtx"
            event = normalise(doc, "evtx")
            assert event.channel == path.stem.replace("%4", "/") and event.ts_us and event.event_id
            assert event.host == "exch01.corp.example"
            records.append(event.record_id)
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z",
                                doc["Event"]["System"]["TimeCreated"]["#attributes"]["SystemTime"])
        assert records == list(range(records[0], records[0] + len(records))), path


def test_cmdlet_events_have_positional_data(simulated) -> None:
    path = simulated("proxylogon").out / "EXCH01" / "EventLogs" / "MSExchange Management.jsonl"
    for line in path.read_bytes().splitlines():
        event = orjson.loads(line)["Event"]
        assert event["System"]["Provider"]["#attributes"]["Name"] == "MSExchange CmdletLogs"
        data = event["EventData"]["Data"]["#text"]
        assert isinstance(data, list) and len(data) >= 10
        assert re.fullmatch(r"\d+ (w3wp#MSExchange\w+AppPool|powershell)", data[6])
