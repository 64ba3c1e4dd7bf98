"""YARA rules: load rule folders (signature-base style) and varde's own, compile them with yara-x.

Every ``.yar``/``.yara`` file below a folder is compiled into its own namespace (its path in the
folder without the suffix; varde's own under ``varde/``), so a rule's id is
``namespace:rule name``. A file, or a rule, that does not compile is listed with its file, line
and reason in the rule set's problems and counted as an error; the rest still load (yara-x drops
only the invalid rules), and the hunt goes on.

Rules written for THOR and LOKI use the external variables ``filename``, ``filepath``,
``extension``, ``filetype`` and ``owner``; they are defined here (empty) and set per file by the
scanner (:mod:`varde.detect.yara_scan`).

A rule is a *log rule* (run over each line of text evidence, not over whole files) when it has
the tag ``LOG``, the metadata ``type = "log"``, or ``LOG`` as a part of its name
(signature-base's ``LOG_...`` and ``EXPL_LOG_...`` rules). See ``docs/yara.md``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yara_x

from varde.errors import UsageError
from varde.report.document import SEVERITIES, RuleProblemEntry, RulesetEntry, Severity

logger = logging.getLogger(__name__)

BUILTIN_SOURCE = "builtin"
RULE_SUFFIXES = (".yar", ".yara")

#: External variables of THOR/LOKI rules, set per scanned file.
GLOBALS = ("filename", "filepath", "extension", "filetype", "owner")

#: Private rules never match on their own; the compiled rules do not say which are private, so
#: their names are taken from the source (a header in a comment could only hide a rule from the count).
_PRIVATE = re.compile(r"^\s*(?:global\s+)?private\s+(?:global\s+)?rule\s+(\w+)", re.MULTILINE)
_TECHNIQUE = re.compile(r"\bT\d{4}(?:[._]\d{3})?\b")
_ATTACK_KEYS = re.compile(r"mitre|att&?ck|technique", re.IGNORECASE)
_REFERENCE_KEYS = re.compile(r"^(reference|ref|url|link)\d*$", re.IGNORECASE)
#: THOR/LOKI scores (0-100) to severities, at LOKI-RS's alert/warning/notice thresholds.
_SCORE_LEVELS: tuple[tuple[int, Severity], ...] = ((80, "high"), (60, "medium"), (40, "low"))


@dataclass(frozen=True)
class YaraRule:
    """What a finding says about one YARA rule."""

    uid: str  # namespace:identifier
    title: str
    severity: Severity
    log: bool
    path: str
    techniques: tuple[str, ...] = ()
    author: str | None = None
    references: tuple[str, ...] = ()
    description: str | None = None


@dataclass
class YaraRuleset:
    """One ``--yara`` folder (or the built-in rules): how many rules loaded, and what did not."""

    source: str
    rules: int = 0
    problems: list[RuleProblemEntry] = field(default_factory=list)

    def entry(self) -> RulesetEntry:
        """The rule set as ``report.json`` lists it (``case.rulesets[]``, kind "yara")."""
        return RulesetEntry(kind="yara", source=self.source, rules=self.rules, errors=len(self.problems),
                            problems=list(self.problems))


@dataclass
class YaraRules:
    """The compiled rules of every rule set, and each rule's metadata by uid."""

    compiled: yara_x.Rules | None
    rulesets: list[YaraRuleset]
    rules: dict[str, YaraRule]

    @property
    def has_log_rules(self) -> bool:
        return any(rule.log for rule in self.rules.values())


def rule_files(folder: Path) -> list[Path]:
    """The rule files below ``folder`` (or ``folder`` itself when it is a file), sorted."""
    if folder.is_file():
        return [folder]
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in RULE_SUFFIXES and p.is_file())


def load_yara(folders: Sequence[Path], builtin: bool = True) -> YaraRules:
    """Compile the built-in rules (unless ``builtin`` is false) and every folder in ``folders``."""
    for folder in folders:
        if not folder.exists():
            raise UsageError(f"YARA rule folder {folder} does not exist")
    compiler = yara_x.Compiler()
    compiler.ignore_invalid_rules(True)
    for name in GLOBALS:
        compiler.define_global(name, "")
    sources: list[tuple[YaraRuleset, dict[str, str]]] = []  # rule set, namespace -> shown rule path
    private: set[str] = set()  # namespace:identifier of private rules
    if builtin:
        with resources.as_file(resources.files("varde.data").joinpath("yara")) as folder:
            sources.append(_add_folder(compiler, folder, BUILTIN_SOURCE, "varde/", set(), private))
    taken = {ns for _, names in sources for ns in names}
    for folder in folders:
        sources.append(_add_folder(compiler, folder, str(folder), "", taken, private))
        taken.update(sources[-1][1])
    compiled = compiler.build()
    namespaces = {ns: (rs, path) for rs, names in sources for ns, path in names.items()}
    return YaraRules(compiled, [rs for rs, _ in sources], _describe(compiled, namespaces, private))


def _add_folder(
    compiler: yara_x.Compiler, folder: Path, source: str, prefix: str, taken: set[str], private: set[str]
) -> tuple[YaraRuleset, dict[str, str]]:
    """Add every rule file of ``folder``, each in its own namespace; returns the rule set and
    its namespaces with the rule path findings show."""
    ruleset = YaraRuleset(source)
    namespaces: dict[str, str] = {}
    root = folder if folder.is_dir() else folder.parent
    for path in rule_files(folder):
        relative = path.relative_to(root).as_posix()
        shown = f"{BUILTIN_SOURCE}/{relative}" if source == BUILTIN_SOURCE else str(path)
        try:
            text = path.read_bytes().decode("utf-8")
        except OSError as exc:
            ruleset.problems.append(RuleProblemEntry(path=shown, reason=f"cannot be read: {exc.strerror or exc}"))
            continue
        except UnicodeDecodeError as exc:
            ruleset.problems.append(RuleProblemEntry(path=shown, reason=f"not UTF-8 text: {exc}"))
            continue
        namespace = _unique(prefix + relative.rsplit(".", 1)[0], taken | set(namespaces))
        namespaces[namespace] = shown
        private.update(f"{namespace}:{name}" for name in _PRIVATE.findall(text))
        before = len(compiler.errors())
        compiler.new_namespace(namespace)
        try:
            compiler.add_source(text, origin=shown)
        except yara_x.CompileError:  # also listed in compiler.errors()
            pass
        ruleset.problems.extend(_problem(shown, error) for error in compiler.errors()[before:])
    for problem in ruleset.problems:
        logger.warning("YARA rule file %s: %s", problem.path, problem.reason)
    return ruleset, namespaces


def _unique(namespace: str, taken: set[str]) -> str:
    candidate, number = namespace, 1
    while candidate in taken:
        number += 1
        candidate = f"{namespace}~{number}"
    return candidate


def _problem(shown: str, error: dict[str, Any]) -> RuleProblemEntry:
    """One compile error as a rule problem: file, line and column, and yara-x's title."""
    where = f"line {error.get('line')}, column {error.get('column')}: " if error.get("line") else ""
    return RuleProblemEntry(path=shown, title=error.get("code"), reason=f"{where}{error.get('title', 'error')}")


def _describe(
    compiled: yara_x.Rules, namespaces: dict[str, tuple[YaraRuleset, str]], private: set[str]
) -> dict[str, YaraRule]:
    """Each compiled (public) rule's metadata, and the rule counts of the rule sets."""
    out = {}
    for rule in compiled:
        if f"{rule.namespace}:{rule.identifier}" in private:
            continue
        ruleset, path = namespaces[rule.namespace]
        ruleset.rules += 1
        info = describe_rule(rule.namespace, rule.identifier, rule.tags, rule.metadata, path)
        out[info.uid] = info
    return out


def describe_rule(
    namespace: str, identifier: str, tags: Iterable[str], metadata: Iterable[tuple[str, Any]], path: str
) -> YaraRule:
    """A rule's finding metadata from its name, tags and ``meta:`` section."""
    meta = [(str(k), v.decode("utf-8", "replace") if isinstance(v, bytes) else v) for k, v in metadata]
    text = {k.lower(): str(v) for k, v in reversed(meta)}  # the first of a repeated key wins
    techniques: list[str] = []
    for key, value in meta:
        if _ATTACK_KEYS.search(key):
            techniques.extend(t.replace("_", ".") for t in _TECHNIQUE.findall(str(value)))
    techniques.extend(t.replace("_", ".") for t in tags if _TECHNIQUE.fullmatch(t))
    description = text.get("description")
    return YaraRule(
        uid=f"{namespace}:{identifier}",
        title=text.get("title") or description or identifier,
        severity=_severity(text),
        log=is_log_rule(identifier, tags, text.get("type")),
        path=path,
        techniques=tuple(dict.fromkeys(techniques)),
        author=text.get("author"),
        references=tuple(dict.fromkeys(str(v) for k, v in meta if _REFERENCE_KEYS.match(k))),
        description=description,
    )


def is_log_rule(identifier: str, tags: Iterable[str], kind: str | None) -> bool:
    """Whether a rule is meant for log lines (tag LOG, ``type = "log"``, or LOG in its name)."""
    return (any(t.upper() == "LOG" for t in tags) or (kind or "").lower() == "log"
            or "LOG" in identifier.split("_"))


def _severity(meta: dict[str, str]) -> Severity:
    """``severity`` (or ``level``) from the metadata, else one from a THOR ``score``, else high."""
    for key in ("severity", "level"):
        value = meta.get(key, "").strip().lower()
        if value in SEVERITIES:
            return value  # type: ignore[return-value]
    try:
        score = int(meta["score"])
    except (KeyError, ValueError):
        return "high"
    return next((level for floor, level in _SCORE_LEVELS if score >= floor), "informational")
