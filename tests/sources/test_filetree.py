"""The file inventory: every input, in archives too, with path, size, times, sha256 and web root.

Fixtures are written in ``tmp_path``: a copy of an Exchange server's files (tests/exchange_files.py)
and zip archives whose members carry the time fields Windows and Info-ZIP archivers write
(PKWARE APPNOTE 4.5.5 NTFS field, Info-ZIP extended timestamp), or only the DOS time.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from builders import jsonl, zip_bytes
from exchange_files import ASPNET_CLIENT, OWA_AUTH, WRITTEN, server_tree, write

from varde.events.files import tree_path, web_root, web_root_files
from varde.events.store import EventStore
from varde.ingest import ingest, plan
from varde.sources.base import ArchiveLimits, EvidenceFile
from varde.sources.filetimes import member_times

FILETIME_EPOCH = datetime(1601, 1, 1, tzinfo=UTC)


def filetime(moment: datetime) -> int:
    return (moment - FILETIME_EPOCH) // timedelta(microseconds=1) * 10


def inventory(paths: list[Path], case: Path, limits: ArchiveLimits | None = None) -> dict[str, dict]:
    """The ``files`` rows after reading ``paths`` inline, by path."""
    limits = limits or ArchiveLimits()
    case.mkdir(parents=True)
    with EventStore(case / "events.duckdb") as store:
        ingest(plan(paths, store, limits), store, case / "tmp", limits, workers=0)
        cursor = store.con.execute("SELECT * FROM files ORDER BY evidence")
        names = [d[0] for d in cursor.description]
        return {row[1]: dict(zip(names, row, strict=True)) for row in cursor.fetchall()}


def test_every_file_is_inventoried_with_hash_size_and_time(tmp_path: Path) -> None:
    files = server_tree(tmp_path / "evidence")
    (tmp_path / "evidence" / "logs").mkdir()
    (tmp_path / "evidence" / "logs" / "events.jsonl").write_bytes(jsonl(2))
    rows = inventory([tmp_path / "evidence"], tmp_path / "case")
    chopper = rows[str(files["chopper"])]
    assert chopper["sha256"] == hashlib.sha256(files["chopper"].read_bytes()).hexdigest()
    assert chopper["bytes"] == files["chopper"].stat().st_size
    assert chopper["modified"] == WRITTEN.replace(tzinfo=None) and chopper["time_source"] == "filesystem"
    assert chopper["name"] == "a8d3f1.aspx" and chopper["extension"] == ".aspx"
    assert chopper["web_root"] == "aspnet-client" and chopper["archive"] is None
    assert chopper["tree_path"].endswith("/C/inetpub/wwwroot/aspnet_client/system_web/a8d3f1.aspx")
    assert rows[str(files["oab_shell"])]["web_root"] == "exchange-frontend"
    assert rows[str(files["lsass_dump"])]["web_root"] is None
    # the zip in the web root, and its member, both listed; the read log too
    member = rows[f"{files['web_zip']}!users.csv"]
    assert member["archive"] == str(files["web_zip"]) and member["sha256"] == hashlib.sha256(b"alice,bob\n").hexdigest()
    assert member["tree_path"].endswith("aspnet_client/system_web/out.zip/users.csv")
    assert rows[str(tmp_path / "evidence" / "logs" / "events.jsonl")]["sha256"]
    assert len(rows) == len(files) + 3  # two zip members and the log


def test_web_root_files_for_the_detectors(tmp_path: Path) -> None:
    files = server_tree(tmp_path / "evidence")
    inventory([tmp_path / "evidence"], tmp_path / "case")
    with EventStore(tmp_path / "case" / "events.duckdb") as store:
        aspx = web_root_files(store, ["aspx"])
        everything = web_root_files(store)
    assert {f.path for f in aspx} == {str(files[k]) for k in ("chopper", "oab_shell", "oab_shell_utf16",
                                                              "benign_aspx", "pst_aspx")}
    assert aspx[0].path == str(files["benign_aspx"])  # oldest first
    assert aspx[0].modified == datetime(2020, 11, 12, 9, 0, tzinfo=UTC)
    assert all(f.sha256 and f.extension == ".aspx" for f in aspx)
    assert str(files["lsass_dump"]) not in {f.path for f in everything}
    assert f"{files['web_zip']}!users.csv" in {f.path for f in everything}


@pytest.mark.parametrize(
    ("path", "root"),
    [
        (f"/x/{OWA_AUTH}/shell.aspx", "exchange-frontend"),
        ("/x/C/Program Files/Microsoft/Exchange Server/V15/ClientAccess/ecp/x.aspx", "exchange-backend"),
        (f"/x/{ASPNET_CLIENT}/x.aspx", "aspnet-client"),
        ("/x/C/inetpub/wwwroot/iisstart.htm", "iis-wwwroot"),
        ("/x/C/Windows/Microsoft.NET/Framework64/v4.0.30319/Temporary ASP.NET Files/owa/a.dll", "aspnet-temp"),
        ("/x/C/Windows/Temp/lsass.dmp", None),
        ("/x/C/inetpub/logs/LogFiles/W3SVC1/u_ex210303.log", None),
    ],
)
def test_web_roots(path: str, root: str | None) -> None:
    assert web_root(path) == root


def test_zip_member_times_from_ntfs_unix_and_dos_fields(tmp_path: Path) -> None:
    written, accessed, created = (datetime(2021, 3, 3, 4, 17, 9, 123456, tzinfo=UTC),
                                  datetime(2021, 3, 4, 1, 0, tzinfo=UTC), datetime(2021, 3, 2, 23, 59, 58, tzinfo=UTC))
    ntfs = struct.pack("<I", 0) + struct.pack("<HH", 1, 24) + struct.pack(
        "<QQQ", filetime(written), filetime(accessed), filetime(created))
    unix = struct.pack("<Bi", 1, int(datetime(2021, 3, 5, 6, 7, 8, tzinfo=UTC).timestamp()))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, extra in (("ntfs.aspx", struct.pack("<HH", 0x000A, len(ntfs)) + ntfs),
                            ("unix.aspx", struct.pack("<HH", 0x5455, len(unix)) + unix), ("dos.aspx", b"")):
            info = zipfile.ZipInfo(f"inetpub\\wwwroot\\aspnet_client\\{name}", (2021, 3, 3, 5, 17, 10))
            info.extra = extra
            archive.writestr(info, b"<%@ Page %>")
    write(tmp_path / "evidence", "collection.zip", buffer.getvalue())
    rows = inventory([tmp_path / "evidence"], tmp_path / "case")
    base = str(tmp_path / "evidence" / "collection.zip") + "!inetpub\\wwwroot\\aspnet_client\\"
    ntfs_row, unix_row, dos_row = rows[base + "ntfs.aspx"], rows[base + "unix.aspx"], rows[base + "dos.aspx"]
    assert (ntfs_row["modified"], ntfs_row["accessed"], ntfs_row["created"], ntfs_row["time_source"]) == (
        written.replace(tzinfo=None), accessed.replace(tzinfo=None), created.replace(tzinfo=None), "zip-ntfs")
    assert (unix_row["modified"], unix_row["time_source"]) == (datetime(2021, 3, 5, 6, 7, 8), "zip-unix")
    assert (dos_row["modified"], dos_row["time_source"]) == (datetime(2021, 3, 3, 5, 17, 10), "zip-dos")
    # Windows separators in member names: the tree path still finds the web root
    assert ntfs_row["tree_path"].endswith("collection.zip/inetpub/wwwroot/aspnet_client/ntfs.aspx")
    assert ntfs_row["web_root"] == "aspnet-client"


def test_damaged_time_fields_fall_back(tmp_path: Path) -> None:
    info = zipfile.ZipInfo("a.txt", (1980, 1, 1, 0, 0, 0))
    info.extra = struct.pack("<HH", 0x000A, 40) + b"\x00" * 8  # declares more than it holds
    assert member_times(info).source == "zip-dos"
    info.extra = struct.pack("<HH", 0x000A, 32) + bytes(4) + struct.pack("<HH", 1, 24) + bytes(24)
    times = member_times(info)
    assert times.source == "zip-ntfs" and times.modified is None  # zero FILETIMEs mean "not set"
    info.date_time = (1980, 0, 0, 0, 0, 0)
    info.extra = b""
    assert member_times(info).modified is None


def test_refused_members_are_inventoried_without_hash(tmp_path: Path) -> None:
    archive = write(tmp_path / "evidence", "bomb.zip",
                    zip_bytes({"zeros.bin": bytes(8 << 20), "shell.aspx": b"<%@ Page %>"}))
    rows = inventory([archive], tmp_path / "case", ArchiveLimits(max_ratio=100, ratio_floor=1 << 20))
    zeros = rows[f"{archive}!zeros.bin"]
    assert zeros["sha256"] is None and zeros["bytes"] == 8 << 20
    assert rows[f"{archive}!shell.aspx"]["sha256"] == hashlib.sha256(b"<%@ Page %>").hexdigest()


def test_tree_path_of_a_relative_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    evidence = EvidenceFile(path="srv/owa/auth/x.aspx", disk_path=Path("srv/owa/auth/x.aspx"))
    assert tree_path(evidence) == f"{tmp_path.as_posix()}/srv/owa/auth/x.aspx"


def test_file_names_that_are_not_utf8_are_kept_escaped(tmp_path: Path) -> None:
    """A name with bytes that are not UTF-8 (an attacker's, or another code page's) is stored and
    shown with visible escapes; the file is still read, hashed and scanned from its real name."""
    from exchange_files import CHOPPER_ASPX

    from varde.pipeline import HuntOptions, hunt

    folder = tmp_path / "evidence" / ASPNET_CLIENT
    folder.mkdir(parents=True)
    try:
        real = Path(os.fsdecode(os.fsencode(folder) + b"/\xff\xfeshell.aspx"))
        real.write_bytes(CHOPPER_ASPX)
    except (OSError, UnicodeError):
        pytest.skip("this file system does not take non-UTF-8 names")
    report = hunt([tmp_path / "evidence"], tmp_path / "case", HuntOptions(builtin_rules=False, workers=0)).report
    shown = f"{folder}/\\xff\\xfeshell.aspx"
    [entry] = report.case.evidence
    assert entry.path == shown and entry.sha256 == hashlib.sha256(CHOPPER_ASPX).hexdigest()
    [finding] = report.findings
    assert finding.title.endswith(": \\xff\\xfeshell.aspx") and finding.evidence[0].path == shown
