"""The case store's staged tables: sorting a join over many partitions under DuckDB's memory cap."""

from __future__ import annotations

from pathlib import Path

from varde.events.store import EventStore

TABLES = 100  # partitions, each its own pipeline in a UNION ALL
ROWS = 200


def _store(tmp_path: Path) -> tuple[EventStore, str]:
    store = EventStore(tmp_path / "events.duckdb", memory_limit="16MB")
    for n in range(TABLES):
        store.con.execute(f"CREATE TABLE t{n} AS SELECT range AS key, 'value ' || range AS a "
                          f"FROM range({n * 1000}, {n * 1000 + ROWS})")
    return store, " UNION ALL ".join(f"SELECT key, a FROM t{n}" for n in range(TABLES))


def test_staged_rows_sort_under_the_cap_and_the_table_is_dropped(tmp_path: Path) -> None:
    """At 16 MB, ORDER BY straight over this union runs out of memory in DuckDB 2.0 (it keeps a sort
    state per pipeline); staged first, the sort fits."""
    store, union = _store(tmp_path)
    with store.staged(union) as table:
        rows = store.con.execute(f"SELECT key FROM {table} ORDER BY a, key").fetchall()
    assert len(rows) == TABLES * ROWS
    assert [k for (k,) in rows] == sorted((k for (k,) in rows), key=lambda k: (f"value {k}", k))
    assert not store.query(f"SELECT * FROM duckdb_tables() WHERE table_name = '{table}'")
    store.close()
