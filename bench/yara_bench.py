"""Benchmark of the YARA stage: whole-file scans of a web-root tree, and log rules over lines.

Builds (once, deterministic) in ``bench/work/yara/``:

* ``tree/``: a copy of an Exchange server's web folders, 3,000 small pages, scripts and styles
  (2-40 KB each) with 12 web shells among them, plus 4 binary files of 96 MB (over the 64 MB
  file-scan limit, so they are scanned truncated);
* ``logs/``: IIS W3C logs in Exchange's default field order, about ``--log-mb`` MB in 32 files.

Then times :func:`varde.detect.yara_scan.scan_evidence` (after discovery and the inventory, which
are not timed) for: the built-in rules over the tree; the built-in rules plus a folder of log
rules (signature-base style) over the logs. Results are printed and appended to RESULTS.md.

    /work/venv/bin/python bench/yara_bench.py [--log-mb 400] [--note TEXT] [--no-record]
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import resource
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
WORK = BENCH / "work" / "yara"
RESULTS = BENCH / "RESULTS.md"
sys.path.insert(0, str(BENCH.parent / "src"))

from varde.detect.yara import load_yara  # noqa: E402
from varde.detect.yara_scan import scan_evidence  # noqa: E402
from varde.events.store import EventStore  # noqa: E402
from varde.ingest import plan  # noqa: E402
from varde.sources.base import ArchiveLimits  # noqa: E402

LOG_RULES = """
rule LOG_Bench_ECP_Script_Requests : LOG {
   meta: description = "POST to a one-to-three letter script under /ecp/ answered 200" score = 65
   strings: $a = /POST \\/ecp\\/[a-z]{1,3}\\.js[^\\n]{20,600} 200 /
   condition: $a
}
rule LOG_Bench_Agents : LOG {
   meta: description = "Agents published for HAFNIUM" score = 60
   strings:
      $a = "python-requests/2.25.1"
      $b = "ExchangeServicesClient/0.0.0.0"
      $c = "antSword/v2.1"
   condition: 1 of them
}
rule EXPL_LOG_Bench_Autodiscover_Powershell {
   meta: description = "autodiscover.json request reaching powershell" score = 70
   strings: $a = /\\/autodiscover\\/autodiscover\\.json[^\\n]{1,300}owershell/ nocase
   condition: $a
}
"""

FIELDS = ("#Fields: date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip "
          "cs(User-Agent) cs(Referer) sc-status sc-substatus sc-win32-status time-taken")
STEMS = ("/owa/", "/owa/auth/logon.aspx", "/ecp/", "/EWS/Exchange.asmx", "/Microsoft-Server-ActiveSync",
         "/mapi/emsmdb/", "/autodiscover/autodiscover.xml", "/owa/service.svc")
AGENTS = ("Mozilla/5.0+(Windows+NT+10.0;+Win64;+x64)+AppleWebKit/537.36+(KHTML,+like+Gecko)+Chrome/88.0",
          "Microsoft+Office/16.0+(Windows+NT+10.0;+Microsoft+Outlook+16.0.13901;+Pro)")
#: One line in this many is an attacker's request (an /ecp/y.js POST from python-requests).
ATTACK_EVERY = 20_000
SHELL = b'<%@ Page Language="Jscript"%><%eval(Request.Item["p"],"unsafe");%>'


def build_tree(root: Path) -> None:
    rng = random.Random(7)
    web = root / "C" / "inetpub" / "wwwroot" / "aspnet_client" / "system_web"
    owa = root / "C" / "Program Files" / "Microsoft" / "Exchange Server" / "V15" / "FrontEnd" / "HttpProxy" / "owa" / "auth"
    for n in range(3000):
        folder = web if n % 2 else owa
        folder.mkdir(parents=True, exist_ok=True)
        kind = (".aspx", ".js", ".css")[n % 3]
        text = "".join(f"<div id=\"x{i}\">{rng.random()}</div>\n" for i in range(rng.randint(60, 1200)))
        data = text.encode() if n % 250 else SHELL + b"\n" + text.encode()
        (folder / f"page{n:04d}{kind}").write_bytes(data)
    dumps = root / "C" / "Windows" / "Temp"
    dumps.mkdir(parents=True, exist_ok=True)
    for n in range(4):
        (dumps / f"blob{n}.bin").write_bytes(random.Random(n).randbytes(96 << 20))


def build_logs(root: Path, megabytes: int) -> None:
    rng = random.Random(11)
    root.mkdir(parents=True, exist_ok=True)
    per_file = megabytes * (1 << 20) // 32
    for n in range(32):
        lines, size = ["#Software: Microsoft Internet Information Services 10.0", "#Version: 1.0", FIELDS], 0
        while size < per_file:
            attack = rng.randrange(ATTACK_EVERY) == 0
            stem = "/ecp/y.js" if attack else STEMS[rng.randrange(len(STEMS))]
            agent = "python-requests/2.25.1" if attack else AGENTS[rng.randrange(2)]
            line = (f"2021-03-{1 + n % 28:02d} {rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d} "
                    f"10.0.0.5 {'POST' if attack or rng.random() < 0.3 else 'GET'} {stem} &CorrelationID=<empty>;"
                    f"&cafeReqId={rng.getrandbits(64):016x}; 443 - 198.51.100.{rng.randrange(256)} {agent} - "
                    f"{200 if attack else rng.choice((200, 200, 200, 302, 401))} 0 0 {rng.randrange(900)}")
            lines.append(line)
            size += len(line) + 2
        (root / f"u_ex2103{n:02d}.log").write_text("\r\n".join(lines) + "\r\n")


def timed_scan(evidence: Path, yara_dirs: list[Path], case: Path) -> dict:
    shutil.rmtree(case, ignore_errors=True)
    case.mkdir(parents=True)
    limits = ArchiveLimits()
    rules = load_yara(yara_dirs)
    with EventStore(case / "events.duckdb") as store:
        inputs = [(t.evidence_id, t.evidence) for t in plan([evidence], store, limits)]
        size = sum(e.size for _, e in inputs)
        start, cpu = time.perf_counter(), time.process_time()
        summary = scan_evidence(store, rules, inputs, limits)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        lines = store.query("SELECT coalesce(sum(bytes), 0) FROM yara_scans WHERE scope = 'lines'")[0][0]
        scanned = store.query("SELECT coalesce(sum(bytes), 0) FROM yara_scans WHERE scope = 'file'")[0][0]
    return {"files": summary.files, "bytes": size, "file_bytes": scanned, "line_bytes": lines, "wall": wall,
            "cpu": cpu, "matches": summary.matches, "problems": summary.problems}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log-mb", type=int, default=400)
    parser.add_argument("--note")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level="WARNING")
    tree, logs = WORK / "tree", WORK / f"logs-{args.log_mb}"
    if not tree.exists():
        build_tree(tree)
    if not logs.exists():
        build_logs(logs, args.log_mb)
    rules = WORK / "log-rules"
    rules.mkdir(parents=True, exist_ok=True)
    (rules / "bench_log_sigs.yar").write_text(LOG_RULES)
    runs = {"built-in rules, web-root tree": timed_scan(tree, [], WORK / "case-tree"),
            "built-in + 3 log rules, IIS logs": timed_scan(logs, [rules], WORK / "case-logs")}
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10
    load = os.getloadavg()[0]
    rows = []
    for name, r in runs.items():
        read = r["file_bytes"] + r["line_bytes"]
        rows.append(f"| {name} | {r['files']:,} | {r['bytes'] / 1e6:,.0f} MB | {r['file_bytes'] / 1e6:,.0f} MB | "
                    f"{r['line_bytes'] / 1e6:,.0f} MB | {r['wall']:.1f} s | {read / 1e6 / r['wall']:,.0f} MB/s | "
                    f"{r['cpu']:.1f} s | {r['matches']:,} | {r['problems']} |")
    text = "\n".join([
        f"\n## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC — YARA stage (`bench/yara_bench.py`)\n",
        f"- {os.cpu_count()} CPUs, Python {sys.version.split()[0]}; one process (yara-x holds the GIL); "
        f"page cache warm; load average at the end {load:.1f} (machine shared: figures are indicative)",
        *([f"- note: {args.note}"] if args.note else []),
        "",
        "| run | files | input | file-scanned | line-scanned | wall | read MB/s | CPU | matches | problems |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        f"\nPeak RSS of the benchmark process: {rss} MiB.\n",
    ])
    print(text)
    if not args.no_record:
        with open(RESULTS, "a") as handle:
            handle.write(text)


if __name__ == "__main__":
    main()
