"""Web shells: requests to script pages Exchange does not have, tunnels, and script files written
into web folders by the web server.

A web shell on Exchange is a script page (``.aspx``) dropped where IIS runs it: ``aspnet_client``
(where Exchange has no pages at all) or ``owa/auth`` (where it has a fixed few), as the HAFNIUM
and ProxyShell write-ups describe. Logs show it three ways: requests to such a page (a POST or a
query string, i.e. a command, is worse than a GET), tunnelling tools speaking through it (Tunna,
reGeorg, by their query strings, then every request of that source to that page), and the file
being written by ``w3wp.exe`` or another Exchange process (Sysmon 11, Security 4663). The folder
and page lists are data (``data/exchange/web.yml``, with their sources), not code.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from importlib import resources

import yaml

from varde.detect.exchange.base import DetectorRule, Hit, hits, status_ok
from varde.detect.exchange.web import ATTRS, requests
from varde.events.store import EventStore, sql_literal

_REFS = ("https://www.microsoft.com/en-us/security/blog/2021/03/02/hafnium-targeting-exchange-servers/",
         "https://www.cisa.gov/news-events/cybersecurity-advisories/aa21-062a")

USE = DetectorRule(
    uid="varde.exchange.webshell.use",
    title="Commands sent to a foreign script page in an Exchange web folder",
    level="high",
    techniques=("T1505.003",),
    description="A POST or a request with a query string succeeded on a script page that Exchange does not "
    "install in that folder (aspnet_client, owa/auth): the pattern of web shell use.",
    references=_REFS,
)
PAGE = DetectorRule(
    uid="varde.exchange.webshell.page",
    title="Foreign script page served from an Exchange web folder",
    level="medium",
    techniques=("T1505.003",),
    description="A script page that Exchange does not install in that folder (aspnet_client, owa/auth) was "
    "requested successfully.",
    references=_REFS,
)
TUNNEL = DetectorRule(
    uid="varde.exchange.webshell.tunnel",
    title="Network tunnel through a web shell",
    level="high",
    techniques=("T1505.003", "T1572", "T1090"),
    description="A tunnelling tool's set-up request (Tunna, reGeorg) went to a script page; every request of "
    "that source to that page is tunnelled traffic.",
    references=("https://github.com/SECFORCE/Tunna", "https://github.com/sensepost/reGeorg"),
)
FILE_WRITE = DetectorRule(
    uid="varde.exchange.webshell.file-write",
    title="Script page written into a web folder by an Exchange or IIS process",
    level="high",
    techniques=("T1505.003",),
    description="w3wp.exe, UMWorkerProcess.exe or MSExchangeMailboxReplication.exe created a script file "
    "under a web folder (Sysmon 11 or Security 4663), or one arrived there over SMB from the server itself "
    "(System in Sysmon 11, Security 5145 from loopback): how ProxyLogon and ProxyShell web shells arrive.",
    references=_REFS,
)

_WRITERS = ("w3wp.exe", "umworkerprocess.exe", "umservice.exe", "msexchangemailboxreplication.exe")
_WEB_FOLDERS = ("\\inetpub\\wwwroot\\", "\\frontend\\httpproxy\\", "\\clientaccess\\")
#: Events that show a file written: (channel, event ids, actor field, file field, who may write:
#: SQL with {writers} = the actor is an Exchange or IIS process, {actor} = the actor field).
#: ``System`` (pid 4) writes what arrives over SMB: ProxyLogon's reset writes through the UNC
#: path \\127.0.0.1\c$\..., seen as Sysmon 11 by System and Security 5145 from loopback.
_WRITE_EVENTS = (
    ("Microsoft-Windows-Sysmon/Operational", (11,), "Image", "TargetFilename", "{writers} OR lower({actor}) = 'system'"),
    ("Security", (4663,), "ProcessName", "ObjectName", "{writers}"),
    ("Security", (5145,), "ShareName", "RelativeTargetName", "IpAddress IN ('127.0.0.1', '::1')"),
)


@dataclass(frozen=True)
class WebFolders:
    """Exchange's web folders (data/exchange/web.yml)."""

    no_pages: tuple[str, ...]
    known_pages: dict[str, tuple[str, ...]]
    script_extensions: tuple[str, ...]
    loot_extensions: tuple[str, ...]
    tunnels: tuple[tuple[str, str], ...]  # (tool, set-up regex)


@cache
def web_folders() -> WebFolders:
    """The bundled web folder facts."""
    text = resources.files("varde.data").joinpath("exchange/web.yml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    return WebFolders(
        no_pages=tuple(data["no_pages"]),
        known_pages={k: tuple(v) for k, v in data["known_pages"].items()},
        script_extensions=tuple(data["script_extensions"]),
        loot_extensions=tuple(data["loot_extensions"]),
        tunnels=tuple((t["name"], t["setup"]) for t in data["tunnels"]),
    )


def foreign_page() -> str:
    """SQL over :func:`requests`: the request path is a script page Exchange does not have there."""
    facts = web_folders()
    path = "lower(split_part(uri_decoded, '?', 1))"
    script = " OR ".join(f"{path} LIKE {sql_literal('%' + e)}" for e in facts.script_extensions)
    where = [f"{path} LIKE {sql_literal(folder + '%')}" for folder in facts.no_pages]
    for folder, pages in facts.known_pages.items():
        names = ", ".join(sql_literal(folder + p) for p in pages)
        where.append(f"({path} LIKE {sql_literal(folder + '%')} AND {path} NOT IN ({names}))")
    return f"(({script}) AND ({' OR '.join(where)}))"


class WebShell:
    """Web shell requests, tunnels and file writes."""

    name = "webshell"
    rules = (USE, PAGE, TUNNEL, FILE_WRITE)

    def run(self, store: EventStore) -> Iterator[Hit]:
        web = requests(store)
        if web is not None:
            page = f"{foreign_page()} AND {status_ok('status')}"
            command = "(method = 'POST' OR uri LIKE '%?%')"
            shell = "split_part(uri, '?', 1) AS webshell"
            yield from hits(store, USE, f"SELECT {ATTRS}, {shell} FROM {web} WHERE {page} AND {command}")
            yield from hits(store, PAGE, f"SELECT {ATTRS}, {shell} FROM {web} WHERE {page} AND NOT {command}")
            yield from self._tunnels(store, web)
        yield from self._file_writes(store)

    def _tunnels(self, store: EventStore, web: str) -> Iterator[Hit]:
        setups = " OR ".join(f"regexp_matches(split_part(uri_decoded, '?', 2), {sql_literal(rx)})"
                             for _, rx in web_folders().tunnels)
        page = "split_part(uri, '?', 1)"  # not a CTE of every request: DuckDB would materialise it
        yield from hits(store, TUNNEL, f"""WITH s AS (SELECT DISTINCT source_ip, {page} AS page FROM {web} WHERE {setups})
            SELECT w.key, w.source_ip, w.user_agent, w."user", w.request_id, w.uri AS url, w.status,
            s.page AS webshell FROM {web} w JOIN s ON w.source_ip IS NOT DISTINCT FROM s.source_ip
            AND split_part(w.uri, '?', 1) = s.page""")

    def _file_writes(self, store: EventStore) -> Iterator[Hit]:
        facts = web_folders()
        for channel, event_ids, actor, target, by_whom in _WRITE_EVENTS:
            source = store.select(channel, (actor, target, "IpAddress"), event_ids)
            if source is None:
                continue
            folder = " OR ".join(f"lower({target}) LIKE {sql_literal('%' + f + '%')}" for f in _WEB_FOLDERS)
            script = " OR ".join(f"lower({target}) LIKE {sql_literal('%' + e)}" for e in facts.script_extensions)
            writers = " OR ".join(f"lower({actor}) LIKE {sql_literal('%' + w)}" for w in _WRITERS)
            writer = by_whom.format(writers=writers, actor=actor)
            yield from hits(store, FILE_WRITE, f"""SELECT key, {target} AS webshell, {target} AS path,
                nullif(IpAddress, '-') AS source_ip FROM {source} WHERE ({writer}) AND ({folder}) AND ({script})""")
