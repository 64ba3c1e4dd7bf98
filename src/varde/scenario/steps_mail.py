"""Mail theft steps (password spraying, EWS collection, mailbox exports through a web shell) and
the benign look-alikes of the false-positive trap (an internal vulnerability scanner)."""

from __future__ import annotations

from varde.scenario import winevents as win
from varde.scenario.actor import Step
from varde.scenario.background import ews_request
from varde.scenario.http import EwsCall, Request, send
from varde.scenario.steps_exploit import web_path

#: Account names sprayers try besides harvested ones (many do not exist: a real spray's mark).
_GUESSES = ("administrator", "admin", "test", "info", "support", "postmaster", "scanner", "backup", "service",
            "helpdesk", "office", "reception", "contact", "sales", "hr", "it", "user", "guest", "training", "mail",
            "noreply", "finance", "webmaster", "security", "printer", "sql", "exchange", "test1", "temp", "student")


def password_spray(step: Step) -> None:
    """A few passwords tried against many accounts (Basic auth to EWS, or OWA forms), slowly,
    from a handful of addresses; the accounts named in ``succeeds`` take one of them."""
    sim, rng, params = step.sim, step.rng, step.params
    wanted = int(params.get("accounts", 40))
    targets = [u.sam for u in sim.org.users[:wanted]]
    targets += [g for g in _GUESSES if g not in targets][: max(0, wanted - len(targets))]
    wins = {sim.org.users[int(n) % len(sim.org.users)].sam for n in params.get("succeeds", [])}
    targets += sorted(wins - set(targets))
    rounds = int(params.get("rounds", 2))
    stolen = step.actor.state.setdefault("accounts", [])
    for round_number in range(rounds):
        for number, sam in enumerate(targets):
            ts = step.later(2, 25)
            ip, agent = step.ip(number), step.agent(round_number)
            success = round_number == rounds - 1 and sam in wins
            _attempt(step, ts, ip, agent, sam, success, params.get("endpoint", "ews"))
            user = next((u for u in sim.org.users if u.sam == sam), None)
            win.logon(sim, ts + 5000, rng, sam, user.sid if success and user else "S-1-0-0", ip, success,
                      exists=user is not None)
            step.seen(ts, ip, agent)
            sim.truth.technique("T1110.003", ts)
            if success and user is not None:
                stolen.append(sim.org.users.index(user))
                sim.truth.technique("T1078", ts)
                sim.truth.intrusion(ts)
        step.later(600, 1800)


def _attempt(step: Step, ts: int, ip: str, agent: str, sam: str, success: bool, endpoint: str) -> None:
    sim, rng = step.sim, step.rng
    account = f"{sim.org.netbios}\\{sam}"
    if endpoint == "owa":
        send(sim, Request(ts, "POST", "/owa/auth.owa", ip, agent, status=302, user=account if success else "",
                          protocol="Owa", auth="FBA", backend_status=302 if success else None,
                          referer=f"https://{sim.org.mail_host}/owa/auth/logon.aspx?replaceCurrent=1&url=https%3a%2f%2f"
                                  f"{sim.org.mail_host}%2fowa%2f", request_bytes=rng.randint(400, 700),
                          latency_ms=rng.randint(30, 300)), rng)
        return
    if success:
        mailbox = f"{sam}@{sim.org.domain}"
        send(sim, ews_request(sim, rng, ts, account, ip, agent, "Basic", EwsCall("GetFolder", mailbox)), rng)
    else:
        send(sim, Request(ts, "POST", "/EWS/Exchange.asmx", ip, agent, status=401, protocol="Ews", auth="Basic",
                          request_bytes=rng.randint(600, 1200), latency_ms=rng.randint(20, 200)), rng)


def ews_collection(step: Step) -> None:
    """Each stolen account's mailbox read over EWS: folders listed, items found and fetched."""
    sim, rng, params = step.sim, step.rng, step.params
    per_mailbox = int(params.get("items", 120))
    for number, index in enumerate(step.actor.state.get("accounts", [])):
        user = sim.org.users[index]
        account, mailbox = sim.org.account(user), sim.org.smtp(user)
        ip, agent = step.ip(number), params.get("agent", step.agent())
        calls = [EwsCall("FindFolder", mailbox), EwsCall("FindItem", mailbox)]
        left = per_mailbox
        while left > 0:
            batch = min(left, rng.randint(10, 50))
            calls.append(EwsCall("GetItem", mailbox, batch))
            left -= batch
        for call in calls:
            ts = step.later(1, 12)
            request = ews_request(sim, rng, ts, account, ip, agent, "Basic", call)
            send(sim, request, rng)
            step.seen(ts, ip, agent)
            if call.items:
                sim.truth.mailbox(mailbox, "read", ts, call.items, request.response_bytes)
                sim.truth.technique("T1114.002", ts)
        step.later(60, 600)


def snapin_export(step: Step) -> None:
    """Mailboxes exported to PST through the web shell: ``powershell.exe`` loads the Exchange
    snap-in and runs ``New-MailboxExportRequest`` (HAFNIUM's method in March 2021)."""
    sim, rng, params = step.sim, step.rng, step.params
    shell = step.actor.state["shell"]
    pool = win.app_pool(sim, step.actor.state.get("pool", "MSExchangeOWAAppPool"))
    folder = params.get("folder", "C:\\ProgramData\\VSPerfMon")
    boxes = list(dict.fromkeys(sim.org.users[int(n) % len(sim.org.users)] for n in params.get("mailboxes", [0])))
    for box in boxes:
        ts = step.later(20, 300)
        smtp = sim.org.smtp(box)
        target = f"\\\\{sim.org.server.name}\\C$\\{folder[3:]}\\{box.sam}.pst"
        send(sim, Request(ts, "POST", web_path(shell), step.ip(), step.agent(), latency_ms=rng.randint(900, 5000)), rng)
        step.seen(ts, step.ip(), step.agent())
        command = (f'powershell.exe -command "Add-PSSnapin Microsoft.Exchange.Management.PowerShell.SnapIn;'
                   f"New-MailboxExportRequest -Mailbox {smtp} -FilePath {target}\"")
        win.spawn(sim, ts + 60_000, rng, pool, "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
                       command)
        win.cmdlet(sim, ts + 4_000_000, rng, "New-MailboxExportRequest", f'-Mailbox "{smtp}" -FilePath "{target}"',
                   "NT AUTHORITY\\SYSTEM", "S-1-5-18", "Local-ManagementShell", "powershell")
        done = ts + rng.randint(60, 600) * 1_000_000
        size = rng.randint(24, 96) * 1024
        path = f"{folder}\\{box.sam}.pst"
        mrs = win.Proc(win.process_guid(sim.rng("mrs")), sim.org.pids["MSExchangeMailboxReplication"],
                       "C:\\Program Files\\Microsoft\\Exchange Server\\V15\\Bin\\MSExchangeMailboxReplication.exe",
                       '"C:\\Program Files\\Microsoft\\Exchange Server\\V15\\Bin\\MSExchangeMailboxReplication.exe"')
        win.file_created(sim, done, mrs, path)
        step.plant(path, b"!BDN" + rng.randbytes(size - 4), done)
        win.cmdlet(sim, done + 30_000_000, rng, "Remove-MailboxExportRequest",
                   f'-Identity "{smtp}\\MailboxExport" -Confirm "False"', "NT AUTHORITY\\SYSTEM", "S-1-5-18",
                   "Local-ManagementShell", "powershell")
        sim.truth.mailbox(smtp, "export", ts + 4_000_000, None, size)
        sim.truth.technique("T1114.002", ts + 4_000_000)
        sim.truth.technique("T1059.001", ts + 60_000)
        step.actor.state["staged"] = [*step.actor.state.get("staged", []), path]


#: A vulnerability scanner's Exchange checks; on a patched server they fail (401, 404, 500).
_SCANNER_CHECKS = (
    ("GET", "/autodiscover/autodiscover.json", "@test.local/mapi/nspi/?&Email=autodiscover/autodiscover.json%3F@test.local", 401),
    ("GET", "/autodiscover/autodiscover.json", "@test.local/owa/?&Email=autodiscover/autodiscover.json%3F@test.local", 401),
    ("GET", "/owa/auth/x.js", "", 404),
    ("GET", "/ecp/x.js", "", 500),
    ("GET", "/owa/auth/logon.aspx", "", 200),
    ("GET", "/ecp/default.flt", "", 404),
    ("POST", "/ecp/DDI/DDIService.svc/SetObject", "schema=ResetOABVirtualDirectory", 401),
)


def vulnerability_scan(step: Step) -> None:
    """An internal, authorised vulnerability scanner probing Exchange and many other paths."""
    sim, rng = step.sim, step.rng
    checks = list(_SCANNER_CHECKS) + [("GET", f"/{word}", "", 404) for word in (
        "admin", "login.jsp", "manager/html", "cgi-bin/test.cgi", "server-status", "iisstart.htm", "web.config",
        "console", "axis2/services", "jmx-console", "struts/webconsole.html", "_vti_bin/owssvr.dll")]
    for _ in range(int(step.params.get("repeat", 3))):
        for method, stem, query, status in checks:
            ts = step.later(0.05, 0.8)
            protocol = "Autodiscover" if stem.startswith("/autodiscover") else ("Ecp" if stem.startswith("/ecp") else None)
            anchor = "ServerInfo~localhost~1942062522" if stem == "/ecp/x.js" else ""
            send(sim, Request(ts, method, stem, step.ip(), step.agent(), status=status, query=query,
                              protocol=protocol, anchor=anchor, routing_hint="X-BEResource-Cookie" if anchor else "",
                              latency_ms=rng.randint(1, 40)), rng)
    sim.truth.note_benign("vulnerability-scan", step.ts, source_ips=sorted(set(step.actor.ips)),
                          user_agents=sorted(set(step.actor.user_agents)))
