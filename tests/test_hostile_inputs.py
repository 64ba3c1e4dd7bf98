"""Hostile and damaged evidence: zip bombs, lying or encrypted or damaged archives, path traversal
in member names, absurd values, and the rule that evidence is never written.

All fixtures are built in ``tmp_path`` at test time.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import struct
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from builders import jsonl, write_intrusion_events, zip_bytes
from builders import sysmon_event as event

from varde.events.store import EventStore
from varde.ingest import ingest, plan
from varde.pipeline import HuntOptions, hunt
from varde.sources.base import ArchiveLimits
from varde.sources.discover import discover

EVTX_GARBAGE = b"ElfFile\x00" + bytes(4088) + b"ElfChnk\x00" + b"\xab" * 70_000




def read(paths: list[Path], case: Path, limits: ArchiveLimits | None = None, workers: int = 0) -> dict:
    limits = limits or ArchiveLimits()
    case.mkdir(parents=True)
    with EventStore(case / "events.duckdb") as store:
        ingest(plan(paths, store, limits), store, case / "tmp", limits, workers=workers)
        cols = ("path", "reader", "sha256", "records", "skipped_records", "complete")
        evidence = {
            r[0]: dict(zip(cols, r, strict=True))
            for r in store.query(f"SELECT {', '.join(cols)} FROM evidence")
        }
        warnings: dict[str, list[str]] = {}
        for path, message in store.query(
            "SELECT v.path, w.message FROM read_warnings w JOIN evidence v ON v.id = w.evidence"
        ):
            warnings.setdefault(path, []).append(message)
        events = store.event_count()
    return {"evidence": evidence, "warnings": warnings, "events": events}


# --- zip bombs and other archive limits ------------------------------------------------------------


@pytest.fixture
def bomb(tmp_path: Path) -> Path:
    """8 MiB of zeros (deflates to ~8 KiB, ratio ~1000:1) next to a small, honest member."""
    path = tmp_path / "evidence" / "bomb.zip"
    path.parent.mkdir()
    path.write_bytes(zip_bytes({"zeros.jsonl": bytes(8 << 20), "honest.jsonl": jsonl(3)}))
    assert path.stat().st_size < 64 << 10
    return path


def test_zip_bomb_by_ratio_is_refused_unopened(tmp_path: Path, bomb: Path) -> None:
    limits = ArchiveLimits(max_ratio=100, ratio_floor=1 << 20)
    result = read([bomb], tmp_path / "case", limits)
    zeros = result["evidence"][f"{bomb}!zeros.jsonl"]
    assert zeros["reader"] is None and zeros["sha256"] is None and zeros["complete"] is False
    assert any("zip bomb" in m for m in result["warnings"][f"{bomb}!zeros.jsonl"])
    assert result["evidence"][f"{bomb}!honest.jsonl"]["records"] == 3
    assert result["events"] == 3


def test_zip_member_over_the_size_limit_is_refused(tmp_path: Path, bomb: Path) -> None:
    result = read([bomb], tmp_path / "case", ArchiveLimits(max_member_bytes=1 << 20))
    assert result["evidence"][f"{bomb}!zeros.jsonl"]["sha256"] is None
    assert any("over the limit" in m for m in result["warnings"][f"{bomb}!zeros.jsonl"])
    assert result["evidence"][f"{bomb}!honest.jsonl"]["records"] == 3


def test_zip_member_declaring_a_huge_size_is_refused_with_default_limits(tmp_path: Path, bomb: Path) -> None:
    """A central directory that claims ~4 GB for an 8 KiB member: refused before a byte is inflated."""
    data = bytearray(bomb.read_bytes())
    central = data.find(b"PK\x01\x02")
    assert data[central + 46 : central + 46 + 11] == b"zeros.jsonl"
    struct.pack_into("<I", data, central + 24, 0xF000_0000)
    bomb.write_bytes(data)
    (member,) = [f for f in discover([bomb]) if f.evidence.path.endswith("!zeros.jsonl")]
    assert member.refused and member.evidence.size == 0xF000_0000
    assert "zip bomb" in (member.note or "")


def test_nested_zip_bomb_is_refused_inside_the_outer_archive(tmp_path: Path, bomb: Path) -> None:
    outer = tmp_path / "evidence" / "outer.zip"
    outer.write_bytes(zip_bytes({"inner/bomb.zip": bomb.read_bytes()}))
    results = {
        f.evidence.path: f for f in discover([outer], ArchiveLimits(max_ratio=100, ratio_floor=1 << 20))
    }
    assert results[f"{outer}!inner/bomb.zip!zeros.jsonl"].refused
    assert results[f"{outer}!inner/bomb.zip!honest.jsonl"].reader == "event-json"


def test_encrypted_member_is_refused(tmp_path: Path) -> None:
    data = bytearray(zip_bytes({"secret.jsonl": jsonl(2)}))
    data[6] |= 0x01  # general purpose flag: encrypted, local header
    central = data.find(b"PK\x01\x02")
    data[central + 8] |= 0x01  # ... and central directory
    path = tmp_path / "locked.zip"
    path.write_bytes(data)
    result = read([path], tmp_path / "case")
    member = f"{path}!secret.jsonl"
    assert result["evidence"][member]["reader"] is None and result["evidence"][member]["sha256"] is None
    assert result["warnings"][member] == ["member is encrypted"]


# --- damaged archives ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "damage",
    ["truncated", "pk-magic-then-junk", "no-central-directory"],
)
def test_damaged_zip_is_listed_hashed_and_warned(tmp_path: Path, damage: str) -> None:
    good = zip_bytes({"a.jsonl": jsonl(50), "b.jsonl": jsonl(50)})
    data = {
        "truncated": good[: len(good) // 2],
        "pk-magic-then-junk": b"PK\x03\x04" + bytes(range(256)) * 8,
        "no-central-directory": good[: good.find(b"PK\x01\x02")],
    }[damage]
    path = tmp_path / "evidence" / "damaged.zip"
    path.parent.mkdir()
    path.write_bytes(data)
    (tmp_path / "evidence" / "z-after.jsonl").write_bytes(jsonl(2))
    result = read([tmp_path / "evidence"], tmp_path / "case")
    row = result["evidence"][str(path)]
    assert row["reader"] is None and row["sha256"] == hashlib.sha256(data).hexdigest()
    assert any("damaged zip" in m for m in result["warnings"][str(path)])
    assert result["evidence"][str(tmp_path / "evidence" / "z-after.jsonl")]["records"] == 2


def test_member_with_a_bad_crc_is_reported(tmp_path: Path) -> None:
    content = jsonl(300)
    data = bytearray(zip_bytes({"events.jsonl": content, "other.jsonl": jsonl(2)}))
    data[30 + len("events.jsonl") + 2000] ^= 0x01  # one bit in the deflate stream, far from its start
    path = tmp_path / "crc.zip"
    path.write_bytes(data)
    result = read([path], tmp_path / "case")
    member = f"{path}!events.jsonl"
    assert result["warnings"].get(member), "damaged member not reported"
    assert result["evidence"][member]["complete"] is False
    assert result["evidence"][f"{path}!other.jsonl"]["records"] == 2


def test_member_with_a_damaged_deflate_stream_does_not_abort_the_hunt(tmp_path: Path) -> None:
    data = bytearray(zip_bytes({"events.jsonl": jsonl(300)}))
    start = 30 + len("events.jsonl")
    for offset in range(start + 2, start + 40):
        data[offset] ^= 0xFF
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    (evidence / "broken.zip").write_bytes(data)
    (evidence / "good.jsonl").write_bytes(jsonl(2))
    result = read([evidence], tmp_path / "case")
    assert result["evidence"][str(evidence / "good.jsonl")]["records"] == 2
    assert result["warnings"].get(f"{evidence / 'broken.zip'}!events.jsonl")


# --- member names are data, never paths ------------------------------------------------------------


def test_zip_member_names_are_never_used_as_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token = f"varde-traversal-{uuid.uuid4().hex}"
    names = [
        f"../../../../../../../../etc/{token}-passwd",
        f"../../{token}-up.evtx",  # an EVTX member: copied into scratch to be parsed
        f"/tmp/{token}-absolute.jsonl",
        f"a/../../{token}-dotdot.jsonl",
        f"..\\..\\{token}-backslash.jsonl",
        f"C:/Windows/{token}-drive.jsonl",
    ]
    contents = [jsonl(1), EVTX_GARBAGE, jsonl(1), jsonl(1), jsonl(1), jsonl(1)]
    evidence = tmp_path / "x" / "evidence"
    evidence.mkdir(parents=True)
    archive = evidence / "evil.zip"
    archive.write_bytes(zip_bytes(dict(zip(names, contents, strict=True))))
    work = tmp_path / "x" / "cwd" / "deeper"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    case = tmp_path / "x" / "cases" / "one"

    result = hunt([evidence], case, HuntOptions(builtin_rules=False, workers=2))

    paths = [e.path for e in result.report.case.evidence]
    assert paths == [str(archive)] + [f"{archive}!{name}" for name in names]
    readers = {e.path: e.reader for e in result.report.case.evidence}
    assert readers[f"{archive}!../../{token}-up.evtx"] == "evtx"
    assert sum(e.records for e in result.report.case.evidence) == 5
    written = [p for p in Path(tmp_path).rglob(f"*{token}*")]
    assert written == []
    for place in (Path("/etc"), Path("/tmp"), Path("/"), Path("/tmp").resolve(), case.parent, Path.cwd()):
        assert not any(token in p.name for p in place.iterdir()), place
    assert not Path(f"/etc/{token}-passwd").exists()
    assert not (case / "tmp").exists() or not any((case / "tmp").rglob("*"))


# --- absurd values ---------------------------------------------------------------------------------


def test_deeply_nested_json_is_reported_not_fatal(tmp_path: Path) -> None:
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    (evidence / "lines.jsonl").write_bytes(jsonl(1) + b"[" * 100_000 + b"\n" + jsonl(1, start=1))
    (evidence / "pretty.json").write_bytes(b'{\n "Event": ' + b"[" * 100_000 + b"\n")
    (evidence / "z.jsonl").write_bytes(jsonl(2))
    result = read([evidence], tmp_path / "case")
    assert result["evidence"][str(evidence / "lines.jsonl")]["records"] == 2
    assert result["evidence"][str(evidence / "lines.jsonl")]["skipped_records"] == 1
    assert result["warnings"][str(evidence / "pretty.json")]
    assert result["evidence"][str(evidence / "z.jsonl")]["records"] == 2


def _out_of_range_evidence(folder: Path) -> None:
    folder.mkdir()
    lines = [json.dumps(event(n)).encode() for n in range(5)]
    lines.insert(2, json.dumps(event(99, EventID=2**40)).encode())  # no int32 holds this event id
    (folder / "a-hostile.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    (folder / "b-good.jsonl").write_bytes(jsonl(2))


def test_out_of_range_event_id_in_worker_processes(tmp_path: Path) -> None:
    """The worker isolates the failure: the other file and the other events are kept, the file is reported."""
    _out_of_range_evidence(tmp_path / "evidence")
    result = read([tmp_path / "evidence"], tmp_path / "case", workers=2)
    hostile = str(tmp_path / "evidence" / "a-hostile.jsonl")
    assert result["evidence"][str(tmp_path / "evidence" / "b-good.jsonl")]["records"] == 2
    assert result["warnings"].get(hostile)
    assert result["evidence"][hostile]["records"] >= 5 or result["evidence"][hostile]["complete"] is False


def test_out_of_range_event_id_in_process(tmp_path: Path) -> None:
    _out_of_range_evidence(tmp_path / "evidence")
    result = read([tmp_path / "evidence"], tmp_path / "case", workers=0)
    assert result["evidence"][str(tmp_path / "evidence" / "b-good.jsonl")]["records"] == 2
    assert result["evidence"][str(tmp_path / "evidence" / "a-hostile.jsonl")]["records"] >= 5


# --- evidence is read-only -------------------------------------------------------------------------


def _snapshot(root: Path) -> dict[str, tuple]:
    """Every entry below ``root``: content hash, size, mtime and mode (folders: mtime and mode)."""
    out = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            info = path.lstat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if stat.S_ISREG(info.st_mode) else None
            out[str(path.relative_to(root))] = (
                digest,
                info.st_size if digest else None,
                info.st_mtime_ns,
                info.st_mode,
            )
    info = root.lstat()
    out["."] = (None, None, info.st_mtime_ns, info.st_mode)
    return out


@pytest.fixture
def evidence_folder(tmp_path: Path) -> Path:
    root = tmp_path / "evidence"
    write_intrusion_events(root / "host1")
    (root / "host1" / "unknown.bin").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    (root / "host2").mkdir()
    (root / "host2" / "triage.zip").write_bytes(
        zip_bytes({"Logs/System.evtx": EVTX_GARBAGE, "nested.zip": zip_bytes({"e.jsonl": jsonl(3)})})
    )
    (root / "host2" / "damaged.evtx").write_bytes(EVTX_GARBAGE[:5000])
    return root


def _chmod_tree(root: Path, writable: bool) -> None:
    for folder, _dirs, files in os.walk(root):
        for name in files:
            os.chmod(Path(folder, name), 0o644 if writable else 0o444)
        os.chmod(folder, 0o755 if writable else 0o555)


@pytest.fixture
def read_only(evidence_folder: Path) -> Iterator[Path]:
    """The evidence folder with every write bit removed (under root this does not stop writes, so the
    before/after snapshot is what proves nothing was written)."""
    _chmod_tree(evidence_folder, writable=False)
    try:
        yield evidence_folder
    finally:
        _chmod_tree(evidence_folder, writable=True)


def test_hunt_leaves_evidence_untouched(tmp_path: Path, evidence_folder: Path) -> None:
    before = _snapshot(evidence_folder)
    result = hunt([evidence_folder], tmp_path / "case", HuntOptions(workers=2))
    assert _snapshot(evidence_folder) == before
    assert result.report.findings  # the demo evidence is read and matched
    assert len(result.report.case.evidence) == 7


def test_hunt_over_read_only_evidence(tmp_path: Path, read_only: Path) -> None:
    before = _snapshot(read_only)
    result = hunt([read_only], tmp_path / "case", HuntOptions(workers=2))
    assert _snapshot(read_only) == before
    assert {e.path for e in result.report.case.evidence if e.reader == "event-json"} == {
        str(read_only / "host1" / "EXCH01-events.jsonl"),
        f"{read_only / 'host2' / 'triage.zip'}!nested.zip!e.jsonl",
    }
    assert result.report.findings
    assert (tmp_path / "case" / "report.json").is_file()
