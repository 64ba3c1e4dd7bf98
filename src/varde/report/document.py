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

from pydantic import BaseModel, ConfigDict, PlainSerializer

FORMAT = "varde.report/1"

Severity = Literal["informational", "low", "medium", "high", "critical"]
SEVERITIES: tuple[Severity, ...] = ("informational", "low", "medium", "high", "critical")


def _utc_text(moment: datetime) -> str:
    moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S.%f").rstrip("0").rstrip(".")
    return text + "Z"


Time = Annotated[datetime, PlainSerializer(_utc_text, return_type=str)]


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


class Warning(Model):
    path: str | None
    message: str


class Attribution(Model):
    candidates: list[dict] = []
    countries: list[dict] = []
    unknown_probability: float = 1.0


class Report(Model):
    format: str = FORMAT
    case: CaseInfo
    verdict: Verdict
    vulnerabilities: list[Vulnerability] = []
    intruders: list[dict] = []
    webshells: list[Webshell] = []
    mailboxes: list[dict] = []
    techniques: list[dict] = []
    timeline: list[dict] = []
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
