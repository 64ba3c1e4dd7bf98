"""Labelled IIS logs of the corpus, hunted end to end with SigmaHQ's web rules and the built-in
detectors.

- markernan/proxylogon-siem-detection ``iis_logs.log`` (synthetic, labelled by its author): the
  13 rows from 103.77.192.219 (autodiscover.json SSRF, proxyLogon.ecp, the help.aspx web shell
  with ``cmd=``, a .pst download from aspnet_client) must each be in a finding, and no row of
  the benign 192.168.1.0/24 clients in a high or critical one.
- sbousseaden EVTX-ATTACK-SAMPLES ``Tunna_rdp_tunnel_IIS.log``: every request goes to the Tunna
  web shell ``/erp/conn.aspx``; the tunnel must be found.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from varde.events.store import EventStore
from varde.pipeline import HuntOptions, hunt

MARKERNAN = "exchange-logs/markernan-proxylogon-siem-detection/data/iis_logs.log"
TUNNA = "evtx-samples/sbousseaden-EVTX-ATTACK-SAMPLES/Command and Control/Tunna_rdp_tunnel_IIS.log"
SERIOUS = ("high", "critical")


def _hunt(corpus: Path, log: str, case: Path):
    rules = (corpus / "sigma/rules/web", corpus / "sigma/rules-emerging-threats/2021")
    return hunt([corpus / log], case, HuntOptions(rules, workers=1))


def _matched(case: Path, rule_ids: set[str]) -> dict[str, set[str]]:
    """Client address -> locators of IIS lines matched by any of ``rule_ids``."""
    with EventStore(case / "events.duckdb") as store:
        rows = store.query(
            """SELECT json_extract_string(e.fields, '$."c-ip"'), e.locator FROM events e
            WHERE e.channel = 'IIS' AND e.key IN (
                SELECT key FROM sigma_matches WHERE rule_uid IN (SELECT unnest(?))
                UNION SELECT key FROM detector_matches WHERE rule_uid IN (SELECT unnest(?)))""",
            [sorted(rule_ids), sorted(rule_ids)],
        )
    out: dict[str, set[str]] = {}
    for ip, locator in rows:
        out.setdefault(ip, set()).add(locator)
    return out


@pytest.fixture(scope="module")
def markernan(corpus: Path, manifest: list[dict], tmp_path_factory: pytest.TempPathFactory):
    [entry] = [e for e in manifest if e.get("log") == MARKERNAN]
    case = tmp_path_factory.mktemp("markernan") / "case"
    return entry, _hunt(corpus, MARKERNAN, case).report, case


def test_markernan_every_attacker_row_is_flagged(markernan) -> None:
    entry, report, case = markernan
    assert report.case.evidence[0].records == entry["total_rows"] and report.warnings == []
    flagged = _matched(case, {f.rule_id for f in report.findings})
    with EventStore(case / "events.duckdb") as store:
        attacker_rows = {loc for (loc,) in store.query(
            """SELECT locator FROM events WHERE json_extract_string(fields, '$."c-ip"') = '103.77.192.219'""")}
    assert len(attacker_rows) == 13
    assert attacker_rows <= flagged["103.77.192.219"]


def test_markernan_no_benign_row_is_serious(markernan) -> None:
    _, report, case = markernan
    serious = _matched(case, {f.rule_id for f in report.findings if f.severity in SERIOUS})
    assert serious and not [ip for ip in serious if ip.startswith("192.168.1.")]


def test_markernan_exploitation_and_shell_are_named(markernan) -> None:
    _, report, _ = markernan
    assert report.verdict.compromised
    assert any(v.exploited for v in report.vulnerabilities)
    assert "/owa/auth/help.aspx" in {w.path for w in report.webshells}


def test_tunna_tunnel_is_found(corpus: Path, manifest: list[dict], tmp_path: Path) -> None:
    [entry] = [e for e in manifest if e.get("log") == TUNNA]
    report = _hunt(corpus, TUNNA, tmp_path / "case").report
    [tunnel] = [f for f in report.findings if f.rule_id == "varde.exchange.webshell.tunnel"]
    assert tunnel.count == entry["total_rows"] and "T1572" in tunnel.techniques
    assert {w.path for w in report.webshells} >= {entry["webshell_uri_stem"]}
