"""Time the analysis and the rendering of a hunted case, from its store and report.json.

    python bench/analysis_bench.py CASE_DIR [--note TEXT]

Re-runs what the hunt does after detection (hits, intruders, footprint, timeline, mailbox impact,
verdict: ``build_report``), the evidence excerpts and the three renderers, on the case's own
findings, three times each, and appends the best times to bench/RESULTS.md. Nothing in the case
folder is changed (outputs go to a temporary folder).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from varde.events.store import EventStore
from varde.report.build import build_report
from varde.report.document import Report
from varde.report.excerpts import with_excerpts
from varde.report.outputs import write_outputs

RESULTS = Path(__file__).with_name("RESULTS.md")


def _best(runs: int, work) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(runs):
        start = time.perf_counter()
        result = work()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("case", type=Path)
    parser.add_argument("--note", default="")
    args = parser.parse_args()
    old = Report.load(args.case / "report.json")
    with EventStore(args.case / "events.duckdb") as store:
        analysis, report = _best(3, lambda: build_report(store, [], list(old.findings), old.case.created))
        excerpts, report = _best(3, lambda: with_excerpts(report, store))
    with tempfile.TemporaryDirectory() as out:
        render, _ = _best(3, lambda: write_outputs(report, Path(out)))
        sizes = {p.name: p.stat().st_size for p in Path(out).iterdir()}
    label = "/".join(args.case.resolve().parts[-2:])
    line = (f"| {label} | {old.case.events:,} | {len(old.findings)} | {len(report.intruders)} | "
            f"{len(report.timeline)} | {len(report.mailboxes)} | {analysis:.2f} s | {excerpts:.2f} s | {render:.2f} s | "
            f"{sizes.get('report.html', 0) // 1024} KiB |")
    load = os.getloadavg()[0]
    text = (f"\n\n## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC — analysis and outputs (`bench/analysis_bench.py`)\n\n"
            f"- {os.cpu_count()} CPUs, Python {platform.python_version()}; load average at the end {load:.1f} "
            f"(machine shared: figures are indicative){'; ' + args.note if args.note else ''}\n\n"
            "| case | events | findings | intruders | steps | mailboxes | analysis | excerpts | render | HTML |\n"
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n" + line + "\n")
    with RESULTS.open("a", encoding="utf-8") as handle:
        handle.write(text)
    print(text)


if __name__ == "__main__":
    main()
