"""Stolen accounts: a sprayed password used from other sources brings them into the intruder."""

from __future__ import annotations

from datetime import UTC, datetime

from builders import store_with
from intrusion_case import iis

from varde.analysis.hits import account_key
from varde.detect.exchange import run_detectors
from varde.detect.sigma.findings import build_findings
from varde.report.build import build_report

SPRAYER, HELPER, READER, OWNER = "192.0.2.41", "192.0.2.57", "192.0.2.99", "10.0.0.33"
OUTLOOK = "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.12527; Pro)"
CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/84.0 Safari/537.36"


def _rows() -> list[dict]:
    rows = [iis("2020-08-17T09:00:00Z", "POST", "/EWS/Exchange.asmx", "", "200", OWNER, OUTLOOK, user="CORP\\odd")]
    for n in range(12):  # the spray: one failure per account from each sprayer
        rows.append(iis(f"2020-08-18T01:{10 + n:02d}:00Z", "POST", "/EWS/Exchange.asmx", "", "401", SPRAYER, CHROME,
                        user=f"CORP\\user{n}"))
        rows.append(iis(f"2020-08-18T01:{10 + n:02d}:30Z", "POST", "/EWS/Exchange.asmx", "", "401", HELPER, CHROME,
                        user=f"CORP\\user{n}" if n else "CORP\\odd"))
    rows.append(iis("2020-08-18T02:20:21Z", "POST", "/EWS/Exchange.asmx", "", "200", HELPER, CHROME, user="CORP\\odd"))
    rows.append(iis("2020-08-19T03:40:26Z", "POST", "/EWS/Exchange.asmx", "", "200", SPRAYER, OUTLOOK, user="CORP\\odd"))
    rows.append(iis("2020-08-19T03:45:00Z", "POST", "/EWS/Exchange.asmx", "", "200", READER, OUTLOOK,
                    user="odd@corp.example"))
    rows.append(iis("2020-08-19T09:00:00Z", "POST", "/EWS/Exchange.asmx", "", "200", OWNER, OUTLOOK, user="CORP\\odd"))
    return rows


def test_a_sprayed_account_used_elsewhere_joins_new_sources_but_not_the_owner(tmp_path):
    with store_with(tmp_path / "events.duckdb", {("IIS", None): _rows()}) as store:
        outcome = run_detectors(store)
        findings = build_findings(store, outcome.rules, detector="exchange", table="detector_matches")
        report = build_report(store, [], findings, datetime(2020, 8, 20, tzinfo=UTC))
    assert [i.source_ips for i in report.intruders] == [[SPRAYER, HELPER, READER]]
    intruder = report.intruders[0]
    assert OWNER not in intruder.source_ips and report.scanners.count == 0
    assert intruder.first_seen == datetime(2020, 8, 18, 1, 10, tzinfo=UTC)
    assert intruder.last_seen == datetime(2020, 8, 19, 3, 45, tzinfo=UTC)
    assert sorted(intruder.user_agents) == sorted([CHROME, OUTLOOK])
    assert report.first_intrusion == datetime(2020, 8, 18, 2, 20, 21, tzinfo=UTC)
    assert [m.mailbox for m in report.mailboxes] == ["odd@corp.example"]  # read by the intruder, shown by address


def test_account_key():
    assert account_key("CORP\\Odd") == account_key("odd@corp.example") == "odd"
