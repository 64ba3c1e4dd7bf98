"""ProxyShell (CVE-2021-34473, -34523, -31207) and ProxyNotShell (CVE-2022-41040, -41082).

Both abuse Exchange's "explicit logon" path normalisation: a request to
``/autodiscover/autodiscover.json`` whose query (``?@x/...``, ``Email=autodiscover/...``) makes
the front end strip the prefix and proxy the rest (``/powershell``, ``/mapi/nspi``, ``/EWS``)
to the back end as SYSTEM. ProxyShell needs no account; ProxyNotShell, the variant of 2022, works
only for an authenticated user, which is how the two are told apart in logs. Patterns follow the
SigmaHQ rules "Exchange ProxyShell Pattern" / "Successful Exchange ProxyShell Attack", Microsoft's
ProxyNotShell guidance (``powershell.*autodiscover\\.json.*@.*200``) and EOMTv2 (both words in the
URL-decoded URI); the status tells an attempt (401, 403, 404, 5xx) from a success.

After the SSRF, ProxyShell's CVE-2021-31207 writes a web shell with a mailbox export to a web
folder (``New-MailboxExportRequest -FilePath`` ending in ``.aspx``), after granting the "Mailbox
Import Export" role; those commands are found in the cmdlet logs.
"""

from __future__ import annotations

from collections.abc import Iterator

from varde.detect.exchange.base import DetectorRule, Hit, hits, status_ok
from varde.detect.exchange.commands import command_text
from varde.detect.exchange.web import ATTRS, requests
from varde.events.store import EventStore, sql_literal

_REFS = (
    "https://msrc.microsoft.com/blog/2022/09/customer-guidance-for-reported-zero-day-vulnerabilities-in-microsoft-exchange-server/",
    "https://github.com/SigmaHQ/sigma/tree/master/rules-emerging-threats/2021/Exploits/ProxyShell-Exploit",
)
_SHELL = ("CVE-2021-34473", "CVE-2021-34523", "CVE-2021-31207")
_NOTSHELL = ("CVE-2022-41040", "CVE-2022-41082")


def _rule(uid: str, title: str, level: str, cves: tuple[str, ...], exploited: bool, description: str,
          techniques: tuple[str, ...] = ("T1190",)) -> DetectorRule:
    return DetectorRule(uid=uid, title=title, level=level, techniques=techniques, cves=cves, exploited=exploited,
                        description=description, references=_REFS)


PROXYSHELL = _rule("varde.exchange.proxyshell.ssrf", "ProxyShell SSRF reached the back end (CVE-2021-34473)",
                   "critical", _SHELL[:1], True,
                   "An unauthenticated autodiscover.json request was proxied to a back-end endpoint "
                   "(PowerShell, NSPI, EWS) and succeeded.")
PROXYSHELL_POWERSHELL = _rule(
    "varde.exchange.proxyshell.powershell", "ProxyShell remote PowerShell as a chosen user (CVE-2021-34523)",
    "critical", ("CVE-2021-34523",), True,
    "The SSRF reached the back-end /powershell endpoint with an X-Rps-CAT token in the query and "
    "succeeded: Exchange PowerShell running as the user the token names (an administrator), the elevation of "
    "CVE-2021-34523.", ("T1068", "T1059.001"))
PROXYSHELL_FAILED = _rule("varde.exchange.proxyshell.ssrf-failed", "ProxyShell SSRF attempt (CVE-2021-34473)",
                          "medium", _SHELL[:1], False,
                          "An unauthenticated autodiscover.json request tried to reach a back-end endpoint and "
                          "was refused: a probe or a patched server.")
NOTSHELL = _rule("varde.exchange.proxynotshell.ssrf", "ProxyNotShell SSRF to remote PowerShell (CVE-2022-41040)",
                 "critical", _NOTSHELL, True,
                 "An authenticated autodiscover.json request was proxied to the back-end PowerShell endpoint "
                 "and succeeded: the SSRF of CVE-2022-41040, used to reach CVE-2022-41082. It needs a valid "
                 "account, so the account it ran as is in the intruder's hands.", ("T1190", "T1078"))
NOTSHELL_FAILED = _rule("varde.exchange.proxynotshell.ssrf-failed", "ProxyNotShell attempt (CVE-2022-41040)",
                        "medium", _NOTSHELL[:1], False,
                        "An authenticated autodiscover.json request aimed at remote PowerShell was refused.")
EXPORT_WEBSHELL = _rule(
    "varde.exchange.proxyshell.export-webshell",
    "Mailbox export written as a script page into a web folder (CVE-2021-31207)",
    "critical", ("CVE-2021-31207",), True,
    "New-MailboxExportRequest wrote a mailbox to a .aspx file or to a UNC path of the server "
    "itself: the ProxyShell way to drop a web shell.", ("T1505.003", "T1114.002"))

_AUTODISCOVER = "uri_decoded ILIKE '%/autodiscover/autodiscover.json%'"
_TARGETS = ("(uri_decoded ILIKE '%/powershell%' OR uri_decoded ILIKE '%/mapi/nspi%' OR uri_decoded ILIKE '%/ews/%' "
            "OR uri_decoded ILIKE '%x-rps-cat%' OR uri_decoded ILIKE '%email=autodiscover/autodiscover.json%' "
            "OR uri_decoded ILIKE '%autodiscover.json?@%')")
#: A file path in a web folder or with a script page's extension (RE2).
_WEB_PATH = r"(?i)(\.(aspx|ashx|asmx|asp)$|\\inetpub\\|\\FrontEnd\\HttpProxy\\|\\aspnet_client\\)"
_POWERSHELL_CAT = "uri_decoded ILIKE '%/powershell%' AND uri_decoded ILIKE '%X-Rps-CAT=%'"
_NOTSHELL_TARGET = "(uri_decoded ILIKE '%powershell%' AND uri_decoded LIKE '%@%')"


class ProxyShell:
    """ProxyShell and ProxyNotShell requests, and the export that writes ProxyShell's web shell."""

    name = "proxyshell"
    rules = (PROXYSHELL, PROXYSHELL_POWERSHELL, PROXYSHELL_FAILED, NOTSHELL, NOTSHELL_FAILED, EXPORT_WEBSHELL)

    def run(self, store: EventStore) -> Iterator[Hit]:
        web = requests(store)
        if web is not None:
            ok = status_ok("status")
            shell = f"{_AUTODISCOVER} AND {_TARGETS} AND \"user\" IS NULL"
            notshell = f"{_AUTODISCOVER} AND {_NOTSHELL_TARGET} AND \"user\" IS NOT NULL"
            for rule, where in ((PROXYSHELL, f"{shell} AND {ok}"),
                                (PROXYSHELL_POWERSHELL, f"{shell} AND {ok} AND {_POWERSHELL_CAT}"),
                                (PROXYSHELL_FAILED, f"{shell} AND NOT coalesce({ok}, false)"),
                                (NOTSHELL, f"{notshell} AND {ok}"),
                                (NOTSHELL_FAILED, f"{notshell} AND NOT coalesce({ok}, false)")):
                yield from hits(store, rule, f"SELECT {ATTRS} FROM {web} WHERE {where}")
        commands = command_text(store)
        if commands is not None:
            yield from hits(store, EXPORT_WEBSHELL, f"""SELECT key, "user", mailbox, path AS webshell FROM {commands}
                WHERE cmdlet ILIKE 'New-MailboxExportRequest'
                AND regexp_matches(path, {sql_literal(_WEB_PATH)})""")
