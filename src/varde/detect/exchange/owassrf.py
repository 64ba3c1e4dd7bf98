"""OWASSRF (CVE-2022-41080 with CVE-2022-41082): remote PowerShell reached through OWA.

The ProxyNotShell mitigations blocked ``autodiscover.json``; Play ransomware's operators reached
the same back-end PowerShell through ``/owa/<mailbox>@<domain>/powershell`` instead (CrowdStrike,
December 2022). Two traces: a successful POST to that path in IIS or HttpProxy logs whose user
agent is not one of Exchange's own (SigmaHQ "Potential OWASSRF Exploitation Attempt"), and a
remote PowerShell session (``Rps_Http`` log) whose ``ClientInfo`` is not the WinRM client or
Exchange's back-end probes (CrowdStrike's Rps_Http-IOC.ps1).
"""

from __future__ import annotations

from collections.abc import Iterator

from varde.detect.exchange.base import DetectorRule, Hit, hits, status_ok
from varde.detect.exchange.web import ATTRS, requests
from varde.events.store import EventStore

_REFS = ("https://www.crowdstrike.com/blog/owassrf-exploit-analysis-and-recommendations/",
         "https://github.com/CrowdStrike/OWASSRF")
#: User agents / ClientInfo values of Exchange's own remote PowerShell traffic.
_OWN_CLIENTS = ("ClientInfo", "Microsoft WinRM Client", "Exchange BackEnd Probes")

OWASSRF = DetectorRule(
    uid="varde.exchange.owassrf.request", title="OWASSRF request to remote PowerShell (CVE-2022-41080)",
    level="critical", techniques=("T1190", "T1059.001"), cves=("CVE-2022-41080", "CVE-2022-41082"), exploited=True,
    references=_REFS,
    description="A POST to /owa/<mailbox>@<domain>/powershell succeeded with a user agent that Exchange's own "
    "remote PowerShell does not use.")
RPS_CLIENT = DetectorRule(
    uid="varde.exchange.owassrf.rps-client", title="Remote PowerShell session from an unexpected client",
    level="high", techniques=("T1059.001",), cves=("CVE-2022-41082",), references=_REFS,
    description="The Rps_Http log shows a remote PowerShell request whose ClientInfo is not the WinRM client "
    "or Exchange's probes; with HTTP 200 the command may have run.")


class Owassrf:
    """OWASSRF requests and unexpected remote PowerShell clients."""

    name = "owassrf"
    rules = (OWASSRF, RPS_CLIENT)

    def run(self, store: EventStore) -> Iterator[Hit]:
        own = ", ".join(f"'{c.lower()}'" for c in _OWN_CLIENTS)
        web = requests(store)
        if web is not None:
            yield from hits(store, OWASSRF, f"""SELECT {ATTRS} FROM {web} WHERE method = 'POST'
                AND regexp_matches(uri_decoded, '(?i)^/owa/[^/?]*@[^/?]*/powershell') AND {status_ok('status')}
                AND lower(coalesce(user_agent, '')) NOT IN ({own})""")
        rps = store.select("Exchange Rps Http", ("ClientInfo", "HttpStatus", "ClientIpAddress", "AuthenticatedUser",
                                                 "RequestId", "UrlStem"))
        if rps is not None:
            yield from hits(store, RPS_CLIENT, f"""SELECT key, ClientIpAddress AS source_ip, ClientInfo AS user_agent,
                AuthenticatedUser AS "user", RequestId AS request_id, UrlStem AS url, HttpStatus AS status FROM {rps}
                WHERE nullif(ClientInfo, '') IS NOT NULL AND lower(ClientInfo) NOT IN ({own})""")
