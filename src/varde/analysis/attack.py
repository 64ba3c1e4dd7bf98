"""The ATT&CK index: groups, campaigns, techniques, software and their ``uses`` relationships.

Built from MITRE's STIX (the mitre/cti folder layout with one object per file, or one bundle file)
plus the MISP threat-actor galaxy (aliases, countries, suspected victims). The index is small JSON
(gzip) so the package can ship one and attribution works offline; :func:`build_index` makes a new
one from a newer release. Every ``uses`` relationship keeps its procedure text, its citations and
its creation date, so an answer can quote its evidence and be replayed as of a date.

Time slicing: ATT&CK objects carry the date MITRE *created* them, which is often weeks before
the release that *published* them (HAFNIUM's profile was created 2021-03-03 but first published in
ATT&CK v9.0 on 2021-04-29). :meth:`AttackIndex.as_of` therefore keeps an object only when the
first release on or after its creation date was out by the date asked for; ``lag=False`` uses the
creation date alone.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import re
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import date
from importlib import resources
from pathlib import Path

from varde.errors import VardeError

log = logging.getLogger(__name__)

INDEX_FORMAT = "varde.attack-index/1"
INDEX_NAME = "attack-index.json.gz"
MITRE_NOTICE = (
    "© 2025 The MITRE Corporation. This work is reproduced and distributed with the permission "
    "of The MITRE Corporation."
)
# Public release dates of ATT&CK Enterprise (attack.mitre.org/resources/versions/). Used to know
# when an object created on a date was first published, and to name the release of a folder.
RELEASES: tuple[tuple[str, str], ...] = (
    ("5.0", "2019-07-31"), ("6.0", "2019-10-24"), ("7.0", "2020-07-08"), ("8.0", "2020-10-27"),
    ("9.0", "2021-04-29"), ("10.0", "2021-10-21"), ("11.0", "2022-04-25"), ("12.0", "2022-10-25"),
    ("13.0", "2023-04-25"), ("14.0", "2023-10-31"), ("15.0", "2024-04-23"), ("16.0", "2024-10-31"),
    ("17.0", "2025-04-22"), ("18.0", "2025-10-28"), ("18.1", "2025-11-13"),
)
_RELEASE_DAYS = [day for _, day in RELEASES]
_ACTOR_TYPES = ("intrusion-set", "campaign")
_SOFTWARE_TYPES = ("malware", "tool")


class IntelError(VardeError):
    """Reference data that cannot be read or built."""

    exit_code = 2


def published(created: str) -> str:
    """The date an object created on ``created`` was first public: the next release's date."""
    at = bisect_left(_RELEASE_DAYS, created[:10])
    return _RELEASE_DAYS[at] if at < len(_RELEASE_DAYS) else created[:10]


def release_of(newest_modified: str) -> str:
    """The ATT&CK release a snapshot belongs to, from its newest ``modified`` date."""
    at = bisect_left(_RELEASE_DAYS, newest_modified[:10])
    return RELEASES[at][0] if at < len(RELEASES) else f"after {RELEASES[-1][0]}"


@dataclass(frozen=True)
class Actor:
    """An intrusion set (``G…``) or a campaign (``C…``)."""

    id: str
    stix_id: str
    name: str
    aliases: tuple[str, ...]
    created: str
    attributed_to: tuple[str, ...] = ()  # campaigns: the groups ATT&CK attributes them to
    country: str | None = None  # ISO 3166 alpha-2 from MISP
    victims: tuple[str, ...] = ()  # MISP cfr-suspected-victims (country names)
    sectors: tuple[str, ...] = ()  # MISP cfr-target-category / targeted-sector

    @property
    def is_campaign(self) -> bool:
        return self.id.startswith("C")


@dataclass(frozen=True)
class Use:
    """One ``uses`` relationship: actor or software -> technique or software."""

    source: str
    target: str
    created: str
    citations: tuple[str, ...] = ()
    text: str = ""


@dataclass
class AttackIndex:
    """The derived reference data attribution scores against (see the module docstring)."""

    attack_version: str
    techniques: dict[str, tuple[str, tuple[str, ...], str]]  # id -> (name, tactics, created)
    software: dict[str, tuple[str, str, tuple[str, ...], str]]  # id -> (name, type, aliases, created)
    actors: dict[str, Actor]
    uses: list[Use]
    misp: list[dict] = field(default_factory=list)
    notice: str = MITRE_NOTICE
    source: str = ""
    sliced: str | None = None
    #: citation -> the day its report was published (``YYYY``, ``YYYY-MM`` or ``YYYY-MM-DD``, as
    #: precise as the reference says), from the references' texts; absent when they give none
    citation_dates: dict[str, str] = field(default_factory=dict)

    # -- views -------------------------------------------------------------------------------

    def groups(self) -> list[Actor]:
        return sorted((a for a in self.actors.values() if not a.is_campaign), key=lambda a: a.id)

    def campaigns(self) -> list[Actor]:
        return sorted((a for a in self.actors.values() if a.is_campaign), key=lambda a: a.id)

    def name_of(self, feature: str) -> str:
        """A technique's or software's name, or the id itself."""
        if feature in self.techniques:
            return self.techniques[feature][0]
        if feature in self.software:
            return self.software[feature][0]
        return feature

    def as_of(self, day: date | str, lag: bool = True) -> AttackIndex:
        """The index as it was known on ``day`` (see the module docstring for ``lag``). A relationship
        created before then keeps only the reports published by then among its citations (MITRE
        adds later reports to old relationships)."""
        cut = day.isoformat() if isinstance(day, date) else str(day)[:10]

        def known(created: str) -> bool:
            return (published(created) if lag else created[:10]) <= cut

        actors = {k: a for k, a in self.actors.items() if known(a.created)}
        techniques = {k: t for k, t in self.techniques.items() if known(t[2])}
        software = {k: s for k, s in self.software.items() if known(s[3])}
        ends = actors.keys() | techniques.keys() | software.keys()
        uses = [replace(u, citations=tuple(c for c in u.citations if self.citation_dates.get(c, "") <= cut))
                for u in self.uses if known(u.created) and u.source in ends and u.target in ends]
        actors = {k: replace(a, attributed_to=tuple(g for g in a.attributed_to if g in actors))
                  for k, a in actors.items()}
        return replace(self, techniques=techniques, software=software, actors=actors, uses=uses,
                       sliced=cut)

    # -- storage -----------------------------------------------------------------------------

    def to_json(self) -> dict:
        """The compact, deterministic JSON form (citations stored once, by number)."""
        names = sorted({c for u in self.uses for c in u.citations})
        number = {n: i for i, n in enumerate(names)}
        return {
            "format": INDEX_FORMAT, "attack_version": self.attack_version, "notice": self.notice,
            "source": self.source,
            "techniques": {k: [n, list(t), c] for k, (n, t, c) in sorted(self.techniques.items())},
            "software": {k: [n, ty, list(al), c] for k, (n, ty, al, c) in sorted(self.software.items())},
            "actors": {k: _actor_json(a) for k, a in sorted(self.actors.items())},
            "citations": names,
            "citation_dates": [self.citation_dates.get(n, "") for n in names],
            "uses": [[u.source, u.target, u.created, [number[c] for c in u.citations], u.text]
                     for u in sorted(self.uses, key=lambda u: (u.source, u.target, u.created))],
            "misp": self.misp,
        }

    @classmethod
    def from_json(cls, data: dict) -> AttackIndex:
        if data.get("format") != INDEX_FORMAT:
            raise IntelError(f"not a varde ATT&CK index (format {data.get('format')!r})")
        cites = data["citations"]
        index = cls(
            attack_version=data["attack_version"],
            techniques={k: (n, tuple(t), c) for k, (n, t, c) in data["techniques"].items()},
            software={k: (n, ty, tuple(al), c) for k, (n, ty, al, c) in data["software"].items()},
            actors={k: _actor_from(k, v) for k, v in data["actors"].items()},
            uses=[Use(s, t, c, tuple(cites[i] for i in refs), text)
                  for s, t, c, refs, text in data["uses"]],
            misp=data.get("misp", []), notice=data.get("notice", MITRE_NOTICE),
            source=data.get("source", ""),
            citation_dates={c: d for c, d in zip(cites, data.get("citation_dates", []), strict=False) if d},
        )
        return _with_misp(index)

    def save(self, path: Path) -> None:
        """Write gzip JSON with a zero timestamp, so the same input gives the same bytes."""
        raw = json.dumps(self.to_json(), ensure_ascii=False, separators=(",", ":")).encode()
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as fh, gzip.GzipFile(fileobj=fh, mode="wb", mtime=0, filename="") as gz:
            gz.write(raw)
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> AttackIndex:
        try:
            with gzip.open(path, "rb") as fh:
                return cls.from_json(json.loads(fh.read()))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise IntelError(f"{path}: cannot read the ATT&CK index: {exc}") from exc


def _actor_json(actor: Actor) -> list:
    return [actor.stix_id, actor.name, list(actor.aliases), actor.created, list(actor.attributed_to)]


def _actor_from(key: str, value: list) -> Actor:
    stix_id, name, aliases, created, attributed = value
    return Actor(key, stix_id, name, tuple(aliases), created, tuple(attributed))


# -- building from STIX ------------------------------------------------------------------------

_CITATION = re.compile(r"\(Citation: [^)]*\)")
_LINK = re.compile(r"\[([^\]]+)\]\(https?://[^)]*\)")


def _stix_objects(path: Path) -> Iterator[dict]:
    """Objects from a folder of STIX bundles (one object per file) or one bundle file."""
    files = [path] if path.is_file() else sorted(path.rglob("*.json"))
    if not files:
        raise IntelError(f"{path}: no STIX JSON files found")
    for file in files:
        try:
            bundle = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            log.warning("%s: skipped, not JSON: %s", file, exc)
            continue
        if isinstance(bundle, dict) and bundle.get("type") == "bundle":
            yield from bundle.get("objects", [])


def _attack_id(obj: dict) -> str | None:
    for ref in obj.get("external_references", []):
        if ref.get("source_name") in ("mitre-attack", "mitre-ics-attack") and ref.get("external_id"):
            return ref["external_id"]
    return None


def _active(obj: dict) -> bool:
    return not obj.get("revoked") and not obj.get("x_mitre_deprecated")


def procedure_text(description: str) -> str:
    """A procedure description as plain text: links reduced to their label, citations dropped."""
    text = _LINK.sub(r"\1", description or "")
    text = _CITATION.sub("", text)
    return " ".join(text.replace("<code>", "").replace("</code>", "").split())


def stix_to_index(objects: Iterable[dict], source: str = "", attack_version: str | None = None) -> AttackIndex:
    """Build the index from ATT&CK STIX objects (revoked and deprecated objects left out)."""
    by_id: dict[str, str] = {}
    techniques, software, actors, relations = {}, {}, {}, []
    newest = ""
    for obj in objects:
        newest = max(newest, obj.get("modified", ""))
        kind = obj.get("type")
        if kind == "relationship":
            relations.append(obj)
            continue
        if kind == "x-mitre-collection" and attack_version is None:
            attack_version = obj.get("x_mitre_version")
        ext = _attack_id(obj)
        if not ext or not _active(obj):
            continue
        created = obj.get("created", "")[:10]
        if kind == "attack-pattern":
            tactics = tuple(p["phase_name"] for p in obj.get("kill_chain_phases", []))
            techniques[ext] = (obj.get("name", ext), tactics, created)
        elif kind in _SOFTWARE_TYPES:
            aliases = tuple(a for a in obj.get("x_mitre_aliases", []) if a != obj.get("name"))
            software[ext] = (obj.get("name", ext), kind, aliases, created)
        elif kind in _ACTOR_TYPES:
            aliases = tuple(a for a in obj.get("aliases", []) if a != obj.get("name"))
            actors[ext] = Actor(ext, obj["id"], obj.get("name", ext), aliases, created)
        else:
            continue
        by_id[obj["id"]] = ext
    uses, attributed = _relations(relations, by_id)
    dates = citation_dates(relations)
    for campaign, group in sorted(attributed):
        a = actors[campaign]
        actors[campaign] = replace(a, attributed_to=tuple(sorted({*a.attributed_to, group})))
    version = attack_version or release_of(newest)
    log.info("ATT&CK %s: %d techniques, %d software, %d actors, %d uses",
             version, len(techniques), len(software), len(actors), len(uses))
    return AttackIndex(version, techniques, software, actors, uses, source=source, citation_dates=dates)


#: A reference's publication date as MITRE writes it: ``Author. (2021, March 2). Title. Retrieved ...``.
_PUBLISHED = re.compile(r"\((\d{4})(?:,\s*([A-Z][a-z]+)(?:\s+(\d{1,2}))?)?\)")
_MONTHS = {m: n for n, m in enumerate(("January", "February", "March", "April", "May", "June", "July", "August",
                                        "September", "October", "November", "December"), 1)}


def published_on(description: str) -> str | None:
    """The publication date of a reference (``2021-03-02``, ``2020-11`` or ``2019``), or None."""
    match = _PUBLISHED.search(description)
    if match is None:
        return None
    year, month, day = match.groups()
    if month not in _MONTHS:
        return year
    return f"{year}-{_MONTHS[month]:02d}" + (f"-{int(day):02d}" if day else "")


def citation_dates(relations: Iterable[dict]) -> dict[str, str]:
    """Each cited source's publication date (the earliest any of its references gives)."""
    out: dict[str, str] = {}
    for rel in relations:
        for ref in rel.get("external_references", []):
            name, day = ref.get("source_name"), published_on(ref.get("description") or "")
            if name and day and (name not in out or day < out[name]):
                out[name] = day
    return out


def _relations(relations: list[dict], by_id: dict[str, str]) -> tuple[list[Use], set[tuple[str, str]]]:
    uses: list[Use] = []
    attributed: set[tuple[str, str]] = set()
    for rel in relations:
        if not _active(rel):
            continue
        src, dst = by_id.get(rel.get("source_ref", "")), by_id.get(rel.get("target_ref", ""))
        if not src or not dst:
            continue
        kind = rel.get("relationship_type")
        if kind == "attributed-to" and src.startswith("C") and dst.startswith("G"):
            attributed.add((src, dst))
        elif kind == "uses" and not dst.startswith(("G", "C")):
            from_actor = src.startswith(("G", "C"))
            cites = tuple(sorted({r["source_name"] for r in rel.get("external_references", [])
                                  if r.get("source_name") and r.get("description")}))
            text = procedure_text(rel.get("description", "")) if from_actor else ""
            uses.append(Use(src, dst, rel.get("created", "")[:10], cites if from_actor else (), text))
    return uses, attributed


# -- MISP galaxy ---------------------------------------------------------------------------------

_MISP_KEYS = ("country", "cfr-suspected-victims", "cfr-target-category", "targeted-sector",
              "cfr-suspected-state-sponsor")


def misp_actors(galaxy_file: Path) -> list[dict]:
    """The compact subset of a MISP threat-actor cluster file the index keeps."""
    try:
        values = json.loads(galaxy_file.read_text(encoding="utf-8"))["values"]
    except (OSError, ValueError, KeyError) as exc:
        raise IntelError(f"{galaxy_file}: not a MISP galaxy cluster file: {exc}") from exc
    out = []
    for value in values:
        meta = value.get("meta", {})
        entry = {
            "name": value.get("value", ""),
            "synonyms": sorted({*meta.get("synonyms", []),
                                *(n.split(":")[0] for n in meta.get("name-attribution", []))}),
            "related": sorted({r["dest-uuid"] for r in value.get("related", []) if "dest-uuid" in r}),
            **{k: meta[k] for k in _MISP_KEYS if k in meta},
        }
        if any(k in entry for k in _MISP_KEYS):
            out.append(entry)
    return sorted(out, key=lambda e: e["name"])


def _misp_match(entry: dict, by_uuid: dict[str, str], by_name: dict[str, set[str]]) -> set[str]:
    """ATT&CK actors a MISP entry describes: by related UUID, else its name, else one synonym id."""
    ids = {by_uuid[u] for u in entry.get("related", []) if u in by_uuid}
    own = by_name.get(entry["name"].casefold(), set())
    ids |= own if len(own) == 1 else set()
    if ids:
        return ids
    hits = set().union(*(by_name.get(n.casefold(), set()) for n in entry.get("synonyms", [])))
    return hits if len(hits) == 1 else set()


def _country(actor: Actor, entries: list[dict]) -> str | None:
    """One country: agreed by the entries that share a name with the actor, else by all."""
    names = {n.casefold() for n in (actor.name, *actor.aliases)}
    named = [e for e in entries if names & {n.casefold() for n in (e["name"], *e.get("synonyms", []))}]
    for group in (named, entries):
        countries = {e["country"] for e in group if e.get("country")}
        if len(countries) == 1:
            return countries.pop()
    return None


def _with_misp(index: AttackIndex) -> AttackIndex:
    """Join MISP country, victims and sectors onto ATT&CK groups (by UUID, else unique name)."""
    by_uuid = {a.stix_id.split("--")[-1]: a.id for a in index.actors.values()}
    by_name: dict[str, set[str]] = {}
    for a in index.actors.values():
        for name in (a.name, *a.aliases):
            by_name.setdefault(name.casefold(), set()).add(a.id)
    found: dict[str, list[dict]] = {}
    for entry in index.misp:
        for actor_id in _misp_match(entry, by_uuid, by_name):
            found.setdefault(actor_id, []).append(entry)
    for actor_id, entries in found.items():
        countries = _country(index.actors[actor_id], entries)
        victims = sorted({v for e in entries for v in e.get("cfr-suspected-victims", [])})
        sectors = sorted({s for e in entries for k in ("cfr-target-category", "targeted-sector")
                          for s in e.get(k, [])})
        index.actors[actor_id] = replace(
            index.actors[actor_id], country=countries,
            victims=tuple(victims), sectors=tuple(sectors))
    return index


def build_index(attack: Path, misp: Iterable[Path] = (), attack_version: str | None = None) -> AttackIndex:
    """The index from an ATT&CK STIX folder or bundle, with MISP threat-actor cluster files."""
    index = stix_to_index(_stix_objects(attack), source=str(attack), attack_version=attack_version)
    index.misp = sorted((e for file in misp for e in misp_actors(file)), key=lambda e: e["name"])
    return _with_misp(index)


def user_index_path() -> Path:
    """Where ``varde intel update`` puts a newer index: ``$VARDE_DATA_DIR`` or ~/.local/share/varde."""
    base = os.environ.get("VARDE_DATA_DIR") or str(Path.home() / ".local" / "share" / "varde")
    return Path(base) / INDEX_NAME


def default_index() -> AttackIndex:
    """The index in use: the user's updated one when there is one, else the bundled one."""
    user = user_index_path()
    if user.is_file():
        return AttackIndex.load(user)
    with resources.as_file(resources.files("varde.data") / INDEX_NAME) as path:
        return AttackIndex.load(path)
