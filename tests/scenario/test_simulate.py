"""The simulator: same seed same bytes, truth consistent with what was written, bounded memory
at scale, the command line, and the scenario file checks."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from conftest import SEED, USERS, files_under
from typer.testing import CliRunner

import varde
from varde.cli import app
from varde.errors import UsageError
from varde.scenario.engine import Settings, Simulation, parse_size, run_hours
from varde.scenario.library import load, scenario_names, simulate
from varde.scenario.truth import TECHNIQUES

ALL = scenario_names()


def tree_digest(root: Path) -> str:
    """One hash over every file's relative path, bytes and modification time."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
        digest.update(str(path.stat().st_mtime_ns).encode())
    return digest.hexdigest()


def test_bundled_scenarios() -> None:
    assert set(ALL) == {"proxylogon", "proxyshell", "proxynotshell", "spray-ews", "clean-busy", "two-intruders"}


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path, simulated) -> None:
    first = simulated("proxylogon").out
    again = simulate("proxylogon", tmp_path / "again", Settings(seed=SEED, users=USERS)).out
    other = simulate("proxylogon", tmp_path / "other", Settings(seed=SEED + 1, users=USERS)).out
    assert tree_digest(first) == tree_digest(again)
    assert tree_digest(first) != tree_digest(other)


def _text(root: Path, pattern: str) -> str:
    return "\n".join(p.read_bytes().decode("utf-8", errors="replace") for p in files_under(root, pattern))


def _windows(case: Path, path: str) -> Path:
    drive, _, rest = path.partition(":\\")
    return case / "EXCH01" / drive.upper() / Path(*rest.split("\\"))


@pytest.mark.parametrize("scenario", ALL)
def test_truth_matches_the_evidence(simulated, scenario: str) -> None:
    summary = simulated(scenario)
    case, truth = summary.out, json.loads((summary.out / "truth.json").read_text())
    assert truth == json.loads(json.dumps(summary.truth, sort_keys=True))
    assert truth["format"] == "varde.truth/1" and truth["scenario"] == scenario and truth["seed"] == SEED
    iis = _text(case, "u_ex*.log")
    for shell in truth["webshells"]:
        data = _windows(case, shell["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == shell["sha256"]
    for intruder in truth["intruders"]:
        assert intruder["source_ips"] and intruder["first_seen"] <= intruder["last_seen"]
        for ip in intruder["source_ips"]:
            assert f" {ip} " in iis, ip
    events = _text(case, "*.jsonl")
    ews = _text(case, "Ews_*.LOG")
    for box in truth["mailboxes"]:
        assert box["access"] and set(box["access"]) <= {"export", "read", "search", "rule", "send", "delegate"}
        if "export" in box["access"]:
            assert f'-Mailbox \\"{box["mailbox"]}\\"' in events
        if "read" in box["access"]:
            assert "GetItem,200" in ews and f"Mbx={box['mailbox']}" in ews
    for technique in truth["techniques"]:
        assert technique["id"] in TECHNIQUES and technique["tactics"]
    if truth["verdict"]["compromised"]:
        assert truth["first_intrusion"] and truth["intruders"] and truth["techniques"]
        assert truth["first_intrusion"] <= min(t["first_seen"] for t in truth["techniques"] if t["id"] != "T1110.003")
    else:
        assert truth["first_intrusion"] is None
        assert not (truth["vulnerabilities"] or truth["webshells"] or truth["mailboxes"] or truth["intruders"])
        assert truth["benign"]


#: Where each CVE's exploitation shows in the evidence, as the public write-ups describe it.
CVE_EVIDENCE = {
    "CVE-2021-26855": ("HttpProxy_*.LOG", "ServerInfo~a]@"),
    "CVE-2021-27065": ("ECPServer*.LOG", "S:CMD=Set-OabVirtualDirectory.ExternalUrl='http://f/<script"),
    "CVE-2021-34473": ("u_ex*.log", "/autodiscover/autodiscover.json @"),
    "CVE-2021-34523": ("u_ex*.log", "/powershell/?X-Rps-CAT="),
    "CVE-2021-31207": ("*.jsonl", "\\\\aspnet_client\\\\"),
    "CVE-2022-41040": ("u_ex*.log", "/autodiscover/autodiscover.json @evil.corp/powershell/?serializationLevel"),
    "CVE-2022-41082": ("*.jsonl", "w3wp#MSExchangePowerShellAppPool"),
}


@pytest.mark.parametrize("scenario", ALL)
def test_exploited_vulnerabilities_leave_their_traces(simulated, scenario: str) -> None:
    summary = simulated(scenario)
    for vulnerability in summary.truth["vulnerabilities"]:
        pattern, needle = CVE_EVIDENCE[vulnerability["cve"]]
        assert needle in _text(summary.out, pattern), vulnerability["cve"]


def test_clean_scenario_has_its_traps(simulated) -> None:
    truth = simulated("clean-busy").truth
    assert {b["kind"] for b in truth["benign"]} == {"vulnerability-scan", "admin-mailbox-export"}
    events = _text(simulated("clean-busy").out, "MSExchange Management.jsonl")
    assert "New-MailboxExportRequest" in events and "\\\\\\\\FS01\\\\pst$" in events


def test_size_streams_whole_days(tmp_path: Path) -> None:
    small = simulate("proxynotshell", tmp_path / "small", Settings(seed=1, users=1, size_bytes=1))
    big = simulate("proxynotshell", tmp_path / "big", Settings(seed=1, users=1, size_bytes=small.bytes * 2))
    assert small.days == load("proxynotshell").days  # a size already reached: the scenario's own days
    assert big.days >= 2 * small.days - 1 and big.bytes >= small.bytes * 2
    assert big.truth["vulnerabilities"] == small.truth["vulnerabilities"]


_ENGINE_RUN = """
import resource, sys
from datetime import UTC, datetime
from pathlib import Path
from varde.scenario import winevents as win
from varde.scenario.engine import HOUR_US, Simulation, run_hours
from varde.scenario.formats import iso_ms
from varde.scenario.http import EwsCall, Request, send

sim = Simulation(Path(sys.argv[1]), 1, datetime(2021, 3, 1, tzinfo=UTC), 2, "EXCH01", "corp.example", "15.01.2176.002")

def hour_work(sim, index, start):
    rng = sim.rng("hour", index)
    for n in range(100):
        ts = start + rng.randrange(HOUR_US)
        send(sim, Request(ts, "POST", "/EWS/Exchange.asmx", "10.0.0.1", "agent", user="CORP\\\\a", protocol="Ews",
                          backend_status=200, ews=EwsCall("GetItem", "a@corp.example", 3)), rng)
        win.logon(sim, ts, rng, "a", "S-1-5-21-1", "10.0.0.1", n % 2 == 0)
    sim.emit(start + HOUR_US * 5, ("ecp",), [iso_ms(start), "EXCH01", "ECP.Request", "S:TIME=1"])  # hours ahead

run_hours(sim, int(sys.argv[2]), None, hour_work)
sim.close()
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def _peak_rss_kib(tmp_path: Path, days: int) -> int:
    """Peak RSS of a process in which the engine writes ``days`` days of busy hours (all sinks)."""
    done = subprocess.run([sys.executable, "-c", _ENGINE_RUN, str(tmp_path / f"days{days}"), str(days)],
                          capture_output=True, text=True, check=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(Path(varde.__file__).parents[1])})
    return int(done.stdout.split()[-1])


def test_memory_stays_flat_however_long_the_case(tmp_path: Path) -> None:
    short, long = _peak_rss_kib(tmp_path, 2), _peak_rss_kib(tmp_path, 8)
    assert long < short + 4096, (short, long)  # four times the case, not 4 MiB more memory


@pytest.mark.parametrize(("text", "expected"), [("10GB", 10**10), ("500mb", 5 * 10**8), ("1.5GiB", 3 << 29), ("42", 42)])
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "ten", "10XB", "-1GB"])
def test_parse_size_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="not a size"):
        parse_size(text)


def test_cli_simulate(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["simulate", "proxynotshell", "--out", str(tmp_path / "c"), "--users", "2"])
    assert result.exit_code == 0, result.output
    assert "proxynotshell: 3 days" in result.stdout and "(compromised)" in result.stdout
    assert orjson.loads((tmp_path / "c" / "truth.json").read_bytes())["vulnerabilities"]
    again = runner.invoke(app, ["simulate", "proxynotshell", "--out", str(tmp_path / "c")])
    assert again.exit_code == 2 and "not empty" in again.stderr
    bad = runner.invoke(app, ["simulate", "proxynotshell", "--out", str(tmp_path / "d"), "--size", "lots"])
    assert bad.exit_code == 2 and "not a size" in bad.stderr


def test_scenario_file_errors_name_the_step(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("name: x\nstart: 2021-03-01\ndays: 1\nactors: {a: {ips: [192.0.2.1]}}\n"
                    "steps:\n  - {actor: a, do: proxylogon, day: 3}\n", encoding="utf-8")
    with pytest.raises(UsageError, match="step 1: day 3 is outside"):
        load(str(path))
    path.write_text(path.read_text().replace("do: proxylogon", "do: teleport"), encoding="utf-8")
    with pytest.raises(UsageError, match="step 1: 'do' must be one of"):
        load(str(path))
    with pytest.raises(UsageError, match="unknown scenario"):
        load("no-such-scenario")


def test_a_size_that_nothing_reaches_stops_after_an_empty_day(tmp_path: Path) -> None:
    sim = Simulation(tmp_path, 1, datetime(2021, 3, 1, tzinfo=UTC), 1, "EXCH01", "corp.example", "15.01.2176.002")
    assert run_hours(sim, 1, 10**9, lambda sim, index, start: None) == 2
