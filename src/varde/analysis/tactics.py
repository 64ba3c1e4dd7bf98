"""ATT&CK technique names and tactics, offline, from a table derived from MITRE's STIX.

``data/attack/enterprise.json`` is written by ``scripts/attack_table.py`` from the mitre/cti
enterprise-attack objects (it carries MITRE's notice). Timeline steps take their tactic from their
technique; the heat map and the Navigator layer take the tactic order from the matrix.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources


@dataclass(frozen=True)
class Table:
    """Tactics in matrix order (shortname, name, id), and technique id -> (name, tactic shortnames)."""

    version: str
    notice: str
    tactics: tuple[tuple[str, str, str], ...]
    techniques: dict[str, tuple[str, tuple[str, ...]]]

    def name(self, technique: str) -> str:
        """The technique's name (``Parent: Sub`` for sub-techniques), or the id when unknown."""
        entry = self.techniques.get(technique) or self.techniques.get(technique.split(".")[0])
        return entry[0] if entry else technique

    def tactics_of(self, technique: str) -> tuple[str, ...]:
        """Tactic shortnames of a technique in matrix order (a sub-technique falls back to its parent)."""
        entry = self.techniques.get(technique) or self.techniques.get(technique.split(".")[0])
        if not entry:
            return ()
        order = {t[0]: n for n, t in enumerate(self.tactics)}
        return tuple(sorted(entry[1], key=lambda t: order.get(t, len(order))))

    def tactic_name(self, shortname: str) -> str:
        """``initial-access`` -> ``Initial Access``."""
        return next((name for short, name, _ in self.tactics if short == shortname), shortname)


@cache
def attack_table() -> Table:
    """The bundled table (loaded once)."""
    text = resources.files("varde.data").joinpath("attack/enterprise.json").read_text(encoding="utf-8")
    data = json.loads(text)
    return Table(
        version=data["version"],
        notice=data["notice"],
        tactics=tuple(tuple(t) for t in data["tactics"]),  # type: ignore[misc]
        techniques={k: (v[0], tuple(v[1])) for k, v in data["techniques"].items()},
    )
