"""End-to-end benchmark of ``varde hunt``: wall time, events/s and peak memory of the process tree.

For each scale (1x and 2x of ``--events`` by default) this builds the input with
:mod:`make_events` (reused when already built), then runs::

    varde hunt INPUT --case bench/work/case-Nx --sigma /work/shared/corpus/sigma/rules/windows --quiet

as a subprocess and samples, every 50 ms, the RSS of the varde process and of all its
descendants (the forkserver, its reader workers, the resource tracker). Reported:

* wall time and events/s (events from ``CASE/report.json``: ``case.events``);
* peak RSS of the whole tree (max over samples of the sum) and of the main process alone
  (its kernel high-water mark ``VmHWM``, which sampling cannot miss);
* a phase split observed from outside (varde does not log timings): start-up + rule loading
  (until the case folder appears), reading (until the reader workers are gone), and
  detection + report (until exit), with the tree's peak RSS in each;
* rules loaded, rule errors / not applicable, findings.

Results are printed and appended as a dated section to ``bench/RESULTS.md``.

Usage::

    /work/venv/bin/python bench/hunt_bench.py            # 1x (>= 350k events) and 2x (>= 700k)
    /work/venv/bin/python bench/hunt_bench.py --quick    # smoke run: >= 50k events, 1x only, not recorded
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_events  # noqa: E402

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
WORK = BENCH / "work"
RESULTS = BENCH / "RESULTS.md"
VENV_BIN = Path(sys.executable).parent
DEFAULT_SIGMA = Path("/work/shared/corpus/sigma/rules/windows")
SAMPLE_SECONDS = 0.05
TARGET_EPS = 25_000
TARGET_RSS = 1 << 30


@dataclass
class Sample:
    t: float
    tree_rss: int
    main_rss: int
    processes: int


@dataclass
class Monitor:
    """Samples the process tree of ``pid`` every ``interval`` seconds in a background thread."""

    pid: int
    case: Path
    interval: float = SAMPLE_SECONDS
    samples: list[Sample] = field(default_factory=list)
    main_hwm: int = 0
    max_processes: int = 0
    t_case: float | None = None  # case folder created: rules are loaded
    t_workers_seen: float | None = None
    t_workers_gone: float | None = None  # reader workers stopped: reading is over
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self, t0: float) -> None:
        self.t0 = t0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        try:
            main = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        while not self._stop.is_set():
            self._sample(main)
            self._stop.wait(self.interval)

    def _sample(self, main: psutil.Process) -> None:
        now = time.perf_counter() - self.t0
        try:
            procs = [main, *main.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        total = main_rss = 0
        workers = 0
        for proc in procs:
            try:
                rss = proc.memory_info().rss
            except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
                continue
            total += rss
            if proc.pid == self.pid:
                main_rss = rss
            elif self._is_worker(proc):
                workers += 1
        self.main_hwm = max(self.main_hwm, _vm_hwm(self.pid))
        self.max_processes = max(self.max_processes, len(procs))
        self.samples.append(Sample(now, total, main_rss, len(procs)))
        if self.t_case is None and (self.case / "tmp").is_dir():
            self.t_case = now
        if workers and self.t_workers_seen is None:
            self.t_workers_seen = now
        if not workers and self.t_workers_seen is not None and self.t_workers_gone is None:
            self.t_workers_gone = now

    @staticmethod
    def _is_worker(proc: psutil.Process) -> bool:
        """A reader worker: a child of the multiprocessing forkserver."""
        try:
            parent = proc.parent()
            return parent is not None and "forkserver" in " ".join(parent.cmdline())
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            return False


def _vm_hwm(pid: int) -> int:
    """The kernel's peak RSS of ``pid`` (bytes), 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@dataclass
class RunResult:
    scale: int
    input: Path
    input_events: int
    input_bytes: int
    wall: float
    exit_code: int
    events: int
    tree_peak: int
    main_peak: int
    largest_single: int
    cpu_user: float
    cpu_sys: float
    processes: int
    phases: list[tuple[str, float, int]]  # (name, seconds, tree peak RSS in the phase)
    rulesets: list[dict]
    findings: int
    findings_by_severity: dict[str, int]
    stderr_tail: str

    @property
    def eps(self) -> float:
        return self.events / self.wall if self.wall else 0.0


def run_hunt(input_path: Path, meta: dict, scale: int, sigma: Path, workers: int | None,
             extra_env: dict[str, str]) -> RunResult:
    case = WORK / f"case-{scale}x"
    shutil.rmtree(case, ignore_errors=True)
    cmd = [str(VENV_BIN / "varde"), "hunt", str(input_path), "--case", str(case), "--sigma", str(sigma), "--quiet"]
    if workers is not None:
        cmd += ["--workers", str(workers)]
    _warm_cache(input_path)
    env = {**os.environ, **extra_env}
    print(f"[{scale}x] {' '.join(cmd)}", file=sys.stderr)
    stderr_path = WORK / f"hunt-{scale}x.stderr"
    with open(stderr_path, "wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env)
        monitor = Monitor(proc.pid, case)
        monitor.start(t0)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        monitor.stop()
        proc.returncode = os.waitstatus_to_exitcode(status)
    stderr_tail = stderr_path.read_text(errors="replace")[-2000:]
    report = {}
    if (case / "report.json").exists():
        report = json.loads((case / "report.json").read_text())
    case_info = report.get("case", {})
    findings = report.get("findings", [])
    by_severity: dict[str, int] = {}
    for f in findings:
        by_severity[f["severity"]] = by_severity.get(f["severity"], 0) + 1
    samples = monitor.samples
    tree_peak = max((s.tree_rss for s in samples), default=0)
    main_peak = max(monitor.main_hwm, max((s.main_rss for s in samples), default=0))
    marks = [("start-up + rule loading", 0.0, monitor.t_case),
             ("reading (discovery, worker parse, store insert)", monitor.t_case, monitor.t_workers_gone),
             ("detection + report", monitor.t_workers_gone, wall)]
    phases = []
    for name, start, end in marks:
        if start is None or end is None:
            continue
        peak = max((s.tree_rss for s in samples if start <= s.t <= end), default=0)
        phases.append((name, end - start, peak))
    return RunResult(
        scale=scale, input=input_path, input_events=meta["events"], input_bytes=meta["bytes"], wall=wall,
        exit_code=proc.returncode, events=int(case_info.get("events", 0)), tree_peak=tree_peak,
        main_peak=main_peak, largest_single=usage.ru_maxrss * 1024, cpu_user=usage.ru_utime,
        cpu_sys=usage.ru_stime, processes=monitor.max_processes, phases=phases,
        rulesets=case_info.get("rulesets", []), findings=len(findings), findings_by_severity=by_severity,
        stderr_tail=stderr_tail,
    )


def _warm_cache(path: Path) -> None:
    """Read the input once so every run starts with it in the page cache (same conditions)."""
    with open(path, "rb") as handle:
        while handle.read(16 << 20):
            pass


def machine() -> dict[str, str]:
    model = "unknown"
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = 0
    with open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    return {
        "nproc": str(len(os.sched_getaffinity(0))),
        "ram": f"{mem / (1 << 30):.1f} GiB",
        "cpu": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def versions() -> dict[str, str]:
    out = subprocess.run([str(VENV_BIN / "varde"), "version"], capture_output=True, text=True)
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no", "--", "src"],
                           capture_output=True, text=True).stdout.strip()
    libs = {}
    for name in ("duckdb", "pyarrow", "pysigma", "orjson", "evtx"):
        try:
            from importlib.metadata import version

            libs[name] = version(name)
        except Exception:
            libs[name] = "?"
    return {
        "varde": out.stdout.strip() or "?",
        "commit": commit + (" (src modified)" if dirty else ""),
        "libs": ", ".join(f"{k} {v}" for k, v in libs.items()),
    }


def mb(n: int) -> str:
    return f"{n / (1 << 20):,.0f} MiB"


def ruleset_summary(result: RunResult) -> str:
    parts = []
    for rs in result.rulesets:
        source = "bundled" if rs["source"].startswith("builtin:") else rs["source"]
        parts.append(f"{source}: {rs['rules']} rules loaded, {rs['errors']} errors, "
                     f"{rs.get('skipped', 0)} skipped, {rs.get('not_applicable', 0)} not applicable")
    return "; ".join(parts)


def render(results: list[RunResult], label: str, note: str | None) -> str:
    now = datetime.now(UTC).astimezone()
    m, v = machine(), versions()
    lines = [f"## {now:%Y-%m-%d %H:%M %Z} — {label}", ""]
    lines += [
        f"- machine: {m['nproc']} CPUs ({m['cpu']}), {m['ram']} RAM, Linux {m['kernel']}, Python {m['python']}",
        f"- varde {v['varde']} at commit {v['commit']}; {v['libs']}",
        f"- rules: {ruleset_summary(results[0])}" if results else "- rules: ?",
        "- input: `bench/make_events.py` JSON lines (evtx crate layout), one file, page cache warm",
    ]
    if note:
        lines.append(f"- note: {note}")
    lines += [
        "",
        "| scale | events | input | wall | events/s | peak RSS tree | peak RSS main | largest process | "
        "CPU user+sys | findings | exit |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.scale}x | {r.events:,} | {r.input_bytes / 1e6:,.0f} MB | {r.wall:.1f} s | {r.eps:,.0f} | "
            f"{mb(r.tree_peak)} | {mb(r.main_peak)} | {mb(r.largest_single)} | "
            f"{r.cpu_user:.0f}+{r.cpu_sys:.0f} s | {r.findings} | {r.exit_code} |"
        )
    lines += ["", "Phase split (observed from outside: case folder created, reader workers gone, exit):", ""]
    lines += ["| scale | " + " | ".join(p[0] for p in results[0].phases) + " |" if results and results[0].phases
              else "| scale |"]
    if results and results[0].phases:
        lines.append("|---|" + "---:|" * len(results[0].phases))
        for r in results:
            cells = [f"{secs:.1f} s (peak {mb(peak)})" for _, secs, peak in r.phases]
            lines.append(f"| {r.scale}x | " + " | ".join(cells) + " |")
    lines.append("")
    verdicts = []
    for r in results:
        verdicts.append(f"{r.scale}x: {r.eps:,.0f} events/s ({'meets' if r.eps >= TARGET_EPS else 'below'} "
                        f"{TARGET_EPS:,}), tree peak {mb(r.tree_peak)} "
                        f"({'under' if r.tree_peak < TARGET_RSS else 'OVER'} 1 GiB)")
    if len(results) >= 2 and results[0].tree_peak:
        growth = results[-1].tree_peak / results[0].tree_peak
        verdicts.append(f"peak RSS {results[-1].scale}x / {results[0].scale}x = {growth:.2f}")
    if results:
        sev = results[-1].findings_by_severity
        verdicts.append("findings by severity (largest run): " + ", ".join(f"{k} {sev[k]}" for k in sorted(sev)))
    lines += [f"Targets: {'; '.join(verdicts)}.", ""]
    return "\n".join(lines) + "\n"


def append_results(text: str) -> None:
    if not RESULTS.exists():
        RESULTS.write_text(
            "# `varde hunt` benchmark results\n\nAppended by `bench/hunt_bench.py` (see bench/README.md). "
            "Newest last.\n\n"
        )
    with open(RESULTS, "a") as handle:
        handle.write(text)


def main() -> None:
    parser = argparse.ArgumentParser(description="End-to-end benchmark of varde hunt.")
    parser.add_argument("--events", type=int, help="events at 1x (default 350000; 50000 with --quick)")
    parser.add_argument("--scales", default=None, help="comma-separated multiples of --events (default 1,2)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 50k events, 1x only, not recorded")
    parser.add_argument("--sigma", type=Path, default=DEFAULT_SIGMA)
    parser.add_argument("--workers", type=int, help="passed to varde hunt --workers")
    parser.add_argument("--record", action=argparse.BooleanOptionalAction, default=None,
                        help="append to bench/RESULTS.md (default: yes, except with --quick)")
    parser.add_argument("--note", help="free text added to the RESULTS.md section")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra environment for varde (repeatable)")
    args = parser.parse_args()

    base = args.events or (50_000 if args.quick else make_events.DEFAULT_EVENTS)
    scales = [int(s) for s in (args.scales or ("1" if args.quick else "1,2")).split(",")]
    record = args.record if args.record is not None else not args.quick
    extra_env = dict(item.split("=", 1) for item in args.env)
    WORK.mkdir(parents=True, exist_ok=True)

    results = []
    for scale in scales:
        events = base * scale
        path = make_events.default_output(events)
        meta = make_events.build(events, path)
        result = run_hunt(path, meta, scale, args.sigma, args.workers, extra_env)
        results.append(result)
        print(f"[{scale}x] exit {result.exit_code}: {result.events:,} events in {result.wall:.1f} s = "
              f"{result.eps:,.0f} events/s; peak RSS tree {mb(result.tree_peak)}, main {mb(result.main_peak)}; "
              f"{result.findings} findings", file=sys.stderr)
        for name, secs, peak in result.phases:
            print(f"      {name}: {secs:.1f} s, tree peak {mb(peak)}", file=sys.stderr)
        if result.exit_code != 0:
            print(f"varde failed; stderr tail:\n{result.stderr_tail}", file=sys.stderr)
    label = "quick" if args.quick else f"{base:,} events x {','.join(map(str, scales))}"
    text = render(results, label, args.note)
    print(text)
    if record:
        append_results(text)
        print(f"appended to {RESULTS}", file=sys.stderr)
    if any(r.exit_code for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
