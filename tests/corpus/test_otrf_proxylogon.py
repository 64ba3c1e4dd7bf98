"""The OTRF ProxyLogon lab (flattened JSON events in a zip), hunted end to end.

Expected values come from the corpus manifest (``labeled_dataset`` SDWIN-210314014019): 10,487
events; the two SigmaHQ MSExchange keyword rules match the Set-OabVirtualDirectory event once
each; w3wp.exe starts ``cmd /c whoami`` twice, seen as 2 Sysmon 1 and 2 Security 4688 events.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from varde.pipeline import HuntOptions, hunt

ZIP = "exchange-logs/otrf-security-datasets/datasets/atomic/windows/persistence/host/proxylogon_ssrf_rce_poc.zip"


@pytest.fixture(scope="module")
def report(corpus: Path, manifest: list[dict], tmp_path_factory: pytest.TempPathFactory):
    [entry] = [e for e in manifest if e.get("dataset_id") == "SDWIN-210314014019"]
    assert entry["files"][0]["path"] == ZIP
    rules = (
        corpus / "sigma/rules/windows/builtin/msexchange",
        corpus / "sigma/rules/windows/process_creation",
    )
    result = hunt([corpus / ZIP], tmp_path_factory.mktemp("otrf") / "case", HuntOptions(rules, workers=2))
    return entry["expected"], result.report


def _count(report, rule_id: str) -> int:
    return sum(f.count for f in report.findings if f.rule_id == rule_id)


def test_all_events_read_without_loss(report) -> None:
    expected, report = report
    assert report.case.events == expected["events_total"] == 10_487
    assert report.warnings == []
    member = [e for e in report.case.evidence if "!" in e.path]
    assert len(member) == 1 and member[0].records == 10_487 and member[0].skipped_records == 0


def test_sigmahq_msexchange_keyword_rules_match_once(report) -> None:
    expected, report = report
    for hint in expected["sigma_rule_hints"]:
        assert _count(report, hint["rule_id"]) == hint["expected_matches"], hint["rule"]


def test_w3wp_starting_a_shell_is_seen_in_sysmon_and_security(report) -> None:
    expected, report = report
    seen = expected["w3wp_child_cmd_whoami"]
    web_server_child = "8202070f-edeb-4d31-a010-a26c72ac5600"  # SigmaHQ: Suspicious Process By Web Server Process
    assert _count(report, web_server_child) == seen["sysmon_1"] + seen["security_4688"]
    varde_rule = "6a0e4c61-4d0b-5f7e-9a3c-76617264650b"  # bundled: Exchange worker starts a shell
    [finding] = [f for f in report.findings if f.rule_id == varde_rule]
    assert finding.count == 4 and finding.severity == "high" and "T1505.003" in finding.techniques
    assert all(ref.path.endswith(".zip!proxylogon_ssrf_rce_poc_2021-03-14T01401970.json") for ref in finding.evidence)


def test_builtin_detectors_find_the_exploitation_and_the_web_shell(report) -> None:
    expected, report = report
    script = [f for f in report.findings if f.rule_id == "varde.exchange.proxylogon.vdir-url-script"]
    assert sum(f.count for f in script) == expected["msexchange_management_set_oabvirtualdirectory_with_script"]
    [cve] = [v for v in report.vulnerabilities if v.cve == "CVE-2021-27065"]
    assert cve.exploited and set(cve.finding_ids) >= {f.id for f in script}
    shells = {w.path for w in report.webshells}
    assert set(expected["sysmon11_aspx_created_in_owa_auth"]) <= shells
    assert report.verdict.compromised
