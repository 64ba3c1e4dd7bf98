"""The behaviour model: how well each candidate's ATT&CK profile explains the observed features.

A candidate is an ATT&CK group (with the campaigns ATT&CK attributes to it) or a campaign
attributed to no group. ATT&CK cites, for each ``uses`` relationship, the reports that document
it, so for a candidate ``c`` seen in ``n_c`` reports, ``n_cf`` of which show feature ``f``
(a technique or software id), a report of ``c`` shows ``f`` with the smoothed rate::

    theta_cf = (n_cf + alpha * b_f) / (n_c + alpha)

where ``b_f`` is the rate over all groups' reports (the background: an actor not in the data).
Observed features are scored as a Bernoulli naive-Bayes log-likelihood ratio against that
background: a rare feature the candidate often shows counts much (about ``-log b_f``, an IDF), a
common one little, a feature it never shows costs ``log(alpha / (n_c + alpha))``, and features
the candidate usually shows but were not observed cost a little each (``log((1-theta)/(1-b))``),
which keeps large profiles from winning by size alone. Software the candidate uses lends its own
techniques at ``implied`` times its count. Software is scored like techniques; its rates are
usually small, which is why custom malware weighs heavily.

A second view is added to that llr with weight ``cosine``: the projection of the observed
features, weighted ``idf ** idf_power``, on the candidate's unit TF-IDF profile
(``log(1 + n_cf) * idf ** idf_power``). It ranks well where per-report rates are thin (a group
documented by many short citations of one feature each), and it grows with the number and
specificity of the observed features, so a few generic techniques still say little.

A third view, weight ``reports``, scores the candidate by its closest individual reports
(:mod:`.reportview`): the mean of the ``top_reports`` best projections of the observed features
on one report's features.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from varde.analysis.attack import AttackIndex
from varde.analysis.attribution.reportview import Closest, ReportView


@dataclass(frozen=True)
class Params:
    """The model's few parameters (fitted on ATT&CK as a whole, never per case; see bench/)."""

    alpha: float = 0.1  # smoothing toward the background rate
    implied: float = 0.1  # share of a software's count lent to the techniques it uses
    cosine: float = 0.0  # weight of the TF-IDF view (see Profiles.views) added to the llr
    idf_power: float = 2.0  # the TF-IDF view weighs features by idf ** idf_power
    reports: float = 0.0  # weight of the closest-reports view (see :mod:`.reportview`)
    top_reports: int = 2  # how many of a candidate's closest reports that view averages
    country_mix: float = 0.0  # share of the pooled country profiles at country level (.countries)
    country_temperature: float = 4.0  # divides the pooled country scores
    temperature: float = 8.0  # divides the summed llr (features are not independent)
    # Logistic model of "an actor not in the data" on how well the best candidate explains the
    # evidence: bias, best tempered score, its lead over the second, log(1 + features).
    unknown: tuple[float, float, float, float] = (0.0, -1.0, 0.0, 0.0)


@dataclass(frozen=True)
class Contribution:
    """One observed feature's part in one candidate's score."""

    feature: str
    reports: float  # how many of the candidate's reports show it (fractional when implied)
    how: str  # "uses", "campaign C…", "via software S…", "absent"
    llr: float
    shared_by: int  # how many groups document the feature
    view: float = 0.0  # its part of the weighted TF-IDF view (0 when the candidate lacks it)


def report_sets(index: AttackIndex) -> dict[tuple[str, str], frozenset[str]]:
    """(candidate, feature) -> the reports citing it; campaigns folded into their group."""
    reports: dict[tuple[str, str], set[str]] = defaultdict(set)
    for use in index.uses:
        actor = index.actors.get(use.source)
        if actor is None:
            continue
        owners = actor.attributed_to if actor.is_campaign and actor.attributed_to else (actor.id,)
        for owner in owners:
            reports[(owner, use.target)].update(use.citations or (f"uncited {actor.id}",))
    return {k: frozenset(v) for k, v in reports.items()}


class Basis:
    """What every view of one index shares: features, report counts, software's techniques.

    The full index's citation counts are kept as one matrix, with each report's cells, so a
    held-out view (:class:`Profiles` with ``forget``) is the matrix minus those cells.
    """

    def __init__(self, index: AttackIndex):
        self.index = index
        self.features = sorted(index.techniques.keys() | index.software.keys())
        self.column = {f: i for i, f in enumerate(self.features)}
        self.reports = report_sets(index)
        self.candidates = sorted({c for c, f in self.reports if f in self.column})
        self.row = {c: i for i, c in enumerate(self.candidates)}
        self.counts = np.zeros((len(self.candidates), len(self.features)))
        cells: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for (candidate, feature), cited in self.reports.items():
            if feature in self.column:
                r, c = self.row[candidate], self.column[feature]
                self.counts[r, c] = len(cited)
                for report in cited:
                    cells[report].append((r, c))
        self.cells = {k: (np.array([r for r, _ in v]), np.array([c for _, c in v])) for k, v in cells.items()}
        self.owners = {k: np.unique(rc[0]) for k, rc in self.cells.items()}
        self.totals = np.zeros(len(self.candidates))
        for rows in self.owners.values():
            self.totals[rows] += 1
        lends: dict[int, set[int]] = defaultdict(set)
        for use in index.uses:
            if use.source not in index.actors and use.source in self.column and use.target in self.column:
                lends[self.column[use.source]].add(self.column[use.target])
        self.lends = {s: np.array(sorted(t)) for s, t in sorted(lends.items())}
        self.loans = _loans(lends)
        self.lent: dict[float, np.ndarray] = {}
        self.pages = ReportView(self.reports, self.row, self.column)

    def held_out(self, forget: frozenset[str]) -> tuple[np.ndarray, np.ndarray]:
        """Citation counts and reports per candidate once the ``forget`` reports are gone."""
        counts, totals = self.counts, self.totals
        if forget & self.cells.keys():
            counts, totals = counts.copy(), totals.copy()
            for report in sorted(forget & self.cells.keys()):
                rows, cols = self.cells[report]
                counts[rows, cols] -= 1
                totals[self.owners[report]] -= 1
        return counts, totals


Loans = tuple[np.ndarray, np.ndarray, np.ndarray]


def _loans(lends: dict[int, set[int]]) -> Loans:
    """Lender -> borrowers as arrays for :func:`lend`: lenders sorted by borrower, each
    borrower's first position, borrowers."""
    pairs = sorted((t, s) for s, ts in lends.items() for t in ts)
    targets = sorted({t for t, _ in pairs})
    first = {t: len(pairs) - i - 1 for i, (t, _) in enumerate(reversed(pairs))}
    return (np.array([s for _, s in pairs], dtype=int), np.array([first[t] for t in targets], dtype=int),
            np.array(targets, dtype=int))


def lend(counts: np.ndarray, loans: Loans, implied: float) -> np.ndarray:
    """``counts`` with each technique raised to ``implied`` times the largest count of a
    software that uses it."""
    lenders, starts, borrowers = loans
    out = counts.copy()
    loan = np.maximum.reduceat(counts[:, lenders], starts, axis=1) * implied
    out[:, borrowers] = np.maximum(out[:, borrowers], loan)
    return out


def _tfidf(counts: np.ndarray, shared_by: np.ndarray, groups: int, power: float) -> tuple[np.ndarray, np.ndarray]:
    """Unit profile vectors ``log(1 + reports) * idf ** power`` of the documented features, and
    the weights ``idf ** power`` (``idf = ln((groups + 1) / (shared_by + 1)) + 1``)."""
    weight = (np.log((groups + 1) / (shared_by + 1)) + 1) ** power
    vectors = np.log1p(counts) * weight
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1), 1e-9)[:, None], weight


class Profiles:
    """Candidate rates over all features, for one index or one held-out view of it.

    ``forget`` drops reports everywhere (their relationships count only through other reports);
    ``removed`` drops actors altogether. The evaluation uses both to hold a case out.
    """

    def __init__(self, basis: Basis | AttackIndex, params: Params | None = None,
                 forget: frozenset[str] = frozenset(), removed: frozenset[str] = frozenset()):
        self.basis = basis if isinstance(basis, Basis) else Basis(basis)
        self.index, self.params = self.basis.index, params or Params()
        self.features, self.column = self.basis.features, self.basis.column
        counts, totals = self.basis.held_out(forget)
        keep = (counts > 0).any(axis=1) & np.array([c not in removed for c in self.basis.candidates])
        self.candidates = [c for c, k in zip(self.basis.candidates, keep, strict=True) if k]
        self.row = {c: i for i, c in enumerate(self.candidates)}
        self.keep = keep
        self.alive = self.basis.pages.alive(forget, keep)
        self.position = np.where(keep, np.cumsum(keep) - 1, -1)
        self._fit(counts[keep], totals[keep], (counts != self.basis.counts)[keep].any(axis=1))

    def _fit(self, counts: np.ndarray, reports: np.ndarray, changed: np.ndarray) -> None:
        self.reports, self.raw = reports, counts
        self.direct = counts > 0
        groups = np.array([c.startswith("G") for c in self.candidates])
        self.shared_by = self.direct[groups].sum(axis=0)
        self.tfidf, self.idf = _tfidf(counts, self.shared_by, groups.sum(), self.params.idf_power)
        counts = self._lend(counts, changed)
        a = self.params.alpha
        background = (counts[groups].sum(axis=0) + 1) / (self.reports[groups].sum() + len(self.features))
        theta = np.minimum((counts + a * background) / (self.reports[:, None] + a), 0.999)
        absent = np.log((1 - theta) / (1 - background))
        self.background = background
        self.present = np.log(theta / background) - absent
        self.absent, self.base = absent, absent.sum(axis=1)
        self.counts = counts

    def _lend(self, counts: np.ndarray, changed: np.ndarray) -> np.ndarray:
        """Counts with software's loans (see :func:`lend`).

        The full index's loans are computed once per ``implied``; a held-out view redoes only
        the rows its forgotten reports changed.
        """
        implied, loans = self.params.implied, self.basis.loans
        if implied <= 0 or not len(loans[0]):
            return counts
        full = self.basis.lent.get(implied)
        if full is None:
            full = self.basis.lent[implied] = lend(self.basis.counts, loans, implied)
        lent = full[self.keep]
        if changed.any():
            lent = lent.copy()
            lent[changed] = lend(counts[changed], loans, implied)
        return lent

    def known(self, feature: str) -> bool:
        """Whether the index knows the id (a technique or software of this release)."""
        return feature in self.column

    def _cols(self, features: Iterable[str]) -> list[int]:
        return [self.column[f] for f in dict.fromkeys(features) if f in self.column]

    def views(self, features: Iterable[str], top: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per candidate: the summed log-likelihood ratio of the observed (known) features, the
        projection of the observed features' weights onto the candidate's unit TF-IDF profile (a
        cosine times the query's length, so it grows with the number and specificity of the
        features, like evidence; a normalised cosine lets two generic techniques crown whichever
        small profile has both), and the closest-reports view (mean of the ``top`` best)."""
        cols = self._cols(features)
        llr = self.base + self.present[:, cols].sum(axis=1)
        pages = self.basis.pages
        sims = pages.similarities(self.alive, self.idf, cols)
        near = pages.view(sims, self.alive, self.position, len(self.candidates), top or self.params.top_reports)
        return llr, self.tfidf[:, cols] @ self.idf[cols], near

    def scores(self, features: Iterable[str]) -> dict[str, float]:
        """Each candidate's score: the llr plus ``cosine`` times the TF-IDF projection plus
        ``reports`` times the closest-reports view."""
        llr, cosine, near = self.views(features)
        total = llr + self.params.cosine * cosine + self.params.reports * near
        return {c: float(total[i]) for i, c in enumerate(self.candidates)}

    def closest(self, candidate: str, features: Iterable[str]) -> Closest | None:
        """The candidate's live report most similar to the observed features."""
        cols = self._cols(features)
        sims = self.basis.pages.similarities(self.alive, self.idf, cols)
        return self.basis.pages.closest(sims, self.alive, self.basis.row[candidate], cols)

    def _lender(self, r: int, c: int) -> str:
        for software, techniques in self.basis.lends.items():
            if self.direct[r, software] and c in techniques:
                return self.features[software]
        return "?"

    def contribution(self, candidate: str, feature: str) -> Contribution:
        r, c = self.row[candidate], self.column[feature]
        n = float(self.counts[r, c])
        how = "uses" if self.direct[r, c] else ("via software " + self._lender(r, c) if n else "absent")
        view = float(self.params.cosine * self.tfidf[r, c] * self.idf[c])
        return Contribution(feature, n, how, float(self.present[r, c] + self.absent[r, c]), int(self.shared_by[c]),
                            view)

    def expected_absent(self, candidate: str, features: Iterable[str], limit: int = 3) -> list[tuple[str, float]]:
        """The candidate's most characteristic features that were not observed, with their rate."""
        r, observed = self.row[candidate], set(features)
        rate = self.counts[r] / max(self.reports[r], 1.0)
        order = np.argsort(self.absent[r], kind="stable")
        out = []
        for c in order[: limit * 4]:
            if self.direct[r, c] and self.features[c] not in observed and rate[c] >= 0.5:
                out.append((self.features[c], float(rate[c])))
        return out[:limit]


def unknown_features(scores: dict[str, float], features: int, temperature: float) -> tuple[float, ...]:
    """What the unknown-actor model looks at: 1, best score, lead over the second, log(1 + n)."""
    ranked = sorted(scores.values(), reverse=True) + [0.0, 0.0]
    return 1.0, ranked[0] / temperature, (ranked[0] - ranked[1]) / temperature, math.log1p(features)


def posterior(scores: dict[str, float], params: Params, features: int,
              prior: dict[str, float] | None = None) -> tuple[dict[str, float], float]:
    """Probabilities of the candidates and of an actor not in the data.

    The unknown mass comes from a logistic model on how well the best candidate explains the
    evidence (:func:`unknown_features`); the candidates share the rest by a softmax of their
    tempered scores plus the log of their victimology prior factor.
    """
    x = unknown_features(scores, features, params.temperature)
    z = sum(w * v for w, v in zip(params.unknown, x, strict=True))
    unknown = 1 / (1 + math.exp(-max(min(z, 50.0), -50.0)))
    logits = {c: s / params.temperature + math.log((prior or {}).get(c, 1.0)) for c, s in scores.items()}
    top = max(logits.values(), default=0.0)
    weights = {c: math.exp(v - top) for c, v in logits.items()}
    total = sum(weights.values()) or 1.0
    return {c: (1 - unknown) * w / total for c, w in weights.items()}, unknown
