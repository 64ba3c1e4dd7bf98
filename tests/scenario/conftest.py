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


#: Background users of the hunted scenarios: enough for the spraying detector's thresholds.
HUNT_USERS = 30


@pytest.fixture(scope="session")
def hunted(tmp_path_factory: pytest.TempPathFactory):
    """``hunted(name)``: (summary with truth, report) of the scenario simulated (seed 1, 30 users)
    and hunted with the bundled rules and detectors, once per session for every test that needs it."""
    from varde.pipeline import HuntOptions, hunt

    done: dict = {}

    def get(name: str):
        if name not in done:
            root = tmp_path_factory.mktemp(f"hunt-{name}")
            summary = simulate(name, root / "evidence", Settings(seed=1, users=HUNT_USERS))
            done[name] = summary, hunt([summary.out], root / "case", HuntOptions(workers=2)).report
        return done[name]

    return get
