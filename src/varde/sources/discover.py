"""Find evidence: walk files, folders and zip archives, and pick a reader for each by sniffing.

Nothing is written to the evidence; folders are walked in sorted order (symbolic links to
folders are not followed) so the same evidence always gives the same list in the same order.
Files no reader recognises stay in the list with no reader: they are hashed like everything
else, listed in the file inventory and scanned with YARA. Each gets a read warning with the
message :data:`UNKNOWN_FORMAT`; the report shows those as one line with their count, so a copied
file tree does not bury the warnings that matter.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from varde.sources import READERS
from varde.sources.archive import is_zip, list_members
from varde.sources.base import ArchiveLimits, EvidenceFile, shown_path
from varde.sources.filetimes import member_times, stat_times

HEAD_BYTES = 65536  # enough to see past a few screens of junk before the first event

#: The read warning of an input no reader recognises.
UNKNOWN_FORMAT = "no reader recognises this file's format"


@dataclass(frozen=True)
class Found:
    """One discovered input: the file, the reader chosen (None: unknown format), and why not.

    ``refused`` inputs must not be opened at all (a zip bomb, an encrypted or unreadable member):
    they are listed and reported, not hashed.
    """

    evidence: EvidenceFile
    reader: str | None
    note: str | None = None
    refused: bool = False


def sniff(head: bytes, name: str) -> str | None:
    """Name of the first reader that recognises ``head``, or None."""
    for reader in READERS:
        if reader.sniff(head, name):
            return reader.name
    return None


def _walk(root: Path) -> Iterator[Path]:
    if root.is_file():
        yield root
        return
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            path = Path(folder, name)
            if path.is_file():
                yield path


def discover(paths: Iterable[Path], limits: ArchiveLimits | None = None) -> Iterator[Found]:
    """Every input below ``paths``, archives opened, each with its reader."""
    limits = limits or ArchiveLimits()
    for root in paths:
        for path in _walk(root):
            info = path.stat()
            evidence = EvidenceFile(path=shown_path(path), disk_path=path, size=info.st_size, times=stat_times(info))
            try:
                with open(path, "rb") as handle:
                    head = handle.read(HEAD_BYTES)
            except OSError as exc:
                yield Found(evidence, None, f"cannot be opened: {exc.strerror or exc}", refused=True)
                continue
            yield from _classify(evidence, head, limits)


def _classify(evidence: EvidenceFile, head: bytes, limits: ArchiveLimits) -> Iterator[Found]:
    if is_zip(head):
        yield from _archive(evidence, limits)
        return
    reader = sniff(head, evidence.path)
    yield Found(evidence, reader, None if reader else UNKNOWN_FORMAT)


def _archive(archive: EvidenceFile, limits: ArchiveLimits) -> Iterator[Found]:
    """The archive itself, then its members (recursively, up to the depth limit)."""
    if len(archive.members) >= limits.max_depth:
        yield Found(archive, None, f"archive nested deeper than {limits.max_depth} levels is not opened")
        return
    try:
        with archive.open(limits) as handle, zipfile.ZipFile(handle) as zipped:
            entries = list(list_members(zipped, limits))
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, zlib.error) as exc:
        yield Found(archive, None, f"damaged zip archive: {exc}")
        return
    yield Found(archive, "zip")
    for info, refusal in entries:
        member = EvidenceFile(
            path=f"{archive.path}!{info.filename}",
            disk_path=archive.disk_path,
            members=(*archive.members, info.filename),
            size=info.file_size,
            times=member_times(info),
        )
        if refusal:
            yield Found(member, None, refusal, refused=True)
            continue
        try:
            with member.open(limits) as handle:
                head = handle.read(HEAD_BYTES)
        except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, ValueError, zlib.error) as exc:
            yield Found(member, None, f"member cannot be read: {exc}", refused=True)
            continue
        yield from _classify(member, head, limits)
