"""Password spraying and brute force against OWA, EWS, ActiveSync, Autodiscover and MAPI, and the
accounts that then logged in from the same source.

Two kinds of evidence: Security 4625/4624 on the Exchange server (logon type 8, clear text, is how
IIS basic and forms authentication log; type 3 is network logon), and HTTP 401 answers with a user
name to Exchange's client endpoints in IIS logs. A source is spraying when it fails for many
accounts with few tries each, brute forcing when it fails many times for one account. An account
that later succeeds from a source that sprayed it is the finding that matters: valid accounts
(T1078) in intruder hands, as in the 2020 attack on the Norwegian parliament.
"""

from __future__ import annotations

from collections.abc import Iterator

from varde.detect.exchange.base import DetectorRule, Hit, hits, status_ok
from varde.detect.exchange.web import requests
from varde.events.store import EventStore

#: Distinct accounts one source must fail for to count as spraying.
SPRAY_ACCOUNTS = 10
#: Failures for one account from one source that count as brute force.
BRUTE_FAILURES = 30
#: Exchange client endpoints that take credentials (URL path prefixes, lower case).
ENDPOINTS = ("/owa/", "/ews/", "/microsoft-server-activesync", "/autodiscover/", "/mapi/", "/rpc/", "/oab/",
             "/ecp/", "/powershell")

_REFS = ("https://attack.mitre.org/techniques/T1110/003/",)

SPRAY = DetectorRule(
    uid="varde.exchange.auth.spray", title="Password spraying against Exchange", level="medium",
    techniques=("T1110.003",), references=_REFS,
    description=f"One source failed to log in as {SPRAY_ACCOUNTS} or more different accounts.")
BRUTE = DetectorRule(
    uid="varde.exchange.auth.brute-force", title="Password guessing against one Exchange account", level="medium",
    techniques=("T1110.001",), references=("https://attack.mitre.org/techniques/T1110/001/",),
    description=f"One source failed {BRUTE_FAILURES} or more times to log in as the same account.")
SPRAY_SUCCESS = DetectorRule(
    uid="varde.exchange.auth.spray-success", title="Account logged in from a password spraying source",
    level="high", techniques=("T1110.003", "T1078"), references=_REFS, exploited=True,
    description="After failing for many accounts, the source logged in successfully as one of them: the "
    "account's password is known to the intruder.")

MAIL_COLLECTION = DetectorRule(
    uid="varde.exchange.auth.ews-collection", title="Mail read through EWS by an account taken over by spraying",
    level="high", techniques=("T1114.002",), references=_REFS,
    description="After the spraying source logged in as an account, the same source read that account's mail "
    "through EWS (FindItem, GetItem, ExportItems ...): remote email collection, as in the 2020 attack on the "
    "Norwegian parliament.")

#: EWS operations that read mail.
EWS_READS = ("FindItem", "GetItem", "ExportItems", "SyncFolderItems", "GetAttachment")


def account(column: str) -> str:
    """SQL: the account name of ``column`` without its domain (``DOM\\user``, ``user@dom``), lower case,
    so that Security events, IIS and EWS logs name one account the same way."""
    return f"lower(regexp_replace(regexp_replace({column}, '^.*\\\\', ''), '@.*$', ''))"


def _attempts(store: EventStore) -> str | None:
    """SQL of authentication attempts: key, ts, source_ip, account, ok."""
    parts = []
    for event_id, ok in ((4625, "false"), (4624, "true")):
        source = store.select("Security", ("IpAddress", "TargetUserName", "LogonType"), (event_id,))
        if source is not None:
            parts.append(f"""SELECT key, ts, IpAddress AS source_ip, {account('TargetUserName')} AS account, {ok} AS ok
                FROM {source} WHERE LogonType IN ('8', '3') AND IpAddress NOT IN ('-', '::1', '127.0.0.1', '')""")
    web = requests(store)
    if web is not None:
        endpoint = " OR ".join(f"lower(uri) LIKE '{e}%'" for e in ENDPOINTS)
        parts.append(f"""SELECT key, ts, source_ip, {account('"user"')} AS account,
            CASE WHEN status = '401' THEN false WHEN {status_ok('status')} THEN true END AS ok
            FROM {web} WHERE "user" IS NOT NULL AND ({endpoint}) AND (status = '401' OR {status_ok('status')})""")
    return "(" + " UNION ALL ".join(parts) + ")" if parts else None


class Spraying:
    """Spraying, brute force, and logins that follow them."""

    name = "spraying"
    rules = (SPRAY, BRUTE, SPRAY_SUCCESS, MAIL_COLLECTION)

    def run(self, store: EventStore) -> Iterator[Hit]:
        attempts = _attempts(store)
        if attempts is None:
            return
        # made once: the queries below each read it (the account's regexes ran per query)
        known = store.materialise("auth_attempts", f"SELECT * FROM {attempts} "
                                  "WHERE source_ip IS NOT NULL AND account IS NOT NULL")
        base = f"""WITH a AS (SELECT * FROM {known}),
            sprayers AS (SELECT source_ip FROM a WHERE NOT ok GROUP BY 1
                         HAVING count(DISTINCT account) >= {SPRAY_ACCOUNTS}),
            brute AS (SELECT source_ip, account FROM a WHERE NOT ok GROUP BY 1, 2 HAVING count(*) >= {BRUTE_FAILURES})"""
        yield from hits(store, SPRAY, f"""{base} SELECT key, source_ip, account AS "user", 'failed' AS status
            FROM a JOIN sprayers USING (source_ip) WHERE NOT ok""")
        yield from hits(store, BRUTE, f"""{base} SELECT key, source_ip, account AS "user", 'failed' AS status
            FROM a JOIN brute USING (source_ip, account) WHERE NOT ok""")
        yield from hits(store, SPRAY_SUCCESS, f"""{base}, first_fail AS (
                SELECT source_ip, account, min(ts) AS since FROM a JOIN sprayers USING (source_ip) WHERE NOT ok GROUP BY 1, 2)
            SELECT a.key, a.source_ip, a.account AS "user", 'success' AS status
            FROM a JOIN first_fail f USING (source_ip, account) WHERE a.ok AND a.ts >= f.since""")
        ews = store.select("Exchange EWS", ("SoapAction", "HttpStatus", "ClientIpAddress", "AuthenticatedUser",
                                            "ImpersonatedUser", "RequestId", "UserAgent"))
        if ews is None:
            return
        reads = ", ".join(f"'{r.lower()}'" for r in EWS_READS)
        yield from hits(store, MAIL_COLLECTION, f"""{base}, taken AS (
                SELECT a.source_ip, a.account, min(a.ts) AS since FROM a JOIN sprayers USING (source_ip) WHERE a.ok
                AND a.ts >= (SELECT min(ts) FROM a f WHERE NOT f.ok AND f.source_ip = a.source_ip) GROUP BY 1, 2)
            SELECT e.key, e.ClientIpAddress AS source_ip, e.AuthenticatedUser AS "user", e.UserAgent AS user_agent,
                e.RequestId AS request_id, coalesce(nullif(e.ImpersonatedUser, ''), e.AuthenticatedUser) AS mailbox,
                e.SoapAction AS step, e.HttpStatus AS status
            FROM {ews} e JOIN taken t ON t.source_ip = e.ClientIpAddress AND t.account = {account('e.AuthenticatedUser')}
            WHERE lower(e.SoapAction) IN ({reads}) AND e.HttpStatus = '200' AND e.ts >= t.since""")
