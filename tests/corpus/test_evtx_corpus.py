"""Every EVTX file of the shared corpus is read completely, or its losses are reported.

* the 568 ``labeled_evtx`` files (sbousseaden + hayabusa samples) are read in one ingest run with
  two worker processes: no crash, and for each file the records read plus the records reported
  as skipped equal the manifest's ``evtx_stats.event_count``; a file that gave fewer records than
  the manifest lists must say so in ``read_warnings``. Channels and event ids match too.
* the ``robustness_evtx`` files (deliberately damaged EVTX from the ``evtx`` crate) give at least
  ``min_records`` records, every damaged chunk is reported, every record a chunk header lists
  is either read or counted as skipped, and the intact samples give no warning at all.
* the OTRF ProxyLogon zip (JSON lines inside a zip) and the MSExchange Management WEC sample.
* the SigmaHQ regression ``.json`` twins read like their EVTX files.

The tests read the corpus in place (``corpus`` fixture; skipped without ../shared).
"""

from __future__ import annotations

import json
import struct
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from varde.events.store import EventStore
from varde.ingest import ingest, plan
from varde.sources.base import ArchiveLimits

pytestmark = pytest.mark.corpus

#: Upper bound for reading all 568 labeled EVTX files with two workers (measured: ~15-20 s).
LABELED_BUDGET_SECONDS = 60.0

#: robustness_evtx files that are damaged on purpose; every other one must read without warnings.
DAMAGED = {"sysmon.evtx", "sample_with_a_bad_chunk_magic.evtx", "sample-with-zero-data-size-event.evtx"}

PROXYLOGON_ZIP = (
    "exchange-logs/otrf-security-datasets/datasets/atomic/windows/persistence/host/"
    "proxylogon_ssrf_rce_poc.zip"
)
WEC_SAMPLE = "evtx-samples/evtx-crate-samples/MSExchange_Management_wec.evtx"


@dataclass
class Run:
    """What one ingest run left in the case store, keyed by evidence path."""

    evidence: dict[str, dict]
    warnings: dict[str, list[dict]]
    store_path: Path
    seconds: float

    def events(self, path: str, columns: str = "*") -> list[tuple]:
        with EventStore(self.store_path) as store:
            return store.query(
                f"SELECT {columns} FROM events e JOIN evidence v ON v.id = e.evidence "
                "WHERE v.path = ? ORDER BY e.key",
                [path],
            )

    def query(self, sql: str, params: list | None = None) -> list[tuple]:
        with EventStore(self.store_path) as store:
            return store.query(sql, params)


def read_all(paths: list[Path], case: Path, workers: int = 2) -> Run:
    """Plan and ingest ``paths`` into a new store in ``case``; return the accounting."""
    case.mkdir(parents=True, exist_ok=True)
    limits = ArchiveLimits()
    start = time.monotonic()
    with EventStore(case / "events.duckdb") as store:
        tasks = plan(paths, store, limits)
        ingest(tasks, store, case / "tmp", limits, workers=workers)
        seconds = time.monotonic() - start
        columns = ("id", "path", "reader", "sha256", "bytes", "records", "skipped_records", "complete")
        rows = store.query(f"SELECT {', '.join(columns)} FROM evidence ORDER BY id")
        evidence = {row[1]: dict(zip(columns, row, strict=True)) for row in rows}
        warnings: dict[str, list[dict]] = {}
        for path, locator, message, skipped in store.query(
            "SELECT v.path, w.locator, w.message, w.skipped FROM read_warnings w "
            "LEFT JOIN evidence v ON v.id = w.evidence"
        ):
            warnings.setdefault(path, []).append({"locator": locator, "message": message, "skipped": skipped})
    return Run(evidence, warnings, case / "events.duckdb", seconds)


def chunk_headers(path: Path) -> tuple[int, list[int]]:
    """Independent of varde: records listed by the intact chunk headers, and damaged chunk numbers."""
    data = path.read_bytes()
    listed, damaged = 0, []
    for number, offset in enumerate(range(4096, len(data) - 65536 + 1, 65536)):
        head = data[offset : offset + 40]
        if head[:8] == b"ElfChnk\x00":
            first, last = struct.unpack_from("<QQ", head, 24)
            listed += last - first + 1
        elif head.strip(b"\x00"):
            damaged.append(number)
    return listed, damaged


# --- the 568 labeled EVTX files, one run -----------------------------------------------------------


@pytest.fixture(scope="module")
def labeled(manifest: list[dict]) -> list[dict]:
    entries = [e for e in manifest if e["kind"] == "labeled_evtx"]
    assert len(entries) == 568
    return entries


@pytest.fixture(scope="module")
def labeled_run(corpus: Path, labeled: list[dict], tmp_path_factory: pytest.TempPathFactory) -> Run:
    return read_all([corpus / e["evtx"] for e in labeled], tmp_path_factory.mktemp("labeled"), workers=2)


@pytest.mark.slow
def test_labeled_evtx_are_read_within_budget(labeled_run: Run, labeled: list[dict]) -> None:
    print(f"\n568 labeled EVTX files read in {labeled_run.seconds:.1f} s")
    assert len(labeled_run.evidence) == len(labeled)
    assert labeled_run.seconds < LABELED_BUDGET_SECONDS, f"took {labeled_run.seconds:.1f} s"


@pytest.mark.slow
def test_labeled_evtx_no_record_silently_dropped(corpus: Path, labeled_run: Run, labeled: list[dict]) -> None:
    problems = []
    for entry in labeled:
        path = str(corpus / entry["evtx"])
        row = labeled_run.evidence[path]
        warned = labeled_run.warnings.get(path, [])
        expected = entry["evtx_stats"]["event_count"]
        if row["reader"] != "evtx" or row["sha256"] is None:
            problems.append(f"{entry['evtx']}: reader {row['reader']}, sha256 {row['sha256']}")
        if row["records"] + row["skipped_records"] != expected:
            problems.append(
                f"{entry['evtx']}: {row['records']} read + {row['skipped_records']} skipped "
                f"!= {expected} in the manifest"
            )
        if row["records"] < expected and not warned:
            problems.append(f"{entry['evtx']}: {expected - row['records']} records missing without a warning")
        if row["skipped_records"] != sum(w["skipped"] for w in warned):
            problems.append(f"{entry['evtx']}: skipped_records disagrees with its warnings")
        if not warned and not row["complete"]:
            problems.append(f"{entry['evtx']}: incomplete without a warning")
    assert not problems, "\n".join(problems)


@pytest.mark.slow
def test_labeled_evtx_channels_and_event_ids_match_manifest(
    corpus: Path, labeled_run: Run, labeled: list[dict]
) -> None:
    # (The manifest's first_ts/last_ts are the EVTX record header times, not System/TimeCreated,
    # so they are not compared.)
    rows = labeled_run.query(
        "SELECT v.path, e.channel, e.event_id, count(*) FROM events e "
        "JOIN evidence v ON v.id = e.evidence GROUP BY ALL"
    )
    channels: dict[str, Counter] = {}
    ids: dict[str, Counter] = {}
    for path, channel, event_id, count in rows:
        # the manifest is JSON: a missing channel or id is the key "null"
        channels.setdefault(path, Counter())["null" if channel is None else channel] += count
        ids.setdefault(path, Counter())["null" if event_id is None else str(event_id)] += count
    problems = []
    for entry in labeled:
        path, stats = str(corpus / entry["evtx"]), entry["evtx_stats"]
        if channels.get(path, Counter()) != Counter(stats["channels"]):
            problems.append(
                f"{entry['evtx']}: channels {dict(channels.get(path, {}))} != {stats['channels']}"
            )
        if ids.get(path, Counter()) != Counter(stats["event_ids"]):
            problems.append(f"{entry['evtx']}: event ids {dict(ids.get(path, {}))} != {stats['event_ids']}")
    assert not problems, "\n".join(problems[:50])


# --- damaged EVTX, the ProxyLogon zip and the WEC sample, one run ------------------------------------


@pytest.fixture(scope="module")
def robustness(manifest: list[dict]) -> list[dict]:
    entries = [e for e in manifest if e["kind"] == "robustness_evtx"]
    assert {Path(e["evtx"]).name for e in entries} >= DAMAGED | {Path(WEC_SAMPLE).name}
    return entries


@pytest.fixture(scope="module")
def robust_run(corpus: Path, robustness: list[dict], tmp_path_factory: pytest.TempPathFactory) -> Run:
    paths = [corpus / e["evtx"] for e in robustness] + [corpus / PROXYLOGON_ZIP]
    return read_all(paths, tmp_path_factory.mktemp("robust"), workers=2)


def test_robustness_evtx_give_at_least_min_records(
    corpus: Path, robustness: list[dict], robust_run: Run
) -> None:
    for entry in robustness:
        row = robust_run.evidence[str(corpus / entry["evtx"])]
        assert row["reader"] == "evtx"
        assert row["records"] >= entry["min_records"], (
            entry["evtx"],
            row,
            robust_run.warnings.get(row["path"]),
        )


def test_robustness_every_listed_record_is_read_or_counted(
    corpus: Path, robustness: list[dict], robust_run: Run
) -> None:
    """Each record an intact chunk header lists is either in the store or in skipped_records."""
    for entry in robustness:
        path = corpus / entry["evtx"]
        row = robust_run.evidence[str(path)]
        listed, _ = chunk_headers(path)
        assert row["records"] + row["skipped_records"] == listed, (entry["evtx"], row)
        assert row["skipped_records"] == sum(w["skipped"] for w in robust_run.warnings.get(str(path), []))


def test_robustness_damaged_chunks_are_reported(
    corpus: Path, robustness: list[dict], robust_run: Run
) -> None:
    for entry in robustness:
        path = corpus / entry["evtx"]
        _, damaged = chunk_headers(path)
        locators = {w["locator"] for w in robust_run.warnings.get(str(path), [])}
        missing = {f"chunk {n}" for n in damaged} - locators
        assert not missing, (entry["evtx"], missing)


def test_robustness_specific_damage(corpus: Path, robust_run: Run) -> None:
    samples = corpus / "evtx-samples" / "evtx-crate-samples"

    # sysmon.evtx: the 8 chunk headers from chunk 9 on are damaged, each is reported.
    warned = robust_run.warnings[str(samples / "sysmon.evtx")]
    assert {f"chunk {n}" for n in range(9, 17)} <= {w["locator"] for w in warned}
    assert robust_run.evidence[str(samples / "sysmon.evtx")]["records"] == 358

    # one chunk with a bad magic: the reader carries on past it (14 records if it stopped there),
    # and the records lost in partly readable chunks are counted.
    bad_magic = str(samples / "sample_with_a_bad_chunk_magic.evtx")
    assert robust_run.evidence[bad_magic]["records"] >= 270
    assert robust_run.evidence[bad_magic]["skipped_records"] > 0
    assert {"chunk 6", "chunk 10"} <= {w["locator"] for w in robust_run.warnings[bad_magic]}

    # a record claiming a zero data size: reported, the rest of its chunk counted as skipped.
    zero = str(samples / "sample-with-zero-data-size-event.evtx")
    assert robust_run.evidence[zero]["records"] >= 335
    assert robust_run.evidence[zero]["skipped_records"] > 0
    assert any("data size" in w["message"] for w in robust_run.warnings[zero])


def test_robustness_intact_samples_give_no_warning(
    corpus: Path, robustness: list[dict], robust_run: Run
) -> None:
    for entry in robustness:
        if Path(entry["evtx"]).name in DAMAGED:
            continue
        path = str(corpus / entry["evtx"])
        assert robust_run.warnings.get(path, []) == [], entry["evtx"]
        row = robust_run.evidence[path]
        assert row["skipped_records"] == 0 and row["complete"], row


def test_proxylogon_zip_reads_through_the_zip_path(corpus: Path, robust_run: Run) -> None:
    archive = str(corpus / PROXYLOGON_ZIP)
    inside = {p: r for p, r in robust_run.evidence.items() if p.startswith(archive + "!")}
    assert robust_run.evidence[archive]["reader"] == "zip"
    assert len(inside) == 1
    ((member_path, member),) = inside.items()
    assert member_path == f"{archive}!proxylogon_ssrf_rce_poc_2021-03-14T01401970.json"
    assert member["reader"] == "event-json"
    assert member["records"] == 10_487
    assert member["skipped_records"] == 0 and member["complete"]
    assert member["sha256"] is not None and member["bytes"] == 19_346_820
    assert robust_run.warnings.get(archive, []) == [] and robust_run.warnings.get(member_path, []) == []

    channels = Counter(channel for (channel,) in robust_run.events(member_path, "e.channel"))
    assert channels["MSExchange Management"] == 3
    assert {"Security", "Microsoft-Windows-Sysmon/Operational", "Application", "System"} <= set(channels)
    management = robust_run.events(member_path, "e.event_id, e.host, CAST(e.fields AS VARCHAR)")
    messages = [
        json.loads(f).get("Message", "") for eid, host, f in management if "Set-OabVirtualDirectory" in f
    ]
    assert any("Page_Load" in m for m in messages)
    assert all(host == "MXS01.azsentinel.local" for _, host, _ in management[:100])


def test_wec_positional_data_is_one_text_field(corpus: Path, robust_run: Run) -> None:
    rows = robust_run.events(
        str(corpus / WEC_SAMPLE), "e.channel, e.provider, e.event_id, CAST(e.fields AS VARCHAR)"
    )
    assert len(rows) == 1
    channel, provider, event_id, fields = rows[0]
    assert (channel, provider, event_id) == ("MSExchange Management", "MSExchange CmdletLogs", 1)
    fields = json.loads(fields)
    assert isinstance(fields["Data"], str)
    assert "Set-Mailbox" in fields["Data"] and "-ForwardingSmtpAddress" in fields["Data"]
    assert fields["Data"].startswith("Set-Mailbox ")


# --- SigmaHQ regression twins: the JSON rendering reads like the EVTX ---------------------------------


@pytest.fixture(scope="module")
def twins(manifest: list[dict]) -> list[dict]:
    return [e for e in manifest if e["kind"] == "sigma_regression" and e.get("active", True)]


@pytest.fixture(scope="module")
def twin_run(corpus: Path, twins: list[dict], tmp_path_factory: pytest.TempPathFactory) -> Run:
    paths = sorted({corpus / e["evtx"] for e in twins} | {corpus / e["event_json"] for e in twins})
    return read_all(paths, tmp_path_factory.mktemp("twins"), workers=2)


@pytest.mark.slow
def test_json_twins_read_like_their_evtx(corpus: Path, twins: list[dict], twin_run: Run) -> None:
    rows = twin_run.query(
        "SELECT v.path, e.ts, e.host, e.channel, e.provider, e.event_id FROM events e "
        "JOIN evidence v ON v.id = e.evidence"
    )
    common: dict[str, Counter] = {}
    for path, *values in rows:
        common.setdefault(path, Counter())[tuple(values)] += 1
    problems = []
    for entry in twins:
        evtx_path, json_path = str(corpus / entry["evtx"]), str(corpus / entry["event_json"])
        expected = entry["evtx_stats"]["event_count"]
        for path, reader in ((evtx_path, "evtx"), (json_path, "event-json")):
            row = twin_run.evidence[path]
            if row["reader"] != reader or row["records"] != expected or twin_run.warnings.get(path):
                problems.append(f"{path}: {row} {twin_run.warnings.get(path)} (expected {expected} records)")
        if common.get(evtx_path) != common.get(json_path):
            problems.append(f"{entry['event_json']}: common columns differ from the EVTX")
    assert not problems, "\n".join(problems[:50])
