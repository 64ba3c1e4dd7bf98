"""Placeholder rules: values from a file, or skipped with the reason."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from varde.detect.sigma.rules import load_placeholders, load_ruleset
from varde.pipeline import HuntOptions, hunt

RULE = """
title: Logon By A Listed Administrator
id: 11111111-2222-4333-8444-555555555555
status: test
logsource: {product: windows, service: security}
detection:
    selection:
        EventID: 4624
        TargetUserName|expand: '%Administrators%'
    condition: selection
level: medium
"""


def _event(line: int, user: str) -> str:
    return json.dumps({"Event": {"System": {
        "Provider": {"#attributes": {"Name": "Microsoft-Windows-Security-Auditing"}}, "EventID": 4624,
        "Channel": "Security", "Computer": "DC1", "EventRecordID": line,
        "TimeCreated": {"#attributes": {"SystemTime": f"2024-01-01T00:00:0{line}Z"}}},
        "EventData": {"TargetUserName": user, "LogonType": "3"}}})


def _case(tmp_path: Path) -> tuple[Path, Path]:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "admin.yml").write_text(RULE)
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    (evidence / "security.jsonl").write_text("\n".join(_event(i, u) for i, u in [(1, "alice"), (2, "bob"), (3, "ADM-Eve")]))
    return rules, evidence


def test_placeholder_rule_skipped_without_values(tmp_path: Path) -> None:
    rules, evidence = _case(tmp_path)
    report = hunt([evidence], tmp_path / "case", HuntOptions((rules,), builtin_rules=False, workers=0)).report
    entry = report.case.rulesets[0]
    assert entry.rules == 0 and entry.skipped == 1 and entry.errors == 0
    assert "placeholder" in entry.problems[0].reason and entry.problems[0].path.endswith("admin.yml")
    assert report.findings == []


def test_placeholder_values_from_file(tmp_path: Path) -> None:
    rules, evidence = _case(tmp_path)
    values = tmp_path / "placeholders.yml"
    values.write_text(yaml.safe_dump({"Administrators": ["alice", "adm-*"]}))
    options = HuntOptions((rules,), builtin_rules=False, placeholders=values, workers=0)
    report = hunt([evidence], tmp_path / "case", options).report
    [finding] = report.findings
    assert finding.count == 2
    assert sorted(e.locator for e in finding.evidence) == ["line 1", "line 3"]


def test_placeholder_missing_from_file_is_skipped_with_its_name(tmp_path: Path) -> None:
    rules, _ = _case(tmp_path)
    values = tmp_path / "placeholders.yml"
    values.write_text(yaml.safe_dump({"Workstations": ["ws1"]}))
    ruleset = load_ruleset(rules, load_placeholders(values))
    [skipped] = ruleset.skipped
    assert "%Administrators%" in skipped.reason and ruleset.errors == []


def test_sigmahq_placeholder_rules_compile_with_values(corpus: Path, tmp_path: Path) -> None:
    folder = corpus / "sigma" / "rules-placeholder"
    names = sorted({m for p in folder.rglob("*.yml") for m in re.findall(r"%([\w-]+)%", p.read_text())})
    values = tmp_path / "values.yml"
    values.write_text(yaml.safe_dump({name: ["example-value"] for name in names}))
    ruleset = load_ruleset(folder, load_placeholders(values))
    assert ruleset.skipped == [] and ruleset.errors == []
    assert ruleset.count + len(ruleset.not_applicable) == 23
    windows = sum(1 for p in folder.rglob("*.yml") if "windows" in p.parts)
    assert ruleset.count == windows  # the Windows ones compile; cloud/identity ones are not applicable
