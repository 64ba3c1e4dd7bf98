"""Evidence discovery: walking folders, sniffing formats by content, and opening zip archives.

Fixtures are generated in ``tmp_path``. A minimal EVTX head (``ElfFile\\0`` and zeros) is enough
for discovery, which only sniffs the first bytes.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path

import pytest
from builders import jsonl, zip_bytes

from varde.events.store import EventStore
from varde.ingest import ingest, plan
from varde.sources.base import ArchiveLimits
from varde.sources.discover import Found, discover

EVTX_HEAD = b"ElfFile\x00" + bytes(4088)
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00\x90wS\xde"




def found(paths: list[Path], limits: ArchiveLimits | None = None) -> list[Found]:
    return list(discover(paths, limits))


def by_path(results: list[Found]) -> dict[str, Found]:
    return {f.evidence.path: f for f in results}


def read(
    paths: list[Path], case: Path, limits: ArchiveLimits | None = None
) -> tuple[list[tuple], list[tuple]]:
    """(evidence rows, warning rows) after reading ``paths`` inline into a new store."""
    limits = limits or ArchiveLimits()
    case.mkdir(parents=True)
    with EventStore(case / "events.duckdb") as store:
        ingest(plan(paths, store, limits), store, case / "tmp", limits, workers=0)
        evidence = store.query("SELECT path, reader, sha256, records, complete FROM evidence ORDER BY id")
        warnings = store.query(
            "SELECT v.path, w.locator, w.message FROM read_warnings w "
            "JOIN evidence v ON v.id = w.evidence ORDER BY v.id"
        )
    return evidence, warnings


# --- sniffing by content, not by name --------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "reader"),
    [
        ("security.txt", EVTX_HEAD, "evtx"),
        ("no-extension", EVTX_HEAD, "evtx"),
        ("events.log", jsonl(2), "event-json"),
        ("events.evtx", jsonl(2), "event-json"),
        ("image.evtx", PNG, None),
        ("image.json", PNG, None),
        ("notes.jsonl", b"just some text\n", None),
        ("empty.evtx", b"", None),
    ],
)
def test_reader_is_chosen_by_content(tmp_path: Path, name: str, content: bytes, reader: str | None) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    (result,) = found([path])
    assert result.reader == reader
    assert result.evidence.path == str(path) and result.evidence.size == len(content)
    assert not result.refused
    assert (result.note is None) == (reader is not None)


def test_unknown_files_are_listed_hashed_and_warned(tmp_path: Path) -> None:
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    (evidence / "screenshot.png").write_bytes(PNG)
    (evidence / "events.jsonl").write_bytes(jsonl(3))
    rows, warnings = read([evidence], tmp_path / "case")
    assert rows == [
        (str(evidence / "events.jsonl"), "event-json", hashlib.sha256(jsonl(3)).hexdigest(), 3, True),
        (str(evidence / "screenshot.png"), None, hashlib.sha256(PNG).hexdigest(), 0, True),
    ]
    assert warnings == [(str(evidence / "screenshot.png"), None, "no reader recognises this file's format")]


# --- walking ---------------------------------------------------------------------------------------


def test_folders_are_walked_in_sorted_order(tmp_path: Path) -> None:
    root = tmp_path / "evidence"
    for rel in ("b/z.jsonl", "b/a.jsonl", "a/c/y.jsonl", "a/x.jsonl", "m.jsonl", "A.jsonl"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(jsonl(1))
    names = [Path(f.evidence.path).relative_to(root).as_posix() for f in found([root])]
    assert names == ["A.jsonl", "m.jsonl", "a/x.jsonl", "a/c/y.jsonl", "b/a.jsonl", "b/z.jsonl"]
    assert names == [Path(f.evidence.path).relative_to(root).as_posix() for f in found([root])]  # stable


def test_files_and_folders_can_be_mixed(tmp_path: Path) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "a.jsonl").write_bytes(jsonl(1))
    single = tmp_path / "single.jsonl"
    single.write_bytes(jsonl(1))
    assert [f.evidence.path for f in found([single, folder])] == [str(single), str(folder / "a.jsonl")]


def test_symlinked_folders_are_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.jsonl").write_bytes(jsonl(1))
    root = tmp_path / "evidence"
    root.mkdir()
    (root / "real.jsonl").write_bytes(jsonl(1))
    os.symlink(outside, root / "link")
    assert [f.evidence.path for f in found([root])] == [str(root / "real.jsonl")]


# --- zip archives ----------------------------------------------------------------------------------


def test_zip_members_get_archive_bang_member_paths(tmp_path: Path) -> None:
    archive = tmp_path / "collection.zip"
    archive.write_bytes(zip_bytes({"host1/sysmon.jsonl": jsonl(2), "host1/": b"", "readme.txt": b"hello\n"}))
    results = found([archive])
    assert [(f.evidence.path, f.reader) for f in results] == [
        (str(archive), "zip"),
        (f"{archive}!host1/sysmon.jsonl", "event-json"),
        (f"{archive}!readme.txt", None),
    ]
    member = results[1].evidence
    assert member.disk_path == archive and member.members == ("host1/sysmon.jsonl",)
    assert member.size == len(jsonl(2))


def test_nested_zip_is_opened_and_read(tmp_path: Path) -> None:
    inner = zip_bytes({"deep/events.jsonl": jsonl(3), "deep/sec.evtx": EVTX_HEAD})
    archive = tmp_path / "outer.zip"
    archive.write_bytes(zip_bytes({"inner.zip": inner, "top.jsonl": jsonl(2, start=10)}))
    results = by_path(found([archive]))
    assert results[f"{archive}!inner.zip"].reader == "zip"
    nested = results[f"{archive}!inner.zip!deep/events.jsonl"]
    assert nested.reader == "event-json" and nested.evidence.members == ("inner.zip", "deep/events.jsonl")
    assert results[f"{archive}!inner.zip!deep/sec.evtx"].reader == "evtx"

    rows, _ = read([archive], tmp_path / "case")
    records = {path: n for path, _, _, n, _ in rows}
    assert records[f"{archive}!inner.zip!deep/events.jsonl"] == 3
    assert records[f"{archive}!top.jsonl"] == 2
    hashes = {path: digest for path, _, digest, _, _ in rows}
    assert (
        hashes[f"{archive}!inner.zip!deep/events.jsonl"] == hashlib.sha256(jsonl(3)).hexdigest()
    )  # as decompressed
    assert hashes[str(archive)] == hashlib.sha256(archive.read_bytes()).hexdigest()


def test_zip_nesting_deeper_than_the_limit_is_not_opened(tmp_path: Path) -> None:
    data = zip_bytes({"events.jsonl": jsonl(1)})
    for level in range(5):
        data = zip_bytes({f"level{level}.zip": data})
    archive = tmp_path / "russian-doll.zip"
    archive.write_bytes(data)
    results = found([archive], ArchiveLimits(max_depth=3))
    deepest = results[-1]
    assert len(deepest.evidence.members) == 3
    assert deepest.reader is None and "nested deeper" in (deepest.note or "")
    assert all("events.jsonl" not in f.evidence.path for f in results)


def test_member_count_limit(tmp_path: Path) -> None:
    archive = tmp_path / "many.zip"
    archive.write_bytes(zip_bytes({f"e{n}.jsonl": jsonl(1, start=n) for n in range(6)}))
    results = found([archive], ArchiveLimits(max_members=4))[1:]
    assert [f.refused for f in results] == [False] * 4 + [True] * 2
    assert all("more than 4 members" in (f.note or "") for f in results[4:])


def test_empty_zip_archive(tmp_path: Path) -> None:
    archive = tmp_path / "empty.zip"
    archive.write_bytes(zip_bytes({}))
    assert [(f.evidence.path, f.reader) for f in found([archive])] == [(str(archive), "zip")]


def test_stored_and_deflated_members(tmp_path: Path) -> None:
    stored = tmp_path / "stored.zip"
    stored.write_bytes(zip_bytes({"a.jsonl": jsonl(2)}, zipfile.ZIP_STORED))
    rows, warnings = read([stored], tmp_path / "case")
    assert rows[1][0] == f"{stored}!a.jsonl" and rows[1][3] == 2 and warnings == []


def test_every_file_of_a_large_tree_is_accounted_for(tmp_path: Path) -> None:
    """More files than the store holds back before writing their accounting: each one still gets
    its reader, record count, sha256 and completeness (see EventStore.flush_evidence)."""
    from builders import read

    from varde.events.store import EVIDENCE_BATCH

    folder = tmp_path / "logs"
    folder.mkdir()
    count = EVIDENCE_BATCH + 20
    for n in range(count):
        (folder / f"events{n:04d}.jsonl").write_bytes(jsonl(n % 3 + 1, start=n * 10))
    evidence = read(tmp_path, folder).evidence
    assert len(evidence) == count
    for n, row in enumerate(evidence):
        data = (folder / f"events{n:04d}.jsonl").read_bytes()
        assert row["records"] == n % 3 + 1 and row["complete"] is True
        assert row["sha256"] == hashlib.sha256(data).hexdigest() and row["bytes"] == len(data)
