"""Fit the model's probability parameters on held-out cases (never on a case by name).

Two steps, each on scored held-out cases ``(truth, scores, number of features)``:

1. for each softmax temperature on a grid, the logistic model of "an actor not in the data"
   (:func:`.model.unknown_features`), on cases whose group is in the index (answer: known) and
   cases whose group was removed (answer: unknown), by iteratively reweighted least squares with
   a small ridge. The share of removed-group cases sets the base rate of unknown actors the model
   assumes; the evaluation uses one in three;
2. the temperature (with its unknown model) with the least expected calibration error plus Brier
   score on the same rows. (Choosing it by log loss instead left the top answer overconfident.)
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from varde.analysis.attribution.model import Params, posterior, unknown_features

Row = tuple[str, dict[str, float], int]  # truth ("" = unknown), scores, number of features
TEMPERATURES = tuple(float(t) for t in np.geomspace(1, 64, 25))


def judge(rows: list[Row], params: Params) -> list[tuple[float, bool, float]]:
    """Per row: the top answer's probability (a candidate or "unknown"), whether it is right,
    and the probability of the truth."""
    out = []
    for truth, scores, n in rows:
        probs, unknown = posterior(scores, params, n)
        top = max(probs, key=probs.get, default="")
        answer, p = ("", unknown) if unknown >= probs.get(top, 0.0) else (top, probs[top])
        out.append((p, answer == truth, probs.get(truth, 0.0) if truth else unknown))
    return out


def summary(judged: list[tuple[float, bool, float]], bins: int = 10) -> dict:
    """Expected calibration error of the top answer (10 bins), Brier score of the truth's
    probability ``mean((1 - p_truth)^2)``, and the top answer's accuracy."""
    n = max(len(judged), 1)
    ece = 0.0
    for b in range(bins):
        members = [(p, ok) for p, ok, _ in judged if min(int(p * bins), bins - 1) == b]
        ece += abs(sum(p - ok for p, ok in members)) / n
    return {"cases": len(judged), "ece": ece, "brier": sum((1 - t) ** 2 for _, _, t in judged) / n,
            "accuracy": sum(ok for _, ok, _ in judged) / n}


def ece_interval(judged: list[tuple[float, bool, float]], rounds: int = 1000, seed: int = 0,
                 bins: int = 10) -> tuple[float, float]:
    """The 95% bootstrap interval of the ECE over the cases (resampled with a fixed seed), so a
    target like 0.05 is judged with the figure's noise."""
    if not judged:
        return 0.0, 0.0
    p = np.array([j[0] for j in judged])
    ok = np.array([float(j[1]) for j in judged])
    which = np.minimum((p * bins).astype(int), bins - 1)
    rng = np.random.default_rng(seed)
    eces = []
    for _ in range(rounds):
        pick = rng.integers(0, len(p), len(p))
        gap = np.bincount(which[pick], p[pick] - ok[pick], minlength=bins)
        eces.append(np.abs(gap).sum() / len(p))
    low, high = np.percentile(eces, [2.5, 97.5])
    return float(low), float(high)


def fit_unknown(rows: list[Row], temperature: float, ridge: float = 1e-2) -> tuple[float, float, float, float]:
    x = np.array([unknown_features(s, n, temperature) for _, s, n in rows])
    y = np.array([1.0 if not truth else 0.0 for truth, _, _ in rows])
    w = np.zeros(x.shape[1])
    for _ in range(50):
        p = 1 / (1 + np.exp(-np.clip(x @ w, -50, 50)))
        grad = x.T @ (p - y) + ridge * w
        hess = (x * (p * (1 - p))[:, None]).T @ x + ridge * np.eye(x.shape[1])
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return tuple(float(v) for v in w)  # type: ignore[return-value]


DEFAULT = Params()


def fit(rows: list[Row], base: Params = DEFAULT) -> Params:
    """The temperature and unknown-actor model with the least ECE + Brier (none: ``base``)."""
    if not rows or all(truth for truth, _, _ in rows) or not any(truth for truth, _, _ in rows):
        return base
    best: tuple[float, Params] | None = None
    for temperature in TEMPERATURES:
        params = replace(base, temperature=temperature, unknown=fit_unknown(rows, temperature))
        judged = summary(judge(rows, params))
        loss = judged["ece"] + judged["brier"]
        if best is None or loss < best[0]:
            best = (loss, params)
    return best[1]  # type: ignore[index]
