"""The report's web shell list: YARA-matched files with their hash, and shells named by requests,
one entry per shell."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from exchange_files import CHOPPER_ASPX, OWA_AUTH, write

from varde.analysis.webshells import _merge, served_url, shell_names
from varde.pipeline import HuntOptions, hunt
from varde.report.document import Webshell

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
    [entry] = report.webshells  # the requested page is the file on disk: one shell
    assert entry.sha256 == hashlib.sha256(CHOPPER_ASPX).hexdigest()
    assert entry.path == str(shell) and entry.files == [str(shell)] and entry.url == "/owa/auth/shell.aspx"
    detectors = {f.id: f.detector for f in report.findings}
    assert {detectors[i] for i in entry.finding_ids} == {"yara", "exchange"}
    assert entry.first_seen is not None
    assert shell.exists()


@pytest.mark.parametrize(("path", "url"), [
    ("C:\\Program Files\\Microsoft\\Exchange Server\\V15\\FrontEnd\\HttpProxy\\owa\\auth\\x.aspx", "/owa/auth/x.aspx"),
    ("\\\\127.0.0.1\\c$\\Program Files\\Microsoft\\Exchange Server\\V15\\ClientAccess\\Owa\\auth\\x.aspx",
     "/owa/auth/x.aspx"),
    ("C:\\inetpub\\wwwroot\\aspnet_client\\system_web\\y.aspx", "/aspnet_client/system_web/y.aspx"),
    ("/cases/42/EXCH01/aspnet_client/y.aspx", "/aspnet_client/y.aspx"),
    ("C:\\inetpub\\wwwroot\\z.aspx", "/z.aspx"),
    ("C:\\Windows\\Microsoft.NET\\Framework64\\v4.0.30319\\Temporary ASP.NET Files\\owa\\x.aspx", None),
    ("C:\\Users\\admin\\x.aspx", None),
])
def test_a_file_is_matched_by_the_url_it_is_served_at(path: str, url: str | None) -> None:
    assert served_url(path) == url


def test_a_url_without_host_stays_apart_when_two_hosts_have_the_file() -> None:
    """Which server's page a host-less request hit is ambiguous: the request stays an entry of its own."""
    owa = "C:\\Program Files\\Microsoft\\Exchange Server\\V15\\FrontEnd\\HttpProxy\\owa\\auth\\x.aspx"
    requested = Webshell(path="/owa/auth/x.aspx", host=None, first_seen=None, sha256=None, finding_ids=["r"],
                         url="/owa/auth/x.aspx")
    written = [Webshell(path=owa, host=h, first_seen=None, sha256=None, finding_ids=[h], files=[owa])
               for h in ("EXCH01", "EXCH02")]
    merged = sorted(_merge([requested, *written], {}), key=lambda w: w.host or "")
    assert [(w.host, w.url, w.finding_ids) for w in merged] == [
        (None, "/owa/auth/x.aspx", ["r"]), ("EXCH01", None, ["EXCH01"]), ("EXCH02", None, ["EXCH02"])]
    [one] = _merge([requested, written[0]], {"/owa/auth/x.aspx": [("/copy/owa/auth/x.aspx", "ab" * 32, None)]})
    assert (one.host, one.url, one.path, one.sha256) == ("EXCH01", "/owa/auth/x.aspx", "/copy/owa/auth/x.aspx", "ab" * 32)
    assert one.files == sorted([owa, "/copy/owa/auth/x.aspx"]) and one.finding_ids == ["EXCH01", "r"]


def test_an_intruders_shells_are_named_once_each() -> None:
    """A shell requested by URL and written as a file under a web root is one name (the URL as
    requested); a file outside every web root keeps its path; a PST exported to a web root over
    the admin share is the page it is served as."""
    written = "C:\\Program Files\\Microsoft\\Exchange Server\\V15\\FrontEnd\\HttpProxy\\owa\\auth\\Shell.aspx"
    exported = "\\\\EXCH01\\c$\\inetpub\\wwwroot\\aspnet_client\\x.pst"
    assert shell_names([written, "/owa/auth/Shell.aspx", "C:\\Windows\\Temp\\Shell.aspx", exported]) == [
        "/aspnet_client/x.pst", "/owa/auth/Shell.aspx", "C:\\Windows\\Temp\\Shell.aspx"]
    assert shell_names([written]) == ["/owa/auth/shell.aspx"]
