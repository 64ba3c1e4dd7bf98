"""End to end on the simulator's scenarios: intruders, first intrusion, mailboxes and verdict match
the scenario's truth.json exactly.

Needs the scenario simulator (``varde.scenario``) and the IIS / Exchange log readers; skipped with
the reason when this checkout has not got them. Scenarios run with 30 background users (enough
for the spraying thresholds) to keep the module to a few minutes; it is marked slow.
"""

from __future__ import annotations

import importlib.util
import json

import pytest

from varde.pipeline import HuntOptions, hunt
from varde.sources import READERS

if importlib.util.find_spec("varde.scenario") is None:
    pytest.skip("the scenario simulator (varde.scenario) is not in this checkout", allow_module_level=True)
if not {"iis-w3c", "exchange-csv"} <= {r.name for r in READERS}:
    pytest.skip("the IIS and Exchange log readers are not in this checkout", allow_module_level=True)

from varde.scenario.engine import Settings
from varde.scenario.library import scenario_names, simulate

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=sorted(scenario_names()))
def outcome(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(request.param)
    simulate(request.param, root / "evidence", Settings(seed=1, users=30))
    truth = json.loads((root / "evidence" / "truth.json").read_text(encoding="utf-8"))
    report = hunt([root / "evidence"], root / "case", HuntOptions(workers=2)).report
    return truth, json.loads(report.to_json())


def _second(text: str | None) -> str | None:
    return text[:19] if text else None


def test_verdict(outcome):
    truth, report = outcome
    assert report["verdict"]["compromised"] == truth["verdict"]["compromised"]


def test_intruders_are_the_truths(outcome):
    truth, report = outcome
    assert sorted(sorted(i["source_ips"]) for i in report["intruders"]) == \
        sorted(sorted(i["source_ips"]) for i in truth["intruders"])
    expected = {tuple(sorted(i["source_ips"])): i for i in truth["intruders"]}
    for intruder in report["intruders"]:
        want = expected[tuple(sorted(intruder["source_ips"]))]
        assert _second(intruder["first_seen"]) == _second(want["first_seen"])
        assert sorted(intruder["user_agents"]) == sorted(want["user_agents"])


def test_first_intrusion_is_the_first_success(outcome):
    truth, report = outcome
    assert _second(report["first_intrusion"]) == _second(truth["first_intrusion"])


def test_mailboxes_are_the_truths(outcome):
    truth, report = outcome
    got = {m["mailbox"].lower(): m for m in report["mailboxes"]}
    want = {m["mailbox"].lower(): m for m in truth["mailboxes"]}
    assert sorted(got) == sorted(want)
    for name, mailbox in want.items():
        assert set(got[name]["access"]) == set(mailbox["access"])
        assert _second(got[name]["first_seen"]) == _second(mailbox["first_seen"])
        for count in ("items", "bytes"):  # where the truth knows them (its ProxyShell export has no size)
            if mailbox[count] is not None:
                assert got[name][count] == mailbox[count], (name, count)
