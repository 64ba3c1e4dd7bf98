"""Windows events of the simulated server, in the System/EventData shapes real EVTX records have.

Field names and order follow real records as the ``evtx`` crate renders them (the crate's own
samples, the SigmaHQ regression data): Security 4624/4625/4688 (version 2), Sysmon 1/3/10/11,
MSExchange CmdletLogs (positional ``Data``, as in the crate's ``MSExchange_Management_wec.evtx``).
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from varde.scenario.engine import Simulation

SECURITY = "Security"
SYSMON = "Microsoft-Windows-Sysmon/Operational"
APPLICATION = "Application"
MANAGEMENT = "MSExchange Management"

_SECURITY_PROVIDER = {"#attributes": {"Name": "Microsoft-Windows-Security-Auditing",
                                      "Guid": "54849625-5478-4994-A5BA-3E3B0328C30D"}}
_SYSMON_PROVIDER = {"#attributes": {"Name": "Microsoft-Windows-Sysmon", "Guid": "5770385F-C22A-43E0-BF4C-06F5698FFBD9"}}
_SYSMON_VERSION = {1: 5, 3: 5, 10: 3, 11: 2}
_SECURITY_TASK = {4624: (2, 12544, "0x8020000000000000"), 4625: (0, 12544, "0x8010000000000000"),
                  4688: (2, 13312, "0x8020000000000000")}

W3WP = "C:\\Windows\\System32\\inetsrv\\w3wp.exe"
EXCHANGE_BIN = "C:\\Program Files\\Microsoft\\Exchange Server\\V15"


@dataclass(frozen=True)
class Proc:
    """A running process, as later events refer to it."""

    guid: str
    pid: int
    image: str
    command: str
    user: str = "NT AUTHORITY\\SYSTEM"


def utc_text(ts_us: int) -> str:
    """``2021-03-03 02:41:55.123``: Sysmon's UtcTime."""
    moment = datetime.fromtimestamp(ts_us // 1_000_000, UTC)
    return f"{moment:%Y-%m-%d %H:%M:%S}.{ts_us % 1_000_000 // 1000:03d}"


def process_guid(rng: random.Random) -> str:
    """A Sysmon process GUID (upper case, braces omitted as the crate renders it)."""
    return str(uuid.UUID(int=rng.getrandbits(128))).upper()


def app_pool(sim: Simulation, pool: str) -> Proc:
    """The IIS worker process of an Exchange application pool (stable for the whole case)."""
    rng = sim.rng("pool", pool)
    command = (
        f'c:\\windows\\system32\\inetsrv\\w3wp.exe -ap "{pool}" -v "v4.0" -c "{EXCHANGE_BIN}\\bin\\'
        f'GenericAppPoolConfigWithGCServerEnabledFalse.config" -a \\\\.\\pipe\\iisipm{uuid.UUID(int=rng.getrandbits(128))} '
        f'-h "C:\\inetpub\\temp\\apppools\\{pool}\\{pool}.config" -w "" -m 0'
    )
    return Proc(process_guid(rng), sim.org.pids.get(pool, 4000), W3WP, command)


def sysmon(sim: Simulation, ts_us: int, event_id: int, data: dict[str, Any]) -> None:
    """One Sysmon event."""
    system = {"Provider": _SYSMON_PROVIDER, "EventID": event_id, "Version": _SYSMON_VERSION[event_id], "Level": 4,
              "Task": event_id, "Opcode": 0, "Keywords": "0x8000000000000000",
              "Execution": {"#attributes": {"ProcessID": 2284, "ThreadID": 3160}},
              "Security": {"#attributes": {"UserID": "S-1-5-18"}}}
    sim.emit(ts_us, ("event", SYSMON), system, {"RuleName": "-", "UtcTime": utc_text(ts_us), **data})


def security(sim: Simulation, ts_us: int, event_id: int, data: dict[str, Any]) -> None:
    """One Security event."""
    version, task, keywords = _SECURITY_TASK[event_id]
    system = {"Provider": _SECURITY_PROVIDER, "EventID": event_id, "Version": version, "Level": 0, "Task": task,
              "Opcode": 0, "Keywords": keywords, "Execution": {"#attributes": {"ProcessID": 636, "ThreadID": 1404}}}
    sim.emit(ts_us, ("event", SECURITY), system, data)


def spawn(sim: Simulation, ts_us: int, rng: random.Random, parent: Proc, image: str, command: str,
          user: str = "NT AUTHORITY\\SYSTEM") -> Proc:
    """A new process: Sysmon 1 and Security 4688 (process creation auditing with command lines)."""
    child = Proc(process_guid(rng), rng.randint(1000, 20000) // 4 * 4, image, command, user)
    name = image.rsplit("\\", 1)[-1]
    sysmon(sim, ts_us, 1, {
        "ProcessGuid": child.guid, "ProcessId": child.pid, "Image": image, "FileVersion": "10.0.14393.0",
        "Description": name, "Product": "Microsoft® Windows® Operating System", "Company": "Microsoft Corporation",
        "OriginalFileName": name.upper() if name.lower() == "cmd.exe" else name, "CommandLine": command,
        "CurrentDirectory": "C:\\Windows\\system32\\", "User": user, "LogonGuid": process_guid(rng),
        "LogonId": "0x3e7", "TerminalSessionId": 0, "IntegrityLevel": "System",
        "Hashes": f"SHA256={rng.getrandbits(256):064X}", "ParentProcessGuid": parent.guid,
        "ParentProcessId": parent.pid, "ParentImage": parent.image, "ParentCommandLine": parent.command,
    })
    account = user.split("\\")[-1]
    security(sim, ts_us + 1000, 4688, {
        "SubjectUserSid": "S-1-5-18", "SubjectUserName": f"{sim.org.server.name}$",
        "SubjectDomainName": sim.org.netbios, "SubjectLogonId": "0x3e7", "NewProcessId": hex(child.pid),
        "NewProcessName": image, "TokenElevationType": "%%1936", "ProcessId": hex(parent.pid), "CommandLine": command,
        "TargetUserSid": "S-1-0-0", "TargetUserName": "-" if account == "SYSTEM" else account,
        "TargetDomainName": "-", "TargetLogonId": "0x0", "ParentProcessName": parent.image,
        "MandatoryLabel": "S-1-16-16384",
    })
    return child


def file_created(sim: Simulation, ts_us: int, proc: Proc, path: str) -> None:
    """Sysmon 11: ``proc`` created ``path``."""
    sysmon(sim, ts_us, 11, {"ProcessGuid": proc.guid, "ProcessId": proc.pid, "Image": proc.image,
                            "TargetFilename": path, "CreationUtcTime": utc_text(ts_us)})


def logon(sim: Simulation, ts_us: int, rng: random.Random, account: str, sid: str, ip: str, success: bool,
          logon_type: int = 8, exists: bool = True) -> None:
    """Security 4624 / 4625 of a logon through IIS (type 8 for Basic and forms, 3 for network);
    a failure's SubStatus says a bad password, or (``exists`` false) no such account."""
    common = {"SubjectUserSid": "S-1-5-18", "SubjectUserName": f"{sim.org.server.name}$",
              "SubjectDomainName": sim.org.netbios, "SubjectLogonId": "0x3e7"}
    process = {"ProcessId": hex(sim.org.pids["MSExchangeOWAAppPool"]), "ProcessName": W3WP,
               "IpAddress": ip, "IpPort": str(rng.randint(49152, 65535))}
    if success:
        security(sim, ts_us, 4624, {
            **common, "TargetUserSid": sid, "TargetUserName": account, "TargetDomainName": sim.org.netbios,
            "TargetLogonId": hex(rng.getrandbits(24)), "LogonType": logon_type, "LogonProcessName": "Advapi  ",
            "AuthenticationPackageName": "Negotiate", "WorkstationName": sim.org.server.name,
            "LogonGuid": str(uuid.UUID(int=rng.getrandbits(128))).upper(), "TransmittedServices": "-",
            "LmPackageName": "-", "KeyLength": 0, **process, "ImpersonationLevel": "%%1833",
            "RestrictedAdminMode": "-", "TargetOutboundUserName": "-", "TargetOutboundDomainName": "-",
            "VirtualAccount": "%%1843", "TargetLinkedLogonId": "0x0", "ElevatedToken": "%%1843",
        })
        return
    security(sim, ts_us, 4625, {
        **common, "TargetUserSid": "S-1-0-0", "TargetUserName": account, "TargetDomainName": sim.org.netbios,
        "Status": "0xc000006d", "FailureReason": "%%2313",
        "SubStatus": "0xc000006a" if exists else "0xc0000064", "LogonType": logon_type,
        "LogonProcessName": "Advapi  ", "AuthenticationPackageName": "Negotiate",
        "WorkstationName": sim.org.server.name, "TransmittedServices": "-", "LmPackageName": "-", "KeyLength": 0,
        **process,
    })


def cmdlet(sim: Simulation, ts_us: int, rng: random.Random, name: str, parameters: str, caller: str,
           caller_sid: str, client: str, pool: str = "MSExchangePowerShellAppPool", failed: bool = False) -> None:
    """MSExchange Management event 1 (cmdlet succeeded) or 6 (failed), positional Data; ``pool``
    is the IIS app pool that ran it, or ``powershell`` for a local shell with the snap-in."""
    system = {"Provider": {"#attributes": {"Name": "MSExchange CmdletLogs"}},
              "EventID": {"#attributes": {"Qualifiers": 16384}, "#text": 6 if failed else 1},
              "Level": 2 if failed else 4, "Task": 1, "Keywords": "0x80000000000000", "Security": None}
    process = f"{rng.randint(1000, 20000) // 4 * 4} {pool}" if pool == "powershell" else \
        f"{sim.org.pids.get(pool, 4000)} w3wp#{pool}"
    data = [name, parameters, caller, caller_sid, caller_sid, client, process, "",
            str(rng.randint(1, 40)), f"00:00:0{rng.randint(0, 9)}.{rng.randint(0, 9999999):07d}",
            (f"View Entire Forest: 'False', Default Scope: '{sim.org.domain}', Configuration Domain Controller: "
            f"'DC01.{sim.org.domain}', Preferred Global Catalog: 'DC01.{sim.org.domain}', Preferred Domain "
            f"Controllers: '{{ DC01.{sim.org.domain} }}'"),
            "", "", "", "", "", "", "False", "", "", "", "", "0",
            f"ActivityId: {uuid.UUID(int=rng.getrandbits(128))}", "ServicePlan:;IsAdmin:True;", "", "en-US"]
    sim.emit(ts_us, ("event", MANAGEMENT), system, {"Data": {"#text": data}})


def application(sim: Simulation, ts_us: int, provider: str, event_id: int, level: int, data: list[str],
                qualifiers: int = 16384) -> None:
    """A classic-provider Application event (positional Data)."""
    system = {"Provider": {"#attributes": {"Name": provider}},
              "EventID": {"#attributes": {"Qualifiers": qualifiers}, "#text": event_id},
              "Level": level, "Task": 1, "Keywords": "0x80000000000000", "Security": None}
    sim.emit(ts_us, ("event", APPLICATION), system, {"Data": {"#text": data}, "Binary": None})
