"""Run the attribution evaluation (research/attribution.md §2.3 protocols) and append the figures
to bench/RESULTS.md. Usage: ``PYTHONPATH=src python bench/attribution_bench.py [INTEL_DIR] [STEP]``.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from varde.analysis.attack import build_index
from varde.analysis.attribution.evaluate import evaluate

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    intel = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "intel"
    step = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    clusters = intel / "misp-galaxy" / "clusters"
    index = build_index(intel / "attack", [clusters / "threat-actor.json", clusters / "microsoft-activity-group.json"])
    start = time.monotonic()
    r = evaluate(index, step=step)
    took = time.monotonic() - start
    lines = [f"\n## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC — attribution evaluation (ATT&CK {r['attack_version']})\n",
             (f"- {r['groups']} groups; params {r['params']}; every {step}. case; {took:.0f} s; machine: "
              f"{os.cpu_count()} CPUs, Python {platform.python_version()}, load average at the end "
              f"{os.getloadavg()[0]:.1f} (shared machine: indicative)\n"), "| protocol | cases | top-1 | top-5 | top-10 | MRR |", "|---|---:|---:|---:|---:|---:|"]
    for key in ("E1 techniques", "E1 techniques+software", "E1 techniques+software, cross-fitted hyperparameters",
                "E2 techniques", "E2 techniques+software", "E2 techniques, research protocol (leaks)",
                "E2 techniques+software, research protocol (leaks)"):
        s = r[key]
        lines.append(f"| {key} | {s['cases']} | {s['top1']:.3f} | {s['top5']:.3f} | {s['top10']:.3f} | {s['mrr']:.3f} |")
    chosen = r["E1 techniques+software, cross-fitted hyperparameters"]
    lines.append(f"\n- hyperparameters chosen on each half of the groups (by MRR, measured on the other half): "
                 f"{chosen['chosen_per_half']}; best on all E1 cases: {chosen['best_on_all']}")
    lines.append("- ceiling (share of cases whose group keeps a feature of the query once the case's reports are "
                 "forgotten): " + ", ".join(f"{k} {r[k]['ceiling']:.3f}" for k in (
                     "E1 techniques", "E1 techniques+software", "E2 techniques", "E2 techniques+software")))
    for key in ("E3 techniques", "E3 techniques+software"):
        s, m = r[key], r[f"{key}, cross-fitted country mixture"]
        lines.append(f"- {key}: {s['cases']} cases, country of top candidate {s['country_of_top_candidate']:.3f}, "
                     f"most probable country {s['most_probable_country']:.3f} (shipped mixture); plain sum "
                     f"{m['plain_sum']:.3f}, cross-fitted mixture {m['most_probable_country']:.3f} (chosen "
                     f"{m['chosen_per_half']}, best on all {m['best_on_all']})")
    c = r["calibration"]
    low, high = c["ece_interval_95"]
    lines.append(f"- calibration, cross-fitted (E1 techniques+software plus {c['novel_cases']} cases whose group was "
                 f"removed): ECE {c['ece']:.3f} (95% bootstrap interval {low:.3f}-{high:.3f}), Brier (truth) "
                 f"{c['brier']:.3f}, top-answer accuracy {c['accuracy']:.3f}\n")
    with (ROOT / "bench" / "RESULTS.md").open("a", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
