"""Simulated cases hunted with the project's own readers and detectors, the report compared with
the scenario's truth: every log read without a warning; verdict, exploited CVEs, web shells;
intruders (addresses, first times, user agents), first intrusion and mailboxes (access, first
time, items, bytes) exactly as the truth says.

The hunts use varde's bundled rules and detectors only (a fresh clone has no SigmaHQ checkout).
"""

from __future__ import annotations

import pytest

from varde.scenario.library import scenario_names


def test_event_logs_read_without_a_warning(hunted) -> None:
    _, report = hunted("proxylogon")
    events = [e for e in report.case.evidence if e.path.endswith(".jsonl")]
    assert len(events) == 4
    for evidence in events:
        assert evidence.reader == "event-json" and evidence.records > 0 and evidence.skipped_records == 0
    assert not [w for w in report.warnings if w.path and w.path.endswith(".jsonl")]


@pytest.mark.parametrize("scenario", scenario_names())
def test_every_simulated_log_is_read_without_a_warning(hunted, scenario: str) -> None:
    """The simulator writes the documented formats: the project's own readers (the same as for
    real evidence) read every log and event file of every scenario with no warning."""
    _, report = hunted(scenario)
    logs = [e for e in report.case.evidence if e.path.endswith((".log", ".LOG", ".jsonl"))]
    assert len(logs) > 100
    assert [e.path for e in logs if e.reader is None or e.skipped_records or not e.records] == []
    assert [w for w in report.warnings if w.path and w.path.endswith((".log", ".LOG", ".jsonl"))] == []


def _webshell_names(report) -> set[str]:
    return {w.path.replace("\\", "/").rsplit("/", 1)[-1].lower() for w in report.webshells}


@pytest.mark.parametrize("scenario", scenario_names())
def test_hunt_finds_the_intrusion(hunted, scenario: str) -> None:
    summary, report = hunted(scenario)
    truth = summary.truth
    assert report.verdict.compromised == truth["verdict"]["compromised"]
    exploited = {v.cve for v in report.vulnerabilities if v.exploited}
    assert {v["cve"] for v in truth["vulnerabilities"]} <= exploited
    assert {w["path"].rsplit("\\", 1)[-1].lower() for w in truth["webshells"]} <= _webshell_names(report)
    if not truth["verdict"]["compromised"]:
        assert not [f for f in report.findings if f.severity in ("high", "critical")]


@pytest.mark.parametrize("scenario", [s for s in scenario_names() if s != "clean-busy"])
def test_hunt_names_intruders_and_mailboxes(hunted, scenario: str) -> None:
    summary, report = hunted(scenario)
    truth = summary.truth
    addresses = {ip for intruder in report.intruders for ip in intruder.source_ips}
    for intruder in truth["intruders"]:
        assert set(intruder["source_ips"]) <= addresses
    assert len(report.intruders) == len(truth["intruders"])
    assert {m["mailbox"].lower() for m in truth["mailboxes"]} <= {m.mailbox.lower() for m in report.mailboxes}


@pytest.mark.parametrize("scenario", [s for s in scenario_names() if s != "clean-busy"])
def test_hunt_names_every_technique(hunted, scenario: str) -> None:
    summary, report = hunted(scenario)
    truth = summary.truth
    assert {t["id"] for t in truth["techniques"]} <= {t.id for t in report.techniques}


def _second(text: object) -> str | None:
    return str(text)[:19].replace(" ", "T") if text else None


@pytest.mark.parametrize("scenario", scenario_names())
def test_intruders_and_first_intrusion_are_the_truths(hunted, scenario: str) -> None:
    summary, report = hunted(scenario)
    truth = summary.truth
    assert sorted(sorted(i.source_ips) for i in report.intruders) == \
        sorted(sorted(i["source_ips"]) for i in truth["intruders"])
    expected = {tuple(sorted(i["source_ips"])): i for i in truth["intruders"]}
    for intruder in report.intruders:
        want = expected[tuple(sorted(intruder.source_ips))]
        assert _second(intruder.first_seen.isoformat()) == _second(want["first_seen"])
        assert sorted(intruder.user_agents) == sorted(want["user_agents"])
    got_first = report.first_intrusion.isoformat() if report.first_intrusion else None
    assert _second(got_first) == _second(truth["first_intrusion"])


@pytest.mark.parametrize("scenario", scenario_names())
def test_mailboxes_are_the_truths(hunted, scenario: str) -> None:
    summary, report = hunted(scenario)
    got = {m.mailbox.lower(): m for m in report.mailboxes}
    want = {m["mailbox"].lower(): m for m in summary.truth["mailboxes"]}
    assert sorted(got) == sorted(want)
    for name, mailbox in want.items():
        assert set(got[name].access) == set(mailbox["access"])
        assert _second(got[name].first_seen.isoformat()) == _second(mailbox["first_seen"])
        for count in ("items", "bytes"):  # where the truth knows them (its ProxyShell export has no size)
            if mailbox[count] is not None:
                assert getattr(got[name], count) == mailbox[count], (name, count)


@pytest.mark.parametrize("scenario", scenario_names())
def test_one_host_per_server_and_one_entry_per_web_shell(hunted, scenario: str) -> None:
    """The simulated server's logs name it ``EXCH01`` (EVTX ``Computer``, HttpProxy), by its FQDN,
    or not at all (IIS W3C): findings, steps, intruders and web shells all show one host, the
    truth's server; and each planted shell, requested and on disk, is one web shell entry."""
    summary, report = hunted(scenario)
    truth = summary.truth
    shown = ({f.host for f in report.findings} | {s.host for s in report.timeline}
             | {h for i in report.intruders for h in i.hosts} | {w.host for w in report.webshells})
    shown.discard(None)
    assert len(shown) <= 1
    assert {h.split(".", 1)[0].lower() for h in shown} <= {truth["host"].lower()}
    names = sorted(_webshell_names(report))
    assert len(names) == len(report.webshells)  # no shell listed twice
    for planted in truth["webshells"]:
        [entry] = [w for w in report.webshells if w.path.lower().endswith(planted["path"].rsplit("\\", 1)[-1].lower())]
        if entry.url:
            assert entry.sha256 == planted["sha256"]
