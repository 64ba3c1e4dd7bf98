"""Where does ``varde hunt`` spend its time? An instrumented in-process hunt (varde's code unchanged).

The hunt runs in this process through :func:`varde.pipeline.hunt` with timing wrappers patched
around its stages (rule loading, discovery, ingest, store inserts, rule compilation, the
engine's per-group table builds and chunk queries, correlations, findings, report), optionally
under cProfile. The reader workers are separate processes; ``--reader`` profiles the reader on
the same input inline (cProfile) to show what a worker spends its time on.

``--rule-costs N`` then times every rule alone on the N most expensive (channel, event id)
groups of the finished case, to name the rules that dominate matching.

Usage::

    python bench/profile_hunt.py bench/work/events-350000.jsonl --cprofile bench/work/hunt.prof
    python bench/profile_hunt.py bench/work/events-350000.jsonl --reader --reader-events 100000
    python bench/profile_hunt.py bench/work/events-350000.jsonl --rule-costs 5
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import io
import os
import pstats
import shutil
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

BENCH = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("VARDE_SHARED", Path(__file__).resolve().parents[2] / "shared"))
DEFAULT_SIGMA = SHARED / "corpus/sigma/rules/windows"

TIMES: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])  # name -> [calls, wall s, CPU s]
GROUPS: list[dict] = []
_LOCAL = threading.local()  # per-thread [wall, CPU] per name: the engine may run groups on two threads


def _local_times() -> dict[str, list[float]]:
    if not hasattr(_LOCAL, "times"):
        _LOCAL.times = defaultdict(lambda: [0.0, 0.0])
    return _LOCAL.times


def timed(owner: object, attr: str, name: str) -> None:
    """Wrap ``owner.attr`` so its calls and seconds add up under ``name`` (outermost calls only)."""
    original = getattr(owner, attr, None)
    if original is None:  # varde changed: say so, time the rest
        print(f"(not timed: {getattr(owner, '__name__', owner)}.{attr} does not exist)", file=sys.stderr)
        return

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        depth = _local_depth()
        if depth.get(name):  # a recursive call: counted by the outer one
            return original(*args, **kwargs)
        depth[name] = 1
        try:
            return _timed_call(name, original, args, kwargs)
        finally:
            depth[name] = 0

    setattr(owner, attr, wrapper)


def _local_depth() -> dict[str, int]:
    if not hasattr(_LOCAL, "depth"):
        _LOCAL.depth = {}
    return _LOCAL.depth


def _timed_call(name: str, original, args, kwargs):  # type: ignore[no-untyped-def]
    start, cpu = time.perf_counter(), time.thread_time()
    try:
        return original(*args, **kwargs)
    finally:
        wall, used = time.perf_counter() - start, time.thread_time() - cpu
        entry = TIMES[name]
        entry[0] += 1
        entry[1] += wall
        entry[2] += used
        local = _local_times()[name]
        local[0] += wall
        local[1] += used


def instrument() -> None:
    import varde.pipeline as pipeline
    from varde.case import Case
    from varde.detect.sigma import cache, engine, rules
    from varde.events.store import EventStore
    from varde.ingest import _StoreSink
    from varde.report.document import Report
    from varde.sources import ingest as src_ingest

    timed(pipeline, "load_rulesets", "rules: load_rulesets (total)")
    timed(rules, "rule_files", "rules: list rule files")
    timed(rules._FileLoader, "load", "rules: YAML + pySigma + compile (cache misses)")
    timed(cache.RuleCache, "get", "rules: cache get")
    timed(cache.RuleCache, "put", "rules: cache put")
    timed(rules, "_merge", "rules: decode cached entries (_merge)")
    timed(pipeline, "plan", "read: discovery (plan)")
    timed(pipeline, "ingest", "read: ingest (worker pool, total)")
    timed(_StoreSink, "batch", "read: store append (DuckDB INSERT + field_names), in parent")
    timed(src_ingest.WorkerPool, "_start", "read: start worker process")
    timed(pipeline, "runnable_rules", "match: runnable_rules")
    timed(engine.SigmaEngine, "run", "match: engine.run (total)")
    timed(engine, "list_groups", "match: list_groups")
    timed(engine.SigmaEngine, "plan", "match: plan (route rules to group)")
    timed(engine.SigmaEngine, "field_resolver", "match: field_resolver")
    if hasattr(engine, "field_resolver"):  # later versions: a module function, names read once
        timed(engine, "field_resolver", "match: field_resolver")
        timed(engine, "field_names", "match: field_names (once)")
    timed(engine.SigmaEngine, "_run_chunk", "match: chunk queries (UNION ALL of <=100 rules)")
    from varde import ingest as top_ingest

    if hasattr(top_ingest, "Spool"):  # since cde2c09: spool files loaded by a thread
        timed(top_ingest.Spool, "add", "read: spool add (parent writes batches to spool files)")
        timed(top_ingest.Spool, "finish", "read: spool finish (wait for the loader after the readers)")
        timed(top_ingest.Spool, "_load_all", "read: spool loader thread (total, runs alongside)")
    timed(EventStore, "append", "read: EventStore.append (DuckDB INSERT), any thread")
    timed(EventStore, "refresh_view", "read: refresh events view")
    if hasattr(engine, "GroupValues"):  # since cde2c09: value prefilters
        timed(engine.GroupValues, "load", "match: prefilter distinct values (GroupValues.load)")
        timed(engine.GroupValues, "may_match", "match: prefilter tests (GroupValues.may_match)")
    timed(pipeline, "run_correlations", "after: correlations")
    timed(pipeline, "build_findings", "after: build_findings")
    timed(pipeline, "build_report", "after: build_report")
    timed(pipeline, "with_excerpts", "after: with_excerpts (evidence texts)")
    timed(pipeline, "write_outputs", "after: write_outputs (HTML, Timesketch, Navigator)")
    timed(Report, "save", "after: report.save")
    timed(EventStore, "close", "after: store close (checkpoint)")
    timed(EventStore, "reset", "read: store reset")
    timed(Case, "clean_scratch", "after: clean scratch")

    # Per-group detail: table build vs queries, rule and column counts.
    original_run_group = engine.SigmaEngine._run_group

    def run_group(self, *args):
        # The signature has changed between versions: find the group and its plan by type.
        group = next(a for a in args if isinstance(a, engine.Group))
        plan = next(a for a in args if isinstance(a, list))
        chunk_name, resolver_name = "match: chunk queries (UNION ALL of <=100 rules)", "match: field_resolver"
        pre_names = ("match: prefilter distinct values (GroupValues.load)", "match: prefilter tests (GroupValues.may_match)")
        local = _local_times()
        before = list(local[chunk_name]), list(local[resolver_name])
        pre_before = [list(local[n]) for n in pre_names]
        start, cpu = time.perf_counter(), time.thread_time()
        try:
            return original_run_group(self, *args)
        finally:
            total, total_cpu = time.perf_counter() - start, time.thread_time() - cpu
            queries = local[chunk_name][0] - before[0][0]
            other = queries + local[resolver_name][0] - before[1][0]
            other_cpu = local[chunk_name][1] - before[0][1] + local[resolver_name][1] - before[1][1]
            prefilter = sum(local[n][0] - b[0] for n, b in zip(pre_names, pre_before))
            other += prefilter
            other_cpu += sum(local[n][1] - b[1] for n, b in zip(pre_names, pre_before))
            columns = {c for _, p in plan for c in p.columns}
            GROUPS.append({
                "channel": group.channel, "event_id": group.event_id, "events": group.events,
                "rules": len(plan), "columns": len(columns), "total": total, "queries": queries,
                "prefilter": prefilter,
                "table": total - other, "text": any(c.field == "*" for c in columns),
                "pyregex": any(getattr(p, "python_regex", False) or getattr(p, "python_udf", False)
                               for _, p in plan),
            })
            entry = TIMES["match: group table build (CREATE TEMP TABLE: extract/lower the rules' columns)"]
            entry[0] += 1
            entry[1] += total - other
            entry[2] += total_cpu - other_cpu

    engine.SigmaEngine._run_group = run_group


def hunt(input_path: Path, case: Path, sigma: Path, workers: int, profile: Path | None) -> float:
    from varde.pipeline import HuntOptions
    from varde.pipeline import hunt as run

    shutil.rmtree(case, ignore_errors=True)
    options = HuntOptions(sigma_dirs=(sigma,), workers=workers)
    profiler = cProfile.Profile() if profile else None
    start, cpu = time.perf_counter(), time.process_time()
    if profiler:
        profiler.enable()
    result = run([input_path], case, options)
    if profiler:
        profiler.disable()
        profiler.dump_stats(profile)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(f"hunt: {result.ingest.events:,} events, {len(result.report.findings)} findings, {wall:.1f} s "
          f"({result.ingest.events / wall:,.0f} events/s); main process CPU {cpu:.1f} s (all its threads; "
          "reader workers not included)")
    return wall


def print_times(wall: float) -> None:
    print("\nStage times (main process; wall and CPU summed over the calling threads, so stages run on two "
          "threads can exceed the wall time; CPU = the calling Python thread's own CPU, which includes DuckDB work "
          "it does itself but not DuckDB's worker threads; nested entries are part of their parent):")
    for name, (calls, secs, cpu) in sorted(TIMES.items(), key=lambda kv: kv[0]):
        print(f"  {name:<76} {secs:8.2f} s  {secs / wall * 100:5.1f} %  CPU {cpu:8.2f} s  ({calls} calls)")
    if GROUPS:
        print(f"\nGroups: {len(GROUPS)} run; top 20 by time:")
        print(f"  {'channel':<45} {'eid':>6} {'events':>8} {'rules':>5} {'cols':>4} {'table s':>8} "
              f"{'query s':>8} {'pre s':>6} text pyre")
        for g in sorted(GROUPS, key=lambda g: -g["total"])[:20]:
            print(f"  {str(g['channel'])[:45]:<45} {str(g['event_id']):>6} {g['events']:>8} {g['rules']:>5} "
                  f"{g['columns']:>4} {g['table']:8.2f} {g['queries']:8.2f} {g.get('prefilter', 0):6.2f} "
                  f"{'T' if g['text'] else '-':>4} "
                  f"{'P' if g['pyregex'] else '-':>4}")
        small = [g for g in GROUPS if g["events"] < 1000]
        print(f"  groups with < 1000 events: {len(small)}, {sum(g['total'] for g in small):.1f} s in total")
        print(f"  rule evaluations (rule x group): {sum(g['rules'] for g in GROUPS)}; "
              f"queries: {sum(-(-g['rules'] // 100) for g in GROUPS)}")


def print_profile(path: Path, top: int = 35) -> None:
    for key in ("tottime", "cumulative"):
        out = io.StringIO()
        stats = pstats.Stats(str(path), stream=out)
        stats.sort_stats(key).print_stats(top)
        print(f"\ncProfile, main process, top {top} by {key}:")
        print("\n".join(out.getvalue().splitlines()[6:]))


def reader_profile(input_path: Path, events: int, top: int = 30) -> None:
    """cProfile of the event-JSON reader on the first ``events`` lines, as a worker runs it."""
    import itertools
    import tempfile

    from varde.sources.base import ArchiveLimits, EvidenceFile
    from varde.sources.ingest import Task, read_one

    scratch = Path(tempfile.mkdtemp(prefix="varde-bench-"))
    part = scratch / "part.jsonl"
    with open(input_path, "rb") as src, open(part, "wb") as dst:
        dst.writelines(itertools.islice(src, events))
    evidence = EvidenceFile(path=str(part), disk_path=part, size=part.stat().st_size)
    task = Task(1, evidence, "event-json")
    sent = [0, 0]

    def send(message: tuple) -> None:
        if message[0] == "batch":
            sent[0] += 1
            item = message[1]
            sent[1] += len(getattr(item, "data", item))

    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.enable()
    read_one(task, send, scratch, ArchiveLimits())
    profiler.disable()
    secs = time.perf_counter() - start
    print(f"reader (inline, as in a worker): {events:,} lines, {part.stat().st_size / 1e6:.0f} MB in {secs:.1f} s "
          f"= {events / secs:,.0f} events/s; {sent[0]} batches, {sent[1] / 1e6:.0f} MB of Arrow IPC sent")
    prof = scratch / "reader.prof"
    profiler.dump_stats(prof)
    for key in ("tottime", "cumulative"):
        out = io.StringIO()
        pstats.Stats(str(prof), stream=out).sort_stats(key).print_stats(top)
        print(f"\ncProfile, reader, top {top} by {key}:")
        print("\n".join(out.getvalue().splitlines()[6:]))
    shutil.rmtree(scratch, ignore_errors=True)


def rule_costs(case: Path, sigma: Path, groups: int, top: int = 40) -> None:
    """Time each rule alone on the most expensive groups of a finished case."""
    from varde.detect.sigma.engine import SigmaEngine, list_groups, runnable_rules
    from varde.events.store import EventStore
    from varde.pipeline import HuntOptions, load_rulesets

    rules, _ = runnable_rules(load_rulesets(HuntOptions(sigma_dirs=(sigma,))))
    by_uid = {r.uid: r.info for _, r in rules}
    costs: list[tuple[float, str, str, str]] = []
    with EventStore(case / "events.duckdb") as store:
        engine = SigmaEngine(store, rules)
        ordered = sorted(GROUPS, key=lambda g: -g["total"]) if GROUPS else []
        wanted = [(g["channel"], g["event_id"]) for g in ordered[:groups]]
        all_groups = {(g.channel, g.event_id): g for g in list_groups(store)}
        if not wanted:  # no hunt in this process: the groups with most rules x events
            ranked = sorted(all_groups.values(), key=lambda g: -len(engine.plan(g)) * (1 + g.events / 10_000))
            wanted = [(g.channel, g.event_id) for g in ranked[:groups]]
        import varde.detect.sigma.engine as eng

        new_api = callable(getattr(eng, "_insert", None))  # module-level _insert(con, chunk) since d61989a
        names = eng.field_names(store) if hasattr(eng, "field_names") else {}
        for key in wanted:
            group = all_groups[key]
            plan = engine.plan(group)
            timings: list[tuple[float, str]] = []

            def time_rule(*args, timings=timings):
                chunk = args[-1]
                con = args[0] if len(args) == 2 else store.con
                if not chunk:
                    return
                start = time.perf_counter()
                con.execute("CREATE OR REPLACE TEMP TABLE _bench_sink AS " + " UNION ALL ".join(
                    f"SELECT 'x' AS rule_uid, key FROM sigma_group WHERE {p.sql}" for _, p in chunk))
                timings.append((time.perf_counter() - start, chunk[0][0]))

            saved_chunk, eng.CHUNK_RULES = eng.CHUNK_RULES, 1
            if new_api:
                saved_insert, eng._insert = eng._insert, time_rule
                args = (store.con, group, plan, names.get((group.channel, group.event_id), []))
            else:
                saved_insert, engine._insert = engine._insert, time_rule
                args = (group, plan, set())
            try:
                start = time.perf_counter()
                engine._run_group(*args)
                total = time.perf_counter() - start
            finally:
                eng.CHUNK_RULES = saved_chunk
                if new_api:
                    eng._insert = saved_insert
                else:
                    engine._insert = saved_insert
            summed = sum(t for t, _ in timings)
            print(f"\n{group.channel} / {group.event_id}: {group.events:,} events, {len(plan)} rules, "
                  f"{summed:.2f} s rule by rule (group total {total:.2f} s)")
            for secs, uid in sorted(timings, reverse=True)[:8]:
                info = by_uid[uid]
                print(f"  {secs * 1000:8.1f} ms  {info.title[:70]}  ({Path(info.path).name})")
            for secs, uid in timings:
                info = by_uid[uid]
                costs.append((secs, f"{group.channel}/{group.event_id}", info.title, Path(info.path).name))
    print(f"\nMost expensive single rule evaluations overall (top {top}):")
    for secs, where, title, path in sorted(costs, reverse=True)[:top]:
        print(f"  {secs * 1000:8.1f} ms  {where[:40]:<40} {title[:60]}  ({path})")


def main() -> None:
    parser = argparse.ArgumentParser(description="Instrumented, profiled varde hunt.")
    parser.add_argument("input", type=Path)
    parser.add_argument("--case", type=Path, default=BENCH / "work" / "case-profile")
    parser.add_argument("--sigma", type=Path, default=DEFAULT_SIGMA)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cprofile", type=Path, help="write cProfile stats of the main process here")
    parser.add_argument("--no-hunt", action="store_true", help="skip the hunt (use an existing --case)")
    parser.add_argument("--reader", action="store_true", help="also profile the reader inline")
    parser.add_argument("--reader-events", type=int, default=100_000)
    parser.add_argument("--rule-cache", choices=("warm", "cold", "off"), default="warm",
                        help="varde's compiled-rule cache in bench/work/rule-cache (cold: emptied first)")
    parser.add_argument("--rule-costs", type=int, default=0, metavar="N",
                        help="time each rule alone on the N most expensive groups")
    args = parser.parse_args()

    import hashlib
    import importlib.util

    # One cache per varde source tree (PYTHONPATH may point at an exported commit).
    origin = str(Path(importlib.util.find_spec("varde").origin).parent)
    cache_dir = BENCH / "work" / "rule-cache" / f"profile-{hashlib.sha256(origin.encode()).hexdigest()[:10]}"
    if args.rule_cache == "cold":
        shutil.rmtree(cache_dir, ignore_errors=True)
    import os

    os.environ["VARDE_CACHE_DIR"] = "off" if args.rule_cache == "off" else str(cache_dir)
    if not args.no_hunt:
        instrument()
        wall = hunt(args.input, args.case, args.sigma, args.workers, args.cprofile)
        print_times(wall)
        if args.cprofile:
            print_profile(args.cprofile)
    if args.reader:
        reader_profile(args.input, args.reader_events)
    if args.rule_costs:
        try:
            rule_costs(args.case, args.sigma, args.rule_costs)
        except (TypeError, AttributeError) as exc:  # the engine's internals changed
            print(f"--rule-costs does not fit this varde version's engine: {exc}")


if __name__ == "__main__":
    sys.exit(main())
