"""Run compiled Sigma rules over the case store.

The store keeps events partitioned by (channel, event id), each partition a table with its own
fields as columns. A rule runs only on the partitions ("groups") its log source covers, further
narrowed by the event ids its own condition requires (most Security and System rules name
``EventID``). For each group the engine builds one temporary table with just the columns its
rules read, lower-cased once, then evaluates the rules many at a time (one ``UNION ALL`` query per
chunk). Rule count, not event count, sets the number of queries, so throughput grows with the
input; memory is one group's needed columns, which DuckDB spills to the case's temp folder when
it must.

A chunk that fails is retried rule by rule, so one rule that breaks at run time (a regex that
blows up on some value) is reported and the others still run.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import duckdb

from varde.detect.sigma.compile import TEXT_FIELD, Column, Predicate
from varde.detect.sigma.logsource import Target
from varde.detect.sigma.rowfilter import Atom, by_length, necessary, row_filter
from varde.detect.sigma.rules import CompiledRule, RuleProblem, RuleSet
from varde.detect.sigma.values import GroupValues, atom_fields
from varde.events.store import EventStore, quote, sql_literal

logger = logging.getLogger(__name__)

#: Rules evaluated by one query. Larger chunks amortise DuckDB's per-query cost.
CHUNK_RULES = 100

#: Groups with fewer events are matched straight from their partitions, without a temporary table.
SMALL_GROUP_ROWS = 1_000

#: Plans of fewer rules run without a row filter: the filter costs about what a rule does.
FILTER_RULES = 10

#: Sigma field names that are common columns of the event schema, not own fields.
COMMON_FIELDS = {
    "EventID": "CAST(event_id AS VARCHAR)",
    "Channel": "channel",
    "Provider_Name": "provider",
    "Computer": "host",
    "EventRecordID": "CAST(record_id AS VARCHAR)",
}


@dataclass(frozen=True)
class Group:
    """Events of one channel and event id; ``windows`` when they come from a Windows event log."""

    channel: str | None
    event_id: int | None
    events: int
    windows: bool
    table: str  # the partition table
    columns: tuple[tuple[str, str], ...]  # own field name -> column name, of fields these events have

    @property
    def rows(self) -> str:
        """SQL selecting the group's rows."""
        return f"SELECT * FROM {quote(self.table)}"


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
    """The (channel, event id) partitions of the store as groups, largest first.

    One statement counts the events and the filled fields of every partition (one per partition
    would cost DuckDB's per-statement time hundreds of times over).
    """
    partitions = sorted(store.partitions.items(), key=lambda kv: kv[1].table)
    if not partitions:
        return []
    selects = []
    for n, (_, partition) in enumerate(partitions):
        counts = ", ".join(f"count({quote(column)})" for _, column in sorted(partition.columns.items()))
        selects.append(f"SELECT {n} AS n, count(*), bool_or(provider IS NOT NULL), [{counts}]::BIGINT[] "
                       f"FROM {quote(partition.table)}")
    groups = []
    for n, events, windows, filled in store.con.execute(" UNION ALL ".join(selects)).fetchall():
        (channel, event_id), partition = partitions[n]
        fields = sorted(partition.columns.items())
        present = tuple(pair for pair, count in zip(fields, filled, strict=True) if count)
        # Windows events name a provider and an event id; text logs (IIS, Exchange's CSV logs) have
        # no event id, so rules for "any Windows channel" do not run over them
        windows = bool(windows) and event_id is not None
        groups.append(Group(channel, event_id, int(events), windows, partition.table, present))
    return sorted(groups, key=lambda g: (-g.events, g.channel or "", g.event_id or 0))


def column_expression(column: Column, group: Group, resolve: Callable[[str], str | None]) -> str:
    """SQL producing ``column`` (without a name) from a row of the group's partition table."""
    if column.field == TEXT_FIELD:
        raw = "concat_ws(chr(10), " + ", ".join(quote(c) for _, c in group.columns) + ")" if group.columns else "''"
    elif column.field in COMMON_FIELDS:
        raw = COMMON_FIELDS[column.field]
    else:
        name = resolve(column.field)
        raw = quote(dict(group.columns)[name]) if name is not None else "NULL::VARCHAR"
    return raw if column.cased else f"lower({raw})"


class SigmaEngine:
    """Evaluates compiled rules group by group; writes matches to ``sigma_matches``.

    DuckDB spends most of a large rule set's time parsing and binding the predicates, which
    it does on one core per connection; so groups are spread over ``threads`` connections
    (cursors of the same database), each with its own temporary group table.
    """

    def __init__(self, store: EventStore, rules: list[tuple[str, CompiledRule]], threads: int = 2) -> None:
        self.store = store
        self.rules = [rule for _, rule in rules]
        self.info = {rule.uid: rule.info for rule in self.rules}
        self._order = {rule.uid: n for n, rule in enumerate(self.rules)}
        self.source = {rule.uid: source for source, rule in rules}
        self.threads = max(1, threads)
        self.result = EngineResult()
        self.python_udf = any(p.python_udf for r in self.rules for _, p in r.predicates)
        self._failed: set[str] = set()
        self._local = threading.local()
        # rules by the channel their target names (None: any Windows channel), so planning a
        # group looks only at rules that can apply to it
        self._by_channel: dict[str | None, list[tuple[CompiledRule, Target, Predicate]]] = {}
        for rule in self.rules:
            for target, predicate in rule.predicates:
                for channel in sorted(target.channels) if target.channels is not None else [None]:
                    self._by_channel.setdefault(channel, []).append((rule, target, predicate))
        if self.python_udf:
            register_python_functions(store.con)

    def plan(self, group: Group) -> list[tuple[str, Predicate]]:
        """(rule uid, predicate) pairs that can match events of ``group``.

        A rule is left out when its log source does not cover the group, when its condition
        needs other event ids, or when it needs a field these events do not have.
        """
        resolve = field_resolver([name for name, _ in group.columns])
        present: dict[str, bool] = {}
        candidates = [*self._by_channel.get(group.channel, []), *self._by_channel.get(None, [])]
        out = []
        for rule, target, predicate in sorted(candidates, key=lambda c: self._order[c[0].uid]):
            if _text_only(rule, target, predicate):
                continue  # run per channel: see text_plans
            if rule.event_ids is not None and group.event_id not in rule.event_ids:
                continue
            if not target.covers(group.channel, group.event_id, group.windows):
                continue
            if all(_has(f, resolve, present) for f in predicate.required):
                out.append((rule.uid, predicate))
        return out

    def text_plans(self, groups: list[Group]) -> list[tuple[list[Group], list[tuple[str, Predicate]]]]:
        """Keyword rules that name no event id and read only the events' text, per channel.

        Such a rule (the Mimikatz keyword rule applies to every Windows channel) would cost one
        planned query per event id; run over a channel's partitions at once it costs one. Rules
        that cover the same partitions share one plan, so the text is built once for them all
        (web server logs meet several keyword rules).
        """
        by_channel: dict[str | None, list[Group]] = {}
        for group in groups:
            by_channel.setdefault(group.channel, []).append(group)
        plans: dict[tuple[str, ...], tuple[list[Group], list[tuple[str, Predicate]]]] = {}
        for channel, members in sorted(by_channel.items(), key=lambda kv: str(kv[0])):
            candidates = [*self._by_channel.get(channel, []), *self._by_channel.get(None, [])]
            for rule, target, predicate in sorted(candidates, key=lambda c: self._order[c[0].uid]):
                if not _text_only(rule, target, predicate):
                    continue
                covered = [g for g in members if target.covers(g.channel, g.event_id, g.windows)]
                if covered:
                    plan = plans.setdefault(tuple(g.table for g in covered), (covered, []))
                    plan[1].append((rule.uid, predicate))
        return list(plans.values())

    def run(self, on_group: Callable[[Group, int], None] | None = None) -> EngineResult:
        """Run every rule on every group it applies to."""
        groups = list_groups(self.store)
        # a channel of one partition (a web log) reads its text once, for its keyword and field rules alike
        texts, alone = [], {}
        for members, plan in self.text_plans(groups):
            if len(members) == 1:
                alone[members[0].table] = plan
            else:
                texts.append((members, plan))
        work = [(g, self.plan(g) + alone.get(g.table, [])) for g in groups]
        work.sort(key=lambda item: -len(item[1]) * (1 + item[0].events // 10_000))  # biggest first
        cursors: list[duckdb.DuckDBPyConnection] = []

        def connection() -> duckdb.DuckDBPyConnection:
            con = getattr(self._local, "con", None)
            if con is None:
                con = self._local.con = self.store.con.cursor()
                cursors.append(con)
            return con

        def run_one(group: Group, plan: list[tuple[str, Predicate]]) -> None:
            if plan:
                self._run_group(connection(), group, plan)
            if on_group:
                on_group(group, len(plan))

        def run_text(members: list[Group], plan: list[tuple[str, Predicate]]) -> None:
            self._run_union(connection(), members, plan)

        try:
            with ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="sigma") as pool:
                futures = [pool.submit(run_text, m, p) for m, p in texts]
                futures += [pool.submit(run_one, g, p) for g, p in work]
                for future in futures:
                    future.result()
        finally:
            for con in cursors:
                con.close()
        self.result.errors.sort(key=lambda e: (e[0], e[1].path, e[1].rule_id or ""))
        counts = self.store.query("SELECT rule_uid, count(DISTINCT key) FROM sigma_matches GROUP BY 1")
        self.result.matches = {uid: int(n) for uid, n in counts}
        return self.result

    def _run_group(self, con: duckdb.DuckDBPyConnection, group: Group, plan: list[tuple[str, Predicate]]) -> None:
        """Run ``plan`` on one group, after dropping the rules its prefilter values rule out."""
        resolve = field_resolver([name for name, _ in group.columns])
        values = GroupValues(con, lambda field: column_expression(Column(field, False), group, resolve), group.rows,
                             group.events)
        values.load({f for _, p in plan for f in atom_fields(p.pre)})
        plan = [(uid, p) for uid, p in plan if values.may_match(p.pre)]
        if plan:
            self._run_union(con, [group], plan, values.rank)

    def _run_union(self, con: duckdb.DuckDBPyConnection, groups: list[Group], plan: list[tuple[str, Predicate]],
                   rank: Callable[[Atom], int | None] = by_length) -> None:
        """Run ``plan`` over the events of ``groups``; when every rule's prefilter has a selective
        necessary condition, only on the rows where one of those holds (:mod:`rowfilter`;
        ``rank`` says which prefilter atoms hold for few rows). A rule without one needs every
        row, and then a filter would only add a pass; so would one for a few rules (FILTER_RULES)."""
        conditions: list[tuple | None] = [None]
        if len(plan) >= FILTER_RULES and all(p.pre is not None for _, p in plan):  # rank may count values
            conditions = [necessary(p.pre, rank) for _, p in plan]
        if any(c is None for c in conditions):
            self._run_rows(con, groups, plan, lambda expression: None)
        else:
            self._run_rows(con, groups, plan, lambda expression: row_filter(conditions, expression, rank))

    def _run_rows(self, con: duckdb.DuckDBPyConnection, groups: list[Group], plan: list[tuple[str, Predicate]],
                  where: Callable[[Callable[[str], str]], str | None]) -> None:
        """Run ``plan`` over the events of ``groups`` (those ``where`` keeps: it makes SQL from a
        field's expression), reading the columns it needs lower-cased once.

        A small group is read straight from its partition (DuckDB charges per statement, and most
        groups are small); a larger one goes into a temporary table first (a predicate that reads
        the same lower-cased value twice would compute it twice). Events often repeat in
        the columns the rules read (a service's logons, a scheduled task's command line): where
        the distinct rows are under half of the rows, the rules run once per distinct row, which
        carries the list of its events' keys.
        """
        columns = sorted({c for _, p in plan for c in p.columns})
        selects = []
        for group in groups:
            resolve = field_resolver([name for name, _ in group.columns])
            exprs = ", ".join(["key"] + [f"{column_expression(c, group, resolve)} AS {c.ident}" for c in columns])
            kept = where(lambda f, group=group, resolve=resolve: column_expression(Column(f, False), group, resolve))
            selects.append(f"SELECT {exprs} FROM ({group.rows})" + (f" WHERE {kept}" if kept else ""))
        rows = " UNION ALL ".join(selects)
        if sum(g.events for g in groups) < SMALL_GROUP_ROWS:
            self._run_chunks(con, plan, f"({rows}) AS sigma_group", "key")
            return
        con.execute("CREATE OR REPLACE TEMP TABLE sigma_group AS " + rows)
        keys = "key"
        try:
            if columns and _repetitive(con, [c.ident for c in columns]):
                idents = ", ".join(c.ident for c in columns)
                con.execute(f"CREATE OR REPLACE TEMP TABLE sigma_group AS SELECT {idents}, list(key) AS keys "
                            f"FROM sigma_group GROUP BY ALL")
                keys = "unnest(keys)"
            self._run_chunks(con, plan, "sigma_group", keys)
        finally:
            con.execute("DROP TABLE IF EXISTS sigma_group")

    def _run_chunks(self, con: duckdb.DuckDBPyConnection, plan: list[tuple[str, Predicate]], source: str,
                    keys: str) -> None:
        for start in range(0, len(plan), CHUNK_RULES):
            self._run_chunk(con, plan[start : start + CHUNK_RULES], source, keys)

    def _run_chunk(self, con: duckdb.DuckDBPyConnection, chunk: list[tuple[str, Predicate]], source: str,
                   keys: str) -> None:
        chunk = [(uid, p) for uid, p in chunk if uid not in self._failed]
        try:
            _insert(con, chunk, source, keys)
            return
        except duckdb.Error:
            logger.debug("chunk of %d rules failed; retrying one by one", len(chunk))
        for uid, predicate in chunk:
            try:
                _insert(con, [(uid, predicate)], source, keys)
            except duckdb.Error as exc:
                self._failed.add(uid)
                info = self.info[uid]
                problem = RuleProblem(info.path, f"failed on the events: {exc}", uid, info.title)
                self.result.errors.append((self.source[uid], problem))


def _repetitive(con: duckdb.DuckDBPyConnection, idents: list[str]) -> bool:
    """Whether ``sigma_group`` has fewer than half as many distinct rows (of ``idents``) as rows."""
    rows, distinct = con.execute(
        f"SELECT count(*), approx_count_distinct(hash({', '.join(idents)})) FROM sigma_group"
    ).fetchone()  # type: ignore[misc]
    return distinct * 2 < rows


def _insert(con: duckdb.DuckDBPyConnection, chunk: list[tuple[str, Predicate]], source: str, keys: str) -> None:
    """Matches of ``chunk`` in the rows of ``source`` (SQL of a table); ``keys`` gives a row's event keys."""
    if not chunk:
        return
    selects = [f"SELECT {sql_literal(uid)} AS rule_uid, {keys} AS key FROM {source} WHERE {p.sql}" for uid, p in chunk]
    con.execute("INSERT INTO sigma_matches " + " UNION ALL ".join(selects))


def _text_only(rule: CompiledRule, target: Target, predicate: Predicate) -> bool:
    """Whether a predicate reads only the events' text and common columns, for any event id."""
    if rule.event_ids is not None or target.event_ids is not None:
        return False
    fields = {c.field for c in predicate.columns}
    return TEXT_FIELD in fields and fields <= {TEXT_FIELD, *COMMON_FIELDS}


def _has(field: str, resolve: Callable[[str], str | None], cache: dict[str, bool]) -> bool:
    found = cache.get(field)
    if found is None:
        found = cache[field] = field in COMMON_FIELDS or resolve(field) is not None
    return found


def field_resolver(names: list[str]) -> Callable[[str], str | None]:
    """Map a rule's field name to the name a group's events use (None: they have no such field).

    Exact names win; otherwise a name that differs only by spaces or letter case is used
    (Defender logs ``Threat Name`` where Sigma rules say ``ThreatName``).
    """
    exact = set(names)
    loose: dict[str, str] = {}
    for name in sorted(names):
        loose.setdefault(name.replace(" ", "").lower(), name)
    return lambda field: field if field in exact else loose.get(field.replace(" ", "").lower())


def register_python_functions(con: duckdb.DuckDBPyConnection) -> None:
    """Functions for what SQL cannot say exactly.

    ``varde_regex(text, pattern)``: Python ``re.search``, for patterns RE2 cannot run
    (look-around, back-references). ``varde_cidr(text, network)``: whether ``text`` is an IP
    address inside ``network`` (IPv6 addresses have many textual forms).
    """
    patterns: dict[str, re.Pattern[str]] = {}
    networks: dict[str, ipaddress.IPv4Network | ipaddress.IPv6Network] = {}

    def varde_regex(text: str | None, pattern: str) -> bool | None:
        if text is None:
            return None
        compiled = patterns.get(pattern)
        if compiled is None:
            compiled = patterns[pattern] = re.compile(pattern)
        return compiled.search(text) is not None

    def varde_cidr(text: str | None, network: str) -> bool | None:
        if text is None:
            return None
        net = networks.get(network)
        if net is None:
            net = networks[network] = ipaddress.ip_network(network)
        try:
            address = ipaddress.ip_address(text.strip().split("%", 1)[0])
        except ValueError:
            return False
        return address.version == net.version and address in net

    for name, function in (("varde_regex", varde_regex), ("varde_cidr", varde_cidr)):
        known = con.execute("SELECT count(*) FROM duckdb_functions() WHERE function_name = ?", [name]).fetchall()[0]
        if not known or not known[0]:  # functions belong to the database: registered once is enough
            con.create_function(name, function, ["VARCHAR", "VARCHAR"], "BOOLEAN", null_handling="special")
