"""Evidence excerpts: the logged fields of each event a report points to, copied into the report.

``report.json`` must be enough to render every output again (``varde report DIR``), including the
HTML drill-down to the evidence lines, so each evidence reference gets the event's own fields as
compact JSON text (cut at :data:`MAX_TEXT` characters). The text is evidence, attacker-controlled:
renderers escape it.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from pydantic import BaseModel

from varde.events.store import EventStore
from varde.report.document import EvidenceRef, Report

MAX_TEXT = 2000


def _texts(store: EventStore, refs: set[tuple[str, str]]) -> dict[tuple[str, str], str]:
    if not refs:
        return {}
    paths, locators = zip(*sorted(refs), strict=True)
    store.con.register("_refs", pa.table({"path": list(paths), "locator": list(locators)}))
    try:
        rows = store.query("""SELECT r.path, r.locator, e.fields::VARCHAR FROM _refs r
            JOIN evidence v ON v.path = r.path JOIN events e ON e.evidence = v.id AND e.locator = r.locator""")
    finally:
        store.con.unregister("_refs")
    return {(p, loc): (t if len(t) <= MAX_TEXT else t[:MAX_TEXT] + "…") for p, loc, t in rows if t is not None}


def _fill(value: Any, texts: dict[tuple[str, str], str]) -> Any:
    if isinstance(value, EvidenceRef):
        return value.model_copy(update={"text": texts.get((value.path, value.locator))})
    if isinstance(value, list):
        return [_fill(v, texts) for v in value]
    if isinstance(value, BaseModel):
        updates = {name: _fill(getattr(value, name), texts) for name in type(value).model_fields}
        return value.model_copy(update=updates)
    return value


def _refs(value: Any, out: set[tuple[str, str]]) -> None:
    if isinstance(value, EvidenceRef):
        out.add((value.path, value.locator))
    elif isinstance(value, list):
        for item in value:
            _refs(item, out)
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            _refs(getattr(value, name), out)


def with_excerpts(report: Report, store: EventStore) -> Report:
    """The report with ``text`` set on every evidence reference the store can resolve."""
    refs: set[tuple[str, str]] = set()
    _refs(report, refs)
    return _fill(report, _texts(store, refs))
