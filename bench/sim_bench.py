"""Benchmark of ``varde simulate``: MB/s written and peak memory at a requested volume.

Runs, as a subprocess (the working tree's ``src`` first on ``PYTHONPATH``)::

    varde simulate SCENARIO --out bench/work/sim-PID --seed 1 --users N --size SIZE

sampling its RSS every 100 ms (psutil) and its CPU time, then reads ``truth.json`` for the
bytes and files written. Reported: wall time, MB/s of wall time and of CPU time (the second is
the fairer figure on a shared machine), peak RSS, and the load average before and after. The
output is deleted afterwards unless ``--keep``. A dated section is appended to
``bench/RESULTS.md``.

Usage::

    python bench/sim_bench.py                      # proxylogon, 1 GB, 500 users
    python bench/sim_bench.py --size 10GB --note "10 GB case"
    python bench/sim_bench.py --size 200MB --no-record   # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hunt_bench import machine

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
WORK = BENCH / "work"
RESULTS = BENCH / "RESULTS.md"


def run(scenario: str, size: str, users: int, keep: bool) -> dict:
    """One simulation in a subprocess, measured from outside."""
    out = WORK / f"sim-{os.getpid()}"
    shutil.rmtree(out, ignore_errors=True)
    WORK.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    command = [sys.executable, "-c", "from varde.cli import main; main()", "simulate", scenario, "--out", str(out),
               "--seed", "1", "--users", str(users), "--size", size]
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watched = psutil.Process(process.pid)
    peak, cpu = 0, 0.0
    while process.poll() is None:
        try:
            peak = max(peak, watched.memory_info().rss)
            times = watched.cpu_times()
            cpu = times.user + times.system
        except psutil.NoSuchProcess:
            break
        time.sleep(0.1)
    wall = time.perf_counter() - started
    stdout, stderr = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"simulate failed ({process.returncode}): {stderr.strip()}")
    truth = json.loads((out / "truth.json").read_text())
    if not keep:
        shutil.rmtree(out, ignore_errors=True)
    written = truth["evidence"]["bytes"]
    return {"scenario": scenario, "size": size, "users": users, "days": truth["evidence"]["days"],
            "files": truth["evidence"]["files"], "bytes": written, "wall": wall, "cpu": cpu,
            "mb_s_wall": written / 1e6 / wall, "mb_s_cpu": written / 1e6 / cpu if cpu else 0.0,
            "peak_rss": peak, "load": (load_before, os.getloadavg()[0]), "stdout": stdout.strip()}


def record(result: dict, note: str) -> str:
    """The RESULTS.md section of a run."""
    box = machine()
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                            text=True, check=False).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "src"], capture_output=True,
                           text=True, check=False).stdout.strip()
    return (
        f"\n## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC — simulate {result['scenario']} --size {result['size']}\n\n"
        f"- machine: {box['nproc']} CPUs ({box['cpu']}), {box['ram']} RAM, Python {box['python']}; shared with "
        f"other work while measured (load average {result['load'][0]:.1f} → {result['load'][1]:.1f}): figures are "
        f"indicative\n"
        f"- varde at commit {commit}{' (uncommitted changes in src/)' if dirty else ''}; seed 1, "
        f"{result['users']} users\n"
        f"- note: {note or '-'}\n\n"
        "| scenario | days | files | written | wall | CPU | MB/s (wall) | MB/s (CPU) | peak RSS |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n"
        f"| {result['scenario']} | {result['days']} | {result['files']:,} | {result['bytes'] / 1e6:,.0f} MB | "
        f"{result['wall']:.1f} s | {result['cpu']:.1f} s | {result['mb_s_wall']:.1f} | {result['mb_s_cpu']:.1f} | "
        f"{result['peak_rss'] / (1 << 20):.0f} MiB |\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="proxylogon")
    parser.add_argument("--size", default="1GB")
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--note", default="")
    parser.add_argument("--keep", action="store_true", help="keep the simulated case in bench/work")
    parser.add_argument("--no-record", action="store_true", help="print only, do not append to RESULTS.md")
    args = parser.parse_args()
    result = run(args.scenario, args.size, args.users, args.keep)
    section = record(result, args.note)
    print(section)
    if not args.no_record:
        with open(RESULTS, "a", encoding="utf-8") as handle:
            handle.write(section)


if __name__ == "__main__":
    main()
