"""Where do the CPU seconds of ``varde hunt`` go? Process CPU (every thread, DuckDB's included) per stage.

``profile_hunt.py`` times stages with the calling thread's CPU, which leaves out the DuckDB
worker threads that do most of the work of a SQL-heavy stage. This runs the hunt in this process
through :func:`varde.pipeline.hunt` and charges each sequential stage with the CPU of the whole
process (``time.process_time``) and of the finished reader workers (``RUSAGE_CHILDREN``).
Stages that run inside another (each built-in detector, each Sigma group) are charged the same
way: their callers run them one at a time, except the Sigma groups, which the engine runs on
two threads; ``--sigma-threads 1`` makes their figures exact.

Usage::

    python bench/profile_logs.py bench/work/logs-100mb --sigma bench/work/webserver-rules
"""

from __future__ import annotations

import argparse
import functools
import resource
import shutil
import sys
import time
from collections import defaultdict
from pathlib import Path

BENCH = Path(__file__).resolve().parent
CPU: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])  # name -> [calls, CPU s, wall s]


WORKERS = [0.0]  # CPU s of the reader workers, read just before each is stopped


def _children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime + WORKERS[0]


def watch_workers() -> None:
    """Add each reader worker's CPU to WORKERS when the pool stops it (they are children of the
    forkserver, not of this process, so RUSAGE_CHILDREN never sees them)."""
    import psutil

    from varde.sources.ingest import WorkerPool

    original = WorkerPool._stop

    def stop(worker):  # type: ignore[no-untyped-def]
        try:
            times = psutil.Process(worker.process.pid).cpu_times()
            WORKERS[0] += times.user + times.system
        except psutil.Error:
            pass
        original(worker)

    WorkerPool._stop = staticmethod(stop)


def charged(owner: object, attr: str, name: str | None = None, children: bool = False) -> None:
    """Wrap ``owner.attr`` so its process CPU (and the reaped children's) adds up under ``name``."""
    original = getattr(owner, attr, None)
    if original is None:
        print(f"(not charged: {attr} does not exist)", file=sys.stderr)
        return

    @functools.wraps(original)
    def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
        label = name or f"{type(args[0]).__name__}.{attr}"
        start, wall, kids = time.process_time(), time.perf_counter(), _children()
        try:
            result = original(*args, **kwargs)
            if hasattr(result, "__next__"):  # a generator: drain it inside the timing
                result = list(result)
            return result
        finally:
            entry = CPU[label]
            entry[0] += 1
            entry[1] += time.process_time() - start + (_children() - kids if children else 0.0)
            entry[2] += time.perf_counter() - wall

    setattr(owner, attr, wrapper)


def instrument(sigma_threads: int) -> None:
    from varde import ingest as top_ingest
    from varde import pipeline
    from varde.case import Case
    from varde.detect import exchange
    from varde.detect.sigma import engine
    from varde.events.store import EventStore
    from varde.report.document import Report
    from varde.sources import ingest

    watch_workers()
    charged(pipeline, "load_rulesets", "1 rules: load")
    charged(ingest.WorkerPool, "run", "2 read:  worker pool (parent side + workers)", children=True)
    charged(pipeline, "_read", "2 read: reader workers + spool + store insert", children=True)
    charged(pipeline, "plan", "2 read:  discovery (plan)")
    charged(top_ingest.Spool, "finish", "2 read:  spool finish (loads after the pool)")
    charged(top_ingest, "fill_hashes", "2 read:  fill_hashes")
    charged(EventStore, "refresh_view", "2 read:  refresh_view (catalog, events view)")
    charged(pipeline, "_yara", "3 yara")
    charged(engine.SigmaEngine, "run", "4 sigma: engine.run (total)")
    charged(engine, "list_groups", "4 sigma:  list_groups")
    charged(engine.SigmaEngine, "_run_group", "4 sigma:  groups (prefilter + union)")
    charged(engine.GroupValues, "load", "4 sigma:   prefilter distinct values")
    charged(engine.SigmaEngine, "_run_union", "4 sigma:   union (table build + chunks)")
    charged(engine.SigmaEngine, "_run_chunk", "4 sigma:    chunk queries")
    charged(pipeline, "run_correlations", "5 correlations")
    charged(pipeline, "build_findings", "6 build_findings (sigma + builtin)")
    charged(pipeline, "_detect_builtin", "7 builtin detectors (total)")
    for detector in exchange.DETECTORS:
        charged(detector, "run", f"7 builtin:  {detector.name}")
    charged(pipeline, "build_report", "8 report: build_report (analysis)")
    charged(pipeline, "with_excerpts", "8 report: excerpts")
    charged(Report, "save", "8 report: report.json")
    charged(pipeline, "write_outputs", "8 report: HTML, STIX, Navigator, Timesketch")
    charged(EventStore, "close", "9 store close (checkpoint)")
    charged(Case, "clean_scratch", "9 clean scratch")
    if sigma_threads != 2:
        original = engine.SigmaEngine.__init__

        def init(self, store, rules, threads=2):  # type: ignore[no-untyped-def]
            original(self, store, rules, sigma_threads)

        engine.SigmaEngine.__init__ = init


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input", type=Path)
    parser.add_argument("--sigma", type=Path, default=BENCH / "work" / "webserver-rules")
    parser.add_argument("--case", type=Path, default=BENCH / "work" / "case-profile-logs")
    parser.add_argument("--sigma-threads", type=int, default=2)
    args = parser.parse_args()
    sys.path.insert(0, str(BENCH.parent / "src"))
    from varde.pipeline import HuntOptions, hunt

    instrument(args.sigma_threads)
    if args.case.exists():
        shutil.rmtree(args.case)
    start, wall, kids = time.process_time(), time.perf_counter(), _children()
    result = hunt([args.input], args.case, HuntOptions(sigma_dirs=(args.sigma,)))
    total = time.process_time() - start + _children() - kids
    size = sum(p.stat().st_size for p in args.input.rglob("*") if p.is_file())
    print(f"{size / 1e6:.0f} MB, {result.ingest.events:,} events, {len(result.report.findings)} findings: "
          f"{total:.1f} CPU s ({size / 1e6 / total:.1f} MB per CPU s), {time.perf_counter() - wall:.1f} s wall")
    print(f"{'stage':60} {'calls':>5} {'CPU s':>7} {'wall s':>7}")
    for label, (calls, cpu, secs) in sorted(CPU.items()):
        print(f"{label:60} {calls:5d} {cpu:7.2f} {secs:7.2f}")


if __name__ == "__main__":
    main()
