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

from varde.scenario.formats import EWS_FIELDS, HTTPPROXY_FIELDS, RPS_HTTP_FIELDS, iso_ms, w3c_value

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


def _proxy_row(sim: Simulation, req: Request, request_id: str, rng: random.Random) -> list[str]:
    """The 74 HttpProxy values of a request."""
    server = sim.org.server
    iso = iso_ms
    end = req.ts_us
    begin = end - req.latency_ms * 1000
    row = [""] * len(HTTPPROXY_FIELDS)
    row[0] = iso(end)
    row[1] = request_id
    row[2:6] = sim.org.build_parts
    row[_P["ClientRequestId"]] = req.client_request_id
    row[_P["Protocol"]] = req.protocol or ""
    row[_P["UrlHost"]] = sim.org.mail_host if not req.client_ip.startswith(("127.", "::1")) else "localhost"
    row[_P["UrlStem"]] = req.stem
    row[_P["ProtocolAction"]] = req.protocol_action
    row[_P["AuthenticationType"]] = req.auth
    row[_P["IsAuthenticated"]] = "true" if req.user else "false"
    row[_P["AuthenticatedUser"]] = req.user
    row[_P["AnchorMailbox"]] = req.anchor
    row[_P["UserAgent"]] = req.user_agent.replace(",", " ")
    row[_P["ClientIpAddress"]] = req.client_ip
    row[_P["ServerHostName"]] = server.name
    row[_P["HttpStatus"]] = str(req.status)
    row[_P["Method"]] = req.method
    row[_P["RequestBytes"]] = str(req.request_bytes)
    row[_P["UrlQuery"]] = f"?{req.query}" if req.query else ""
    proxied = req.backend_status is not None
    if proxied:
        row[_P["BackEndStatus"]] = str(req.backend_status)
        row[_P["ProxyAction"]] = "Proxy"
        row[_P["TargetServer"]] = server.fqdn
        row[_P["TargetServerVersion"]] = sim.org.target_version
        row[_P["RoutingType"]] = "IntraForest"
        row[_P["RoutingHint"]] = req.routing_hint
        row[_P["BackEndCookie"]] = req.backend_cookie
        row[_P["ResponseBytes"]] = str(req.response_bytes)
        backend = max(1, req.latency_ms - ri(rng, 1, 4))
        for name, value in (("HttpPipelineLatency", 0), ("CalculateTargetBackEndLatency", ri(rng, 0, 2)),
                            ("ADLatency", 0), ("BackendProcessingLatency", backend),
                            ("ProxyTime", backend), ("CoreLatency", req.latency_ms - backend),
                            ("HttpProxyOverhead", req.latency_ms - backend), ("TotalRequestTime", req.latency_ms)):
            row[_P[name]] = str(value)
        row[_P["GenericInfo"]] = (
            f"BeginRequest={iso(begin)};CorrelationID=<empty>;ProxyState-Run=None;FEAuth=BEVersion-{_BE_VERSION};"
            f"BeginGetResponse={iso(begin + 1000)};OnResponseReady={iso(end - 500)};EndGetResponse={iso(end - 500)};"
            f"ProxyState-Complete=ProxyResponseData;SharedCacheGuard=0;EndRequest={iso(end)};"
        )
        row[_P["DatabaseGuid"]] = f"|RoutingDB:{sim.org.database_guid}" if req.user else ""
        row[_P["RoutingStatus"]] = "CafeV1"
    else:
        row[_P["TotalRequestTime"]] = str(req.latency_ms)
        row[_P["GenericInfo"]] = (
            f"BeginRequest={iso(begin)};CorrelationID=<empty>;SharedCacheGuard=0;EndRequest={iso(end)};"
        )
    return row


def _ews_row(sim: Simulation, req: Request, rng: random.Random) -> list[str]:
    """The EWS back-end values of a SOAP call."""
    call = req.ews
    assert call is not None
    org = sim.org
    row = [""] * len(EWS_FIELDS)
    row[0] = iso_ms(req.ts_us - 1000)
    row[1] = new_id(rng)
    row[2:6] = org.build_parts
    row[_E["Ring"]] = "Unknown"
    row[_E["AuthenticationType"]] = req.auth
    row[_E["IsAuthenticated"]] = "true"
    row[_E["AuthenticatedUser"]] = org.upn_of(req.user)
    row[_E["Organization"]] = org.domain.upper()
    row[_E["UserAgent"]] = req.user_agent.replace(",", " ")
    row[_E["VersionInfo"]] = "Target=None;Req=Exchange2013/Exchange2013;"
    row[_E["ClientIpAddress"]] = req.client_ip
    row[_E["ServerHostName"]] = org.server.name
    row[_E["FrontEndServer"]] = org.server.fqdn
    row[_E["SoapAction"]] = call.action
    row[_E["HttpStatus"]] = str(req.status)
    row[_E["RequestSize"]] = str(req.request_bytes)
    row[_E["ResponseSize"]] = str(req.response_bytes)
    row[_E["ImpersonatedUser"]] = call.impersonated
    row[_E["CorrelationGuid"]] = new_id(rng)
    row[_E["PrimaryOrProxyServer"]] = "PrimaryServer"
    row[_E["TaskType"]] = "LocalTask"
    for name, value in (("RemoteBackendCount", 0), ("LocalMailboxCount", 1), ("RemoteMailboxCount", 0),
                        ("LocalIdCount", call.items), ("RemoteIdCount", 0)):
        row[_E[name]] = str(value)
    row[_E["TotalRequestTime"]] = str(max(1, req.latency_ms - 3))
    row[_E["GenericInfo"]] = f"MailboxTypeCacheSize=21;S:ActivityStandardMetadata.Component=Ews;S:WLM.BT=Ews;Mbx={call.mailbox};"
    row[_E["StartTime"]] = iso_ms(req.ts_us - req.latency_ms * 1000)
    row[_E["ProcessId"]] = str(org.pids["MSExchangeServicesAppPool"])
    return row


def rps_row(sim: Simulation, req: Request, rng: random.Random) -> list[str]:
    """The Rps_Http values of a Remote PowerShell request."""
    call = req.rps
    assert call is not None
    org = sim.org
    row = [""] * len(RPS_HTTP_FIELDS)
    row[0] = iso_ms(req.ts_us - 1000)
    row[1] = iso_ms(req.ts_us - req.latency_ms * 1000)
    row[2] = new_id(rng)
    row[3:7] = org.build_parts
    row[_R["UrlHost"]] = org.server.fqdn
    row[_R["UrlStem"]] = "/PowerShell/"
    row[_R["AuthenticationType"]] = "Kerberos"
    row[_R["IsAuthenticated"]] = "true" if req.user else "false"
    row[_R["AuthenticatedUser"]] = org.upn_of(req.user) if req.user else ""
    row[_R["ClientIpAddress"]] = org.server.ip
    row[_R["ServerHostName"]] = org.server.name
    row[_R["FrontEndServer"]] = org.server.fqdn
    row[_R["HttpStatus"]] = str(req.backend_status or req.status)
    row[_R["SubStatus"]] = "0"
    row[_R["Action"]] = call.action
    row[_R["CommandId"]] = new_id(rng).upper() if call.command else ""
    row[_R["CommandName"]] = call.command
    row[_R["SessionId"]] = call.session
    row[_R["ShellId"]] = call.shell
    row[_R["FailFast"]] = "False"
    row[_R["RequestBytes"]] = str(req.request_bytes)
    row[_R["ClientInfo"]] = call.client_info
    row[_R["TotalTime"]] = str(req.latency_ms)
    row[_R["UrlQuery"]] = f"?{req.query}" if req.query else ""
    row[_R["GenericInfo"]] = "RequestMonitor.Register=0;WinRMDataSender.Send=0;ThrottlingHttpModule=0;"
    return row


def _iis_values(req: Request, server_ip: str, port: str, stem: str, query: str, client: str,
                status: int) -> tuple[str, ...]:
    return (server_ip, req.method, stem, w3c_value(query), port, w3c_value(req.user), client,
            w3c_value(req.user_agent), w3c_value(req.referer), str(status), "0", "0", str(req.latency_ms))


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
    sim.emit(req.ts_us, ("proxy", req.protocol), _proxy_row(sim, req, request_id, rng))
    if req.backend_status is not None:
        stem, _, back_query = (req.backend_stem or req.stem).partition("?")
        back_query = back_query or req.query
        sim.emit(req.ts_us - 1000, ("iis", "W3SVC2"),
                 _iis_values(req, server.ip, "444", stem, back_query, server.ip, req.backend_status))
    if req.ews is not None:
        sim.emit(req.ts_us - 1000, ("ews",), _ews_row(sim, req, rng))
    if req.rps is not None:
        sim.emit(req.ts_us - 1000, ("rps",), rps_row(sim, req, rng))
    return request_id
