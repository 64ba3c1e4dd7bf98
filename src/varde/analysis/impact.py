"""Mailbox impact: which mailboxes the intruders exported, read, searched or changed.

Only intruder activity counts (administrators export and search too; the contract lists mailboxes
the intruder touched, never every mailbox in the logs):

* cmdlets of an intruder's hits (``mailbox.*`` and ``proxyshell.export-webshell`` detector rules):
  exports (with the file, and the bytes of a later download of that file from a web folder when
  IIS logged ``sc-bytes``), searches, inbox / transport rules and forwarding, delegate grants;
* items fetched over EWS (``GetItem``, ``ExportItems``, ``SyncFolderItems`` in the EWS log) from an
  intruder's address, with item counts and bytes; without the EWS log, and for OWA, MAPI and
  ActiveSync, web requests from an intruder's address that succeeded as an account: a read of
  that account's mailbox;
* Microsoft 365 unified audit records (channel ``M365 Audit``): ``MailItemsAccessed`` from an
  intruder's address (with item count and size), and inbox rules, forwarding and delegate grants
  from an intruder's address or by an account the intruder used.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from varde.analysis.hits import BACKEND_PORT, Hit, account_key, utc
from varde.analysis.intruders import Clustering, shell_key
from varde.detect.exchange.web import requests
from varde.events.store import EventStore, sql_literal
from varde.report.document import EvidenceRef, Mailbox

#: Detector rule -> the mailbox access its cmdlet hits show.
RULE_ACCESS = {
    "varde.exchange.mailbox.export": "export",
    "varde.exchange.proxyshell.export-webshell": "export",
    "varde.exchange.mailbox.search": "search",
    "varde.exchange.mailbox.forwarding": "rule",
    "varde.exchange.mailbox.permission": "delegate",
}
DOWNLOAD_RULE = "varde.exchange.mailbox.download"
#: URL prefixes of mail-reading protocols -> name shown.
_PROTOCOLS = (("/ews/", "EWS"), ("/owa/", "OWA"), ("/mapi/", "MAPI"), ("/microsoft-server-activesync", "ActiveSync"))
#: Audit operations -> access (forwarding on Set-Mailbox is checked by its parameters).
_AUDIT_ACCESS = {"MailItemsAccessed": "read", "New-InboxRule": "rule", "Set-InboxRule": "rule",
                 "UpdateInboxRules": "rule", "Set-Mailbox": "rule", "Add-MailboxPermission": "delegate",
                 "Add-RecipientPermission": "delegate"}
_EVIDENCE = 5


@dataclass
class _Entry:
    name: str
    access: set[str] = field(default_factory=set)
    first: datetime | None = None
    items: int | None = None
    bytes: int | None = None
    findings: set[str] = field(default_factory=set)
    intruder: str | None = None
    details: list[str] = field(default_factory=list)
    evidence: list[EvidenceRef] = field(default_factory=list)

    def add(self, access: str, ts: datetime | None, intruder: str | None, detail: str, ref: EvidenceRef,
            finding: str | None = None, items: int | None = None, size: int | None = None) -> None:
        self.access.add(access)
        if ts is not None:
            self.first = ts if self.first is None else min(self.first, ts)
        self.intruder = self.intruder or intruder
        if finding:
            self.findings.add(finding)
        if items is not None:
            self.items = (self.items or 0) + items
        if size is not None:
            self.bytes = (self.bytes or 0) + size
        if detail not in self.details:
            self.details.append(detail)
        if len(self.evidence) < _EVIDENCE:
            self.evidence.append(ref)


class _Book(dict[str, _Entry]):
    """Entries by account: ``CORP\\alice``, ``alice@corp.example`` and ``SMTP:alice@...`` are one
    mailbox (the account name, case-insensitive); shown by its SMTP address once one is seen."""

    def entry(self, mailbox: str) -> _Entry:
        name = mailbox.strip()
        if name.lower().startswith("smtp:"):
            name = name[5:]
        entry = self.setdefault(account_key(name), _Entry(name))
        if "@" in name and "@" not in entry.name:
            entry.name = name
        return entry



def system_account(name: str) -> bool:
    """Machine, health and service accounts: their requests read no person's mail."""
    low = name.lower()
    return low.endswith("$") or "healthmailbox" in low or low.startswith(("nt authority", "system"))


def mailbox_impact(store: EventStore, hits: Sequence[Hit], clustering: Clustering) -> list[Mailbox]:
    """Mailboxes the intruders touched, in order of first access (then name)."""
    book = _Book()
    owned = [h for h in hits if clustering.intruder_of(h)]
    _from_cmdlets(store, owned, clustering, book)
    ips = {ip: i.id for i in clustering.intruders for ip in i.source_ips}
    ews_log = _ews_reads(store, ips, book)
    accounts = _web_reads(store, ips, book, skip_ews=ews_log)
    accounts.update({h.attrs["user"]: clustering.intruder_of(h) for h in owned if h.attrs.get("user")})
    _from_audit(store, ips, accounts, book)
    far = datetime.max.replace(tzinfo=UTC)
    out = [
        Mailbox(mailbox=e.name, access=sorted(e.access), first_seen=e.first, items=e.items, bytes=e.bytes,
                finding_ids=sorted(e.findings), intruder=e.intruder, details=e.details, evidence=e.evidence)
        for e in book.values() if e.access
    ]
    return sorted(out, key=lambda m: (m.first_seen or far, m.mailbox.lower()))


def _ref(hit: Hit) -> EvidenceRef:
    return EvidenceRef(path=hit.path, locator=hit.locator)


def _from_cmdlets(store: EventStore, owned: Sequence[Hit], clustering: Clustering, book: _Book) -> None:
    exports = [h for h in owned if RULE_ACCESS.get(h.finding.rule_id) == "export" and h.attrs.get("path")]
    on_disk = _file_sizes(store, [h.attrs["path"] for h in exports])
    downloaded = _download_sizes(store, [h for h in owned if h.finding.rule_id == DOWNLOAD_RULE])
    for hit in owned:
        access = RULE_ACCESS.get(hit.finding.rule_id)
        mailbox = hit.attrs.get("mailbox")
        if access is None or not mailbox:
            continue
        target = hit.attrs.get("path")
        size = None
        if access == "export" and target:
            size = on_disk.get(target, downloaded.get(shell_key(target)))
        detail = f"{hit.attrs.get('step') or access}" + (f" -> {target}" if target else "")
        book.entry(mailbox).add(access, hit.ts, clustering.intruder_of(hit), detail, _ref(hit),
                                finding=hit.finding.id, size=size)


def windows_tail(path: str) -> str:
    """A Windows path without its drive or share, ``/``-separated, lower case:
    ``\\\\EXCH01\\C$\\ProgramData\\x.pst`` and ``C:\\ProgramData\\x.pst`` give ``programdata/x.pst``."""
    parts = [p for p in path.replace("/", "\\").split("\\") if p]
    if path.startswith(("\\\\", "//")) and len(parts) > 2:
        parts = parts[2:]  # host and share
    elif parts and parts[0].endswith(":"):
        parts = parts[1:]
    return "/".join(parts).lower()


def _file_sizes(store: EventStore, targets: Sequence[str]) -> dict[str, int]:
    """Sizes of exported files found in the file inventory (``files`` table, when the case has one),
    matched by their path below the drive."""
    has = store.query("SELECT count(*) FROM information_schema.tables WHERE table_name = 'files'")[0][0]
    if not targets or not has:
        return {}
    out = {}
    for target in targets:
        tail = windows_tail(target)
        rows = store.query("SELECT bytes FROM files WHERE lower(replace(tree_path, '\\', '/')) LIKE ? "
                           "AND bytes IS NOT NULL ORDER BY evidence LIMIT 1", ["%/" + tail])
        if rows and tail:
            out[target] = int(rows[0][0])
    return out


def _download_sizes(store: EventStore, downloads: Sequence[Hit]) -> dict[str, int]:
    """Bytes sent per downloaded file name (IIS ``sc-bytes``; successful downloads only)."""
    if not downloads:
        return {}
    keys = ", ".join(str(h.key) for h in downloads)
    rows = store.query(f"SELECT key, TRY_CAST(fields->>'$.\"sc-bytes\"' AS BIGINT) FROM events WHERE key IN ({keys})")
    size = {k: b for k, b in rows if b is not None}
    out: dict[str, int] = defaultdict(int)
    for hit in downloads:
        if hit.key in size and hit.attrs.get("path"):
            out[shell_key(hit.attrs["path"])] += size[hit.key]
    return dict(out)


def _web_reads(store: EventStore, ips: dict[str, str], book: _Book, skip_ews: bool) -> dict[str, str | None]:
    """Reads over mail protocols by intruder addresses; the accounts they used. With the EWS log in
    the case, its EWS lines are the reads (a web request cannot tell listing folders from fetching
    items), so EWS requests only tell which accounts were used."""
    web = requests(store) if ips else None
    if web is None:
        return {}
    addresses = ", ".join(sql_literal(ip) for ip in sorted(ips))
    rows = store.query(f"""SELECT r.key, r.ts, r.source_ip, r."user", lower(r.uri_decoded), v.path, e.locator
        FROM {web} r JOIN events e USING (key) JOIN evidence v ON v.id = e.evidence
        WHERE r.source_ip IN ({addresses}) AND r."user" IS NOT NULL AND coalesce(r.port, '') <> '{BACKEND_PORT}'
          AND TRY_CAST(r.status AS INTEGER) BETWEEN 100 AND 399 ORDER BY r.ts, r.key""")
    accounts: dict[str, str | None] = {}
    for _, ts, ip, user, uri, path, locator in rows:
        protocol = next((name for prefix, name in _PROTOCOLS if uri.startswith(prefix)), None)
        if protocol is None or uri.startswith("/owa/auth") or system_account(user):
            continue
        accounts.setdefault(user, ips[ip])
        if skip_ews and protocol == "EWS":
            continue
        book.entry(user).add("read", utc(ts), ips[ip], f"{protocol} from {ip}", EvidenceRef(path=path, locator=locator))
    return accounts


_EWS_FIELDS = ("SoapAction", "AuthenticatedUser", "ClientIpAddress", "HttpStatus", "ResponseSize", "LocalIdCount",
               "RemoteIdCount", "GenericInfo", "ImpersonatedUser")
#: EWS calls that fetch items (FindItem lists summaries; these return the items themselves).
_EWS_FETCH = ("GetItem", "ExportItems", "SyncFolderItems")


def _ews_reads(store: EventStore, ips: dict[str, str], book: _Book) -> bool:
    """Items fetched over EWS from intruder addresses, per mailbox (``Mbx=`` of GenericInfo, else
    the impersonated or authenticated user), with item counts (``LocalIdCount`` +
    ``RemoteIdCount``) and bytes (``ResponseSize``). True when the case has the EWS log."""
    source = store.select("Exchange EWS", _EWS_FIELDS)
    if source is None:
        return False
    if not ips:
        return True
    addresses = ", ".join(sql_literal(ip) for ip in sorted(ips))
    fetch = ", ".join(sql_literal(a) for a in _EWS_FETCH)
    rows = store.query(f"""SELECT a.ts, a.ClientIpAddress, a.SoapAction,
            coalesce(nullif(regexp_extract(a.GenericInfo, 'Mbx=([^;]+)', 1), ''), nullif(a.ImpersonatedUser, ''),
                     a.AuthenticatedUser),
            coalesce(TRY_CAST(a.LocalIdCount AS BIGINT), 0) + coalesce(TRY_CAST(a.RemoteIdCount AS BIGINT), 0),
            TRY_CAST(a.ResponseSize AS BIGINT), v.path, a.locator
        FROM {source} a JOIN evidence v ON v.id = a.evidence
        WHERE a.ClientIpAddress IN ({addresses}) AND a.SoapAction IN ({fetch})
          AND TRY_CAST(a.HttpStatus AS INTEGER) BETWEEN 100 AND 399 ORDER BY a.ts, a.key""")
    for ts, ip, action, mailbox, items, size, path, locator in rows:
        if mailbox and not system_account(mailbox):
            book.entry(mailbox).add("read", utc(ts), ips[ip], f"EWS {action} from {ip}",
                                    EvidenceRef(path=path, locator=locator), items=items or None, size=size)
    return True


_AUDIT_FIELDS = ("Operation", "UserId", "ClientIP", "ClientIPAddress", "MailboxOwnerUPN", "ObjectId", "ItemCount",
                 "SizeBytes", "Parameters.Identity", "Parameters.ForwardingSmtpAddress",
                 "Parameters.ForwardingAddress", "Parameters.ForwardTo", "Parameters.RedirectTo")


def _from_audit(store: EventStore, ips: dict[str, str], accounts: dict[str, str | None], book: _Book) -> None:
    source = store.select("M365 Audit", _AUDIT_FIELDS)
    if source is None or not (ips or accounts):
        return
    rows = store.query(f"""SELECT a.*, v.path FROM {source} a JOIN evidence v ON v.id = a.evidence
        WHERE Operation IN ({', '.join(sql_literal(o) for o in _AUDIT_ACCESS)}) ORDER BY ts, key""")
    names = [d[0] for d in store.con.execute(f"SELECT a.*, v.path FROM {source} a JOIN evidence v "
                                             "ON v.id = a.evidence LIMIT 0").description]
    users = {u.lower(): i for u, i in accounts.items()}
    for row in rows:
        rec = dict(zip(names, row, strict=True))
        ip = _address(rec.get("ClientIPAddress") or rec.get("ClientIP"))
        intruder = ips.get(ip or "")
        by_account = users.get((rec.get("UserId") or "").lower())
        access = _AUDIT_ACCESS[rec["Operation"]]
        if intruder is None and (access == "read" or by_account is None):
            continue
        if rec["Operation"] == "Set-Mailbox" and not _forwarding(rec):
            continue
        mailbox = rec.get("MailboxOwnerUPN") or rec.get("Parameters.Identity") or rec.get("UserId")
        if not mailbox:
            continue
        detail = f"M365 {rec['Operation']}" + (f" from {ip}" if ip else f" by {rec.get('UserId')}")
        book.entry(mailbox).add(access, utc(rec["ts"]), intruder or by_account, detail,
                                EvidenceRef(path=rec["path"], locator=rec["locator"]),
                                items=_int(rec.get("ItemCount")) if access == "read" else None,
                                size=_int(rec.get("SizeBytes")) if access == "read" else None)


def _forwarding(rec: dict) -> bool:
    return any(rec.get(f"Parameters.{p}") for p in ("ForwardingSmtpAddress", "ForwardingAddress", "ForwardTo",
                                                     "RedirectTo"))


def _address(value: str | None) -> str | None:
    """``1.2.3.4:5678`` / ``[::1]:5678`` / ``1.2.3.4`` -> the address alone."""
    if not value:
        return None
    if value.startswith("["):
        return value[1:].split("]", 1)[0]
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def _int(value: object) -> int | None:
    try:
        return int(str(value)) if value is not None else None
    except ValueError:
        return None
