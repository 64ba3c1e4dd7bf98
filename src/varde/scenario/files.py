"""The server's web roots as installed, before any intruder: the pages a web-shell scan must
tell apart from planted ones (written by varde; they only have the shape of Exchange's pages)."""

from __future__ import annotations

from varde.scenario.engine import Simulation

_FRONTEND = "C:\\Program Files\\Microsoft\\Exchange Server\\V15\\FrontEnd\\HttpProxy"
_PAGE = ('<%@ Page Language="C#" AutoEventWireup="false" Inherits="Microsoft.Exchange.HttpProxy.{cls}" %>\r\n'
         '<!DOCTYPE html>\r\n<html><head><meta http-equiv="X-UA-Compatible" content="IE=10" /><title>{title}</title>'
         '</head>\r\n<body class="signInBg"><form id="form1" runat="server"><div id="mainLogonDiv">{title}</div>'
         '</form></body></html>\r\n')
BASELINE = (
    (f"{_FRONTEND}\\owa\\auth\\logon.aspx", "Logon", "Outlook"),
    (f"{_FRONTEND}\\owa\\auth\\errorFE.aspx", "ErrorFE", "Error"),
    (f"{_FRONTEND}\\owa\\auth\\expiredpassword.aspx", "ExpiredPassword", "Change password"),
    (f"{_FRONTEND}\\owa\\auth\\signout.aspx", "SignOut", "Signed out"),
    (f"{_FRONTEND}\\ecp\\auth\\TimeoutLogout.aspx", "TimeoutLogout", "Session timed out"),
)


def install(sim: Simulation, installed_us: int) -> None:
    """Write the installed web pages, dated ``installed_us``."""
    for path, cls, title in BASELINE:
        sim.write_file(path, _PAGE.format(cls=cls, title=title).encode(), installed_us)
    sim.write_file("C:\\inetpub\\wwwroot\\iisstart.htm",
                   b"<!DOCTYPE html>\r\n<html><head><title>IIS Windows Server</title></head><body></body></html>\r\n",
                   installed_us)
    sim.root.joinpath("C", "inetpub", "wwwroot", "aspnet_client", "system_web", "4_0_30319").mkdir(parents=True,
                                                                                               exist_ok=True)
