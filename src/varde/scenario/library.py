"""The scenario library: small declarative YAML files, loaded, checked and run.

A scenario names its server and organisation, its actors (intruders with their addresses, user
agents and expected attribution; benign actors for false-positive traps) and a list of steps,
each ``{actor, do, day, at, with}``. ``simulate`` runs the background and the steps and writes
``DIR/truth.json``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from varde.errors import UsageError
from varde.scenario import background, files, steps_exploit, steps_mail
from varde.scenario.actor import Actor, Step
from varde.scenario.engine import HOUR_US, Settings, Simulation, Summary, day_start, run_hours

logger = logging.getLogger(__name__)

#: Step name -> implementation. A new step is one function plus one line here.
STEPS: dict[str, Callable[[Step], None]] = {
    "proxylogon": steps_exploit.proxylogon,
    "proxyshell": steps_exploit.proxyshell,
    "proxynotshell": steps_exploit.proxynotshell,
    "shell_commands": steps_exploit.shell_commands,
    "lsass_dump": steps_exploit.lsass_dump,
    "stage_archive": steps_exploit.stage_archive,
    "admin_shell_export": steps_exploit.admin_shell_export,
    "password_spray": steps_mail.password_spray,
    "ews_collection": steps_mail.ews_collection,
    "snapin_export": steps_mail.snapin_export,
    "vulnerability_scan": steps_mail.vulnerability_scan,
}


@dataclass(frozen=True)
class ScenarioStep:
    """One step as declared."""

    actor: str
    do: str
    day: int
    at: str
    params: dict[str, Any]


@dataclass(frozen=True)
class Scenario:
    """A loaded, checked scenario."""

    name: str
    summary: str
    start: datetime
    days: int
    users: int
    host: str
    domain: str
    build: str
    actors: dict[str, dict[str, Any]]
    steps: tuple[ScenarioStep, ...]


def scenario_names() -> list[str]:
    """The names of the bundled scenarios."""
    folder = resources.files("varde.scenario") / "scenarios"
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def load(name_or_path: str) -> Scenario:
    """A bundled scenario by name, or a scenario file by path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        text, where = path.read_text(encoding="utf-8"), str(path)
    else:
        bundled = resources.files("varde.scenario") / "scenarios" / f"{name_or_path}.yaml"
        if not bundled.is_file():
            raise UsageError(f"unknown scenario {name_or_path!r} (bundled: {', '.join(scenario_names())})")
        text, where = bundled.read_text(encoding="utf-8"), f"scenario {name_or_path}"
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UsageError(f"{where}: not valid YAML: {exc}") from exc
    return _check(doc, where)


def _check(doc: Any, where: str) -> Scenario:
    if not isinstance(doc, dict):
        raise UsageError(f"{where}: a scenario is a mapping")
    missing = [k for k in ("name", "start", "days", "actors", "steps") if k not in doc]
    if missing:
        raise UsageError(f"{where}: missing {', '.join(missing)}")
    start = doc["start"]
    if isinstance(start, date) and not isinstance(start, datetime):
        start = datetime(start.year, start.month, start.day, tzinfo=UTC)
    elif isinstance(start, str):
        start = datetime.fromisoformat(start)
    actors = doc["actors"] or {}
    steps = []
    for number, raw in enumerate(doc["steps"] or [], 1):
        if not isinstance(raw, dict) or raw.get("do") not in STEPS:
            raise UsageError(f"{where}: step {number}: 'do' must be one of {', '.join(sorted(STEPS))}")
        if raw.get("actor") not in actors:
            raise UsageError(f"{where}: step {number}: actor {raw.get('actor')!r} is not declared")
        day = int(raw.get("day", 0))
        if not 0 <= day < int(doc["days"]):
            raise UsageError(f"{where}: step {number}: day {day} is outside the scenario's {doc['days']} days")
        steps.append(ScenarioStep(raw["actor"], raw["do"], day, str(raw.get("at", "00:00")), dict(raw.get("with") or {})))
    return Scenario(
        name=str(doc["name"]), summary=str(doc.get("summary", "")), start=day_start(start), days=int(doc["days"]),
        users=int(doc.get("users", 100)), host=str(doc.get("host", "EXCH01")), domain=str(doc.get("domain", "corp.example")),
        build=str(doc.get("build", "15.01.2176.002")), actors=actors, steps=tuple(steps),
    )


def simulate(name_or_path: str, out: Path, settings: Settings) -> Summary:
    """Simulate a scenario into ``out`` (created; must be empty) and write ``out/truth.json``."""
    scenario = load(name_or_path)
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"output folder {out} is not empty")
    out.mkdir(parents=True, exist_ok=True)
    start = day_start(settings.start) if settings.start else scenario.start
    sim = Simulation(out, settings.seed, start, settings.users or scenario.users, scenario.host, scenario.domain,
                     scenario.build)
    files.install(sim, sim.start_us - 40 * 24 * HOUR_US)
    actors = {name: Actor(name, list(spec.get("ips") or []), list(spec.get("user_agents") or []),
                          bool(spec.get("hostile", True))) for name, spec in scenario.actors.items()}
    for name, spec in scenario.actors.items():
        if actors[name].hostile:
            sim.truth.attribute(name, spec.get("attribution"))
    due = sorted(((sim.at(s.day, s.at), n, s) for n, s in enumerate(scenario.steps)), key=lambda t: (t[0], t[1]))

    def hour_work(sim: Simulation, index: int, hour_start: int) -> None:
        background.hour(sim, index, hour_start)
        while due and due[0][0] < hour_start + HOUR_US:
            ts, number, declared = due.pop(0)
            step = Step(sim, actors[declared.actor], ts, declared.params, sim.rng("step", number))
            STEPS[declared.do](step)

    days = run_hours(sim, max(settings.days or scenario.days, scenario.days), settings.size_bytes, hour_work)
    file_count = sim.close()
    truth = sim.truth.document(scenario.name, settings.seed, {"days": days, "files": file_count, "bytes": sim.bytes_written})
    truth_path = out / "truth.json"
    truth_path.write_text(json.dumps(truth, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    end_ns = (sim.start_us + days * 24 * HOUR_US) * 1000
    os.utime(truth_path, ns=(end_ns, end_ns))  # dated by the simulated clock: a rerun is byte- and time-identical
    return Summary(out, days, file_count, sim.bytes_written, truth)
