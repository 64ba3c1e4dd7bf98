"""End-to-end benchmark of ``varde hunt``: wall time, events/s and peak memory of the process tree.

For each scale (1x and 2x of ``--events`` by default) this builds the input with
:mod:`make_events` (reused when already built), then runs::

    varde hunt INPUT --case bench/work/case-Nx-PID --sigma ../shared/corpus/sigma/rules/windows --quiet

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

    python bench/hunt_bench.py            # 1x (>= 350k events) and 2x (>= 700k)
    python bench/hunt_bench.py --quick    # smoke run: >= 50k events, 1x only, not recorded
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
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
SHARED = Path(os.environ.get("VARDE_SHARED", Path(__file__).resolve().parents[2] / "shared"))
DEFAULT_SIGMA = SHARED / "corpus/sigma/rules/windows"
SAMPLE_SECONDS = 0.05
TARGET_EPS = 25_000
TARGET_RSS = 1 << 30
RULE_CACHE = WORK / "rule-cache"
_INFO = re.compile(r"^INFO (\S+): (.*)$")


@dataclass
class Sample:
    t: float
    tree_rss: int
    main_rss: int
    processes: int
    cpu: float  # CPU seconds used so far by every process of the tree seen so far


@dataclass
class Monitor:
    """Samples the process tree of ``pid`` every ``interval`` seconds in a background thread."""

    pid: int
    case: Path
    interval: float = SAMPLE_SECONDS
    samples: list[Sample] = field(default_factory=list)
    main_hwm: int = 0
    max_processes: int = 0
    worker_peak: int = 0  # max over samples of the reader workers' summed RSS
    other_peak: int = 0  # max over samples of the rest (forkserver, resource tracker)
    cpu: dict[int, float] = field(default_factory=dict)  # pid -> last sampled user+system seconds
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
        worker_rss = other_rss = 0
        for proc in procs:
            try:
                rss = proc.memory_info().rss
                times = proc.cpu_times()
            except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
                continue
            self.cpu[proc.pid] = times.user + times.system
            total += rss
            if proc.pid == self.pid:
                main_rss = rss
            elif self._is_worker(proc):
                workers += 1
                worker_rss += rss
            else:
                other_rss += rss
        self.main_hwm = max(self.main_hwm, _vm_hwm(self.pid))
        self.max_processes = max(self.max_processes, len(procs))
        self.worker_peak = max(self.worker_peak, worker_rss)
        self.other_peak = max(self.other_peak, other_rss)
        self.samples.append(Sample(now, total, main_rss, len(procs), sum(self.cpu.values())))
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
    cpu_tree: float  # sampled CPU seconds of the whole tree (misses each process's last <= 50 ms)
    phases: list[tuple[str, float, int, float]]  # (name, seconds, tree peak RSS, tree CPU seconds)
    rulesets: list[dict]
    findings: int
    findings_by_severity: dict[str, int]
    stderr_tail: str
    varde_log: list[str] = field(default_factory=list)  # varde's own INFO lines (its timings)
    rule_cache: str = "?"
    other_cpu: float = 0.0  # CPU seconds used by processes outside the tree during the run
    harness_cpu: float = 0.0  # CPU seconds of this harness (mostly the 50 ms sampler)
    worker_peak: int = 0
    other_peak: int = 0
    load: tuple[float, float] = (0.0, 0.0)  # 1-minute load average before and after

    @property
    def eps(self) -> float:
        return self.events / self.wall if self.wall else 0.0


def hunt_command(input_path: Path, case: Path, sigma: Path, workers: int | None) -> list[str]:
    cmd = [str(VENV_BIN / "varde"), "hunt", str(input_path), "--case", str(case), "--sigma", str(sigma), "--quiet"]
    if workers is not None:
        cmd += ["--workers", str(workers)]
    return cmd


def export_commit(rev: str) -> tuple[Path, str]:
    """``src/`` of commit ``rev`` exported to bench/work/src-<hash> (for PYTHONPATH); (src dir, hash)."""
    full = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short=12", rev], capture_output=True, text=True,
                          check=True).stdout.strip()
    root = WORK / f"src-{full}"
    if not (root / "src" / "varde").is_dir():
        root.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(REPO), "archive", full, "src"], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(root)], input=archive.stdout, check=True)
    return root / "src", full


def source_tag(commit_src: tuple[Path, str] | None) -> str:
    """A name for the varde source being measured: the commit, plus a hash of uncommitted src changes."""
    if commit_src:
        return commit_src[1]
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    diff = subprocess.run(["git", "-C", str(REPO), "diff", "HEAD", "--", "src"], capture_output=True).stdout
    return head + (f"-dirty-{hashlib.sha256(diff).hexdigest()[:10]}" if diff else "")


def cache_env(mode: str) -> dict[str, str]:
    """Environment selecting varde's compiled-rule cache for ``mode`` (warm, cold, off)."""
    return {"VARDE_CACHE_DIR": "off" if mode == "off" else str(RULE_CACHE)}


def prepare_rule_cache(mode: str, sigma: Path, workers: int | None, extra_env: dict[str, str]) -> None:
    """cold: empty the bench's rule cache; warm: fill it with an untimed hunt over one event."""
    if mode == "cold":
        shutil.rmtree(RULE_CACHE, ignore_errors=True)
    elif mode == "warm":
        tiny = WORK / "one-event.jsonl"
        with open(tiny, "wb") as out:
            templates, _, _ = make_events.load_templates(make_events.SAMPLES, verbose=False)
            out.write(templates[0].render(0) + b"\n")
        case = WORK / f"case-prime-{os.getpid()}"
        shutil.rmtree(case, ignore_errors=True)
        subprocess.run(hunt_command(tiny, case, sigma, workers), env={**os.environ, **cache_env(mode), **extra_env},
                       stdout=subprocess.DEVNULL, check=False)
        shutil.rmtree(case, ignore_errors=True)


def run_hunt(input_path: Path, meta: dict, scale: int, sigma: Path, workers: int | None,
             extra_env: dict[str, str], rule_cache: str = "warm", keep_case: bool = False) -> RunResult:
    # One case folder per harness process: two benchmarks started at once must not share one.
    case = WORK / f"case-{scale}x-{os.getpid()}"
    shutil.rmtree(case, ignore_errors=True)
    cmd = hunt_command(input_path, case, sigma, workers)
    prepare_rule_cache(rule_cache, sigma, workers, extra_env)
    _warm_cache(input_path)
    env = {**os.environ, "VARDE_LOG": "INFO", **cache_env(rule_cache), **extra_env}
    print(f"[{scale}x] {' '.join(cmd)}", file=sys.stderr)
    stderr_path = WORK / f"hunt-{scale}x-{os.getpid()}.stderr"
    load_before = os.getloadavg()[0]
    with open(stderr_path, "wb") as err:
        busy_before, own_before = _busy_seconds(), time.process_time()
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env)
        monitor = Monitor(proc.pid, case)
        monitor.start(t0)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        busy = _busy_seconds() - busy_before
        monitor.stop()
        own = time.process_time() - own_before  # this harness (the sampler thread) is not "others"
        proc.returncode = os.waitstatus_to_exitcode(status)
    stderr_text = stderr_path.read_text(errors="replace")
    stderr_tail = stderr_text[-2000:]
    varde_log = [m.group(2) for m in map(_INFO.match, stderr_text.splitlines()) if m]
    report = {}
    if (case / "report.json").exists():
        report = json.loads((case / "report.json").read_text())
    case_info = report.get("case", {})
    findings = report.get("findings", [])
    by_severity: dict[str, int] = {}
    for f in findings:
        by_severity[f["severity"]] = by_severity.get(f["severity"], 0) + 1
    if not keep_case:
        shutil.rmtree(case, ignore_errors=True)
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
        inside = [s for s in samples if start <= s.t <= end]
        peak = max((s.tree_rss for s in inside), default=0)
        cpu = inside[-1].cpu - _cpu_before(samples, start) if inside else 0.0
        phases.append((name, end - start, peak, cpu))
    return RunResult(
        scale=scale, input=input_path, input_events=meta["events"], input_bytes=meta["bytes"], wall=wall,
        exit_code=proc.returncode, events=int(case_info.get("events", 0)), tree_peak=tree_peak,
        main_peak=main_peak, largest_single=usage.ru_maxrss * 1024, cpu_user=usage.ru_utime,
        cpu_sys=usage.ru_stime, cpu_tree=samples[-1].cpu if samples else 0.0, processes=monitor.max_processes,
        phases=phases,
        rulesets=case_info.get("rulesets", []), findings=len(findings), findings_by_severity=by_severity,
        stderr_tail=stderr_tail, varde_log=varde_log, rule_cache=rule_cache, other_cpu=max(0.0, busy - own - (samples[-1].cpu if samples else 0.0)),
        harness_cpu=own, worker_peak=monitor.worker_peak, other_peak=monitor.other_peak,
        load=(load_before, os.getloadavg()[0]),
    )


def _busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (not idle or waiting for I/O) since boot."""
    t = psutil.cpu_times()
    return t.user + t.nice + t.system + t.irq + t.softirq + getattr(t, "steal", 0.0)


def _cpu_before(samples: list[Sample], t: float) -> float:
    before = [s.cpu for s in samples if s.t < t]
    return before[-1] if before else 0.0


def _warm_cache(path: Path) -> None:
    """Read the input (a file, or every file of a folder) once so every run starts with it in the
    page cache (same conditions)."""
    for file in sorted(path.rglob("*")) if path.is_dir() else [path]:
        if file.is_file():
            with open(file, "rb") as handle:
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


def versions(commit_src: tuple[Path, str] | None = None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(commit_src[0])} if commit_src else None
    out = subprocess.run([str(VENV_BIN / "varde"), "version"], capture_output=True, text=True, env=env)
    if commit_src:
        commit, dirty = commit_src[1] + " (exported with --commit)", ""
    else:
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                                text=True).stdout.strip()
        diff = subprocess.run(["git", "-C", str(REPO), "diff", "HEAD", "--", "src"], capture_output=True).stdout
        dirty = f"working tree, src diff sha256 {hashlib.sha256(diff).hexdigest()[:10]}" if diff else ""
    libs = {}
    for name in ("duckdb", "pyarrow", "pysigma", "orjson", "evtx"):
        try:
            from importlib.metadata import version

            libs[name] = version(name)
        except Exception:
            libs[name] = "?"
    return {
        "varde": out.stdout.strip() or "?",
        "commit": commit + (f" + uncommitted changes ({dirty})" if dirty else ""),
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


def render(results: list[RunResult], label: str, note: str | None,
           commit_src: tuple[Path, str] | None = None) -> str:
    now = datetime.now(UTC).astimezone()
    m, v = machine(), versions(commit_src)
    lines = [f"## {now:%Y-%m-%d %H:%M %Z} — {label}", ""]
    lines += [
        f"- machine: {m['nproc']} CPUs ({m['cpu']}), {m['ram']} RAM, Linux {m['kernel']}, Python {m['python']}",
        f"- varde {v['varde']} at commit {v['commit']}; {v['libs']}",
        f"- rules: {ruleset_summary(results[0])}" if results else "- rules: ?",
        "- input: `bench/make_events.py` JSON lines (evtx crate layout), one file, page cache warm",
        f"- compiled-rule cache: {results[0].rule_cache if results else '?'} "
        "(warm: filled by an untimed run first; cold: emptied before each run; off: VARDE_CACHE_DIR=off)",
    ]
    if note:
        lines.append(f"- note: {note}")
    lines += [
        "",
        "| scale | events | input | wall | events/s | peak RSS tree | peak RSS main | peak RSS readers | "
        "peak RSS rest | largest process | "
        "CPU (tree) | CPU (others) | load 1m | findings | exit |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.scale}x | {r.events:,} | {r.input_bytes / 1e6:,.0f} MB | {r.wall:.1f} s | {r.eps:,.0f} | "
            f"{mb(r.tree_peak)} | {mb(r.main_peak)} | {mb(r.worker_peak)} | {mb(r.other_peak)} | "
            f"{mb(r.largest_single)} | "
            f"{r.cpu_tree:.0f} s | {r.other_cpu:.0f} s | {r.load[0]:.1f}→{r.load[1]:.1f} | {r.findings} | "
            f"{r.exit_code} |"
        )
    lines += ["", "Phase split, observed from outside (case folder created, reader workers gone, exit); CPU is "
              "the whole tree's, sampled (2 CPUs: at most 2 s per second):", ""]
    lines += ["| scale | " + " | ".join(p[0] for p in results[0].phases) + " |" if results and results[0].phases
              else "| scale |"]
    if results and results[0].phases:
        lines.append("|---|" + "---:|" * len(results[0].phases))
        for r in results:
            cells = [f"{secs:.1f} s, CPU {cpu:.0f} s, peak {mb(peak)}" for _, secs, peak, cpu in r.phases]
            lines.append(f"| {r.scale}x | " + " | ".join(cells) + " |")
    lines.append("")
    if any(r.varde_log for r in results):
        lines += ["varde's own timings (`VARDE_LOG=INFO`):", ""]
        for r in results:
            lines.append(f"- {r.scale}x: " + "; ".join(r.varde_log))
        lines.append("")
    verdicts = []
    best = best_runs(results)
    if len(best) < len(results):
        lines += ["Targets are judged on the fastest run of each scale.", ""]
    for r in best:
        verdicts.append(f"{r.scale}x: {r.eps:,.0f} events/s ({'meets' if r.eps >= TARGET_EPS else 'below'} "
                        f"{TARGET_EPS:,}), tree peak {mb(r.tree_peak)} "
                        f"({'under' if r.tree_peak < TARGET_RSS else 'OVER'} 1 GiB)")
    if len(best) >= 2 and best[0].tree_peak:
        growth = best[-1].tree_peak / best[0].tree_peak
        verdicts.append(f"peak RSS {best[-1].scale}x / {best[0].scale}x = {growth:.2f}")
    if results:
        sev = results[-1].findings_by_severity
        verdicts.append("findings by severity (largest run): " + ", ".join(f"{k} {sev[k]}" for k in sorted(sev)))
    lines += [f"Targets: {'; '.join(verdicts)}.", ""]
    return "\n".join(lines) + "\n"


def best_runs(results: list[RunResult]) -> list[RunResult]:
    """The fastest run of each scale, in scale order."""
    out: dict[int, RunResult] = {}
    for r in results:
        if r.scale not in out or r.wall < out[r.scale].wall:
            out[r.scale] = r
    return [out[k] for k in sorted(out)]


def wait_quiet(limit: float, threshold: float = 0.25, window: float = 5.0) -> float:
    """Wait (up to ``limit`` s) until the machine used under ``threshold`` CPUs for ``window`` s; the wait."""
    start = time.perf_counter()
    while time.perf_counter() - start < limit:
        before = _busy_seconds()
        time.sleep(window)
        if (_busy_seconds() - before) / window < threshold:
            break
    waited = time.perf_counter() - start
    if waited > window + 1:
        print(f"      waited {waited:.0f} s for the machine to be quiet", file=sys.stderr)
    return waited


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
    parser.add_argument("--keep-case", action="store_true",
                        help="keep bench/work/case-Nx-PID after each run (default: removed once measured)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per scale (targets judged on the fastest)")
    parser.add_argument("--wait-quiet", type=float, default=600, metavar="SECONDS",
                        help="before each run, wait up to this long for other processes to go quiet (0: don't)")
    parser.add_argument("--note", help="free text added to the RESULTS.md section")
    parser.add_argument("--commit", help="benchmark this commit's src/ (exported to bench/work) instead of "
                        "the working tree")
    parser.add_argument("--rule-cache", choices=("warm", "cold", "off"), default="warm",
                        help="varde's compiled-rule cache (in bench/work/rule-cache): warm (default), cold, off")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra environment for varde (repeatable)")
    args = parser.parse_args()

    base = args.events or (50_000 if args.quick else make_events.DEFAULT_EVENTS)
    scales = [int(s) for s in (args.scales or ("1" if args.quick else "1,2")).split(",")]
    record = args.record if args.record is not None else not args.quick
    extra_env = dict(item.split("=", 1) for item in args.env)
    WORK.mkdir(parents=True, exist_ok=True)
    commit_src = export_commit(args.commit) if args.commit else None
    if commit_src:
        extra_env = {"PYTHONPATH": str(commit_src[0]), **extra_env}
    # One rule cache per source version: the cache key does not cover varde's own code.
    global RULE_CACHE
    RULE_CACHE = WORK / "rule-cache" / source_tag(commit_src)

    results = []
    for scale in scales:
        events = base * scale
        path = make_events.default_output(events)
        meta = make_events.build(events, path)
        for _ in range(args.repeat):
            if args.wait_quiet:
                wait_quiet(args.wait_quiet)
            result = run_hunt(path, meta, scale, args.sigma, args.workers, extra_env, args.rule_cache,
                              args.keep_case)
            results.append(result)
            report_run(result)
            save_run(result, label_for(args, base, scales))
    label = label_for(args, base, scales)
    text = render(results, label, args.note, commit_src)
    print(text)
    if record:
        append_results(text)
        print(f"appended to {RESULTS}", file=sys.stderr)
    if any(r.exit_code for r in results):
        sys.exit(1)


def label_for(args: argparse.Namespace, base: int, scales: list[int]) -> str:
    label = "quick" if args.quick else f"{base:,} events x {','.join(map(str, scales))}"
    return label + (f", {args.repeat} runs each" if args.repeat > 1 else "")


def save_run(result: RunResult, label: str) -> None:
    """Each run as one JSON line in bench/work/runs.jsonl, written at once (survives an interrupted set)."""
    from dataclasses import asdict

    data = {"time": datetime.now(UTC).isoformat(timespec="seconds"), "set": label, **asdict(result)}
    data["input"] = str(result.input)
    data.pop("stderr_tail", None)
    with open(WORK / "runs.jsonl", "a") as handle:
        handle.write(json.dumps(data) + "\n")


def report_run(result: RunResult) -> None:
    scale = result.scale
    print(f"[{scale}x] exit {result.exit_code}: {result.events:,} events in {result.wall:.1f} s = "
          f"{result.eps:,.0f} events/s; peak RSS tree {mb(result.tree_peak)}, main {mb(result.main_peak)}, "
          f"readers {mb(result.worker_peak)}, rest {mb(result.other_peak)}; "
          f"{result.findings} findings; CPU tree {result.cpu_tree:.0f} s, other processes "
          f"{result.other_cpu:.0f} s, harness {result.harness_cpu:.0f} s", file=sys.stderr)
    if result.other_cpu > 0.1 * result.wall:
        print(f"      WARNING: other processes used {result.other_cpu:.0f} CPU s during the run: "
              "the machine was not quiet, timings are pessimistic", file=sys.stderr)
    for line in result.varde_log:
        print(f"      varde: {line}", file=sys.stderr)
    for name, secs, peak, cpu in result.phases:
        print(f"      {name}: {secs:.1f} s, CPU {cpu:.1f} s, tree peak {mb(peak)}", file=sys.stderr)
    if result.exit_code != 0:
        print(f"varde failed; stderr tail:\n{result.stderr_tail}", file=sys.stderr)


if __name__ == "__main__":
    main()
