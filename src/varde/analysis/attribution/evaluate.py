"""The evaluation protocols of research/attribution.md §2.3, run on an ATT&CK index.

* E1, leave-one-report-out: a case is a group and one cited report that supports at least five
  of its features; the query is those features, and every relationship that report alone
  supports is taken out of the index first (for every actor, not just the group), so the
  held-out report's own relationships never score it.
* E2, campaign to group: the query is an attributed campaign's features; the campaign and every
  relationship supported only by the campaign's own reports are taken out (strict). The research
  notes' protocol takes out only the campaign (its group keeps relationships cited to the same
  reports); it is run too, labelled "research protocol (leaks)", and never judged on.
* E3, country: the country of the top candidate (and of the most probable country) in E1.
* Hyperparameters (``alpha``, the IDF power, the weights of the TF-IDF and closest-reports views
  and how many reports the latter averages) are cross-fitted: chosen on
  E1 cases of one half of the groups, measured on the other half, and the other way round.
* Calibration: expected calibration error (10 bins, top candidate) and the multi-class Brier
  score over candidates plus "unknown", on E1 cases and on E1 cases whose group is removed from
  the index altogether (the right answer then is "unknown").

Ties rank pessimistically: the truth ranks behind every candidate with the same score.
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

import numpy as np

from varde.analysis.attack import AttackIndex
from varde.analysis.attribution.calibrate import Row, ece_interval, fit, judge, summary
from varde.analysis.attribution.countries import pooled_scores, shares
from varde.analysis.attribution.model import Basis, Params, Profiles, posterior, report_sets

MIN_FEATURES = 5


@dataclass(frozen=True)
class Case:
    """One held-out query: its features, the right answer and what the index must forget."""

    name: str
    truth: str  # a group id, or "" when the right answer is "unknown"
    features: tuple[str, ...]
    forget: frozenset[str]  # reports taken out everywhere
    removed: frozenset[str] = frozenset()  # actors taken out altogether

    @property
    def removed_group(self) -> str:
        return min((a for a in self.removed if a.startswith("G")), default="")


@dataclass
class Outcome:
    rank: int | None  # 1-based rank of the truth among candidates (None: not a candidate)
    top: str | None
    top_probability: float
    truth_probability: float
    unknown: float
    country_top: str | None = None
    country_best: str | None = None
    truth_country: str | None = None


@dataclass
class Tally:
    """Top-k, MRR, country and calibration figures over a protocol's outcomes."""

    outcomes: list[Outcome] = field(default_factory=list)

    def top(self, k: int) -> float:
        return _share(self.outcomes, lambda o: o.rank is not None and o.rank <= k)

    def mrr(self) -> float:
        return sum(1 / o.rank for o in self.outcomes if o.rank) / max(len(self.outcomes), 1)

    def country(self, which: str = "top") -> tuple[float, int]:
        rated = [o for o in self.outcomes if o.truth_country]
        got = _share(rated, lambda o: getattr(o, f"country_{which}") == o.truth_country)
        return got, len(rated)

    def summary(self) -> dict:
        return {"cases": len(self.outcomes), "top1": self.top(1), "top5": self.top(5),
                "top10": self.top(10), "mrr": self.mrr()}


def _share(items: list, test: Callable) -> float:
    return sum(1 for i in items if test(i)) / len(items) if items else 0.0


def loro_cases(index: AttackIndex, software: bool,
               reports: dict[tuple[str, str], frozenset[str]] | None = None) -> Iterator[Case]:
    """E1 cases: (group, report) pairs where the report supports >= MIN_FEATURES features."""
    by_report: dict[tuple[str, str], set[str]] = defaultdict(set)
    for (actor, feature), cited in (reports or report_sets(index)).items():
        if actor.startswith("G") and (software or feature.startswith("T")):
            for report in cited:
                if not report.startswith("uncited "):
                    by_report[(actor, report)].add(feature)
    for (group, report), features in sorted(by_report.items()):
        if len(features) >= MIN_FEATURES:
            yield Case(f"{group} / {report}", group, tuple(sorted(features)), frozenset({report}))


def campaign_cases(index: AttackIndex, software: bool, strict: bool = True) -> Iterator[Case]:
    """E2 cases: each campaign ATT&CK attributes to exactly one group.

    The query is the campaign's own features; the campaign and all of its reports are forgotten
    (so the group keeps only what other reports say about it). Removing only the campaign's own
    relationships (``strict=False``, the research notes' protocol) leaks: ATT&CK documents the
    group from the same reports, so the answer's own evidence stays in the index.
    """
    for campaign in index.campaigns():
        if len(campaign.attributed_to) != 1:
            continue
        own = [u for u in index.uses if u.source == campaign.id and (software or u.target.startswith("T"))]
        if not own:
            continue
        features = tuple(sorted({u.target for u in own}))
        cited = frozenset(c for u in index.uses if u.source == campaign.id
                          for c in u.citations or (f"uncited {campaign.id}",))
        yield Case(f"{campaign.id} {campaign.name}", campaign.attributed_to[0], features,
                   cited if strict else frozenset(), frozenset({campaign.id}))


def ceiling(basis: Basis, cases: list[Case]) -> float:
    """The share of cases whose group keeps at least one of the query's features once the case's
    reports are forgotten: no ranker can find the others (an upper bound on top-k)."""
    kept = 0
    for case in cases:
        counts, _ = basis.held_out(case.forget)
        cols = [basis.column[f] for f in case.features if f in basis.column]
        row = basis.row.get(case.truth)
        kept += row is not None and bool((counts[row, cols] > 0).any())
    return kept / max(len(cases), 1)


def novel_cases(cases: list[Case]) -> Iterator[Case]:
    """The cases again with their group removed from the index: the answer is "unknown"."""
    for case in cases:
        yield Case(case.name + " (group removed)", "", case.features, case.forget,
                   case.removed | {case.truth})


@dataclass(frozen=True)
class Scored:
    """A case and every candidate's score against the index that forgot it."""

    case: Case
    scores: dict[str, float]
    features: int
    pooled: dict[str, float] = field(default_factory=dict)  # countries' pooled-profile scores

    @property
    def row(self) -> Row:
        return self.case.truth, self.scores, self.features


def score_case(basis: Basis, case: Case, params: Params) -> Scored:
    """Score one case against the index without what it must forget."""
    index = basis.index
    removed = case.removed | {c.id for c in index.campaigns() if set(c.attributed_to) & case.removed}
    profiles = Profiles(basis, params, case.forget, frozenset(removed))
    known = [f for f in case.features if profiles.known(f)]
    pooled = pooled_scores(profiles, known, lambda c: _country(index, c))
    return Scored(case, profiles.scores(known), len(known), pooled)


def run_case(basis: Basis, case: Case, params: Params) -> Outcome:
    """Score one case and turn the scores into its outcome."""
    return outcome(basis.index, score_case(basis, case, params), params)


def outcome(index: AttackIndex, scored: Scored, params: Params) -> Outcome:
    """Rank, probabilities and countries of one scored case."""
    case, scores = scored.case, scored.scores
    probs, unknown = posterior(scores, params, scored.features)
    order = sorted(scores, key=lambda c: (-scores[c], c))
    top = order[0] if order else None
    rank = None
    if case.truth in scores:
        rank = 1 + sum(1 for c in scores if c != case.truth and scores[c] >= scores[case.truth])
    countries = shares(probs, unknown, scored.pooled, lambda c: _country(index, c), params.country_mix,
                       params.country_temperature)
    best = max(sorted(countries), key=lambda k: countries[k]) if countries else None
    truth_p = probs.get(case.truth, 0.0) if case.truth else unknown
    return Outcome(rank, top, probs.get(top, 0.0) if top else 0.0, truth_p, unknown,
                   _country(index, top), best, _country(index, case.truth))


def _country(index: AttackIndex, actor_id: str | None) -> str | None:
    actor = index.actors.get(actor_id or "")
    if actor is None:
        return None
    if actor.country:
        return actor.country
    countries = {index.actors[g].country for g in actor.attributed_to if index.actors[g].country}
    return countries.pop() if len(countries) == 1 else None


def _fold(scored: Scored) -> int:
    return zlib.crc32((scored.case.truth or scored.case.removed_group).encode()) % 2


def cross_fitted(index: AttackIndex, scored: list[Scored], base: Params) -> dict:
    """Calibration measured on each half of the groups with parameters fitted on the other half."""
    judged = []
    for fold in (0, 1):
        params = fit([s.row for s in scored if _fold(s) != fold], base)
        judged += judge([s.row for s in scored if _fold(s) == fold], params)
    low, high = ece_interval(judged)
    return {**summary(judged), "ece_interval_95": [low, high]}


GRID = {"alpha": (0.1, 0.3), "idf_power": (1.0, 2.0, 3.0), "cosine": (0.0, 0.5, 1.0, 2.0, 3.0, 5.0),
        "reports": (0.0, 1.0, 2.0, 4.0, 8.0), "top_reports": (1, 2, 3)}


def _grid_ranks(basis: Basis, cases: list[Case], params: Params) -> dict[int, np.ndarray]:
    """For each ``top_reports``: the truth's rank (0: not a candidate) per case and per
    (``cosine``, ``reports``) pair of the grid, with ``alpha`` and the IDF power of ``params``."""
    pairs = np.array([(w, r) for w in GRID["cosine"] for r in GRID["reports"]])
    out = {top: np.zeros((len(cases), len(pairs)), dtype=int) for top in GRID["top_reports"]}
    for i, case in enumerate(cases):
        profiles = Profiles(basis, params, case.forget, case.removed)
        if case.truth not in profiles.row:
            continue
        t = profiles.row[case.truth]
        known = [f for f in case.features if profiles.known(f)]
        for top in GRID["top_reports"]:
            llr, cos, near = profiles.views(known, top)
            total = llr[None, :] + pairs[:, :1] * cos[None, :] + pairs[:, 1:] * near[None, :]
            out[top][i] = (total >= total[:, t : t + 1]).sum(axis=1)
    return out


def _mrr(ranks: np.ndarray) -> float:
    return float(np.where(ranks > 0, 1.0 / np.maximum(ranks, 1), 0.0).mean()) if len(ranks) else 0.0


def select(basis: Basis, cases: list[Case], base: Params) -> dict:
    """Cross-fitted hyperparameters: for each half of the groups, the grid point with the best
    MRR on the other half's cases, and that half's ranks under it; and the best point over all
    cases (what ships)."""
    ranks = {(a, p, top): r for a in GRID["alpha"] for p in GRID["idf_power"]
             for top, r in _grid_ranks(basis, cases, replace(base, alpha=a, idf_power=p)).items()}
    pairs = [(w, r) for w in GRID["cosine"] for r in GRID["reports"]]
    points = [(key, j) for key in ranks for j in range(len(pairs))]
    half = np.array([zlib.crc32(c.truth.encode()) % 2 for c in cases])

    def best(rows: np.ndarray) -> tuple[tuple, int]:
        return max(points, key=lambda kj: _mrr(ranks[kj[0]][rows, kj[1]]))

    chosen, held = {}, []
    for h in (0, 1):
        key, j = best(half != h)
        chosen[h] = _point(key, pairs[j])
        held += [int(r) or None for r in ranks[key][half == h, j]]
    key, j = best(np.ones(len(cases), dtype=bool))
    tally = Tally([Outcome(r, None, 0.0, 0.0, 0.0) for r in held])
    return {**tally.summary(), "chosen_per_half": chosen, "best_on_all": _point(key, pairs[j])}


COUNTRY_GRID = {"country_mix": (0.0, 0.1, 0.2, 0.3, 0.5, 0.7), "country_temperature": (2.0, 4.0, 8.0, 16.0)}


def select_country(index: AttackIndex, scored: list[Scored], base: Params) -> dict:
    """E3 with the country mixture cross-fitted: for each half of the groups, the grid point with
    the most right countries on the other half, measured on this half; and the best over all."""
    rated = [s for s in scored if _country(index, s.case.truth)]
    half = np.array([zlib.crc32(s.case.truth.encode()) % 2 for s in rated])
    points = [replace(base, country_mix=m, country_temperature=t)
              for m in COUNTRY_GRID["country_mix"] for t in COUNTRY_GRID["country_temperature"]]
    right = np.array([[outcome(index, s, p).country_best == _country(index, s.case.truth) for s in rated]
                      for p in points])
    chosen, hits = {}, 0
    for h in (0, 1):
        j = int(np.argmax(right[:, half != h].sum(axis=1)))
        chosen[h] = {"country_mix": points[j].country_mix, "country_temperature": points[j].country_temperature}
        hits += int(right[j, half == h].sum())
    j = int(np.argmax(right.sum(axis=1)))
    return {"cases": len(rated), "most_probable_country": hits / max(len(rated), 1),
            "plain_sum": float(right[0].mean()) if len(rated) else 0.0, "chosen_per_half": chosen,
            "best_on_all": {"country_mix": points[j].country_mix,
                            "country_temperature": points[j].country_temperature}}


def _point(key: tuple, pair: tuple[float, float]) -> dict:
    return {"alpha": key[0], "idf_power": key[1], "cosine": pair[0], "reports": pair[1], "top_reports": key[2]}


def evaluate(index: AttackIndex, params: Params | None = None, step: int = 1) -> dict:
    """All protocols on one index; ``step`` keeps every n-th case (for quick runs)."""
    from varde.analysis.attribution.assess import PARAMS

    params = params or PARAMS
    basis = Basis(index)
    out: dict = {"attack_version": index.attack_version, "groups": len(index.groups()), "params": vars(params)}
    for software in (False, True):
        label = "techniques+software" if software else "techniques"
        cases = list(loro_cases(index, software, basis.reports))[::step]
        scored = [score_case(basis, c, params) for c in cases]
        tally = Tally([outcome(index, s, params) for s in scored])
        out[f"E1 {label}"] = {**tally.summary(), "ceiling": ceiling(basis, cases)}
        top, rated = tally.country("top")
        best, _ = tally.country("best")
        out[f"E3 {label}"] = {"cases": rated, "country_of_top_candidate": top, "most_probable_country": best}
        campaigns = list(campaign_cases(index, software))
        out[f"E2 {label}"] = {**Tally([run_case(basis, c, params) for c in campaigns]).summary(),
                              "ceiling": ceiling(basis, campaigns)}
        leaky = list(campaign_cases(index, software, strict=False))
        out[f"E2 {label}, research protocol (leaks)"] = Tally([run_case(basis, c, params) for c in leaky]).summary()
        out[f"E3 {label}, cross-fitted country mixture"] = select_country(index, scored, params)
        if software:
            out[f"E1 {label}, cross-fitted hyperparameters"] = select(basis, cases, params)
            novel = [score_case(basis, c, params) for c in list(novel_cases(cases))[::2]]
            both = scored + novel
            out["calibration"] = {**cross_fitted(index, both, params), "novel_cases": len(novel),
                                  "shipped_params": summary(judge([s.row for s in both], params))}
            fitted = fit([s.row for s in both], params)
            out["fitted_on_all"] = {"temperature": fitted.temperature, "unknown": list(fitted.unknown)}
    return out
