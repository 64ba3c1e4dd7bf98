"""Golden files for report.json, report.html (normalised), timeline.jsonl and navigator.json, and the
format checks of the Timesketch and Navigator outputs.

Refresh the golden files after an intended change with::

    VARDE_REFRESH_GOLDEN=1 python -m pytest tests/report/test_outputs.py

then review the diff of ``tests/report/golden/`` before committing it.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from varde import __version__
from varde.cli import app
from varde.report.document import Report
from varde.report.html import render_html
from varde.report.navigator import navigator_layer, navigator_text
from varde.report.outputs import OUTPUTS, write_outputs
from varde.report.timesketch import timesketch_lines

GOLDEN = Path(__file__).parent / "golden"
REFRESH = os.environ.get("VARDE_REFRESH_GOLDEN") == "1"


def normalise(text: str) -> str:
    """Without what changes between releases (the version) and between runs of the HTML's whitespace."""
    text = text.replace(__version__, "VERSION")
    return re.sub(r">\s+<", ">\n<", text).strip() + "\n"


def check(name: str, text: str) -> None:
    path = GOLDEN / name
    if REFRESH:
        path.write_text(normalise(text), encoding="utf-8")
    if not path.exists():
        pytest.fail(f"no golden file {path}; run with VARDE_REFRESH_GOLDEN=1 to write it")
    assert normalise(text) == path.read_text(encoding="utf-8"), f"{name} differs from its golden file"


@pytest.mark.parametrize("name, render", [
    ("report.json", Report.to_json),
    ("report.html", render_html),
    ("timeline.jsonl", timesketch_lines),
    ("navigator.json", navigator_text),
])
def test_golden(golden_report, name, render):
    check(name, render(golden_report))


def test_every_output_has_a_golden_file():
    assert {name for name, _ in OUTPUTS} | {"report.json"} == {p.name for p in GOLDEN.iterdir()}


def test_timesketch_lines_have_the_fields_timesketch_requires(golden_report):
    lines = timesketch_lines(golden_report).splitlines()
    assert len(lines) == len(golden_report.timeline) > 0
    for line in lines:
        record = json.loads(line)
        assert record["message"] and record["timestamp_desc"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", record["datetime"])
        assert isinstance(record["timestamp"], int)


def test_navigator_layer_follows_the_layer_format_4_5(golden_report):
    layer = json.loads(navigator_text(golden_report))
    assert isinstance(layer["name"], str) and layer["domain"] == "enterprise-attack"
    versions = layer["versions"]
    assert versions["layer"] == "4.5" and tuple(map(int, versions["navigator"].split("."))) >= (4, 9, 0)
    assert versions["attack"].isdigit()
    gradient = layer["gradient"]
    assert len(gradient["colors"]) >= 2 and gradient["maxValue"] > gradient["minValue"]
    assert all(re.fullmatch(r"#[0-9a-f]{6}", c) for c in gradient["colors"])
    assert layer["sorting"] in (0, 1, 2, 3)
    known = {t.id for t in golden_report.techniques}
    assert {t["techniqueID"] for t in layer["techniques"]} == known
    for technique in layer["techniques"]:
        assert re.fullmatch(r"T\d{4}(\.\d{3})?", technique["techniqueID"])
        assert isinstance(technique["score"], int) and isinstance(technique["enabled"], bool)
        assert all(set(m) == {"name", "value"} and all(isinstance(v, str) for v in m.values())
                   for m in technique["metadata"])
    assert all(set(m) == {"name", "value"} for m in layer["metadata"])
    assert navigator_layer(golden_report) == layer


def test_varde_report_re_renders_every_output_from_report_json_alone(golden_report, tmp_path):
    case = tmp_path / "case"
    case.mkdir()
    golden_report.save(case / "report.json")  # no events.duckdb, no evidence: report.json alone
    write_outputs(golden_report, tmp_path)
    result = CliRunner().invoke(app, ["report", str(case)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for name, _ in OUTPUTS:
        assert (case / name).read_text(encoding="utf-8") == (tmp_path / name).read_text(encoding="utf-8")
    assert "Intruders (2)" in result.output and "Mailboxes (2)" in result.output
    assert "COMPROMISED" in result.output


def test_the_html_shows_the_text_of_the_first_evidence_references_only(golden_report):
    """A finding with many evidence references lists them all in the HTML, but repeats the logged
    text of the first MAX_TEXTS only (report.json keeps every text)."""
    from varde.report.document import EvidenceRef
    from varde.report.html import MAX_TEXTS

    finding = golden_report.findings[0]
    refs = [EvidenceRef(path="big.log", locator=f"line {n}", text=f"marker-{n:03d}") for n in range(MAX_TEXTS + 5)]
    report = golden_report.model_copy(update={"findings": [finding.model_copy(update={"evidence": refs})]})
    page = render_html(report)
    assert all(f"big.log · line {n}<" in page for n in range(MAX_TEXTS + 5))
    assert [n for n in range(MAX_TEXTS + 5) if f"marker-{n:03d}" in page] == list(range(MAX_TEXTS))
    assert "report.json has every one" in page
