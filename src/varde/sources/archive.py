"""Zip archives as evidence: members are listed and streamed, never extracted to disk by name.

Every member is checked against :class:`~varde.sources.base.ArchiveLimits` before a byte is
decompressed: its declared size, its compression ratio, the member count and the nesting depth.
CPython's zipfile never yields more than a member's declared size, so the declared size is a
hard cap on what a lying header can produce.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import BinaryIO

from varde.errors import EvidenceError, SourceRef
from varde.sources.base import ArchiveLimits

ZIP_MAGIC = b"PK\x03\x04"


def is_zip(head: bytes) -> bool:
    """A local file header at the start: a zip archive (empty archives start with PK\\x05\\x06)."""
    return head.startswith((ZIP_MAGIC, b"PK\x05\x06"))


def check_member(info: zipfile.ZipInfo, limits: ArchiveLimits) -> str | None:
    """Why ``info`` must not be decompressed, or None when it is within the limits."""
    if info.flag_bits & 0x1:
        return "member is encrypted"
    if info.file_size > limits.max_member_bytes:
        return f"member declares {info.file_size} bytes, over the limit of {limits.max_member_bytes}"
    if info.file_size > limits.ratio_floor:
        ratio = info.file_size / max(info.compress_size, 1)
        if ratio > limits.max_ratio:
            return f"compression ratio {ratio:.0f}:1 is over the limit of {limits.max_ratio:.0f}:1 (zip bomb?)"
    return None


def list_members(archive: zipfile.ZipFile, limits: ArchiveLimits) -> Iterator[tuple[zipfile.ZipInfo, str | None]]:
    """Every file member with the reason it is refused (None when it may be read)."""
    infos = [i for i in archive.infolist() if not i.is_dir()]
    for number, info in enumerate(infos):
        if number >= limits.max_members:
            yield info, f"archive has more than {limits.max_members} members; the rest are not read"
            continue
        yield info, check_member(info, limits)


@contextmanager
def open_member(disk_path: Path, members: tuple[str, ...], limits: ArchiveLimits) -> Iterator[BinaryIO]:
    """Stream the member reached by following ``members`` from the archive at ``disk_path``."""
    if len(members) > limits.max_depth:
        raise EvidenceError("archives nested too deeply", SourceRef(str(disk_path), "!".join(members)))
    with ExitStack() as stack:
        handle: BinaryIO = stack.enter_context(open(disk_path, "rb"))
        for name in members:
            archive = stack.enter_context(zipfile.ZipFile(handle))
            info = archive.getinfo(name)
            reason = check_member(info, limits)
            if reason:
                raise EvidenceError(reason, SourceRef(str(disk_path), name))
            handle = stack.enter_context(archive.open(info))
        yield handle
