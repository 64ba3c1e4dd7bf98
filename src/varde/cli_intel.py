"""``varde intel build|update``, ``varde attribute`` and ``varde eval attribution``.

Thin: parse arguments, call :mod:`varde.analysis`, print JSON. The index in use is
:func:`varde.analysis.attack.default_index`; ``varde intel update`` writes a newer one to the
user's data folder, which then takes precedence over the bundled one.
"""

from __future__ import annotations

import json
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Annotated

import typer

from varde.analysis.attack import (
    INDEX_NAME,
    AttackIndex,
    IntelError,
    build_index,
    default_index,
    user_index_path,
)
from varde.errors import VardeError

DEFAULT_URL = "https://raw.githubusercontent.com/mitre/cti/master/enterprise-attack/enterprise-attack.json"

intel_app = typer.Typer(no_args_is_help=True, help="The ATT&CK reference data attribution uses.")
eval_app = typer.Typer(no_args_is_help=True, help="Measure varde against held-out reference data.")


def _fail(exc: VardeError) -> typer.Exit:
    sys.stderr.write(f"varde: error: {' '.join(str(exc).split())}\n")
    return typer.Exit(exc.exit_code)


def _misp_files(root: Path, misp: list[Path]) -> list[Path]:
    if misp:
        return misp
    clusters = root / "misp-galaxy" / "clusters"
    return [p for p in (clusters / "threat-actor.json", clusters / "microsoft-activity-group.json") if p.is_file()]


def _attack_path(root: Path) -> Path:
    return root / "attack" if (root / "attack").is_dir() else root


@intel_app.command("build")
def build_command(
    source: Annotated[Path, typer.Option("--from", help="ATT&CK STIX folder or bundle (or a folder with attack/ and misp-galaxy/).")],
    out: Annotated[Path, typer.Option("--out", help="Index file to write.")] = Path(INDEX_NAME),
    misp: Annotated[list[Path], typer.Option("--misp", help="MISP galaxy cluster file (repeatable).")] = [],  # noqa: B006
    attack_version: Annotated[str | None, typer.Option(help="ATT&CK release, when the data does not say.")] = None,
) -> None:
    """Build the compact ATT&CK index from MITRE's STIX and the MISP threat-actor galaxy."""
    try:
        index = build_index(_attack_path(source), _misp_files(source, misp), attack_version)
        index.save(out)
    except VardeError as exc:
        raise _fail(exc) from exc
    typer.echo(f"ATT&CK {index.attack_version}: {len(index.groups())} groups, {len(index.campaigns())} campaigns, "
               f"{len(index.uses)} relationships -> {out} ({out.stat().st_size:,} bytes)")


@intel_app.command("update")
def update_command(
    source: Annotated[str, typer.Option("--from", help="Path or URL of a newer ATT&CK STIX bundle or folder.")] = DEFAULT_URL,
    misp: Annotated[list[Path], typer.Option("--misp", help="MISP galaxy cluster file (repeatable).")] = [],  # noqa: B006
) -> None:
    """Replace the index in use with one built from a newer MITRE release (keeps MISP data unless given)."""
    try:
        current = default_index()
        with tempfile.TemporaryDirectory(prefix="varde-intel-") as tmp:
            path = Path(source)
            if source.startswith(("https://", "http://")):
                path = Path(tmp) / "enterprise-attack.json"
                urllib.request.urlretrieve(source, path)
            index = build_index(_attack_path(path), misp)
        if not misp:
            index.misp = current.misp
            index = AttackIndex.from_json(index.to_json())
        target = user_index_path()
        target.parent.mkdir(parents=True, exist_ok=True)
        index.save(target)
    except VardeError as exc:
        raise _fail(exc) from exc
    except OSError as exc:
        raise _fail(IntelError(f"{source}: {exc}")) from exc
    typer.echo(f"ATT&CK {index.attack_version} ({len(index.groups())} groups) -> {target}")


def _split(values: list[str]) -> list[str]:
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


def _code_matches(path: Path | None) -> list[dict[str, str]]:
    if path is None:
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise IntelError(f"{path}: not a JSON list of rule metadata: {exc}") from exc
    if not isinstance(data, list):
        raise IntelError(f"{path}: not a JSON list of rule metadata")
    return [{str(k): str(v) for k, v in item.items()} for item in data if isinstance(item, dict)]


def attribute_command(
    techniques: Annotated[list[str], typer.Option("--techniques", help="ATT&CK technique ids, comma-separated.")] = [],  # noqa: B006
    software: Annotated[list[str], typer.Option("--software", help="ATT&CK software ids or names.")] = [],  # noqa: B006
    ioc: Annotated[Path | None, typer.Option("--ioc", help="Observed indicators, one per line.")] = None,
    code_match: Annotated[Path | None, typer.Option(
        "--code-match", help="JSON list of YARA rule metadata (family / actor keys) that matched.")] = None,
    ioc_set: Annotated[list[Path], typer.Option("--ioc-set", help="Actor-labelled indicator set CSV (repeatable).")] = [],  # noqa: B006
    victim_country: Annotated[str | None, typer.Option(help="Victim country, ISO 3166 alpha-2.")] = None,
    victim_sector: Annotated[str | None, typer.Option(help="Victim sector, e.g. Government.")] = None,
    as_of: Annotated[str | None, typer.Option("--as-of", help="Use only what ATT&CK had published by this date.")] = None,
    index_file: Annotated[Path | None, typer.Option("--index", help="ATT&CK index file (default: bundled).")] = None,
    scale: Annotated[str, typer.Option(help="Estimative words: icd203 or phia.")] = "icd203",
    as_json: Annotated[bool, typer.Option("--json", help="Print the attribution object as JSON.")] = False,
) -> None:
    """Rank candidate actors and countries for observed techniques, software and indicators."""
    from varde.analysis.attribution import AttributionInput, attribute
    from varde.analysis.attribution.indicators import load_set, read_observed

    if scale not in ("icd203", "phia"):
        raise _fail(IntelError(f"--scale must be icd203 or phia, not {scale!r}"))
    try:
        index = AttackIndex.load(index_file) if index_file else default_index()
        evidence = AttributionInput(
            techniques=_split(techniques), software=_split(software),
            indicators=read_observed(ioc) if ioc else [], code_matches=_code_matches(code_match),
            victim_country=victim_country,
            victim_sector=victim_sector)
        sets = [i for path in ioc_set for i in load_set(path)]
        result = attribute(evidence, index, as_of, indicator_sets=sets, scale=scale)  # type: ignore[arg-type]
    except VardeError as exc:
        raise _fail(exc) from exc
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
        return
    for c in result.candidates:
        typer.echo(f"{c.probability:6.1%}  {c.name} ({c.attack_id}, {c.country or '??'}): {c.likelihood}, "
                   f"{c.confidence} confidence")
    typer.echo("countries: " + ", ".join(f"{k.country} {k.probability:.0%}" for k in result.countries))
    typer.echo(f"unknown actor: {result.unknown_probability:.0%}")


@eval_app.command("attribution")
def eval_attribution_command(
    source: Annotated[Path | None, typer.Option("--from", help="ATT&CK STIX folder (default: the index in use).")] = None,
    limit: Annotated[int, typer.Option(help="Use every n-th case only (1: all).", min=1)] = 1,
) -> None:
    """Run E1 (leave-one-report-out), E2 (campaigns), E3 (country) and calibration; print JSON."""
    from varde.analysis.attribution.evaluate import evaluate

    try:
        index = build_index(_attack_path(source), _misp_files(source, [])) if source else default_index()
    except VardeError as exc:
        raise _fail(exc) from exc
    typer.echo(json.dumps(evaluate(index, step=limit), indent=2))
