"""Black-box tests of varde's Sigma rule semantics, driven by ``cases/sigma_semantics.yml``.

The expectations come from the Sigma specification (sigma-rules-specification.md, the modifiers
appendix and sigma-correlation-rules-specification.md of SigmaHQ/sigma-specification), not from
varde's compiler: every case is a rule, a few events, and which of those events the rule must
match. The events are Windows events in the ``evtx`` crate JSON layout, written as JSON lines.

All cases run in ONE hunt (one evidence file, one rule folder) so the suite stays fast. Cases are
isolated by host: every case (and every correlation scenario) gets its own ``Computer`` name, and
varde reports one finding per rule and host, so the finding of (case rule, case host) lists exactly
the case's events the rule matched ("line N" locators of the evidence file). The rule cache is
switched off so every rule goes through the compiler.

Case file format (see the file's header comment for details):

* ``cases``: single-rule cases: ``detection`` (the rule's detection block, verbatim), optional
  ``logsource`` and ``defaults`` (event header), and ``events``, each with ``match`` (true/false)
  and ``data`` (EventData) plus optional header overrides (``channel``, ``provider``,
  ``event_id``).
* ``correlations``: ``files`` (rule file name -> multi-document YAML text with fixed ids) and
  ``scenarios``, each with its own events and ``expect`` (rule id -> finding expected on this
  scenario's host?); events may say ``evidence: true/false`` (must / must not be listed as the
  correlation's evidence) and ``t`` (time offset from the scenario's start).
* ``xfail``: a reason; the case is marked ``xfail(strict=True)`` (a known varde bug).
"""

from __future__ import annotations

import base64
import json
import textwrap
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from varde.pipeline import HuntOptions, hunt

CASES_FILE = Path(__file__).parent / "cases" / "sigma_semantics.yml"
NAMESPACE = uuid.UUID("5f0c6c2e-7a43-4d0e-9a55-3b8f1d7a2c10")
BASE_TIME = datetime(2024, 1, 1, tzinfo=UTC)

HEADERS = {
    # name: (provider, channel, event id)
    "sysmon_process": ("Microsoft-Windows-Sysmon", "Microsoft-Windows-Sysmon/Operational", 1),
    "sysmon_network": ("Microsoft-Windows-Sysmon", "Microsoft-Windows-Sysmon/Operational", 3),
    "security": ("Microsoft-Windows-Security-Auditing", "Security", 4688),
    "system": ("Service Control Manager", "System", 7045),
    "defender": ("Microsoft-Windows-Windows Defender",
                 "Microsoft-Windows-Windows Defender/Operational", 1116),
}

LOGSOURCES = {
    "process_creation": {"product": "windows", "category": "process_creation"},
    "network_connection": {"product": "windows", "category": "network_connection"},
    "security": {"product": "windows", "service": "security"},
    "windefend": {"product": "windows", "service": "windefend"},
}

SPEC = yaml.safe_load(CASES_FILE.read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- building the data


def encode_value(value: Any) -> Any:
    """Event values may be written as ``{base64: text, encoding: ..., before: ..., after: ...}``:
    the test (not varde) encodes the text, so the YAML stays readable."""
    if isinstance(value, dict) and "base64" in value:
        raw = value["base64"].encode(value.get("encoding", "utf-8"))
        encoded = base64.b64encode(raw).decode("ascii")
        return value.get("before", "") + encoded + value.get("after", "")
    return value


def make_event(spec: dict, defaults: dict, host: str, line: int, time: datetime) -> dict:
    overrides = {k: v for k, v in spec.items() if k in ("header", "channel", "provider", "event_id")}
    header = {**defaults, **overrides}
    provider, channel, event_id = HEADERS[header.get("header", "sysmon_process")]
    provider = header.get("provider", provider)
    channel = header.get("channel", channel)
    event_id = header.get("event_id", event_id)
    if isinstance(event_id, dict):  # raw layout, e.g. {"#attributes": {...}, "#text": 4688}
        event_id = dict(event_id)
    data = {name: encode_value(value) for name, value in (spec.get("data") or {}).items()}
    return {
        "Event": {
            "System": {
                "Provider": {"#attributes": {"Name": provider}},
                "EventID": event_id,
                "Channel": channel,
                "Computer": host,
                "EventRecordID": line,
                "TimeCreated": {"#attributes": {
                    "SystemTime": time.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}},
            },
            "EventData": data,
        }
    }


def parse_offset(text: str) -> timedelta:
    """'+MM:SS' or '+HH:MM:SS' from a scenario's start."""
    parts = [int(p) for p in str(text).lstrip("+").split(":")]
    while len(parts) < 3:
        parts.insert(0, 0)
    return timedelta(hours=parts[0], minutes=parts[1], seconds=parts[2])


def rule_id(name: str) -> str:
    return str(uuid.uuid5(NAMESPACE, name))


def rule_text(case: dict) -> str:
    logsource = case.get("logsource", "process_creation")
    logsource = LOGSOURCES.get(logsource, logsource) if isinstance(logsource, str) else logsource
    head = yaml.safe_dump({
        "title": f"semantics case {case['name']}",
        "id": rule_id(case["name"]),
        "status": "test",
        "logsource": logsource,
    }, sort_keys=False)
    detection = textwrap.indent(textwrap.dedent(case["detection"]), "    ")
    return f"{head}detection:\n{detection}level: high\n"


@dataclass
class Scenario:
    host: str
    lines: set[str]
    must: set[str]  # events marked ``evidence: true``
    never: set[str]  # events marked ``evidence: false``


@dataclass
class Built:
    """What the hunt was given: lines per (case, scenario) and the expectations."""

    lines: list[str] = field(default_factory=list)
    # case name -> (host, lines expected to match, all lines of the case)
    cases: dict[str, tuple[str, set[str], set[str]]] = field(default_factory=dict)
    # (correlation case, scenario) -> the scenario's host and lines
    scenarios: dict[tuple[str, str], Scenario] = field(default_factory=dict)


def build(evidence: Path, rules: Path) -> Built:
    built = Built()
    hosts = 0

    def next_host() -> str:
        nonlocal hosts
        hosts += 1
        return f"VT{hosts:03d}"

    for case in SPEC["cases"]:
        host = next_host()
        expected, everything = set(), set()
        for spec in case["events"]:
            line = len(built.lines) + 1
            time = BASE_TIME + timedelta(seconds=line)
            event = make_event(spec, case.get("defaults", {}), host, line, time)
            built.lines.append(json.dumps(event, ensure_ascii=False))
            everything.add(f"line {line}")
            if spec["match"]:
                expected.add(f"line {line}")
        built.cases[case["name"]] = (host, expected, everything)
        (rules / f"case_{rule_id(case['name'])}.yml").write_text(rule_text(case), encoding="utf-8")

    for number, corr in enumerate(SPEC["correlations"]):
        for file_name, text in corr["files"].items():
            (rules / file_name).write_text(textwrap.dedent(text), encoding="utf-8")
        for scenario in corr["scenarios"]:
            host = next_host()
            start = BASE_TIME + timedelta(days=1 + number, hours=len(built.scenarios))
            record = Scenario(host, set(), set(), set())
            for spec in scenario["events"]:
                line = len(built.lines) + 1
                time = start + parse_offset(spec.get("t", "+0:00"))
                event = make_event(spec, corr.get("defaults", {}), host, line, time)
                built.lines.append(json.dumps(event, ensure_ascii=False))
                locator = f"line {line}"
                record.lines.add(locator)
                if spec.get("evidence") is True:
                    record.must.add(locator)
                elif spec.get("evidence") is False:
                    record.never.add(locator)
            built.scenarios[(corr["name"], scenario["name"])] = record

    (evidence / "events.jsonl").write_text("\n".join(built.lines) + "\n", encoding="utf-8")
    return built


@dataclass
class Outcome:
    built: Built
    # (rule id, host) -> set of "line N" locators
    matches: dict[tuple[str, str], set[str]]
    counts: dict[tuple[str, str], int]
    problems: dict[str, str]
    problem_paths: dict[str, str]


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    root = tmp_path_factory.mktemp("sigma_semantics")
    evidence, rules = root / "evidence", root / "rules"
    evidence.mkdir()
    rules.mkdir()
    built = build(evidence, rules)
    with pytest.MonkeyPatch.context() as patch:
        # compile every rule afresh: a cached compilation must not stand in for the compiler
        patch.setenv("VARDE_CACHE_DIR", "off")
        result = hunt([evidence], root / "case",
                      HuntOptions(sigma_dirs=(rules,), builtin_rules=False, workers=0))
    report = result.report
    assert result.ingest.events == len(built.lines), "every test event must be read"
    matches: dict[tuple[str, str], set[str]] = {}
    counts: dict[tuple[str, str], int] = {}
    for finding in report.findings:
        key = (finding.rule_id, finding.host or "")
        matches.setdefault(key, set()).update(e.locator for e in finding.evidence)
        counts[key] = counts.get(key, 0) + finding.count
    problems, problem_paths = {}, {}
    for ruleset in report.case.rulesets:
        for problem in ruleset.problems:
            problem_paths[Path(problem.path).name] = problem.reason
            if problem.rule_id:
                problems[problem.rule_id] = problem.reason
    return Outcome(built, matches, counts, problems, problem_paths)


def describe(built: Built, locators: set[str]) -> str:
    """The EventData of the given "line N" events, for failure messages."""
    numbers = sorted(int(locator.split()[1]) for locator in locators)
    return "\n".join(f"  line {n}: {json.loads(built.lines[n - 1])['Event']['EventData']}"
                     for n in numbers)


def _param(item: dict, ident: str) -> Any:
    marks = []
    if item.get("xfail"):
        marks.append(pytest.mark.xfail(strict=True, reason=item["xfail"]))
    return pytest.param(item, id=ident, marks=marks)


# --------------------------------------------------------------------------- the tests


def test_case_file_is_well_formed() -> None:
    names = [c["name"] for c in SPEC["cases"]]
    assert len(names) == len(set(names)), "case names must be unique"
    for case in SPEC["cases"]:
        flags = [e["match"] for e in case["events"]]
        assert True in flags and False in flags, \
            f"{case['name']}: every case needs a positive and a negative event"
        assert len(flags) <= 50, f"{case['name']}: a finding lists at most 50 events"
    for corr in SPEC["correlations"]:
        outcomes = [v for s in corr["scenarios"] for v in s["expect"].values()]
        assert True in outcomes and False in outcomes, f"{corr['name']}: needs both outcomes"


@pytest.mark.parametrize("case", [_param(c, c["name"]) for c in SPEC["cases"]])
def test_rule_matches_exactly_the_expected_events(case: dict, outcome: Outcome) -> None:
    rid = rule_id(case["name"])
    assert rid not in outcome.problems, f"rule rejected: {outcome.problems[rid]}"
    file_name = f"case_{rid}.yml"
    assert file_name not in outcome.problem_paths, \
        f"rule file rejected: {outcome.problem_paths[file_name]}"
    host, expected, everything = outcome.built.cases[case["name"]]
    matched = outcome.matches.get((rid, host), set())
    assert matched <= everything  # sanity: the host isolates the case
    missed, extra = expected - matched, matched - expected
    assert not missed and not extra, (
        f"\nrule:\n{rule_text(case)}"
        f"\nmissed (should match):\n{describe(outcome.built, missed)}"
        f"\nwrongly matched:\n{describe(outcome.built, extra)}")
    if expected:
        assert outcome.counts[(rid, host)] == len(expected)


SCENARIOS = [
    _param({**scenario, "correlation": corr["name"], "files": corr["files"],
            "xfail": scenario.get("xfail") or corr.get("xfail")},
           f"{corr['name']}-{scenario['name']}")
    for corr in SPEC["correlations"] for scenario in corr["scenarios"]
]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_correlation_scenario(scenario: dict, outcome: Outcome) -> None:
    record = outcome.built.scenarios[(scenario["correlation"], scenario["name"])]
    for file_name in scenario["files"]:
        assert file_name not in outcome.problem_paths, \
            f"{file_name} rejected: {outcome.problem_paths[file_name]}"
    here = {r: sorted(v) for (r, h), v in outcome.matches.items() if h == record.host}
    evidence_rule = scenario.get("evidence_for")
    for rid, wanted in scenario["expect"].items():
        rid = str(rid)
        assert rid not in outcome.problems, f"rule {rid} rejected: {outcome.problems[rid]}"
        found = outcome.matches.get((rid, record.host))
        if wanted:
            assert found, f"expected a finding of {rid}; findings on this host: {here}"
            assert found <= record.lines
            if evidence_rule is None or evidence_rule == rid:
                evidence_rule = rid
                assert record.must <= found, \
                    f"evidence {sorted(found)} lacks {sorted(record.must - found)}"
                assert not (record.never & found), \
                    f"evidence {sorted(found)} includes {sorted(record.never & found)}"
        else:
            assert found is None, f"unexpected finding of {rid}: {sorted(found)}; all here: {here}"
