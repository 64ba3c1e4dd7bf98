"""What a hunt of the simulated evidence must find: ``DIR/truth.json``.

The keys follow ``shared/spec/report-contract.md`` (vulnerabilities, intruders, webshells,
mailboxes, techniques, verdict) so that a test can compare a report with its truth directly.
Steps record here exactly what they wrote into the evidence, nothing more.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

#: The ATT&CK (Enterprise v14) techniques the scenarios use: id -> (name, tactics).
TECHNIQUES: dict[str, tuple[str, tuple[str, ...]]] = {
    "T1190": ("Exploit Public-Facing Application", ("initial-access",)),
    "T1505.003": ("Server Software Component: Web Shell", ("persistence",)),
    "T1059.003": ("Command and Scripting Interpreter: Windows Command Shell", ("execution",)),
    "T1059.001": ("Command and Scripting Interpreter: PowerShell", ("execution",)),
    "T1033": ("System Owner/User Discovery", ("discovery",)),
    "T1003.001": ("OS Credential Dumping: LSASS Memory", ("credential-access",)),
    "T1114.002": ("Email Collection: Remote Email Collection", ("collection",)),
    "T1560.001": ("Archive Collected Data: Archive via Utility", ("collection",)),
    "T1110.003": ("Brute Force: Password Spraying", ("credential-access",)),
    "T1078": ("Valid Accounts", ("defense-evasion", "persistence", "privilege-escalation", "initial-access")),
    "T1098": ("Account Manipulation", ("persistence", "privilege-escalation")),
    "T1070": ("Indicator Removal", ("defense-evasion",)),
}

#: CVE -> the name the report contract's ``vulnerabilities[].name`` uses.
CVES = {
    "CVE-2021-26855": "ProxyLogon SSRF",
    "CVE-2021-27065": "ProxyLogon arbitrary file write (ECP)",
    "CVE-2021-34473": "ProxyShell pre-auth path confusion",
    "CVE-2021-34523": "ProxyShell PowerShell elevation of privilege",
    "CVE-2021-31207": "ProxyShell post-auth arbitrary file write",
    "CVE-2022-41040": "ProxyNotShell SSRF",
    "CVE-2022-41082": "ProxyNotShell PowerShell remote code execution",
}


def iso(ts_us: int) -> str:
    """ISO 8601 UTC with ``Z`` (seconds; the contract's time format)."""
    return datetime.fromtimestamp(ts_us // 1_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class _Intruder:
    ips: set[str] = field(default_factory=set)
    agents: set[str] = field(default_factory=set)
    first: int | None = None
    last: int | None = None
    attribution: dict[str, Any] | None = None


def _earliest(current: int | None, ts_us: int) -> int:
    return ts_us if current is None else min(current, ts_us)


@dataclass
class Truth:
    """The ground truth, filled in by the steps as they write evidence."""

    host: str
    intruders: dict[str, _Intruder] = field(default_factory=dict)
    vulnerabilities: dict[str, int] = field(default_factory=dict)
    techniques: dict[str, int] = field(default_factory=dict)
    webshells: dict[str, tuple[int, str]] = field(default_factory=dict)
    mailboxes: dict[str, dict[str, Any]] = field(default_factory=dict)
    benign: list[dict[str, Any]] = field(default_factory=list)
    first_intrusion: int | None = None

    def intrusion(self, ts_us: int) -> None:
        """An intruder got in at ``ts_us`` (an exploit that worked, a password that was right)."""
        self.first_intrusion = _earliest(self.first_intrusion, ts_us)

    def intruder(self, name: str, ts_us: int, ip: str | None = None, agent: str | None = None) -> None:
        """An intruder acted at ``ts_us`` (from ``ip`` with ``agent`` when over HTTP)."""
        entry = self.intruders.setdefault(name, _Intruder())
        entry.first = _earliest(entry.first, ts_us)
        entry.last = ts_us if entry.last is None else max(entry.last, ts_us)
        if ip:
            entry.ips.add(ip)
        if agent:
            entry.agents.add(agent)

    def attribute(self, name: str, attribution: dict[str, Any] | None) -> None:
        """The actor an intruder should be attributed to (None: no actor expected)."""
        self.intruders.setdefault(name, _Intruder()).attribution = attribution

    def exploited(self, cve: str, ts_us: int) -> None:
        """``cve`` was exploited successfully at ``ts_us``."""
        self.vulnerabilities[cve] = _earliest(self.vulnerabilities.get(cve), ts_us)
        self.intrusion(ts_us)

    def technique(self, technique: str, ts_us: int) -> None:
        """ATT&CK ``technique`` was used at ``ts_us``."""
        if technique not in TECHNIQUES:
            raise KeyError(f"unknown technique {technique}")
        self.techniques[technique] = _earliest(self.techniques.get(technique), ts_us)

    def webshell(self, path: str, ts_us: int, sha256: str) -> None:
        """A web shell was planted at ``path`` (a Windows path on the server)."""
        if path not in self.webshells:
            self.webshells[path] = (ts_us, sha256)

    def mailbox(self, mailbox: str, access: str, ts_us: int, items: int | None = None,
                size: int | None = None) -> None:
        """The intruder accessed ``mailbox`` (``export``, ``read``, ``search``, ...)."""
        entry = self.mailboxes.setdefault(mailbox, {"access": set(), "first": ts_us, "items": None, "bytes": None})
        entry["access"].add(access)
        entry["first"] = min(entry["first"], ts_us)
        if items is not None:
            entry["items"] = (entry["items"] or 0) + items
        if size is not None:
            entry["bytes"] = (entry["bytes"] or 0) + size

    def note_benign(self, kind: str, ts_us: int, **details: Any) -> None:
        """Something that looks like an attack but is not (a trap for false positives)."""
        self.benign.append({"kind": kind, "first_seen": iso(ts_us), **details})

    def document(self, scenario: str, seed: int, evidence: dict[str, int]) -> dict[str, Any]:
        """The truth as the JSON document written to ``truth.json``."""
        compromised = self.first_intrusion is not None
        return {
            "format": "varde.truth/1",
            "scenario": scenario,
            "seed": seed,
            "host": self.host,
            "verdict": {"compromised": compromised},
            "first_intrusion": iso(self.first_intrusion) if self.first_intrusion is not None else None,
            "vulnerabilities": [
                {"cve": cve, "name": CVES[cve], "exploited": True, "first_seen": iso(ts)}
                for cve, ts in sorted(self.vulnerabilities.items())
            ],
            "intruders": [
                {"id": name, "source_ips": sorted(i.ips), "user_agents": sorted(i.agents),
                 "first_seen": iso(i.first) if i.first is not None else None,
                 "last_seen": iso(i.last) if i.last is not None else None,
                 "expected_attribution": i.attribution}
                for name, i in sorted(self.intruders.items())
            ],
            "webshells": [
                {"path": path, "host": self.host, "first_seen": iso(ts), "sha256": digest}
                for path, (ts, digest) in sorted(self.webshells.items())
            ],
            "mailboxes": [
                {"mailbox": box, "access": sorted(e["access"]), "first_seen": iso(e["first"]),
                 "items": e["items"], "bytes": e["bytes"]}
                for box, e in sorted(self.mailboxes.items())
            ],
            "techniques": [
                {"id": t, "name": TECHNIQUES[t][0], "tactics": list(TECHNIQUES[t][1]), "first_seen": iso(ts)}
                for t, ts in sorted(self.techniques.items())
            ],
            "benign": self.benign,
            "evidence": evidence,
        }
