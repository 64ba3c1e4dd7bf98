"""A small case built from rows in the documented log layouts: two intruders and a scanner.

Rows follow docs/research/exchange-log-formats.md (IIS W3C with Exchange's default fields,
HttpProxy, MSExchange Management cmdlet events, Sysmon file creation, Microsoft 365 unified audit
records as the Management Activity API returns them) and the request shapes of the public
ProxyLogon write-ups. The addresses are documentation ranges (RFC 5737).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from builders import store_with

from varde.detect.exchange import run_detectors
from varde.detect.sigma.findings import build_findings, sort_findings
from varde.report.build import build_report
from varde.report.document import Report
from varde.report.excerpts import with_excerpts

A1, A2 = "192.0.2.10", "192.0.2.11"  # intruder A: two addresses, one web shell
B = "198.51.100.20"  # intruder B: its own web shell
SCANNER = "203.0.113.99"  # only failed SSRF tries
ADMIN = "10.0.0.21"
AGENT_A = "python-requests/2.25.1"
AGENT_B = "Mozilla/5.0 (Windows NT 6.1; Win64; x64; rv:78.0) Gecko/20100101 Firefox/78.0"
CREATED = datetime(2021, 3, 10, tzinfo=UTC)


def iis(ts: str, method: str, stem: str, query: str, status: str, ip: str, agent: str, user: str = "-",
        size: str = "512") -> dict:
    """An IIS W3SVC1 line (Exchange's default fields, sc-bytes added as many sites log it)."""
    return {"ts": ts, "host": "EXCH01", "provider": "W3SVC1", "date": ts[:10], "time": ts[11:19], "s-ip": "10.0.0.5",
            "cs-method": method, "cs-uri-stem": stem, "cs-uri-query": query, "s-port": "443", "cs-username": user,
            "c-ip": ip, "cs(User-Agent)": agent.replace(" ", "+"), "cs(Referer)": "-", "sc-status": status,
            "sc-substatus": "0", "sc-win32-status": "0", "sc-bytes": size, "time-taken": "15"}


def proxy(ts: str, anchor: str, status: str, request_id: str, ip: str, agent: str) -> dict:
    """An HttpProxy (Ecp) row."""
    return {"ts": ts, "host": "EXCH01", "provider": "Ecp", "DateTime": ts, "RequestId": request_id,
            "Protocol": "Ecp", "UrlStem": "/ecp/y.js", "AnchorMailbox": anchor, "UserAgent": agent,
            "ClientIpAddress": ip, "ServerHostName": "EXCH01", "HttpStatus": status, "Method": "POST",
            "RoutingHint": "X-BEResource-Cookie", "AuthenticatedUser": ""}


def cmdlet(ts: str, text: str) -> dict:
    """An MSExchange Management event 1 (positional Data joined, as the EVTX reader keeps it)."""
    return {"ts": ts, "host": "EXCH01", "provider": "MSExchange CmdletLogs", "Data": text}


def sysmon_file(ts: str, image: str, target: str) -> dict:
    return {"ts": ts, "host": "EXCH01", "provider": "Microsoft-Windows-Sysmon", "Image": image,
            "TargetFilename": target, "ProcessId": "4242", "User": "NT AUTHORITY\\SYSTEM"}


def events(hostile: str = "") -> dict:
    """The case's events by (channel, event id); ``hostile`` is put into attacker-controlled fields."""
    backend = "ServerInfo~a]@EXCH01.corp.example:444"
    rid = "5e58f5e5-0000-4000-8000-0000000000{:02d}"
    proxy_rows = [proxy("2021-03-02T22:10:00Z", f"{backend}/ecp/default.flt?#", "500", rid.format(n), SCANNER,
                        "zgrab/0.x") for n in range(3)]
    proxy_rows.append(proxy("2021-03-03T01:44:10Z", f"{backend}/ecp/proxyLogon.ecp?#", "241", rid.format(10), A1,
                            AGENT_A))
    shell_a, shell_b = "/owa/auth/OutlookEN.aspx", "/aspnet_client/system_web/discover.aspx"
    lines = [iis(f"2021-03-03T02:0{n}:00Z", "POST", shell_a, "", "200", A1 if n < 3 else A2, AGENT_A + hostile)
             for n in range(6)]
    lines += [iis("2021-03-03T02:20:00Z", "POST", "/EWS/Exchange.asmx", "", "200", A2, AGENT_A, user="CORP\\alice")]
    lines += [iis("2021-03-03T02:40:00Z", "GET", f"/owa/auth/{hostile or 'x'}alice.pst", "", "200", A2, AGENT_A,
                  size="73400320")]
    lines += [iis(f"2021-03-04T16:3{n}:00Z", "POST", shell_b, f"cmd={hostile}", "200", B, AGENT_B) for n in range(3)]
    lines += [iis("2021-03-03T09:00:00Z", "POST", "/EWS/Exchange.asmx", "", "200", ADMIN, "Outlook", user="CORP\\bob")]
    path = "C:\\Program Files\\Microsoft\\Exchange Server\\V15\\FrontEnd\\HttpProxy\\owa\\auth\\"
    return {
        ("Exchange HttpProxy", None): proxy_rows,
        ("IIS", None): lines,
        ("MSExchange Management", 1): [
            cmdlet("2021-03-03T02:30:00Z", f"New-MailboxExportRequest -Mailbox alice@corp.example -FilePath "
                   f"\"\\\\EXCH01\\c$\\{path[3:]}{hostile or 'x'}alice.pst\" {hostile}"),
            cmdlet("2021-03-05T11:00:00Z", "New-MailboxExportRequest -Mailbox carol@corp.example -FilePath "
                   "\\\\backup01\\pst\\carol.pst"),
        ],
        ("Microsoft-Windows-Sysmon/Operational", 11): [
            sysmon_file("2021-03-04T16:29:00Z", "C:\\Windows\\System32\\inetsrv\\w3wp.exe",
                        "C:\\inetpub\\wwwroot\\aspnet_client\\system_web\\discover.aspx"),
        ],
        ("M365 Audit", None): [
            {"ts": "2021-03-03T03:00:00Z", "provider": "Exchange", "Operation": "MailItemsAccessed",
             "ClientIPAddress": A2, "UserId": "alice@corp.example", "MailboxOwnerUPN": "dave@corp.example",
             "ItemCount": "12", "SizeBytes": "40960"},
            {"ts": "2021-03-03T03:05:00Z", "provider": "Exchange", "Operation": "MailItemsAccessed",
             "ClientIPAddress": ADMIN, "UserId": "bob@corp.example", "MailboxOwnerUPN": "bob@corp.example",
             "ItemCount": "3"},
        ],
    }


def build(tmp_path: Path, hostile: str = "") -> Report:
    """Detect and report over the case, as the hunt does after reading (fixed clock)."""
    with store_with(tmp_path / "events.duckdb", events(hostile)) as store:
        outcome = run_detectors(store)
        assert outcome.errors == []
        findings = sort_findings(build_findings(store, outcome.rules, detector="exchange", table="detector_matches"))
        return with_excerpts(build_report(store, [], findings, CREATED), store)
