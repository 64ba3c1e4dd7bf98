"""The result document, ``report.json`` (contract: shared/spec/report-contract.md).

Every renderer reads this model and nothing else; :meth:`Report.load` reads a saved document
back, so outputs can be rendered again without the evidence. Keys of the contract are always
present (empty lists where nothing was found); extra keys carry what the contract leaves open.
Times are UTC and written ISO 8601 with a ``Z``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

FORMAT = "varde.report/1"

Severity = Literal["informational", "low", "medium", "high", "critical"]
SEVERITIES: tuple[Severity, ...] = ("informational", "low", "medium", "high", "critical")


def utc_text(moment: datetime) -> str:
    """``moment`` as ISO 8601 UTC text with a ``Z`` (the contract's time format)."""
    moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S.%f").rstrip("0").rstrip(".")
    return text + "Z"


Time = Annotated[datetime, PlainSerializer(utc_text, return_type=str)]


class Model(BaseModel):
    """Frozen; unknown keys allowed on load so newer documents still read."""

    model_config = ConfigDict(frozen=True, extra="allow")


class EvidenceEntry(Model):
    path: str
    sha256: str | None
    bytes: int
    reader: str | None
    records: int
    skipped_records: int
    complete: bool = True


class RuleProblemEntry(Model):
    path: str
    rule_id: str | None = None
    title: str | None = None
    reason: str


class RulesetEntry(Model):
    kind: Literal["sigma", "yara", "builtin", "ioc"]
    source: str
    rules: int
    errors: int
    skipped: int = 0
    not_applicable: int = 0
    problems: list[RuleProblemEntry] = []


class CaseInfo(Model):
    tool_version: str
    created: Time
    evidence: list[EvidenceEntry]
    rulesets: list[RulesetEntry]
    attack_version: str
    events: int = 0


class Verdict(Model):
    compromised: bool
    confidence: Literal["low", "moderate", "high"]
    summary: str


class EvidenceRef(Model):
    path: str
    locator: str
    text: str | None = None  # the event's logged fields (for drill-down without the store), cut short
    #: The host as the event names it, when the report shows another name for it (the case's host
    #: identity, analysis/hosts.py); left out of the document otherwise.
    host: str | None = Field(default=None, exclude_if=lambda value: value is None)


class Finding(Model):
    id: str
    detector: str
    rule_id: str
    title: str
    severity: Severity
    first_seen: Time | None
    last_seen: Time | None
    host: str | None
    techniques: list[str]
    count: int
    evidence: list[EvidenceRef]
    author: str | None = None
    rule_path: str | None = None
    references: list[str] = []
    description: str | None = None
    cves: list[str] = []  # vulnerabilities this finding is evidence of
    exploited: bool | None = None  # True: shows successful exploitation; False: a failed try


class Vulnerability(Model):
    cve: str
    name: str
    exploited: bool  # a finding shows successful exploitation (not a probe or a failed try)
    first_seen: Time | None
    finding_ids: list[str]


class Webshell(Model):
    path: str  # file path, or the URL path when only requests show it
    host: str | None
    first_seen: Time | None
    sha256: str | None
    finding_ids: list[str]
    url: str | None = None  # the page requested, when requests show it
    files: list[str] = []  # every file path naming it: written on the server, copied into the evidence


class Intruder(Model):
    id: str
    source_ips: list[str]
    user_agents: list[str]
    first_seen: Time | None
    last_seen: Time | None
    finding_ids: list[str]
    name: str = ""  # "Intruder 1", in order of first activity
    first_exploitation: Time | None = None
    webshells: list[str] = []
    hosts: list[str] = []
    users: list[str] = []


class Scanners(Model):
    """Sources that only probed or failed: kept out of the intruders, but counted."""

    count: int = 0
    source_ips: list[str] = []  # the first MAX_SCANNERS of them
    finding_ids: list[str] = []


class Mailbox(Model):
    mailbox: str
    access: list[Literal["export", "read", "search", "rule", "send", "delegate"]]
    first_seen: Time | None
    items: int | None
    bytes: int | None
    finding_ids: list[str]
    intruder: str | None = None
    details: list[str] = []  # what each access was: "export to C:\\...\\x.pst", "EWS FindItem"
    evidence: list[EvidenceRef] = []


class Technique(Model):
    id: str
    name: str
    tactics: list[str]
    first_seen: Time | None
    finding_ids: list[str]
    steps: int = 0


class Step(Model):
    ts: Time
    tactic: str
    title: str
    host: str | None
    finding_id: str
    technique: str | None = None
    last_ts: Time | None = None
    count: int = 1
    intruder: str | None = None
    source_ip: str | None = None
    detail: str | None = None
    evidence: list[EvidenceRef] = []


class Warning(Model):
    path: str | None
    message: str


class AttributionCandidate(Model):
    """One candidate actor (contract keys first; the rest explain the score)."""

    name: str
    attack_id: str | None
    aliases: list[str] = []
    country: str | None = None
    probability: float
    likelihood: str
    confidence: Literal["low", "moderate", "high"]
    evidence_for: list[str] = []
    evidence_against: list[str] = []
    kind: Literal["group", "campaign"] = "group"
    score: float = 0.0  # summed log-likelihood ratio against an actor not in the data


class CountryShare(Model):
    country: str
    probability: float
    likelihood: str = ""


class Attribution(Model):
    """Who did it: candidates, countries and the mass left for an actor not in the data."""

    candidates: list[AttributionCandidate] = []
    countries: list[CountryShare] = []
    unknown_probability: float = 1.0
    attack_version: str | None = None
    as_of: str | None = None
    scale: str = "icd203"
    method: str = ""
    notes: list[str] = []
    notice: str | None = None


class Report(Model):
    format: str = FORMAT
    case: CaseInfo
    verdict: Verdict
    vulnerabilities: list[Vulnerability] = []
    intruders: list[Intruder] = []
    webshells: list[Webshell] = []
    mailboxes: list[Mailbox] = []
    techniques: list[Technique] = []
    timeline: list[Step] = []
    first_intrusion: Time | None = None  # the earliest step that shows successful exploitation
    scanners: Scanners = Scanners()
    attribution: Attribution = Attribution()
    findings: list[Finding]
    warnings: list[Warning]

    def to_json(self) -> str:
        """The document as stable, indented JSON text."""
        return self.model_dump_json(indent=2) + "\n"

    def save(self, path: Path) -> None:
        """Write the document atomically (a reader never sees half a report)."""
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(self.to_json(), encoding="utf-8")
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> Report:
        """Read a saved document."""
        return cls.model_validate_json(path.read_text(encoding="utf-8"))
