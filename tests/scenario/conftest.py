"""Simulated cases shared by the scenario tests: each scenario is simulated once per session
(a small organisation: the evidence kinds and the intrusion are all there, the volume is not)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from varde.scenario.engine import Settings, Summary
from varde.scenario.library import simulate

SEED = 7
USERS = 3


@pytest.fixture(scope="session")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Summary]:
    """``simulated(name)``: the scenario's case, simulated on first use."""
    done: dict[str, Summary] = {}

    def get(name: str) -> Summary:
        if name not in done:
            done[name] = simulate(name, tmp_path_factory.mktemp(name) / "case", Settings(seed=SEED, users=USERS))
        return done[name]

    return get


def files_under(root: Path, pattern: str) -> list[Path]:
    """Files under ``root`` matching a glob pattern, sorted."""
    return sorted(p for p in root.rglob(pattern) if p.is_file())
