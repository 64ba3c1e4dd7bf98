"""One host identity per case (analysis/hosts.py): names compared case-insensitively, a short
name joined to the one FQDN it starts, host-less events given their file's host when that is
unambiguous; and end to end, one host per server in findings, timeline, intruders and web shells.

The evidence is written in the documented formats: Windows events in the evtx crate's JSON
layout (``Computer`` the FQDN in one export, the short name in another, as collectors differ),
an IIS W3C log with Exchange's default fields (no ``s-computername``, so no host) in a
per-server folder, and the web shell's file copied from ``FrontEnd\\HttpProxy\\owa\\auth``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from builders import intrusion_events, sysmon_event, write_file
from exchange_files import CHOPPER_ASPX, OWA_AUTH

from varde.analysis.hosts import HostIdentity, canonical_names, file_hosts, folder_names
from varde.pipeline import HuntOptions, hunt

FQDN = "EXCH01.corp.example"
IIS_LOG = """#Software: Microsoft Internet Information Services 10.0
#Version: 1.0
#Date: 2021-03-03 02:50:00
#Fields: date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip cs(User-Agent) cs(Referer) sc-status sc-substatus sc-win32-status time-taken
2021-03-03 02:50:00 10.0.0.5 POST /owa/auth/RedirSuiteServerProxy.aspx - 443 - 192.0.2.10 python-requests/2.25.1 - 200 0 0 20
2021-03-03 02:51:00 10.0.0.5 POST /owa/auth/RedirSuiteServerProxy.aspx - 443 - 192.0.2.10 python-requests/2.25.1 - 200 0 0 20
"""


def test_names_compare_case_insensitively_and_join_the_one_fqdn() -> None:
    names = canonical_names({"EXCH01": 5, "exch01": 1, FQDN: 3, "exch01.corp.example": 1, "EXCH02": 2})
    assert names == {"exch01": FQDN, "exch01.corp.example": FQDN, "exch02": "EXCH02"}


def test_a_short_name_of_two_fqdns_stays_apart() -> None:
    names = canonical_names({"mail": 1, "mail.corp.example": 1, "mail.lab.example": 1})
    assert names == {"mail": "mail", "mail.corp.example": "mail.corp.example", "mail.lab.example": "mail.lab.example"}


def test_an_address_is_a_name_of_its_own() -> None:
    assert canonical_names({"10": 1, "10.0.0.5": 1}) == {"10": "10", "10.0.0.5": "10.0.0.5"}


def test_files_take_the_one_host_their_events_or_folders_name() -> None:
    names = canonical_names({FQDN: 2, "EXCH02": 1})
    folders = folder_names(names)
    logged = {"/e/mixed.jsonl": {FQDN, "EXCH02"}, "/e/exch01/evtx.jsonl": {FQDN}}
    paths = ["/e/EXCH01/W3SVC1/u_ex1.log", "/e/exch02/W3SVC1/u_ex1.log", "/e/mixed.jsonl", "/e/W3SVC1/u_ex2.log",
             "/e/exch01/evtx.jsonl", "/e/EXCH02/exch01/u_ex3.log", "/e/EXCH03/u_ex4.log",
             "/e/collected.zip!EXCH02/W3SVC1/u_ex5.log"]
    assert file_hosts(paths, logged, folders) == {
        "/e/EXCH01/W3SVC1/u_ex1.log": FQDN, "/e/exch02/W3SVC1/u_ex1.log": "EXCH02", "/e/exch01/evtx.jsonl": FQDN,
        "/e/collected.zip!EXCH02/W3SVC1/u_ex5.log": "EXCH02"}


def _evidence(root: Path) -> Path:
    """One server's evidence: events under two spellings, an IIS log without host, the shell file."""
    events = intrusion_events()
    short = json.loads(json.dumps(events))
    for event in short:
        event["Event"]["System"]["Computer"] = "EXCH01"
        event["Event"]["System"]["EventRecordID"] += 10000
    write_file(root, "EXCH01/events/security-export.jsonl", "".join(json.dumps(e) + "\n" for e in events))
    write_file(root, "EXCH01/events/sysmon-collector.jsonl", "".join(json.dumps(e) + "\n" for e in short))
    write_file(root, "EXCH01/inetpub/logs/LogFiles/W3SVC1/u_ex210303.log", IIS_LOG)
    write_file(root, f"EXCH01/{OWA_AUTH}/RedirSuiteServerProxy.aspx", CHOPPER_ASPX)
    return root


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("hosts")
    return hunt([_evidence(root / "evidence")], root / "case", HuntOptions(workers=0)).report


def test_one_server_is_one_host_everywhere(report) -> None:
    assert {f.host for f in report.findings} == {FQDN}
    keys = [(f.detector, f.rule_id) for f in report.findings if f.detector != "yara"]
    assert len(keys) == len(set(keys))  # one finding per rule, not one per spelling
    assert {s.host for s in report.timeline} == {FQDN}
    assert {h for i in report.intruders for h in i.hosts} == {FQDN}
    shown = [r for f in report.findings for r in f.evidence if r.host]
    assert shown and {r.host for r in shown} == {"EXCH01"}  # the raw name stays on its evidence
    assert all(r.path.endswith("sysmon-collector.jsonl") for r in shown)


def test_a_shell_requested_and_on_disk_is_one_entry(report) -> None:
    [shell] = report.webshells
    assert shell.host == FQDN and shell.url == "/owa/auth/RedirSuiteServerProxy.aspx"
    assert shell.sha256 == hashlib.sha256(CHOPPER_ASPX).hexdigest()
    assert shell.path.endswith("owa/auth/RedirSuiteServerProxy.aspx") and Path(shell.path).exists()
    written = "C:\\Program Files\\Microsoft\\Exchange Server\\V15\\FrontEnd\\HttpProxy\\owa\\auth\\RedirSuiteServerProxy.aspx"
    assert shell.files == sorted([shell.path, written])
    kinds = {f.detector for f in report.findings if f.id in shell.finding_ids}
    assert kinds == {"exchange", "yara"}
    assert shell.first_seen is not None


def test_a_host_less_log_is_split_by_server_folder(tmp_path: Path) -> None:
    """IIS logs of two servers (no ``s-computername``) in per-server folders, each server named by
    its own event log: the same shell request on both is one finding and one web shell per server."""
    root = tmp_path / "evidence"
    for server in ("EXCH01", "EXCH02"):
        events = [sysmon_event(n, host=f"{server}.corp.example") for n in range(3)]
        write_file(root, f"{server}/events/sysmon.jsonl", "".join(json.dumps(e) + "\n" for e in events))
        write_file(root, f"{server}/W3SVC1/u_ex210303.log", IIS_LOG)
    report = hunt([root], tmp_path / "case", HuntOptions(workers=0)).report
    use = [f for f in report.findings if f.rule_id == "varde.exchange.webshell.use"]
    assert sorted(f.host for f in use) == ["EXCH01.corp.example", "EXCH02.corp.example"]
    for finding in use:
        assert finding.count == 2
        assert {Path(r.path).parts[-3] for r in finding.evidence} == {finding.host.split(".")[0]}
    assert sorted((w.url, w.host) for w in report.webshells) == [
        ("/owa/auth/RedirSuiteServerProxy.aspx", "EXCH01.corp.example"),
        ("/owa/auth/RedirSuiteServerProxy.aspx", "EXCH02.corp.example")]


def test_an_empty_host_is_no_name() -> None:
    identity = HostIdentity({"exch01": "EXCH01"}, {"/e/EXCH01/u_ex1.log": "EXCH01"})
    assert identity.of("-", "/e/EXCH01/u_ex1.log") == "EXCH01"
    assert identity.of("", "/e/other.log") is None
    assert identity.of("exch01", "/e/other.log") == "EXCH01"
    assert identity.of("EXCH09") == "EXCH09"  # a name no table knows is kept as logged
