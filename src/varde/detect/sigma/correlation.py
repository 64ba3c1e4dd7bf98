"""Sigma correlation rules (event_count, value_count, temporal, temporal_ordered).

Correlations run after the detection rules, over their matches: the matched events of the
referenced rules are fetched in time order with the group-by values, and a sliding window of
the rule's timespan is moved over each group. The events inside every window that meets the
condition are recorded as matches of the correlation (so findings, evidence and counts work the
same as for detection rules). Referenced rules then stay out of the findings unless the
correlation says ``generate: true``, as the Sigma specification asks.
"""

from __future__ import annotations

import operator
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sigma.correlations import (
    SigmaCorrelationCondition,
    SigmaCorrelationConditionOperator,
    SigmaCorrelationRule,
    SigmaCorrelationType,
)

from varde.detect.sigma.engine import COMMON_FIELDS
from varde.detect.sigma.rules import CorrelationRule, RuleInfo, RuleProblem
from varde.events.store import EventStore, sql_literal

SUPPORTED = (
    SigmaCorrelationType.EVENT_COUNT,
    SigmaCorrelationType.VALUE_COUNT,
    SigmaCorrelationType.TEMPORAL,
    SigmaCorrelationType.TEMPORAL_ORDERED,
)

_NAMED_OPS: dict[str, Callable[[float, float], bool]] = {
    "lt": operator.lt, "lte": operator.le, "gt": operator.gt, "gte": operator.ge, "eq": operator.eq, "neq": operator.ne,
}
_OPS: dict[SigmaCorrelationConditionOperator, Callable[[float, float], bool]] = {
    SigmaCorrelationConditionOperator.LT: operator.lt,
    SigmaCorrelationConditionOperator.LTE: operator.le,
    SigmaCorrelationConditionOperator.GT: operator.gt,
    SigmaCorrelationConditionOperator.GTE: operator.ge,
    SigmaCorrelationConditionOperator.EQ: operator.eq,
    SigmaCorrelationConditionOperator.NEQ: operator.ne,
}


@dataclass(frozen=True)
class Hit:
    """One matched event of a referenced rule."""

    ts: datetime
    key: int
    rule: str
    group: tuple[str | None, ...]
    value: str | None


class CorrelationError(Exception):
    """A correlation rule that cannot be evaluated."""


def resolve_references(correlation: SigmaCorrelationRule, rules: Sequence[RuleInfo]) -> list[str]:
    """Uids of the rules a correlation names (by rule ``name`` or id), in its order."""
    by_ref: dict[str, str] = {}
    for info in rules:
        by_ref[info.uid] = info.uid
        if info.name:
            by_ref[info.name] = info.uid
    uids = []
    for ref in correlation.rules or []:
        uid = by_ref.get(str(ref.reference))
        if uid is None:
            raise CorrelationError(f"references unknown rule {ref.reference!r}")
        uids.append(uid)
    return uids


def _field_sql(name: str) -> str:
    if name in COMMON_FIELDS:
        return COMMON_FIELDS[name]
    return f"json_extract_string(fields, {sql_literal(chr(36) + '.' + chr(34) + name + chr(34))})"


def _field_for(correlation: SigmaCorrelationRule, name: str, rule_ref: str) -> str:
    """The field that holds group-by ``name`` for the referenced rule (aliases resolved)."""
    alias = correlation.aliases.aliases.get(name) if correlation.aliases else None
    if alias is None:
        return name
    for ref, field in alias.mapping.items():
        if str(ref.reference) == rule_ref:
            return field
    return name


def fetch_hits(store: EventStore, correlation: SigmaCorrelationRule, refs: list[str], uids: list[str]) -> list[Hit]:
    """Matched events of the referenced rules, with group-by and value fields, in time order."""
    group_by = correlation.group_by or []
    value_field = None
    condition = correlation.condition
    if isinstance(condition, SigmaCorrelationCondition) and condition.fieldref:
        value_field = condition.fieldref if isinstance(condition.fieldref, str) else condition.fieldref[0]
    selects = []
    for ref, uid in zip(refs, uids, strict=True):
        groups = [_field_sql(_field_for(correlation, g, ref)) for g in group_by]
        value = _field_sql(value_field) if value_field else "NULL"
        cols = ", ".join([*(f"{g} AS g{i}" for i, g in enumerate(groups)), f"{value} AS v"])
        selects.append(
            f"SELECT e.ts, e.key, {sql_literal(uid)} AS rule, {cols} FROM events e "
            f"JOIN (SELECT DISTINCT key FROM sigma_matches WHERE rule_uid = {sql_literal(uid)}) m USING (key) "
            "WHERE e.ts IS NOT NULL"
        )
    with store.staged(" UNION ALL ".join(selects)) as table:  # sorted once joined (see EventStore.staged)
        rows = store.query(f"SELECT * FROM {table} ORDER BY ts, key, rule")
    n = len(group_by)
    return [Hit(r[0], r[1], r[2], tuple(r[3 : 3 + n]), r[3 + n]) for r in rows]


def _condition(entry: CorrelationRule, default: float) -> Callable[[float], bool]:
    """The test a window's measure must pass: every operator of the rule's condition, or
    ``>= default`` when the rule states none."""
    if not entry.condition:
        if isinstance(entry.rule.condition, SigmaCorrelationCondition):
            op, count = _OPS[entry.rule.condition.op], entry.rule.condition.count
            return lambda n: op(n, count)
        return lambda n: n >= default
    tests = [(_NAMED_OPS[op], float(value)) for op, value in entry.condition]
    return lambda n: all(op(n, value) for op, value in tests)


def evaluate(entry: CorrelationRule, hits: list[Hit], uids: list[str]) -> set[int]:
    """Keys of the events inside every window of the correlation that meets its condition."""
    correlation = entry.rule
    if correlation.type not in SUPPORTED:
        raise CorrelationError(f"correlation type {correlation.type} is not supported")
    span = correlation.timespan.seconds
    by_group: dict[tuple, list[Hit]] = defaultdict(list)
    for hit in hits:
        by_group[hit.group].append(hit)
    matched: set[int] = set()
    for group_hits in by_group.values():
        matched |= _windows(entry, group_hits, uids, span)
    return matched


def _windows(entry: CorrelationRule, hits: list[Hit], uids: list[str], span: int) -> set[int]:
    kind = entry.rule.type
    correlation = entry
    if kind is SigmaCorrelationType.TEMPORAL_ORDERED:
        return _ordered(hits, uids, span, _condition(correlation, len(set(uids))))
    measure: Callable[[list[Hit]], float]
    if kind is SigmaCorrelationType.EVENT_COUNT:
        measure, test = len, _condition(correlation, 1)
    elif kind is SigmaCorrelationType.VALUE_COUNT:
        measure, test = (lambda w: len({h.value for h in w if h.value is not None})), _condition(correlation, 1)
    else:
        measure, test = (lambda w: len({h.rule for h in w})), _condition(correlation, len(set(uids)))
    matched: set[int] = set()
    end = 0
    for start, first in enumerate(hits):
        end = max(end, start)
        while end < len(hits) and (hits[end].ts - first.ts).total_seconds() <= span:
            end += 1
        window = hits[start:end]
        if test(measure(window)):
            matched.update(h.key for h in window)
    return matched


def _ordered(hits: list[Hit], uids: list[str], span: int, test: Callable[[float], bool]) -> set[int]:
    """Windows in which the referenced rules match in the order they are listed."""
    matched: set[int] = set()
    for start, first in enumerate(hits):
        if first.rule != uids[0]:
            continue
        chain, step = [first], 1
        for hit in hits[start + 1 :]:
            if (hit.ts - first.ts).total_seconds() > span or step == len(uids):
                break
            if hit.rule == uids[step]:
                chain.append(hit)
                step += 1
        if test(step):
            matched.update(h.key for h in chain)
    return matched


def dependency_order(
    correlations: Sequence[tuple[str, CorrelationRule]], rules: Sequence[RuleInfo]
) -> list[tuple[str, CorrelationRule]]:
    """Correlations ordered so that one used by another (a chained correlation) runs first.

    A correlation whose references cannot be resolved, or that is part of a cycle, keeps its
    place at the end; evaluating it reports the problem.
    """
    pending = list(correlations)
    own = {entry.info.uid for _, entry in correlations}
    done: set[str] = set()
    ordered: list[tuple[str, CorrelationRule]] = []
    while pending:
        ready = []
        for item in pending:
            try:
                needs = set(resolve_references(item[1].rule, rules)) & own
            except CorrelationError:
                needs = set()
            if needs <= done:
                ready.append(item)
        if not ready:  # a cycle: give up ordering the rest
            ordered.extend(pending)
            break
        for item in ready:
            pending.remove(item)
            done.add(item[1].info.uid)
            ordered.append(item)
    return ordered


def run_correlations(
    store: EventStore, correlations: Sequence[tuple[str, CorrelationRule]], rules: Sequence[RuleInfo]
) -> tuple[dict[str, int], set[str], list[tuple[str, RuleProblem]]]:
    """Evaluate correlations; returns match counts, uids to hide from findings, and errors."""
    counts: dict[str, int] = {}
    hidden: set[str] = set()
    errors: list[tuple[str, RuleProblem]] = []
    for source, entry in dependency_order(correlations, rules):
        uid, correlation = entry.info.uid, entry.rule
        try:
            uids = resolve_references(correlation, rules)
            refs = [str(r.reference) for r in correlation.rules or []]
            keys = evaluate(entry, fetch_hits(store, correlation, refs, uids), uids)
        except CorrelationError as exc:
            errors.append((source, RuleProblem(entry.info.path, str(exc), uid, entry.info.title)))
            continue
        if not correlation.generate:
            hidden.update(uids)
        if keys:
            store.con.executemany("INSERT INTO sigma_matches VALUES (?, ?)", [(uid, k) for k in sorted(keys)])
        counts[uid] = len(keys)
    return counts, hidden, errors
