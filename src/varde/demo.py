"""The demo: a small ProxyLogon case simulated into a temporary folder, hunted, and shown.

``varde demo`` is the README's first command: it must work on a fresh machine, offline, in
seconds. It runs the bundled ``proxylogon`` scenario (a few users, the scenario's two days) with
a fixed seed, so every run shows the same case.
"""

from __future__ import annotations

from pathlib import Path

from varde.scenario.engine import Settings, Summary
from varde.scenario.library import simulate

#: The demo organisation's size: enough to surround the intrusion with ordinary traffic,
#: small enough to simulate and hunt in seconds.
DEMO_USERS = 12
DEMO_SEED = 2021


def simulate_demo(folder: Path) -> Summary:
    """Simulate the demo case's evidence into ``folder`` (new or empty); ``folder/truth.json``
    says what a hunt should find."""
    return simulate("proxylogon", folder, Settings(seed=DEMO_SEED, users=DEMO_USERS))
