"""The file inventory: every input varde was given, as a file tree detectors can query.

One row per input in the ``files`` table (plain files, archives, archive members, files no reader
claims, refused ones): its path, a normalised ``tree_path``, name and extension, size, SHA-256
(filled in once the inputs are hashed), its times (:mod:`varde.sources.filetimes`) and, when the
path lies in a folder IIS serves on an Exchange server, which one (``web_root``).

Detectors ask "which .aspx files under owa\\auth are new" with :func:`web_root_files` or plain SQL
on ``files`` (``docs/schema.md``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePosixPath

import pyarrow as pa

from varde.events.store import EventStore
from varde.sources.base import EvidenceFile, shown_path

#: Folders that IIS serves on an Exchange server, as lower-case ``/``-separated path parts, most
#: specific first; the first that occurs in a file's tree path names its web root. Sources: NCSC-FI,
#: "Instructions on how to detect web shells" (2021-03: aspnet_client, aspnet_client\system_web,
#: FrontEnd\HttpProxy\owa\auth and \ecp, ClientAccess\Owa\auth and \ecp); Microsoft CSS-Exchange
#: Defender-MSERT-Guidance.md (aspnet_client, FrontEnd\HttpProxy\owa\auth); Test-ProxyLogon.ps1
#: (ClientAccess\OAB, where CVE-2021-26858 downloads should land); detection-anchors §3 (the
#: Temporary ASP.NET Files folder where IIS compiles pages, shells included).
WEB_ROOTS: tuple[tuple[str, str], ...] = (
    ("/frontend/httpproxy/", "exchange-frontend"),
    ("/clientaccess/", "exchange-backend"),
    ("/aspnet_client/", "aspnet-client"),
    ("/inetpub/wwwroot/", "iis-wwwroot"),
    ("/temporary asp.net files/", "aspnet-temp"),
)

FILES_SCHEMA = pa.schema([
    ("evidence", pa.int32()), ("path", pa.string()), ("tree_path", pa.string()), ("name", pa.string()),
    ("extension", pa.string()), ("bytes", pa.int64()), ("modified", pa.timestamp("us")),
    ("accessed", pa.timestamp("us")), ("created", pa.timestamp("us")), ("time_source", pa.string()),
    ("web_root", pa.string()), ("archive", pa.string()),
])


def tree_path(evidence: EvidenceFile) -> str:
    """The absolute path of the file, archive members appended as folders, separated by ``/``.

    Windows separators in member names (some archivers write them) become ``/`` too, so one
    pattern finds ``owa/auth`` whichever way the evidence was copied. (A ``\\`` in a file name on
    disk stays: on POSIX it is part of the name, and it marks the escapes of :func:`shown_path`.)
    """
    disk = shown_path(os.path.abspath(evidence.disk_path)).replace(os.sep, "/")
    return "/".join([disk, *(m.replace("\\", "/") for m in evidence.members)])


def windows_folder(tree: str) -> str:
    """The folder part of a tree path with ``\\`` separators, as YARA rules written for Windows
    hosts test it (signature-base's ``filepath``)."""
    return tree.rpartition("/")[0].replace("/", "\\")


def extension_of(name: str) -> str:
    """The extension of a file name, lower case with its dot (``.aspx``), or ``""``."""
    return PurePosixPath(name).suffix.lower()


def web_root(tree: str) -> str | None:
    """Which web root (see :data:`WEB_ROOTS`) a tree path lies in, or None."""
    lowered = tree.lower()
    return next((name for marker, name in WEB_ROOTS if marker in lowered), None)


def file_row(number: int, evidence: EvidenceFile) -> tuple:
    """The ``files`` row of input ``number`` (without its hash, which comes later)."""
    tree = tree_path(evidence)
    name = tree.rpartition("/")[2]
    times = evidence.times
    archive = evidence.path[: -(len(evidence.members[-1]) + 1)] if evidence.members else None
    return (
        number, evidence.path, tree, name, extension_of(name), evidence.size,
        _naive(times.modified if times else None), _naive(times.accessed if times else None),
        _naive(times.created if times else None), times.source if times else None, web_root(tree), archive,
    )


def add_files(store: EventStore, rows: Sequence[tuple]) -> None:
    """Insert inventory rows made by :func:`file_row`."""
    store.insert("files", FILES_SCHEMA, rows)


def fill_hashes(store: EventStore) -> None:
    """Copy each input's SHA-256 from ``evidence`` once reading has hashed it."""
    store.con.execute("UPDATE files SET sha256 = v.sha256 FROM evidence v WHERE v.id = files.evidence")


@dataclass(frozen=True)
class WebRootFile:
    """A file found in a web root (for the Exchange detectors: new shells, staged archives)."""

    evidence: int
    path: str
    tree_path: str
    web_root: str
    extension: str
    bytes: int
    sha256: str | None
    modified: datetime | None
    time_source: str | None


def web_root_files(store: EventStore, extensions: Iterable[str] | None = None) -> list[WebRootFile]:
    """Every inventoried file in a web root, oldest first; only ``extensions`` (".aspx", ...) if given."""
    wanted = sorted({e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions or ()})
    where = "web_root IS NOT NULL"
    if wanted:
        where += f" AND extension IN ({', '.join('?' for _ in wanted)})"
    rows = store.query(
        "SELECT evidence, path, tree_path, web_root, extension, bytes, sha256, modified, time_source "
        f"FROM files WHERE {where} ORDER BY modified NULLS LAST, tree_path, evidence",
        wanted,
    )
    return [
        WebRootFile(e, p, t, w, x, b or 0, h, m.replace(tzinfo=UTC) if m else None, s)
        for e, p, t, w, x, b, h, m, s in rows
    ]


def _naive(moment: datetime | None) -> datetime | None:
    """UTC without the zone, as DuckDB TIMESTAMP columns hold it."""
    return moment.astimezone(UTC).replace(tzinfo=None) if moment else None
