"""When a file was written: from the file system, or from a zip member's header.

A file tree copied off a server keeps its times only if the copy kept them (robocopy /COPY:DAT,
7-Zip, KAPE do); varde records what it finds and says where it came from, so a time is never
taken for more than it is:

* ``filesystem``: ``os.stat`` of the evidence copy (creation time only where the platform has it);
* ``zip-ntfs``: the NTFS extra field (0x000a) that Windows archivers write: modification, access
  and creation time in UTC (PKWARE APPNOTE 4.5.5);
* ``zip-unix``: the extended timestamp extra field (0x5455, Info-ZIP): modification time in UTC;
* ``zip-dos``: only the DOS date and time of the member header, which is the archiving
  machine's *local* time with no zone: stored as if it were UTC, and marked so.
"""

from __future__ import annotations

import os
import struct
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

_FILETIME_EPOCH = datetime(1601, 1, 1, tzinfo=UTC)
_NTFS_TAG = 0x000A
_UNIX_TAG = 0x5455


@dataclass(frozen=True)
class FileTimes:
    """Times of one file, all timezone-aware UTC (see the module docstring for ``source``)."""

    modified: datetime | None
    accessed: datetime | None = None
    created: datetime | None = None
    source: str = "filesystem"


def stat_times(info: os.stat_result) -> FileTimes:
    """Times of a file on disk."""
    birth = getattr(info, "st_birthtime", None)
    return FileTimes(
        modified=_from_posix(info.st_mtime),
        accessed=_from_posix(info.st_atime),
        created=_from_posix(birth) if birth is not None else None,
        source="filesystem",
    )


def member_times(info: zipfile.ZipInfo) -> FileTimes:
    """Times of a zip member: NTFS extra field, else Info-ZIP extended timestamp, else DOS time."""
    fields = dict(_extra_fields(info.extra))
    ntfs = _ntfs_times(fields.get(_NTFS_TAG, b""))
    if ntfs is not None:
        return ntfs
    unix = fields.get(_UNIX_TAG, b"")
    if len(unix) >= 5 and unix[0] & 1:
        return FileTimes(modified=_from_posix(struct.unpack_from("<i", unix, 1)[0]), source="zip-unix")
    try:
        local = datetime(*info.date_time, tzinfo=UTC)
    except (TypeError, ValueError):  # a header with month 0 or day 0
        local = None
    return FileTimes(modified=local, source="zip-dos")


def _extra_fields(extra: bytes) -> list[tuple[int, bytes]]:
    """The (tag, data) records of a zip extra field; a truncated record ends the list."""
    out, position = [], 0
    while position + 4 <= len(extra):
        tag, size = struct.unpack_from("<HH", extra, position)
        data = extra[position + 4 : position + 4 + size]
        if len(data) < size:
            break
        out.append((tag, data))
        position += 4 + size
    return out


def _ntfs_times(data: bytes) -> FileTimes | None:
    """The NTFS extra field: 4 reserved bytes, then attributes; attribute 1 holds three FILETIMEs."""
    position = 4
    while position + 4 <= len(data):
        tag, size = struct.unpack_from("<HH", data, position)
        if tag == 1 and size >= 24 and position + 4 + 24 <= len(data):
            modified, accessed, created = struct.unpack_from("<QQQ", data, position + 4)
            return FileTimes(_from_filetime(modified), _from_filetime(accessed), _from_filetime(created), "zip-ntfs")
        position += 4 + size
    return None


def _from_filetime(ticks: int) -> datetime | None:
    """A Windows FILETIME (100 ns ticks since 1601 UTC); zero and out-of-range values are None."""
    if not ticks:
        return None
    try:
        return _FILETIME_EPOCH + timedelta(microseconds=ticks // 10)
    except OverflowError:
        return None


def _from_posix(seconds: float) -> datetime | None:
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return None
