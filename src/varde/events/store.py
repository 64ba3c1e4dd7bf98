"""The case store: events, evidence accounting and read warnings in one DuckDB database file.

Tables (documented for users in ``docs/schema.md``):

* ``events``: :data:`~varde.events.schema.EVENT_SCHEMA`, appended in Arrow batches;
* ``evidence``: one row per input file (path, sha256, bytes, reader, records, skipped, complete);
* ``read_warnings``: what could not be read, with file and locator;
* ``field_names``: the own-field names seen per (channel, event id), for rule field lookup;
* ``sigma_matches``: (rule uid, event key) pairs written by the Sigma engine.

DuckDB runs with a memory limit and spills to a temp folder inside the case, so memory stays
bounded whatever the input size; nothing is ever written next to the evidence.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from varde.errors import CaseError
from varde.events.schema import EVENT_SCHEMA

logger = logging.getLogger(__name__)

_TABLES = """
CREATE TABLE IF NOT EXISTS events (
    key BIGINT NOT NULL, evidence INTEGER NOT NULL, locator VARCHAR NOT NULL, ts TIMESTAMP,
    host VARCHAR, channel VARCHAR, provider VARCHAR, event_id INTEGER, record_id BIGINT,
    fields VARCHAR
);
CREATE TABLE IF NOT EXISTS evidence (
    id INTEGER PRIMARY KEY, path VARCHAR NOT NULL, reader VARCHAR, bytes BIGINT, sha256 VARCHAR,
    records BIGINT DEFAULT 0, skipped_records BIGINT DEFAULT 0, complete BOOLEAN
);
CREATE TABLE IF NOT EXISTS read_warnings (
    evidence INTEGER, locator VARCHAR, message VARCHAR NOT NULL, skipped BIGINT DEFAULT 0
);
CREATE TABLE IF NOT EXISTS sigma_matches (rule_uid VARCHAR NOT NULL, key BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS field_names (channel VARCHAR, event_id INTEGER, name VARCHAR NOT NULL);
"""


class EventStore:
    """A DuckDB case database. Use as a context manager, or call :meth:`close`."""

    def __init__(self, path: Path, memory_limit: str = "768MB", threads: int = 2) -> None:
        self.path = path
        try:
            self.con = duckdb.connect(str(path))
            temp = path.parent / "tmp"
            self.con.execute(f"SET memory_limit = '{memory_limit}'")
            self.con.execute(f"SET threads = {int(threads)}")
            self.con.execute(f"SET temp_directory = '{_sql_text(str(temp))}'")
            self.con.execute("SET preserve_insertion_order = false")
            self.con.execute(_TABLES)
        except (duckdb.Error, OSError) as exc:
            raise CaseError(f"cannot open the case store {path}: {exc}") from exc

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Checkpoint and close the database."""
        self.con.close()

    def reset(self) -> None:
        """Empty every table (a new hunt into an existing case folder starts clean)."""
        for table in ("events", "evidence", "read_warnings", "sigma_matches", "field_names"):
            self.con.execute(f"DELETE FROM {table}")

    def append(self, batch: pa.RecordBatch) -> None:
        """Append one batch of events (must follow EVENT_SCHEMA)."""
        if batch.schema != EVENT_SCHEMA:
            batch = batch.cast(EVENT_SCHEMA)
        self.con.register("_batch", batch)
        try:
            self.con.execute("INSERT INTO events SELECT * FROM _batch")
            self.con.execute(
                "INSERT INTO field_names SELECT DISTINCT channel, event_id, unnest(json_keys(fields)) FROM _batch "
                "EXCEPT SELECT channel, event_id, name FROM field_names"
            )
        finally:
            self.con.unregister("_batch")

    def add_evidence(self, evidence_id: int, path: str, reader: str | None, size: int) -> None:
        """List one input file before it is read."""
        self.con.execute(
            "INSERT INTO evidence (id, path, reader, bytes) VALUES (?, ?, ?, ?)", [evidence_id, path, reader, size]
        )

    def finish_evidence(
        self, evidence_id: int, sha256: str | None, records: int, skipped: int, complete: bool
    ) -> None:
        """Record the outcome of reading one input file."""
        self.con.execute(
            "UPDATE evidence SET sha256 = ?, records = ?, skipped_records = ?, complete = ? WHERE id = ?",
            [sha256, records, skipped, complete, evidence_id],
        )

    def add_warning(self, evidence_id: int | None, locator: str | None, message: str, skipped: int = 0) -> None:
        """Record something that could not be read."""
        self.con.execute(
            "INSERT INTO read_warnings VALUES (?, ?, ?, ?)", [evidence_id, locator, message, skipped]
        )

    def query(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        """Run ``sql`` and return all rows."""
        return self.con.execute(sql, params or []).fetchall()

    def event_count(self) -> int:
        """Number of events in the store."""
        return int(self.query("SELECT count(*) FROM events")[0][0])


def _sql_text(text: str) -> str:
    """``text`` made safe inside a single-quoted SQL literal."""
    return text.replace("'", "''")


def sql_literal(text: str) -> str:
    """A single-quoted SQL string literal for ``text``."""
    return "'" + _sql_text(text) + "'"
