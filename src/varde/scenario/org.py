"""The simulated organisation: its Exchange server, domain, users and their devices."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from functools import cached_property

_FIRST = ["anna", "ole", "kari", "per", "ingrid", "lars", "marit", "jon", "silje", "erik", "nina", "tor", "hilde", "knut", "astrid", "geir", "liv", "arne", "sofie", "hans", "ida", "morten", "randi", "svein", "tone", "bjorn", "eva", "harald", "kristin", "odd", "heidi", "trond", "berit", "leif", "mona", "rune", "turid", "emma", "jonas", "maja", "henrik", "nora", "sander", "thea", "mathias", "julie", "kristian", "amalie", "magnus", "sara", "tobias", "ella"]
_LAST = ["hansen", "johansen", "olsen", "larsen", "andersen", "pedersen", "nilsen", "kristiansen", "jensen", "karlsen", "johnsen", "pettersen", "eriksen", "berg", "haugen", "hagen", "johannessen", "andreassen", "jacobsen", "dahl", "jorgensen", "halvorsen", "henriksen", "lund", "sorensen", "jakobsen", "moen", "gundersen", "iversen", "strand", "solberg", "svendsen", "eide", "knutsen", "martinsen", "paulsen", "bakken"]

#: Real client user agents of the clients an organisation runs (Outlook, browsers, phones, EWS apps).
OUTLOOK_AGENTS = (
    "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.13801; Pro)",
    "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.13628; Pro)",
    "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.5122; Pro)",
)
BROWSER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/88.0.4324.190 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/89.0.4389.72 Safari/537.36 Edg/89.0.774.45",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:86.0) Gecko/20100101 Firefox/86.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/14.0.3 Safari/605.1.15",
)
PHONE_AGENTS = (
    ("Apple-iPhone12C1/1804.27", "iPhone"),
    ("Apple-iPhone11C8/1802.118", "iPhone"),
    ("Outlook-iOS-Android/1.0", "Outlook"),
    ("Android-SAMSUNG-SM-G991B/101.100", "SAMSUNGSMG991B"),
)
EWS_AGENTS = (
    "MacOutlook/16.46.21021202 (Intelx64 Mac OS X 11.2.1 (Build 20D74))",
    "AppleExchangeWebServices/814.80.4 accountsd/113",
    "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.13801; Pro)",
)


@dataclass(frozen=True)
class Server:
    """The Exchange server (one box with both front end and back end roles)."""

    name: str
    fqdn: str
    ip: str


@dataclass(frozen=True)
class User:
    """A mailbox user, with the devices they use."""

    sam: str
    display: str
    sid: str
    mailbox_guid: str
    workstation_ip: str
    phone: tuple[str, str] | None  # (user agent, device type)
    device_id: str
    owa: bool
    ews_agent: str | None
    outlook_agent: str


@dataclass
class Org:
    """Everything about the organisation that the logs name."""

    domain: str
    netbios: str
    mail_host: str
    server: Server
    build: str
    domain_sid: str
    database_guid: str
    users: list[User]
    admins: list[User]
    health_mailboxes: list[str]
    lb_ips: tuple[str, ...]
    admin_ips: tuple[str, ...]
    pids: dict[str, int] = field(default_factory=dict)

    @cached_property
    def build_parts(self) -> list[str]:
        """``15,1,2176,2``: the build as the four version columns of Exchange's logs."""
        return [str(int(p)) for p in self.build.split(".")]

    @property
    def target_version(self) -> str:
        """The back end's version as HttpProxy's TargetServerVersion shows it."""
        major, minor, build, _ = self.build.split(".")
        return f"{major}.{minor}.{build}.000"

    def upn_of(self, account: str) -> str:
        """``alice@corp.example`` from ``CORP\\alice``."""
        return f"{account.split(chr(92))[-1].lower()}@{self.domain}" if account else ""

    def account(self, user: User) -> str:
        """``CORP\\alice``."""
        return f"{self.netbios}\\{user.sam}"

    def smtp(self, user: User) -> str:
        """The user's primary SMTP address."""
        return f"{user.sam}@{self.domain}"


def _guid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def build_org(rng: random.Random, users: int, host: str, domain: str, build: str) -> Org:
    """An organisation of ``users`` mailboxes (deterministic for a given ``rng`` state)."""
    netbios = domain.split(".")[0].upper()
    sid = f"S-1-5-21-{rng.randint(10**9, 4 * 10**9)}-{rng.randint(10**9, 4 * 10**9)}-{rng.randint(10**8, 10**9)}"
    people: list[User] = []
    seen: set[str] = set()
    for number in range(users):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        sam = f"{first}.{last}"
        while sam in seen:
            sam = f"{first}.{last}{rng.randint(2, 99)}"
        seen.add(sam)
        phone = rng.choice(PHONE_AGENTS) if rng.random() < 0.7 else None
        people.append(User(
            sam=sam, display=f"{first.title()} {last.title()}", sid=f"{sid}-{1105 + number}",
            mailbox_guid=_guid(rng), workstation_ip=f"10.20.{number // 250}.{10 + number % 240}",
            phone=phone, device_id=f"{rng.getrandbits(128):032X}", owa=rng.random() < 0.35,
            ews_agent=rng.choice(EWS_AGENTS) if rng.random() < 0.15 else None,
            outlook_agent=rng.choice(OUTLOOK_AGENTS),
        ))
    admin = User(sam="Administrator", display="Administrator", sid=f"{sid}-500", mailbox_guid=_guid(rng),
                 workstation_ip="10.10.0.21", phone=None, device_id="", owa=False, ews_agent=None,
                 outlook_agent=OUTLOOK_AGENTS[0])
    ops = User(sam="exadmin", display="Exchange Admin", sid=f"{sid}-1104", mailbox_guid=_guid(rng),
               workstation_ip="10.10.0.22", phone=None, device_id="", owa=False, ews_agent=None,
               outlook_agent=OUTLOOK_AGENTS[0])
    server = Server(name=host, fqdn=f"{host}.{domain}".lower(), ip="10.10.0.5")
    health = [f"HealthMailbox{rng.getrandbits(28):07x}" for _ in range(4)]
    pids = {pool: rng.randint(300, 2250) * 4 for pool in (  # Windows process ids are multiples of 4
        "MSExchangeOWAAppPool", "MSExchangeECPAppPool", "MSExchangePowerShellAppPool", "MSExchangeServicesAppPool",
        "MSExchangeMapiFrontEndAppPool", "UMWorkerProcess", "MSExchangeMailboxReplication")}
    return Org(domain=domain, netbios=netbios, mail_host=f"mail.{domain}", server=server, build=build,
               domain_sid=sid, database_guid=_guid(rng), users=people, admins=[admin, ops],
               health_mailboxes=health, lb_ips=("10.10.0.2", "10.10.0.3"), admin_ips=("10.10.0.21", "10.10.0.22"),
               pids=pids)
