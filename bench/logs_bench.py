"""Benchmark of ``varde hunt`` over IIS and Exchange HttpProxy logs: MB/s and peak memory.

For each size (``--mb``, default 100 and 200) this builds a folder of logs with
:mod:`make_logs` (half IIS W3C, half HttpProxy; reused when already built), then runs::

    varde hunt FOLDER --case bench/work/case-... --sigma bench/work/webserver-rules --quiet

through :func:`hunt_bench.run_hunt` (same process-tree sampling and phase split). The rules are
every SigmaHQ rule of ``category: webserver`` (``../shared/corpus/sigma``), copied unmodified
into ``bench/work/webserver-rules``: the rules that apply to these logs (Windows rules would add
only their fixed loading time). Reported: wall MB/s, MB per CPU second of the whole process tree
("per core"), peak RSS, findings. Results are appended to ``bench/RESULTS.md``.

Usage::

    python bench/logs_bench.py                # 100 MB and 200 MB
    python bench/logs_bench.py --mb 50 --no-record
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hunt_bench  # noqa: E402
import make_logs  # noqa: E402

TARGET_MB_PER_CORE = 100.0


def webserver_rules(sigma: Path) -> Path:
    """bench/work/webserver-rules: every SigmaHQ rule whose log source is ``category: webserver``."""
    folder = hunt_bench.WORK / "webserver-rules"
    if folder.is_dir():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for path in sorted(sigma.rglob("*.yml")):
        if "category: webserver" in path.read_text(encoding="utf-8", errors="replace"):
            shutil.copy(path, folder / path.name)
    return folder


def reader_speed(folder: Path) -> list[tuple[str, int, float, float]]:
    """Each log file read in this process by its reader into a null sink (no store, no rules):
    (file, bytes, CPU seconds, wall seconds). The readers' share of the cost, apart from the rest."""
    sys.path.insert(0, str(hunt_bench.REPO / "src"))
    from varde.sources.base import EvidenceFile, ReadContext
    from varde.sources.discover import sniff

    out = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        with open(path, "rb") as handle:
            reader = sniff(handle.read(65536), str(path))
        from varde.sources import reader_named

        context = ReadContext(1, lambda item: None, hunt_bench.WORK)
        cpu, wall = time.process_time(), time.perf_counter()
        reader_named(reader).read(EvidenceFile(str(path), path, size=path.stat().st_size), context)
        out.append((f"{reader}: {path.name}", path.stat().st_size, time.process_time() - cpu,
                    time.perf_counter() - wall))
    return out


def render(results: list[hunt_bench.RunResult], rules: int, note: str | None,
           readers: list[tuple[str, int, float, float]]) -> str:
    """A RESULTS.md section in the style of hunt_bench's."""
    m, v = hunt_bench.machine(), hunt_bench.versions()
    lines = [f"## {datetime.now(UTC).astimezone():%Y-%m-%d %H:%M %Z} — logs: IIS + HttpProxy", "",
             f"- machine: {m['nproc']} CPUs ({m['cpu']}), {m['ram']} RAM, Linux {m['kernel']}, "
             f"Python {m['python']}; shared with other sessions while measured: figures are indicative",
             f"- varde {v['varde']} at commit {v['commit']}; {v['libs']}",
             f"- rules: the {rules} SigmaHQ `category: webserver` rules; "
             + (hunt_bench.ruleset_summary(results[0]) if results else "?"),
             "- input: `bench/make_logs.py`: one IIS W3C file and one HttpProxy file of equal size, page cache warm"]
    if note:
        lines.append(f"- note: {note}")
    lines += ["", "| input | events | wall | MB/s | MB per CPU s | CPU (tree) | CPU (others) | peak RSS tree | "
              "peak RSS readers | load 1m | findings | exit |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        mb = r.input_bytes / 1e6
        lines.append(f"| {mb:,.0f} MB | {r.events:,} | {r.wall:.1f} s | {mb / r.wall:.1f} | "
                     f"{mb / max(r.cpu_tree, 0.1):.1f} | {r.cpu_tree:.0f} s | {r.other_cpu:.0f} s | "
                     f"{hunt_bench.mb(r.tree_peak)} | {hunt_bench.mb(r.worker_peak)} | "
                     f"{r.load[0]:.1f}→{r.load[1]:.1f} | {r.findings} | {r.exit_code} |")
    lines += ["", "Phases (from outside) and varde's own timings:", ""]
    for r in results:
        phases = "; ".join(f"{name} {secs:.1f} s (CPU {cpu:.0f} s)" for name, secs, _, cpu in r.phases)
        lines.append(f"- {r.input_bytes / 1e6:,.0f} MB: {phases}; varde: " + "; ".join(r.varde_log))
    lines += ["", "Readers alone (in one process, null sink: parse + derived fields + Arrow IPC encoding; "
              "no store, no rules):", ""]
    for name, size, cpu, wall in readers:
        lines.append(f"- {name}: {size / 1e6:,.0f} MB, {size / 1e6 / max(cpu, 1e-3):.0f} MB per CPU s "
                     f"({size / 1e6 / max(wall, 1e-3):.0f} MB/s wall)")
    best = max((r.input_bytes / 1e6 / max(r.cpu_tree, 0.1) for r in results), default=0.0)
    growth = (f"; peak RSS {results[-1].tree_peak / results[0].tree_peak:.2f}x from the smallest to the largest input"
              if len(results) > 1 and results[0].tree_peak else "")
    lines += ["", f"Target: {TARGET_MB_PER_CORE:.0f} MB per CPU second read and matched: best {best:.1f} "
              f"({'meets' if best >= TARGET_MB_PER_CORE else 'below'}){growth}.", ""]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description="Benchmark of varde hunt over IIS and HttpProxy logs.")
    parser.add_argument("--mb", default="100,200", help="comma-separated input sizes in MB")
    parser.add_argument("--sigma", type=Path, default=hunt_bench.SHARED / "corpus/sigma")
    parser.add_argument("--workers", type=int)
    parser.add_argument("--record", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--wait-quiet", type=float, default=120, metavar="SECONDS")
    parser.add_argument("--note")
    args = parser.parse_args()
    hunt_bench.WORK.mkdir(parents=True, exist_ok=True)
    hunt_bench.RULE_CACHE = hunt_bench.WORK / "rule-cache" / hunt_bench.source_tag(None)
    rules = webserver_rules(args.sigma)
    results = []
    sizes = [int(s) for s in args.mb.split(",")]
    for size in sizes:
        folder = hunt_bench.WORK / f"logs-{size}mb"
        meta = make_logs.build(size, folder)
        if args.wait_quiet:
            hunt_bench.wait_quiet(args.wait_quiet)
        # the varde of this checkout (the venv's may be an editable install of another one)
        env = {"PYTHONPATH": str(hunt_bench.REPO / "src")}
        result = hunt_bench.run_hunt(folder, meta, size, rules, args.workers, env)
        hunt_bench.report_run(result)
        results.append(result)
    readers = reader_speed(hunt_bench.WORK / f"logs-{sizes[-1]}mb")
    text = render(results, len(list(rules.glob("*.yml"))), args.note, readers)
    print(text)
    if args.record:
        hunt_bench.append_results(text)
    if any(r.exit_code for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
