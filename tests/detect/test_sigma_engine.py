"""The Sigma engine's ways of reading a group give the same matches: a small group read straight
from its partition, a large one through a temporary table, and a large one whose events repeat in
the columns the rules read (matched once per distinct row, each carrying its events' keys)."""

from __future__ import annotations

from pathlib import Path

import pytest
from builders import store_with

from varde.detect.sigma.engine import SMALL_GROUP_ROWS, SigmaEngine, runnable_rules
from varde.detect.sigma.rules import load_ruleset

RULE = """\
title: Whoami run by a web server worker
id: 0f4a5a9e-2b1c-4c77-9d0e-6c1f3f1e8a01
status: test
author: varde tests
logsource:
    product: windows
    category: process_creation
detection:
    selection:
        CommandLine|contains: whoami
        ParentImage|endswith: '\\w3wp.exe'
    condition: selection
level: high
"""

CHANNEL = "Microsoft-Windows-Sysmon/Operational"


def _event(n: int, command: str) -> dict:
    return {"provider": "Microsoft-Windows-Sysmon", "host": "EXCH01", "ts": "2021-03-03T02:10:11+00:00",
            "CommandLine": command, "ParentImage": "C:\\Windows\\System32\\inetsrv\\w3wp.exe", "Image": f"C:\\x{n % 2}.exe"}


def _matched(tmp_path: Path, commands: list[str]) -> set[str]:
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    (rules_dir / "rule.yml").write_text(RULE)
    rules, _ = runnable_rules([load_ruleset(rules_dir, None, None)])
    store = store_with(tmp_path / "events.duckdb", {(CHANNEL, 1): [_event(n, c) for n, c in enumerate(commands)]})
    try:
        result = SigmaEngine(store, rules).run()
        assert not result.errors
        rows = store.query("SELECT e.locator FROM sigma_matches m JOIN events e USING (key)")
        return {locator for (locator,) in rows}
    finally:
        store.close()


def _expected(commands: list[str]) -> set[str]:
    return {f"line {n + 1}" for n, c in enumerate(commands) if "whoami" in c.lower()}


@pytest.mark.parametrize(
    ("label", "commands"),
    [
        ("small group", ["cmd /c WHOAMI /all", "cmd /c dir", "whoami"] * (SMALL_GROUP_ROWS // 10)),
        ("repeating rows", ["cmd /c WHOAMI /all", "cmd /c dir", "whoami"] * SMALL_GROUP_ROWS),
        ("distinct rows", [f"cmd /c {'whoami' if n % 7 == 0 else 'dir'} {n}" for n in range(2 * SMALL_GROUP_ROWS)]),
    ],
)
def test_every_matching_event_is_found_however_the_group_is_read(tmp_path: Path, label: str, commands: list[str]) -> None:
    found = _matched(tmp_path, commands)
    assert found == _expected(commands), label
    assert found  # the rule does match: the comparison above is not between two empty sets
