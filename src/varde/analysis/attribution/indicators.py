"""Actor-labelled indicator sets, and the evidence an observed indicator gives.

A set is a CSV file with the header ``value,type,actor,scope,source``: ``actor`` an ATT&CK id or
name (empty when the list names none), ``scope`` one of ``actor`` (infrastructure or files of that
actor alone), ``wave`` (seen in an exploitation wave many actors joined, such as the March 2021
ProxyLogon wave) or ``shared`` (VPS, VPN, Tor or other infrastructure many use), and ``source``
the public report it comes from. Only ``actor`` hits carry real weight; ``wave`` hits weigh a
little and ``shared`` hits none: they are listed, never used to name an actor alone.
"""

from __future__ import annotations

import csv
import logging
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from varde.analysis.attack import IntelError

log = logging.getLogger(__name__)

# Likelihood ratios of one hit, shared among the actors a value is labelled with.
SCOPE_RATIO = {"actor": 50.0, "wave": 3.0, "shared": 1.0}
COLUMNS = ("value", "type", "actor", "scope", "source")


@dataclass(frozen=True)
class Indicator:
    value: str
    type: str
    actor: str
    scope: str
    source: str


@dataclass(frozen=True)
class Hit:
    """One observed indicator found in a set, and the log-likelihood ratio it gives its actor."""

    indicator: Indicator
    llr: float


def load_set(path: Path) -> list[Indicator]:
    """Read one indicator set; bad rows are skipped with a warning naming their line."""
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or not set(COLUMNS) <= set(reader.fieldnames):
                raise IntelError(f"{path}: an indicator set needs the columns {','.join(COLUMNS)}")
            rows = list(reader)
    except OSError as exc:
        raise IntelError(f"{path}: cannot read the indicator set: {exc}") from exc
    out = []
    for line, row in enumerate(rows, start=2):
        scope = (row.get("scope") or "").strip().lower()
        value = (row.get("value") or "").strip()
        if not value or scope not in SCOPE_RATIO:
            log.warning("%s:%d: skipped, needs a value and a scope of %s", path, line, "/".join(SCOPE_RATIO))
            continue
        out.append(Indicator(value, row["type"].strip(), (row.get("actor") or "").strip(), scope,
                             (row.get("source") or "").strip()))
    return out


def read_observed(path: Path) -> list[str]:
    """Observed indicators: one per line (the first CSV column), ``#`` lines ignored."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise IntelError(f"{path}: cannot read the indicator file: {exc}") from exc
    values = (line.split(",")[0].strip() for line in lines if not line.lstrip().startswith("#"))
    return sorted({v for v in values if v and v.lower() not in ("value", "indicator")})


def match(observed: list[str], sets: list[Indicator], resolve) -> tuple[dict[str, list[Hit]], list[Indicator]]:
    """Hits per resolved actor id, and hits that name no actor the index knows."""
    by_value: dict[str, list[Indicator]] = defaultdict(list)
    for ind in sets:
        by_value[ind.value.casefold()].append(ind)
    per_actor: dict[str, list[Hit]] = defaultdict(list)
    unattributed: list[Indicator] = []
    for value in observed:
        found = by_value.get(value.casefold(), [])
        actors = {resolve(i.actor) for i in found if i.actor} - {None}
        for ind in found:
            actor = resolve(ind.actor) if ind.actor else None
            if actor is None:
                unattributed.append(ind)
                continue
            llr = math.log(SCOPE_RATIO[ind.scope]) / max(len(actors), 1)
            per_actor[actor].append(Hit(ind, llr))
    return per_actor, unattributed
