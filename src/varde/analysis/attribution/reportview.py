"""The report view: each cited report of a candidate as a small profile of its own.

A group's ATT&CK profile is the union of many reports. A new incident often resembles one of
them much more than the union (a group documented by a phishing report, a ransomware report and
an espionage report), so besides the profile views of :mod:`.model` each candidate is scored by
its closest reports: for every (candidate, report) pair the features ATT&CK cites to that report,
weighted ``w_f = idf_f ** idf_power`` like the TF-IDF view, the view of one report ``r`` is the
projection of the observed features on the report's unit vector::

    sim(q, r) = sum_{f in q and r} w_f ** 2 / sqrt(sum_{f in r} w_f ** 2)

and the candidate's view is the mean of its ``top_reports`` best similarities (a candidate with
fewer reports counts the missing ones as 0). As with the profile view the projection is not
divided by the query's length, so a few generic techniques still say little. Campaigns are folded
into their group, like their relationships. Relationships without a citation are no report and
take no part. A held-out view forgets reports by dropping their rows.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

MIN_FEATURES = 3  # a report citing fewer features of a candidate is a citation, not a profile


@dataclass(frozen=True)
class Closest:
    """A candidate's closest report for an observed set, for the explanation."""

    report: str
    shared: int  # observed features the report documents for the candidate
    size: int  # features the report documents for the candidate
    similarity: float


class ReportView:
    """(candidate, report) rows over the features, from ``(candidate, feature) -> reports``."""

    def __init__(self, reports: dict[tuple[str, str], frozenset[str]], row: dict[str, int],
                 column: dict[str, int]):
        cells: dict[tuple[str, str], list[int]] = defaultdict(list)
        for (candidate, feature), cited in reports.items():
            if feature in column and candidate in row:
                for report in cited:
                    if not report.startswith("uncited "):
                        cells[(candidate, report)].append(column[feature])
        keys = sorted((k for k, v in cells.items() if len(v) >= MIN_FEATURES), key=lambda k: (row[k[0]], k[1]))
        # the (row, feature) cells of the sparse row-by-feature matrix
        self.cell_row = np.array([i for i, k in enumerate(keys) for _ in cells[k]], dtype=int)
        self.cell_col = np.array([c for k in keys for c in cells[k]], dtype=int)
        self.features = len(column)
        self.owner = np.array([row[c] for c, _ in keys], dtype=int)
        self.report = [r for _, r in keys]
        rows_of: dict[str, list[int]] = defaultdict(list)
        for i, r in enumerate(self.report):
            rows_of[r].append(i)
        self.rows_of = {r: np.array(v) for r, v in rows_of.items()}

    def alive(self, forget: frozenset[str], keep: np.ndarray) -> np.ndarray:
        """Rows whose report is not forgotten and whose candidate is kept (``keep`` by basis row)."""
        mask = keep[self.owner].copy()
        for report in sorted(forget & self.rows_of.keys()):
            mask[self.rows_of[report]] = False
        return mask

    def similarities(self, alive: np.ndarray, weight: np.ndarray, cols: list[int]) -> np.ndarray:
        """``sim(q, r)`` of every row (0 for rows not alive)."""
        rows, square = len(self.owner), weight[self.cell_col] ** 2
        norms = np.sqrt(np.bincount(self.cell_row, square, minlength=rows))
        hit = np.bincount(self.cell_row, square * self._observed(cols), minlength=rows)
        return np.where(alive, hit / np.maximum(norms, 1e-9), 0.0)

    def _observed(self, cols: list[int]) -> np.ndarray:
        """Per cell: 1 when its feature was observed."""
        mask = np.zeros(self.features)
        mask[cols] = 1.0
        return mask[self.cell_col]

    def view(self, sims: np.ndarray, alive: np.ndarray, position: np.ndarray, candidates: int,
             top: int) -> np.ndarray:
        """Per candidate (``position`` maps a basis row to its place, -1 when gone): the mean of
        its ``top`` best similarities."""
        rows = np.flatnonzero(alive)
        owners = position[self.owner[rows]]
        order = np.lexsort((-sims[rows], owners))
        owners, values = owners[order], sims[rows][order]
        rank = np.arange(len(owners)) - np.searchsorted(owners, owners, side="left")
        out = np.zeros(candidates)
        np.add.at(out, owners[rank < top], values[rank < top])
        return out / max(top, 1)

    def closest(self, sims: np.ndarray, alive: np.ndarray, basis_row: int, cols: list[int]) -> Closest | None:
        """The candidate's most similar live report."""
        rows = np.flatnonzero(alive & (self.owner == basis_row))
        if not len(rows):
            return None
        best = rows[np.lexsort((np.array(self.report, dtype=object)[rows].astype(str), -sims[rows]))[0]]
        cells = self.cell_row == best
        return Closest(self.report[best], int(self._observed(cols)[cells].sum()), int(cells.sum()),
                       float(sims[best]))
