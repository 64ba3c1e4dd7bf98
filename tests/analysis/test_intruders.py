"""Intruders: who took part in exploitation or post-exploitation, kept apart, scanners counted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from intrusion_case import A1, A2, AGENT_A, SCANNER, B, build

from varde.analysis.hits import Hit
from varde.analysis.intruders import cluster, shell_key
from varde.report.document import Finding

T0 = datetime(2021, 3, 3, 1, 0, tzinfo=UTC)


def finding(rule: str, exploited: bool | None = None, severity: str = "high") -> Finding:
    return Finding(id=f"f-{rule}", detector="exchange", rule_id=f"varde.exchange.{rule}", title=rule,
                   severity=severity, first_seen=None, last_seen=None, host="EXCH01", techniques=["T1505.003"],
                   count=1, evidence=[], exploited=exploited)


def hit(f: Finding, minutes: int, key: int, **attrs: str) -> Hit:
    return Hit(f, key, T0 + timedelta(minutes=minutes), "EXCH01", "iis.log", f"line {key}", attrs)


def test_two_intruders_stay_apart_and_the_scanner_is_only_counted(case_report):
    report = case_report
    assert [i.source_ips for i in report.intruders] == [[A1, A2], [B]]
    assert [i.name for i in report.intruders] == ["Intruder 1", "Intruder 2"]
    assert report.intruders[0].user_agents == [AGENT_A]
    assert report.scanners.count == 1 and report.scanners.source_ips == [SCANNER]
    assert all(SCANNER not in i.source_ips for i in report.intruders)


def test_the_file_write_of_a_shell_joins_the_intruder_that_uses_it(case_report):
    report = case_report
    second = report.intruders[1]
    # the file write and the requests are one shell, named by the URL the file is served at
    assert second.webshells == ["/aspnet_client/system_web/discover.aspx"]
    assert second.first_seen == datetime(2021, 3, 4, 16, 29, tzinfo=UTC)  # the Sysmon write, before first use


def test_sources_sharing_a_shell_are_one_intruder():
    use = finding("webshell.use")
    hits = [hit(use, 0, 1, source_ip="192.0.2.1", webshell="/owa/auth/a.aspx"),
            hit(use, 90, 2, source_ip="192.0.2.2", webshell="/OWA/auth/A.aspx")]
    assert [i.source_ips for i in cluster(hits).intruders] == [["192.0.2.1", "192.0.2.2"]]


def test_a_shared_tool_agent_links_only_within_the_window_and_browsers_never():
    use = finding("webshell.use")
    tool = [hit(use, 0, 1, source_ip="192.0.2.1", user_agent="curl/7.1", webshell="a.aspx"),
            hit(use, 30, 2, source_ip="192.0.2.2", user_agent="curl/7.1", webshell="b.aspx"),
            hit(use, 600, 3, source_ip="192.0.2.3", user_agent="curl/7.1", webshell="c.aspx")]
    assert [i.source_ips for i in cluster(tool).intruders] == [["192.0.2.1", "192.0.2.2"], ["192.0.2.3"]]
    browser = "Mozilla/5.0 (Windows NT 10.0; Win64; x64)"
    same = [hit(use, 0, 1, source_ip="192.0.2.1", user_agent=browser, webshell="a.aspx"),
            hit(use, 5, 2, source_ip="192.0.2.2", user_agent=browser, webshell="b.aspx")]
    assert len(cluster(same).intruders) == 2


def test_failed_tries_and_probes_make_no_intruder():
    failed = finding("proxylogon.ssrf-failed", exploited=False, severity="medium")
    page = finding("webshell.page", severity="medium")
    result = cluster([hit(failed, 0, 1, source_ip="203.0.113.5"), hit(page, 1, 2, source_ip="203.0.113.6")])
    assert result.intruders == []
    assert result.scanners == ["203.0.113.5", "203.0.113.6"]


def test_exploitation_without_web_logs_is_an_intruder_known_by_its_host_activity():
    write = finding("proxylogon.oab-file-write", exploited=True, severity="critical")
    dump = Finding(**{**finding("x").model_dump(), "id": "f-dump", "detector": "sigma", "rule_id": "lsass"})
    result = cluster([hit(write, 0, 1, webshell="C:\\inetpub\\wwwroot\\aspnet_client\\s.aspx"), hit(dump, 30, 2)])
    assert len(result.intruders) == 1
    assert result.intruders[0].source_ips == []
    assert {h.key for h in result.intruders[0].hits} == {1, 2}


def test_clustering_is_deterministic(case_report, tmp_path):
    again = build(tmp_path)
    assert [i.model_dump() for i in again.intruders] == [i.model_dump() for i in case_report.intruders]


def test_shell_key_matches_url_and_file_paths():
    assert shell_key("/owa/auth/OutlookEN.aspx") == shell_key("C:\\Exchange\\FrontEnd\\HttpProxy\\owa\\auth\\outlooken.aspx")


def test_host_events_join_across_host_spellings_and_logs_without_host():
    use = finding("webshell.use")
    dump = Finding(**{**finding("x").model_dump(), "id": "f-dump", "detector": "sigma", "rule_id": "lsass"})
    web = Hit(use, 1, T0, None, "u_ex.log", "line 1", {"source_ip": "192.0.2.1", "webshell": "a.aspx"})
    host = Hit(dump, 2, T0 + timedelta(minutes=20), "exch01.corp.example", "Security.evtx", "record 9", {})
    result = cluster([web, host])
    assert len(result.intruders) == 1 and result.intruder_of(host) == result.intruders[0].id


def test_the_back_end_site_and_the_server_itself_are_relays_not_sources():
    from varde.analysis.hits import relayed

    assert relayed("10.0.0.5", "10.0.0.5", "443")  # the server's own address
    assert relayed("10.0.0.9", "10.0.0.5", "444")  # Exchange Back End: the client is the front end
    assert relayed("127.0.0.1", None, None)
    assert not relayed("192.0.2.1", "10.0.0.5", "443")
