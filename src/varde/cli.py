"""The ``varde`` command line: parse arguments, call the pipeline, map errors to exit codes.

Exit codes: 0 the command ran (with or without findings); 2 unusable arguments; 3 the case
folder cannot be created or read; 1 any other varde error. Errors are one line on stderr.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, ClassVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from varde import __version__
from varde.cli_intel import attribute_command, eval_app, intel_app
from varde.errors import VardeError
from varde.report import console as console_report

if TYPE_CHECKING:
    from varde.pipeline import HuntOptions

# The pipeline and the report modules are imported by the commands that use them: reader
# workers re-run this module when they start (multiprocessing's forkserver does that with the
# main script), and they need none of it.

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Compromise assessment for Exchange servers.")
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


class RichProgress:
    """Progress bars for reading (bytes) and matching (event groups), on a terminal only."""

    LABELS: ClassVar[dict[str, str]] = {"read": "Reading evidence", "match": "Matching rules", "yara": "Scanning files (YARA)"}

    def __init__(self, quiet: bool) -> None:
        self.bar = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=err, transient=True, disable=quiet or not err.is_terminal,
        )
        self.tasks: dict[str, object] = {}

    def start(self, stage: str, total: int) -> None:
        if stage == "read":
            self.bar.columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeElapsedColumn())
        else:
            self.bar.columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        self.tasks[stage] = self.bar.add_task(self.LABELS.get(stage, stage), total=total)

    def advance(self, stage: str, amount: int = 1) -> None:
        self.bar.advance(self.tasks[stage], amount)  # type: ignore[arg-type]

    def end(self, stage: str) -> None:
        self.bar.remove_task(self.tasks.pop(stage))  # type: ignore[arg-type]


def _error(message: str) -> None:
    """One line on stderr, control characters made visible (never wrapped, never markup)."""
    sys.stderr.write(f"varde: error: {console_report.safe(' '.join(str(message).split()))}\n")


def _fail(exc: VardeError) -> typer.Exit:
    _error(str(exc))
    return typer.Exit(exc.exit_code)


def _run_hunt(evidence: list[Path], case: Path, options: HuntOptions, quiet: bool) -> None:
    from varde.pipeline import hunt

    progress = RichProgress(quiet)
    try:
        with progress.bar:
            result = hunt(evidence, case, options, progress)
    except VardeError as exc:
        raise _fail(exc) from exc
    except Exception as exc:  # the command line's last resort: one line, details in the log
        logging.getLogger("varde").debug("hunt failed", exc_info=True)
        _error(f"internal error, the hunt stopped: {type(exc).__name__}: {exc} "
               "(VARDE_LOG=DEBUG shows the traceback; the case folder keeps what was read)")
        raise typer.Exit(1) from exc
    if not quiet:
        console_report.render(result.report, out)
        out.print(f"Report: {console_report.safe(result.case.report_path)}", markup=False)


@app.command("hunt")
def hunt_command(
    evidence: Annotated[list[Path], typer.Argument(help="Evidence files, folders or zip archives (read-only).")],
    case: Annotated[Path, typer.Option("--case", help="Case folder to create or reuse.")],
    sigma: Annotated[list[Path], typer.Option("--sigma", help="Sigma rule folder (repeatable).")] = [],  # noqa: B006
    placeholders: Annotated[
        Path | None, typer.Option("--placeholders", help="YAML: values for %placeholder% rules.")
    ] = None,
    yara: Annotated[list[Path], typer.Option("--yara", help="YARA rule folder or file (repeatable).")] = [],  # noqa: B006
    builtin_rules: Annotated[bool, typer.Option(help="Use varde's bundled Sigma and YARA rules.")] = True,
    workers: Annotated[int, typer.Option(help="Reader processes (0: read in this process).", min=0)] = 2,
    victim_country: Annotated[
        str | None, typer.Option("--victim-country", help="Victim's country (ISO 3166 alpha-2), for attribution.")
    ] = None,
    as_of: Annotated[
        datetime | None, typer.Option("--as-of", formats=["%Y-%m-%d"], help="Attribute with what ATT&CK knew then.")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or summary.")] = False,
) -> None:
    """Read evidence into a case, run the rules and write CASE/report.json."""
    from varde.pipeline import HuntOptions

    options = HuntOptions(tuple(sigma), builtin_rules, placeholders, workers, yara_dirs=tuple(yara),
                          builtin_yara=builtin_rules, victim_country=victim_country,
                          as_of=as_of.date() if as_of else None)
    _run_hunt(evidence, case, options, quiet)


@app.command("demo")
def demo_command(
    case: Annotated[Path | None, typer.Option("--case", help="Case folder (default: a temporary one).")] = None,
) -> None:
    """Simulate a small ProxyLogon case into a temporary folder, hunt it and show the result."""
    from varde.demo import simulate_demo
    from varde.pipeline import HuntOptions

    work = Path(tempfile.mkdtemp(prefix="varde-demo-"))
    summary = simulate_demo(work / "evidence")
    out.print(f"Simulated a ProxyLogon case: {summary.files} files, {summary.bytes / 1e6:,.1f} MB in "
              f"{console_report.safe(summary.out)} (truth.json says what happened)", markup=False)
    _run_hunt([summary.out], case or work / "case", HuntOptions(), quiet=False)


@app.command("simulate")
def simulate_command(
    scenario: Annotated[str, typer.Argument(help="A bundled scenario name, or a scenario YAML file.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to write the evidence tree into (new or empty).")],
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same bytes.")] = 1,
    days: Annotated[int | None, typer.Option(help="Days to simulate (at least the scenario's).", min=1)] = None,
    users: Annotated[int | None, typer.Option(help="Mailbox users in the organisation.", min=1)] = None,
    size: Annotated[str | None, typer.Option(help="Keep simulating whole days until this much is written (10GB).")] = None,
) -> None:
    """Simulate a scenario's Exchange server evidence, with its ground truth in OUT/truth.json."""
    from varde.scenario.engine import Settings, parse_size
    from varde.scenario.library import simulate

    try:
        size_bytes = parse_size(size) if size else None
    except ValueError as exc:
        _error(str(exc))
        raise typer.Exit(2) from exc
    try:
        summary = simulate(scenario, out_dir, Settings(seed, days, users, size_bytes))
    except VardeError as exc:
        raise _fail(exc) from exc
    verdict = "compromised" if summary.truth["verdict"]["compromised"] else "clean"
    out.print(f"{console_report.safe(scenario)}: {summary.days} days, {summary.files} files, "
              f"{summary.bytes / 1e6:,.1f} MB ({verdict}); truth: {console_report.safe(out_dir / 'truth.json')}",
              markup=False)


@app.command("report")
def report_command(case: Annotated[Path, typer.Argument(help="A case folder with report.json.")]) -> None:
    """Show a case's report again and re-render report.html, timeline.jsonl and navigator.json, from
    report.json alone (the evidence is not read again)."""
    from varde.case import Case
    from varde.report.document import Report
    from varde.report.outputs import write_outputs

    try:
        path = Case.open(case).report_path
        report = Report.load(path)
    except VardeError as exc:
        raise _fail(exc) from exc
    except ValueError as exc:
        reason = exc.errors()[0]["msg"] if hasattr(exc, "errors") else str(exc).splitlines()[0]
        _error(f"{case}/report.json is not a valid report: {reason}")
        raise typer.Exit(3) from exc
    try:
        write_outputs(report, path.parent)
    except OSError as exc:
        _error(f"cannot write the outputs into {case}: {exc}")
        raise typer.Exit(3) from exc
    console_report.render(report, out)


app.add_typer(intel_app, name="intel")
app.add_typer(eval_app, name="eval")
app.command("attribute")(attribute_command)


@app.command("version")
def version_command() -> None:
    """Print varde's version."""
    out.print(__version__)


def main() -> None:
    """Console script entry point."""
    logging.basicConfig(level=os.environ.get("VARDE_LOG", "WARNING"), format="%(levelname)s %(name)s: %(message)s")
    app()
