"""Timeline: ordered steps with ATT&CK tactics, bursts merged, first intrusion not the first scan."""

from __future__ import annotations

from datetime import UTC, datetime

from intrusion_case import A1, SCANNER

from varde.analysis.tactics import attack_table


def test_steps_are_in_time_order_with_tactics_from_their_technique(case_report):
    steps = case_report.timeline
    assert [s.ts for s in steps] == sorted(s.ts for s in steps)
    first = steps[0]
    assert (first.tactic, first.technique, first.source_ip) == ("initial-access", "T1190", A1)
    for step in steps:
        assert step.tactic in attack_table().tactics_of(step.technique)


def test_a_burst_of_shell_commands_is_one_step_with_a_count(case_report):
    shell = [s for s in case_report.timeline if s.detail == "/owa/auth/OutlookEN.aspx"]
    assert [(s.count, s.ts, s.last_ts) for s in shell] == [
        (6, datetime(2021, 3, 3, 2, 0, tzinfo=UTC), datetime(2021, 3, 3, 2, 5, tzinfo=UTC))]


def test_first_intrusion_is_the_first_success_not_the_first_scan(case_report):
    assert case_report.first_intrusion == datetime(2021, 3, 3, 1, 44, 10, tzinfo=UTC)
    assert all(s.source_ip != SCANNER for s in case_report.timeline)
    assert case_report.intruders[0].first_exploitation == case_report.first_intrusion


def test_every_step_points_to_a_finding_and_its_evidence(case_report):
    findings = {f.id for f in case_report.findings}
    for step in case_report.timeline:
        assert step.finding_id in findings
        assert step.evidence and all(e.text for e in step.evidence)


def test_techniques_have_names_tactics_and_first_times(case_report):
    by_id = {t.id: t for t in case_report.techniques}
    assert by_id["T1190"].name == "Exploit Public-Facing Application"
    assert by_id["T1505.003"].tactics == ["persistence"]
    assert by_id["T1190"].first_seen == case_report.first_intrusion


def test_the_table_knows_sub_techniques_and_the_matrix_order():
    table = attack_table()
    assert table.name("T1114.002") == "Email Collection: Remote Email Collection"
    assert table.tactics_of("T1078") == ("initial-access", "persistence", "privilege-escalation", "defense-evasion")
    assert table.tactics_of("T9999") == ()
    assert "MITRE" in table.notice
