"""Column transforms shared by the text-log readers: times to UTC microseconds, URL decoding.

Both work on whole Arrow columns and fall back to Python only for the values that need it
(a time Arrow cannot parse, a URL with ``%``), so the common case stays vectorised.
"""

from __future__ import annotations

from urllib.parse import unquote

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from varde.sources.linelog import LineWarnings
from varde.sources.winevent import parse_time_us

#: Rounds of percent-decoding: undoes double (and triple) encoding, which filter bypasses use.
DECODE_ROUNDS = 3


def parse_times(text: pa.Array | pa.ChunkedArray, lines: np.ndarray, warnings: LineWarnings) -> pa.Array:
    """ISO 8601 times (``2021-03-03 06:49:42``, ``2021-03-03T06:49:42.123Z``, with an offset) as
    UTC timestamps; a time without zone is UTC. A value that is no time becomes null, and its
    line is reported (the event is kept)."""
    if isinstance(text, pa.ChunkedArray):
        text = text.combine_chunks()
    try:
        return pc.cast(pc.utf8_rtrim(text, characters="Z"), pa.timestamp("us"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    values = []
    for index, value in enumerate(text.to_pylist()):
        parsed = parse_time_us(value)
        if parsed is None:
            warnings.line(int(lines[index]), "not a valid time; event kept without one", 0, f": {value[:64]!r}")
        values.append(parsed)
    return pa.array(values, pa.int64()).cast(pa.timestamp("us"))


def decode_url(value: str) -> str:
    """``value`` percent-decoded until it no longer changes (at most DECODE_ROUNDS times); bytes
    that are not UTF-8 become U+FFFD. ``+`` stays ``+`` (it is a space only in form bodies)."""
    return _decoded([value])[0]


def _decoded(values: list[str]) -> list[str]:
    """:func:`decode_url` of many values: each round decodes them all joined by newlines in one
    call (a value that decodes to a newline makes that round go value by value)."""
    for _ in range(DECODE_ROUNDS):
        pending = [n for n, v in enumerate(values) if "%" in v]
        if not pending:
            break
        parts = unquote("\n".join(values[n] for n in pending), errors="replace").split("\n")
        if len(parts) != len(pending):
            parts = [unquote(values[n], errors="replace") for n in pending]
        changed = False
        for n, part in zip(pending, parts, strict=True):
            changed |= part != values[n]
            values[n] = part
        if not changed:
            break
    return values


def percent_decoded(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """The column with every value that holds ``%`` URL-decoded (see :func:`decode_url`)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    mask = pc.fill_null(pc.match_substring(column, "%"), False)
    if not pc.any(mask).as_py():
        return column
    decoded = _decoded(pc.filter(column, mask).to_pylist())
    return pc.replace_with_mask(column, mask, pa.array(decoded, pa.string()))
