"""One HTTP request to the Exchange server, fanned out to every log that records it.

A client request reaches IIS's front end (W3SVC1, port 443); the Client Access front end
("Cafe") logs it in the HttpProxy log of its protocol and proxies it to the back end (W3SVC2,
port 444), whose services log it again (EWS, Rps_Http). The ids tie them together as on a real
server: the HttpProxy ``RequestId`` is the front-end IIS line's ``cafeReqId``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from varde.scenario.formats import EWS_FIELDS, HTTPPROXY_FIELDS, RPS_HTTP_FIELDS, csv_line, iso_ms, w3c_value

if TYPE_CHECKING:
    from varde.scenario.engine import Simulation

_P = {name: i for i, name in enumerate(HTTPPROXY_FIELDS)}
_E = {name: i for i, name in enumerate(EWS_FIELDS)}
_R = {name: i for i, name in enumerate(RPS_HTTP_FIELDS)}

#: The front end's version cookie seen in real GenericInfo values (``FEAuth=BEVersion-...``).
_BE_VERSION = "1942062522"


@dataclass
class EwsCall:
    """What the EWS back end logs for a SOAP call."""

    action: str
    mailbox: str  # the primary SMTP address of the mailbox touched
    items: int = 0
    impersonated: str = ""


@dataclass
class RpsCall:
    """What the Remote PowerShell back end (Rps_Http) logs for a request."""

    action: str  # Receive, Command, ...
    command: str = ""  # cmdlet name
    client_info: str = "Microsoft WinRM Client"
    session: str = ""
    shell: str = ""


@dataclass
class Request:
    """One HTTP request as the client sent it and the server answered it."""

    ts_us: int
    method: str
    stem: str
    client_ip: str
    user_agent: str
    status: int = 200
    query: str = ""  # without the leading '?'
    user: str = ""  # DOMAIN\sam once authenticated
    protocol: str | None = None  # HttpProxy folder (Owa, Ews, ...); None: served by the front end alone
    auth: str = ""
    anchor: str = ""
    routing_hint: str = ""
    backend_cookie: str = ""
    backend_stem: str | None = None  # what the back end was asked for, when it differs (SSRF)
    backend_status: int | None = None
    request_bytes: int = 0
    response_bytes: int = 0
    referer: str = ""
    client_request_id: str = ""
    protocol_action: str = ""
    latency_ms: int = 20
    ews: EwsCall | None = None
    rps: RpsCall | None = None
    extra: dict[str, str] = field(default_factory=dict)


def ri(rng: random.Random, low: int, high: int) -> int:
    """A random integer in ``[low, high]``; ``randint`` costs three Python calls per value."""
    return low + int(rng.random() * (high - low + 1))


def new_id(rng: random.Random) -> str:
    """A random (seeded) version-4 GUID in Exchange's lower-case text form (formatted by hand:
    it runs several times per request)."""
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


_NAMES = ("ClientRequestId", "Protocol", "UrlHost", "UrlStem", "ProtocolAction", "AuthenticationType", "IsAuthenticated",
          "AuthenticatedUser", "AnchorMailbox", "UserAgent", "ClientIpAddress", "HttpStatus", "Method", "RequestBytes",
          "UrlQuery", "BackEndStatus", "RoutingHint", "BackEndCookie", "ResponseBytes", "CalculateTargetBackEndLatency",
          "BackendProcessingLatency", "ProxyTime", "CoreLatency", "HttpProxyOverhead", "TotalRequestTime",
          "GenericInfo", "DatabaseGuid")
(_CRID, _PROTOCOL, _HOST, _STEM, _ACTION, _AUTH, _IS_AUTH, _USER, _ANCHOR, _AGENT, _CLIENT, _STATUS, _METHOD,
 _REQ_BYTES, _QUERY, _BE_STATUS, _HINT, _COOKIE, _RESP_BYTES, _CALC, _BE_PROC, _PROXY_TIME, _CORE, _OVERHEAD,
 _TOTAL, _GENERIC, _DB) = (_P[name] for name in _NAMES)


def _templates(sim: Simulation) -> tuple[list[str], list[str]]:
    """The HttpProxy values every row of this server shares: (proxied, answered by the front end)."""
    found = sim.templates.get("httpproxy")
    if found is None:
        org = sim.org
        plain = [""] * len(HTTPPROXY_FIELDS)
        plain[2:6] = org.build_parts
        plain[_P["ServerHostName"]] = org.server.name
        proxied = list(plain)
        for name, value in (("ProxyAction", "Proxy"), ("TargetServer", org.server.fqdn),
                            ("TargetServerVersion", org.target_version), ("RoutingType", "IntraForest"),
                            ("HttpPipelineLatency", "0"), ("ADLatency", "0"), ("RoutingStatus", "CafeV1")):
            proxied[_P[name]] = value
        found = sim.templates["httpproxy"] = [proxied, plain]
    return found[0], found[1]


def _proxy_row(sim: Simulation, req: Request, request_id: str) -> list[str]:
    """The 74 HttpProxy values of a request (a template copied and filled: this runs for most
    lines a simulation writes)."""
    proxied_template, plain_template = _templates(sim)
    proxied = req.backend_status is not None
    row = proxied_template.copy() if proxied else plain_template.copy()
    end = req.ts_us
    begin_text, end_text = iso_ms(end - req.latency_ms * 1000), iso_ms(end)
    row[0] = end_text
    row[1] = request_id
    row[_CRID] = req.client_request_id
    row[_PROTOCOL] = req.protocol or ""
    row[_HOST] = "localhost" if req.client_ip.startswith(("127.", "::1")) else sim.org.mail_host
    row[_STEM] = req.stem
    row[_ACTION] = req.protocol_action
    row[_AUTH] = req.auth
    row[_IS_AUTH] = "true" if req.user else "false"
    row[_USER] = req.user
    row[_ANCHOR] = req.anchor
    row[_AGENT] = req.user_agent.replace(",", " ")
    row[_CLIENT] = req.client_ip
    row[_STATUS] = str(req.status)
    row[_METHOD] = req.method
    row[_REQ_BYTES] = str(req.request_bytes)
    row[_QUERY] = f"?{req.query}" if req.query else ""
    row[_TOTAL] = str(req.latency_ms)
    if not proxied:
        row[_GENERIC] = f"BeginRequest={begin_text};CorrelationID=<empty>;SharedCacheGuard=0;EndRequest={end_text};"
        return row
    backend = max(1, req.latency_ms - 1 - end % 4)
    row[_BE_STATUS] = str(req.backend_status)
    row[_HINT] = req.routing_hint
    row[_COOKIE] = req.backend_cookie
    row[_RESP_BYTES] = str(req.response_bytes)
    row[_CALC] = str(end // 1000 % 3)
    row[_BE_PROC] = row[_PROXY_TIME] = str(backend)
    row[_CORE] = row[_OVERHEAD] = str(req.latency_ms - backend)
    row[_GENERIC] = (
        f"BeginRequest={begin_text};CorrelationID=<empty>;ProxyState-Run=None;FEAuth=BEVersion-{_BE_VERSION};"
        f"BeginGetResponse={begin_text};OnResponseReady={end_text};EndGetResponse={end_text};"
        f"ProxyState-Complete=ProxyResponseData;SharedCacheGuard=0;EndRequest={end_text};"
    )
    row[_DB] = f"|RoutingDB:{sim.org.database_guid}" if req.user else ""
    return row


def _row(index: dict[str, int], values: dict[str, object]) -> list[str]:
    """A row of ``len(index)`` values, those named in ``values`` filled in, the rest empty."""
    row = [""] * len(index)
    for name, value in values.items():
        row[index[name]] = str(value)
    return row


def _versions(org_build: list[str]) -> dict[str, str]:
    return dict(zip(("MajorVersion", "MinorVersion", "BuildVersion", "RevisionVersion"), org_build, strict=True))


def _ews_row(sim: Simulation, req: Request, rng: random.Random) -> list[str]:
    """The EWS back-end values of a SOAP call."""
    call = req.ews
    assert call is not None
    org = sim.org
    return _row(_E, {
        "DateTime": iso_ms(req.ts_us - 1000), "RequestId": new_id(rng), **_versions(org.build_parts), "Ring": "Unknown",
        "AuthenticationType": req.auth, "IsAuthenticated": "true", "AuthenticatedUser": org.upn_of(req.user),
        "Organization": org.domain.upper(), "UserAgent": req.user_agent.replace(",", " "),
        "VersionInfo": "Target=None;Req=Exchange2013/Exchange2013;", "ClientIpAddress": req.client_ip,
        "ServerHostName": org.server.name, "FrontEndServer": org.server.fqdn, "SoapAction": call.action,
        "HttpStatus": req.status, "RequestSize": req.request_bytes, "ResponseSize": req.response_bytes,
        "ImpersonatedUser": call.impersonated, "CorrelationGuid": new_id(rng), "PrimaryOrProxyServer": "PrimaryServer",
        "TaskType": "LocalTask", "RemoteBackendCount": 0, "LocalMailboxCount": 1, "RemoteMailboxCount": 0,
        "LocalIdCount": call.items, "RemoteIdCount": 0, "TotalRequestTime": max(1, req.latency_ms - 3),
        "GenericInfo": f"MailboxTypeCacheSize=21;S:ActivityStandardMetadata.Component=Ews;S:WLM.BT=Ews;Mbx={call.mailbox};",
        "StartTime": iso_ms(req.ts_us - req.latency_ms * 1000), "ProcessId": org.pids["MSExchangeServicesAppPool"],
    })


def rps_row(sim: Simulation, req: Request, rng: random.Random) -> list[str]:
    """The Rps_Http values of a Remote PowerShell request."""
    call = req.rps
    assert call is not None
    org = sim.org
    return _row(_R, {
        "DateTime": iso_ms(req.ts_us - 1000), "StartTime": iso_ms(req.ts_us - req.latency_ms * 1000),
        "RequestId": new_id(rng), **_versions(org.build_parts), "UrlHost": org.server.fqdn, "UrlStem": "/PowerShell/",
        "AuthenticationType": "Kerberos", "IsAuthenticated": "true" if req.user else "false",
        "AuthenticatedUser": org.upn_of(req.user) if req.user else "", "ClientIpAddress": org.server.ip,
        "ServerHostName": org.server.name, "FrontEndServer": org.server.fqdn, "HttpStatus": req.backend_status or req.status,
        "SubStatus": 0, "Action": call.action, "CommandId": new_id(rng).upper() if call.command else "",
        "CommandName": call.command, "SessionId": call.session, "ShellId": call.shell, "FailFast": "False",
        "RequestBytes": req.request_bytes, "ClientInfo": call.client_info, "TotalTime": req.latency_ms,
        "UrlQuery": f"?{req.query}" if req.query else "",
        "GenericInfo": "RequestMonitor.Register=0;WinRMDataSender.Send=0;ThrottlingHttpModule=0;",
    })


def _iis_values(req: Request, server_ip: str, port: str, stem: str, query: str, client: str, status: int) -> str:
    """The W3C fields after ``date time``, escaped and joined."""
    return (f"{server_ip} {req.method} {stem} {w3c_value(query)} {port} {w3c_value(req.user)} {client} "
            f"{w3c_value(req.user_agent)} {w3c_value(req.referer)} {status} 0 0 {req.latency_ms}")


def send(sim: Simulation, req: Request, rng: random.Random) -> str:
    """Log ``req`` everywhere the server would; returns its request id (the ``cafeReqId``)."""
    request_id = new_id(rng)
    server = sim.org.server
    query = req.query
    if req.protocol is not None:
        query = f"{query}&CorrelationID=<empty>;&cafeReqId={request_id};" if query else \
            f"&CorrelationID=<empty>;&cafeReqId={request_id};"
        if req.stem.lower().startswith("/ecp"):
            query += "&encoding=;"
    sim.emit(req.ts_us, ("iis", "W3SVC1"),
             _iis_values(req, server.ip, "443", req.stem, query, req.client_ip, req.status))
    if req.protocol is None:
        return request_id
    sim.emit(req.ts_us, ("proxy", req.protocol), csv_line(_proxy_row(sim, req, request_id)))
    if req.backend_status is not None:
        stem, back_query = req.stem, req.query
        if req.backend_stem is not None:  # what a path confusion or SSRF made the back end serve
            stem, _, back_query = req.backend_stem.partition("?")
        sim.emit(req.ts_us - 1000, ("iis", "W3SVC2"),
                 _iis_values(req, server.ip, "444", stem, back_query, server.ip, req.backend_status))
    if req.ews is not None:
        sim.emit(req.ts_us - 1000, ("ews",), csv_line(_ews_row(sim, req, rng)))
    if req.rps is not None:
        sim.emit(req.ts_us - 1000, ("rps",), rps_row(sim, req, rng))
    return request_id
