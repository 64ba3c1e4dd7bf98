"""The case store: events, evidence accounting and read warnings in one DuckDB database file.

Tables (documented for users in ``docs/schema.md``):

* ``partitions``: one row per (channel, event id) seen, naming its table (:func:`table_name`);
* ``events_<channel>_<event id>_<hash>``: the events of one partition: the common columns of
  :data:`~varde.events.schema.COMMON_SCHEMA` and one VARCHAR column per own field;
* ``partition_fields``: which own field is which column of which partition;
* ``events`` (a view): every partition in the uniform schema, own fields as a JSON object;
* ``evidence``: one row per input file (path, sha256, bytes, reader, records, skipped, complete);
* ``read_warnings``: what could not be read, with file and locator;
* ``sigma_matches``: (rule uid, event key) pairs written by the Sigma engine;
* ``files``: the file inventory, one row per input with its tree path, times and web root
  (:mod:`varde.events.files`);
* ``yara_matches`` and ``yara_scans``: what the YARA rules matched, and how each file was scanned;
* ``detector_matches``: (rule uid, event key, attributes) written by the built-in detectors.

DuckDB runs with a memory limit and spills to a temp folder inside the case, so memory stays
bounded whatever the input size; nothing is ever written next to the evidence.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import re
import threading
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import duckdb
import pyarrow as pa

from varde.errors import CaseError
from varde.events.schema import COMMON_COLUMNS, COMMON_SCHEMA

logger = logging.getLogger(__name__)

_TABLES = """
CREATE TABLE IF NOT EXISTS partitions (
    id INTEGER PRIMARY KEY, channel VARCHAR, event_id INTEGER, table_name VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS partition_fields (partition INTEGER, name VARCHAR NOT NULL, column_name VARCHAR NOT NULL);
CREATE TABLE IF NOT EXISTS evidence (
    id INTEGER PRIMARY KEY, path VARCHAR NOT NULL, reader VARCHAR, bytes BIGINT, sha256 VARCHAR,
    records BIGINT DEFAULT 0, skipped_records BIGINT DEFAULT 0, complete BOOLEAN
);
CREATE TABLE IF NOT EXISTS read_warnings (
    evidence INTEGER, locator VARCHAR, message VARCHAR NOT NULL, skipped BIGINT DEFAULT 0
);
CREATE TABLE IF NOT EXISTS sigma_matches (rule_uid VARCHAR NOT NULL, key BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    evidence INTEGER PRIMARY KEY, path VARCHAR NOT NULL, tree_path VARCHAR NOT NULL, name VARCHAR NOT NULL,
    extension VARCHAR NOT NULL, bytes BIGINT, sha256 VARCHAR, modified TIMESTAMP, accessed TIMESTAMP,
    created TIMESTAMP, time_source VARCHAR, web_root VARCHAR, archive VARCHAR
);
CREATE TABLE IF NOT EXISTS yara_matches (
    rule_uid VARCHAR NOT NULL, evidence INTEGER NOT NULL, scope VARCHAR NOT NULL, "offset" BIGINT,
    line BIGINT, pattern VARCHAR
);
CREATE TABLE IF NOT EXISTS yara_scans (
    evidence INTEGER NOT NULL, scope VARCHAR NOT NULL, outcome VARCHAR NOT NULL, bytes BIGINT, detail VARCHAR
);
CREATE TABLE IF NOT EXISTS detector_matches (rule_uid VARCHAR NOT NULL, key BIGINT NOT NULL, attrs JSON);
"""

#: Finished inputs held before their accounting is written (see EventStore.flush_evidence).
EVIDENCE_BATCH = 256
_EVIDENCE_NEW = pa.schema([("id", pa.int32()), ("path", pa.string()), ("reader", pa.string()), ("bytes", pa.int64())])
_EVIDENCE_DONE = pa.schema([("id", pa.int32()), ("sha256", pa.string()), ("records", pa.int64()),
                            ("skipped", pa.int64()), ("complete", pa.bool_())])

def quote(name: str) -> str:
    """A double-quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def sql_text(text: str) -> str:
    """``text`` made safe inside a single-quoted SQL literal."""
    return text.replace("'", "''")


def sql_literal(text: str) -> str:
    """A single-quoted SQL string literal for ``text``."""
    return "'" + sql_text(text) + "'"


PartitionKey = tuple[str | None, int | None]  # (channel, event id)


def table_name(key: PartitionKey) -> str:
    """The table of a partition, the same in every case: ``events_``, the channel's letters and
    digits, the event id and a short hash of both (``events_security_4624_eedaae``). Loader
    threads create tables in whatever order they meet them, so a running number would not be."""
    channel, event_id = key
    slug = re.sub(r"[^a-z0-9]+", "_", (channel or "none").lower()).strip("_")[:48] or "x"
    number = "none" if event_id is None else str(event_id).replace("-", "m")
    digest = hashlib.sha1(repr(key).encode()).hexdigest()[:6]
    return f"events_{slug}_{number}_{digest}"


def _key_order(partition: Partition) -> tuple[bool, str, bool, int]:
    channel, event_id = partition.key
    return channel is None, channel or "", event_id is None, event_id or 0


@dataclass
class Partition:
    """One (channel, event id) partition: its table and the column of each own field."""

    id: int
    key: PartitionKey
    table: str
    columns: dict[str, str] = field(default_factory=dict)  # own field name -> column name

    def column_for(self, name: str) -> str:
        """A column name for a new field: DuckDB names are case-insensitive, so a field whose
        name differs from another only by case gets a numbered column."""
        taken = {c.lower() for c in self.columns.values()} | {c.lower() for c in COMMON_COLUMNS}
        candidate, number = name, 1
        while candidate.lower() in taken:
            number += 1
            candidate = f"{name}~{number}"
        return candidate


class EventStore:
    """A DuckDB case database. Use as a context manager, or call :meth:`close`."""

    def __init__(self, path: Path, memory_limit: str = "200MB", threads: int = 2) -> None:
        self.path = path
        try:
            self.con = duckdb.connect(str(path))
            self.con.execute(f"SET memory_limit = '{memory_limit}'")
            self.con.execute(f"SET threads = {int(threads)}")
            self.con.execute(f"SET temp_directory = '{sql_text(str(path.parent / 'tmp'))}'")
            self.con.execute("SET preserve_insertion_order = false")
            self.con.execute(_TABLES)
        except (duckdb.Error, OSError) as exc:
            raise CaseError(f"cannot open the case store {path}: {exc}") from exc
        self.partitions: dict[PartitionKey, Partition] = {}
        self._lock = threading.Lock()
        self._load_partitions()
        self._view_stale = True
        self._generation = 0  # counts changes to the events, for materialised derived tables
        self._derived: dict[str, int] = {}
        self._staged = itertools.count(1)  # names of staged tables, see staged()
        self._evidence_new: list[tuple[int, str, str | None, int]] = []  # see flush_evidence
        self._evidence_done: list[tuple[int, str | None, int, int, bool]] = []

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Bring the ``events`` view up to date, checkpoint and close the database."""
        self.refresh_view()
        self.con.close()

    def _load_partitions(self) -> None:
        for pid, channel, event_id, table in self.query("SELECT id, channel, event_id, table_name FROM partitions"):
            self.partitions[(channel, event_id)] = Partition(pid, (channel, event_id), table)
        for pid, name, column in self.query("SELECT partition, name, column_name FROM partition_fields"):
            next(p for p in self.partitions.values() if p.id == pid).columns[name] = column

    def reset(self) -> None:
        """Empty the case (a new hunt into an existing case folder starts clean)."""
        self.con.execute("DROP VIEW IF EXISTS events")
        for partition in self.partitions.values():
            self.con.execute(f"DROP TABLE IF EXISTS {quote(partition.table)}")
        self.partitions.clear()
        self._generation += 1
        for table in ("partitions", "partition_fields", "evidence", "read_warnings", "sigma_matches",
                      "detector_matches", "files", "yara_matches", "yara_scans"):
            self.con.execute(f"DELETE FROM {table}")
        self._view_stale = True

    def append(
        self, key: PartitionKey, batch: pa.RecordBatch | pa.Table, con: duckdb.DuckDBPyConnection | None = None
    ) -> None:
        """Append events of one partition: the common columns, then one column per own field.

        ``con`` is the connection to write with (a cursor of this store), for a loader thread;
        one partition must not be appended to by two threads at once. A new partition's table is created from its
        first batch in one statement (DuckDB charges per statement; cases have hundreds of
        partitions); the ``partitions`` and ``partition_fields`` rows are written by
        :meth:`refresh_view`.
        """
        con = con or self.con
        self._generation += 1
        names = batch.schema.names[len(COMMON_COLUMNS):]
        with self._lock:  # loader threads create partitions concurrently (each its own keys)
            partition = self.partitions.get(key)
            new = partition is None
            if partition is None:
                pid = len(self.partitions) + 1
                partition = self.partitions[key] = Partition(pid, key, table_name(key))
        for name in names:
            if name not in partition.columns:
                column = partition.column_for(name)
                if not new:
                    con.execute(f"ALTER TABLE {quote(partition.table)} ADD COLUMN {quote(column)} VARCHAR")
                partition.columns[name] = column
                self._view_stale = True
        renamed = batch.rename_columns([*COMMON_COLUMNS, *(partition.columns[n] for n in names)])
        con.register("_batch", renamed)
        try:
            if new:
                con.execute(f"CREATE TABLE {quote(partition.table)} AS SELECT * FROM _batch")
            else:
                con.execute(f"INSERT INTO {quote(partition.table)} BY NAME SELECT * FROM _batch")
        finally:
            con.unregister("_batch")

    def _write_catalog(self) -> None:
        """The ``partitions`` and ``partition_fields`` rows, from the partitions in memory, numbered
        in (channel, event id) order (so the same in every case, whatever order they came in)."""
        self.con.execute("DELETE FROM partitions")
        self.con.execute("DELETE FROM partition_fields")
        parts = sorted(self.partitions.values(), key=_key_order)
        for number, partition in enumerate(parts, 1):
            partition.id = number
        if parts:
            rows = ", ".join(f"({p.id}, ?, ?, {sql_literal(p.table)})" for p in parts)
            self.con.execute(f"INSERT INTO partitions VALUES {rows}", [v for p in parts for v in p.key])
        fields = [(p.id, n, c) for p in parts for n, c in sorted(p.columns.items())]
        if fields:
            values = ", ".join(f"({pid}, {sql_literal(n)}, {sql_literal(c)})" for pid, n, c in fields)
            self.con.execute(f"INSERT INTO partition_fields VALUES {values}")

    def refresh_view(self) -> None:
        """(Re)create the ``events`` view over every partition, and write the catalog rows."""
        self.flush_evidence()
        if not self._view_stale:
            return
        self._write_catalog()
        common = ", ".join(COMMON_COLUMNS)
        selects = []
        for partition in sorted(self.partitions.values(), key=lambda p: p.id):
            selects.append(f"SELECT {common}, {_fields_json(partition)} AS fields FROM {quote(partition.table)}")
        if not selects:
            nulls = ", ".join(f"NULL::{t} AS {n}" for n, t in zip(COMMON_COLUMNS, _common_types(), strict=True))
            selects.append(f"SELECT {nulls}, NULL::JSON AS fields WHERE false")
        self.con.execute("CREATE OR REPLACE VIEW events AS " + " UNION ALL ".join(selects))
        self._view_stale = False

    def add_evidence(self, evidence_id: int, path: str, reader: str | None, size: int) -> None:
        """List one input file before it is read (held until :meth:`flush_evidence`)."""
        self._evidence_new.append((evidence_id, path, reader, size))

    def finish_evidence(
        self, evidence_id: int, sha256: str | None, records: int, skipped: int, complete: bool
    ) -> None:
        """Record the outcome of reading one input file (held until :meth:`flush_evidence`)."""
        self._evidence_done.append((evidence_id, sha256, records, skipped, complete))
        if len(self._evidence_done) >= EVIDENCE_BATCH:
            self.flush_evidence()

    def flush_evidence(self) -> None:
        """Write the inputs listed and finished since the last flush, in two statements.

        One statement per file cost a DuckDB commit each (about 15 ms), which a server's tree of
        thousands of small log files felt; the ingest flushes when discovery ends, every
        EVIDENCE_BATCH files read, and before anything reads the table.
        """
        self.insert("evidence", _EVIDENCE_NEW, self._evidence_new)
        self._evidence_new = []
        if self._evidence_done:
            self.con.register("_done", pa.table(list(zip(*self._evidence_done, strict=True)), schema=_EVIDENCE_DONE))
            try:
                self.con.execute("UPDATE evidence SET sha256 = d.sha256, records = d.records, "
                                 "skipped_records = d.skipped, complete = d.complete FROM _done d WHERE evidence.id = d.id")
            finally:
                self.con.unregister("_done")
            self._evidence_done = []

    def add_warning(self, evidence_id: int | None, locator: str | None, message: str, skipped: int = 0) -> None:
        """Record something that could not be read."""
        self.add_warnings([(evidence_id, locator, message, skipped)])

    def add_warnings(self, rows: Sequence[tuple[int | None, str | None, str, int]]) -> None:
        """Record many read warnings at once."""
        schema = pa.schema([("evidence", pa.int32()), ("locator", pa.string()), ("message", pa.string()),
                            ("skipped", pa.int64())])
        self.insert("read_warnings", schema, rows)

    def insert(self, table: str, schema: pa.Schema, rows: Sequence[tuple[Any, ...]]) -> None:
        """Append ``rows`` (tuples in ``schema``'s column order) to ``table`` in one statement."""
        if rows:
            self.con.register("_rows", pa.table(list(zip(*rows, strict=True)), schema=schema))
            try:
                self.con.execute(f"INSERT INTO {quote(table)} BY NAME SELECT * FROM _rows")
            finally:
                self.con.unregister("_rows")

    def query(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        """Run ``sql`` and return all rows."""
        return self.con.execute(sql, params or []).fetchall()

    def select(self, channel: str, fields: Sequence[str], event_ids: Collection[int] | None = None) -> str | None:
        """SQL of the events of ``channel`` (optionally only ``event_ids``): the common columns and
        one column per name in ``fields``, for detectors that query a log family by its fields.

        A field is found case-insensitively, since Exchange builds spell some columns differently
        (``BackEndCookie``, ``BackendCookie``); a partition without it gives NULL. The name ``*``
        gives all own fields of the event joined into one text, for searches across them.
        ``None`` when the case holds no such events.
        """
        selects = []
        for (part_channel, event_id), partition in sorted(self.partitions.items(), key=lambda kv: kv[1].id):
            if part_channel != channel or (event_ids is not None and event_id not in event_ids):
                continue
            lower = {name.lower(): column for name, column in partition.columns.items()}
            columns = []
            for name in fields:
                if name == "*":
                    own = ", ".join(quote(c) for _, c in sorted(partition.columns.items()))
                    expression = f"concat_ws(' ', {own})" if own else "''"
                else:
                    column = partition.columns.get(name) or lower.get(name.lower())
                    expression = quote(column) if column else "NULL::VARCHAR"
                columns.append(f"{expression} AS {quote(name)}")
            selects.append(f"SELECT {', '.join((*COMMON_COLUMNS, *columns))} FROM {quote(partition.table)}")
        return "(" + " UNION ALL ".join(selects) + ")" if selects else None

    def fields_text(self, wanted: Sequence[tuple[int, str]]) -> dict[tuple[int, str], str]:
        """The own fields, as JSON text, of the events at (evidence id, locator) ``wanted``.

        Each partition is joined with the wanted list before its fields are turned into JSON, so
        the cost follows the events asked for, not the size of the case (a filter on the ``events``
        view builds the JSON of every event first).
        """
        if not wanted or not self.partitions:
            return {}
        pairs = sorted(set(wanted))
        table = pa.table({"evidence": pa.array([e for e, _ in pairs], pa.int32()),
                          "locator": pa.array([loc for _, loc in pairs], pa.string())})
        out: dict[tuple[int, str], str] = {}
        self.con.register("_wanted", table)
        try:  # one partition at a time: a union of hundreds of joins does not fit DuckDB's memory limit
            for partition in self._holding("_wanted"):
                rows = self.query(
                    f"SELECT t.evidence, t.locator, {_fields_json(partition, 't.')}::VARCHAR "
                    f"FROM {quote(partition.table)} t SEMI JOIN _wanted w "
                    "ON t.evidence = w.evidence AND t.locator = w.locator")
                out.update({(int(e), loc): text for e, loc, text in rows if text is not None})
        finally:
            self.con.unregister("_wanted")
        return out

    def _holding(self, wanted: str) -> list[Partition]:
        """The partitions with an event at one of the (evidence, locator) rows of table ``wanted``,
        found in one scan of those two columns (most partitions hold none of a report's events)."""
        parts = sorted(self.partitions.values(), key=lambda p: p.id)
        union = " UNION ALL ".join(f"SELECT {p.id} AS part, evidence, locator FROM {quote(p.table)}" for p in parts)
        found = {part for (part,) in self.query(
            f"SELECT DISTINCT t.part FROM ({union}) t SEMI JOIN {wanted} w "
            "ON t.evidence = w.evidence AND t.locator = w.locator")}
        return [p for p in parts if p.id in found]

    def materialise(self, name: str, sql: str) -> str:
        """A temporary table ``name`` holding the rows of ``sql``, made once while the events stay
        as they are, for a derived relation that many queries read (the web requests of all logs,
        say): computed once instead of once per query. Returns ``name``."""
        if self._derived.get(name) != self._generation:
            self.con.execute(f"CREATE OR REPLACE TEMP TABLE {quote(name)} AS {sql}")
            self._derived[name] = self._generation
        return quote(name)

    @contextmanager
    def staged(self, sql: str) -> Iterator[str]:
        """The rows of ``sql`` in a temporary table, dropped on leaving; yields its name.

        For sorting or ranking a join over every partition: in one statement, DuckDB keeps a sort
        state per partition's pipeline (hundreds of them), which at millions of events passes its
        memory cap (out of memory at 2.8 million events under 200 MB); joined into one table first,
        the sort reads one pipeline and spills to disk when it must.
        """
        name = f"_staged_{next(self._staged)}"
        self.con.execute(f"CREATE TEMP TABLE {name} AS {sql}")
        try:
            yield name
        finally:
            self.con.execute(f"DROP TABLE IF EXISTS {name}")

    def event_count(self) -> int:
        """Number of events in the store."""
        if not self.partitions:
            return 0
        counts = " UNION ALL ".join(f"SELECT count(*) AS n FROM {quote(p.table)}" for p in self.partitions.values())
        return int(self.query(f"SELECT sum(n) FROM ({counts})")[0][0])  # one query, not one per partition


def _fields_json(partition: Partition, prefix: str = "") -> str:
    """SQL: a partition's own fields as one JSON object (``prefix``: the table alias and a dot)."""
    pairs = ", ".join(f"{sql_literal(n)}, {prefix}{quote(c)}" for n, c in sorted(partition.columns.items()))
    return f"json_object({pairs})" if pairs else "json_object()"


def _common_types() -> list[str]:
    mapping = {pa.int64(): "BIGINT", pa.int32(): "INTEGER", pa.string(): "VARCHAR", pa.timestamp("us"): "TIMESTAMP"}
    return [mapping[f.type] for f in COMMON_SCHEMA]
