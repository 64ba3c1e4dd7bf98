"""The verdict from the intrusion analysis: compromised or not, how sure, and what to do.

Compromised when an intruder exists (a source took part in exploitation or post-exploitation) or
a finding without a source shows successful exploitation (a web shell written by the exploited
service). Confidence is high when two or more distinct findings show success or use, moderate
with one. Without that, the verdict is not compromised with low confidence when there are
findings (someone should still look) and moderate when nothing matched at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from varde.report.document import Finding, Intruder, Mailbox, Scanners, Verdict, Vulnerability, Webshell

_LIST = 3


def _names(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_LIST])
    return shown + (f" and {len(items) - _LIST} more" if len(items) > _LIST else "")


def _when(moment: datetime | None) -> str:
    return f" first on {moment:%Y-%m-%d %H:%M} UTC" if moment else ""


def verdict(findings: Sequence[Finding], vulns: Sequence[Vulnerability], intruders: Sequence[Intruder],
            mailboxes: Sequence[Mailbox], webshells: Sequence[Webshell], scanners: Scanners,
            first_intrusion: datetime | None, events: int) -> Verdict:
    """The verdict and its two- or three-sentence summary."""
    exploited = [v for v in vulns if v.exploited]
    shown = {f.id for f in findings if f.exploited} | {i for x in intruders for i in x.finding_ids}
    if intruders or exploited:
        how = f"exploiting {_names([f'{v.cve} ({v.name})' for v in exploited])}" if exploited else \
            "using a web shell or a valid account"
        addresses = [ip for i in intruders for ip in i.source_ips]
        who = f"{len(intruders)} intruder{'s' if len(intruders) != 1 else ''}" if intruders else "an intruder"
        who += f" from {_names(addresses)}" if addresses else ""
        took = []
        if webshells:
            took.append(f"planted or used {len(webshells)} web shell{'s' if len(webshells) != 1 else ''}")
        if mailboxes:
            took.append(f"touched {len(mailboxes)} mailbox{'es' if len(mailboxes) != 1 else ''} "
                        f"({_names([m.mailbox for m in mailboxes])})")
        then = f" and {' and '.join(took)}" if took else ""
        remove = f"remove the web shell{'s' if len(webshells) != 1 else ''}, " if webshells else ""
        summary = (f"The server was compromised: {who} got in by {how},{_when(first_intrusion)}{then}. "
                   f"Isolate the server, preserve the evidence, {remove}reset the credentials "
                   "of the accounts and mailboxes named, and review the timeline from that time on.")
        return Verdict(compromised=True, confidence="high" if len(shown) >= 2 else "moderate", summary=summary)
    probes = (f"{scanners.count} source{'s' if scanners.count != 1 else ''} probed the server or tried exploits "
              "that failed. ") if scanners.count else ""
    if not findings:
        return Verdict(compromised=False, confidence="moderate",
                       summary=f"No detection matched the {events} events read. No intrusion was found.")
    return Verdict(compromised=False, confidence="low", summary=(
        f"{probes}{len(findings)} findings over {events} events, none showing successful exploitation or "
        "activity of an intruder. Review the high and critical findings and confirm the evidence is complete "
        "before concluding."))
