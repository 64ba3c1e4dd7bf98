"""Load SigmaHQ-format rule folders, unmodified, with every problem kept per file.

YAML is parsed with libyaml (pySigma's own duplicate-key-checking loader), which loads the whole
SigmaHQ tree about five times faster than ``SigmaCollection.load_ruleset``; pySigma then builds
its rule model from the documents. A file or rule that cannot be loaded is recorded with its
path and the reason and never stops the load.

Placeholder rules (``|expand`` with ``%name%`` values, as in ``rules-placeholder``) take their
values from a YAML file mapping each placeholder name to a list of values; without one they are
skipped with that reason.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from sigma.collection import SigmaCollection
from sigma.correlations import SigmaCorrelationRule
from sigma.exceptions import SigmaError, SigmaRuleLocation
from sigma.processing.pipeline import ProcessingItem, ProcessingPipeline
from sigma.processing.transformations import ValueListPlaceholderTransformation
from sigma.rule import SigmaRule
from sigma.rule.base import SigmaYAMLLoader
from sigma.types import Placeholder, SigmaString

logger = logging.getLogger(__name__)

RULE_SUFFIXES = (".yml", ".yaml")
_UID_NAMESPACE = uuid.UUID("5b0b0c4e-7a1d-4b8e-9a57-76617264650a")


@dataclass(frozen=True)
class RuleProblem:
    """A rule (or rule file) that is not used, and why."""

    path: str
    reason: str
    rule_id: str | None = None
    title: str | None = None


@dataclass
class RuleSet:
    """The rules of one ``--sigma`` folder (or the bundled rules)."""

    source: str
    rules: list[SigmaRule] = field(default_factory=list)
    correlations: list[SigmaCorrelationRule] = field(default_factory=list)
    errors: list[RuleProblem] = field(default_factory=list)
    skipped: list[RuleProblem] = field(default_factory=list)

    @property
    def count(self) -> int:
        """Rules loaded (detection and correlation rules)."""
        return len(self.rules) + len(self.correlations)


def rule_uid(rule: SigmaRule | SigmaCorrelationRule) -> str:
    """The rule's id, or a stable id derived from its file and title when it has none."""
    if rule.id:
        return str(rule.id)
    basis = f"{rule.source.path if rule.source else ''}|{rule.title}"
    return str(uuid.uuid5(_UID_NAMESPACE, basis))


def rule_path(rule: SigmaRule | SigmaCorrelationRule) -> str:
    """The file a rule came from."""
    return str(rule.source.path) if rule.source else ""


def placeholder_names(rule: SigmaRule) -> set[str]:
    """Names of the ``%placeholders%`` the rule's detection values still contain."""
    names: set[str] = set()
    stack: list = list(rule.detection.detections.values())
    while stack:
        item = stack.pop()
        if hasattr(item, "detection_items"):
            stack.extend(item.detection_items)
            continue
        for value in getattr(item, "value", []):
            if isinstance(value, SigmaString):
                names.update(p.name for p in value.s if isinstance(p, Placeholder))
    return names


def load_placeholders(path: Path) -> dict[str, list[str]]:
    """Placeholder values from a YAML file: ``name: [value, ...]``."""
    data = yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.CSafeLoader) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of placeholder names to value lists")
    return {str(k): [str(v) for v in (vs if isinstance(vs, list) else [vs])] for k, vs in data.items()}


def rule_files(folder: Path) -> list[Path]:
    """Rule files below ``folder``, in a stable order."""
    if folder.is_file():
        return [folder]
    return sorted(p for p in folder.rglob("*") if p.suffix in RULE_SUFFIXES and p.is_file())


def load_ruleset(folder: Path, placeholders: dict[str, list[str]] | None = None) -> RuleSet:
    """Load every rule file below ``folder``."""
    ruleset = RuleSet(source=str(folder))
    for path in rule_files(folder):
        for item in _load_file(path, ruleset):
            _accept(item, ruleset, placeholders or {})
    return ruleset


def _load_file(path: Path, ruleset: RuleSet) -> Iterable[SigmaRule | SigmaCorrelationRule]:
    try:
        docs = [d for d in yaml.load_all(path.read_text(encoding="utf-8"), Loader=SigmaYAMLLoader) if d]
        collection = SigmaCollection.from_dicts(docs, collect_errors=True, source=SigmaRuleLocation(path))
    except (yaml.YAMLError, UnicodeDecodeError, OSError, SigmaError, ValueError) as exc:
        ruleset.errors.append(RuleProblem(str(path), f"cannot be loaded: {exc}"))
        return []
    return collection.rules


def _accept(item: SigmaRule | SigmaCorrelationRule, ruleset: RuleSet, placeholders: dict[str, list[str]]) -> None:
    problem = RuleProblem(rule_path(item), "", str(item.id) if item.id else None, item.title)
    if item.errors:
        reasons = "; ".join(str(e) for e in item.errors)
        ruleset.errors.append(RuleProblem(problem.path, reasons, problem.rule_id, problem.title))
        return
    if isinstance(item, SigmaCorrelationRule):
        ruleset.correlations.append(item)
        return
    names = placeholder_names(item)
    if names:
        missing = sorted(names - set(placeholders))
        if missing:
            given = "no placeholder values given (--placeholders FILE)" if not placeholders else "no value given"
            reason = f"placeholder rule skipped: {given} for %{'%, %'.join(missing)}%"
            ruleset.skipped.append(RuleProblem(problem.path, reason, problem.rule_id, problem.title))
            return
        try:
            _placeholder_pipeline(placeholders).apply(item)
        except SigmaError as exc:
            ruleset.errors.append(RuleProblem(problem.path, f"placeholders: {exc}", problem.rule_id, problem.title))
            return
    ruleset.rules.append(item)


def _placeholder_pipeline(values: dict[str, list[str]]) -> ProcessingPipeline:
    return ProcessingPipeline(
        name="varde placeholders",
        items=[ProcessingItem(ValueListPlaceholderTransformation(), identifier="placeholders")],
        vars=values,
    )
