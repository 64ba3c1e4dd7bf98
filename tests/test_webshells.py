"""The report's web shell list: YARA-matched files with their hash, and shells named by requests."""

from __future__ import annotations

import hashlib
from pathlib import Path

from exchange_files import CHOPPER_ASPX, OWA_AUTH, write

from varde.pipeline import HuntOptions, hunt

IIS_LOG = """#Software: Microsoft Internet Information Services 10.0
#Version: 1.0
#Date: 2021-03-03 00:00:01
#Fields: date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip cs(User-Agent) cs(Referer) sc-status sc-substatus sc-win32-status time-taken
2021-03-03 08:00:00 10.0.0.5 POST /owa/auth/shell.aspx - 443 - 203.0.113.7 Mozilla/5.0 - 200 0 0 20
"""


def test_shell_file_and_its_requests(tmp_path: Path) -> None:
    evidence = tmp_path / "evidence"
    shell = write(evidence, f"{OWA_AUTH}/shell.aspx", CHOPPER_ASPX)
    write(evidence, "C/inetpub/logs/LogFiles/W3SVC1/u_ex210303.log", IIS_LOG.encode())
    report = hunt([evidence], tmp_path / "case", HuntOptions(workers=0)).report
    by_path = {w.path: w for w in report.webshells}
    [on_disk] = [w for p, w in by_path.items() if p.endswith("shell.aspx") and p != "/owa/auth/shell.aspx"]
    assert on_disk.sha256 == hashlib.sha256(CHOPPER_ASPX).hexdigest() and on_disk.finding_ids
    requested = by_path["/owa/auth/shell.aspx"]
    assert requested.finding_ids and requested.first_seen is not None
    assert requested.sha256 == on_disk.sha256  # the requested page is the file on disk
    assert shell.exists()
