"""Writers for each evidence kind, in the layout the server itself writes.

Sources: ``shared/docs/research/exchange-log-formats.md`` and ``detection-anchors.md`` §1.2
(folder layout, file names per hour or day, directive headers, field lists, quoting), the public
Exchange log examples of the artefacts.help "Microsoft Exchange" page, and the ``evtx`` crate's
JSON rendering of real EVTX records (SigmaHQ regression data, the crate's own samples).

* IIS W3C: ``u_exYYMMDD.log`` per day and site, no BOM, space-separated, UTC, ``-`` for an empty
  value and ``+`` for a space (what IIS does to user agents).
* Exchange CSV logs: UTF-8 with BOM, ``#Software`` / ``#Version`` / ``#Log-type`` / ``#Date`` /
  ``#Fields`` header, a value quoted (``"`` doubled) only when it holds a comma, quote or line
  break, a new ``-N`` file when one reaches the size limit.
* Windows events: JSON lines in the ``evtx`` crate layout, one file per channel, record ids
  counting up per channel.

Every writer receives records in time order (the engine sorts each simulated hour) and only
appends, so memory stays flat however much is written.
"""

from __future__ import annotations

import codecs
import os
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO

import orjson

#: The default field set of both Exchange IIS sites (W3SVC1 and W3SVC2).
IIS_FIELDS = ["date", "time", "s-ip", "cs-method", "cs-uri-stem", "cs-uri-query", "s-port", "cs-username", "c-ip", "cs(User-Agent)", "cs(Referer)", "sc-status", "sc-substatus", "sc-win32-status", "time-taken"]

#: Exchange 2016 CU23 / 15.01.2375 HttpProxy fields (74 columns).
HTTPPROXY_FIELDS = ["DateTime", "RequestId", "MajorVersion", "MinorVersion", "BuildVersion", "RevisionVersion", "ClientRequestId", "Protocol", "UrlHost", "UrlStem", "ProtocolAction", "AuthenticationType", "IsAuthenticated", "AuthenticatedUser", "Organization", "AnchorMailbox", "UserAgent", "ClientIpAddress", "ServerHostName", "HttpStatus", "BackEndStatus", "ErrorCode", "Method", "ProxyAction", "TargetServer", "TargetServerVersion", "RoutingType", "RoutingHint", "BackEndCookie", "ServerLocatorHost", "ServerLocatorLatency", "RequestBytes", "ResponseBytes", "TargetOutstandingRequests", "AuthModulePerfContext", "HttpPipelineLatency", "CalculateTargetBackEndLatency", "GlsLatencyBreakup", "TotalGlsLatency", "AccountForestLatencyBreakup", "TotalAccountForestLatency", "ResourceForestLatencyBreakup", "TotalResourceForestLatency", "ADLatency", "SharedCacheLatencyBreakup", "TotalSharedCacheLatency", "ActivityContextLifeTime", "ModuleToHandlerSwitchingLatency", "ClientReqStreamLatency", "BackendReqInitLatency", "BackendReqStreamLatency", "BackendProcessingLatency", "BackendRespInitLatency", "BackendRespStreamLatency", "ClientRespStreamLatency", "KerberosAuthHeaderLatency", "HandlerCompletionLatency", "RequestHandlerLatency", "HandlerToModuleSwitchingLatency", "ProxyTime", "CoreLatency", "RoutingLatency", "HttpProxyOverhead", "TotalRequestTime", "RouteRefresherLatency", "UrlQuery", "BackEndGenericInfo", "GenericInfo", "GenericErrors", "EdgeTraceId", "DatabaseGuid", "UserADObjectGuid", "PartitionEndpointLookupLatency", "RoutingStatus"]

#: EWS (back end) fields, 15.01.2375.
EWS_FIELDS = ["DateTime", "RequestId", "MajorVersion", "MinorVersion", "BuildVersion", "RevisionVersion", "Ring", "ClientRequestId", "AuthenticationType", "IsAuthenticated", "AuthenticatedUser", "Organization", "UserAgent", "VersionInfo", "ClientIpAddress", "ServerHostName", "FrontEndServer", "SoapAction", "HttpStatus", "RequestSize", "ResponseSize", "ErrorCode", "ImpersonatedUser", "ProxyAsUser", "ActAsUser", "Cookie", "CorrelationGuid", "PrimaryOrProxyServer", "TaskType", "RemoteBackendCount", "LocalMailboxCount", "RemoteMailboxCount", "LocalIdCount", "RemoteIdCount", "BeginBudgetConnections", "EndBudgetConnections", "BeginBudgetHangingConnections", "EndBudgetHangingConnections", "BeginBudgetAD", "EndBudgetAD", "BeginBudgetCAS", "EndBudgetCAS", "BeginBudgetRPC", "EndBudgetRPC", "BeginBudgetFindCount", "EndBudgetFindCount", "BeginBudgetSubscriptions", "EndBudgetSubscriptions", "MDBResource", "MDBHealth", "MDBHistoricalLoad", "ThrottlingPolicy", "ThrottlingDelay", "ThrottlingRequestType", "TotalDCRequestCount", "TotalDCRequestLatency", "TotalMBXRequestCount", "TotalMBXRequestLatency", "RecipientLookupLatency", "ExchangePrincipalLatency", "HttpPipelineLatency", "CheckAccessCoreLatency", "AuthModuleLatency", "CallContextInitLatency", "PreExecutionLatency", "CoreExecutionLatency", "TotalRequestTime", "DetailedExchangePrincipalLatency", "ClientStatistics", "GenericInfo", "AuthenticationErrors", "GenericErrors", "Puid", "StartTime", "ProcessId", "TimeInGC", "StartTotalMemory", "EndTotalMemory", "StartGCCounts", "EndGCCounts", "TokenBasedThrottlingPolicy", "BudgetKey", "CoinsCharged", "CoinsChargedMethod", "SidBudgetInfo", "AppBudgetInfo", "TenantBudgetInfo", "ResourceAccessed", "ResourceHealthBasedThreshold", "ThrottledBy", "BackoffHint", "WorkClassification"]

#: ECP server and activity logs.
ECP_FIELDS = ("TimeStamp", "ServerName", "EventId", "EventData")

#: CmdletInfra Powershell-Proxy\Http (Rps_Http), as listed by CrowdStrike's Rps_Http-IOC.ps1.
RPS_HTTP_FIELDS = ["DateTime", "StartTime", "RequestId", "MajorVersion", "MinorVersion", "BuildVersion", "RevisionVersion", "ClientRequestId", "UrlHost", "UrlStem", "AuthenticationType", "IsAuthenticated", "AuthenticatedUser", "Organization", "ManagedOrganization", "ClientIpAddress", "ServerHostName", "FrontEndServer", "HttpStatus", "SubStatus", "ErrorCode", "Action", "CommandId", "CommandName", "SessionId", "ShellId", "FailFast", "ContributeToFailFast", "RequestBytes", "ClientInfo", "CPU", "Memory", "ActivityContextLifeTime", "TotalTime", "UrlQuery", "GenericLatency", "GenericInfo", "GenericErrors"]

#: OAB generator log. The research notes give the folder and the CVE-2021-26858 message text but
#: not the column set; this one follows the ECP logs' four-column framing (an assumption, marked
#: as such in docs/simulator.md).
OABGEN_FIELDS = ("TimeStamp", "ServerName", "EventId", "EventData")

#: Exchange's default size limit for one HttpProxy / EWS log file before it starts ``-N+1``.
EXCHANGE_FILE_BYTES = 10 << 20


@lru_cache(maxsize=64)
def _date(day: int) -> str:
    """``2021-03-03`` of the ``day``-th day since 1970."""
    return f"{datetime.fromtimestamp(day * 86400, UTC):%Y-%m-%d}"


_SECONDS: dict[int, str] = {}


def _second_text(seconds: int) -> str:
    """``2021-03-03T02:41:52`` of a second since 1970, cached (a case's lines share seconds)."""
    text = _SECONDS.get(seconds)
    if text is None:
        if len(_SECONDS) > 8192:
            _SECONDS.clear()
        day, rest = divmod(seconds, 86400)
        hour, rest = divmod(rest, 3600)
        minute, second = divmod(rest, 60)
        text = _SECONDS[seconds] = f"{_date(day)}T{hour:02d}:{minute:02d}:{second:02d}"
    return text


def iso_ms(ts_us: int) -> str:
    """``2021-03-03T02:41:52.123Z``: the time format of Exchange's CSV logs."""
    seconds, micro = divmod(ts_us, 1_000_000)
    return f"{_second_text(seconds)}.{micro // 1000:03d}Z"


def w3c_time(ts_us: int) -> str:
    """``2021-03-03 02:41:52``: W3C ``date time``."""
    text = _second_text(ts_us // 1_000_000)
    return f"{text[:10]} {text[11:]}"


def csv_line(row: list[str]) -> bytes:
    """One CSV line as Exchange writes it (CRLF); values quoted only when they must be."""
    line = ",".join(row)
    if '"' in line or "\n" in line or "\r" in line or line.count(",") != len(row) - 1:
        line = ",".join(map(csv_value, row))
    return line.encode() + b"\r\n"


def iso_us7(ts_us: int) -> str:
    """``2021-03-03T02:41:52.1234560Z``: EVTX SystemTime as the evtx crate renders it (7 digits)."""
    moment = datetime.fromtimestamp(ts_us // 1_000_000, UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{ts_us % 1_000_000:06d}0Z"


def csv_value(value: str) -> str:
    """One CSV value as Exchange writes it: quoted only when it must be."""
    if "," in value or '"' in value or "\n" in value or "\r" in value:
        return '"' + value.replace('"', '""') + '"'
    return value


def w3c_value(value: str) -> str:
    """One W3C value: ``-`` when empty, spaces as ``+``."""
    return value.replace(" ", "+") if value else "-"


class Sink:
    """Base of the writers: counts the bytes it wrote, closes its open file."""

    def __init__(self) -> None:
        self.bytes = 0
        self.files = 0  # files written
        self.path: Path | None = None  # the open (or last) file
        self._handle: BinaryIO | None = None
        #: Time of the last record written to the open file: its modification time once closed.
        self.last_us = 0

    def _open(self, path: Path) -> BinaryIO:
        self.close()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = open(path, "wb")  # noqa: SIM115 - kept open across writes, closed in close()
        self.files += 1
        self.path = path
        return self._handle

    def _write(self, data: bytes) -> None:
        assert self._handle is not None
        self._handle.write(data)
        self.bytes += len(data)

    def close(self) -> None:
        """Close the open file, if any, dated by its last record (as the server left it)."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None
            assert self.path is not None
            os.utime(self.path, ns=(self.last_us * 1000, self.last_us * 1000))


class W3CSink(Sink):
    """One IIS site's logs: ``<folder>/u_exYYMMDD.log``, a new file each UTC day."""

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = folder
        self._day = ""

    def write(self, ts_us: int, values: str) -> None:
        """Append one request: ``values`` are the fields after ``date time``, W3C-escaped and
        space-joined (joined when emitted, so that a queued hour holds one string per line)."""
        stamp = w3c_time(ts_us)
        day = stamp[:10]
        if day != self._day:
            self._day = day
            self._open(self.folder / f"u_ex{day[2:4]}{day[5:7]}{day[8:10]}.log")
            self._write(
                (
                    "#Software: Microsoft Internet Information Services 10.0\r\n#Version: 1.0\r\n"
                    f"#Date: {stamp}\r\n#Fields: {' '.join(IIS_FIELDS)}\r\n"
                ).encode()
            )
        self._write(f"{stamp} {values}\r\n".encode())
        self.last_us = ts_us


class ExchangeCsvSink(Sink):
    """One Exchange CSV log folder: ``<folder>/<prefix><stamp>-N.LOG``, per hour or per day."""

    def __init__(
        self, folder: Path, prefix: str, log_type: str, fields: tuple[str, ...] | list[str],
        version: str, hourly: bool = True, max_bytes: int = EXCHANGE_FILE_BYTES,
    ) -> None:
        super().__init__()
        self.folder, self.prefix, self.log_type = folder, prefix, log_type
        self.fields = tuple(fields)
        self.version, self.hourly, self.max_bytes = version, hourly, max_bytes
        self._stamp = ""
        self._number = 0
        self._file_bytes = 0

    def write(self, ts_us: int, row: list[str] | bytes) -> None:
        """Append one row: values in field order (unquoted), or a line already rendered by
        :func:`csv_line` (what busy logs queue, to keep a queued hour small)."""
        if isinstance(row, bytes):
            line = row
        elif len(row) != len(self.fields):
            raise ValueError(f"{self.log_type}: {len(row)} values for {len(self.fields)} fields")
        else:
            line = csv_line(row)
        text = iso_ms(ts_us)
        stamp = text[0:4] + text[5:7] + text[8:10] + (text[11:13] if self.hourly else "")
        if stamp != self._stamp:
            self._stamp, self._number = stamp, 0
            self._next_file(ts_us)
        elif self._file_bytes + len(line) > self.max_bytes:
            self._next_file(ts_us)
        self._write(line)
        self._file_bytes += len(line)
        self.last_us = ts_us

    def _next_file(self, ts_us: int) -> None:
        self._number += 1
        self._open(self.folder / f"{self.prefix}{self._stamp}-{self._number}.LOG")
        header = (
            f"#Software: Microsoft Exchange Server\r\n#Version: {self.version}\r\n"
            f"#Log-type: {self.log_type}\r\n#Date: {iso_ms(ts_us)}\r\n#Fields: {','.join(self.fields)}\r\n"
        ).encode()
        self._write(codecs.BOM_UTF8 + header)
        self._file_bytes = len(header) + 3


class EventSink(Sink):
    """One Windows event channel as JSON lines in the ``evtx`` crate layout."""

    def __init__(self, path: Path, channel: str, computer: str, first_record: int) -> None:
        super().__init__()
        self.path, self.channel, self.computer = path, channel, computer
        self.record = first_record

    def write(self, ts_us: int, system: dict[str, Any], data: dict[str, Any] | None) -> int:
        """Append one event; ``system`` holds Provider, EventID and the other System values
        that differ per provider. Returns the record id given to the event."""
        if self._handle is None:
            self._open(self.path)
        record = self.record
        self.record += 1
        ordered = {
            "Provider": system["Provider"],
            "EventID": system["EventID"],
            **{k: v for k, v in system.items() if k not in ("Provider", "EventID", "Execution", "Security")},
            "TimeCreated": {"#attributes": {"SystemTime": iso_us7(ts_us)}},
            "EventRecordID": record,
            "Correlation": None,
            "Execution": system.get("Execution", {"#attributes": {"ProcessID": 4, "ThreadID": 8}}),
            "Channel": self.channel,
            "Computer": self.computer,
            "Security": system.get("Security"),
        }
        event = {"Event": {"#attributes": {"xmlns": "http://schemas.microsoft.com/win/2004/08/events/event"},
                           "System": ordered, "EventData": data}}
        self._write(orjson.dumps(event) + b"\n")
        self.last_us = ts_us
        return record
