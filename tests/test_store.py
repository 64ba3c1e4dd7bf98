"""The case store: staged tables (sorting a join over many partitions under the memory cap) and
partition tables named the same whatever order partitions arrive in."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from varde.events.schema import COMMON_SCHEMA
from varde.events.store import EventStore, table_name

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


KEYS = [("Security", 4624), ("Microsoft-Windows-Sysmon/Operational", 1), ("IIS", None), ("Security", -7)]


def _batch(key: tuple[str | None, int | None], n: int) -> pa.Table:
    columns = {f.name: pa.nulls(1, f.type) for f in COMMON_SCHEMA}
    columns["key"] = pa.array([n], pa.int64())
    columns["Data"] = pa.array([f"event {n}"])
    return pa.table(columns)


def test_partition_tables_and_ids_do_not_depend_on_the_order_of_arrival(tmp_path: Path) -> None:
    catalogs = []
    for order in (KEYS, list(reversed(KEYS))):
        folder = tmp_path / str(len(catalogs))
        folder.mkdir()
        with EventStore(folder / "events.duckdb") as store:
            for n, key in enumerate(order):
                store.append(key, _batch(key, n))
            store.refresh_view()
            catalogs.append(store.query("SELECT id, channel, event_id, table_name FROM partitions ORDER BY id"))
    assert catalogs[0] == catalogs[1]
    assert [(c, e) for _, c, e, _ in catalogs[0]] == [
        ("IIS", None), ("Microsoft-Windows-Sysmon/Operational", 1), ("Security", -7), ("Security", 4624)]
    assert catalogs[0][3][3] == table_name(("Security", 4624)) == "events_security_4624_eedaae"
