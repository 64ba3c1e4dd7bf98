"""The benign background of a working organisation, hour by hour.

A working-day rhythm (busy 07-17 on weekdays, quiet nights and weekends) drives Outlook (MAPI
over HTTP), OWA in browsers, ActiveSync phones, EWS clients, Autodiscover and OAB downloads.
Independent of it run Exchange's own health probes (HealthMailbox accounts, ``AMProbe`` from
127.0.0.1), load balancer checks, admins in ECP and the Exchange Management Shell during working
hours, internet scanners getting 404s, and the server's routine Windows events.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime

from varde.scenario import winevents as win
from varde.scenario.engine import HOUR_US, Simulation
from varde.scenario.formats import iso_ms
from varde.scenario.http import EwsCall, Request, RpsCall, new_id, ri, send
from varde.scenario.org import BROWSER_AGENTS, User

#: Requests per active user per busy hour, by client.
RATES = {"mapi": 24.0, "eas": 10.0, "owa": 18.0, "ews": 8.0, "autodiscover": 0.6}
_SCANNER_PATHS = ("/wp-login.php", "/.env", "/admin/config.php", "/phpmyadmin/index.php", "/solr/admin/info/system",
                  "/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php", "/boaform/admin/formLogin", "/.git/config",
                  "/actuator/health", "/HNAP1/", "/cgi-bin/luci", "/remote/login")
_SCANNER_AGENTS = ("Mozilla/5.0 zgrab/0.x", "Mozilla/5.0 (compatible; CensysInspect/1.1; +https://about.censys.io/)",
                   "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/74.0.3729.169 Safari/537.36",
                   "python-requests/2.22.0", "curl/7.64.1")
_OWA_ACTIONS = ("GetFolderMruConfiguration", "FindItem", "GetItem", "FindConversation", "GetConversationItems",
                "GetCalendarView", "UpdateItem", "CreateItem", "GetOwaUserConfiguration")
_EWS_ACTIONS = (("SyncFolderItems", 0), ("GetItem", 3), ("FindItem", 0), ("GetFolder", 0), ("GetUserAvailability", 0))
_PROBES = (("Owa", "/owa/", "GET"), ("Ecp", "/ecp/", "GET"), ("Ews", "/ews/", "GET"), ("Mapi", "/mapi/emsmdb/", "POST"),
           ("Eas", "/Microsoft-Server-ActiveSync/default.eas", "OPTIONS"),
           ("Autodiscover", "/autodiscover/autodiscover.xml", "POST"), ("Oab", "/oab/", "GET"))
_ADMIN_CMDLETS = (("Get-Mailbox", "-ResultSize \"Unlimited\""), ("Get-MailboxDatabase", "-Status \"True\""),
                  ("Get-ExchangeServer", ""), ("Set-Mailbox", "-Identity \"{user}\" -ProhibitSendQuota \"4GB\""),
                  ("Get-MailboxStatistics", "-Identity \"{user}\""), ("Get-Queue", ""))


def intensity(ts_us: int) -> float:
    """How busy the organisation is at this hour (1.0 a weekday's working hours)."""
    moment = datetime.fromtimestamp(ts_us // 1_000_000, UTC)
    hour, weekend = moment.hour, moment.weekday() >= 5
    if 7 <= hour <= 17:
        return 0.12 if weekend else 1.0
    if 6 <= hour <= 21:
        return 0.05 if weekend else 0.3
    return 0.02


def _count(rng: random.Random, expected: float) -> int:
    """A whole count with the given expectation (stochastic rounding)."""
    whole = int(expected)
    return whole + (1 if rng.random() < expected - whole else 0)


def _times(rng: random.Random, start: int, n: int) -> list[int]:
    return [start + int(rng.random() * HOUR_US) for _ in range(n)]


def hour(sim: Simulation, index: int, start: int) -> None:
    """Emit one hour of benign traffic and routine events."""
    rng = sim.rng("background", index)
    busy = intensity(start)
    for user in sim.org.users:
        if rng.random() < 0.9 * min(1.0, busy * 1.4):
            _user_hour(sim, rng, user, start, busy)
        elif user.phone is not None:  # phones keep their Ping going at night
            for ts in _times(rng, start, _count(rng, 3.0)):
                send(sim, _eas(sim, rng, user, ts, "Ping"), rng)
    _probes(sim, rng, start)
    _powershell_probe(sim, rng, start)
    _load_balancer(sim, rng, start)
    _scanners(sim, rng, start)
    if busy >= 1.0 and rng.random() < 0.35:
        _admin_ecp(sim, rng, start + rng.randrange(HOUR_US - 600_000_000))
    if busy >= 1.0 and rng.random() < 0.25:
        _admin_shell(sim, rng, start + rng.randrange(HOUR_US - 600_000_000))
    _routine_events(sim, rng, start, index)


def _user_hour(sim: Simulation, rng: random.Random, user: User, start: int, busy: float) -> None:
    account = sim.org.account(user)
    for ts in _times(rng, start, _count(rng, RATES["mapi"] * busy)):
        send(sim, _mapi(sim, rng, user, account, ts), rng)
    if user.phone is not None:
        for ts in _times(rng, start, _count(rng, RATES["eas"] * busy)):
            send(sim, _eas(sim, rng, user, ts, rng.choice(("Sync", "Ping", "Ping", "FolderSync"))), rng)
    if user.owa:
        for ts in _times(rng, start, _count(rng, RATES["owa"] * busy)):
            send(sim, _owa(sim, rng, user, account, ts), rng)
    if user.ews_agent is not None:
        for ts in _times(rng, start, _count(rng, RATES["ews"] * busy)):
            action, items = rng.choice(_EWS_ACTIONS)
            send(sim, ews_request(sim, rng, ts, account, user.workstation_ip, user.ews_agent, "Negotiate",
                                  EwsCall(action, sim.org.smtp(user), items)), rng)
    for ts in _times(rng, start, _count(rng, RATES["autodiscover"] * busy)):
        send(sim, Request(ts, "POST", "/autodiscover/autodiscover.xml", user.workstation_ip, user.outlook_agent,
                          user=account, protocol="Autodiscover", auth="Negotiate", anchor=f"Sid~{user.sid}",
                          routing_hint="WindowsIdentity", backend_status=200, request_bytes=ri(rng, 300, 400),
                          response_bytes=ri(rng, 3000, 4200), latency_ms=ri(rng, 8, 40)), rng)
    if rng.random() < 0.04 * busy:
        ts = start + int(rng.random() * HOUR_US)
        send(sim, Request(ts, "GET", f"/oab/{sim.org.database_guid}/oab.xml", user.workstation_ip, user.outlook_agent,
                          user=account, protocol="Oab", auth="Negotiate", anchor=f"Sid~{user.sid}",
                          routing_hint="WindowsIdentity", backend_status=200, response_bytes=ri(rng, 800, 1200),
                          latency_ms=ri(rng, 5, 20)), rng)
    if rng.random() < 0.5 * busy:
        win.logon(sim, start + int(rng.random() * HOUR_US), rng, user.sam, user.sid, user.workstation_ip, True, 3)


def _mapi(sim: Simulation, rng: random.Random, user: User, account: str, ts: int) -> Request:
    nspi = rng.random() < 0.1
    kind = rng.choice(("Execute", "Execute", "Execute", "NotificationWait"))
    return Request(
        ts, "POST", "/mapi/nspi/" if nspi else "/mapi/emsmdb/", user.workstation_ip, user.outlook_agent,
        query=f"mailboxId={user.mailbox_guid}@{sim.org.domain}", user=account, protocol="Mapi", auth="Negotiate",
        anchor=f"MailboxGuid~{user.mailbox_guid}", routing_hint="MailboxGuidWithDomain",
        backend_cookie=f"Database~{sim.org.database_guid}~~2021-04-01T00:00:00", backend_status=200,
        client_request_id=f"R:{new_id(rng)}:{ri(rng, 1, 400)};RT:{kind};CI:{new_id(rng)}:1",
        request_bytes=ri(rng, 200, 6000), response_bytes=ri(rng, 300, 60000),
        latency_ms=ri(rng, 5, 90) if kind == "Execute" else ri(rng, 20000, 60000),
    )


def _eas(sim: Simulation, rng: random.Random, user: User, ts: int, command: str) -> Request:
    agent, device = user.phone or ("", "")
    carrier = int(user.mailbox_guid[:6], 16)
    return Request(
        ts, "POST", "/Microsoft-Server-ActiveSync/default.eas", f"85.{carrier % 250}.{carrier // 250 % 250}.{ts % 199 + 1}",
        agent, query=f"Cmd={command}&User={user.sam}&DeviceId={user.device_id}&DeviceType={device}",
        user=sim.org.account(user), protocol="Eas", auth="Basic", anchor=f"Sid~{user.sid}",
        routing_hint="WindowsIdentity", backend_status=200, request_bytes=ri(rng, 100, 900),
        response_bytes=ri(rng, 20, 9000), latency_ms=ri(rng, 30, 900) if command != "Ping" else 480000,
    )


def _owa(sim: Simulation, rng: random.Random, user: User, account: str, ts: int) -> Request:
    action = rng.choice(_OWA_ACTIONS)
    agent = BROWSER_AGENTS[len(user.sam) % len(BROWSER_AGENTS)]
    return Request(
        ts, "POST", "/owa/service.svc", user.workstation_ip, agent, query=f"action={action}&app=Mail&n={ri(rng, 1, 90)}",
        user=account, protocol="Owa", auth="FBA" if rng.random() < 0.5 else "Cookie", anchor=f"Sid~{user.sid}",
        routing_hint="OwaCafeCookie", backend_cookie=f"Database~{sim.org.database_guid}~~2021-04-01T00:00:00",
        backend_status=200, referer=f"https://{sim.org.mail_host}/owa/", request_bytes=ri(rng, 200, 3000),
        response_bytes=ri(rng, 500, 40000), latency_ms=ri(rng, 10, 300),
    )


def ews_request(sim: Simulation, rng: random.Random, ts: int, account: str, ip: str, agent: str, auth: str,
                call: EwsCall) -> Request:
    """An EWS SOAP call by ``account`` (logged by HttpProxy\\Ews and the EWS back end)."""
    size = 2000 + call.items * ri(rng, 8000, 60000)
    return Request(ts, "POST", "/EWS/Exchange.asmx", ip, agent, user=account, protocol="Ews", auth=auth,
                   anchor=f"SMTP:{call.mailbox}" if call.impersonated else f"Sid~{account}",
                   routing_hint="WindowsIdentity" if not call.impersonated else "ExchangeImpersonation",
                   backend_status=200, request_bytes=ri(rng, 600, 2500), response_bytes=size,
                   latency_ms=ri(rng, 15, 400), ews=call)


def _probes(sim: Simulation, rng: random.Random, start: int) -> None:
    """Managed availability: each protocol probed every five minutes by a HealthMailbox."""
    org = sim.org
    for minute in range(0, 60, 5):
        for protocol, stem, method in _PROBES:
            ts = start + minute * 60_000_000 + rng.randrange(50_000_000)
            box = rng.choice(org.health_mailboxes)
            agent = "AMProbe/Local/ClientAccess"
            call = None
            if protocol == "Ews":  # the EWS probe runs a GetFolder through to the back end
                agent = f"Ews_AM_Probe/Local (ExchangeServicesClient/{org.build})"
                call = EwsCall("GetFolder", f"{box}@{org.domain}")
            send(sim, Request(ts, method, stem, "127.0.0.1", agent, user=f"{org.netbios}\\{box}",
                              protocol=protocol, auth="Negotiate", anchor=f"SMTP:{box}@{org.domain}",
                              routing_hint="WindowsIdentity", backend_status=200, response_bytes=ri(rng, 100, 900),
                              latency_ms=ri(rng, 2, 30), ews=call), rng)


def _powershell_probe(sim: Simulation, rng: random.Random, start: int) -> None:
    """Managed availability's hourly Remote PowerShell probe (Rps_Http ClientInfo
    ``Exchange BackEnd Probes``, as CrowdStrike's OWASSRF guidance lists among the benign values)."""
    org = sim.org
    box = org.health_mailboxes[0]
    session, shell = new_id(rng).upper(), new_id(rng).upper()
    ts = start + int(rng.random() * (HOUR_US - 120_000_000))
    for action, command in (("Receive", ""), ("Command", "Get-Mailbox")):
        ts += ri(rng, 1, 30) * 1_000_000
        send(sim, Request(ts, "POST", "/powershell", "127.0.0.1", "Microsoft WinRM Client", query="clientApplication=ActiveMonitor",
                          user=f"{org.netbios}\\{box}", protocol="PowerShell", auth="Kerberos",
                          anchor=f"SMTP:{box}@{org.domain}", routing_hint="ExchClientVer-ServerCookie", backend_status=200,
                          protocol_action=f"{command or 'New-PSSession'}:{action}", request_bytes=ri(rng, 900, 5000),
                          response_bytes=ri(rng, 800, 9000), latency_ms=ri(rng, 10, 80),
                          rps=RpsCall(action, command, "Exchange BackEnd Probes", session, shell)), rng)


def _load_balancer(sim: Simulation, rng: random.Random, start: int) -> None:
    """The load balancers' health checks (every 30 s from each), answered by the front end."""
    for lb in sim.org.lb_ips:
        for second in range(0, 3600, 30):
            ts = start + second * 1_000_000 + rng.randrange(1_000_000)
            send(sim, Request(ts, "GET", "/owa/healthcheck.htm", lb, "", latency_ms=0), rng)


def _scanners(sim: Simulation, rng: random.Random, start: int) -> None:
    """Internet scanners probing for other software: 404s (and the OWA log-on page)."""
    for ts in _times(rng, start, _count(rng, 6.0)):
        ip = f"{rng.choice((45, 89, 104, 162, 185, 193, 194))}.{ri(rng, 1, 254)}.{ri(rng, 0, 254)}.{ri(rng, 1, 254)}"
        agent = rng.choice(_SCANNER_AGENTS)
        if rng.random() < 0.2:
            send(sim, Request(ts, "GET", "/owa/auth/logon.aspx", ip, agent, query="url=https%3a%2f%2fmail%2fowa%2f&reason=0",
                              latency_ms=ri(rng, 3, 15)), rng)
        else:
            send(sim, Request(ts, "GET", rng.choice(_SCANNER_PATHS), ip, agent, status=404, latency_ms=ri(rng, 0, 4)), rng)


def _admin_ecp(sim: Simulation, rng: random.Random, ts: int) -> None:
    """An administrator looks at mailboxes in ECP (HttpProxy\\Ecp and the ECP server log)."""
    admin = sim.org.admins[1]
    account, ip = sim.org.account(admin), admin.workstation_ip
    agent = BROWSER_AGENTS[1]
    canary = f"{rng.getrandbits(160):040x}"
    for number, (schema, cmd) in enumerate((("MailboxService", "Get-Recipient"), ("MailboxService", "Get-Mailbox"),
                                            ("EnumReservedAlias", "Get-Mailbox"))):
        at = ts + number * ri(rng, 5, 60) * 1_000_000
        url = f"/ecp/DDI/DDIService.svc/GetList?schema={schema}&msExchEcpCanary={canary}"
        send(sim, Request(at, "POST", "/ecp/DDI/DDIService.svc/GetList", ip, agent,
                          query=f"schema={schema}&msExchEcpCanary={canary}", user=account, protocol="Ecp", auth="FBA",
                          anchor=f"Sid~{admin.sid}", routing_hint="EcpCafeCookie", backend_status=200,
                          referer=f"https://{sim.org.mail_host}/ecp/", response_bytes=ri(rng, 2000, 30000),
                          latency_ms=ri(rng, 40, 400)), rng)
        ecp_server_line(sim, rng, at + 500, cmd, url, admin.sid)


def ecp_server_line(sim: Simulation, rng: random.Random, ts: int, command: str, url: str, sid: str) -> None:
    """One ``ECP.Request`` line of the ECP server log."""
    build = ".".join(sim.org.build_parts)
    data = (f"S:TIME={ri(rng, 5, 300)};S:SID={new_id(rng)};S:CMD={command};S:REQID=;S:URL={url};S:REFERRER=;"
            f"S:EX=;S:ACTID={new_id(rng)};S:RS=0;S:BLD={build};S:TNAME=<null>;S:TID=;S:USID={sid};S:EDOID=;S:ACID=")
    sim.emit(ts, ("ecp",), [iso_ms(ts), sim.org.server.name, "ECP.Request", data])


def _admin_shell(sim: Simulation, rng: random.Random, ts: int) -> None:
    """An administrator runs a few cmdlets in the Exchange Management Shell."""
    admin = sim.org.admins[1]
    user = rng.choice(sim.org.users)
    commands = [rng.choice(_ADMIN_CMDLETS) for _ in range(ri(rng, 1, 4))]
    shell_session(sim, rng, ts, admin, admin.workstation_ip, "Microsoft WinRM Client",
                  [(name, params.format(user=user.sam)) for name, params in commands])


def shell_session(sim: Simulation, rng: random.Random, ts: int, who: User, ip: str, agent: str,
                  commands: list[tuple[str, str]], client: str = "Remote-ManagementShell-Unknown") -> int:
    """A Remote PowerShell session running ``commands``: HttpProxy\\PowerShell, Rps_Http and
    MSExchange Management events. Returns the time after the last command."""
    org = sim.org
    account = org.account(who)
    session, shell = new_id(rng).upper(), new_id(rng).upper()
    query = "serializationLevel=Full;ExchClientVer=15.1.2176.2;clientApplication=ManagementShell;TargetServer=;PSVersion=5.1.14393.4169"
    steps = [("New-PSSession", "Receive", "")] + [(name, "Command", params) for name, params in commands]
    for name, action, params in steps:
        ts += ri(rng, 2, 40) * 1_000_000
        send(sim, Request(ts, "POST", "/powershell", ip, agent, query=query, user=account, protocol="PowerShell",
                          auth="Kerberos", anchor=f"Sid~{who.sid}", routing_hint="ExchClientVer-ServerCookie",
                          backend_status=200, protocol_action=f"{name}:{action}", request_bytes=ri(rng, 900, 6000),
                          response_bytes=ri(rng, 800, 20000), latency_ms=ri(rng, 20, 900),
                          rps=RpsCall(action, name if action == "Command" else "", agent if agent != "Microsoft WinRM Client"
                                      else "Microsoft WinRM Client", session, shell)), rng)
        if action == "Command":
            win.cmdlet(sim, ts + 2000, rng, name, params, f"{org.domain}/Users/{who.sam}", who.sid, client)
    return ts


def _routine_events(sim: Simulation, rng: random.Random, start: int, index: int) -> None:
    """The server's own hourly life: health manager workers, WMI, topology discovery, OAB generation."""
    services = win.Proc(win.process_guid(sim.rng("services")), 620, "C:\\Windows\\System32\\services.exe",
                        "C:\\Windows\\system32\\services.exe")
    for _ in range(_count(rng, 3.0)):
        ts = start + int(rng.random() * HOUR_US)
        image, command = rng.choice((
            ("C:\\Windows\\System32\\svchost.exe", "C:\\Windows\\system32\\svchost.exe -k netsvcs -p"),
            ("C:\\Windows\\System32\\wbem\\WmiPrvSE.exe", "C:\\Windows\\system32\\wbem\\wmiprvse.exe -secured -Embedding"),
            (f"{win.EXCHANGE_BIN}\\Bin\\MSExchangeHMWorker.exe",
             f"\"{win.EXCHANGE_BIN}\\Bin\\MSExchangeHMWorker.exe\" -workerListenerEndpoint:HealthManagerWorker"),
        ))
        win.spawn(sim, ts, rng, services, image, command)
    for quarter in range(4):
        ts = start + quarter * 900_000_000 + rng.randrange(60_000_000)
        win.application(sim, ts, "MSExchange ADAccess", 2080, 4, [
            "w3wp.exe", str(sim.org.pids["MSExchangeOWAAppPool"]),
            f"DC01.{sim.org.domain}\tCDG 1 7 7 1 0 1 1 7 1"])
    if index % 8 == 2:
        ts = start + rng.randrange(HOUR_US // 2)
        for number, message in enumerate(("Generation started for offline address book \\Default Offline Address Book",
                                          "Generation completed for offline address book \\Default Offline Address Book")):
            sim.emit(ts + number * 40_000_000, ("oabgen",),
                     [iso_ms(ts + number * 40_000_000), sim.org.server.name, "OABGen.Info", message])
