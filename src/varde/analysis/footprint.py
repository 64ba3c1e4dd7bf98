"""The intruders' web footprint: every request of their sources, and new sources of stolen accounts.

Detector hits show the attack; the web logs show the rest of what the same sources did (the
mail they read with a stolen password, the user agents they switched to). Two additions, both
from the IIS and HttpProxy requests (``detect/exchange/web.py``):

* an account whose password an intruder found (a hit of ``CREDENTIAL_RULES``) that is then used
  successfully from a source with no successful request before that moment brings that source
  into the intruder (new infrastructure, or a sprayer that failed, using stolen credentials; the
  owner's own clients worked before and stay out); two intruders using one stolen account are
  one intruder;
* each intruder's first and last time and its user agents cover every request of its sources.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from varde.analysis.hits import BACKEND_PORT, account_key, utc
from varde.analysis.intruders import CREDENTIAL_RULES, Clustering, Intruder
from varde.detect.exchange.web import requests
from varde.events.store import EventStore


@dataclass
class Activity:
    """What one source did over the web: first and last request, user agents."""

    first: datetime
    last: datetime
    agents: set[str] = field(default_factory=set)


def _stolen(clustering: Clustering) -> dict[str, tuple[str, datetime]]:
    """Account -> (intruder, when its password was first shown to work)."""
    out: dict[str, tuple[str, datetime]] = {}
    for intruder in clustering.intruders:
        for hit in intruder.hits:
            user = hit.attrs.get("user")
            if hit.finding.rule_id in CREDENTIAL_RULES and user and hit.ts:
                key = account_key(user)
                if key not in out or hit.ts < out[key][1]:
                    out[key] = (intruder.id, hit.ts)
    return out


def extend(store: EventStore, clustering: Clustering) -> dict[str, Activity]:
    """Add the new sources of stolen accounts to their intruders; every intruder source's activity."""
    web = requests(store)
    if web is None or not clustering.intruders:
        return {}
    front = f"coalesce(port, '') <> '{BACKEND_PORT}' AND source_ip IS NOT NULL"
    stolen = _stolen(clustering)
    if stolen:
        ok = "TRY_CAST(status AS INTEGER) BETWEEN 100 AND 399"
        first_ok = {ip: utc(ts) for ip, ts in store.query(
            f"SELECT source_ip, min(ts) FROM {web} WHERE {front} AND {ok} GROUP BY 1")}
        uses = store.query(f"""SELECT source_ip, "user", min(ts) FROM {web} WHERE {front} AND "user" IS NOT NULL
            AND {ok} GROUP BY 1, 2 ORDER BY 3, 1, 2""")
        for ip, user, _ in uses:
            owner = stolen.get(account_key(user))
            if owner:
                _join(clustering, owner[0], ip, first_ok[ip] >= owner[1])
        members = {ip for i in clustering.intruders for ip in i.source_ips}
        clustering.scanners = [ip for ip in clustering.scanners if ip not in members]
    return _activity(store, web, front, clustering)


def _join(clustering: Clustering, target: str, ip: str, new_source: bool) -> None:
    """``ip`` used an account that intruder ``target`` stole: an intruder member merges into
    ``target``; a new source joins it."""
    by_id = {i.id: i for i in clustering.intruders}
    while target not in by_id and target in clustering.owner_alias:  # merged away already
        target = clustering.owner_alias[target]
    into = by_id.get(target)
    holder = next((i for i in clustering.intruders if ip in i.source_ips), None)
    if into is None or holder is into:
        return
    if holder is not None:
        _merge(clustering, holder, into)
    elif new_source:
        into.source_ips = sorted({*into.source_ips, ip})


def _merge(clustering: Clustering, source: Intruder, into: Intruder) -> None:
    into.source_ips = sorted({*into.source_ips, *source.source_ips})
    into.hits = sorted([*into.hits, *source.hits], key=lambda h: (h.ts is None, h.ts, h.key))
    for hit in source.hits:
        clustering.owner[id(hit)] = into.id
    clustering.intruders = [i for i in clustering.intruders if i is not source]
    clustering.owner_alias[source.id] = into.id


def _activity(store: EventStore, web: str, front: str, clustering: Clustering) -> dict[str, Activity]:
    ips = sorted({ip for i in clustering.intruders for ip in i.source_ips})
    if not ips:
        return {}
    store.con.execute("CREATE OR REPLACE TEMP TABLE _intruder_ips (ip VARCHAR)")
    store.con.executemany("INSERT INTO _intruder_ips VALUES (?)", [[ip] for ip in ips])
    rows = store.query(f"""SELECT source_ip, min(ts), max(ts), list(DISTINCT user_agent) FROM {web}
        WHERE {front} AND source_ip IN (SELECT ip FROM _intruder_ips) GROUP BY 1""")
    return {ip: Activity(utc(first), utc(last), {a for a in agents if a}) for ip, first, last, agents in rows}
