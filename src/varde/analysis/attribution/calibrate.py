"""Fit the model's probability parameters on held-out cases (never on a case by name).

Two steps, each on scored held-out cases ``(truth, scores, number of features)``:

1. the softmax temperature that minimises the log loss of the true group among the candidates,
   on cases whose group is in the index;
2. the logistic model of "an actor not in the data" (:func:`.model.unknown_features`), on the
   same cases (answer: known) and on cases whose group was removed (answer: unknown), by
   iteratively reweighted least squares with a small ridge. The share of removed-group cases sets
   the base rate of unknown actors the model assumes; the evaluation uses one in three.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from varde.analysis.attribution.model import Params, unknown_features

Row = tuple[str, dict[str, float], int]  # truth ("" = unknown), scores, number of features
TEMPERATURES = tuple(float(t) for t in np.geomspace(1, 64, 25))


def _log_loss(rows: list[Row], temperature: float) -> float:
    total = 0.0
    for truth, scores, _ in rows:
        values = np.array(list(scores.values())) / temperature
        top = values.max()
        total += top + math.log(np.exp(values - top).sum()) - scores[truth] / temperature
    return total / max(len(rows), 1)


def fit_temperature(rows: list[Row]) -> float:
    known = [r for r in rows if r[0] and r[0] in r[1]]
    return min(TEMPERATURES, key=lambda t: _log_loss(known, t)) if known else Params().temperature


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
    """Temperature, then the unknown-actor model, fitted on the rows (none: ``base`` unchanged)."""
    if not rows or all(truth for truth, _, _ in rows) or not any(truth for truth, _, _ in rows):
        return base
    temperature = fit_temperature(rows)
    return replace(base, temperature=temperature, unknown=fit_unknown(rows, temperature))
