"""Evidence excerpts: the logged fields of each event a report points to, copied into the report.

``report.json`` must be enough to render every output again (``varde report DIR``), including the
HTML drill-down to the evidence lines, so each evidence reference gets the event's own fields as
compact JSON text (cut at :data:`MAX_TEXT` characters). The text is evidence, attacker-controlled:
renderers escape it.
"""

from __future__ import annotations

from functools import cache
from typing import Any, get_args

from pydantic import BaseModel

from varde.events.store import EventStore
from varde.report.document import EvidenceRef, Report

MAX_TEXT = 2000


def _texts(store: EventStore, refs: set[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """Event fields by (path, locator), cut at :data:`MAX_TEXT` characters."""
    if not refs:
        return {}
    ids = {path: number for number, path in store.query("SELECT id, path FROM evidence")}
    paths = {number: path for path, number in ids.items()}
    found = store.fields_text([(ids[p], loc) for p, loc in refs if p in ids])
    return {(paths[number], locator): text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + "…"
            for (number, locator), text in found.items()}


@cache
def _holders(model: type[BaseModel]) -> tuple[str, ...]:
    """The fields of ``model`` that can hold evidence references, directly, in lists or in nested
    models: the only ones the walks below go into (a report has thousands of other values)."""
    return tuple(name for name, info in model.model_fields.items() if _can_hold(info.annotation))


def _can_hold(annotation: Any) -> bool:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation is EvidenceRef or bool(_holders(annotation))
    return any(_can_hold(argument) for argument in get_args(annotation))


def _fill(value: Any, texts: dict[tuple[str, str], str], done: dict[EvidenceRef, EvidenceRef]) -> Any:
    """``value`` with the text set on its evidence references; ``done``: the references filled so
    far (many are listed twice, by a finding and by a step: filled once, shared, as they are frozen)."""
    if isinstance(value, EvidenceRef):
        if value not in done:
            done[value] = value.model_copy(update={"text": texts.get((value.path, value.locator))})
        return done[value]
    if isinstance(value, list):
        return [_fill(v, texts, done) for v in value]
    if isinstance(value, BaseModel) and _holders(type(value)):
        return value.model_copy(update={name: _fill(getattr(value, name), texts, done)
                                        for name in _holders(type(value))})
    return value


def _refs(value: Any, out: set[tuple[str, str]]) -> None:
    if isinstance(value, EvidenceRef):
        out.add((value.path, value.locator))
    elif isinstance(value, list):
        for item in value:
            _refs(item, out)
    elif isinstance(value, BaseModel):
        for name in _holders(type(value)):
            _refs(getattr(value, name), out)


def with_excerpts(report: Report, store: EventStore) -> Report:
    """The report with ``text`` set on every evidence reference the store can resolve."""
    refs: set[tuple[str, str]] = set()
    _refs(report, refs)
    return _fill(report, _texts(store, refs), {})
