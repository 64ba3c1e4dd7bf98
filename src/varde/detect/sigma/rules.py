"""Load SigmaHQ-format rule folders, unmodified, and compile each rule for the case store.

A rule file goes through pySigma once: YAML (libyaml, with pySigma's duplicate-key check) ->
pySigma's rule model -> :func:`~varde.detect.sigma.compile.compile_rule` for every target of its
log source. What comes out is varde's own frozen record (:class:`CompiledRule`: metadata and
SQL predicates), which is all the later stages use, and which is cached on disk keyed by the
file's content (see :mod:`varde.detect.sigma.cache`), so a second hunt with the same rules skips
pySigma entirely.

A file or rule that cannot be loaded or compiled is recorded with its path and the reason and
never stops the load. Placeholder rules (``|expand`` with ``%name%`` values, as in
``rules-placeholder``) take their values from a mapping of placeholder name to values; a rule
with a placeholder that has no value is skipped with that reason.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sigma.policy
import yaml
from sigma.collection import SigmaCollection
from sigma.correlations import SigmaCorrelationRule
from sigma.exceptions import SigmaError, SigmaRuleLocation
from sigma.modifiers import SigmaWideModifier, modifier_mapping, reverse_modifier_mapping
from sigma.policy import SigmaPolicy
from sigma.policy.regex_engine import PythonRegexEngine
from sigma.processing.pipeline import ProcessingItem, ProcessingPipeline
from sigma.processing.transformations import ValueListPlaceholderTransformation
from sigma.rule import SigmaRule
from sigma.rule.base import SigmaYAMLLoader
from sigma.types import Placeholder, SigmaString

from varde.detect.sigma.cache import RuleCache
from varde.detect.sigma.compile import Predicate, UnsupportedRule, compile_rule, rule_event_ids
from varde.detect.sigma.logsource import LogsourceMap, Target, default_map

logger = logging.getLogger(__name__)

RULE_SUFFIXES = (".yml", ".yaml")

#: Regular expressions are checked with Python's engine at load (pySigma's default, RE2, rejects
#: look-around); the compiler then runs each on RE2 when it can and on Python's ``re`` otherwise.
_POLICY = SigmaPolicy(regex_engine=PythonRegexEngine())
_UID_NAMESPACE = uuid.UUID("5b0b0c4e-7a1d-4b8e-9a57-76617264650a")


@dataclass(frozen=True)
class RuleProblem:
    """A rule (or rule file) that is not used, and why."""

    path: str
    reason: str
    rule_id: str | None = None
    title: str | None = None


@dataclass(frozen=True)
class RuleInfo:
    """What findings say about a rule: identity, words, level, author and ATT&CK tags."""

    uid: str
    title: str
    path: str
    level: str = "informational"
    name: str | None = None
    author: str | None = None
    description: str | None = None
    status: str | None = None
    references: tuple[str, ...] = ()
    techniques: tuple[str, ...] = ()
    cves: tuple[str, ...] = ()  # vulnerabilities the rule's matches point to ("CVE-2021-26855")
    exploited: bool | None = None  # a match shows: True success, False a failed try, None unknown


@dataclass(frozen=True)
class CompiledRule:
    """A detection rule ready to run: one predicate per target, and the event ids it needs."""

    info: RuleInfo
    predicates: tuple[tuple[Target, Predicate], ...]
    event_ids: frozenset[int] | None

    @property
    def uid(self) -> str:
        return self.info.uid


@dataclass(frozen=True)
class CorrelationRule:
    """A correlation rule: its info, pySigma's model (rebuilt from YAML, also when cached) and
    its full condition as (operator, number) pairs, all of which must hold (the specification
    allows ranges such as ``gt: 10`` with ``lte: 20``; pySigma's model keeps only one)."""

    info: RuleInfo
    rule: SigmaCorrelationRule
    condition: tuple[tuple[str, float], ...] = ()


@dataclass
class RuleSet:
    """The rules of one ``--sigma`` folder (or the bundled rules)."""

    source: str
    rules: list[CompiledRule] = field(default_factory=list)
    correlations: list[CorrelationRule] = field(default_factory=list)
    errors: list[RuleProblem] = field(default_factory=list)
    skipped: list[RuleProblem] = field(default_factory=list)
    not_applicable: list[RuleProblem] = field(default_factory=list)

    @property
    def count(self) -> int:
        """Rules loaded and usable (detection and correlation rules)."""
        return len(self.rules) + len(self.correlations)


def rule_uid(rule: SigmaRule | SigmaCorrelationRule) -> str:
    """The rule's id, or a stable id derived from its file and title when it has none."""
    if rule.id:
        return str(rule.id)
    basis = f"{rule.source.path if rule.source else ''}|{rule.title}"
    return str(uuid.uuid5(_UID_NAMESPACE, basis))


def rule_info(rule: SigmaRule | SigmaCorrelationRule) -> RuleInfo:
    """The metadata findings need, from pySigma's model."""
    techniques = sorted(
        {str(t.name).upper() for t in rule.tags if t.namespace == "attack" and str(t.name)[:1] in "tT"
         and str(t.name)[1:2].isdigit()}
    )
    level = getattr(rule, "level", None)
    return RuleInfo(
        uid=rule_uid(rule),
        title=rule.title,
        path=str(rule.source.path) if rule.source else "",
        level=level.name.lower() if level is not None else "informational",
        name=str(rule.name) if getattr(rule, "name", None) else None,
        author=rule.author,
        description=rule.description,
        status=rule.status.name.lower() if rule.status else None,
        references=tuple(rule.references or ()),
        techniques=tuple(techniques),
        cves=tuple(sorted({f"CVE-{t.name}".upper() for t in rule.tags if t.namespace == "cve"})),
    )


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
        raise ValueError(f"{path}: expected a mapping of placeholder names to value lists")  # noqa: TRY004 -- a bad file, not a bad argument
    return {str(k): [str(v) for v in (vs if isinstance(vs, list) else [vs])] for k, vs in data.items()}


def rule_files(folder: Path) -> list[Path]:
    """Rule files below ``folder``, in a stable order."""
    if folder.is_file():
        return [folder]
    return sorted(p for p in folder.rglob("*") if p.suffix in RULE_SUFFIXES and p.is_file())


def _follow_the_specification() -> None:
    """Two pySigma 2.0 defaults that stray from the Sigma specification, set right.

    * pySigma knows ``wide`` (UTF-16LE) but not its specified alias ``utf16le``;
    * pySigma checks every ``re`` value with RE2 (its default policy) and rejects look-around,
      which Sigma allows; varde checks them with Python's engine and runs each on RE2 when it
      can, on Python's ``re`` otherwise. (The policy a collection is given does not reach the
      modifiers, hence the default.)

    Idempotent; called before every load, never at import.
    """
    modifier_mapping.setdefault("utf16le", SigmaWideModifier)
    reverse_modifier_mapping.setdefault(SigmaWideModifier.__name__, "wide")
    sigma.policy.default_policy = _POLICY


def load_ruleset(
    folder: Path,
    placeholders: dict[str, list[str]] | None = None,
    cache: RuleCache | None = None,
    logsources: LogsourceMap | None = None,
) -> RuleSet:
    """Load and compile every rule file below ``folder`` (through the cache when given)."""
    _follow_the_specification()
    loader = _FileLoader(placeholders or {}, logsources or default_map())
    ruleset = RuleSet(source=str(folder))
    context = loader.context_key()
    for path in rule_files(folder):
        try:
            data = path.read_bytes()
        except OSError as exc:
            ruleset.errors.append(RuleProblem(str(path), f"cannot be read: {exc.strerror or exc}"))
            continue
        key = hashlib.sha256(context + b"\0" + str(path).encode() + b"\0" + data).hexdigest()
        entry = cache.get(key) if cache else None
        if entry is None:
            entry = loader.load(path, data)
            if cache:
                cache.put(key, entry)
        _merge(ruleset, entry, path)
    return ruleset


def _merge(ruleset: RuleSet, entry: dict[str, Any], path: Path) -> None:
    from varde.detect.sigma.cache import decode_rule

    ruleset.rules.extend(decode_rule(r) for r in entry["rules"])
    for doc, info in entry["correlations"]:
        model_doc, condition = split_condition(doc)
        rule = SigmaCorrelationRule.from_dict(model_doc, source=SigmaRuleLocation(path))
        info = RuleInfo(**{**info, "references": tuple(info["references"]), "techniques": tuple(info["techniques"])})
        ruleset.correlations.append(CorrelationRule(info, rule, condition))
    for kind in ("errors", "skipped", "not_applicable"):
        getattr(ruleset, kind).extend(RuleProblem(**p) for p in entry[kind])


CONDITION_OPERATORS = ("gt", "gte", "lt", "lte", "eq", "neq")


def split_condition(doc: dict[str, Any]) -> tuple[dict[str, Any], tuple[tuple[str, float], ...]]:
    """A correlation document pySigma accepts (one condition operator), and the full condition."""
    correlation = doc.get("correlation")
    condition = correlation.get("condition") if isinstance(correlation, dict) else None
    if not isinstance(condition, dict):
        return doc, ()
    ops = tuple((op, condition[op]) for op in CONDITION_OPERATORS if op in condition)
    if len(ops) <= 1:
        return doc, ops
    first = {k: v for k, v in condition.items() if k not in CONDITION_OPERATORS or k == ops[0][0]}
    return {**doc, "correlation": {**correlation, "condition": first}}, ops


class _FileLoader:
    """Parses and compiles one rule file into a cacheable entry (plain JSON-able data)."""

    def __init__(self, placeholders: dict[str, list[str]], logsources: LogsourceMap) -> None:
        self.placeholders = placeholders
        self.logsources = logsources

    def context_key(self) -> bytes:
        """What besides the file's bytes decides the compiled result."""
        return repr((sorted(self.placeholders.items()), self.logsources.fingerprint())).encode()

    def load(self, path: Path, data: bytes) -> dict[str, Any]:
        from varde.detect.sigma.cache import encode_rule

        entry: dict[str, Any] = {"rules": [], "correlations": [], "errors": [], "skipped": [], "not_applicable": []}
        try:
            raw = [d for d in yaml.load_all(data.decode("utf-8"), Loader=SigmaYAMLLoader) if d]
            docs = [split_condition(d)[0] if isinstance(d, dict) else d for d in raw]
            items = SigmaCollection.from_dicts(
                docs, collect_errors=True, source=SigmaRuleLocation(path), resolve_references=False, policy=_POLICY
            ).rules
        except (yaml.YAMLError, UnicodeDecodeError, SigmaError, ValueError, TypeError) as exc:
            entry["errors"].append(vars(RuleProblem(str(path), f"cannot be loaded: {exc}")))
            return entry
        raw = [d for d in raw if isinstance(d, dict)]
        for number, item in enumerate(items):
            outcome = self._one(item)
            if isinstance(outcome, tuple):
                entry[outcome[0]].append(vars(outcome[1]))
            elif isinstance(outcome, CompiledRule):
                entry["rules"].append(encode_rule(outcome))
            else:
                doc = _correlation_doc(raw, item, number)
                entry["correlations"].append((doc, vars(outcome)))
        return entry

    def _one(self, item: SigmaRule | SigmaCorrelationRule) -> CompiledRule | RuleInfo | tuple[str, RuleProblem]:
        info = rule_info(item)
        problem = RuleProblem(info.path, "", str(item.id) if item.id else None, item.title)

        def fail(kind: str, reason: str) -> tuple[str, RuleProblem]:
            return kind, RuleProblem(problem.path, reason, problem.rule_id, problem.title)

        if item.errors:
            return fail("errors", "; ".join(str(e) for e in item.errors))
        if isinstance(item, SigmaCorrelationRule):
            return info
        if not isinstance(item, SigmaRule):
            return fail("errors", f"{type(item).__name__} documents (Sigma filters) are not supported yet")
        missing = sorted(placeholder_names(item) - set(self.placeholders))
        if missing:
            given = "no placeholder values given (--placeholders FILE)" if not self.placeholders else "no value given"
            return fail("skipped", f"placeholder rule skipped: {given} for %{'%, %'.join(missing)}%")
        targets = self.logsources.targets(item.logsource)
        if isinstance(targets, str):
            return fail("not_applicable", targets)
        try:
            if placeholder_names(item):
                _placeholder_pipeline(self.placeholders).apply(item)
            predicates = tuple((t, compile_rule(item, t)) for t in targets)
            return CompiledRule(info, predicates, rule_event_ids(item))
        except UnsupportedRule as exc:
            return fail("errors", str(exc))
        except Exception as exc:  # noqa: BLE001 -- pySigma raises many types on odd rules; never stop the load
            return fail("errors", f"{type(exc).__name__}: {exc}")


def _correlation_doc(docs: list[dict], rule: SigmaCorrelationRule, number: int) -> dict:
    """The YAML document a correlation rule came from (to rebuild it from the cache)."""
    for doc in docs:
        if "correlation" in doc and (doc.get("id") == str(rule.id) or doc.get("title") == rule.title):
            return doc
    return docs[number]


def _placeholder_pipeline(values: dict[str, list[str]]) -> ProcessingPipeline:
    return ProcessingPipeline(
        name="varde placeholders",
        items=[ProcessingItem(ValueListPlaceholderTransformation(), identifier="placeholders")],
        vars=values,
    )
