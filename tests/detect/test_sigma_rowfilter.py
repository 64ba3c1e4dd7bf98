"""The row filter (detect/sigma/rowfilter.py) only saves work: a hunt over IIS lines finds the same
events with it as without it, for keywords (one with a wildcard inside), value lists joined by
"and", prefixes, suffixes and exact values; and a rule the filter cannot serve (a regular
expression) turns it off."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from sources.test_w3c import HEADER, OWA, SHELL, Y_JS

from varde.detect.sigma import engine, rowfilter
from varde.pipeline import HuntOptions, hunt

RULES = {
    "keywords.yml": """\
title: Template injection keywords
id: 7d3a7b52-0d7e-4a3c-9a43-1d2f7e6b0001
logsource: {category: webserver}
detection:
    keywords: ['={{', 'document.cookie', '/etc/pa?swd']
    condition: keywords
level: high
""",
    "and.yml": """\
title: POST to an ECP script by an API client
id: 7d3a7b52-0d7e-4a3c-9a43-1d2f7e6b0002
logsource: {category: webserver}
detection:
    selection:
        cs-method: POST
        cs-uri-query|contains|all: ['/ecp/', '.js']
        cs-user-agent: ['ExchangeServicesClient/0.0.0.0', 'python-requests/2.25.1']
    condition: selection
level: high
""",
    "ends.yml": """\
title: Script page under owa/auth
id: 7d3a7b52-0d7e-4a3c-9a43-1d2f7e6b0003
logsource: {category: webserver}
detection:
    selection:
        cs-uri-stem|startswith: '/owa/auth/'
        cs-uri-stem|endswith: '.aspx'
    condition: selection
level: medium
""",
    "exact.yml": """\
title: OWA by curl
id: 7d3a7b52-0d7e-4a3c-9a43-1d2f7e6b0004
logsource: {category: webserver}
detection:
    selection:
        cs-uri-stem: '/owa/'
        cs-user-agent: 'curl/7.68'
    condition: selection
level: low
""",
}

REGEX = """\
title: Any aspx page requested by curl
id: 7d3a7b52-0d7e-4a3c-9a43-1d2f7e6b0005
logsource: {category: webserver}
detection:
    selection:
        cs-uri-stem|re: '(?i)\\.aspx$'
    condition: selection
level: low
"""

ATTACKS = [
    Y_JS,
    SHELL,
    OWA.replace("/owa/ ", "/owa/ x={{7*7}}&").replace("Mozilla/5.0+(Windows+NT+10.0)", "curl/7.68"),
    OWA.replace("Mozilla/5.0+(Windows+NT+10.0)", "Mozilla/5.0+(document.cookie)"),
    OWA.replace("/owa/ ", "/owa/ f=../../etc/passwd&"),
]


def _hunt(tmp_path: Path, name: str, extra: dict[str, str] | None = None) -> set[tuple[str, str]]:
    rules = tmp_path / f"rules-{name}"
    rules.mkdir()
    for file, text in {**RULES, **(extra or {})}.items():
        (rules / file).write_text(text)
    evidence = tmp_path / "evidence" / "W3SVC1"
    if not evidence.exists():
        evidence.mkdir(parents=True)
        lines = [OWA] * 1_500
        for n, attack in enumerate(ATTACKS):
            lines[n * 300 + 7] = attack
        (evidence / "u_ex210303.log").write_text(HEADER + "\r\n".join(lines) + "\r\n")
    result = hunt([evidence.parent], tmp_path / name, HuntOptions((rules,), builtin_rules=False, workers=0))
    return {(f.rule_id, ref.locator) for f in result.report.findings for ref in f.evidence
            if f.rule_id.startswith("7d3a7b52")}


@pytest.fixture
def filtered_plans(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Sizes of the plans that ran behind a row filter; a filter for any plan of 2 rules or more."""
    kept: list[int] = []
    original = engine.SigmaEngine._run_rows

    def counting(self, con, groups, plan, where):  # type: ignore[no-untyped-def]
        original(self, con, groups, plan, where)
        if where(lambda field: "x") is not None:
            kept.append(len(plan))

    monkeypatch.setattr(engine.SigmaEngine, "_run_rows", counting)
    monkeypatch.setattr(engine, "FILTER_RULES", 2)
    return kept


def test_same_matches_with_and_without_the_row_filter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      filtered_plans: list[int]) -> None:
    filtered = _hunt(tmp_path, "filtered")
    assert filtered_plans == [len(RULES)]
    monkeypatch.setattr(engine, "necessary", lambda pre, rank=None: None)
    unfiltered = _hunt(tmp_path, "unfiltered")
    assert filtered == unfiltered
    assert {uid[-1] for uid, _ in filtered} == {"1", "2", "3", "4"}  # every rule matched something


def test_a_rule_without_a_selective_condition_turns_the_filter_off(tmp_path: Path,
                                                                   filtered_plans: list[int]) -> None:
    found = _hunt(tmp_path, "regex", {"regex.yml": REGEX})
    assert filtered_plans == []
    assert "7d3a7b52-0d7e-4a3c-9a43-1d2f7e6b0005" in {uid for uid, _ in found}


def test_an_and_keeps_only_its_selective_parts() -> None:
    pre = ("and", [("atom", "cs-method", "eq", ["post"]), ("atom", "cs-uri", "contains", ["/ecp/"])])
    assert rowfilter.necessary(pre) == pre  # both texts long enough by default
    assert rowfilter.necessary(pre, lambda atom: None if atom[1] == "cs-method" else 5) == pre[1][1]
    assert rowfilter.necessary(("or", [pre, None])) is None  # an alternative that may match anything


def test_texts_are_matched_literally() -> None:
    sql = rowfilter.row_filter([("atom", "f", "eq", ["a.b(c)*"])], lambda field: field)
    assert "'^a\\.b\\(c\\)\\*$'" in sql


def test_fields_with_too_many_distinct_values_are_not_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT 'u' || range AS uri, 'get' AS method FROM range(2000)")
    monkeypatch.setattr(engine.GroupValues, "MAX_VALUES", 100)
    values = engine.GroupValues(con, lambda field: f"lower({field})", "SELECT * FROM t", events=2000)
    values.load({"uri", "method"})
    assert values.may_match(("atom", "uri", "eq", ["nowhere"]))  # not listed: may match
    assert not values.may_match(("atom", "method", "eq", ["post"]))  # listed: 'post' is not there
    assert values.rank(("atom", "method", "eq", ["get"])) is None  # every row: no filter on it
