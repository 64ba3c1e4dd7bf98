"""Every file rendered from ``report.json`` into the case folder.

A new output is one module with a ``Report -> str`` function plus one line in :data:`OUTPUTS`.
``varde hunt`` writes them after the report, ``varde report DIR`` again from ``report.json`` alone.
Files are written whole and renamed into place, so a reader never sees half a file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from varde.report.document import Report
from varde.report.html import render_html
from varde.report.navigator import navigator_text
from varde.report.timesketch import timesketch_lines

OUTPUTS: tuple[tuple[str, Callable[[Report], str]], ...] = (
    ("report.html", render_html),
    ("timeline.jsonl", timesketch_lines),
    ("navigator.json", navigator_text),
)


def write_outputs(report: Report, folder: Path) -> list[Path]:
    """Render every output into ``folder``; the paths written."""
    written = []
    for name, render in OUTPUTS:
        path = folder / name
        tmp = path.with_name(name + ".tmp")
        tmp.write_text(render(report), encoding="utf-8")
        tmp.replace(path)
        written.append(path)
    return written
