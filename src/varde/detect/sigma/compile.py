"""Compile one parsed Sigma rule (pySigma's model) into a SQL predicate over a group table.

A *group table* holds the events of one (channel, event id) with one column per field the rules
need, in two variants: ``"l:Name"`` lower-cased (for Sigma's default case-insensitive matching,
so the engine can use fast plain string functions instead of ``ILIKE``) and ``"c:Name"`` as
logged (``|cased``, ``|re``, numbers). The field ``*`` is the text of all the event's values,
searched by keyword (field-less) detections. The predicate lists the columns it needs.

Semantics follow the Sigma specification:

* strings: ``*``/``?`` wildcards with ``\\`` escapes; ``contains``/``startswith``/``endswith``/
  ``all``/``windash``/``base64``/``base64offset``/``utf16*``/``wide`` arrive from pySigma as
  ready strings or expansions;
* ``re`` with ``i``/``m``/``s`` flags; patterns RE2 cannot run (look-around, back-references)
  use Python's ``re`` through the ``varde_regex`` function the engine registers;
* ``cidr`` (expanded to address prefixes), ``gt``/``gte``/``lt``/``lte`` (numeric), ``exists``,
  ``fieldref``, ``null``, ``neq``;
* an absent field never matches a value, and under ``not`` it counts as "not matched" (SQL's
  NULL would otherwise make ``not`` false too).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sigma.conditions import (
    ConditionAND,
    ConditionFieldEqualsValueExpression,
    ConditionNOT,
    ConditionOR,
    ConditionValueExpression,
)
from sigma.rule import SigmaRule
from sigma.types import (
    CompareOperators,
    Placeholder,
    SigmaBool,
    SigmaCasedString,
    SigmaCIDRExpression,
    SigmaCompareExpression,
    SigmaExists,
    SigmaExpansion,
    SigmaFieldReference,
    SigmaNull,
    SigmaNumber,
    SigmaQueryExpression,
    SigmaRegularExpression,
    SigmaRegularExpressionFlag,
    SigmaString,
    SigmaTimestampPart,
    SpecialChars,
)

from varde.detect.sigma.logsource import Target

#: The pseudo-field holding all of an event's values, for keyword detections.
TEXT_FIELD = "*"

_COMPARE = {
    CompareOperators.LT: "<",
    CompareOperators.LTE: "<=",
    CompareOperators.GT: ">",
    CompareOperators.GTE: ">=",
    CompareOperators.NEQ: "<>",
}
_FLAGS = {
    SigmaRegularExpressionFlag.IGNORECASE: "i",
    SigmaRegularExpressionFlag.MULTILINE: "m",
    SigmaRegularExpressionFlag.DOTALL: "s",
}


class UnsupportedRule(Exception):
    """The rule uses something this compiler cannot express; the message says what."""


@dataclass(frozen=True, order=True)
class Column:
    """A column of a group table: a field, lower-cased or as logged."""

    field: str
    cased: bool

    @property
    def ident(self) -> str:
        """The quoted SQL identifier of this column."""
        return quote_ident(("c:" if self.cased else "l:") + self.field)


@dataclass(frozen=True)
class Predicate:
    """A compiled rule for one target: SQL boolean expression and the columns it reads."""

    sql: str
    columns: frozenset[Column]
    python_udf: bool = False  # uses varde_regex / varde_cidr (Python functions the engine registers)
    #: Fields the events must have for the predicate to be true: a group of events without one
    #: of them cannot match, and the rule is not run there (planning is what costs).
    required: frozenset[str] = frozenset()
    #: A conservative value test (see :func:`prefilter`) run before the SQL is planned.
    pre: Any = None


def quote_ident(name: str) -> str:
    """A double-quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    """A single-quoted SQL string literal (DuckDB keeps backslashes as they are)."""
    if "\x00" in text:
        raise UnsupportedRule("a value contains a NUL character")
    return "'" + text.replace("'", "''") + "'"


def compile_rule(rule: SigmaRule, target: Target) -> Predicate:
    """The predicate selecting the events of ``target`` that ``rule`` matches."""
    builder = _Builder(target)
    trees = [condition.parsed for condition in rule.detection.parsed_condition]
    parts = [builder.node(tree) for tree in trees]
    sql = parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"
    required = frozenset.intersection(*(required_fields(tree) for tree in trees))
    for name, values in target.conditions:
        column = builder.column(name, cased=False)
        options = ", ".join(literal(v.lower()) for v in values)
        sql = f"({column} IN ({options}) AND {sql})"
        required |= {name}
    mapped = frozenset(target.field_name(f) for f in required)
    pre = _simplify(("or", [prefilter(tree, target) for tree in trees]))
    return Predicate(sql, frozenset(builder.columns), builder.python_udf, mapped, pre)


#: A prefilter: None (may match), ("atom", field, kind, [texts]) (some value of the field matches
#: one of the texts the way kind says), or ("and"|"or", [prefilters]).
Prefilter = tuple | None


def prefilter(node: object, target: Target) -> Prefilter:
    """A conservative summary of a condition tree: false only when no event can match.

    Plain case-insensitive string tests become atoms that :mod:`engine` checks against the
    distinct values a group of events has, before any SQL is planned; everything else
    (negations, regular expressions, numbers, keywords) counts as "may match". So a rule is
    only ever skipped where its SQL could not have matched either.
    """
    if isinstance(node, ConditionAND | ConditionOR):
        return _simplify(("and" if isinstance(node, ConditionAND) else "or", [prefilter(a, target) for a in node.args]))
    if isinstance(node, ConditionFieldEqualsValueExpression):
        values = node.value.values if isinstance(node.value, SigmaExpansion) else [node.value]
        if isinstance(node.value, SigmaCIDRExpression) and node.value.network.version == 4:
            values = [SigmaString(p) for p in node.value.expand(wildcard="*")]
        shapes = [_value_shape(v) or _fragment(v) for v in values]
        if not shapes or any(shape is None for shape in shapes):
            return None
        field = target.field_name(node.field)
        return _simplify(("or", [("atom", field, kind, [text]) for kind, text in shapes]))  # type: ignore[misc]
    if isinstance(node, ConditionValueExpression):  # a keyword: the engine tests it on rows, see rowfilter
        shape = _value_shape(node.value) or _fragment(node.value)
        return ("atom", TEXT_FIELD, "contains", [shape[1]]) if shape else None
    return None


def _simplify(pre: Prefilter) -> Prefilter:
    """Fold "may match" through and/or, and merge atoms of one field and kind under an or."""
    if pre is None or pre[0] == "atom":
        return pre
    op, parts = pre
    if op == "and":
        kept = [p for p in parts if p is not None]
        return None if not kept else kept[0] if len(kept) == 1 else ("and", kept)
    if any(p is None for p in parts) or not parts:
        return None
    atoms: dict[tuple[str, str], list[str]] = {}
    rest = []
    for part in parts:
        if part[0] == "atom":
            atoms.setdefault((part[1], part[2]), []).extend(part[3])
        elif part[0] == "or":
            rest.extend(part[1])
        else:
            rest.append(part)
    merged = [("atom", f, k, sorted(set(t))) for (f, k), t in sorted(atoms.items())] + rest
    return merged[0] if len(merged) == 1 else ("or", merged)


def required_fields(node: object) -> frozenset[str]:
    """Fields that must be present for the condition tree to be true.

    A value test needs its field (an absent field matches no value), except tests for
    absence (``null``, ``exists: false``); a conjunction needs what any part needs, a
    disjunction what every alternative needs, a negation nothing.
    """
    if isinstance(node, ConditionFieldEqualsValueExpression):
        value = node.value
        if isinstance(value, SigmaNull) or (isinstance(value, SigmaExists) and not value.exists):
            return frozenset()
        if isinstance(value, SigmaFieldReference):
            return frozenset({node.field, value.field})
        return frozenset({node.field})
    if isinstance(node, ConditionAND):
        return frozenset().union(*(required_fields(a) for a in node.args))
    if isinstance(node, ConditionOR):
        return frozenset.intersection(*(required_fields(a) for a in node.args)) if node.args else frozenset()
    return frozenset()


class _Builder:
    """Walks one condition tree; collects the columns used on the way."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.columns: set[Column] = set()
        self.python_udf = False

    def column(self, field: str, cased: bool) -> str:
        col = Column(field if field == TEXT_FIELD else self.target.field_name(field), cased)
        self.columns.add(col)
        return col.ident

    def node(self, node: Any) -> str:
        if isinstance(node, ConditionAND):
            return "(" + " AND ".join(self.node(a) for a in node.args) + ")"
        if isinstance(node, ConditionOR):
            return self.any_of(node.args)
        if isinstance(node, ConditionNOT):
            return f"(NOT coalesce({self.node(node.args[0])}, false))"
        if isinstance(node, ConditionFieldEqualsValueExpression):
            return self.value(node.field, node.value)
        if isinstance(node, ConditionValueExpression):
            return self.keyword(node.value)
        raise UnsupportedRule(f"condition element {type(node).__name__} is not supported")

    def any_of(self, args: list[Any]) -> str:
        """OR of ``args``; plain string matches of one field and one kind become one test.

        SigmaHQ rules are full of value lists (``Image|endswith: [20 names]``). As one ``IN``
        list or one RE2 alternation they cost DuckDB a fraction of the planning time of 20
        separate comparisons (planning, not matching, dominates a large rule set), and RE2
        matches all alternatives in one pass.
        """
        lists: dict[tuple[str, str], list[str]] = {}
        parts: list[str] = []
        for arg in args:
            shape = _plain_shape(arg)
            if shape is None:
                parts.append(self.node(arg))
            else:
                lists.setdefault((shape[0], shape[1]), []).append(shape[2])
        for (field, kind), texts in lists.items():
            column = self.column(field, cased=False)
            parts.append(merged_match(column, kind, texts))
        return parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"

    def value(self, field: str, value: Any) -> str:
        """``field`` matches ``value`` (any Sigma value type)."""
        if isinstance(value, SigmaExpansion):
            return "(" + " OR ".join(self.value(field, v) for v in value.values) + ")"
        if isinstance(value, SigmaCasedString):
            return string_match(self.column(field, True), value, lower=False)
        if isinstance(value, SigmaString):
            return string_match(self.column(field, False), value, lower=True)
        if isinstance(value, SigmaTimestampPart):
            raise UnsupportedRule("timestamp part modifiers (hour, day, ...) are not supported")
        if isinstance(value, SigmaBool):
            return f"{self.column(field, False)} = {literal('true' if value.boolean else 'false')}"
        if isinstance(value, SigmaNumber):
            return f"{self.column(field, False)} = {literal(str(value.number))}"
        if isinstance(value, SigmaNull):
            col = self.column(field, True)
            return f"({col} IS NULL OR {col} = '')"
        if isinstance(value, SigmaExists):
            return f"({self.column(field, True)} IS {'NOT ' if value.exists else ''}NULL)"
        if isinstance(value, SigmaRegularExpression):
            return self.regex(self.column(field, True), value)
        if isinstance(value, SigmaCIDRExpression):
            return self.cidr(field, value)
        if isinstance(value, SigmaCompareExpression):
            number = value.number.number
            return f"(TRY_CAST({self.column(field, True)} AS DOUBLE) {_COMPARE[value.op]} {number!r})"
        if isinstance(value, SigmaFieldReference):
            return self.field_reference(field, value)
        if isinstance(value, SigmaQueryExpression):
            raise UnsupportedRule("query expressions (placeholders without values) are not supported")
        raise UnsupportedRule(f"value type {type(value).__name__} is not supported")

    def cidr(self, field: str, value: SigmaCIDRExpression) -> str:
        """IPv4 networks become dotted-quad prefixes (exact for the canonical form logs use);
        IPv6 addresses have many textual forms, so they are parsed (``varde_cidr``)."""
        if value.network.version == 6:
            self.python_udf = True
            return f"varde_cidr({self.column(field, True)}, {literal(str(value.network))})"
        patterns = [SigmaString(p) for p in value.expand(wildcard="*")]
        col = self.column(field, False)
        return "(" + " OR ".join(string_match(col, p, lower=True) for p in patterns) + ")"

    def keyword(self, value: Any) -> str:
        """A field-less value: found anywhere in the event's text."""
        if isinstance(value, SigmaExpansion):
            return "(" + " OR ".join(self.keyword(v) for v in value.values) + ")"
        if isinstance(value, SigmaRegularExpression):
            return self.regex(self.column(TEXT_FIELD, True), value)
        if isinstance(value, SigmaString):
            cased = isinstance(value, SigmaCasedString)
            parts = [SpecialChars.WILDCARD_MULTI, *value.s, SpecialChars.WILDCARD_MULTI]
            return string_parts_match(self.column(TEXT_FIELD, cased), parts, lower=not cased)
        if isinstance(value, SigmaNumber | SigmaBool):
            text = str(value.number) if isinstance(value, SigmaNumber) else str(value.boolean).lower()
            return f"contains({self.column(TEXT_FIELD, False)}, {literal(text)})"
        raise UnsupportedRule(f"keyword of type {type(value).__name__} is not supported")

    def regex(self, column: str, value: SigmaRegularExpression) -> str:
        flags = "".join(sorted(_FLAGS[f] for f in value.flags))
        pattern = (f"(?{flags})" if flags else "") + value.regexp.to_plain()
        if re2_accepts(pattern):
            return f"regexp_matches({column}, {literal(pattern)})"
        try:
            re.compile(pattern)
        except re.error as exc:
            raise UnsupportedRule(f"invalid regular expression {pattern!r}: {exc}") from exc
        self.python_udf = True
        return f"varde_regex({column}, {literal(pattern)})"

    def field_reference(self, field: str, ref: SigmaFieldReference) -> str:
        left, right = self.column(field, False), self.column(ref.field, False)
        if ref.starts_with:
            return f"starts_with({left}, {right})"
        if ref.ends_with:
            return f"ends_with({left}, {right})"
        return f"({left} = {right})"


def required_event_ids(node: object) -> frozenset[int] | None:
    """Event ids a condition tree can only match, or None when it does not restrict them."""
    if isinstance(node, ConditionFieldEqualsValueExpression):
        if node.field != "EventID":
            return None
        value = node.value
        if isinstance(value, SigmaNumber) and isinstance(value.number, int):
            return frozenset({value.number})
        if isinstance(value, SigmaString) and not value.contains_special() and value.to_plain().isdigit():
            return frozenset({int(value.to_plain())})
        return None
    if isinstance(node, ConditionAND):
        found = [ids for ids in (required_event_ids(a) for a in node.args) if ids is not None]
        return frozenset.intersection(*found) if found else None
    if isinstance(node, ConditionOR):
        found = [required_event_ids(a) for a in node.args]
        if found and all(ids is not None for ids in found):
            return frozenset().union(*found)  # type: ignore[arg-type]
    return None


def rule_event_ids(rule: SigmaRule) -> frozenset[int] | None:
    found = [required_event_ids(c.parsed) for c in rule.detection.parsed_condition]
    if found and all(ids is not None for ids in found):
        return frozenset().union(*found)  # type: ignore[arg-type]
    return None


def _plain_shape(node: Any) -> tuple[str, str, str] | None:
    """(field, kind, lower-cased text) when ``node`` is a case-insensitive match of one plain
    string (kind: eq, contains, starts, ends), else None. A keyword (a field-less value) is a
    ``contains`` match of the event's text (:data:`TEXT_FIELD`)."""
    if isinstance(node, ConditionValueExpression):
        shape = _value_shape(node.value)
        return (TEXT_FIELD, "contains", shape[1]) if shape else None
    if not isinstance(node, ConditionFieldEqualsValueExpression):
        return None
    shape = _value_shape(node.value)
    return (node.field, *shape) if shape else None


def _value_shape(value: Any) -> tuple[str, str] | None:
    """(kind, lower-cased text) when ``value`` is a case-insensitive plain string match."""
    if type(value) is not SigmaString:
        return None
    parts = list(value.s)
    lead = bool(parts) and parts[0] is SpecialChars.WILDCARD_MULTI
    trail = len(parts) > int(lead) and parts[-1] is SpecialChars.WILDCARD_MULTI
    core = parts[int(lead) : len(parts) - int(trail)]
    if len(core) != 1 or not isinstance(core[0], str) or not core[0]:
        return None
    kind = "contains" if lead and trail else "ends" if lead else "starts" if trail else "eq"
    return kind, core[0].lower()


def _fragment(value: Any) -> tuple[str, str] | None:
    """("contains", the longest literal piece, lower-cased) of a case-insensitive string with
    wildcards inside (``*a?b*``): a value that matches it contains each of its pieces."""
    if type(value) is not SigmaString:
        return None
    pieces = [p for p in value.s if isinstance(p, str) and p]
    if not pieces or any(not isinstance(p, str | SpecialChars) for p in value.s):
        return None
    return "contains", max(pieces, key=len).lower()


def merged_match(column: str, kind: str, texts: list[str]) -> str:
    """One SQL test that ``column`` matches any of ``texts`` (lower-cased) in the way ``kind`` says."""
    texts = sorted(set(texts))
    if len(texts) == 1:
        one = {"eq": "({c} = {t})", "contains": "contains({c}, {t})", "starts": "starts_with({c}, {t})",
               "ends": "ends_with({c}, {t})"}[kind]
        return one.format(c=column, t=literal(texts[0]))
    if kind == "eq":
        return f"({column} IN ({', '.join(literal(t) for t in texts)}))"
    alternatives = "|".join(re.escape(t) for t in texts)
    pattern = {"contains": "{a}", "starts": "^(?:{a})", "ends": "(?:{a})$"}[kind].format(a=alternatives)
    return f"regexp_matches({column}, {literal(pattern)})"


def re2_accepts(pattern: str) -> bool:
    """Whether RE2 (DuckDB's regex engine) compiles ``pattern``."""
    import re2

    try:
        re2.compile(pattern)
    except Exception:  # noqa: BLE001 -- re2 raises its own error type, differing between builds
        return False
    return True


def string_match(column: str, value: SigmaString, lower: bool) -> str:
    """``column`` matches the Sigma string ``value`` (wildcards honoured)."""
    return string_parts_match(column, list(value.s), lower)


def string_parts_match(column: str, parts: list[Any], lower: bool) -> str:
    """Match ``column`` against Sigma string parts using the cheapest SQL that is exact."""
    merged: list[Any] = []
    for part in parts:
        if isinstance(part, Placeholder):
            raise UnsupportedRule(f"placeholder %{part.name}% has no value (give a placeholder file)")
        if isinstance(part, str):
            part = part.lower() if lower else part
            if merged and isinstance(merged[-1], str):
                merged[-1] += part
                continue
        elif merged and part is SpecialChars.WILDCARD_MULTI and merged[-1] is SpecialChars.WILDCARD_MULTI:
            continue
        merged.append(part)
    lead = bool(merged) and merged[0] is SpecialChars.WILDCARD_MULTI
    trail = len(merged) > int(lead) and merged[-1] is SpecialChars.WILDCARD_MULTI
    core = merged[int(lead) : len(merged) - int(trail)]
    if all(isinstance(p, str) for p in core):
        text = "".join(core)
        if not lead and not trail:
            return f"({column} = {literal(text)})"
        if text == "":
            return f"({column} IS NOT NULL)"
        if lead and trail:
            return f"contains({column}, {literal(text)})"
        if lead:
            return f"ends_with({column}, {literal(text)})"
        return f"starts_with({column}, {literal(text)})"
    return f"({column} LIKE {literal(like_pattern(merged))} ESCAPE '\\')"


def like_pattern(parts: list[Any]) -> str:
    """A SQL LIKE pattern (escape character ``\\``) for Sigma string parts."""
    out = []
    for part in parts:
        if part is SpecialChars.WILDCARD_MULTI:
            out.append("%")
        elif part is SpecialChars.WILDCARD_SINGLE:
            out.append("_")
        else:
            out.append(re.sub(r"([\\%_])", r"\\\1", part))
    return "".join(out)
