"""Post-exploitation on the mail itself: mailbox exports, their clean-up, the role that allows
them, forwarding and inbox rules, mailbox permissions, searches, and downloads of exported or
staged files from web folders.

Administrators export mailboxes and set rules too, so on their own these are medium findings;
what makes them an intrusion is who ran them and from where, which the analysis links through
the hit attributes (``mailbox``, ``path``, ``user``, ``source_ip``). A download of a ``.pst`` or an
archive from a web folder has no benign reading and is high.
"""

from __future__ import annotations

from collections.abc import Iterator

from varde.detect.exchange.base import DetectorRule, Hit, hits, status_ok
from varde.detect.exchange.commands import command_text, parameter
from varde.detect.exchange.web import ATTRS, requests
from varde.detect.exchange.webshell import web_folders
from varde.events.store import EventStore, sql_literal

_VOLEXITY = "https://www.volexity.com/blog/2021/03/02/active-exploitation-of-microsoft-exchange-zero-day-vulnerabilities/"


def _rule(uid: str, title: str, level: str, techniques: tuple[str, ...], description: str) -> DetectorRule:
    return DetectorRule(uid=f"varde.exchange.mailbox.{uid}", title=title, level=level, techniques=techniques,
                        description=description, references=(_VOLEXITY,))


EXPORT = _rule("export", "Mailbox export requested", "medium", ("T1114.002",),
               "New-MailboxExportRequest wrote a mailbox to a PST file.")
EXPORT_REMOVED = _rule("export-removed", "Mailbox export request removed", "medium", ("T1070",),
                       "Remove-MailboxExportRequest deleted the record of an export (intruders clean up after "
                       "exporting).")
EXPORT_ROLE = _rule("export-role", "Mailbox Import Export role granted", "medium", ("T1098",),
                    "New-ManagementRoleAssignment gave the \"Mailbox Import Export\" role, which export needs.")
FORWARDING = _rule("forwarding", "Mail forwarding or redirect rule set", "high", ("T1114.003",),
                   "An inbox rule, transport rule or mailbox setting forwards, redirects or copies mail to "
                   "another address.")
PERMISSION = _rule("permission", "Mailbox access granted to another account", "medium", ("T1098.002",),
                   "Full access, send-as or impersonation rights on mailboxes were granted.")
SEARCH = _rule("search", "Mailbox content search", "medium", ("T1114.002",),
               "A compliance or mailbox search ran over mailbox contents.")
DOWNLOAD = _rule("download", "Mailbox export or archive downloaded from a web folder", "high",
                 ("T1114.002", "T1041"),
                 "A PST, dump or archive file was downloaded over HTTP from the server's web folders, where "
                 "intruders stage exports for collection.")

#: (rule, cmdlet pattern, extra condition over the command's text) — patterns are RE2, case-insensitive.
_COMMANDS = (
    (EXPORT, "New-MailboxExportRequest", None),
    (EXPORT_REMOVED, "Remove-MailboxExportRequest", None),
    (EXPORT_ROLE, "New-ManagementRoleAssignment", "Mailbox Import Export"),
    (FORWARDING, "(New|Set)-InboxRule", "(ForwardTo|RedirectTo|ForwardAsAttachmentTo)"),
    (FORWARDING, "Set-Mailbox", "(ForwardingSmtpAddress|ForwardingAddress)"),
    (FORWARDING, "(New|Set)-TransportRule", "(BlindCopyTo|RedirectMessageTo|AddToRecipients|CopyTo)"),
    (PERMISSION, "Add-MailboxPermission", "FullAccess"),
    (PERMISSION, "Add-RecipientPermission", "SendAs"),
    (PERMISSION, "New-ManagementRoleAssignment", "ApplicationImpersonation"),
    (SEARCH, "(New-ComplianceSearch|Search-Mailbox|New-MailboxSearch|New-ComplianceSearchAction)", None),
)


class MailboxActions:
    """Exports, rules, permissions, searches and downloads of mail."""

    name = "mailbox"
    rules = (EXPORT, EXPORT_REMOVED, EXPORT_ROLE, FORWARDING, PERMISSION, SEARCH, DOWNLOAD)

    def run(self, store: EventStore) -> Iterator[Hit]:
        commands = command_text(store)
        if commands is not None:
            target = (f"coalesce({parameter('ForwardingSmtpAddress')}, {parameter('ForwardTo')}, "
                      f"{parameter('RedirectTo')}, {parameter('User')})")
            for rule, cmdlet, condition in _COMMANDS:
                where = f"regexp_matches(cmdlet, {sql_literal('(?i)^' + cmdlet + '$')})"
                if condition:
                    where += f" AND regexp_matches(text, {sql_literal('(?i)' + condition)})"
                yield from hits(store, rule, f"""SELECT key, "user", mailbox, coalesce(path, {target}) AS path,
                    cmdlet AS step FROM (SELECT *, text AS "*" FROM {commands}) WHERE {where}""")
        web = requests(store)
        if web is not None:
            loot = " OR ".join(f"lower(split_part(uri_decoded, '?', 1)) LIKE {sql_literal('%' + e)}"
                               for e in web_folders().loot_extensions)
            yield from hits(store, DOWNLOAD, f"""SELECT {ATTRS}, split_part(uri, '?', 1) AS path FROM {web}
                WHERE method = 'GET' AND ({loot}) AND {status_ok('status')}""")
