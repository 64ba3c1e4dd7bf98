"""The country level: the candidates' probabilities summed per country, mixed with a model of
countries as candidates of their own.

Summing the groups' probabilities per country (what a group-level model says about countries)
misses evidence spread over several groups of one country: each group explains part of it, none
wins. A pooled profile per country (the held-out citation counts of all its groups added up,
scored with the same likelihood ratios and TF-IDF view as a group, see :mod:`.model`) sees it,
but alone it ranks countries worse (big countries win by size). The two are mixed::

    p(country) = (1 - unknown) * ((1 - mix) * summed share + mix * softmax(pooled / T_country))

with ``mix`` and ``T_country`` chosen on held-out halves of the groups (bench/). ``mix = 0`` is
the plain sum.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import numpy as np

from varde.analysis.attribution.model import Profiles, _tfidf


def pooled_scores(profiles: Profiles, features: list[str], country_of: Callable[[str], str | None]) -> dict[str, float]:
    """Each country's score as one candidate whose reports are all of its groups' reports."""
    codes = sorted({k for c in profiles.candidates if c.startswith("G") and (k := country_of(c))})
    if not codes:
        return {}
    member = np.zeros((len(codes), len(profiles.candidates)))
    for i, c in enumerate(profiles.candidates):
        k = country_of(c) if c.startswith("G") else None
        if k:
            member[codes.index(k), i] = 1.0
    counts, reports, a = member @ profiles.counts, member @ profiles.reports, profiles.params.alpha
    b = profiles.background
    theta = np.minimum((counts + a * b) / (reports[:, None] + a), 0.999)
    absent = np.log((1 - theta) / (1 - b))
    cols = [profiles.column[f] for f in dict.fromkeys(features) if f in profiles.column]
    groups = sum(1 for c in profiles.candidates if c.startswith("G"))
    tfidf, weight = _tfidf(member @ profiles.raw, profiles.shared_by, groups, profiles.params.idf_power)
    score = absent.sum(axis=1) + (np.log(theta / b) - absent)[:, cols].sum(axis=1)
    score += profiles.params.cosine * (tfidf[:, cols] @ weight[cols])
    return {k: float(v) for k, v in zip(codes, score, strict=True)}


def shares(probs: dict[str, float], unknown: float, pooled: dict[str, float],
           country_of: Callable[[str], str | None], mix: float, temperature: float) -> dict[str, float]:
    """Country probabilities (they and ``unknown`` sum to at most 1; candidates without a
    country keep their mass to themselves)."""
    summed: dict[str, float] = defaultdict(float)
    for c, p in probs.items():
        if k := country_of(c):
            summed[k] += p
    if mix <= 0 or not pooled:
        return dict(summed)
    total = sum(summed.values())
    top = max(pooled.values())
    soft = {k: np.exp((v - top) / temperature) for k, v in pooled.items()}
    norm = sum(soft.values())
    known = total if total > 0 else 1 - unknown
    return {k: known * ((1 - mix) * summed.get(k, 0.0) / (total or 1.0) + mix * soft.get(k, 0.0) / norm)
            for k in sorted(summed.keys() | soft.keys())}
