"""Build IIS W3C and Exchange HttpProxy logs of a given size for the log benchmark.

The lines follow the documented formats (shared/docs/research/exchange-log-formats.md): the
default Exchange IIS field set with Exchange's ``&CorrelationID=<empty>;&cafeReqId=<guid>;``
query suffix and ``+`` for spaces in user agents, and the 74-column HttpProxy field list of
Exchange 2016 CU23. Traffic is a seeded mix of OWA, EWS, ActiveSync, Autodiscover, MAPI, ECP and
health-probe requests from a few hundred clients, with a small share of ProxyLogon / ProxyShell /
web shell requests (the lines of the research notes) so that rules have something to find. The
same arguments always give the same bytes.

Usage::

    python bench/make_logs.py --mb 100 --out bench/work/logs-100
"""

from __future__ import annotations

import argparse
import random
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

IIS_FIELDS = ("date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip cs(User-Agent) "
              "cs(Referer) sc-status sc-substatus sc-win32-status time-taken")
HTTPPROXY_FIELDS = (
    "DateTime,RequestId,MajorVersion,MinorVersion,BuildVersion,RevisionVersion,ClientRequestId,Protocol,UrlHost,"
    "UrlStem,ProtocolAction,AuthenticationType,IsAuthenticated,AuthenticatedUser,Organization,AnchorMailbox,UserAgent,"
    "ClientIpAddress,ServerHostName,HttpStatus,BackEndStatus,ErrorCode,Method,ProxyAction,TargetServer,"
    "TargetServerVersion,RoutingType,RoutingHint,BackEndCookie,ServerLocatorHost,ServerLocatorLatency,RequestBytes,"
    "ResponseBytes,TargetOutstandingRequests,AuthModulePerfContext,HttpPipelineLatency,CalculateTargetBackEndLatency,"
    "GlsLatencyBreakup,TotalGlsLatency,AccountForestLatencyBreakup,TotalAccountForestLatency,"
    "ResourceForestLatencyBreakup,TotalResourceForestLatency,ADLatency,SharedCacheLatencyBreakup,"
    "TotalSharedCacheLatency,ActivityContextLifeTime,ModuleToHandlerSwitchingLatency,ClientReqStreamLatency,"
    "BackendReqInitLatency,BackendReqStreamLatency,BackendProcessingLatency,BackendRespInitLatency,"
    "BackendRespStreamLatency,ClientRespStreamLatency,KerberosAuthHeaderLatency,HandlerCompletionLatency,"
    "RequestHandlerLatency,HandlerToModuleSwitchingLatency,ProxyTime,CoreLatency,RoutingLatency,HttpProxyOverhead,"
    "TotalRequestTime,RouteRefresherLatency,UrlQuery,BackEndGenericInfo,GenericInfo,GenericErrors,EdgeTraceId,"
    "DatabaseGuid,UserADObjectGuid,PartitionEndpointLookupLatency,RoutingStatus"
)
#: (protocol, method, stem, query) of ordinary requests.
REQUESTS = (
    ("Owa", "GET", "/owa/", "&ClientId=4B1F2C&CorrelationID=<empty>;&cafeReqId={g};&encoding=;"),
    ("Owa", "POST", "/owa/service.svc", "action=GetItem&EP=1&ID=-21&AC=1&CorrelationID=<empty>;&cafeReqId={g};"),
    ("Owa", "POST", "/owa/auth.owa", "&CorrelationID=<empty>;&cafeReqId={g};&encoding=;"),
    ("Ews", "POST", "/EWS/Exchange.asmx", "&CorrelationID=<empty>;&cafeReqId={g};"),
    ("Eas", "POST", "/Microsoft-Server-ActiveSync/default.eas",
     "Cmd=Sync&User={u}&DeviceId=ABC{n}&DeviceType=Outlook&CorrelationID=<empty>;&cafeReqId={g};"),
    ("Autodiscover", "POST", "/autodiscover/autodiscover.xml", "&CorrelationID=<empty>;&cafeReqId={g};"),
    ("Mapi", "POST", "/mapi/emsmdb/", "mailboxId={g}@corp.example&CorrelationID=<empty>;&cafeReqId={g};"),
    ("Ecp", "GET", "/ecp/", "&CorrelationID=<empty>;&cafeReqId={g};"),
    ("Oab", "GET", "/OAB/{g}/oab.xml", "&CorrelationID=<empty>;&cafeReqId={g};"),
)
AGENTS = (
    "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.13901; Pro)",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/108.0 Safari/537.36",
    "Outlook-iOS-Android/1.0",
    "AMProbe/Local/ClientAccess",
    "ExchangeWebServices/15.01.2375.007",
)
#: Attack requests of the research notes (ProxyLogon, ProxyShell, web shell use).
ATTACKS = (
    ("Ecp", "POST", "/ecp/y.js", "&CorrelationID=<empty>;&cafeReqId={g};&encoding=;", "ExchangeServicesClient/0.0.0.0"),
    ("Autodiscover", "GET", "/autodiscover/autodiscover.json",
     "@evil.com/mapi/nspi/?&Email=autodiscover/autodiscover.json%3F@evil.com", "python-requests/2.25.1"),
    ("Owa", "POST", "/owa/auth/RedirSuiteServerProxy.aspx", "&CorrelationID=<empty>;&cafeReqId={g};", "antSword/v2.1"),
)


def _guid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _request(rng: random.Random, n: int) -> tuple[str, str, str, str, str, str, int, str]:
    """(protocol, method, stem, query, agent, user, status, client ip) of request ``n``."""
    guid = _guid(rng)
    if rng.random() < 0.001:
        protocol, method, stem, query, agent = rng.choice(ATTACKS)
        return protocol, method, stem, query.format(g=guid), agent, "-", 200, "203.0.113.7"
    protocol, method, stem, query = rng.choice(REQUESTS)
    user = f"user{rng.randrange(400):03d}"
    query = query.format(g=guid, u=f"corp%5C{user}", n=n % 97)
    status = 401 if rng.random() < 0.03 else 200
    return protocol, method, stem.format(g=guid), query, rng.choice(AGENTS), f"CORP\\{user}", status, \
        f"10.{rng.randrange(4)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


def iis_line(rng: random.Random, n: int, moment: datetime) -> str:
    _, method, stem, query, agent, user, status, ip = _request(rng, n)
    return (f"{moment:%Y-%m-%d %H:%M:%S} 10.0.0.5 {method} {stem} {query} 443 {user} {ip} {agent.replace(' ', '+')} "
            f"- {status} 0 0 {rng.randrange(1, 900)}")


def _csv(value: str) -> str:
    return '"' + value.replace('"', '""') + '"' if ("," in value or '"' in value) else value


def httpproxy_line(rng: random.Random, n: int, moment: datetime) -> str:
    protocol, method, stem, query, agent, user, status, ip = _request(rng, n)
    values = dict.fromkeys(HTTPPROXY_FIELDS.split(","), "")
    values.update({
        "DateTime": f"{moment:%Y-%m-%dT%H:%M:%S}.{rng.randrange(1000):03d}Z", "RequestId": _guid(rng),
        "MajorVersion": "15", "MinorVersion": "1", "BuildVersion": "2375", "RevisionVersion": "7",
        "Protocol": protocol, "UrlHost": "mail.corp.example", "UrlStem": stem, "AuthenticationType": "Negotiate",
        "IsAuthenticated": "true" if status == 200 else "false", "AuthenticatedUser": user if user != "-" else "",
        "AnchorMailbox": f"Sid~S-1-5-21-1-2-3-{rng.randrange(1000, 9999)}", "UserAgent": agent,
        "ClientIpAddress": ip, "ServerHostName": "EXCH01", "HttpStatus": str(status), "BackEndStatus": str(status),
        "Method": method, "ProxyAction": "Proxy", "TargetServer": "EXCH02.corp.example",
        "TargetServerVersion": "15.01.2375.000", "RoutingType": "IntraForest", "RoutingHint": "WindowsIdentity",
        "RequestBytes": str(rng.randrange(5000)), "ResponseBytes": str(rng.randrange(50000)),
        "TotalRequestTime": str(rng.randrange(1, 900)), "UrlQuery": "?" + query if query else "",
        "GenericInfo": f"BeginRequest={moment:%Y-%m-%dT%H:%M:%S}.000Z;CorrelationID=<empty>;ProxyState-Run=None;"
                       f"FEAuth=BEVersion-1942063431;EndRequest={moment:%Y-%m-%dT%H:%M:%S}.010Z;",
        "RoutingStatus": "CafeV1",
    })
    return ",".join(_csv(v) for v in values.values())


def build(mb: int, out: Path, seed: int = 7) -> dict:
    """Write ``out/W3SVC1/u_ex*.log`` and ``out/HttpProxy/<Protocol>/HttpProxy_*.LOG`` files with
    about ``mb`` MB in all, half IIS and half HttpProxy; reuse them when already built."""
    marker = out.parent / f".{out.name}-built-{mb}-{seed}"  # beside the folder: not evidence
    if marker.exists():
        return {"bytes": sum(p.stat().st_size for p in out.rglob("*") if p.is_file()),
                "events": int(marker.read_text())}
    rng = random.Random(seed)
    start = datetime(2021, 3, 3, tzinfo=UTC)
    events = 0
    for kind, target in (("iis", mb << 19), ("httpproxy", mb << 19)):
        path = out / ("W3SVC1/u_ex210303.log" if kind == "iis" else "HttpProxy/Ecp/HttpProxy_2021030300-1.LOG")
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8", newline="\r\n") as handle:
            if kind == "iis":
                handle.write("#Software: Microsoft Internet Information Services 10.0\n#Version: 1.0\n"
                             f"#Date: 2021-03-03 00:00:00\n#Fields: {IIS_FIELDS}\n")
            else:
                handle.write("#Software: Microsoft Exchange Server\n#Version: 15.01.2375.007\n"
                             "#Log-type: HttpProxy Logs\n#Date: 2021-03-03T00:00:00.000Z\n"
                             f"#Fields: {HTTPPROXY_FIELDS}\n")
            written, n = 0, 0
            make = iis_line if kind == "iis" else httpproxy_line
            while written < target:
                lines = [make(rng, n + i, start + timedelta(seconds=(n + i) // 20)) for i in range(2000)]
                text = "\n".join(lines) + "\n"
                handle.write(text)
                written += len(text) + len(lines)
                n += len(lines)
            events += n
    marker.write_text(str(events))
    return {"bytes": sum(p.stat().st_size for p in out.rglob("*") if p.is_file()), "events": events}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    print(build(args.mb, args.out))


if __name__ == "__main__":
    main()
