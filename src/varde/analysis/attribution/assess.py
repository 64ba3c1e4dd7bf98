"""``attribute``: observed techniques, software, indicators and victim -> the report's attribution.

Evidence lines, each a log-likelihood ratio per candidate against an actor not in the data:
behaviour (:mod:`.model`), actor-labelled indicator hits (:mod:`.indicators`) and code matches
(YARA rule metadata naming a malware family or an actor). A victimology prior (MISP suspected
victims and target sectors) multiplies the candidate's prior weight. The posterior keeps an
explicit mass for an unknown actor; the country level sums the candidates of each country.
Probabilities are for "this candidate is (one of) the actor(s) behind the evidence"; when several
actors were inside, each intruder's evidence should be attributed on its own.
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import date

import pycountry
from pydantic import BaseModel, ConfigDict

from varde.analysis.attack import AttackIndex, Use
from varde.analysis.attribution import indicators as ioc
from varde.analysis.attribution.countries import pooled_scores, shares
from varde.analysis.attribution.model import Params, Profiles, posterior
from varde.analysis.attribution.words import Scale, confidence, likelihood
from varde.report.document import Attribution, AttributionCandidate, CountryShare

# Fitted on held-out ATT&CK cases (bench/attribution_bench.py), never per case.
PARAMS = Params(alpha=0.1, implied=0.1, cosine=2.0, idf_power=2.0, reports=2.0, top_reports=3,
                country_mix=0.0, temperature=8.0, unknown=(-0.836, -0.204, -0.101, 0.5584))
VICTIM_COUNTRY_FACTOR = 2.0  # prior weight when MISP lists the victim's country for the actor
VICTIM_SECTOR_FACTOR = 1.5
CODE_MATCH_RATIO = 50.0  # a YARA rule naming the actor itself
MIN_PROBABILITY = 0.01
MAX_CANDIDATES = 10
SPECIFIC = 3  # a feature shared by at most this many groups is specific
METHOD = ("Bernoulli naive-Bayes likelihood ratios of ATT&CK techniques and software per report "
          "(IDF-like specificity) plus a TF-IDF profile view and the closest cited reports, "
          "actor-labelled indicator and code matches, victimology prior; "
          "softmax with an explicit unknown-actor mass")


class AttributionInput(BaseModel):
    """What the case observed. Ids are ATT&CK ids; software may also be given by name."""

    model_config = ConfigDict(frozen=True)

    techniques: list[str] = []
    software: list[str] = []
    indicators: list[str] = []
    code_matches: list[dict[str, str]] = []  # YARA rule metadata: family / malware / actor keys
    victim_country: str | None = None  # ISO 3166 alpha-2
    victim_sector: str | None = None


class _Resolver:
    """Names and aliases to ATT&CK ids (actors and software)."""

    def __init__(self, index: AttackIndex):
        self.actors: dict[str, str] = {}
        self.software: dict[str, str] = {}
        for a in index.actors.values():
            for name in (a.id, a.name, *a.aliases):
                self.actors.setdefault(name.casefold(), a.id)
        for sid, (name, _, aliases, _) in index.software.items():
            for n in (sid, name, *aliases):
                self.software.setdefault(n.casefold(), sid)

    def actor(self, name: str) -> str | None:
        return self.actors.get(name.strip().casefold())

    def tool(self, name: str) -> str | None:
        return self.software.get(name.strip().casefold())


def _country_code(name: str) -> str | None:
    try:
        return pycountry.countries.lookup(name).alpha_2
    except LookupError:
        return None


def _prior(index: AttackIndex, evidence: AttributionInput, candidates: list[str]) -> dict[str, float]:
    prior = {}
    for c in candidates:
        actor, factor = index.actors[c], 1.0
        if evidence.victim_country and evidence.victim_country.upper() in {
                _country_code(v) for v in actor.victims}:
            factor *= VICTIM_COUNTRY_FACTOR
        if evidence.victim_sector and evidence.victim_sector.casefold() in {s.casefold() for s in actor.sectors}:
            factor *= VICTIM_SECTOR_FACTOR
        prior[c] = factor
    return prior


def attribute(evidence: AttributionInput, index: AttackIndex, as_of: date | str | None = None,
              params: Params = PARAMS, indicator_sets: list[ioc.Indicator] = (),
              scale: Scale = "icd203") -> Attribution:
    """Rank candidate actors and countries for the evidence (see the module docstring)."""
    view = index.as_of(as_of) if as_of else index
    resolve = _Resolver(view)
    profiles = Profiles(view, params)
    software, notes = _software(evidence, resolve)
    features = list(dict.fromkeys([t.strip().upper() for t in evidence.techniques if t.strip()] + software))
    known = [f for f in features if profiles.known(f)]
    notes += [f"{f}: not in ATT&CK {view.attack_version}" + (f" as of {view.sliced}" if view.sliced else "")
              for f in features if f not in known]
    scores = profiles.scores(known)
    strong: dict[str, list[str]] = defaultdict(list)
    _indicator_evidence(evidence, indicator_sets, resolve, scores, strong, notes)
    _code_evidence(evidence, resolve, scores, strong)
    probs, unknown = posterior(scores, params, len(known), _prior(view, evidence, list(scores)))
    order = sorted(probs, key=lambda c: (-probs[c], c))
    listed = [c for c in order[:MAX_CANDIDATES] if probs[c] >= MIN_PROBABILITY]
    candidates = [_candidate(view, profiles, c, probs[c], scores[c], known, strong.get(c, []), scale)
                  for c in listed]
    return Attribution(
        candidates=candidates, countries=_countries(view, profiles, known, probs, unknown, scale),
        unknown_probability=round(unknown, 4),
        attack_version=view.attack_version, as_of=view.sliced, scale=scale, method=METHOD,
        notes=notes, notice=view.notice)


def _software(evidence: AttributionInput, resolve: _Resolver) -> tuple[list[str], list[str]]:
    out, notes = [], []
    names = [*evidence.software, *(m.get("malware_family") or m.get("family") or m.get("malware") or ""
                                    for m in evidence.code_matches)]
    for name in (n for n in names if n):
        sid = resolve.tool(name)
        if sid:
            out.append(sid)
        else:
            notes.append(f"software {name!r}: not in ATT&CK")
    return out, notes


def _indicator_evidence(evidence, sets, resolve, scores, strong, notes) -> None:
    if not evidence.indicators or not sets:
        return
    hits, unattributed = ioc.match(evidence.indicators, list(sets), resolve.actor)
    for actor, found in sorted(hits.items()):
        if actor not in scores:
            continue
        for hit in found:
            scores[actor] += hit.llr
            i = hit.indicator
            text = f"indicator {i.value} ({i.type}, {i.scope}) in {i.source or 'an indicator set'}, llr {hit.llr:+.2f}"
            strong[actor].append(text if i.scope == "actor" else "weak: " + text)
    for i in unattributed:
        notes.append(f"indicator {i.value} ({i.type}) matches a {i.scope} list ({i.source}): "
                     "exploitation-wave or shared infrastructure, names no actor")


def _code_evidence(evidence, resolve, scores, strong) -> None:
    for meta in evidence.code_matches:
        actor = resolve.actor(meta.get("actor") or meta.get("threat_actor") or "")
        if actor and actor in scores:
            scores[actor] += math.log(CODE_MATCH_RATIO)
            rule = meta.get("rule") or meta.get("name") or "a YARA rule"
            strong[actor].append(f"code match: {rule} names {meta.get('actor') or meta.get('threat_actor')}"
                                 f" ({meta.get('reference') or meta.get('author') or 'no reference'})")


def _candidate(index, profiles, cid, p, score, known, strong, scale) -> AttributionCandidate:
    actor = index.actors[cid]
    contributions = sorted((profiles.contribution(cid, f) for f in known),
                           key=lambda c: (-c.llr - c.view, c.feature))
    specific = sum(1 for c in contributions if c.reports and c.shared_by <= SPECIFIC)
    strong_count = sum(1 for s in strong if not s.startswith("weak: "))
    groups = sum(1 for c in profiles.candidates if c.startswith("G"))
    quotes = _procedures(index, cid)
    evidence_for = [*strong, *_closest(profiles, cid, known),
                    *(_why(index, c, groups, quotes.get(c.feature)) for c in contributions if c.reports)]
    against = [f"{c.feature} {index.name_of(c.feature)}: observed, not documented for {actor.name} "
               f"(llr {c.llr:+.2f})" for c in reversed(contributions) if not c.reports][:5]
    against += [f"{f} {index.name_of(f)}: in {rate:.0%} of {actor.name}'s reports, not observed"
                for f, rate in profiles.expected_absent(cid, known)]
    country = actor.country or _campaign_country(index, actor)
    return AttributionCandidate(
        name=actor.name, attack_id=cid, aliases=list(actor.aliases), country=country,
        probability=round(p, 4), likelihood=likelihood(p, scale),
        confidence=confidence(specific, len(known), strong_count, p),
        evidence_for=evidence_for, evidence_against=against,
        kind="campaign" if actor.is_campaign else "group", score=round(score, 3))


def _closest(profiles: Profiles, cid: str, known: list[str]) -> list[str]:
    """The closest-report view's evidence: the candidate's most similar cited report."""
    near = profiles.closest(cid, known)
    if near is None or not near.shared:
        return []
    text = (f"closest report: {near.report} shares {near.shared} of its {near.size} features with the "
            f"observed {len(known)} (similarity {near.similarity:.2f}, report view weight "
            f"{profiles.params.reports:g} over the best {profiles.params.top_reports})")
    return [text]


def _procedures(index: AttackIndex, cid: str) -> dict[str, Use]:
    """The first ATT&CK procedure text per feature for a candidate and its campaigns."""
    ids = {cid, *(a.id for a in index.campaigns() if cid in a.attributed_to)}
    out: dict[str, Use] = {}
    for use in index.uses:
        if use.source in ids and use.text:
            out.setdefault(use.target, use)
    return out


def _why(index: AttackIndex, c, groups: int, use: Use | None) -> str:
    text = (f"{c.feature} {index.name_of(c.feature)}: {c.how}, in {c.reports:g} reports, shared by "
            f"{c.shared_by} of {groups} groups, llr {c.llr:+.2f}, profile view {c.view:+.2f}")
    if use is None:
        return text
    quote = use.text if len(use.text) <= 240 else use.text[:237] + "..."
    return f"{text}. ATT&CK: \"{quote}\" ({'; '.join(use.citations[:2]) or 'no citation'})"


def _campaign_country(index: AttackIndex, actor) -> str | None:
    countries = {index.actors[g].country for g in actor.attributed_to if index.actors[g].country}
    return countries.pop() if len(countries) == 1 else None


def _countries(index: AttackIndex, profiles: Profiles, known: list[str], probs: dict[str, float],
               unknown: float, scale: Scale) -> list[CountryShare]:
    def country_of(c: str) -> str | None:
        actor = index.actors[c]
        return actor.country or _campaign_country(index, actor)

    p = profiles.params
    pooled = pooled_scores(profiles, known, country_of) if p.country_mix > 0 else {}
    total = shares(probs, unknown, pooled, country_of, p.country_mix, p.country_temperature)
    ranked = sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))
    return [CountryShare(country=k, probability=round(v, 4), likelihood=likelihood(v, scale))
            for k, v in ranked if v >= MIN_PROBABILITY]
