"""The distinct values of a group's fields, to test the rules' prefilters on before running them.

A group's rules are planned by their log source and fields; of those, a rule whose prefilter
(:func:`varde.detect.sigma.compile.prefilter`) no value of the group can satisfy is not run at
all: DuckDB charges for parsing and binding every rule, so skipping a rule is worth a scan of
the group's distinct values. The same values rank the prefilter atoms for the row filter
(:mod:`varde.detect.sigma.rowfilter`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import duckdb

from varde.detect.sigma.compile import TEXT_FIELD
from varde.detect.sigma.rowfilter import Atom, by_length, holds


class GroupValues:
    """The distinct lower-cased values of a group's fields, to test prefilters on.

    A prefilter atom (see :func:`varde.detect.sigma.compile.prefilter`) is tested on exactly
    the strings its SQL would compare, so a rule is skipped only where its SQL could not match:
    equality against a set of the values, and containment, prefixes and suffixes against all
    values joined with NUL separators (a NUL cannot occur in the values or the patterns).
    """

    #: Columns whose distinct values add up to more are not indexed (every atom "may match").
    MAX_BYTES = 32 << 20
    #: Columns whose distinct values add up to more are tested for equality only (a substring
    #: search scans them all, per text; the row filter of :mod:`rowfilter` does it in one pass).
    MAX_SCAN = 1 << 20
    #: Fields with at most this many distinct values have their rows per value counted, to
    #: judge which prefilter atoms are worth a row filter (see ``rank``).
    SMALL = 1000
    #: Fields with more distinct values are not indexed, in groups that may have them: the
    #: distinct list of a web log's URIs is as large as the log, and under DuckDB's memory limit
    #: two such lists at once (two groups on two threads) do not fit. Counted first (HyperLogLog).
    MAX_VALUES = 50_000

    def __init__(self, con: duckdb.DuckDBPyConnection, expression: Callable[[str], str], rows: str,
                 events: int = 0) -> None:
        self.con = con
        self.expression = expression  # field -> SQL of its lower-cased value in ``rows``
        self.rows = rows  # SQL selecting the group's rows
        self.events = events  # rows in the group
        self._columns: dict[str, tuple[set[str], str] | None] = {}
        self._histograms: dict[str, dict[str, int]] | None = None  # see _counts

    def load(self, fields: set[str]) -> None:
        """Fetch the distinct values of ``fields`` in one scan of the group's rows."""
        self._columns.update({TEXT_FIELD: None} if TEXT_FIELD in fields else {})  # every event's text differs
        names = sorted(fields - set(self._columns))
        if names and self.events > self.MAX_VALUES:
            counts = self.con.execute(f"SELECT {', '.join(f'approx_count_distinct({self.expression(n)})' for n in names)} "
                                      f"FROM ({self.rows})").fetchall()[0]
            self._columns.update({n: None for n, c in zip(names, counts, strict=True) if c > self.MAX_VALUES})
            names = [n for n, c in zip(names, counts, strict=True) if c <= self.MAX_VALUES]
        if not names:
            return
        lists = ", ".join(
            f"array_agg(DISTINCT {self.expression(n)}) FILTER (WHERE {self.expression(n)} IS NOT NULL)" for n in names
        )
        row = self.con.execute(f"SELECT {lists} FROM ({self.rows})").fetchall()[0]
        for name, found in zip(names, row, strict=True):
            values = [v for v in found or [] if "\x00" not in v]
            if len(values) < len(found or []) or sum(len(v) for v in values) > self.MAX_BYTES:
                self._columns[name] = None
            else:
                self._columns[name] = (set(values), "\x00" + "\x00".join(values) + "\x00")

    def rank(self, atom: Atom) -> int | None:
        """How rare rows meeting prefilter ``atom`` are (higher: rarer; None: too common to
        filter on): where its field has few distinct values, by the share of the rows it
        matches (None above one in 20); else by the length of its text (:func:`by_length`)."""
        counts = self._counts().get(atom[1])
        if counts is None:
            return by_length(atom)
        matching = sum(n for value, n in counts.items() if holds(value, atom))
        total = max(1, sum(counts.values()))
        return None if matching * 20 > total else 1000 - matching * 1000 // total

    def _counts(self) -> dict[str, dict[str, int]]:
        """Rows per value of the loaded fields that have at most SMALL distinct values (one scan)."""
        if self._histograms is None:
            small = sorted(f for f, c in self._columns.items() if c is not None and len(c[0]) <= self.SMALL)
            found = self.con.execute(f"SELECT {', '.join(f'histogram({self.expression(f)})' for f in small)} "
                                     f"FROM ({self.rows})").fetchall()[0] if small else []
            self._histograms = {f: dict(h or {}) for f, h in zip(small, found, strict=True)}
        return self._histograms

    def _column(self, field: str) -> tuple[set[str], str] | None:
        self.load({field})
        return self._columns[field]

    def may_match(self, pre: object) -> bool:
        """False only when no row of the group can satisfy the prefilter."""
        if pre is None:
            return True
        op = pre[0]  # type: ignore[index]
        if op == "and":
            return all(self.may_match(p) for p in pre[1])  # type: ignore[index]
        if op == "or":
            return any(self.may_match(p) for p in pre[1])  # type: ignore[index]
        _, field, kind, texts = pre  # type: ignore[misc]
        column = self._column(field)
        if column is None:
            return True
        exact, joined = column
        if kind == "eq":
            return any(t in exact for t in texts)
        if len(joined) > self.MAX_SCAN:  # Python scans it once per text: leave it to the row filter
            return True
        if kind == "contains":
            return any(t in joined for t in texts)
        if kind == "starts":
            return any("\x00" + t in joined for t in texts)
        return any(t + "\x00" in joined for t in texts)


def atom_fields(pre: object) -> Iterator[str]:
    """The fields a prefilter's atoms test."""
    if pre is None:
        return
    if pre[0] == "atom":  # type: ignore[index]
        yield pre[1]  # type: ignore[index]
    else:
        for part in pre[1]:  # type: ignore[index]
            yield from atom_fields(part)
