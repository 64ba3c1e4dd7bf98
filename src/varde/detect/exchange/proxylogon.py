"""ProxyLogon (CVE-2021-26855, -26857, -26858, -27065): Microsoft's Test-ProxyLogon checks and more.

Test-ProxyLogon (microsoft/CSS-Exchange, Security/src/Test-ProxyLogon.ps1) looks for four things:
HttpProxy rows whose ``AnchorMailbox`` is ``ServerInfo~*/*`` (the SSRF, 26855), Unified Messaging
errors with ``System.InvalidCastException`` (26857), OAB generator downloads outside the OAB
folder (26858), and ``Reset*VirtualDirectory`` requests or ``Set-*VirtualDirectory`` commands
with markup in a URL (27065). This module does the same on the case store, and adds what the
script leaves out: the ``BackEndCookie`` ``Server~*/*~*`` form from Microsoft's HAFNIUM guidance,
the same commands in the MSExchange Management and cmdlet logs, the path of the file the reset
wrote, and the exploitation chain of one source (autodiscover -> mapi/emsmdb -> proxyLogon.ecp
-> DDIService OABVirtualDirectory), with the IIS lines of the same requests linked through
``cafeReqId`` = HttpProxy ``RequestId``.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator

import pyarrow as pa

from varde.detect.exchange.base import DetectorRule, Hit, attributes, hits, status_ok
from varde.detect.exchange.commands import CHANNELS as COMMAND_CHANNELS
from varde.detect.exchange.commands import parameter
from varde.detect.exchange.web import ATTRS, requests
from varde.events.store import EventStore, sql_literal

HTTPPROXY = "Exchange HttpProxy"

_REFS = (
    "https://github.com/microsoft/CSS-Exchange/blob/main/Security/src/Test-ProxyLogon.ps1",
    "https://www.microsoft.com/en-us/security/blog/2021/03/02/hafnium-targeting-exchange-servers/",
)

SSRF = DetectorRule(
    uid="varde.exchange.proxylogon.ssrf",
    title="ProxyLogon SSRF reached the Exchange back end (CVE-2021-26855)",
    level="critical",
    techniques=("T1190",),
    cves=("CVE-2021-26855",),
    exploited=True,
    description="An HttpProxy request was routed to a back-end path chosen by the client (AnchorMailbox "
    "ServerInfo~host/path or BackEndCookie Server~host/path~...) and succeeded: the server-side request "
    "forgery of CVE-2021-26855.",
    references=_REFS,
)
SSRF_FAILED = DetectorRule(
    uid="varde.exchange.proxylogon.ssrf-failed",
    title="ProxyLogon SSRF attempt that failed (CVE-2021-26855)",
    level="medium",
    techniques=("T1190",),
    cves=("CVE-2021-26855",),
    exploited=False,
    description="A request carried the SSRF routing of CVE-2021-26855 but the server answered with an error, "
    "or it only reached autodiscover (the attacker had not found a valid mailbox).",
    references=_REFS,
)
UM_DESERIALISATION = DetectorRule(
    uid="varde.exchange.proxylogon.um-deserialisation",
    title="Unified Messaging deserialisation error (CVE-2021-26857)",
    level="high",
    techniques=("T1190",),
    cves=("CVE-2021-26857",),
    description="MSExchange Unified Messaging logged a System.InvalidCastException, the trace of the insecure "
    "deserialisation exploited as CVE-2021-26857 (Test-ProxyLogon's check).",
    references=_REFS,
)
OAB_WRITE = DetectorRule(
    uid="varde.exchange.proxylogon.oab-file-write",
    title="OAB download written outside the OAB folder (CVE-2021-26858)",
    level="critical",
    techniques=("T1190", "T1505.003"),
    cves=("CVE-2021-26858",),
    exploited=True,
    description="The OAB generator logged a temporary download file outside ClientAccess\\OAB: the arbitrary "
    "file write of CVE-2021-26858.",
    references=_REFS,
)
VDIR_RESET = DetectorRule(
    uid="varde.exchange.proxylogon.vdir-reset",
    title="Virtual directory reset through the SSRF (CVE-2021-27065)",
    level="critical",
    techniques=("T1190", "T1505.003"),
    cves=("CVE-2021-27065",),
    exploited=True,
    description="A Reset*VirtualDirectory request reached the back end through the SSRF and succeeded: the "
    "file write of CVE-2021-27065, which saves the virtual directory settings (with the attacker's script) "
    "to a path the attacker chose.",
    references=_REFS,
)
VDIR_SCRIPT = DetectorRule(
    uid="varde.exchange.proxylogon.vdir-url-script",
    title="Script written into a virtual directory URL (CVE-2021-27065)",
    level="critical",
    techniques=("T1505.003",),
    cves=("CVE-2021-27065",),
    exploited=True,
    description="A Set-*VirtualDirectory command put markup (a <script runat=server> web shell) into a URL "
    "parameter; the next reset of the directory writes it to disk as a web shell.",
    references=_REFS,
)
CHAIN = DetectorRule(
    uid="varde.exchange.proxylogon.chain",
    title="ProxyLogon exploitation chain (CVE-2021-26855 + CVE-2021-27065)",
    level="critical",
    techniques=("T1190", "T1505.003"),
    cves=("CVE-2021-26855", "CVE-2021-27065"),
    exploited=True,
    description="One source went through the ProxyLogon sequence: SSRF to the back end, an administrator "
    "session from proxyLogon.ecp, then DDIService calls on the OAB virtual directory. The HttpProxy rows and "
    "the IIS lines of the same requests (cafeReqId = RequestId) are the evidence.",
    references=_REFS,
)

#: Steps of the chain, in order, recognised in the back-end path the SSRF asked for.
_STEPS = (
    ("autodiscover", re.compile(r"/autodiscover/", re.IGNORECASE)),
    ("emsmdb", re.compile(r"/mapi/emsmdb", re.IGNORECASE)),
    ("proxylogon", re.compile(r"/ecp/proxylogon\.ecp", re.IGNORECASE)),
    ("oab-vdir", re.compile(r"/ecp/DDI/DDIService\.svc/(Get|Set)Object.*OABVirtualDirectory", re.IGNORECASE)),
    ("vdir-reset", re.compile(r"Reset\w*VirtualDirectory", re.IGNORECASE)),
)

_SERVERINFO = "AnchorMailbox ILIKE 'ServerInfo~%/%'"
_COOKIE = "BackEndCookie ILIKE 'Server~%/%~%'"
_NOT_PROBE = "AnchorMailbox NOT ILIKE 'ServerInfo~%/autodiscover%' AND AnchorMailbox NOT ILIKE 'ServerInfo~localhost%/%'"
_HTTPPROXY_FIELDS = ("AnchorMailbox", "BackEndCookie", "HttpStatus", "ClientIpAddress", "UserAgent", "RequestId",
                     "UrlStem", "UrlQuery", "AuthenticatedUser")
_HTTPPROXY_ATTRS = ("ClientIpAddress AS source_ip, UserAgent AS user_agent, RequestId AS request_id, "
                    "coalesce(AnchorMailbox, BackEndCookie) AS url, HttpStatus AS status")
#: Markup in a URL parameter of Set-*VirtualDirectory (Test-ProxyLogon's regex, without look-ahead).
_SCRIPT_IN_URL = r"(?i)Set-\w*VirtualDirectory.*Url.*<\w+[^>]*>.*</\w+>"


class ProxyLogon:
    """The four ProxyLogon CVEs and their chain."""

    name = "proxylogon"
    rules = (SSRF, SSRF_FAILED, UM_DESERIALISATION, OAB_WRITE, VDIR_RESET, VDIR_SCRIPT, CHAIN)

    def run(self, store: EventStore) -> Iterator[Hit]:
        yield from self._httpproxy(store)
        yield from self._web(store)
        yield from self._um(store)
        yield from self._oab(store)
        yield from self._commands(store)
        yield from self._chain(store)

    def _httpproxy(self, store: EventStore) -> Iterator[Hit]:
        source = store.select(HTTPPROXY, _HTTPPROXY_FIELDS)
        if source is None:
            return
        ssrf = f"(({_SERVERINFO} AND {_NOT_PROBE}) OR {_COOKIE})"
        yield from hits(store, SSRF, f"SELECT key, {_HTTPPROXY_ATTRS} FROM {source} "
                        f"WHERE {ssrf} AND {status_ok('HttpStatus')}")
        yield from hits(store, SSRF_FAILED, f"SELECT key, {_HTTPPROXY_ATTRS} FROM {source} "
                        f"WHERE ({ssrf} AND NOT coalesce({status_ok('HttpStatus')}, false)) "
                        f"OR ({_SERVERINFO} AND NOT ({_NOT_PROBE}))")
        yield from hits(store, VDIR_RESET, f"SELECT key, {_HTTPPROXY_ATTRS} FROM {source} "
                        "WHERE AnchorMailbox ILIKE 'ServerInfo~%/%Reset%VirtualDirectory#' AND HttpStatus = '200'")

    def _web(self, store: EventStore) -> Iterator[Hit]:
        """The SSRF and the reset as IIS and HttpProxy show the requests themselves."""
        web = requests(store)
        if web is None:
            return
        path = "split_part(uri_decoded, '?', 1)"
        ssrf = (f"log = 'iis' AND (regexp_matches(coalesce(cookie, ''), '(?i)X-(BEResource|AnonResource-Backend)=[^;]*(/|@|localhost)')"
                f" OR (method = 'POST' AND regexp_matches({path}, '(?i)^/ecp/[^/]+\\.js$'))"
                f" OR (log = 'iis' AND {path} ILIKE '/ecp/proxyLogon.ecp' AND coalesce(port, '') <> '444'))")
        ok = status_ok("status")
        yield from hits(store, SSRF, f"SELECT {ATTRS} FROM {web} WHERE {ssrf} AND {ok}")
        yield from hits(store, SSRF_FAILED, f"SELECT {ATTRS} FROM {web} WHERE {ssrf} AND NOT coalesce({ok}, false)")
        yield from hits(store, VDIR_RESET, f"""SELECT {ATTRS} FROM {web} WHERE method = 'POST'
            AND {path} ILIKE '/ecp/DDI/DDIService.svc/SetObject' AND uri_decoded ILIKE '%schema=Reset%VirtualDirectory%'
            AND status = '200'""")

    def _um(self, store: EventStore) -> Iterator[Hit]:
        source = store.select("Application", ("*",))
        if source is not None:
            yield from hits(store, UM_DESERIALISATION, f"""SELECT key FROM {source}
                WHERE provider ILIKE 'MSExchange Unified Messaging' AND "*" LIKE '%System.InvalidCastException%'""")

    def _oab(self, store: EventStore) -> Iterator[Hit]:
        source = store.select("Exchange OAB Generator", ("*",))
        if source is None:
            return
        path = """regexp_extract("*", 'Download failed and temporary file (.*?) needs to be removed', 1)"""
        yield from hits(store, OAB_WRITE, f"""SELECT key, path AS webshell FROM
            (SELECT key, {path} AS path FROM {source}) WHERE path <> '' AND path NOT ILIKE '%\\ClientAccess\\OAB\\%'""")

    def _commands(self, store: EventStore) -> Iterator[Hit]:
        for channel in COMMAND_CHANNELS:
            source = store.select(channel, ("*",))
            if source is None:
                continue
            path = f"{parameter('FilePathName')} AS webshell"
            yield from hits(store, VDIR_SCRIPT, f"""SELECT key, {path} FROM {source}
                WHERE regexp_matches("*", {sql_literal(_SCRIPT_IN_URL)})""")
            yield from hits(store, VDIR_RESET, f"""SELECT key, {path} FROM {source}
                WHERE regexp_matches("*", '(?i)Reset-?\\w*VirtualDirectory') AND regexp_matches("*", '(?i)FilePathName')""")

    def _chain(self, store: EventStore) -> Iterator[Hit]:
        source = store.select(HTTPPROXY, _HTTPPROXY_FIELDS)
        if source is None:
            return
        rows = store.query(f"""SELECT key, ts, ClientIpAddress, UserAgent, RequestId, HttpStatus,
            concat_ws(' ', AnchorMailbox, UrlStem, UrlQuery) FROM {source}
            WHERE ({_SERVERINFO} OR {_COOKIE}) AND ClientIpAddress IS NOT NULL ORDER BY ts, key""")
        by_source: dict[str, list[tuple]] = defaultdict(list)
        for row in rows:
            by_source[row[2]].append(row)
        linked: list[str] = []
        for rows_of_source in by_source.values():
            steps = [(_step(row[6]), row) for row in rows_of_source]
            if not _complete(steps):
                continue
            for step, (key, _, ip, agent, request_id, status, url) in steps:
                if step is None:
                    continue
                linked.append(request_id or "")
                yield Hit(CHAIN, key, attributes(source_ip=ip, user_agent=agent, request_id=request_id, url=url,
                                             status=status, step=step))
        yield from self._iis_of(store, [r for r in linked if r])

    def _iis_of(self, store: EventStore, request_ids: list[str]) -> Iterator[Hit]:
        """IIS lines of the chain's requests: Exchange appends ``cafeReqId=<RequestId>`` to the query."""
        web = requests(store)
        if web is None or not request_ids:
            return
        store.con.register("_chain_ids", pa.table({"id": sorted({i.lower() for i in request_ids})}))
        try:
            yield from hits(store, CHAIN, f"""SELECT w.key, w.source_ip, w.user_agent, w."user", w.request_id,
                w.uri AS url, w.status, 'iis' AS step FROM {web} w JOIN _chain_ids c ON c.id = lower(w.request_id)
                WHERE w.log = 'iis'""")
        finally:
            store.con.unregister("_chain_ids")


def _step(path: str) -> str | None:
    """The chain step a request's back-end path shows, if any (the last that applies)."""
    found = None
    for name, pattern in _STEPS:
        if pattern.search(path or ""):
            found = name
    return found


def _complete(steps: list[tuple[str | None, tuple]]) -> bool:
    """Whether a source obtained a session (proxyLogon.ecp answered 241 or 200) and then acted on
    a virtual directory: the part of the chain that only a successful attacker reaches."""
    session = None
    for index, (step, row) in enumerate(steps):
        if step == "proxylogon" and str(row[5]) in ("241", "200"):
            session = index
            break
    return session is not None and any(s in ("oab-vdir", "vdir-reset") for s, _ in steps[session + 1:])


