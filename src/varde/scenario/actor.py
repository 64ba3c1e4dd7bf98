"""Who acts in a scenario step, and what the step is given."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from typing import Any

from varde.scenario.engine import Simulation


@dataclass
class Actor:
    """An intruder (or a benign actor of a false-positive trap) with its infrastructure."""

    name: str
    ips: list[str]
    user_agents: list[str]
    hostile: bool = True
    #: What earlier steps left for later ones (web shell path, stolen accounts, ...).
    state: dict[str, Any] = field(default_factory=dict)


@dataclass
class Step:
    """One step being run: the simulation, the actor, when it starts and its parameters."""

    sim: Simulation
    actor: Actor
    ts: int
    params: dict[str, Any]
    rng: random.Random

    def ip(self, number: int = 0) -> str:
        """The actor's ``number``-th source IP (wrapping)."""
        return self.actor.ips[number % len(self.actor.ips)]

    def agent(self, number: int = 0) -> str:
        """The actor's ``number``-th user agent (wrapping)."""
        return self.actor.user_agents[number % len(self.actor.user_agents)]

    def seen(self, ts: int, ip: str | None = None, agent: str | None = None) -> None:
        """Record in the truth that the (hostile) actor acted at ``ts``."""
        if self.actor.hostile:
            self.sim.truth.intruder(self.actor.name, ts, ip, agent)

    def later(self, low_s: float, high_s: float) -> int:
        """Advance the step's clock by a random delay between ``low_s`` and ``high_s`` seconds."""
        self.ts += int(self.rng.uniform(low_s, high_s) * 1_000_000)
        return self.ts

    def plant(self, path: str, data: bytes, ts: int) -> str:
        """Write a file into the server's tree; returns its SHA-256."""
        self.sim.write_file(path, data, ts)
        return hashlib.sha256(data).hexdigest()
