"""Run compiled Sigma rules over the case store.

The events are split into groups by (channel, event id). A rule runs only on the groups its log
source covers, further narrowed by the event ids its own condition requires (most Security and
System rules name ``EventID``). For each group the engine builds one temporary table with just
the fields its rules read, extracted from the JSON once and lower-cased once, then evaluates the
rules many at a time (one ``UNION ALL`` query per chunk). Rule count, not event count, sets the
number of queries, so throughput grows with the input; memory is one group's needed columns,
which DuckDB spills to the case's temp folder when it must.

A chunk that fails is retried rule by rule, so one rule that breaks at run time (a regex that
blows up on some value) is reported and the others still run.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import duckdb
from varde.detect.sigma.compile import TEXT_FIELD, Column, Predicate
from varde.detect.sigma.rules import CompiledRule, RuleProblem, RuleSet
from varde.events.store import EventStore, sql_literal

logger = logging.getLogger(__name__)

#: Rules evaluated by one query. Larger chunks amortise DuckDB's per-query cost.
CHUNK_RULES = 100

#: Sigma field names that are common columns of the event schema, not own fields.
COMMON_FIELDS = {
    "EventID": "CAST(event_id AS VARCHAR)",
    "Channel": "channel",
    "Provider_Name": "provider",
    "Computer": "host",
    "EventRecordID": "CAST(record_id AS VARCHAR)",
}
_TEXT_EXPR = """array_to_string(map_values(json_transform(fields, '"MAP(VARCHAR, VARCHAR)"')), chr(10))"""


@dataclass(frozen=True)
class Group:
    """Events of one channel and event id; ``windows`` when they come from a Windows event log."""

    channel: str | None
    event_id: int | None
    events: int
    windows: bool


@dataclass
class EngineResult:
    """Rules that failed on the events, and match counts per rule uid."""

    errors: list[tuple[str, RuleProblem]] = field(default_factory=list)  # (ruleset source, problem)
    matches: dict[str, int] = field(default_factory=dict)


def runnable_rules(rulesets: Iterable[RuleSet]) -> tuple[list[tuple[str, CompiledRule]], list[tuple[str, RuleProblem]]]:
    """(ruleset source, rule) for every compiled rule, the first of each rule id winning.

    A rule id seen again (the same rule in two folders) is reported, not run twice.
    """
    seen: set[str] = set()
    out: list[tuple[str, CompiledRule]] = []
    duplicates: list[tuple[str, RuleProblem]] = []
    for ruleset in rulesets:
        for rule in [*ruleset.rules, *ruleset.correlations]:
            if rule.info.uid in seen:
                reason = "duplicate rule id; the first one loaded is used"
                duplicates.append((ruleset.source, RuleProblem(rule.info.path, reason, rule.info.uid, rule.info.title)))
                continue
            seen.add(rule.info.uid)
            if isinstance(rule, CompiledRule):
                out.append((ruleset.source, rule))
    return out, duplicates


def list_groups(store: EventStore) -> list[Group]:
    """The (channel, event id) groups in the store, largest first."""
    rows = store.query(
        "SELECT channel, event_id, count(*), bool_or(provider IS NOT NULL) FROM events "
        "GROUP BY channel, event_id ORDER BY 3 DESC, 1, 2"
    )
    return [Group(ch, eid, int(n), bool(win)) for ch, eid, n, win in rows]


def column_expression(column: Column, index: int | None) -> str:
    """SQL producing ``column`` from an events row (``v`` holds the extracted own fields)."""
    if column.field == TEXT_FIELD:
        raw = _TEXT_EXPR
    elif column.field in COMMON_FIELDS:
        raw = COMMON_FIELDS[column.field]
    elif index is None:
        raw = "NULL::VARCHAR"
    else:
        raw = f"v[{index + 1}]"
    return f"{raw if column.cased else f'lower({raw})'} AS {column.ident}"


def _json_path(name: str) -> str | None:
    if re.search(r'["\\]', name):
        return None
    return '$."' + name + '"'


class SigmaEngine:
    """Evaluates compiled rules group by group; writes matches to ``sigma_matches``."""

    def __init__(self, store: EventStore, rules: list[tuple[str, CompiledRule]]) -> None:
        self.store = store
        self.rules = [rule for _, rule in rules]
        self.source = {rule.uid: source for source, rule in rules}
        self.result = EngineResult()
        if any(p.python_regex for r in self.rules for _, p in r.predicates):
            _register_python_regex(store.con)

    def plan(self, group: Group) -> list[tuple[str, Predicate]]:
        """(rule uid, predicate) pairs that apply to ``group``."""
        out = []
        for rule in self.rules:
            if rule.event_ids is not None and group.event_id not in rule.event_ids:
                continue
            for target, predicate in rule.predicates:
                if target.covers(group.channel, group.event_id, group.windows):
                    out.append((rule.uid, predicate))
        return out

    def run(self, on_group: Callable[[Group, int], None] | None = None) -> EngineResult:
        """Run every rule on every group it applies to."""
        failed: set[str] = set()
        for group in list_groups(self.store):
            plan = [(uid, p) for uid, p in self.plan(group) if uid not in failed]
            if plan:
                self._run_group(group, plan, failed)
            if on_group:
                on_group(group, len(plan))
        counts = self.store.query("SELECT rule_uid, count(DISTINCT key) FROM sigma_matches GROUP BY 1")
        self.result.matches = {uid: int(n) for uid, n in counts}
        return self.result

    def field_resolver(self, group: Group) -> Callable[[str], str]:
        """Map a rule's field name to the name this group's events use.

        Exact names win; otherwise a name that differs only by spaces or letter case is used
        (Defender logs ``Threat Name`` where Sigma rules say ``ThreatName``).
        """
        names = [row[0] for row in self.store.query(
            "SELECT DISTINCT name FROM field_names WHERE channel IS NOT DISTINCT FROM ? "
            "AND event_id IS NOT DISTINCT FROM ? ORDER BY name", [group.channel, group.event_id])]
        exact = set(names)
        loose: dict[str, str] = {}
        for name in names:
            loose.setdefault(name.replace(" ", "").lower(), name)
        return lambda field: field if field in exact else loose.get(field.replace(" ", "").lower(), field)

    def _run_group(self, group: Group, plan: list[tuple[str, Predicate]], failed: set[str]) -> None:
        columns = sorted({c for _, p in plan for c in p.columns})
        own = sorted({c.field for c in columns if c.field not in COMMON_FIELDS and c.field != TEXT_FIELD})
        resolve = self.field_resolver(group)
        paths = {name: _json_path(resolve(name)) for name in own}
        usable = [name for name in own if paths[name]]
        index = {name: i for i, name in enumerate(usable)}
        extract = f"json_extract_string(fields, [{', '.join(sql_literal(paths[n]) for n in usable)}])"  # type: ignore[arg-type]
        select = ", ".join(["key"] + [column_expression(c, index.get(c.field)) for c in columns])
        con = self.store.con
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE sigma_group AS SELECT {select} FROM "
            f"(SELECT *{', ' + extract + ' AS v' if usable else ''} FROM events "
            "WHERE channel IS NOT DISTINCT FROM ? AND event_id IS NOT DISTINCT FROM ?)",
            [group.channel, group.event_id],
        )
        try:
            for start in range(0, len(plan), CHUNK_RULES):
                self._run_chunk(plan[start : start + CHUNK_RULES], failed)
        finally:
            con.execute("DROP TABLE IF EXISTS sigma_group")

    def _run_chunk(self, chunk: list[tuple[str, Predicate]], failed: set[str]) -> None:
        try:
            self._insert(chunk)
            return
        except duckdb.Error:
            logger.debug("chunk of %d rules failed; retrying one by one", len(chunk))
        for uid, predicate in chunk:
            try:
                self._insert([(uid, predicate)])
            except duckdb.Error as exc:
                failed.add(uid)
                info = next(r.info for r in self.rules if r.uid == uid)
                problem = RuleProblem(info.path, f"failed on the events: {exc}", uid, info.title)
                self.result.errors.append((self.source[uid], problem))

    def _insert(self, chunk: list[tuple[str, Predicate]]) -> None:
        selects = [f"SELECT {sql_literal(uid)} AS rule_uid, key FROM sigma_group WHERE {p.sql}" for uid, p in chunk]
        self.store.con.execute("INSERT INTO sigma_matches " + " UNION ALL ".join(selects))


def _register_python_regex(con: duckdb.DuckDBPyConnection) -> None:
    """``varde_regex(text, pattern)``: Python ``re.search`` for patterns RE2 cannot run."""
    cache: dict[str, re.Pattern[str]] = {}

    def varde_regex(text: str | None, pattern: str) -> bool | None:
        if text is None:
            return None
        compiled = cache.get(pattern)
        if compiled is None:
            compiled = cache[pattern] = re.compile(pattern)
        return compiled.search(text) is not None

    try:
        con.create_function("varde_regex", varde_regex, ["VARCHAR", "VARCHAR"], "BOOLEAN", null_handling="special")
    except duckdb.Error:  # already registered on this connection
        pass
